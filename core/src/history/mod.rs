//! The read side of messages for people: history search with keyset pagination, message
//! detail with paged recipients, today's figures, and requeueing failed recipients.
//! Shared by the panel pages and the admin services; no HTTP types.

pub mod repo;
pub mod service;

pub use service::{
    Cursor, HistoryError, HistoryFilter, HistoryPage, MessageDetail, RecipientPage, Requeued,
    Viewer,
};
