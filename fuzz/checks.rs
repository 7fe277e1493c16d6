//! The properties every fuzz target checks, shared by the libFuzzer targets
//! (`fuzz/fuzz_targets/*.rs`) and the short proptest run in `cargo test`
//! (`tests/fuzz_props.rs`), which include this file with `#[path]`.
//!
//! Each function takes raw input, feeds it to one part of RustStack and panics when a
//! property breaks. A panic anywhere, including inside a server task, is a finding.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use ruststack::aws::arn;
use ruststack::lambda::code::{self, Limits};
use serde_json::{Map, Value};

// ---------- names, ARNs, qualifiers ----------

/// Name, ARN and qualifier parsing: never panics; whatever parses is valid and survives a
/// round trip through the ARN builders.
pub fn names(input: &str) {
    if let Ok(r) = arn::parse_function_ref(input) {
        // Up to 170 bytes (GetFunction's and Invoke's limit); a name part longer than 64 parses
        // (AWS answers it with a 404), so only its characters are checked here.
        assert!(input.len() <= 170, "accepted a {}-byte function ref", input.len());
        assert!(
            !r.name.is_empty() && r.name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'),
            "parsed name {:?} has characters a name cannot have",
            r.name
        );
        if let Some(q) = &r.qualifier {
            assert!(q == "$LATEST" || (!q.is_empty() && q.len() <= 128), "bad qualifier {q:?}");
        }
        let region = r.region.as_deref().unwrap_or("us-east-1");
        let account = r.account.as_deref().unwrap_or("000000000000");
        let full = arn::function_arn(region, account, &r.name, r.qualifier.as_deref());
        if full.len() <= 170 {
            let again = arn::parse_function_ref(&full).expect("a built ARN must parse");
            assert_eq!((&again.name, &again.qualifier), (&r.name, &r.qualifier), "round trip of {input:?}");
        }
    }
    if let Some(l) = arn::parse_layer_version_arn(input) {
        assert!(l.version > 0);
        arn::validate_layer_name(&l.name).expect("parsed layer name must be valid");
        let built = arn::layer_version_arn(&l.region, &l.account, &l.name, l.version);
        if let Some(again) = arn::parse_layer_version_arn(&built) {
            assert_eq!((again.name, again.version), (l.name, l.version));
        }
    }
    if let Ok(n) = arn::parse_layer_name(input) {
        arn::validate_layer_name(&n).expect("parsed layer name must be valid");
        assert!(input.len() <= 140);
    }
    let _ = arn::validate_function_name(input);
    let _ = arn::validate_layer_name(input);
    let _ = arn::validate_role(input);
    let _ = arn::credential_scope(input);
    let _ = ruststack::http_util::query_pairs(Some(input));
    let _ = ruststack::http_util::decode_segment(input);
}

// ---------- control-plane JSON ----------

/// CreateFunction decoding: never panics; an accepted body yields a configuration inside
/// AWS's limits.
pub fn create_function_body(body: &[u8]) {
    let Ok(c) = ruststack::lambda::api::decode_create_function(body) else { return };
    arn::validate_function_name(&c.name).expect("accepted an invalid function name");
    assert!((1..=900).contains(&c.timeout), "timeout {}", c.timeout);
    assert!((128..=10240).contains(&c.memory_size), "memory {}", c.memory_size);
    // The package type is Zip or Image by its type.
    if c.package_type == ruststack::lambda::model::PackageType::Zip {
        assert!(c.runtime.is_some(), "a Zip function without a runtime");
    }
    for k in c.environment.keys() {
        let well_formed = k.len() >= 2
            && k.starts_with(|ch: char| ch.is_ascii_alphabetic())
            && k.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_');
        assert!(well_formed, "accepted the variable name {k:?}");
        assert!(!ruststack::lambda::api::RESERVED_ENV_KEYS.contains(&k.as_str()), "accepted the reserved variable {k}");
    }
    let scope = ruststack::lambda::model::Scope { region: "us-east-1".into(), account: "000000000000".into() };
    let _ = serde_json::to_vec(&c.to_json(&scope, false)).expect("config renders");
}

