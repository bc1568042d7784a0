//! The staff web panel's presentation layer: tera templates and static assets embedded in
//! the binary, the panel's one error type [`WebError`], the [`Page`] responder, cookies,
//! flash messages, display-time formatting and the security headers.
//!
//! The panel's routes live in `smsgate-api` (`panel/`), next to the services they share with
//! the JSON API; this crate knows nothing of the database or the queue, so the dependency
//! runs one way (api-service → web). docs/web-panel.md explains the split.

pub mod assets;
pub mod cookies;
mod error;
pub mod flash;
mod render;
pub mod security;
pub mod view;

pub use error::{is_local_path, WebError};
pub use flash::{Flash, FlashKind};
pub use render::{templates, Layout, LayoutUser, Page};
