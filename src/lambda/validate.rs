//! The model layer of the Lambda API: maps (method, path) to a model operation and checks a
//! request against that operation's input shape, answering AWS's `ValidationException` with every
//! violation (generated tables in [`super::model_gen`]).
//!
//! AWS's wording (Coral's validator), as recorded from real AWS:
//! - `N validation error(s) detected: ` then each violation, joined by `; `, in member order;
//! - a violation is `Value '<v>' at '<member.path>' failed to satisfy constraint: <constraint>`,
//!   `Value null at ...` for a missing required member and `Value at ...` for a sensitive one;
//! - member paths lower-case the first letter of each member (`environment.variables`); a structure
//!   inside a list is `<list>.<1-based index>.member.<field>`;
//! - one violation per failed constraint, in this order: max length or value, min, pattern, enum;
//! - a list whose elements fail is one violation that lists every constraint of the element shape:
//!   `Member must satisfy constraint: [<constraints>, Member must not be null]`; a map says
//!   `Map keys must satisfy constraint: [...]` and `Map value must satisfy constraint: [..., Member
//!   must not be null]`;
//! - values print as Java prints them: lists `[a, b]`, maps `{k=v}`, doubles `2.0`.
//!
//! A member of the wrong JSON type fails deserialization before validation; that is an
//! `InvalidRequestContentException`, as the hand-written decoders answered before.

use std::sync::{LazyLock, OnceLock};

use http::{HeaderMap, StatusCode};
use regex::Regex;
use serde_json::{Map, Value};

use super::model_gen::{OPERATIONS, PATTERN_COUNT, PATTERNS, SHAPES};
use crate::aws::AwsError;

/// Where an input member travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    Uri,
    Query,
    Header,
    /// A member of the JSON body.
    Body,
    /// The whole body, as a blob (Invoke's payload): not JSON, not checked here.
    Payload,
}

/// A member of a structure shape.
#[derive(Debug)]
pub struct Member {
    pub name: &'static str,
    /// Index into [`SHAPES`].
    pub shape: u16,
    pub location: Location,
    /// The path label, query key, header or JSON key.
    pub location_name: &'static str,
    pub required: bool,
}

impl Member {
    pub const fn new(
        name: &'static str,
        shape: u16,
        location: Location,
        location_name: &'static str,
        required: bool,
    ) -> Member {
        Member { name, shape, location, location_name, required }
    }
}

#[derive(Debug)]
pub enum Kind {
    Structure(&'static [Member]),
    /// Element shape.
    List(u16),
    /// Key and value shapes.
    Map(u16, u16),
    String,
    Integer,
    Long,
    Float,
    Double,
    Boolean,
    Blob,
    Timestamp,
}

/// A shape and its constraints.
#[derive(Debug)]
pub struct Shape {
    pub name: &'static str,
    pub kind: Kind,
    /// Length (strings, blobs, lists, maps) or value (numbers).
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Index into [`PATTERNS`].
    pub pattern: Option<usize>,
    pub enum_values: &'static [&'static str],
    /// Values accepted beyond `enum_values` that the message does not list (deprecated runtimes
    /// in a layer's compatibility list).
    pub accept: &'static [&'static str],
    /// AWS leaves the value out of its message.
    pub sensitive: bool,
}

impl Shape {
    pub const EMPTY: Shape = Shape {
        name: "",
        kind: Kind::String,
        min: None,
        max: None,
        pattern: None,
        enum_values: &[],
        accept: &[],
        sensitive: false,
    };
}

/// A model pattern: the Java text AWS prints, and the regex crate's equivalent (anchored).
#[derive(Debug)]
pub struct Pattern {
    pub java: &'static str,
    pub rust: &'static str,
    /// For translated look-arounds: a pattern the whole value must not match.
    pub forbid: Option<&'static str>,
}

/// An operation of the model.
#[derive(Debug)]
pub struct Operation {
    pub name: &'static str,
    pub method: &'static str,
    /// `requestUri`'s path, with `{Label}` and `{Label+}` labels.
    pub path: &'static str,
    /// Literal query pairs of `requestUri` (`?find=LayerVersion`).
    pub query: &'static [(&'static str, &'static str)],
    /// Index into [`SHAPES`].
    pub input: Option<u16>,
    /// Status code of a success.
    pub status: u16,
}

impl Operation {
    pub const fn new(
        name: &'static str,
        method: &'static str,
        path: &'static str,
        query: &'static [(&'static str, &'static str)],
        input: Option<u16>,
        status: u16,
    ) -> Operation {
        Operation { name, method, path, query, input, status }
    }

    fn members(&self) -> &'static [Member] {
        match self.input.map(|i| &SHAPES[i as usize].kind) {
            Some(Kind::Structure(m)) => m,
            _ => &[],
        }
    }

    /// Whether the request body is a JSON document of members.
    pub fn has_json_body(&self) -> bool {
        self.members().iter().any(|m| m.location == Location::Body)
    }
}

/// The operation by its model name.
pub fn operation(name: &str) -> Option<&'static Operation> {
    OPERATIONS.binary_search_by(|o| o.name.cmp(name)).ok().map(|i| &OPERATIONS[i])
}

// ---------- route table ----------

