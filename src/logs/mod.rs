//! CloudWatch Logs, the part Lambda users read: every invocation's log (START, the
//! function's output, END, REPORT) goes to the group `/aws/lambda/<function>`, in the
//! environment's log stream, so `aws logs tail /aws/lambda/fn --follow` and boto3's
//! `filter_log_events` / `get_log_events` work. Functions (or anything else) may also write
//! their own groups with CreateLogGroup / CreateLogStream / PutLogEvents.
//!
//! The protocol is JSON 1.1: `POST /` with `X-Amz-Target: Logs_20140328.<Operation>`.
//! Events are kept in memory, the newest [`STREAM_EVENTS`] per stream and [`TOTAL_EVENTS`]
//! in all (the oldest go first); they do not survive a restart.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use parking_lot::Mutex;
use serde_json::{Map, Value, json};

use crate::aws::error::JsonVersion;
use crate::http_util::{self, Body};

/// Events kept per stream; older ones are dropped.
const STREAM_EVENTS: usize = 10_000;
/// Events kept in all, over every group (tens of MB at most).
const TOTAL_EVENTS: usize = 200_000;
/// Events dropped at once when [`TOTAL_EVENTS`] is passed, so the search for the oldest is rare.
const EVICT_BATCH: usize = 2_000;
/// Longest message kept (AWS's limit on an event is 256 KB).
const MAX_MESSAGE: usize = 256 * 1024;
/// Events a page holds at most (AWS: 10,000).
const MAX_PAGE: usize = 10_000;

struct Event {
    seq: u64,
    timestamp: i64,
    ingestion: i64,
    message: String,
}

struct Stream {
    created: i64,
    events: VecDeque<Event>,
    stored_bytes: u64,
}

struct Group {
    created: i64,
    streams: BTreeMap<String, Stream>,
}

/// Every region's log groups.
#[derive(Default)]
pub struct Logs {
    /// Groups by region, then by name (looked up with `&str`: no allocation per invoke).
    groups: Mutex<HashMap<String, HashMap<String, Group>>>,
    seq: AtomicU64,
    /// Events held, over every stream (changed under the `groups` lock).
    total: AtomicU64,
    /// Invocation logs whose invocation was answered before they were written (see
    /// [`Logs::pending`]).
    pending: Mutex<Pending>,
    /// Signalled when a pending log has been written.
    written: tokio::sync::Notify,
}

/// The pending logs, by ticket (given in order).
#[derive(Default)]
struct Pending {
    next: u64,
    open: std::collections::BTreeSet<u64>,
}

/// A log that will be written soon (its invocation was answered first); dropped once it is.
pub struct PendingLog {
    logs: std::sync::Arc<Logs>,
    ticket: u64,
}

impl Drop for PendingLog {
    fn drop(&mut self) {
        self.logs.pending.lock().open.remove(&self.ticket);
        self.logs.written.notify_waiters();
    }
}

/// Longest a read waits for the pending logs begun before it.
const PENDING_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

fn now_ms() -> i64 {
    crate::aws::epoch_ms() as i64
}

struct LogsError {
    code: &'static str,
    message: String,
}

fn err(code: &'static str, message: impl Into<String>) -> LogsError {
    LogsError { code, message: message.into() }
}

fn no_group() -> LogsError {
    err("ResourceNotFoundException", "The specified log group does not exist.")
}

fn no_stream() -> LogsError {
    err("ResourceNotFoundException", "The specified log stream does not exist.")
}

impl Logs {
    /// Says that an invocation's log will be written soon, after its caller has the answer:
    /// reads that start before the returned value is dropped wait (bounded) for it, so a
    /// caller that reads the log right after its answer finds the log there.
    pub fn pending(self: &std::sync::Arc<Self>) -> PendingLog {
        let mut p = self.pending.lock();
        let ticket = p.next;
        p.next += 1;
        p.open.insert(ticket);
        PendingLog { logs: self.clone(), ticket }
    }

