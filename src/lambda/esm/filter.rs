//! Event filtering for event source mappings: AWS's filter pattern syntax (the EventBridge
//! pattern language Lambda uses), parsed once and matched against each record. Pure: no I/O.
//!
//! A pattern is a JSON object. Each key names a field of the record: its value is either a
//! nested object (a pattern for that object) or a non-empty array of matchers, any one of
//! which must match (OR). All keys of an object must match (AND). A field whose value is an
//! array matches when one of its elements does. A mapping's filters are ORed: a record is
//! kept when any pattern matches it.
//!
//! Matchers: a literal (string, number, boolean, null: exact match), `{"prefix": s}`,
//! `{"suffix": s}`, `{"equals-ignore-case": s}`, `{"wildcard": "a*b"}`, `{"exists": bool}`,
//! `{"numeric": [op, n, (op, n)]}` (ops `<`, `<=`, `=`, `>`, `>=`) and `{"anything-but": …}`
//! (a literal, a list of literals, or a `prefix`/`suffix`/`equals-ignore-case` object).
//!
//! For SQS, the `body` of a record is matched as parsed JSON when it is a JSON object, and
//! only as the plain string otherwise ([`sqs_view`]): an object pattern on `body` never
//! matches a plain-string body, and a string matcher never matches a JSON body.

use serde_json::{Map, Value};

/// A filter pattern that does not follow the syntax (AWS answers one message for all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidPattern(pub String);

impl std::fmt::Display for InvalidPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone)]
enum Node {
    /// Every field must match.
    Fields(Vec<(String, Node)>),
    /// Any matcher must match the field.
    Any(Vec<Matcher>),
}

#[derive(Debug, Clone)]
enum Matcher {
    Exact(Value),
    Prefix(String),
    Suffix(String),
    IgnoreCase(String),
    Wildcard(String),
    Exists(bool),
    Numeric(Vec<(Op, f64)>),
    AnythingBut(Box<Matcher>),
    /// Inside anything-but: one of several literals.
    OneOf(Vec<Value>),
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Lt,
    Le,
    Eq,
    Gt,
    Ge,
}

/// One parsed filter pattern.
#[derive(Debug, Clone)]
pub struct Pattern(Node);

/// A mapping's filters: a record passes when any pattern matches.
#[derive(Debug, Clone, Default)]
pub struct Filters(Vec<Pattern>);

fn bad(why: impl Into<String>) -> InvalidPattern {
    InvalidPattern(why.into())
}

impl Pattern {
    /// Parses a pattern given as JSON text.
    pub fn parse(text: &str) -> Result<Pattern, InvalidPattern> {
        let v: Value = serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
        match &v {
            Value::Object(m) => Ok(Pattern(parse_fields(m)?)),
            _ => Err(bad("a pattern must be a JSON object")),
        }
    }

    /// Whether the record (a JSON object) matches.
    pub fn matches(&self, record: &Value) -> bool {
        node_matches(&self.0, Some(record))
    }
}

impl Filters {
    /// Parses every pattern; the first invalid one is the error.
    pub fn parse<'a>(patterns: impl IntoIterator<Item = &'a str>) -> Result<Filters, InvalidPattern> {
        patterns.into_iter().map(Pattern::parse).collect::<Result<Vec<_>, _>>().map(Filters)
    }

    /// No filters: every record passes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, record: &Value) -> bool {
        self.0.is_empty() || self.0.iter().any(|p| p.matches(record))
    }
}

/// The record as filters see it: an SQS record whose `body` is replaced by its parsed JSON
/// when it is a JSON object (AWS matches a plain-string body only as a string).
pub fn sqs_view(record: &Value) -> Value {
    let mut view = record.clone();
    if let Some(body) = record.get("body").and_then(Value::as_str)
        && let Ok(parsed @ Value::Object(_)) = serde_json::from_str::<Value>(body)
    {
        view["body"] = parsed;
    }
    view
}

