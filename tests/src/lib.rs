//! Test tools: the mock HKT gateway, the in-process `TestApp` spawner, a cuttable TCP
//! proxy for outage tests, a spy on exchanges, a reader of `/metrics` pages, and helpers shared
//! by the integration suite and the benchmark.

pub mod app;
pub mod authz;
pub mod modem_sim;
pub mod proxy;
pub mod scrape;
pub mod socketio;
pub mod spy;
pub mod webhook_receiver;