enum Seg {
    Lit(&'static str),
    Label(&'static str),
    /// `{Label+}`: the rest of the path.
    Greedy(&'static str),
}

/// Each operation's path template, split once. The first segment, the API date, is not matched:
/// clients send the date of their model, and dates differ per operation and SDK age.
static TEMPLATES: LazyLock<Vec<Vec<Seg>>> = LazyLock::new(|| {
    OPERATIONS
        .iter()
        .map(|op| {
            op.path
                .split('/')
                .filter(|s| !s.is_empty())
                .skip(1)
                .map(|s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(l) => match l.strip_suffix('+') {
                        Some(g) => Seg::Greedy(g),
                        None => Seg::Label(l),
                    },
                    None => Seg::Lit(s),
                })
                .collect()
        })
        .collect()
});

/// A request matched to its operation.
#[derive(Debug)]
pub struct Routed {
    pub op: &'static Operation,
    /// Path labels and their (percent-decoded) values.
    pub params: Vec<(&'static str, String)>,
}

/// The operations that a request's method and first segment after the date can match, in
/// table order, sorted by (method, segment) for a binary search: a request tries its few
/// candidates, not the whole table (this runs on every Invoke). A template whose first segment
/// is a label, or that has none, is a candidate in every list of its method and in that
/// method's `None` list, which requests whose first segment no template names use.
type Buckets = Vec<((&'static str, Option<&'static str>), Vec<u16>)>;

static BUCKETS: LazyLock<Buckets> = LazyLock::new(|| {
    let first = |t: &[Seg]| match t.first() {
        Some(Seg::Lit(s)) => Some(*s),
        _ => None,
    };
    let mut keys: Vec<(&'static str, Option<&'static str>)> =
        OPERATIONS.iter().zip(TEMPLATES.iter()).map(|(op, t)| (op.method, first(t))).collect();
    keys.extend(OPERATIONS.iter().map(|op| (op.method, None)));
    keys.sort_unstable();
    keys.dedup();
    keys.into_iter()
        .map(|(method, seg)| {
            let ops = OPERATIONS
                .iter()
                .zip(TEMPLATES.iter())
                .enumerate()
                .filter(|(_, (op, t))| op.method == method && (first(t).is_none() || first(t) == seg))
                .map(|(i, _)| i as u16)
                .collect();
            ((method, seg), ops)
        })
        .collect()
});

/// The candidates for a request (see [`BUCKETS`]).
fn candidates(method: &str, first: Option<&str>) -> &'static [u16] {
    let b = &*BUCKETS;
    let at = |seg: Option<&str>| b.binary_search_by(|((m, s), _)| (*m, *s).cmp(&(method, seg))).ok();
    match at(first).or_else(|| at(None)) {
        Some(i) => &b[i].1,
        None => &[],
    }
}

/// Whether `segs` fit template `t`, without building anything (most templates are tried and
/// refused on every request: this keeps them from allocating).
fn fits<S: AsRef<str>>(t: &[Seg], segs: &[S]) -> bool {
    for (i, seg) in t.iter().enumerate() {
        match seg {
            Seg::Greedy(_) => return i < segs.len(),
            Seg::Lit(s) => {
                if segs.get(i).map(AsRef::as_ref) != Some(*s) {
                    return false;
                }
            }
            Seg::Label(_) => {
                if i >= segs.len() {
                    return false;
                }
            }
        }
    }
    t.len() == segs.len()
}

fn match_template<S: AsRef<str>>(t: &[Seg], segs: &[S]) -> Option<Vec<(&'static str, String)>> {
    if !fits(t, segs) {
        return None;
    }
    let mut params = Vec::new();
    for (i, seg) in t.iter().enumerate() {
        match seg {
            Seg::Greedy(l) => {
                if i >= segs.len() {
                    return None;
                }
                let rest: Vec<&str> = segs[i..].iter().map(AsRef::as_ref).collect();
                params.push((*l, rest.join("/")));
                return Some(params);
            }
            Seg::Lit(s) => {
                if segs.get(i).map(AsRef::as_ref) != Some(*s) {
                    return None;
                }
            }
            Seg::Label(l) => params.push((*l, segs.get(i)?.as_ref().to_string())),
        }
    }
    (t.len() == segs.len()).then_some(params)
}

/// The model operation for a request: `segs` are the decoded path segments, the date first.
/// Where two operations share method and path, the one whose literal query pairs are all present
/// wins (`?find=LayerVersion`, `?List=ALL`).
pub fn find<S: AsRef<str>>(method: &str, segs: &[S], query: &[(String, String)]) -> Option<Routed> {
    let rest = segs.get(1..)?;
    let mut best: Option<(usize, Routed)> = None;
    for &i in candidates(method, rest.first().map(AsRef::as_ref)) {
        let (op, t) = (&OPERATIONS[i as usize], &TEMPLATES[i as usize]);
        if !fits(t, rest) {
            continue;
        }
        if !op.query.iter().all(|(k, v)| query.iter().any(|(qk, qv)| qk == k && qv == v)) {
            continue;
        }
        let score = op.query.len();
        if best.as_ref().is_none_or(|(s, _)| score > *s)
            && let Some(params) = match_template(t, rest)
        {
            best = Some((score, Routed { op, params }));
        }
    }
    best.map(|(_, r)| r)
}

// ---------- patterns ----------

/// A compiled pattern: (must match, must not match); `None` if it did not compile.
type Compiled = Option<(Regex, Option<Regex>)>;

/// Each pattern compiled once, on first use.
static COMPILED: [OnceLock<Compiled>; PATTERN_COUNT] = [const { OnceLock::new() }; PATTERN_COUNT];

fn compiled(i: usize) -> Option<&'static (Regex, Option<Regex>)> {
    COMPILED
        .get(i)?
        .get_or_init(|| {
            let p = &PATTERNS[i];
            let pos =
                Regex::new(p.rust).map_err(|e| tracing::error!(pattern = p.java, error = %e, "model pattern")).ok()?;
            let neg = p.forbid.and_then(|f| Regex::new(f).ok());
            Some((pos, neg))
        })
        .as_ref()
}

/// Whether `s` satisfies pattern `i` (a pattern that does not compile accepts everything; the
/// unit tests compile every one).
fn pattern_ok(i: usize, s: &str) -> bool {
    match compiled(i) {
        Some((pos, neg)) => pos.is_match(s) && !neg.as_ref().is_some_and(|n| n.is_match(s)),
        None => true,
    }
}

// ---------- validation ----------

/// What the request carried, by location.
pub struct Request<'a> {
    pub params: &'a [(&'static str, String)],
    pub query: &'a [(String, String)],
    pub headers: &'a HeaderMap,
    /// The parsed JSON body, for operations with body members.
    pub body: Option<&'a Map<String, Value>>,
}