fn parse_fields(m: &Map<String, Value>) -> Result<Node, InvalidPattern> {
    if m.is_empty() {
        return Err(bad("an empty object matches nothing"));
    }
    let mut fields = Vec::with_capacity(m.len());
    for (k, v) in m {
        let node = match v {
            Value::Object(inner) => parse_fields(inner)?,
            Value::Array(items) if !items.is_empty() => {
                Node::Any(items.iter().map(parse_matcher).collect::<Result<Vec<_>, _>>()?)
            }
            Value::Array(_) => return Err(bad(format!("field {k}: an empty list matches nothing"))),
            _ => return Err(bad(format!("field {k}: a value must be an object or a list of matchers"))),
        };
        fields.push((k.clone(), node));
    }
    Ok(Node::Fields(fields))
}

fn one_string(m: &Map<String, Value>, key: &str) -> Result<String, InvalidPattern> {
    m.get(key).and_then(Value::as_str).map(str::to_string).ok_or_else(|| bad(format!("{key} takes a string")))
}

fn parse_matcher(v: &Value) -> Result<Matcher, InvalidPattern> {
    let m = match v {
        Value::Object(m) => m,
        Value::Array(_) => return Err(bad("a matcher cannot be a list")),
        literal => return Ok(Matcher::Exact(literal.clone())),
    };
    if m.len() != 1 {
        return Err(bad("a matcher object has exactly one key"));
    }
    let (key, arg) = m.iter().next().ok_or_else(|| bad("empty matcher"))?;
    Ok(match key.as_str() {
        "prefix" => Matcher::Prefix(one_string(m, key)?),
        "suffix" => Matcher::Suffix(one_string(m, key)?),
        "equals-ignore-case" => Matcher::IgnoreCase(one_string(m, key)?),
        "wildcard" => Matcher::Wildcard(one_string(m, key)?),
        "exists" => Matcher::Exists(arg.as_bool().ok_or_else(|| bad("exists takes true or false"))?),
        "numeric" => Matcher::Numeric(parse_numeric(arg)?),
        "anything-but" => Matcher::AnythingBut(Box::new(match arg {
            Value::Array(items) if !items.is_empty() => {
                if items.iter().any(|i| i.is_object() || i.is_array()) {
                    return Err(bad("anything-but lists hold literals"));
                }
                Matcher::OneOf(items.clone())
            }
            Value::Array(_) => return Err(bad("anything-but: empty list")),
            Value::Object(inner) if inner.len() == 1 => match inner.keys().next().map(String::as_str) {
                Some("prefix") => Matcher::Prefix(one_string(inner, "prefix")?),
                Some("suffix") => Matcher::Suffix(one_string(inner, "suffix")?),
                Some("equals-ignore-case") => Matcher::IgnoreCase(one_string(inner, "equals-ignore-case")?),
                _ => return Err(bad("anything-but takes prefix, suffix or equals-ignore-case")),
            },
            Value::Object(_) => return Err(bad("anything-but object has one key")),
            literal => Matcher::OneOf(vec![literal.clone()]),
        })),
        other => return Err(bad(format!("unknown matcher {other}"))),
    })
}

fn parse_numeric(arg: &Value) -> Result<Vec<(Op, f64)>, InvalidPattern> {
    let items =
        arg.as_array().filter(|a| !a.is_empty() && a.len() % 2 == 0).ok_or_else(|| bad("numeric: [op, n, …]"))?;
    let mut out = Vec::new();
    for pair in items.chunks(2) {
        let op = match pair[0].as_str() {
            Some("<") => Op::Lt,
            Some("<=") => Op::Le,
            Some("=") => Op::Eq,
            Some(">") => Op::Gt,
            Some(">=") => Op::Ge,
            _ => return Err(bad("numeric: unknown operator")),
        };
        let n = pair[1].as_f64().ok_or_else(|| bad("numeric: operands are numbers"))?;
        out.push((op, n));
    }
    if out.len() > 2 || (out.len() == 2 && matches!(out[0].0, Op::Eq) | matches!(out[1].0, Op::Eq)) {
        return Err(bad("numeric: one comparison or a range"));
    }
    Ok(out)
}

