//! Wire helpers shared by every service: AWS errors (one renderer per protocol), ARNs,
//! checksums, XML, event-stream framing, request ids, time formats and the atomic file write (`fs`).

pub mod arn;
pub mod checksum;
pub mod error;
pub mod eventstream;
pub mod fs;
pub mod xml;

pub use error::AwsError;

/// A fresh request id (random UUID v4), as AWS uses for `x-amzn-RequestId`.
pub fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A new X-Ray trace header: `Root=1-<epoch seconds, hex>-<24 hex digits>`, then
/// `;Parent=<16 hex digits>;Sampled=0` when `parent` (what a runtime gets per invocation).
pub fn trace_header(parent: bool) -> String {
    use std::fmt::Write;
    let now = epoch_ms() / 1000;
    let mut buf = [0u8; uuid::fmt::Simple::LENGTH];
    let r = uuid::Uuid::new_v4().simple().encode_lower(&mut buf);
    // Pushed piece by piece: it is made for every invocation.
    let mut out = String::with_capacity(72);
    out.push_str("Root=1-");
    let _ = write!(out, "{now:08x}");
    out.push('-');
    out.push_str(&r[..24]);
    if parent {
        out.push_str(";Parent=");
        out.push_str(&r[16..32]);
        out.push_str(";Sampled=0");
    }
    out
}

/// `2020-04-10T19:06:32.563+0000`, the format of LastModified and CreatedDate.
pub fn timestamp_now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()
}

/// Milliseconds since the Unix epoch.
pub fn epoch_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
