//! Body integrity: Content-MD5, x-amz-content-sha256 and the flexible
//! `x-amz-checksum-*` values that SDKs send (botocore sends CRC32 by default).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use http::HeaderMap;
use serde::{Deserialize, Serialize};

use crate::aws::checksum::{self as digest, hex, md5};

use super::error::ApiError;

/// A checksum the client sent and we verified; returned on PutObject and on
/// GetObject/HeadObject with `x-amz-checksum-mode: ENABLED`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checksum {
    /// Lowercase algorithm as in the header name: `crc32`, `crc32c`, `crc64nvme`, `sha1`, `sha256`.
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

/// The base64 digest of `data` for `algorithm` (one of `ALGORITHMS`), or `None` for another name.
pub fn compute(algorithm: &str, data: &[u8]) -> Option<String> {
    let raw: Vec<u8> = match algorithm {
        "crc32" => digest::crc32(data).to_be_bytes().to_vec(),
        "crc32c" => digest::crc32c(data).to_be_bytes().to_vec(),
        "crc64nvme" => digest::crc64nvme(data).to_be_bytes().to_vec(),
        "sha1" => digest::sha1(data).to_vec(),
        "sha256" => digest::sha256(data).to_vec(),
        _ => return None,
    };
    Some(B64.encode(raw))
}

/// Checks every digest the request carries against the decoded `body` and
/// returns the flexible checksum worth keeping. `trailers` come from an
/// aws-chunked body; `signed_sha256` is `x-amz-content-sha256` when it is a
/// digest of the raw payload (not `UNSIGNED-PAYLOAD` or `STREAMING-*`).
pub fn verify(headers: &HeaderMap, trailers: &[(String, String)], body: &[u8]) -> Result<Option<Checksum>, ApiError> {
    if let Some(sha) = headers.get("x-amz-content-sha256").and_then(|v| v.to_str().ok())
        && sha.len() == 64
        && sha.bytes().all(|b| b.is_ascii_hexdigit())
        && !sha.eq_ignore_ascii_case(&hex(&digest::sha256(body)))
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
        return match compute(algorithm, body) {
            Some(actual) if actual == given.trim() => {
                Ok(Some(Checksum { algorithm: algorithm.to_string(), value: actual }))
            }
            _ => Err(ApiError::BadDigest(algorithm.to_ascii_uppercase())),
        };
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
        assert_eq!(raw(&compute("sha1", b"abc").unwrap()), digest::sha1(b"abc"));
        assert_eq!(compute("md5", data), None);
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
        h.insert("x-amz-content-sha256", hex(&digest::sha256(b"x")).parse().unwrap());
        assert!(verify(&h, &[], b"x").is_ok());
        assert!(matches!(verify(&h, &[], b"y"), Err(ApiError::ContentSha256Mismatch)));
        h.insert("x-amz-content-sha256", "UNSIGNED-PAYLOAD".parse().unwrap());
        assert!(verify(&h, &[], b"y").is_ok());
    }

    #[test]
    fn sha1_is_verified() {
        let mut h = HeaderMap::new();
        h.insert("x-amz-checksum-sha1", B64.encode(digest::sha1(b"hello")).parse().unwrap());
        let c = verify(&h, &[], b"hello").unwrap().unwrap();
        assert_eq!(c.header_name(), "x-amz-checksum-sha1");
        assert_eq!(c.value, "qvTGHdzF6KLavt4PO0gs2a6pQ00=");
        match verify(&h, &[], b"hellp") {
            Err(ApiError::BadDigest(which)) => assert_eq!(which, "SHA1"),
            other => panic!("expected BadDigest, got {other:?}"),
        }
    }
}