/// Fields CreateFunction reads, so generated objects hit real members often.
pub const FIELDS: &[&str] = &[
    "FunctionName",
    "Role",
    "Runtime",
    "Handler",
    "Code",
    "ZipFile",
    "S3Bucket",
    "S3Key",
    "ImageUri",
    "Description",
    "Timeout",
    "MemorySize",
    "Publish",
    "PackageType",
    "Environment",
    "AWS_REGION",
    "Variables",
    "Layers",
    "Architectures",
    "ImageConfig",
    "TracingConfig",
    "Mode",
    "EphemeralStorage",
    "Size",
    "LoggingConfig",
    "Tags",
    "VpcConfig",
    "DeadLetterConfig",
    "KMSKeyArn",
];
/// Strings that get past the first checks.
pub const STRINGS: &[&str] = &[
    "fn",
    "arn:aws:iam::000000000000:role/lambda",
    "python3.12",
    "provided.al2023",
    "app.handler",
    "Zip",
    "Image",
    "x86_64",
    "arm64",
    "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA==",
    "$LATEST",
    "arn:aws:lambda:us-east-1:000000000000:function:fn",
    "Active",
];

/// A JSON value read from fuzz bytes: objects mostly use real field names, strings mostly
/// plausible values, so arbitrary input reaches deep into the decoder.
pub fn json_from_bytes(data: &[u8]) -> Value {
    let mut r = ByteReader { data, pos: 0 };
    let mut top = Map::new();
    let n = 1 + r.byte() % 12;
    for _ in 0..n {
        let k = r.key();
        top.insert(k, r.value(0));
    }
    Value::Object(top)
}

struct ByteReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl ByteReader<'_> {
    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    fn u64(&mut self) -> u64 {
        (0..8).fold(0u64, |acc, _| (acc << 8) | u64::from(self.byte()))
    }

    fn raw_string(&mut self) -> String {
        let len = usize::from(self.byte() % 48);
        let start = self.pos.min(self.data.len());
        let end = (start + len).min(self.data.len());
        self.pos += len;
        String::from_utf8_lossy(&self.data[start..end]).into_owned()
    }

    fn key(&mut self) -> String {
        let b = self.byte();
        if b < 224 { FIELDS[usize::from(b) % FIELDS.len()].to_string() } else { self.raw_string() }
    }

    fn value(&mut self, depth: u32) -> Value {
        let kind = self.byte() % if depth > 3 { 6 } else { 9 };
        match kind {
            0 => Value::Null,
            1 => Value::Bool(self.byte() & 1 == 1),
            2 => Value::from(self.u64() % 2048),
            3 => Value::from(self.u64() as i64),
            4 => serde_json::Number::from_f64(self.u64() as f64 / 7.0).map_or(Value::Null, Value::Number),
            5 => {
                let b = self.byte();
                if b < 160 {
                    Value::from(STRINGS[usize::from(b) % STRINGS.len()])
                } else {
                    Value::from(self.raw_string())
                }
            }
            6 => Value::Array((0..self.byte() % 6).map(|_| self.value(depth + 1)).collect()),
            _ => {
                let mut m = Map::new();
                for _ in 0..self.byte() % 6 {
                    let k = self.key();
                    m.insert(k, self.value(depth + 1));
                }
                Value::Object(m)
            }
        }
    }
}

// ---------- zip extraction ----------

/// Small limits keep each run fast; the checks are the same as with AWS's.
pub fn fuzz_limits() -> Limits {
    Limits { max_unzipped_bytes: 4 * 1024 * 1024, max_entries: 2_000, max_zip_bytes: 2 * 1024 * 1024 }
}

