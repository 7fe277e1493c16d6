//! The digests AWS wire formats carry, in one place: CRC32 (S3 checksums and event-stream
//! framing), CRC32C, CRC64-NVME, SHA-1, SHA-256 and MD5, each from a maintained crate.

use crc_fast::CrcAlgorithm;
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// CRC-32 (IEEE 802.3, "ISO-HDLC"), as S3's `x-amz-checksum-crc32` and event-stream framing use it.
pub fn crc32(data: &[u8]) -> u32 {
    // A 32-bit CRC always fits in the low half of the u64 the crate returns.
    crc_fast::checksum(CrcAlgorithm::Crc32IsoHdlc, data) as u32
}

/// CRC-32C (Castagnoli, "iSCSI").
pub fn crc32c(data: &[u8]) -> u32 {
    crc_fast::checksum(CrcAlgorithm::Crc32Iscsi, data) as u32
}

/// CRC-64/NVME, S3's `x-amz-checksum-crc64nvme`.
pub fn crc64nvme(data: &[u8]) -> u64 {
    crc_fast::checksum(CrcAlgorithm::Crc64Nvme, data)
}

pub fn sha1(data: &[u8]) -> [u8; 20] {
    Sha1::digest(data).into()
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

pub fn md5(data: &[u8]) -> [u8; 16] {
    Md5::digest(data).into()
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_values() {
        // The standard "123456789" check value of each CRC.
        let data = b"123456789";
        assert_eq!(crc32(data), 0xCBF4_3926);
        assert_eq!(crc32c(data), 0xE306_9283);
        assert_eq!(crc64nvme(data), 0xAE8B_1486_0A79_9888);
        assert_eq!(crc32(b""), 0);
        assert_eq!(hex(&sha1(b"abc")), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(hex(&sha256(b"")), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(hex(&md5(b"")), "d41d8cd98f00b204e9800998ecf8427e");
    }

    #[test]
    fn large_inputs_match_a_bytewise_reference() {
        // The SIMD paths take over past a few hundred bytes: compare against the plain
        // reflected-table definition over a buffer long enough to use them.
        fn reference32(poly: u32, data: &[u8]) -> u32 {
            let mut crc = !0u32;
            for &b in data {
                crc ^= u32::from(b);
                for _ in 0..8 {
                    crc = if crc & 1 != 0 { (crc >> 1) ^ poly } else { crc >> 1 };
                }
            }
            !crc
        }
        fn reference64(poly: u64, data: &[u8]) -> u64 {
            let mut crc = !0u64;
            for &b in data {
                crc ^= u64::from(b);
                for _ in 0..8 {
                    crc = if crc & 1 != 0 { (crc >> 1) ^ poly } else { crc >> 1 };
                }
            }
            !crc
        }
        let data: Vec<u8> = (0..100_003u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        assert_eq!(crc32(&data), reference32(0xEDB8_8320, &data));
        assert_eq!(crc32c(&data), reference32(0x82F6_3B78, &data));
        assert_eq!(crc64nvme(&data), reference64(0x9A6C_9329_AC4B_C9B5, &data));
    }
}
