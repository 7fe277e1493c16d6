//! Function names, ARNs, qualifiers, layer ARNs, roles and credential scopes.
#![no_main]
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    checks::names(&String::from_utf8_lossy(data));
});
