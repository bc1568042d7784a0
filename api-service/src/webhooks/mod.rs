//! Delivery webhooks, the API's side: users register endpoints (`/api/webhooks`), and the
//! dispatchers POST every committed status change of the users' messages there, signed with
//! the endpoint's secret (`dispatcher/src/webhooks/`). `docs/webhooks.md` is the contract
//! receivers code against.

mod repo;
mod routes;
pub mod service;
mod url;

pub use repo::{DeliveryRow, WebhookRow};
pub use routes::router;
pub use url::{WebhookUrl, WebhookUrlError};
