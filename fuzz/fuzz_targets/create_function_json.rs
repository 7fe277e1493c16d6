//! CreateFunction body decoding: the raw bytes as a body, then a JSON object built from them.
#![no_main]
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    checks::create_function_body(data);
    let v = checks::json_from_bytes(data);
    checks::create_function_body(&serde_json::to_vec(&v).unwrap_or_default());
});
