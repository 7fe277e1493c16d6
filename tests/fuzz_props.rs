//! The fuzz targets' short run, part of `cargo test` so CI runs it: every committed seed
//! (`fuzz/seeds/<target>/`) replayed, then proptest's random cases through the same checks
//! the libFuzzer targets use (`fuzz/checks.rs`). The long runs are in fuzz/README.md.

// Test harness code: a failed unwrap here is a failed check, reported with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../fuzz/checks.rs"]
mod checks;

use std::io::Write;
use std::path::Path;

use proptest::prelude::*;
use serde_json::Value;

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds").join(target);
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| std::fs::read(e.path()).expect("seed"))
        .collect();
    assert!(!out.is_empty(), "no seeds in {}", dir.display());
    out.sort();
    out
}

#[test]
fn seeds_names() {
    for s in seeds("names") {
        checks::names(&String::from_utf8_lossy(&s));
    }
}

#[test]
fn seeds_create_function_json() {
    for s in seeds("create_function_json") {
        checks::create_function_body(&s);
        checks::create_function_body(&serde_json::to_vec(&checks::json_from_bytes(&s)).unwrap());
    }
}

#[test]
fn seeds_zip_extract() {
    for s in seeds("zip_extract") {
        checks::extract(&s);
    }
}

#[test]
fn seeds_runtime_api() {
    for s in seeds("runtime_api") {
        checks::runtime_api(&s);
    }
}

// ---------- random cases ----------

fn function_ref() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-zA-Z0-9_-]{0,70}(:[a-zA-Z0-9$_-]{0,12})?",
        "(arn:aws[a-z-]{0,4}:lambda:)?([a-z]{2}(-gov)?-[a-z]{1,9}-[0-9]:)?([0-9]{10,13}:)?(function:)?[a-zA-Z0-9_-]{1,66}(:[$A-Za-z0-9_-]{1,9})?",
        "arn:aws:lambda:[a-z0-9-]{1,12}:[0-9]{12}:layer:[a-zA-Z0-9_-]{1,20}(:[0-9]{1,4})?",
        "[:a-z0-9]{0,40}",
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (0u64..2048).prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        any::<String>().prop_map(Value::from),
        prop::sample::select(checks::STRINGS.to_vec()).prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(checks::FIELDS.to_vec()).prop_map(String::from), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn create_body() -> impl Strategy<Value = Value> {
    prop::collection::vec((prop::sample::select(checks::FIELDS.to_vec()), json_value()), 0..10).prop_map(|kv| {
        let mut m = serde_json::Map::new();
        m.insert("FunctionName".into(), "fn".into());
        m.insert("Role".into(), "arn:aws:iam::000000000000:role/r".into());
        m.insert("Runtime".into(), "python3.12".into());
        m.insert("Handler".into(), "app.handler".into());
        m.insert("Code".into(), serde_json::json!({"ZipFile": "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA=="}));
        for (k, v) in kv {
            m.insert(k.to_string(), v);
        }
        Value::Object(m)
    })
}

/// One zip entry: a path built from benign and hostile components, and what it is.
#[derive(Debug, Clone)]
enum Item {
    File(String, Vec<u8>, u32),
    Dir(String),
    Link(String, String),
}

fn path_part() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z]{1,6}",
        1 => Just("..".to_string()),
        1 => Just(".".to_string()),
        1 => Just(String::new()),
        1 => Just("/".to_string()),
        1 => Just("C:".to_string()),
        1 => Just("a\\..".to_string()),
        1 => Just("bootstrap".to_string()),
    ]
}

fn entry_path() -> impl Strategy<Value = String> {
    prop::collection::vec(path_part(), 1..5).prop_map(|p| p.join("/"))
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        4 => (entry_path(), prop::collection::vec(any::<u8>(), 0..64), prop::sample::select(vec![0o644u32, 0o755, 0o4755, 0o777]))
            .prop_map(|(p, d, m)| Item::File(p, d, m)),
        1 => entry_path().prop_map(Item::Dir),
        2 => (entry_path(), prop_oneof![entry_path(), Just("/etc".to_string()), Just("../../..".to_string())])
            .prop_map(|(p, t)| Item::Link(p, t)),
    ]
}

fn build_zip(items: &[Item]) -> Vec<u8> {
    use zip::write::SimpleFileOptions;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for it in items {
        let opts = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        // The writer refuses some names (duplicates): skip those entries.
        let _ = match it {
            Item::File(p, d, m) => {
                w.start_file(p.as_str(), opts.unix_permissions(*m)).and_then(|_| Ok(w.write_all(d)?))
            }
            Item::Dir(p) => w.add_directory(p.as_str(), opts),
            Item::Link(p, t) => w.add_symlink(p.as_str(), t.as_str(), opts),
        };
    }
    w.finish().map(|c| c.into_inner()).unwrap_or_default()
}

fn request() -> impl Strategy<Value = Vec<u8>> {
    let id = prop_oneof![Just(checks::FUZZ_REQUEST_ID.to_string()), "[a-z0-9-]{0,40}", any::<String>()];
    let path = prop_oneof![
        Just("/2018-06-01/runtime/invocation/next".to_string()),
        id.clone().prop_map(|i| format!("/2018-06-01/runtime/invocation/{i}/response")),
        id.prop_map(|i| format!("/2018-06-01/runtime/invocation/{i}/error")),
        Just("/2018-06-01/runtime/init/error".to_string()),
        "/[ -~]{0,60}",
    ];
    let method = prop_oneof![Just("GET"), Just("POST"), Just("PUT"), Just("DELETE"), Just("G\u{0}T"), Just("")];
    let header = prop_oneof![
        "content-type: [ -~]{0,30}",
        "lambda-runtime-function-error-type: [ -~]{0,30}",
        "lambda-runtime-function-response-mode: (streaming|buffered|[a-z]{0,8})",
        "content-length: [0-9]{1,4}",
        "transfer-encoding: (chunked|gzip|x)",
        "[ -~]{0,20}",
    ];
    (method, path, prop::collection::vec(header, 0..4), prop::collection::vec(any::<u8>(), 0..200)).prop_map(
        |(m, p, hs, body)| {
            let mut out = format!("{m} {p}\n").into_bytes();
            for h in hs {
                out.extend_from_slice(h.as_bytes());
                out.push(b'\n');
            }
            out.push(b'\n');
            out.extend_from_slice(&body);
            out
        },
    )
}

proptest! {
    #[test]
    fn prop_names(s in function_ref()) {
        checks::names(&s);
    }

    #[test]
    fn prop_create_function_json(v in create_body(), raw in prop::collection::vec(any::<u8>(), 0..256)) {
        checks::create_function_body(&serde_json::to_vec(&v).unwrap());
        checks::create_function_body(&raw);
        checks::create_function_body(&serde_json::to_vec(&checks::json_from_bytes(&raw)).unwrap());
    }

    #[test]
    fn prop_zip_extract(items in prop::collection::vec(item(), 0..8),
                        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
                        raw in prop::collection::vec(any::<u8>(), 0..128)) {
        let mut z = build_zip(&items);
        checks::extract(&z);
        if !z.is_empty() {
            for (i, b) in flips {
                let at = i.index(z.len());
                z[at] = b;
            }
            checks::extract(&z);
        }
        checks::extract(&raw);
    }

    #[test]
    fn prop_runtime_api(reqs in prop::collection::vec(request(), 1..4),
                        raw in prop::collection::vec(any::<u8>(), 0..200)) {
        checks::runtime_api(&reqs.join(&b"\n===\n"[..]));
        checks::runtime_api(&raw);
    }
}
