//! The `application/vnd.amazon.eventstream` framing (InvokeWithResponseStream's response):
//! each message is a prelude (total length, headers length, CRC32 of those 8 bytes), the
//! headers, the payload and a CRC32 of everything before it; all integers big-endian.

/// One message whose headers are all strings (type 7), as AWS's event messages are.
pub fn message(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut head = Vec::new();
    for (name, value) in headers {
        head.push(name.len() as u8);
        head.extend_from_slice(name.as_bytes());
        head.push(7);
        head.extend_from_slice(&(value.len() as u16).to_be_bytes());
        head.extend_from_slice(value.as_bytes());
    }
    let total = 12 + head.len() + payload.len() + 4;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&(total as u32).to_be_bytes());
    out.extend_from_slice(&(head.len() as u32).to_be_bytes());
    let prelude_crc = crate::aws::checksum::crc32(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(payload);
    let crc = crate::aws::checksum::crc32(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// An `event` message of type `event_type`.
pub fn event(event_type: &str, content_type: &str, payload: &[u8]) -> Vec<u8> {
    message(&[(":event-type", event_type), (":content-type", content_type), (":message-type", "event")], payload)
}

#[cfg(test)]
mod tests {
    #[test]
    fn framing() {
        let m = super::event("PayloadChunk", "application/octet-stream", b"hello");
        let total = u32::from_be_bytes(m[0..4].try_into().unwrap()) as usize;
        let headers = u32::from_be_bytes(m[4..8].try_into().unwrap()) as usize;
        assert_eq!(total, m.len());
        assert_eq!(&m[12 + headers..total - 4], b"hello");
        assert_eq!(u32::from_be_bytes(m[8..12].try_into().unwrap()), crate::aws::checksum::crc32(&m[0..8]));
        assert_eq!(
            u32::from_be_bytes(m[total - 4..].try_into().unwrap()),
            crate::aws::checksum::crc32(&m[..total - 4])
        );
    }
}
