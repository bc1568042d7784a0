//! Test tools: the in-process `TestApp` spawner, the modem simulator, a cuttable TCP proxy
//! for outage tests, a spy on exchanges, a reader of `/metrics` pages, and helpers shared by
//! the integration suite and the benchmark harness (`tools/bench`). The mock HKT gateway that
//! `TestApp` starts is its own crate, `smsgate-mock-hkt` (`tools/mock-hkt`).

pub mod app;
pub mod authz;
pub mod modem_sim;
pub mod proxy;
pub mod scrape;
pub mod socketio;
pub mod spy;
pub mod webhook_receiver;