fn node_matches(node: &Node, value: Option<&Value>) -> bool {
    match node {
        Node::Fields(fields) => {
            let obj = match value {
                Some(Value::Object(o)) => Some(o),
                // A nested pattern under a missing field can still match (exists: false).
                None => None,
                Some(_) => return false,
            };
            fields.iter().all(|(k, child)| node_matches(child, obj.and_then(|o| o.get(k))))
        }
        Node::Any(matchers) => matchers.iter().any(|m| field_matches(m, value)),
    }
}

/// A matcher against a field: a list field matches when one element does.
fn field_matches(m: &Matcher, value: Option<&Value>) -> bool {
    match (m, value) {
        (Matcher::Exists(want), v) => {
            let present = match v {
                None => false,
                Some(Value::Array(a)) => !a.is_empty(),
                Some(Value::Object(_)) => false,
                Some(_) => true,
            };
            present == *want
        }
        (_, None) => false,
        (Matcher::AnythingBut(inner), Some(Value::Array(items))) => {
            !items.is_empty() && !items.iter().any(|i| scalar_matches(inner, i))
        }
        (Matcher::AnythingBut(inner), Some(v)) => !v.is_object() && !scalar_matches(inner, v),
        (_, Some(Value::Array(items))) => items.iter().any(|i| scalar_matches(m, i)),
        (_, Some(v)) => scalar_matches(m, v),
    }
}

