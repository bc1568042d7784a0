//! `/api/opt-outs`: the caller's own opt-out list and the global one, over
//! `smsgate_core::optout::service` (docs/opt-outs.md).

mod routes;

pub use routes::router;
