//! The layer check: reads the `crate::` and `super::` paths of every file under src/, and
//! fails when the engine reaches up into a service, when a top-level module's import points
//! up the layers, or when top-level modules import each other in a cycle.
// Test harness: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The floors, top first: a module may import only modules on lower floors.
/// `server → lambda, logs, s3 → engine → wire helpers`; config and cli stand beside the stack.
const FLOORS: &[(&str, u32)] = &[
    ("server", 5),
    ("cli", 4),
    ("lambda", 4),
    ("logs", 3),
    ("s3", 3),
    ("sqs", 3),
    ("upstream", 4),
    ("sts", 3),
    ("engine", 2),
    ("config", 1),
    ("http_util", 1),
    // AWS's wire vocabulary (ARNs, errors, event streams): it imports nothing of ours, and
    // config parses function ARNs with it (`--lambda-debug ARN`).
    ("aws", 0),
];

/// Known arrows up, each with the change that removes it. Listed here so that no new one
/// slips in; delete a line once its arrow is gone.
/// Upward arrows tolerated for now: none.
const KNOWN_UP: &[(&str, &str)] = &[];

/// What the engine must never import.
const ABOVE_ENGINE: &[&str] = &["lambda", "server", "s3", "logs", "sqs", "cli", "config"];

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The top-level modules lib.rs declares.
fn top_level_modules() -> BTreeSet<String> {
    let lib = std::fs::read_to_string(src_dir().join("lib.rs")).expect("src/lib.rs");
    lib.lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod ").or_else(|| l.trim().strip_prefix("mod ")))
        .map(|l| l.trim_end_matches(';').trim().to_string())
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// A file's module path under the crate root: src/engine/sandbox/mod.rs → [engine, sandbox].
fn module_path(file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src_dir()).expect("under src");
    let mut parts: Vec<String> = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs");
    if !matches!(stem, "mod" | "lib" | "main") {
        parts.push(stem.to_string());
    }
    parts
}

/// Source text without comments and string literals (so prose never counts as an import).
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            i += 2;
            while i < b.len() && !b[i..].starts_with(b"*/") {
                i += 1;
            }
            i += 2;
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && i + 2 < b.len() && (b[i + 2] == b'\'' || b[i + 1] == b'\\') {
            // A char literal ('"', '\n'); lifetimes ('a) have no closing quote.
            let close = b[i + 1..].iter().position(|c| *c == b'\'').map_or(b.len(), |p| i + 1 + p);
            i = close + 1;
        } else {
            let ch = src[i..].chars().next().unwrap_or(' ');
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

fn ident_at(s: &str) -> Option<&str> {
    let end = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(s.len());
    (end > 0).then(|| &s[..end])
}

/// The first segment of each path in a `{a::b, c, d::{e}}` group (`s` starts after `{`).
fn group_heads(s: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut item_start = true;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => item_start = true,
            c if item_start && depth == 0 && !c.is_whitespace() => {
                item_start = false;
                if let Some(id) = ident_at(&s[i..]) {
                    heads.push(id.to_string());
                }
            }
            _ => {}
        }
    }
    heads
}

