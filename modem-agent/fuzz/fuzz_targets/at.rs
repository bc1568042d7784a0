//! cargo fuzz target `at`: see `smsgate_modem_agent::fuzzing::at`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| smsgate_modem_agent::fuzzing::at(data));
