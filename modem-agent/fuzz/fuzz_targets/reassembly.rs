//! cargo fuzz target `reassembly`: see `smsgate_modem_agent::fuzzing::reassembly`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| smsgate_modem_agent::fuzzing::reassembly(data));
