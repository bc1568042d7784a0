//! The integration suite: one binary, real PostgreSQL and RabbitMQ, one database and one
//! queue prefix per test.

mod admin_api;
mod api_errors;
mod auth;
mod authz_matrix;
mod bounded_input;
mod consumer_acks;
mod credential_revocation;
mod deploy_files;
mod edge_agent;
mod edge_api;
mod edge_radio;
mod edge_system;
mod idempotency;
mod login_throttle;
mod metrics;
mod pipeline;
mod provisioning;
mod quotas;
mod rate_limit;
mod resilience;
mod result_writes;
mod sim_access;
mod status_sockets;
mod traffic;
mod web_admin;
mod web_auth;
mod web_compose;
mod web_history;
mod web_history_scale;
mod web_sims;
mod web_traffic;
mod web_webhooks;
mod webhook_secrets;
mod webhooks;
