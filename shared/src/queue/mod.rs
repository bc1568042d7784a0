//! The RabbitMQ contract, defined once: names, routing keys, headers, job and event
//! payloads, the topology every process declares, and a reconnecting broker handle.
//!
//! Payloads are serde JSON with a `type` tag naming a versioned variant (`SendV1`).
//! Evolve by adding optional fields or new variants, never by changing a meaning.

mod broker;
mod contract;
mod dead;
pub mod edge;
mod events;
mod headers;
mod jobs;
mod mismatch;
mod topology;

pub use broker::{Broker, BrokerError, ConfirmedPublisher, OutgoingMessage};
pub use contract::{routing, Names};
pub use dead::{bury_in_dead_queue, copy_to_dead_queue};
pub use events::{RecipientUpdate, StatusEvent};
pub use headers::{
    attempt_of, current_traceparent, job_headers, job_headers_for, with_attempt, ATTEMPT_HEADER,
    TRACEPARENT_HEADER,
};
pub use jobs::OutboundJob;
pub use mismatch::{QueueMismatch, TopologyError};
pub use topology::{declare_central, declare_edge_ingest, declare_sim_queue, declare_topology};