    /// Waits until every log pending when this is called has been written (at most
    /// [`PENDING_WAIT`]); later ones are not waited for.
    pub async fn settled(&self) {
        let before = {
            let p = self.pending.lock();
            if p.open.is_empty() {
                return;
            }
            p.next
        };
        let until = tokio::time::Instant::now() + PENDING_WAIT;
        loop {
            let written = self.written.notified();
            tokio::pin!(written);
            written.as_mut().enable();
            if self.pending.lock().open.first().is_none_or(|t| *t >= before) {
                return;
            }
            if tokio::time::timeout_at(until, written).await.is_err() {
                return;
            }
        }
    }

    /// One invocation's log: each line an event, stamped now, in `stream` of `group`
    /// (both created on first use, as Lambda does).
    pub fn put_lines(&self, region: &str, group: &str, stream: &str, text: &[u8]) {
        let now = now_ms();
        let mut groups = self.groups.lock();
        if group_mut(&mut groups, region, group).is_none() {
            let g = Group { created: now, streams: BTreeMap::new() };
            groups.entry(region.to_string()).or_default().insert(group.to_string(), g);
        }
        let Some(g) = group_mut(&mut groups, region, group) else { return };
        if !g.streams.contains_key(stream) {
            g.streams.insert(stream.to_string(), Stream { created: now, events: VecDeque::new(), stored_bytes: 0 });
        }
        let Some(s) = g.streams.get_mut(stream) else { return };
        for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let line = &line[..line.len().min(MAX_MESSAGE)];
            // Valid UTF-8 (nearly every line) is checked by the fast path, not char by char.
            let message = match std::str::from_utf8(line) {
                Ok(s) => s.to_owned(),
                Err(_) => String::from_utf8_lossy(line).into_owned(),
            };
            self.push(s, now, now, message);
        }
        self.bound(&mut groups);
    }

    fn push(&self, s: &mut Stream, timestamp: i64, ingestion: i64, message: String) {
        s.stored_bytes += message.len() as u64;
        s.events.push_back(Event { seq: self.seq.fetch_add(1, Ordering::Relaxed) + 1, timestamp, ingestion, message });
        self.total.fetch_add(1, Ordering::Relaxed);
        while s.events.len() > STREAM_EVENTS {
            if let Some(e) = s.events.pop_front() {
                s.stored_bytes = s.stored_bytes.saturating_sub(e.message.len() as u64);
                self.total.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// Past [`TOTAL_EVENTS`], drops old events until [`EVICT_BATCH`] below it: from the stream
    /// whose first event is the oldest, as many as are needed or it has, then the next.
    fn bound(&self, groups: &mut HashMap<String, HashMap<String, Group>>) {
        let total = self.total.load(Ordering::Relaxed) as usize;
        if total <= TOTAL_EVENTS {
            return;
        }
        let mut need = total - (TOTAL_EVENTS - EVICT_BATCH);
        while need > 0 {
            let oldest = groups
                .values_mut()
                .flat_map(|r| r.values_mut())
                .flat_map(|g| g.streams.values_mut())
                .filter(|s| !s.events.is_empty())
                .min_by_key(|s| s.events.front().map(|e| e.seq));
            let Some(s) = oldest else { break };
            let n = need.min(s.events.len());
            for e in s.events.drain(..n) {
                s.stored_bytes = s.stored_bytes.saturating_sub(e.message.len() as u64);
            }
            self.total.fetch_sub(n as u64, Ordering::Relaxed);
            need -= n;
        }
    }

    /// Serves one JSON 1.1 request; `target` is the operation from `X-Amz-Target`.
    pub fn handle(&self, region: &str, account: &str, target: &str, body: &[u8]) -> Response<Body> {
        let request_id = crate::aws::request_id();
        let input = match serde_json::from_slice::<Value>(if body.is_empty() { b"{}" } else { body }) {
            Ok(Value::Object(m)) => m,
            _ => {
                return error_response(
                    &request_id,
                    err("SerializationException", "The request body is not a JSON object"),
                );
            }
        };
        let op = target.strip_prefix("Logs_20140328.").unwrap_or(target);
        let result = match op {
            "CreateLogGroup" => self.create_group(region, &input),
            "DeleteLogGroup" => self.delete_group(region, &input),
            "DescribeLogGroups" => self.describe_groups(region, account, &input),
            "CreateLogStream" => self.create_stream(region, &input),
            "DeleteLogStream" => self.delete_stream(region, &input),
            "DescribeLogStreams" => self.describe_streams(region, account, &input),
            "PutLogEvents" => self.put_events(region, &input),
            "GetLogEvents" => self.get_events(region, &input),
            "FilterLogEvents" => self.filter_events(region, &input),
            other => Err(err("UnknownOperationException", format!("Operation {other} is not supported by RustStack"))),
        };
        match result {
            Ok(v) => {
                let mut r = http_util::full(
                    StatusCode::OK,
                    JsonVersion::V1_1.content_type(),
                    Bytes::from(serde_json::to_vec(&v).unwrap_or_default()),
                );
                if let Ok(v) = HeaderValue::from_str(&request_id) {
                    r.headers_mut().insert("x-amzn-requestid", v);
                }
                r
            }
            Err(e) => error_response(&request_id, e),
        }
    }

    fn create_group(&self, region: &str, m: &Map<String, Value>) -> Result<Value, LogsError> {
        let name = group_name(m)?;
        let mut groups = self.groups.lock();
        let in_region = groups.entry(region.to_string()).or_default();
        if in_region.contains_key(&name) {
            return Err(err("ResourceAlreadyExistsException", "The specified log group already exists"));
        }
        in_region.insert(name, Group { created: now_ms(), streams: BTreeMap::new() });
        Ok(json!({}))
    }

    fn delete_group(&self, region: &str, m: &Map<String, Value>) -> Result<Value, LogsError> {
        let name = group_name(m)?;
        let gone = self.groups.lock().get_mut(region).and_then(|r| r.remove(&name)).ok_or_else(no_group)?;
        let events: usize = gone.streams.values().map(|s| s.events.len()).sum();
        self.total.fetch_sub(events as u64, Ordering::Relaxed);
        Ok(json!({}))
    }

    fn describe_groups(&self, region: &str, account: &str, m: &Map<String, Value>) -> Result<Value, LogsError> {
        let prefix = opt_str(m, "logGroupNamePrefix")?.unwrap_or_default();
        let groups = self.groups.lock();
        let mut items: Vec<(String, Value)> = groups
            .get(region)
            .into_iter()
            .flat_map(|r| r.iter())
            .filter(|(name, _)| name.starts_with(&prefix))
            .map(|(name, g)| {
                let arn = format!("arn:aws:logs:{region}:{account}:log-group:{name}");
                let bytes: u64 = g.streams.values().map(|s| s.stored_bytes).sum();
                let v = json!({
                    "logGroupName": name, "creationTime": g.created, "metricFilterCount": 0,
                    "arn": format!("{arn}:*"), "logGroupArn": arn, "storedBytes": bytes,
                    "logGroupClass": "STANDARD",
                });
                (name.clone(), v)
            })
            .collect();
        items.sort_by(|a, b| a.0.cmp(&b.0));
        page(items, m, "logGroups", 50)
    }

    fn create_stream(&self, region: &str, m: &Map<String, Value>) -> Result<Value, LogsError> {
        let name = group_name(m)?;
        let stream = req_str(m, "logStreamName")?;
        if stream.is_empty() || stream.len() > 512 || stream.contains(':') || stream.contains('*') {
            return Err(err("InvalidParameterException", "Invalid log stream name"));
        }
        let mut groups = self.groups.lock();
        let g = group_mut(&mut groups, region, &name).ok_or_else(no_group)?;
        if g.streams.contains_key(&stream) {
            return Err(err("ResourceAlreadyExistsException", "The specified log stream already exists"));
        }
        g.streams.insert(stream, Stream { created: now_ms(), events: VecDeque::new(), stored_bytes: 0 });
        Ok(json!({}))
    }

    fn delete_stream(&self, region: &str, m: &Map<String, Value>) -> Result<Value, LogsError> {
        let name = group_name(m)?;
        let stream = req_str(m, "logStreamName")?;
        let mut groups = self.groups.lock();
        let g = group_mut(&mut groups, region, &name).ok_or_else(no_group)?;
        let gone = g.streams.remove(&stream).ok_or_else(no_stream)?;
        self.total.fetch_sub(gone.events.len() as u64, Ordering::Relaxed);
        Ok(json!({}))
    }

    fn describe_streams(&self, region: &str, account: &str, m: &Map<String, Value>) -> Result<Value, LogsError> {
        let name = group_name(m)?;
        let prefix = opt_str(m, "logStreamNamePrefix")?.unwrap_or_default();
        let by_time = opt_str(m, "orderBy")?.as_deref() == Some("LastEventTime");
        let descending = m.get("descending").and_then(Value::as_bool).unwrap_or(false);
        let groups = self.groups.lock();
        let g = group(&groups, region, &name).ok_or_else(no_group)?;
        let mut items: Vec<(String, Value, i64)> = g
            .streams
            .iter()
            .filter(|(s, _)| s.starts_with(&prefix))
            .map(|(s, st)| {
                let mut v = json!({
                    "logStreamName": s, "creationTime": st.created, "storedBytes": st.stored_bytes,
                    "arn": format!("arn:aws:logs:{region}:{account}:log-group:{name}:log-stream:{s}"),
                });
                let last = st.events.back().map(|e| e.timestamp);
                if let (Some(first), Some(last)) = (st.events.front(), st.events.back()) {
                    v["firstEventTimestamp"] = json!(first.timestamp);
                    v["lastEventTimestamp"] = json!(last.timestamp);
                    v["lastIngestionTime"] = json!(last.ingestion);
                }
                (s.clone(), v, last.unwrap_or(st.created))
            })
            .collect();
        if by_time {
            items.sort_by(|a, b| a.2.cmp(&b.2).then_with(|| a.0.cmp(&b.0)));
        }
        if descending {
            items.reverse();
        }
        let keyed = items.into_iter().enumerate().map(|(i, (_, v, _))| (format!("{i:020}"), v)).collect();
        page(keyed, m, "logStreams", 50)
    }

    fn put_events(&self, region: &str, m: &Map<String, Value>) -> Result<Value, LogsError> {
        let name = group_name(m)?;
        let stream = req_str(m, "logStreamName")?;
        let events = m
            .get("logEvents")
            .and_then(Value::as_array)
            .ok_or_else(|| err("InvalidParameterException", "logEvents is required"))?;
        let mut parsed = Vec::with_capacity(events.len());
        for e in events {
            let ts = e.get("timestamp").and_then(Value::as_i64);
            let msg = e.get("message").and_then(Value::as_str);
            match (ts, msg) {
                (Some(ts), Some(msg)) if !msg.is_empty() => {
                    parsed.push((ts, msg[..msg.len().min(MAX_MESSAGE)].to_string()))
                }
                _ => return Err(err("InvalidParameterException", "Each log event needs a timestamp and a message")),
            }
        }
        let mut groups = self.groups.lock();
        let g = group_mut(&mut groups, region, &name).ok_or_else(no_group)?;
        let s = g.streams.get_mut(&stream).ok_or_else(no_stream)?;
        let now = now_ms();
        for (ts, msg) in parsed {
            self.push(s, ts, now, msg);
        }
        self.bound(&mut groups);
        Ok(json!({"nextSequenceToken": format!("{:056}", self.seq.load(Ordering::Relaxed))}))
    }

    fn get_events(&self, region: &str, m: &Map<String, Value>) -> Result<Value, LogsError> {
        let name = group_name(m)?;
        let stream = req_str(m, "logStreamName")?;
        let (start, end) = (opt_i64(m, "startTime")?, opt_i64(m, "endTime")?);
        let limit = limit(m, MAX_PAGE)?;
        let from_head = m.get("startFromHead").and_then(Value::as_bool).unwrap_or(false);
        let token = opt_str(m, "nextToken")?;
        let groups = self.groups.lock();
        let g = group(&groups, region, &name).ok_or_else(no_group)?;
        let s = g.streams.get(&stream).ok_or_else(no_stream)?;
        let in_range: Vec<&Event> = s
            .events
            .iter()
            .filter(|e| start.is_none_or(|t| e.timestamp >= t) && end.is_none_or(|t| e.timestamp < t))
            .collect();
        let parse = |t: &str, p: &str| t.strip_prefix(p).and_then(|n| n.parse::<u64>().ok());
        let chosen: Vec<&Event> = match token.as_deref() {
            Some(t) if parse(t, "f/").is_some() => {
                let after = parse(t, "f/").unwrap_or(0);
                in_range.into_iter().filter(|e| e.seq > after).take(limit).collect()
            }
            Some(t) if parse(t, "b/").is_some() => {
                let before = parse(t, "b/").unwrap_or(u64::MAX);
                let older: Vec<&Event> = in_range.into_iter().filter(|e| e.seq < before).collect();
                older[older.len().saturating_sub(limit)..].to_vec()
            }
            Some(_) => return Err(err("InvalidParameterException", "The specified nextToken is invalid.")),
            None if from_head => in_range.into_iter().take(limit).collect(),
            None => in_range[in_range.len().saturating_sub(limit)..].to_vec(),
        };
        let last = chosen.last().map(|e| e.seq).or_else(|| parse(token.as_deref().unwrap_or(""), "f/")).unwrap_or(0);
        let first = chosen.first().map(|e| e.seq).unwrap_or(last + 1);
        let events: Vec<Value> = chosen
            .iter()
            .map(|e| json!({"timestamp": e.timestamp, "message": e.message, "ingestionTime": e.ingestion}))
            .collect();
        Ok(
            json!({"events": events, "nextForwardToken": format!("f/{last:056}"), "nextBackwardToken": format!("b/{first:056}")}),
        )
    }

    fn filter_events(&self, region: &str, m: &Map<String, Value>) -> Result<Value, LogsError> {
        let name = group_name(m)?;
        let names: Option<Vec<String>> = m
            .get("logStreamNames")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect());
        let prefix = opt_str(m, "logStreamNamePrefix")?;
        let (start, end) = (opt_i64(m, "startTime")?, opt_i64(m, "endTime")?);
        let pattern = Pattern::parse(&opt_str(m, "filterPattern")?.unwrap_or_default());
        let limit = limit(m, MAX_PAGE)?;
        let after = match opt_str(m, "nextToken")? {
            Some(t) => {
                t.parse::<u64>().map_err(|_| err("InvalidParameterException", "The specified nextToken is invalid."))?
            }
            None => 0,
        };
        let groups = self.groups.lock();
        let g = group(&groups, region, &name).ok_or_else(no_group)?;
        let streams: Vec<(&String, &Stream)> = g
            .streams
            .iter()
            .filter(|(s, _)| names.as_ref().is_none_or(|n| n.contains(s)))
            .filter(|(s, _)| prefix.as_ref().is_none_or(|p| s.starts_with(p.as_str())))
            .collect();
        let mut found: Vec<(&String, &Event)> = streams
            .iter()
            .flat_map(|(s, st)| st.events.iter().map(move |e| (*s, e)))
            .filter(|(_, e)| e.seq > after)
            .filter(|(_, e)| start.is_none_or(|t| e.timestamp >= t) && end.is_none_or(|t| e.timestamp <= t))
            .filter(|(_, e)| pattern.matches(&e.message))
            .collect();
        found.sort_by_key(|(_, e)| (e.timestamp, e.seq));
        let more = found.len() > limit;
        found.truncate(limit);
        let events: Vec<Value> = found
            .iter()
            .map(|(s, e)| {
                json!({"logStreamName": s, "timestamp": e.timestamp, "message": e.message,
                       "ingestionTime": e.ingestion, "eventId": format!("{:056}", e.seq)})
            })
            .collect();
        let searched: Vec<Value> =
            streams.iter().map(|(s, _)| json!({"logStreamName": s, "searchedCompletely": true})).collect();
        let mut out = json!({"events": events, "searchedLogStreams": searched});
        if more {
            let max_seq = found.iter().map(|(_, e)| e.seq).max().unwrap_or(after);
            out["nextToken"] = json!(max_seq.to_string());
        }
        Ok(out)
    }
}

fn group<'a>(groups: &'a HashMap<String, HashMap<String, Group>>, region: &str, name: &str) -> Option<&'a Group> {
    groups.get(region).and_then(|r| r.get(name))
}

