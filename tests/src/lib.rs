//! Test tools: the mock HKT gateway, the in-process `TestApp` spawner and helpers
//! shared by the integration suite and the benchmark harness.

pub mod mock_hkt;
