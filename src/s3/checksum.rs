//! Body integrity: Content-MD5, x-amz-content-sha256 and the flexible
//! `x-amz-checksum-*` values that SDKs send (botocore sends CRC32 by default).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use http::HeaderMap;
use md5::Md5;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::error::ApiError;

/// A checksum the client sent and we verified; returned on PutObject and on
/// GetObject/HeadObject with `x-amz-checksum-mode: ENABLED`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checksum {
    /// Lowercase algorithm as in the header name: `crc32`, `crc32c`, `crc64nvme`, `sha256`.
    pub algorithm: String,
    /// Base64 of the big-endian digest, as on the wire.
    pub value: String,
}

impl Checksum {
    pub fn header_name(&self) -> String {
        format!("x-amz-checksum-{}", self.algorithm)
    }
}

const ALGORITHMS: [&str; 5] = ["crc32", "crc32c", "crc64nvme", "sha1", "sha256"];

const fn crc32_table(poly: u32) -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ poly } else { c >> 1 };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

const fn crc64_table(poly: u64) -> [u64; 256] {
    let mut table = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u64;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ poly } else { c >> 1 };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

static CRC32: [u32; 256] = crc32_table(0xEDB8_8320);
static CRC32C: [u32; 256] = crc32_table(0x82F6_3B78);
static CRC64NVME: [u64; 256] = crc64_table(0x9A6C_9329_AC4B_C9B5);

/// CRC-32 (IEEE), as S3 checksums and event-stream framing use it.
pub fn crc32(data: &[u8]) -> u32 {
    crc32_with(&CRC32, data)
}

fn crc32_with(table: &[u32; 256], data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc = table[((crc ^ b as u32) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

fn crc64nvme(data: &[u8]) -> u64 {
    let mut crc = !0u64;
    for &b in data {
        crc = CRC64NVME[((crc ^ b as u64) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

/// The base64 digest of `data` for `algorithm`, or `None` for one we cannot compute (sha1).
pub fn compute(algorithm: &str, data: &[u8]) -> Option<String> {
    let raw: Vec<u8> = match algorithm {
        "crc32" => crc32_with(&CRC32, data).to_be_bytes().to_vec(),
        "crc32c" => crc32_with(&CRC32C, data).to_be_bytes().to_vec(),
        "crc64nvme" => crc64nvme(data).to_be_bytes().to_vec(),
        "sha256" => Sha256::digest(data).to_vec(),
        _ => return None,
    };
    Some(B64.encode(raw))
}

pub fn md5(data: &[u8]) -> [u8; 16] {
    Md5::digest(data).into()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks every digest the request carries against the decoded `body` and
/// returns the flexible checksum worth keeping. `trailers` come from an
/// aws-chunked body; `signed_sha256` is `x-amz-content-sha256` when it is a
/// digest of the raw payload (not `UNSIGNED-PAYLOAD` or `STREAMING-*`).
pub fn verify(headers: &HeaderMap, trailers: &[(String, String)], body: &[u8]) -> Result<Option<Checksum>, ApiError> {
    if let Some(sha) = headers.get("x-amz-content-sha256").and_then(|v| v.to_str().ok())
        && sha.len() == 64
        && sha.bytes().all(|b| b.is_ascii_hexdigit())
        && !sha.eq_ignore_ascii_case(&hex(&Sha256::digest(body)))
    {
        return Err(ApiError::ContentSha256Mismatch);
    }
    if let Some(md5_header) = headers.get("content-md5") {
        let given = md5_header
            .to_str()
            .ok()
            .and_then(|v| B64.decode(v.trim()).ok())
            .filter(|d| d.len() == 16)
            .ok_or(ApiError::InvalidDigest)?;
        if given != md5(body) {
            return Err(ApiError::BadDigest("Content-MD5".into()));
        }
    }
    for algorithm in ALGORITHMS {
        let name = format!("x-amz-checksum-{algorithm}");
        let given = headers
            .get(name.as_str())
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .or_else(|| trailers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone()));
        let Some(given) = given else { continue };
        match compute(algorithm, body) {
            Some(actual) if actual == given.trim() => {
                return Ok(Some(Checksum { algorithm: algorithm.to_string(), value: actual }));
            }
            Some(_) => return Err(ApiError::BadDigest(algorithm.to_ascii_uppercase())),
            // Accepted unverified, and not echoed back.
            None => return Ok(None),
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(b64: &str) -> Vec<u8> {
        B64.decode(b64).unwrap()
    }

    #[test]
    fn check_values() {
        // The standard "123456789" check values of each CRC.
        let data = b"123456789";
        assert_eq!(raw(&compute("crc32", data).unwrap()), 0xCBF4_3926u32.to_be_bytes());
        assert_eq!(raw(&compute("crc32c", data).unwrap()), 0xE306_9283u32.to_be_bytes());
        assert_eq!(raw(&compute("crc64nvme", data).unwrap()), 0xAE8B_1486_0A79_9888u64.to_be_bytes());
        assert_eq!(compute("sha1", data), None);
        // botocore's CRC32 of b"hello world".
        assert_eq!(compute("crc32", b"hello world").unwrap(), "DUoRhQ==");
    }

    #[test]
    fn verify_headers() {
        let mut h = HeaderMap::new();
        h.insert("x-amz-checksum-crc32", "DUoRhQ==".parse().unwrap());
        let c = verify(&h, &[], b"hello world").unwrap().unwrap();
        assert_eq!(c.header_name(), "x-amz-checksum-crc32");
        assert!(matches!(verify(&h, &[], b"hello"), Err(ApiError::BadDigest(_))));

        let mut h = HeaderMap::new();
        h.insert("content-md5", B64.encode(md5(b"abc")).parse().unwrap());
        assert_eq!(verify(&h, &[], b"abc").unwrap(), None);
        assert!(matches!(verify(&h, &[], b"abd"), Err(ApiError::BadDigest(_))));
        h.insert("content-md5", "not base64!".parse().unwrap());
        assert!(matches!(verify(&h, &[], b"abc"), Err(ApiError::InvalidDigest)));

        let trailers = vec![("x-amz-checksum-crc32".to_string(), "DUoRhQ==".to_string())];
        assert!(verify(&HeaderMap::new(), &trailers, b"hello world").unwrap().is_some());

        let mut h = HeaderMap::new();
        h.insert("x-amz-content-sha256", hex(&Sha256::digest(b"x")).parse().unwrap());
        assert!(verify(&h, &[], b"x").is_ok());
        assert!(matches!(verify(&h, &[], b"y"), Err(ApiError::ContentSha256Mismatch)));
        h.insert("x-amz-content-sha256", "UNSIGNED-PAYLOAD".parse().unwrap());
        assert!(verify(&h, &[], b"y").is_ok());
    }
}
