//! The edge gateway's SIM cards: registering and assigning them, their agents' state, what
//! they received (inbox) and sent (outgoing), and the edge gateway's API keys.

pub mod broker_users;
pub mod repo;
pub mod service;
