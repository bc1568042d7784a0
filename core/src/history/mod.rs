//! The read side of messages for people: history search with keyset pagination (the
//! panel) or numbered pages (the API), filters, CSV exports, message detail with paged
//! recipients, today's figures, and requeueing failed recipients. Shared by the panel
//! pages, the JSON API and the admin services; no HTTP types.

pub mod export;
pub mod filter;
pub mod repo;
pub mod service;

pub use export::{Bom, CsvExport, ExportError};
pub use filter::{FilterError, RawFilter};
pub use service::{
    Cursor, HistoryError, HistoryFilter, HistoryPage, MessageDetail, RecipientPage, Requeued,
    Viewer,
};
