//! Zip extraction into a scratch dir: arbitrary bytes and mutated valid zips (the seeds).
#![no_main]
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    checks::extract(data);
});
