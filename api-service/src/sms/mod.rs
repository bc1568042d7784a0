//! Sending and reading SMS: accepting single and bulk sends durably, and the history
//! a user can page through.

mod batch;
mod recipients;
pub mod repo;
mod routes;
pub mod service;

pub use batch::{AcceptBatcher, SmallSendError};
pub use recipients::parse_recipients;
pub use routes::router;