/// The top-level modules a file's code names (through `crate::` or enough `super::`),
/// given the file's module path.
fn deps_of(code: &str, path: &[String], modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut add = |rest: &str| {
        let heads = match rest.strip_prefix('{') {
            Some(group) => group_heads(group),
            None => ident_at(rest).map(|s| vec![s.to_string()]).unwrap_or_default(),
        };
        found.extend(heads.into_iter().filter(|h| modules.contains(h)));
    };
    let is_boundary = |i: usize| i == 0 || !code[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
    for (i, _) in code.match_indices("crate::") {
        if is_boundary(i) {
            add(&code[i + "crate::".len()..]);
        }
    }
    for (i, _) in code.match_indices("super::") {
        // Only the first `super::` of a chain, and only chains that climb to the crate root.
        if !is_boundary(i) || code[..i].ends_with("super::") {
            continue;
        }
        let mut rest = &code[i..];
        let mut ups = 0;
        while let Some(r) = rest.strip_prefix("super::") {
            rest = r;
            ups += 1;
        }
        if ups >= path.len() {
            add(rest);
        }
    }
    found
}

/// Top-level module → the top-level modules it imports (itself left out).
fn module_graph() -> (BTreeMap<String, BTreeSet<String>>, BTreeMap<PathBuf, BTreeSet<String>>) {
    let modules = top_level_modules();
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = modules.iter().map(|m| (m.clone(), BTreeSet::new())).collect();
    let mut per_file = BTreeMap::new();
    for f in files {
        let path = module_path(&f);
        let Some(top) = path.first().filter(|t| modules.contains(*t)).cloned() else { continue };
        let code = code_only(&std::fs::read_to_string(&f).expect("read source"));
        let mut deps = deps_of(&code, &path, &modules);
        deps.remove(&top);
        graph.entry(top).or_default().extend(deps.iter().cloned());
        per_file.insert(f, deps);
    }
    (graph, per_file)
}

/// A cycle in the graph, as the list of its nodes (first repeated at the end), if any.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|s| s == n) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(n.to_string());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n.to_string());
        for m in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, graph, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn engine_imports_nothing_above_it() {
    let (_, per_file) = module_graph();
    let engine_files: Vec<_> = per_file.iter().filter(|(f, _)| f.starts_with(src_dir().join("engine"))).collect();
    assert!(engine_files.len() >= 5, "found only {} engine files", engine_files.len());
    let bad: Vec<String> = engine_files
        .iter()
        .flat_map(|(f, deps)| {
            deps.iter().filter(|d| ABOVE_ENGINE.contains(&d.as_str())).map(move |d| format!("{} → {d}", f.display()))
        })
        .collect();
    assert!(bad.is_empty(), "the engine imports layers above it:\n{}", bad.join("\n"));
}

#[test]
fn top_level_modules_form_no_cycle() {
    let (mut graph, _) = module_graph();
    for (from, to) in KNOWN_UP {
        graph.entry(from.to_string()).or_default().remove(*to);
    }
    assert!(graph.get("server").is_some_and(|d| d.contains("lambda")), "the graph misses server → lambda: {graph:?}");
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import cycle between top-level modules: {}\ngraph: {graph:?}", cycle.join(" → "));
    }
}

#[test]
fn every_import_points_down_the_floors() {
    let (graph, _) = module_graph();
    let floor = |m: &str| FLOORS.iter().find(|(n, _)| *n == m).map(|(_, f)| *f);
    let mut bad = Vec::new();
    for (from, deps) in &graph {
        let Some(f) = floor(from) else {
            bad.push(format!("{from} has no floor in FLOORS"));
            continue;
        };
        for to in deps {
            match floor(to) {
                Some(t) if t < f => {}
                _ if KNOWN_UP.contains(&(from.as_str(), to.as_str())) => {}
                _ => bad.push(format!("{from} → {to}")),
            }
        }
    }
    assert!(bad.is_empty(), "imports that do not point down the layers:\n{}", bad.join("\n"));
}

// The checker itself must be able to fail.

/// The standard beside the layers: file I/O and process spawning run on the blocking pool
/// (`spawn_blocking`), never in `block_in_place` on an async worker (which stalls that
/// worker's other tasks while they move, and panics on a current-thread runtime).
#[test]
fn nothing_blocks_in_place() {
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    let mut found: Vec<String> = files
        .iter()
        .filter(|f| code_only(&std::fs::read_to_string(f).expect("read source")).contains("block_in_place"))
        .map(|f| f.strip_prefix(src_dir()).expect("under src").display().to_string())
        .collect();
    found.sort();
    assert!(found.is_empty(), "block_in_place in {found:?}: use tokio::task::spawn_blocking");
}

#[test]
fn parser_sees_every_form_of_path() {
    let modules: BTreeSet<String> = ["lambda", "server", "s3", "engine", "aws"].iter().map(|s| s.to_string()).collect();
    let path: Vec<String> = ["engine", "sandbox", "docker"].iter().map(|s| s.to_string()).collect();
    let code = code_only(
        "use crate::{aws::AwsError, lambda::model::{A, B}};\n\
         // use crate::server::App; (a comment)\n\
         let s = \"crate::server\";\n\
         fn f() { super::super::super::s3::S3::open(); super::sibling(); }\n",
    );
    let deps = deps_of(&code, &path, &modules);
    assert_eq!(deps, ["aws", "lambda", "s3"].iter().map(|s| s.to_string()).collect());
}

#[test]
fn cycle_finder_finds_a_cycle() {
    let g = |edges: &[(&str, &str)]| {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in edges {
            g.entry(a.to_string()).or_default().insert(b.to_string());
            g.entry(b.to_string()).or_default();
        }
        g
    };
    assert_eq!(
        find_cycle(&g(&[("a", "b"), ("b", "c"), ("c", "a")])),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    assert_eq!(find_cycle(&g(&[("a", "b"), ("b", "c"), ("a", "c")])), None);
}