/// Zip extraction: never panics; on success every path under the code dir is a directory, a
/// regular file or a link that resolves inside it; nothing else appears beside it; on
/// failure nothing is left behind.
pub fn extract(bytes: &[u8]) {
    let base = scratch_dir();
    let dest = base.join("code");
    let result = code::extract_zip(bytes, &dest, &fuzz_limits());
    let beside: Vec<String> = std::fs::read_dir(&base)
        .expect("scratch dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    match &result {
        Ok(summary) => {
            assert_eq!(beside, vec!["code".to_string()], "extraction left files beside the code dir");
            let root = std::fs::canonicalize(&dest).expect("code dir");
            check_inside(&root, &root);
            for f in &summary.files {
                let meta = std::fs::symlink_metadata(dest.join(f)).expect("listed file exists");
                assert!(meta.is_file(), "{f} is listed as a file");
            }
        }
        Err(_) => assert!(beside.is_empty(), "a failed extraction left {beside:?}"),
    }
    let _ = std::fs::remove_dir_all(&base);
    // The per-process parent goes too once it is empty (another check may still use it).
    if let Some(parent) = base.parent() {
        let _ = std::fs::remove_dir(parent);
    }
    // validate_zip must agree with extract_zip about safety.
    if result.is_ok() {
        code::validate_zip(bytes, &fuzz_limits()).expect("extractable zip must validate");
    }
}

fn check_inside(root: &Path, dir: &Path) {
    for e in std::fs::read_dir(dir).expect("readable").flatten() {
        let p = e.path();
        let meta = std::fs::symlink_metadata(&p).expect("entry");
        let ft = meta.file_type();
        if ft.is_symlink() {
            // A dangling link is fine; one that resolves must stay inside.
            if let Ok(real) = std::fs::canonicalize(&p) {
                assert!(real.starts_with(root), "{} resolves outside to {}", p.display(), real.display());
            }
            let target = std::fs::read_link(&p).expect("link");
            assert!(target.is_relative(), "absolute link {}", target.display());
        } else if ft.is_dir() {
            check_inside(root, &p);
        } else {
            assert!(ft.is_file(), "{} is neither file, dir nor link", p.display());
        }
    }
}

fn scratch_dir() -> PathBuf {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let base = std::env::temp_dir().join(format!("ruststack-fuzz-{}", std::process::id())).join(n.to_string());
    // A check finishing on another thread removes the per-process parent when it looks empty,
    // which can happen between create_dir_all's two mkdirs: that NotFound is worth a retry.
    let mut tries = 0;
    loop {
        match std::fs::create_dir_all(&base) {
            Ok(()) => return base,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && tries < 100 => tries += 1,
            Err(e) => panic!("scratch dir {}: {e}", base.display()),
        }
    }
}

// ---------- Runtime API ----------

