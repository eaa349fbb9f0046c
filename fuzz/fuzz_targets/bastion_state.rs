#![no_main]
// See byok_ceremony::fuzzing::bastion_state for what is checked (needs --features bastion).
libfuzzer_sys::fuzz_target!(|data: &[u8]| byok_ceremony::fuzzing::bastion_state(data));
