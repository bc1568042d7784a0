//! The modem agent: one per Raspberry Pi and GSM modem. It consumes its SIM's queue and
//! sends each job with AT commands, publishes results, delivery reports, received SMS and
//! heartbeats, and keeps what it received on the SIM (or in its spool) until the broker
//! confirmed it. No database, no web framework: it talks to RabbitMQ and a serial port.
//!
//! `main.rs` reads [`Settings`] and calls [`start`] with a [`SerialDevice`]; the
//! integration tests call [`start`] with the modem simulator as the [`ModemPort`].

mod agent;
pub mod at;
#[doc(hidden)]
pub mod fuzzing;
pub mod inbound;
pub mod job;
pub mod modem;
pub mod pdu;
pub mod port;
pub mod settings;
mod spool;

pub use agent::{start, RunningAgent, StartError};
pub use port::{ModemPort, SerialDevice};
pub use settings::Settings;
