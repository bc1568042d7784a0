//! The staff web panel, whole: its routes and handlers (`panel/`), sessions, CSRF, forms,
//! tera templates and static assets embedded in the binary, the panel's one error type
//! [`WebError`], the [`Page`] responder, cookies, flash messages, display-time formatting and
//! the security headers.
//!
//! Handlers call the same `smsgate_core` services as the JSON API; the API service mounts
//! [`router`] beside its own routes (docs/web-panel.md).

pub mod assets;
pub mod client;
pub mod cookies;
mod error;
pub mod flash;
pub mod panel;
mod render;
pub mod security;
mod state;
pub mod view;

pub use error::{is_local_path, WebError};
pub use flash::{Flash, FlashKind};
pub use panel::{router, PanelSettings};
pub use render::{templates, Layout, LayoutUser, Page};
pub use state::WebState;
