//! Everything two or more smsgate processes must agree on: domain types that are valid
//! by construction, the RabbitMQ contract (names, jobs, events, headers), configuration
//! helpers, telemetry setup, and the box that encrypts stored secrets.

pub mod config;
pub mod domain;
#[cfg(feature = "metrics")]
pub mod metrics;
pub mod net;
pub mod queue;
#[cfg(feature = "secret-box")]
pub mod secret_box;
pub mod shutdown;
pub mod telemetry;
pub mod webhook_events;