fn group_mut<'a>(
    groups: &'a mut HashMap<String, HashMap<String, Group>>,
    region: &str,
    name: &str,
) -> Option<&'a mut Group> {
    groups.get_mut(region).and_then(|r| r.get_mut(name))
}

fn error_response(request_id: &str, e: LogsError) -> Response<Body> {
    let status =
        if e.code == "ServiceUnavailableException" { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::BAD_REQUEST };
    crate::aws::error::aws_json(JsonVersion::V1_1, status, e.code, &e.message, request_id).map(Body::from)
}

fn opt_str(m: &Map<String, Value>, key: &str) -> Result<Option<String>, LogsError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(err("InvalidParameterException", format!("{key} must be a string"))),
    }
}

fn req_str(m: &Map<String, Value>, key: &str) -> Result<String, LogsError> {
    opt_str(m, key)?.ok_or_else(|| err("InvalidParameterException", format!("{key} is required")))
}

fn opt_i64(m: &Map<String, Value>, key: &str) -> Result<Option<i64>, LogsError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            v.as_i64().map(Some).ok_or_else(|| err("InvalidParameterException", format!("{key} must be an integer")))
        }
    }
}

fn limit(m: &Map<String, Value>, max: usize) -> Result<usize, LogsError> {
    match opt_i64(m, "limit")? {
        None => Ok(max),
        Some(n) if n >= 1 && n as usize <= max => Ok(n as usize),
        Some(n) => Err(err("InvalidParameterException", format!("limit must be between 1 and {max}, got {n}"))),
    }
}

