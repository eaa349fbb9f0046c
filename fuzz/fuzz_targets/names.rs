#![no_main]
// See byok_ceremony::fuzzing::names for what is checked.
libfuzzer_sys::fuzz_target!(|data: &[u8]| byok_ceremony::fuzzing::names(data));