/// The JSON body of a request as the validator and handlers read it (empty is `{}`).
pub fn parse_body(body: &[u8]) -> Result<Map<String, Value>, AwsError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(AwsError::invalid_content("Could not parse request body into json: expected an object")),
        Err(e) => Err(AwsError::invalid_content(format!("Could not parse request body into json: {e}"))),
    }
}

pub fn validation_error(message: impl Into<String>) -> AwsError {
    AwsError::new(StatusCode::BAD_REQUEST, "ValidationException", message)
}

/// An operation of the model that RustStack does not implement (PROTOCOL notes in the README).
pub fn not_implemented(op: &Operation) -> AwsError {
    AwsError::new(
        StatusCode::NOT_IMPLEMENTED,
        "InternalFailure",
        format!("RustStack does not implement the Lambda operation {}", op.name),
    )
}

/// Checks a request against its operation's input shape: `Err` with every violation in one
/// `ValidationException`, or the deserialization error of a member of the wrong type.
pub fn check(op: &Operation, req: &Request) -> Result<(), AwsError> {
    let mut v = Vec::new();
    // Whether any request header is an `x-amz-` one: most requests carry none, and then the
    // model's `X-Amz-*` header members are absent without a scan each (this runs on every Invoke).
    let mut amz: Option<bool> = None;
    for m in op.members() {
        let shape = &SHAPES[m.shape as usize];
        let text = match m.location {
            Location::Uri => {
                from_text(shape, m, req.params.iter().filter(|(k, _)| *k == m.location_name).map(|(_, s)| s.as_str()))?
            }
            Location::Query => {
                from_text(shape, m, req.query.iter().filter(|(k, _)| k == m.location_name).map(|(_, s)| s.as_str()))?
            }
            Location::Header => {
                let amz_name = m.location_name.get(..6).is_some_and(|p| p.eq_ignore_ascii_case("x-amz-"));
                if amz_name && !*amz.get_or_insert_with(|| req.headers.keys().any(|k| k.as_str().starts_with("x-amz-")))
                {
                    Text::Absent
                } else {
                    // A scan of the request's few headers: a lookup by `&str` parses the model's
                    // (mixed-case) name on every call.
                    let vals = req
                        .headers
                        .iter()
                        .filter(|(k, _)| k.as_str().eq_ignore_ascii_case(m.location_name))
                        .filter_map(|(_, h)| h.to_str().ok());
                    from_text(shape, m, vals)?
                }
            }
            Location::Body => match req.body.and_then(|b| b.get(m.location_name)) {
                Some(x) => Text::Body(x),
                None => Text::Absent,
            },
            Location::Payload => continue,
        };
        let owned;
        let value = match text {
            Text::Clean => continue,
            Text::Absent => None,
            Text::Body(x) => Some(x),
            Text::Value(x) => {
                owned = x;
                Some(&owned)
            }
        };
        // Most members of most requests are absent and optional: nothing to check, and no
        // member path to build (this runs on every Invoke).
        if !m.required && value.is_none_or(Value::is_null) {
            continue;
        }
        check_member(m, value, &lower_first(m.name), &mut v)?;
    }
    if v.is_empty() {
        return Ok(());
    }
    let head = if v.len() == 1 {
        "1 validation error detected: ".to_string()
    } else {
        format!("{} validation errors detected: ", v.len())
    };
    Err(validation_error(head + &v.join("; ")))
}

/// A member as the request carried it.
enum Text<'a> {
    Absent,
    /// One string that satisfies every constraint of its string shape: nothing to check.
    Clean,
    /// A member of the JSON body.
    Body(&'a Value),
    /// A query string, header or path member as a JSON value of its shape's type.
    Value(Value),
}

/// A query string, header or path member (its values, in order) as a JSON value of its shape's
/// type. One string that breaks none of its string shape's constraints is [`Text::Clean`]: no
/// JSON value is built for it (this runs on every Invoke, for its function name).
fn from_text<'a>(shape: &Shape, m: &Member, mut vals: impl Iterator<Item = &'a str>) -> Result<Text<'a>, AwsError> {
    let Some(first) = vals.next() else { return Ok(Text::Absent) };
    let one = |s: &str, shape: &Shape| -> Result<Value, AwsError> {
        Ok(match shape.kind {
            Kind::Integer | Kind::Long => match s.trim().parse::<i64>() {
                Ok(n) => Value::from(n),
                Err(_) => return Err(text_type_err(m, s, "an integer")),
            },
            Kind::Float | Kind::Double => match s.trim().parse::<f64>() {
                Ok(n) => {
                    serde_json::Number::from_f64(n).map(Value::Number).ok_or_else(|| text_type_err(m, s, "a number"))?
                }
                Err(_) => return Err(text_type_err(m, s, "a number")),
            },
            Kind::Boolean => match s {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => return Err(text_type_err(m, s, "a boolean")),
            },
            _ => Value::from(s),
        })
    };
    match shape.kind {
        Kind::List(e) => {
            let elem = &SHAPES[e as usize];
            let items = std::iter::once(first).chain(vals).map(|s| one(s, elem)).collect::<Result<_, _>>()?;
            Ok(Text::Value(Value::Array(items)))
        }
        Kind::String if str_violations(shape, first).is_empty() => Ok(Text::Clean),
        _ => one(first, shape).map(Text::Value),
    }
}