fn group_name(m: &Map<String, Value>) -> Result<String, LogsError> {
    let name = req_str(m, "logGroupName")?;
    let ok =
        !name.is_empty() && name.len() <= 512 && name.chars().all(|c| c.is_ascii_alphanumeric() || "_-/.#".contains(c));
    if !ok {
        return Err(err("InvalidParameterException", format!("Invalid log group name: {name}")));
    }
    Ok(name)
}

/// A page of `items` (sorted by key) after the request's `nextToken`.
fn page(items: Vec<(String, Value)>, m: &Map<String, Value>, key: &str, max: usize) -> Result<Value, LogsError> {
    let limit = limit(m, max)?;
    let after = opt_str(m, "nextToken")?;
    let rest: Vec<(String, Value)> = items.into_iter().filter(|(k, _)| after.as_ref().is_none_or(|a| k > a)).collect();
    let more = rest.len() > limit;
    let page: Vec<(String, Value)> = rest.into_iter().take(limit).collect();
    let next = if more { page.last().map(|(k, _)| k.clone()) } else { None };
    let mut out = json!({ key: page.into_iter().map(|(_, v)| v).collect::<Vec<_>>() });
    if let Some(n) = next {
        out["nextToken"] = json!(n);
    }
    Ok(out)
}

/// CloudWatch Logs' text filter patterns: terms that must all appear (`ERROR timeout`),
/// quoted phrases (`"task timed out"`), excluded terms (`-DEBUG`), and `?a ?b` (any of
/// them). An empty pattern matches everything. Matching is case-sensitive, as on AWS.
struct Pattern {
    all: Vec<String>,
    none: Vec<String>,
    any: Vec<String>,
}

