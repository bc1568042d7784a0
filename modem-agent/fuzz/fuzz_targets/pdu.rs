//! cargo fuzz target `pdu`: see `smsgate_modem_agent::fuzzing::pdu`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| smsgate_modem_agent::fuzzing::pdu(data));
