//! Traffic control seen from the API and the panel: cancelling a message, and how long
//! waiting work will take (a message's ETA, the queue's status). The release queue itself
//! (priorities, fair share, scheduling, expiry) is [`crate::outbox`].

mod cancel;
mod eta;
pub mod repo;

pub use cancel::{cancel_message, CancelError, Cancelled};
pub use eta::{message_eta, queue_status, Backlog, QueueStatus, RateFigures};