fn text_type_err(m: &Member, s: &str, want: &str) -> AwsError {
    AwsError::invalid_param(format!("Invalid value '{s}' for {}: expected {want}", m.location_name))
}

fn type_err(path: &str, want: &str) -> AwsError {
    AwsError::invalid_content(format!(
        "Could not parse request body into json: Could not parse payload into json: field '{path}' must be {want}"
    ))
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_lowercase().collect::<String>() + c.as_str()).unwrap_or_default()
}

fn check_member(m: &Member, value: Option<&Value>, path: &str, v: &mut Vec<String>) -> Result<(), AwsError> {
    match value {
        None | Some(Value::Null) => {
            if m.required {
                v.push(format!("Value null at '{path}' failed to satisfy constraint: Member must not be null"));
            }
            Ok(())
        }
        Some(val) => check_value(&SHAPES[m.shape as usize], val, path, v),
    }
}

/// Checks one non-null value; pushes its violations in AWS's order.
fn check_value(shape: &Shape, val: &Value, path: &str, v: &mut Vec<String>) -> Result<(), AwsError> {
    type_check(shape, val, path)?;
    let prefix = || {
        if shape.sensitive {
            format!("Value at '{path}' failed to satisfy constraint: ")
        } else {
            format!("Value '{}' at '{path}' failed to satisfy constraint: ", render(shape, val))
        }
    };
    for c in own_violations(shape, val) {
        v.push(prefix() + &c);
    }
    match (&shape.kind, val) {
        (Kind::Structure(members), Value::Object(o)) => {
            for m in members.iter() {
                check_member(m, o.get(m.location_name), &format!("{path}.{}", lower_first(m.name)), v)?;
            }
        }
        (Kind::List(e), Value::Array(items)) => {
            let elem = &SHAPES[*e as usize];
            if matches!(elem.kind, Kind::Structure(_) | Kind::List(_) | Kind::Map(..)) {
                for (i, item) in items.iter().enumerate() {
                    let p = format!("{path}.{}.member", i + 1);
                    match item {
                        Value::Null => {
                            v.push(format!("Value null at '{p}' failed to satisfy constraint: Member must not be null"))
                        }
                        item => check_value(elem, item, &p, v)?,
                    }
                }
            } else {
                let mut bad = false;
                for item in items {
                    if local_layer(shape, item) {
                        continue;
                    }
                    if item.is_null() {
                        bad = true;
                    } else {
                        type_check(elem, item, path)?;
                        bad |= !own_violations(elem, item).is_empty();
                    }
                }
                if bad {
                    let mut all = all_constraints(elem);
                    all.push("Member must not be null".into());
                    v.push(prefix() + &format!("Member must satisfy constraint: [{}]", all.join(", ")));
                }
            }
        }
        (Kind::Map(k, e), Value::Object(o)) => {
            let (ks, vs) = (&SHAPES[*k as usize], &SHAPES[*e as usize]);
            if o.keys().any(|key| !own_violations(ks, &Value::from(key.as_str())).is_empty()) {
                v.push(prefix() + &format!("Map keys must satisfy constraint: [{}]", all_constraints(ks).join(", ")));
            }
            if matches!(vs.kind, Kind::Structure(_) | Kind::List(_) | Kind::Map(..)) {
                for (key, item) in o {
                    if !item.is_null() {
                        check_value(vs, item, &format!("{path}.{key}.member"), v)?;
                    }
                }
            } else {
                let mut bad = false;
                for item in o.values() {
                    if item.is_null() {
                        bad = true;
                    } else {
                        type_check(vs, item, path)?;
                        bad |= !own_violations(vs, item).is_empty();
                    }
                }
                if bad {
                    let mut all = all_constraints(vs);
                    all.push("Member must not be null".into());
                    v.push(prefix() + &format!("Map value must satisfy constraint: [{}]", all.join(", ")));
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// RustStack's one extension of the model: a function's `Layers` may name a local `.zip` file or
/// directory instead of a layer version ARN (README); the handler checks it.
fn local_layer(list: &Shape, item: &Value) -> bool {
    list.name == "LayerList" && item.as_str().is_some_and(|l| l.starts_with('/') || l.ends_with(".zip"))
}

/// Fails a value of the wrong JSON type for its shape.
fn type_check(shape: &Shape, val: &Value, path: &str) -> Result<(), AwsError> {
    let ok = match shape.kind {
        Kind::Structure(_) | Kind::Map(..) => val.is_object(),
        Kind::List(_) => val.is_array(),
        Kind::String | Kind::Blob => val.is_string(),
        Kind::Integer | Kind::Long => {
            val.is_i64() || val.is_u64() && val.as_u64().is_some_and(|n| n <= i64::MAX as u64)
        }
        Kind::Float | Kind::Double => val.is_number(),
        Kind::Boolean => val.is_boolean(),
        Kind::Timestamp => val.is_number() || val.is_string(),
    };
    if ok {
        return Ok(());
    }
    let want = match shape.kind {
        Kind::Structure(_) | Kind::Map(..) => "an object",
        Kind::List(_) => "a list",
        Kind::String | Kind::Blob => "a string",
        Kind::Integer | Kind::Long => "an integer",
        Kind::Float | Kind::Double => "a number",
        Kind::Boolean => "a boolean",
        Kind::Timestamp => "a timestamp",
    };
    Err(type_err(path, want))
}

/// Length of a value as AWS counts it (characters of a string, items of a list or map).
fn length(val: &Value) -> Option<f64> {
    match val {
        Value::String(s) => Some(s.chars().count() as f64),
        Value::Array(a) => Some(a.len() as f64),
        Value::Object(o) => Some(o.len() as f64),
        _ => None,
    }
}

fn is_number_shape(shape: &Shape) -> bool {
    matches!(shape.kind, Kind::Integer | Kind::Long | Kind::Float | Kind::Double)
}

/// A bound as the message prints it: `10240` for integers, `1.0` for doubles.
fn bound(shape: &Shape, b: f64) -> String {
    match shape.kind {
        Kind::Float | Kind::Double => java_double(b),
        _ => format!("{}", b as i64),
    }
}

fn max_text(shape: &Shape, b: f64) -> String {
    let what = if is_number_shape(shape) { "value" } else { "length" };
    format!("Member must have {what} less than or equal to {}", bound(shape, b))
}

fn min_text(shape: &Shape, b: f64) -> String {
    let what = if is_number_shape(shape) { "value" } else { "length" };
    format!("Member must have {what} greater than or equal to {}", bound(shape, b))
}

fn enum_text(shape: &Shape) -> String {
    format!("Member must satisfy enum value set: [{}]", shape.enum_values.join(", "))
}

/// The constraints of a shape that `val` (already type-checked) violates, in AWS's order.
fn own_violations(shape: &Shape, val: &Value) -> Vec<String> {
    if let Value::String(s) = val
        && !is_number_shape(shape)
        && !matches!(shape.kind, Kind::Structure(_))
    {
        return str_violations(shape, s);
    }
    let mut out = Vec::new();
    let measure = if is_number_shape(shape) { val.as_f64() } else { length(val) };
    if let Some(n) = measure
        && !matches!(shape.kind, Kind::Structure(_))
    {
        if let Some(max) = shape.max
            && n > max
        {
            out.push(max_text(shape, max));
        }
        if let Some(min) = shape.min
            && n < min
        {
            out.push(min_text(shape, min));
        }
    }
    // A list with its own value set (AWS's runtime lists for layers): one check of every element.
    if let Value::Array(items) = val
        && !shape.enum_values.is_empty()
        && items
            .iter()
            .any(|x| x.as_str().is_none_or(|s| !shape.enum_values.contains(&s) && !shape.accept.contains(&s)))
    {
        out.push(enum_text(shape));
    }
    if let Value::String(s) = val {
        if let Some(p) = shape.pattern
            && !pattern_ok(p, s)
        {
            out.push(format!("Member must satisfy regular expression pattern: {}", PATTERNS[p].java));
        }
        if !shape.enum_values.is_empty() && !shape.enum_values.contains(&s.as_str()) {
            out.push(enum_text(shape));
        }
    }
    out
}

/// [`own_violations`] of a string value of a shape that is not a number or structure: length
/// (in characters), pattern, value set.
fn str_violations(shape: &Shape, s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if shape.max.is_some() || shape.min.is_some() {
        let n = s.chars().count() as f64;
        if let Some(max) = shape.max
            && n > max
        {
            out.push(max_text(shape, max));
        }
        if let Some(min) = shape.min
            && n < min
        {
            out.push(min_text(shape, min));
        }
    }
    if let Some(p) = shape.pattern
        && !pattern_ok(p, s)
    {
        out.push(format!("Member must satisfy regular expression pattern: {}", PATTERNS[p].java));
    }
    if !shape.enum_values.is_empty() && !shape.enum_values.contains(&s) {
        out.push(enum_text(shape));
    }
    out
}

/// Every constraint of a shape, as AWS lists them for list elements and map keys and values.
fn all_constraints(shape: &Shape) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(max) = shape.max {
        out.push(max_text(shape, max));
    }
    if let Some(min) = shape.min {
        out.push(min_text(shape, min));
    }
    if let Some(p) = shape.pattern {
        out.push(format!("Member must satisfy regular expression pattern: {}", PATTERNS[p].java));
    }
    if !shape.enum_values.is_empty() {
        out.push(enum_text(shape));
    }
    out
}

/// A value as Java's `toString` prints it in AWS's messages.
fn render(shape: &Shape, val: &Value) -> String {
    match val {
        Value::Null => "null".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match shape.kind {
            Kind::Float | Kind::Double => n.as_f64().map(java_double).unwrap_or_else(|| n.to_string()),
            _ => n.to_string(),
        },
        Value::Array(a) => {
            let elem = match shape.kind {
                Kind::List(e) => &SHAPES[e as usize],
                _ => shape,
            };
            format!("[{}]", a.iter().map(|x| render(elem, x)).collect::<Vec<_>>().join(", "))
        }
        Value::Object(o) => {
            let vs = match shape.kind {
                Kind::Map(_, e) => &SHAPES[e as usize],
                _ => shape,
            };
            let item_shape = |key: &str| -> &Shape {
                if let Kind::Structure(ms) = shape.kind
                    && let Some(m) = ms.iter().find(|m| m.location_name == key)
                {
                    return &SHAPES[m.shape as usize];
                }
                vs
            };
            let items: Vec<String> = o.iter().map(|(k, x)| format!("{k}={}", render(item_shape(k), x))).collect();
            format!("{{{}}}", items.join(", "))
        }
    }
}

/// Java's `Double.toString` for the values that occur in requests: `2.0`, `-1.0`, `0.5`, `1.0E10`.
fn java_double(d: f64) -> String {
    if !d.is_finite() {
        return if d.is_nan() {
            "NaN".into()
        } else if d > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    let a = d.abs();
    if a == 0.0 || (1e-3..1e7).contains(&a) {
        let s = format!("{d}");
        if s.contains('.') { s } else { s + ".0" }
    } else {
        // Scientific: mantissa with at least one decimal, exponent without '+'.
        let s = format!("{d:e}");
        let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
        let m = if m.contains('.') { m.to_string() } else { format!("{m}.0") };
        format!("{m}E{e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(name: &str) -> &'static Operation {
        operation(name).unwrap_or_else(|| panic!("no operation {name}"))
    }

    fn run(name: &str, params: &[(&'static str, &str)], query: &[(&str, &str)], body: Value) -> Result<(), String> {
        let params: Vec<(&'static str, String)> = params.iter().map(|(k, v)| (*k, v.to_string())).collect();
        let query: Vec<(String, String)> = query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let headers = HeaderMap::new();
        let body = body.as_object().cloned();
        let req = Request { params: &params, query: &query, headers: &headers, body: body.as_ref() };
        check(op(name), &req).map_err(|e| {
            assert_eq!(e.code, "ValidationException", "{e}");
            assert_eq!(e.status, 400);
            e.message
        })
    }

    const FN_PATTERN: &str = "(arn:(aws[a-zA-Z-]*)?:lambda:)?((eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\\d{1}:)?(\\d{12}:)?(function:)?([a-zA-Z0-9-_]+)(:(\\$LATEST|[a-zA-Z0-9-_]+))?";

    #[test]
    fn every_pattern_compiles() {
        for (i, p) in PATTERNS.iter().enumerate() {
            assert!(compiled(i).is_some(), "pattern {} does not compile: {}", p.java, p.rust);
            if let Some(f) = p.forbid {
                Regex::new(f).unwrap();
            }
        }
    }

    #[test]
    fn operations_are_sorted_and_found() {
        assert!(OPERATIONS.windows(2).all(|w| w[0].name < w[1].name));
        assert_eq!(op("CreateFunction").status, 201);
        assert!(operation("NoSuchOperation").is_none());
        assert!(op("CreateFunction").has_json_body());
        assert!(!op("Invoke").has_json_body());
        assert!(!op("GetFunction").has_json_body());
    }

    #[test]
    fn function_name_pattern_is_whole_value() {
        let body =
            json!({"FunctionName": "invalid:function:name", "Role": "arn:aws:iam::123456789012:role/r", "Code": {}});
        assert_eq!(
            run("CreateFunction", &[], &[], body).unwrap_err(),
            format!(
                "1 validation error detected: Value 'invalid:function:name' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {FN_PATTERN}"
            )
        );
        let ok = json!({"FunctionName": "arn:aws:lambda:us-east-1:123456789012:function:f", "Role": "arn:aws:iam::123456789012:role/r", "Code": {}});
        run("CreateFunction", &[], &[], ok).unwrap();
    }

    #[test]
    fn missing_required_members_are_null_in_member_order() {
        let msg = run("CreateFunction", &[], &[], json!({})).unwrap_err();
        assert_eq!(
            msg,
            "3 validation errors detected: \
             Value null at 'functionName' failed to satisfy constraint: Member must not be null; \
             Value null at 'role' failed to satisfy constraint: Member must not be null; \
             Value null at 'code' failed to satisfy constraint: Member must not be null"
        );
    }

    #[test]
    fn many_violations_in_member_order() {
        let long = "a".repeat(141);
        let body = json!({
            "FunctionName": long, "Role": "r1", "Code": {}, "Timeout": 0, "MemorySize": 100000,
            "Architectures": ["x86_64", "arm64"], "Environment": {"Variables": {"1A": "v"}},
            "SnapStart": {"ApplyOn": "invalidOption"}
        });
        let msg = run("CreateFunction", &[], &[], body).unwrap_err();
        let want = [
            format!("Value '{long}' at 'functionName' failed to satisfy constraint: Member must have length less than or equal to 140"),
            "Value 'r1' at 'role' failed to satisfy constraint: Member must satisfy regular expression pattern: arn:(aws[a-zA-Z-]*)?:iam::\\d{12}:role/?[a-zA-Z_0-9+=,.@\\-_/]+".to_string(),
            "Value '0' at 'timeout' failed to satisfy constraint: Member must have value greater than or equal to 1".to_string(),
            "Value '100000' at 'memorySize' failed to satisfy constraint: Member must have value less than or equal to 32768".to_string(),
            "Value at 'environment.variables' failed to satisfy constraint: Map keys must satisfy constraint: [Member must satisfy regular expression pattern: [a-zA-Z]([a-zA-Z0-9_])+]".to_string(),
            "Value '[x86_64, arm64]' at 'architectures' failed to satisfy constraint: Member must have length less than or equal to 1".to_string(),
            "Value 'invalidOption' at 'snapStart.applyOn' failed to satisfy constraint: Member must satisfy enum value set: [PublishedVersions, None]".to_string(),
        ];
        assert_eq!(msg, format!("7 validation errors detected: {}", want.join("; ")));
    }

    #[test]
    fn list_elements_are_one_violation_listing_every_constraint() {
        let body = json!({"FunctionName": "f", "Role": "arn:aws:iam::123456789012:role/r", "Code": {}, "Architectures": ["X86_64"]});
        assert_eq!(
            run("CreateFunction", &[], &[], body).unwrap_err(),
            "1 validation error detected: Value '[X86_64]' at 'architectures' failed to satisfy constraint: Member must satisfy constraint: [Member must satisfy enum value set: [x86_64, arm64], Member must not be null]"
        );
        let body = json!({"FunctionName": "f", "VpcConfig": {"SubnetIds": ["bad"]}});
        assert_eq!(
            run("UpdateFunctionConfiguration", &[("FunctionName", "f")], &[], body).unwrap_err(),
            "1 validation error detected: Value '[bad]' at 'vpcConfig.subnetIds' failed to satisfy constraint: Member must satisfy constraint: [Member must have length less than or equal to 1024, Member must have length greater than or equal to 0, Member must satisfy regular expression pattern: subnet-[0-9a-z]*, Member must not be null]"
        );
    }

    #[test]
    fn structures_in_lists_are_addressed_by_one_based_index() {
        let body = json!({"FileSystemConfigs": [
            {"Arn": "arn:aws:elasticfilesystem:us-east-1:123456789012:access-point/fsap-0123456789abcdef0"}
        ]});
        assert_eq!(
            run("UpdateFunctionConfiguration", &[("FunctionName", "f")], &[], body).unwrap_err(),
            "1 validation error detected: Value null at 'fileSystemConfigs.1.member.localMountPath' failed to satisfy constraint: Member must not be null"
        );
    }

    #[test]
    fn map_keys_and_values() {
        let params = [("FunctionName", "f"), ("Name", "live")];
        let body = json!({"RoutingConfig": {"AdditionalVersionWeights": {"2": 2}}});
        assert_eq!(
            run("UpdateAlias", &params, &[], body).unwrap_err(),
            "1 validation error detected: Value '{2=2.0}' at 'routingConfig.additionalVersionWeights' failed to satisfy constraint: Map value must satisfy constraint: [Member must have value less than or equal to 1.0, Member must have value greater than or equal to 0.0, Member must not be null]"
        );
        let body = json!({"RoutingConfig": {"AdditionalVersionWeights": {"$LATEST": 0.5}}});
        assert_eq!(
            run("UpdateAlias", &params, &[], body).unwrap_err(),
            "1 validation error detected: Value '{$LATEST=0.5}' at 'routingConfig.additionalVersionWeights' failed to satisfy constraint: Map keys must satisfy constraint: [Member must have length less than or equal to 1024, Member must have length greater than or equal to 1, Member must satisfy regular expression pattern: [0-9]+]"
        );
    }

    #[test]
    fn uri_and_query_members() {
        let q = "\\$(LATEST(\\.PUBLISHED)?)|[a-zA-Z0-9-_$]+";
        assert_eq!(
            run("GetFunction", &[("FunctionName", "f")], &[("Qualifier", "bad?")], json!(null)).unwrap_err(),
            format!(
                "1 validation error detected: Value 'bad?' at 'qualifier' failed to satisfy constraint: Member must satisfy regular expression pattern: {q}"
            )
        );
        run("GetFunction", &[("FunctionName", "f")], &[("Qualifier", "$LATEST")], json!(null)).unwrap();
        // Both alternatives of a top-level '|' are anchored.
        run("GetFunction", &[("FunctionName", "f")], &[("Qualifier", "live")], json!(null)).unwrap();
        assert_eq!(
            run("UntagResource", &[("Resource", "arn:aws:lambda:us-east-1:123456789012:function:f")], &[], json!(null))
                .unwrap_err(),
            "1 validation error detected: Value null at 'tagKeys' failed to satisfy constraint: Member must not be null"
        );
        assert_eq!(
            run("ListFunctions", &[], &[("FunctionVersion", "invalid")], json!(null)).unwrap_err(),
            "1 validation error detected: Value 'invalid' at 'functionVersion' failed to satisfy constraint: Member must satisfy enum value set: [ALL]"
        );
    }

    #[test]
    fn lookaround_translations() {
        // FunctionUrlQualifier: not all digits.
        let url = |q: &str| run("GetFunctionUrlConfig", &[("FunctionName", "f")], &[("Qualifier", q)], json!(null));
        assert_eq!(
            url("1").unwrap_err(),
            "1 validation error detected: Value '1' at 'qualifier' failed to satisfy constraint: Member must satisfy regular expression pattern: ((?!^\\d+$)^[0-9a-zA-Z-_]+$)"
        );
        url("live").unwrap();
        url("1a").unwrap();
        assert!(url("$LATEST").is_err());
        // Alias names: not all digits.
        let alias = |n: &str| run("GetAlias", &[("FunctionName", "f"), ("Name", n)], &[], json!(null));
        assert_eq!(
            alias("2024").unwrap_err(),
            "1 validation error detected: Value '2024' at 'name' failed to satisfy constraint: Member must satisfy regular expression pattern: (?!^[0-9]+$)([a-zA-Z0-9-_]+)"
        );
        alias("v2024").unwrap();
    }

    #[test]
    fn wrong_types_are_invalid_request_content() {
        let body = json!({"FunctionName": 5, "Role": "arn:aws:iam::123456789012:role/r", "Code": {}});
        let params: Vec<(&'static str, String)> = Vec::new();
        let headers = HeaderMap::new();
        let b = body.as_object().cloned();
        let e =
            check(op("CreateFunction"), &Request { params: &params, query: &[], headers: &headers, body: b.as_ref() })
                .unwrap_err();
        assert_eq!(e.code, "InvalidRequestContentException");
    }

    #[test]
    fn java_doubles() {
        assert_eq!(java_double(2.0), "2.0");
        assert_eq!(java_double(-1.0), "-1.0");
        assert_eq!(java_double(0.5), "0.5");
        assert_eq!(java_double(1e10), "1.0E10");
    }

    fn segs(path: &str) -> Vec<String> {
        path.split('/').filter(|s| !s.is_empty()).map(str::to_string).collect()
    }

    #[test]
    fn every_operation_routes_to_itself() {
        for op in OPERATIONS.iter() {
            // Fill each label with a value, and the literal query pairs.
            let path = op
                .path
                .split('/')
                .map(|s| if s.starts_with('{') { "value-x" } else { s })
                .collect::<Vec<_>>()
                .join("/");
            let query: Vec<(String, String)> = op.query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            let r = find(op.method, &segs(&path), &query).unwrap_or_else(|| panic!("{} does not route", op.name));
            assert_eq!(r.op.name, op.name, "{} {path}", op.method);
            let labels = op.path.matches('{').count();
            assert_eq!(r.params.len(), labels, "{}", op.name);
            assert!(r.params.iter().all(|(_, v)| v == "value-x"));
        }
    }

    #[test]
    fn route_params_and_query_disambiguation() {
        let r = find("GET", &segs("/2015-03-31/functions/my-fn/aliases/live"), &[]).unwrap();
        assert_eq!(r.op.name, "GetAlias");
        assert_eq!(r.params, vec![("FunctionName", "my-fn".to_string()), ("Name", "live".to_string())]);
        let q = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        assert_eq!(find("GET", &segs("/2018-10-31/layers"), &[]).unwrap().op.name, "ListLayers");
        assert_eq!(
            find("GET", &segs("/2018-10-31/layers"), &q("find", "LayerVersion")).unwrap().op.name,
            "GetLayerVersionByArn"
        );
        let pc = segs("/2019-09-30/functions/f/provisioned-concurrency");
        assert_eq!(find("GET", &pc, &[]).unwrap().op.name, "GetProvisionedConcurrencyConfig");
        assert_eq!(find("GET", &pc, &q("List", "ALL")).unwrap().op.name, "ListProvisionedConcurrencyConfigs");
        // Any date: clients of other model ages send other dates.
        assert_eq!(
            find("GET", &segs("/2017-10-31/functions/f/concurrency"), &[]).unwrap().op.name,
            "GetFunctionConcurrency"
        );
        assert!(find("PATCH", &segs("/2015-03-31/functions/x"), &[]).is_none());
        assert!(find("GET", &segs("/2015-03-31/functions/x/nothing-here"), &[]).is_none());
        assert!(find::<String>("GET", &[], &[]).is_none());
    }

    /// What [`find`] answered before its candidate lists: every operation of the table tried.
    fn find_by_scan(method: &str, segs: &[String], query: &[(String, String)]) -> Option<Routed> {
        let rest = segs.get(1..)?;
        let mut best: Option<(usize, Routed)> = None;
        for (op, t) in OPERATIONS.iter().zip(TEMPLATES.iter()) {
            if op.method != method || !op.query.iter().all(|(k, v)| query.iter().any(|(qk, qv)| qk == k && qv == v)) {
                continue;
            }
            if best.as_ref().is_none_or(|(s, _)| op.query.len() > *s)
                && let Some(params) = match_template(t, rest)
            {
                best = Some((op.query.len(), Routed { op, params }));
            }
        }
        best.map(|(_, r)| r)
    }

    #[test]
    fn candidate_lists_route_as_the_whole_table() {
        let mut paths: Vec<String> = OPERATIONS.iter().map(|o| o.path.replace('{', "x{")).collect();
        paths.extend(
            ["/2015-03-31", "/2015-03-31/nothing", "/2015-03-31/functions/f/invocations/extra", "/d/tags/a/b/c"]
                .map(String::from),
        );
        let methods = ["GET", "POST", "PUT", "DELETE", "PATCH"];
        let queries = [
            vec![],
            vec![("find".to_string(), "LayerVersion".to_string())],
            vec![("List".to_string(), "ALL".to_string())],
        ];
        for p in &paths {
            for m in methods {
                for q in &queries {
                    let (a, b) = (find(m, &segs(p), q), find_by_scan(m, &segs(p), q));
                    assert_eq!(
                        a.as_ref().map(|r| (r.op.name, &r.params)),
                        b.as_ref().map(|r| (r.op.name, &r.params)),
                        "{m} {p}"
                    );
                }
            }
        }
    }

    #[test]
    fn greedy_labels_take_the_rest() {
        let t = vec![Seg::Lit("a"), Seg::Greedy("Key")];
        let p = match_template(&t, &segs("/a/b/c")).unwrap();
        assert_eq!(p, vec![("Key", "b/c".to_string())]);
        assert!(match_template(&t, &segs("/a")).is_none());
    }

    use serde_json::json;
}