fn numbers_equal(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

fn scalar_matches(m: &Matcher, v: &Value) -> bool {
    match m {
        Matcher::Exact(lit) => match (lit, v) {
            (Value::Number(_), Value::Number(_)) => numbers_equal(lit, v),
            _ => lit == v,
        },
        Matcher::OneOf(lits) => lits.iter().any(|lit| scalar_matches(&Matcher::Exact(lit.clone()), v)),
        Matcher::Prefix(p) => v.as_str().is_some_and(|s| s.starts_with(p.as_str())),
        Matcher::Suffix(p) => v.as_str().is_some_and(|s| s.ends_with(p.as_str())),
        Matcher::IgnoreCase(p) => v.as_str().is_some_and(|s| s.to_lowercase() == p.to_lowercase()),
        Matcher::Wildcard(p) => v.as_str().is_some_and(|s| wildcard(p, s)),
        Matcher::Numeric(cmps) => v.as_f64().is_some_and(|x| {
            cmps.iter().all(|(op, n)| match op {
                Op::Lt => x < *n,
                Op::Le => x <= *n,
                Op::Eq => x == *n,
                Op::Gt => x > *n,
                Op::Ge => x >= *n,
            })
        }),
        Matcher::Exists(_) | Matcher::AnythingBut(_) => false,
    }
}

/// `*` matches any run of characters; everything else is literal.
fn wildcard(pattern: &str, s: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == s;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !s.starts_with(first) || s.len() < first.len() + last.len() || !s.ends_with(last) {
        return false;
    }
    let mut rest = &s[first.len()..s.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(pattern: Value, record: Value) -> bool {
        Pattern::parse(&pattern.to_string()).unwrap().matches(&record)
    }

    fn sqs(body: &str) -> Value {
        sqs_view(&json!({"body": body, "attributes": {"ApproximateReceiveCount": "1"}, "eventSource": "aws:sqs"}))
    }

    #[test]
    fn exact_or_and() {
        assert!(m(json!({"body": {"k": ["v"]}}), sqs(r#"{"k":"v"}"#)));
        assert!(!m(json!({"body": {"k": ["v"]}}), sqs(r#"{"k":"w"}"#)));
        assert!(m(json!({"body": {"k": ["a", "b"]}}), sqs(r#"{"k":"b"}"#)));
        let and = json!({"body": {"a": ["1"], "b": ["2"]}});
        assert!(m(and.clone(), sqs(r#"{"a":"1","b":"2"}"#)));
        assert!(!m(and, sqs(r#"{"a":"x","b":"2"}"#)));
        assert!(m(json!({"body": {"n": [5]}}), sqs(r#"{"n":5.0}"#)));
        assert!(m(json!({"body": {"n": [null]}}), sqs(r#"{"n":null}"#)));
        assert!(!m(json!({"body": {"n": [null]}}), sqs(r#"{}"#)));
        assert!(m(json!({"body": {"b": [true]}}), sqs(r#"{"b":true}"#)));
        // A list field matches when one element does.
        assert!(m(json!({"body": {"tags": ["x"]}}), sqs(r#"{"tags":["y","x"]}"#)));
        // Record fields outside the body.
        assert!(m(json!({"eventSource": ["aws:sqs"]}), sqs("x")));
        assert!(m(json!({"attributes": {"ApproximateReceiveCount": ["1"]}}), sqs("x")));
    }

    #[test]
    fn prefix_suffix_ignore_case_wildcard() {
        assert!(m(json!({"body": {"k": [{"prefix": "yes"}]}}), sqs(r#"{"k":"yes-value"}"#)));
        assert!(!m(json!({"body": {"k": [{"prefix": "yes"}]}}), sqs(r#"{"k":"no-value"}"#)));
        assert!(m(json!({"body": {"k": [{"suffix": ".png"}]}}), sqs(r#"{"k":"a.png"}"#)));
        assert!(!m(json!({"body": {"k": [{"suffix": ".png"}]}}), sqs(r#"{"k":"a.jpg"}"#)));
        assert!(m(json!({"body": {"k": [{"equals-ignore-case": "ABC"}]}}), sqs(r#"{"k":"aBc"}"#)));
        assert!(!m(json!({"body": {"k": [{"equals-ignore-case": "ABC"}]}}), sqs(r#"{"k":"abd"}"#)));
        assert!(m(json!({"body": {"k": [{"wildcard": "a*c*e"}]}}), sqs(r#"{"k":"abcde"}"#)));
        assert!(!m(json!({"body": {"k": [{"wildcard": "a*c*e"}]}}), sqs(r#"{"k":"abde"}"#)));
        // Prefix never matches a number.
        assert!(!m(json!({"body": {"k": [{"prefix": "1"}]}}), sqs(r#"{"k":12}"#)));
    }

    #[test]
    fn numeric() {
        let gt = json!({"body": {"n": [{"numeric": [">", 100]}]}});
        assert!(m(gt.clone(), sqs(r#"{"n":101}"#)));
        assert!(!m(gt.clone(), sqs(r#"{"n":100}"#)));
        assert!(!m(gt, sqs(r#"{"n":"101"}"#)));
        let lt = json!({"body": {"n": [{"numeric": ["<", 100]}]}});
        assert!(m(lt.clone(), sqs(r#"{"n":99}"#)));
        assert!(!m(lt, sqs(r#"{"n":100}"#)));
        let range = json!({"body": {"n": [{"numeric": [">=", 100, "<", 200]}]}});
        assert!(m(range.clone(), sqs(r#"{"n":100}"#)));
        assert!(m(range.clone(), sqs(r#"{"n":199.5}"#)));
        assert!(!m(range, sqs(r#"{"n":200}"#)));
        assert!(m(json!({"body": {"n": [{"numeric": ["=", 3]}]}}), sqs(r#"{"n":3}"#)));
    }

    #[test]
    fn exists() {
        let yes = json!({"body": {"k": [{"exists": true}]}});
        assert!(m(yes.clone(), sqs(r#"{"k":"any"}"#)));
        assert!(!m(yes, sqs(r#"{"other":"any"}"#)));
        let no = json!({"body": {"k": [{"exists": false}]}});
        assert!(m(no.clone(), sqs(r#"{"other":"any"}"#)));
        assert!(!m(no, sqs(r#"{"k":"any"}"#)));
        // Nested under a missing object.
        assert!(m(json!({"body": {"a": {"b": [{"exists": false}]}}}), sqs(r#"{}"#)));
    }

    #[test]
    fn anything_but() {
        let p = json!({"body": {"k": [{"anything-but": ["a", "b"]}]}});
        assert!(m(p.clone(), sqs(r#"{"k":"c"}"#)));
        assert!(!m(p.clone(), sqs(r#"{"k":"a"}"#)));
        // A missing field is not "anything but".
        assert!(!m(p, sqs(r#"{}"#)));
        assert!(m(json!({"body": {"k": [{"anything-but": "a"}]}}), sqs(r#"{"k":"b"}"#)));
        assert!(m(json!({"body": {"n": [{"anything-but": 5}]}}), sqs(r#"{"n":6}"#)));
        assert!(!m(json!({"body": {"n": [{"anything-but": 5}]}}), sqs(r#"{"n":5}"#)));
        let pre = json!({"body": {"k": [{"anything-but": {"prefix": "init"}}]}});
        assert!(m(pre.clone(), sqs(r#"{"k":"done"}"#)));
        assert!(!m(pre, sqs(r#"{"k":"initial"}"#)));
        let ic = json!({"body": {"k": [{"anything-but": {"equals-ignore-case": "X"}}]}});
        assert!(!m(ic, sqs(r#"{"k":"x"}"#)));
    }

    #[test]
    fn body_plain_string_vs_json() {
        // An object pattern on a plain-string body never matches.
        assert!(!m(json!({"body": {"k": ["v"]}}), sqs("plain-string")));
        // A plain-string body matches string matchers.
        assert!(m(json!({"body": ["plain-string"]}), sqs("plain-string")));
        assert!(m(json!({"body": [{"prefix": "plain"}]}), sqs("plain-string")));
        assert!(!m(json!({"body": ["plain-string"]}), sqs("plain-string-not")));
        // A JSON body does not match a string matcher.
        assert!(!m(json!({"body": [{"prefix": "{"}]}), sqs(r#"{"valid-json-key":"plain-string"}"#)));
        // A body that is JSON but not an object stays a string.
        assert!(m(json!({"body": ["123"]}), sqs("123")));
    }

    #[test]
    fn filters_or_across_patterns() {
        let f = Filters::parse([r#"{"body":{"a":["1"]}}"#, r#"{"body":{"b":["2"]}}"#]).unwrap();
        assert!(f.matches(&sqs(r#"{"a":"1"}"#)));
        assert!(f.matches(&sqs(r#"{"b":"2"}"#)));
        assert!(!f.matches(&sqs(r#"{"c":"3"}"#)));
        assert!(Filters::default().matches(&sqs("anything")));
    }

    #[test]
    fn invalid_patterns() {
        for p in [
            "null",
            "\"simple string\"",
            r#"{"eventSource": "aws:sqs"}"#,
            r#"{"eventSource": []}"#,
            "{}",
            "not json",
            r#"{"k": [{"prefix": 1}]}"#,
            r#"{"k": [{"numeric": [">"]}]}"#,
            r#"{"k": [{"numeric": ["~", 1]}]}"#,
            r#"{"k": [{"exists": "yes"}]}"#,
            r#"{"k": [{"unknown": "x"}]}"#,
            r#"{"k": [{"prefix": "a", "suffix": "b"}]}"#,
            r#"{"k": [["nested"]]}"#,
            r#"{"k": [{"anything-but": []}]}"#,
        ] {
            assert!(Pattern::parse(p).is_err(), "{p} should be invalid");
        }
    }
}
