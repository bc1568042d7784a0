//! Sending and reading SMS: accepting single and bulk sends durably, and the history
//! a user can page through.

mod batch;
mod recipients;
pub mod repo;
mod routes;
pub mod service;

pub use batch::{AcceptBatcher, SmallSendError};
pub use recipients::{
    echo, parse_recipient_list, Problems, RecipientListError, RecipientSet, MAX_REPORTED_PROBLEMS,
};
pub use routes::router;
