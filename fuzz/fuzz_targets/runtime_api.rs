//! Runtime API request handling against a real endpoint (see checks::parse_requests).
#![no_main]
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    checks::runtime_api(data);
});