/// SO_LINGER 0: close with RST. Millions of short connections would otherwise exhaust the
/// ephemeral ports with TIME_WAIT.
fn rst_on_close(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    let l = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: setsockopt reads `size_of::<linger>()` bytes from a live local; the fd is open.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// The request id the harness queues, so `/next` never blocks and seeds can answer it.
pub const FUZZ_REQUEST_ID: &str = "8f7e6d5c-0000-4000-8000-fuzzfuzzfuzz";

/// One raw HTTP request built from fuzz bytes.
pub struct RawRequest {
    pub method: Vec<u8>,
    pub path: Vec<u8>,
    /// Header lines, sent as given (`Name: value`).
    pub headers: Vec<Vec<u8>>,
    pub body: Vec<u8>,
}

/// Splits fuzz bytes into up to 4 requests (separated by `\n===\n`). In each, the first
/// line is `METHOD PATH`, the lines up to an empty one are headers, the rest is the body.
pub fn parse_requests(data: &[u8]) -> Vec<RawRequest> {
    split(data, b"\n===\n")
        .into_iter()
        .take(4)
        .map(|chunk| {
            let (head, body) = match find(chunk, b"\n\n") {
                Some(i) => (&chunk[..i], chunk[i + 2..].to_vec()),
                None => (chunk, Vec::new()),
            };
            let mut lines = head.split(|b| *b == b'\n');
            let first = lines.next().unwrap_or_default();
            let (method, path) = match first.iter().position(|b| *b == b' ') {
                Some(i) => (first[..i].to_vec(), first[i + 1..].to_vec()),
                None => (first.to_vec(), b"/".to_vec()),
            };
            RawRequest { method, path, headers: lines.map(<[u8]>::to_vec).collect(), body }
        })
        .collect()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn split<'a>(mut data: &'a [u8], sep: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    while let Some(i) = find(data, sep) {
        out.push(&data[..i]);
        data = &data[i + sep.len()..];
    }
    out.push(data);
    out
}

impl RawRequest {
    /// The bytes on the wire: a Content-Length is added unless the input has one, and
    /// `Connection: close` so the server ends the exchange.
    pub fn to_wire(&self) -> Vec<u8> {
        let mut w = Vec::new();
        w.extend_from_slice(&self.method);
        w.push(b' ');
        w.extend_from_slice(&self.path);
        w.extend_from_slice(b" HTTP/1.1\r\nhost: 127.0.0.1\r\n");
        let mut has_len = false;
        for h in &self.headers {
            has_len |= h.to_ascii_lowercase().starts_with(b"content-length")
                || h.to_ascii_lowercase().starts_with(b"transfer-encoding");
            w.extend_from_slice(h);
            w.extend_from_slice(b"\r\n");
        }
        if !has_len {
            w.extend_from_slice(format!("content-length: {}\r\n", self.body.len()).as_bytes());
        }
        w.extend_from_slice(b"connection: close\r\n\r\n");
        w.extend_from_slice(&self.body);
        w
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime")
    })
}

fn queue_invocation(ep: &ruststack::engine::runtime_api::Endpoint) {
    let (started, _) = tokio::sync::oneshot::channel();
    let (done, _) = tokio::sync::oneshot::channel();
    let inv = ruststack::engine::runtime_api::Invocation {
        request_id: FUZZ_REQUEST_ID.into(),
        payload: bytes::Bytes::from_static(b"{\"fuzz\":true}"),
        invoked_arn: "arn:aws:lambda:us-east-1:000000000000:function:fuzz".into(),
        trace_id: "Root=1-00000000-000000000000000000000000;Parent=0000000000000000;Sampled=0".into(),
        client_context: None,
        cognito_identity: None,
        tenant_id: None,
        timeout: Duration::from_secs(3),
        started,
        done,
    };
    // Full means one is already queued.
    let _ = ep.deliver(inv);
}

/// Runtime API: a fresh endpoint per input gets each request on its own connection, with an
/// invocation always queued. The server must answer or close, never panic; afterwards it
/// must still answer a well-formed request.
pub fn runtime_api(data: &[u8]) {
    let reqs = parse_requests(data);
    let rt = runtime();
    let ep = ruststack::engine::runtime_api::Endpoint::new("fuzz");
    let listener = rt
        .block_on(ruststack::engine::runtime_api::serve(std::net::Ipv4Addr::LOCALHOST.into(), ep.clone()))
        .expect("listener");
    for r in &reqs {
        rt.block_on(async { queue_invocation(&ep) });
        let _ = exchange(listener.addr, &r.to_wire());
    }
    // Still serving: an unknown path gets a 404 at once.
    let probe =
        RawRequest { method: b"GET".to_vec(), path: b"/2018-06-01/ping".to_vec(), headers: vec![], body: vec![] };
    let reply = exchange(listener.addr, &probe.to_wire()).expect("endpoint answers after fuzz input");
    assert!(
        reply.starts_with(b"HTTP/1.1 404"),
        "probe got {:?}",
        String::from_utf8_lossy(&reply[..reply.len().min(80)])
    );
    drop(listener);
}

/// Sends one request and reads until the server closes (or 250 ms pass: a request whose
/// declared body never arrives). The socket closes with RST, so no TIME_WAIT piles up.
fn exchange(addr: SocketAddr, wire: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(addr)?;
    rst_on_close(&s);
    s.set_read_timeout(Some(Duration::from_millis(250)))?;
    s.write_all(wire)?;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    Ok(out)
}
