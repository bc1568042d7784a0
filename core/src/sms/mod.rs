//! Sending and reading SMS: accepting single and bulk sends durably, and the history
//! a user can page through.

mod batch;
mod metrics;
pub mod options;
mod recipients;
pub mod repo;
mod routed;
pub mod service;

pub use batch::{AcceptBatcher, SmallSendError};
pub use metrics::{SendKind, SendMetrics, SendRoute};
pub use options::{OptionsError, RawSendOptions, SendOptions, Validity};
pub use recipients::{
    echo, parse_recipient_list, InvalidEntry, Problems, RecipientListError, RecipientSet,
    MAX_REPORTED_PROBLEMS,
};
pub use routed::{
    accept_send, accept_send_once, RouteError, RouteRequest, RoutedAccepted, SendError, SendOnce,
};