impl Pattern {
    fn parse(text: &str) -> Pattern {
        let mut p = Pattern { all: Vec::new(), none: Vec::new(), any: Vec::new() };
        let mut chars = text.trim().chars().peekable();
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() {
                chars.next();
                continue;
            }
            let mut kind = ' ';
            if c == '-' || c == '?' {
                kind = c;
                chars.next();
            }
            let mut term = String::new();
            if chars.peek() == Some(&'"') {
                chars.next();
                for ch in chars.by_ref() {
                    if ch == '"' {
                        break;
                    }
                    term.push(ch);
                }
            } else {
                while let Some(&ch) = chars.peek() {
                    if ch.is_whitespace() {
                        break;
                    }
                    term.push(ch);
                    chars.next();
                }
            }
            if term.is_empty() {
                continue;
            }
            match kind {
                '-' => p.none.push(term),
                '?' => p.any.push(term),
                _ => p.all.push(term),
            }
        }
        p
    }

    fn matches(&self, message: &str) -> bool {
        self.all.iter().all(|t| message.contains(t.as_str()))
            && !self.none.iter().any(|t| message.contains(t.as_str()))
            && (self.any.is_empty() || self.any.iter().any(|t| message.contains(t.as_str())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let p = Pattern::parse(r#"ERROR "timed out" -DEBUG"#);
        assert!(p.matches("ERROR task timed out now"));
        assert!(!p.matches("ERROR task timed  out"));
        assert!(!p.matches("DEBUG ERROR timed out"));
        let any = Pattern::parse("?foo ?bar");
        assert!(any.matches("xbarx") && !any.matches("baz"));
        assert!(Pattern::parse("").matches("anything"));
    }

    #[test]
    fn lines_become_events_and_streams_are_bounded() {
        let logs = Logs::default();
        let text = "a\nb\n".repeat(STREAM_EVENTS);
        logs.put_lines("us-east-1", "/aws/lambda/f", "s", text.as_bytes());
        let groups = logs.groups.lock();
        let s = &groups["us-east-1"]["/aws/lambda/f"].streams["s"];
        assert_eq!(s.events.len(), STREAM_EVENTS);
        assert_eq!(s.stored_bytes, STREAM_EVENTS as u64);
    }

    #[test]
    fn the_oldest_events_of_all_go_first() {
        let logs = Logs::default();
        let lines = "x\n".repeat(STREAM_EVENTS);
        for i in 0..(TOTAL_EVENTS / STREAM_EVENTS + 1) {
            logs.put_lines("us-east-1", &format!("/aws/lambda/f{i}"), "s", lines.as_bytes());
        }
        assert!(logs.total.load(Ordering::Relaxed) as usize <= TOTAL_EVENTS);
        let groups = logs.groups.lock();
        let first = &groups["us-east-1"]["/aws/lambda/f0"].streams["s"];
        let last_name = format!("/aws/lambda/f{}", TOTAL_EVENTS / STREAM_EVENTS);
        let last = &groups["us-east-1"][&last_name].streams["s"];
        assert!(first.events.len() < STREAM_EVENTS, "the oldest stream lost events");
        assert_eq!(last.events.len(), STREAM_EVENTS, "the newest kept all of its own");
    }

    #[tokio::test]
    async fn reads_wait_for_logs_pending_before_them() {
        let logs = std::sync::Arc::new(Logs::default());
        let pending = logs.pending();
        let reader = tokio::spawn({
            let logs = logs.clone();
            async move {
                logs.settled().await;
                let groups = logs.groups.lock();
                groups.get("us-east-1").and_then(|g| g.get("/aws/lambda/f")).map_or(0, |g| g.streams["s"].events.len())
            }
        });
        // The reader starts (and waits) before the log is written.
        tokio::task::yield_now().await;
        logs.put_lines("us-east-1", "/aws/lambda/f", "s", b"START\nREPORT\n");
        drop(pending);
        assert_eq!(reader.await.expect("reader"), 2, "the read saw the pending log");
        assert!(logs.pending.lock().open.is_empty());
        // Nothing pending: no wait.
        logs.settled().await;
    }
}
