//! The integration suite: one binary, real PostgreSQL and RabbitMQ, one database and one
//! queue prefix per test.

mod api_errors;
mod auth;
mod pipeline;
mod provisioning;
mod rate_limit;
mod resilience;
