//! The smsgate domain, shared by the JSON API (`api-service`) and the staff panel (`web`):
//! sending (validation, idempotency, HKT or SIM routing, the outbox and its reconciler),
//! SIM cards, users and auth, administration, history, webhooks, the audit log, live
//! status and statistics. No HTTP here: services take domain types and return each
//! domain's own error; the edges choose status codes.

pub mod admin;
pub mod auth;
pub mod db;
pub mod history;
pub mod idempotency;
pub mod live;
pub mod optout;
pub mod outbox;
pub mod params;
pub mod progress;
pub mod quota;
mod runtime;
mod settings;
pub mod sims;
pub mod sms;
pub mod system;
pub mod traffic;
pub mod webhooks;

pub use runtime::Core;
pub use settings::CoreSettings;
