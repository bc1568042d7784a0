//! The benchmark harness behind `make bench`: starts a stack of release binaries on its
//! own database and queue prefix, runs every scenario of issue #5 and the gateway-limited
//! ones of issue #14, prints a table and
//! writes `docs/benchmarks.md` with a plot. `--smoke` runs tiny sizes (CI keeps the
//! harness working that way) and writes under `target/` instead.

pub mod gateway;
pub mod load;
pub mod memory;
pub mod report;
pub mod scenarios;
pub mod stack;
