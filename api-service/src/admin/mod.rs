//! The JSON admin API (`/api/admin/...`): users, dead letters and the audit log, over
//! `smsgate_core::admin`.

mod routes;

pub use routes::router;
