//! `POST /api/sms`, `POST /api/sms/send-bulk` and the history a user can page through,
//! over `smsgate_core::sms`.

mod routes;

pub use routes::router;
