//! What the edge gateway's system calls read: host and process memory, database size and
//! the message and SIM figures.

pub mod memory;
pub mod repo;
