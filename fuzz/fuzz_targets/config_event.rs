#![no_main]
// See byok_ceremony::fuzzing::config_event for what is checked (needs --features config-rule).
libfuzzer_sys::fuzz_target!(|data: &[u8]| byok_ceremony::fuzzing::config_event(data));
