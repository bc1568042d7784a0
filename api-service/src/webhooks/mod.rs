//! `/api/webhooks`: users register delivery endpoints, over `smsgate_core::webhooks`.

mod routes;

pub use routes::router;
