//! Everything two or more smsgate processes must agree on: domain types that are valid
//! by construction, the RabbitMQ contract (names, jobs, events, headers), configuration
//! helpers and telemetry setup.

pub mod config;
pub mod domain;
#[cfg(feature = "metrics")]
pub mod metrics;
pub mod net;
pub mod queue;
pub mod shutdown;
pub mod telemetry;
