//! Invoke payloads must be JSON: what is not gets AWS's `InvalidRequestContentException`, worded
//! as AWS's (Jackson) parser words it, before any function runs.

use crate::aws::AwsError;

const PREFIX: &str = "Could not parse request body into json: Could not parse payload into json: ";
const EXPECTED: &str = "(JSON String, Number, Array, Object or token 'null', 'true' or 'false')";

/// Ok for JSON and for an empty (or all-whitespace) payload, which the function gets as `{}`.
pub fn check(payload: &[u8]) -> Result<(), AwsError> {
    let Some(start) = payload.iter().position(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r')) else {
        return Ok(());
    };
    if serde_json::from_slice::<serde::de::IgnoredAny>(payload).is_ok() {
        return Ok(());
    }
    let (detail, at) = root_error(payload, start).unwrap_or_else(|| serde_detail(payload));
    let (line, column) = at;
    Err(AwsError::invalid_content(format!(
        "{PREFIX}{detail}\n at [Source: REDACTED (`StreamReadFeature.INCLUDE_SOURCE_IN_LOCATION` disabled); line: {line}, column: {column}]"
    )))
}

/// Line and column (both 1-based) of byte `i`, as Jackson counts them.
fn location(p: &[u8], i: usize) -> (usize, usize) {
    let line = 1 + p[..i].iter().filter(|&&b| b == b'\n').count();
    let row_start = p[..i].iter().rposition(|&b| b == b'\n').map_or(0, |n| n + 1);
    (line, i - row_start + 1)
}

/// Jackson's answer when the root value cannot even start: a bad character or a bare word.
/// `None` for payloads that start like JSON and break later (see [`serde_detail`]).
fn root_error(p: &[u8], start: usize) -> Option<(String, (usize, usize))> {
    let c = p[start];
    if matches!(c, b'{' | b'[' | b'"' | b'-' | b'0'..=b'9') {
        return None;
    }
    let word_start = matches!(c, b'n' | b't' | b'f') || identifier_start(c);
    if !word_start {
        return Some((
            format!("Unexpected character ({}): expected a valid value {EXPECTED}", describe(c)),
            location(p, start),
        ));
    }
    // Jackson reads the rest of the word (decoding UTF-8) to name it, consuming the byte that ends it.
    let mut word = String::new();
    let mut i = start;
    while i < p.len() {
        let (ch, len) = match decode(p, i) {
            Ok(d) => d,
            Err(msg) => return Some((msg, location(p, i + 1))),
        };
        if !identifier_part(ch) {
            if matches!(word.as_str(), "null" | "true" | "false") {
                return None;
            }
            i += len;
            return Some(unrecognized(p, &word, i));
        }
        word.push(ch);
        i += len;
        if word.chars().count() >= 256 {
            word.push_str("...");
            return Some(unrecognized(p, &word, i));
        }
    }
    if matches!(word.as_str(), "null" | "true" | "false") {
        return None;
    }
    Some(unrecognized(p, &word, p.len()))
}

fn unrecognized(p: &[u8], word: &str, next: usize) -> (String, (usize, usize)) {
    let (line, col) = if next == 0 { (1, 1) } else { location(p, next - 1) };
    (format!("Unrecognized token '{word}': was expecting {EXPECTED}"), (line, col + 1))
}

/// One character at `i`: ASCII as is, multi-byte UTF-8 decoded; Jackson's messages for bad bytes.
fn decode(p: &[u8], i: usize) -> Result<(char, usize), String> {
    let b = p[i];
    if b < 0x80 {
        return Ok((b as char, 1));
    }
    let len = match b {
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        _ => return Err(format!("Invalid UTF-8 start byte 0x{b:x}")),
    };
    let bytes = p.get(i..i + len).ok_or_else(|| "Unexpected end-of-input in UTF-8 character".to_string())?;
    if let Some(bad) = bytes[1..].iter().find(|&&m| m & 0xc0 != 0x80) {
        return Err(format!("Invalid UTF-8 middle byte 0x{bad:x}"));
    }
    let s = std::str::from_utf8(bytes).map_err(|_| format!("Invalid UTF-8 start byte 0x{b:x}"))?;
    Ok((s.chars().next().unwrap_or('\u{fffd}'), len))
}

/// Java's `Character.isISOControl`, for a byte read as Latin-1.
fn iso_control(c: u8) -> bool {
    c < 0x20 || (0x7f..=0x9f).contains(&c)
}

/// Java's `isJavaIdentifierStart` for a root byte (Latin-1).
fn identifier_start(c: u8) -> bool {
    let ch = c as char;
    ch.is_alphabetic() || c == b'$' || c == b'_'
}

/// Java's `isJavaIdentifierPart`: letters, digits, `$`, `_` and the ignorable controls.
fn identifier_part(ch: char) -> bool {
    ch.is_alphanumeric() || ch == '$' || ch == '_' || matches!(ch as u32, 0x00..=0x08 | 0x0e..=0x1b | 0x7f..=0x9f)
}

/// Jackson's `_getCharDesc`.
fn describe(c: u8) -> String {
    if iso_control(c) { format!("(CTRL-CHAR, code {c})") } else { format!("'{}' (code {c})", c as char) }
}

/// Payloads that start as JSON and break later: serde_json's reason at its position.
fn serde_detail(p: &[u8]) -> (String, (usize, usize)) {
    match serde_json::from_slice::<serde::de::IgnoredAny>(p) {
        Err(e) => {
            let text = e.to_string();
            let reason = text.split(" at line ").next().unwrap_or(&text).to_string();
            (reason, (e.line().max(1), e.column().max(1)))
        }
        Ok(_) => (String::from("invalid JSON"), (1, 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(p: &[u8]) -> String {
        check(p).unwrap_err().message
    }

    const SRC: &str = "\n at [Source: REDACTED (`StreamReadFeature.INCLUDE_SOURCE_IN_LOCATION` disabled); ";

    #[test]
    fn aws_recorded_answers() {
        // Both recorded in test_lambda.snapshot.json (test_lambda_invoke_payload_encoding_error).
        assert_eq!(
            msg(b"n\x87r\x9e\xe9\xb5\xd7I\xee\x9bmt"),
            format!("{PREFIX}Invalid UTF-8 start byte 0x87{SRC}line: 1, column: 3]")
        );
        assert_eq!(
            msg(b"\x99\xeb,j\x07\xa1zYh"),
            format!(
                "{PREFIX}Unexpected character ((CTRL-CHAR, code 153)): expected a valid value {EXPECTED}{SRC}line: 1, column: 1]"
            )
        );
    }

    #[test]
    fn words_and_json() {
        assert_eq!(
            msg(b"hello"),
            format!("{PREFIX}Unrecognized token 'hello': was expecting {EXPECTED}{SRC}line: 1, column: 6]")
        );
        assert_eq!(
            msg(b"hello world"),
            format!("{PREFIX}Unrecognized token 'hello': was expecting {EXPECTED}{SRC}line: 1, column: 7]")
        );
        assert!(check(b"").is_ok());
        assert!(check(b"  \n").is_ok());
        assert!(check(b"null").is_ok());
        assert!(check(br#"{"a": [1, "x"]}"#).is_ok());
        assert!(msg(b"<xml/>").contains("Unexpected character ('<' (code 60))"));
        assert!(msg(b"{\"a\": ").starts_with(PREFIX));
        assert!(msg(b"nullx").contains("Unrecognized token 'nullx'"));
        assert!(msg(b"null x").starts_with(&format!("{PREFIX}trailing characters")));
    }
}
