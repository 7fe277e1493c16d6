//! The server side of the Lambda Runtime API (2018-06-01): one endpoint per environment.
//!
//! Each environment gets its own listener (`host:port`, PROTOCOL.md §5.3) and its own
//! [`Endpoint`]: a one-slot queue of invocations for `/next`, the invocation in flight, and
//! a watch that says when the runtime died. Request ids live in the endpoint, so one
//! environment can never answer another's invocation.
//!
//! A response posted with `Lambda-Runtime-Function-Response-Mode: streaming` (chunked) is
//! handed on as it arrives ([`Outcome::Streaming`]); an error after the stream began comes in
//! the `Lambda-Runtime-Function-Error-Type` / `-Body` trailers (the body base64-encoded JSON, as
//! the Node.js runtime sends it). AWS's streaming limits apply: at most
//! [`MAX_STREAM_BYTES`], the first [`STREAM_BURST_BYTES`] at full speed and the rest at
//! [`STREAM_BYTES_PER_SEC`].
//!
//! The official runtime clients send no credentials, so what guards an endpoint is: its own
//! port, the request id (a random UUID) that only `/next` on that endpoint hands out, and,
//! where the sandbox can tell the container's address, a [`Peers`] rule that answers every
//! other source with 403.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};

use crate::http_util::{self, Body, BodyError};

/// Largest response a runtime may post (RIE: 6 MiB + 100).
pub const MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024 + 100;

/// Largest streamed response (AWS's default maximum since July 2025; it was a 20 MB soft limit).
pub const MAX_STREAM_BYTES: usize = 200 * 1024 * 1024;
/// The part of a streamed response sent at full speed.
pub const STREAM_BURST_BYTES: usize = 6 * 1024 * 1024;
/// The bandwidth of a streamed response after its first [`STREAM_BURST_BYTES`] (2 MB/s).
pub const STREAM_BYTES_PER_SEC: f64 = 2.0 * 1024.0 * 1024.0;
/// Chunks a stream holds between the runtime and a slower caller: the runtime's writes then
/// wait (TCP back-pressure), as they would on AWS.
const STREAM_QUEUE: usize = 16;

/// One invocation handed to a runtime.
pub struct Invocation {
    pub request_id: String,
    pub payload: Bytes,
    pub invoked_arn: String,
    pub trace_id: String,
    pub client_context: Option<String>,
    pub cognito_identity: Option<String>,
    pub tenant_id: Option<String>,
    /// The function's timeout; the deadline starts when the runtime picks the invocation up.
    pub timeout: Duration,
    /// Told the absolute deadline once `/next` hands the invocation out.
    pub started: oneshot::Sender<Instant>,
    /// Told how the invocation ended.
    pub done: oneshot::Sender<Outcome>,
}

/// What the runtime posted for an invocation.
#[derive(Debug)]
pub enum Outcome {
    Response {
        body: Bytes,
        content_type: Option<String>,
    },
    Error {
        body: Bytes,
        error_type: Option<String>,
    },
    /// The response was over [`MAX_RESPONSE_BYTES`].
    TooLarge,
    /// The runtime streams its response: the body arrives chunk by chunk.
    Streaming(Streamed),
}

/// A response being streamed by the runtime.
pub struct Streamed {
    pub content_type: Option<String>,
    /// The body's chunks, as the runtime writes them; closed at the stream's end.
    pub chunks: mpsc::Receiver<Bytes>,
    /// How the stream ended, once it has.
    pub end: oneshot::Receiver<StreamEnd>,
}

impl std::fmt::Debug for Streamed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streamed").field("content_type", &self.content_type).finish_non_exhaustive()
    }
}

/// How a streamed response ended.
#[derive(Debug, Clone)]
pub enum StreamEnd {
    /// The whole body arrived.
    Complete,
    /// The runtime reported an error after the stream began (the error trailers).
    Error { error_type: Option<String>, body: Bytes },
    /// The stream passed [`MAX_STREAM_BYTES`] and was cut there.
    TooLarge,
    /// The runtime's request broke off before its end.
    Truncated(String),
}

/// Why an environment can serve no more.
#[derive(Debug, Clone)]
pub enum Death {
    /// The runtime posted `/runtime/init/error`.
    InitError { body: Bytes, error_type: Option<String> },
    /// The runtime process ended: `exit status N` or `signal: N`.
    Exited(String),
    /// The kernel's OOM killer ended the runtime: the environment went over its memory
    /// limit (its memory cgroup, or its container's). Holds the exit, as for `Exited`.
    OutOfMemory(String),
}

/// Which source addresses an endpoint serves.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Peers {
    /// Any source that can reach the listener (loopback listeners, remote engines whose
    /// containers' traffic arrives translated to the engine host's address).
    Any,
    /// The sandbox is starting and will say: requests wait (bounded) for the rule.
    Pending,
    /// Only this address: the container's own, on a local bridge network.
    Only(IpAddr),
}

/// How long a request waits for a [`Peers::Pending`] rule to be settled.
const PEERS_PENDING_WAIT: Duration = Duration::from_secs(10);

struct InFlight {
    request_id: String,
    /// Taken when the outcome is told; a streaming response keeps the slot (the invocation
    /// is still running) until its stream ends.
    done: Option<oneshot::Sender<Outcome>>,
}

/// The state shared by an environment's listener and its owner.
pub struct Endpoint {
    queue_tx: mpsc::Sender<Invocation>,
    queue_rx: tokio::sync::Mutex<mpsc::Receiver<Invocation>>,
    in_flight: Mutex<Option<InFlight>>,
    death_tx: watch::Sender<Option<Death>>,
    /// Set once the runtime first calls `/next` (init done).
    ready_tx: watch::Sender<bool>,
    /// Who may talk to this endpoint.
    peers_tx: watch::Sender<Peers>,
    label: String,
    /// The bearer token of the metadata endpoint (`AWS_LAMBDA_METADATA_TOKEN`).
    metadata_token: String,
    /// What the metadata endpoint answers: `{"AvailabilityZoneID": …}`, set at start.
    metadata: std::sync::OnceLock<Bytes>,
    /// The runtime's peak RSS in kB as the bundled bootstrap reported it with its last result
    /// (`X-Ruststack-Max-Rss-Kb`); 0 when it did not.
    reported_rss_kb: std::sync::atomic::AtomicU64,
}

/// The header the bundled Python bootstrap (forked by the fork server) reports its peak RSS in.
static MAX_RSS_KB: http::HeaderName = http::HeaderName::from_static("x-ruststack-max-rss-kb");

/// The execution-environment metadata request, served next to the Runtime API on the same
/// `host:port` (`AWS_LAMBDA_METADATA_API`), as AWS's emulator does.
pub const METADATA_PATH: &str = "/2026-01-15/metadata/execution-environment";

/// [`Endpoint::deliver`] found the environment busy or closed.
#[derive(Debug)]
pub struct NotDelivered;

impl Endpoint {
    pub fn new(label: impl Into<String>) -> Arc<Endpoint> {
        let (queue_tx, queue_rx) = mpsc::channel(1);
        Arc::new(Endpoint {
            queue_tx,
            queue_rx: tokio::sync::Mutex::new(queue_rx),
            in_flight: Mutex::new(None),
            death_tx: watch::channel(None).0,
            ready_tx: watch::channel(false).0,
            peers_tx: watch::channel(Peers::Any).0,
            label: label.into(),
            metadata_token: uuid::Uuid::new_v4().to_string(),
            metadata: std::sync::OnceLock::new(),
            reported_rss_kb: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The peak RSS (bytes) the runtime reported with its last posted result, once: None
    /// when it reported none.
    pub fn take_reported_rss(&self) -> Option<u64> {
        let kb = self.reported_rss_kb.swap(0, std::sync::atomic::Ordering::Relaxed);
        (kb > 0).then(|| kb.saturating_mul(1024))
    }

    /// The token a function sends as `Authorization: Bearer …` to the metadata endpoint.
    pub fn metadata_token(&self) -> &str {
        &self.metadata_token
    }

    /// Sets what the metadata endpoint says: the Availability Zone ID of an environment in
    /// `region` (its first zone, `use1-az1` for us-east-1).
    pub fn set_region(&self, region: &str) {
        let body = serde_json::json!({ "AvailabilityZoneID": availability_zone_id(region) });
        let _ = self.metadata.set(Bytes::from(body.to_string()));
    }

    /// Queues an invocation for the runtime's next `/next`. The environment must be idle;
    /// if it is not, or its runtime is gone, the invocation is dropped and this says so.
    pub fn deliver(&self, inv: Invocation) -> Result<(), NotDelivered> {
        self.queue_tx.try_send(inv).map_err(|_| NotDelivered)
    }

    pub fn death(&self) -> watch::Receiver<Option<Death>> {
        self.death_tx.subscribe()
    }

    pub fn ready(&self) -> watch::Receiver<bool> {
        self.ready_tx.subscribe()
    }

    pub fn is_dead(&self) -> bool {
        self.death_tx.borrow().is_some()
    }

    /// Records a death; the first cause wins (an init error explains the exit that follows).
    pub fn set_death(&self, d: Death) {
        self.death_tx.send_if_modified(|cur| {
            if cur.is_none() {
                *cur = Some(d);
                true
            } else {
                false
            }
        });
    }

    /// Sets who may talk to this endpoint (see [`Peers`]).
    pub fn allow_peers(&self, peers: Peers) {
        self.peers_tx.send_replace(peers);
    }

    /// Whether `peer` may be served, waiting (bounded) while the rule is still pending.
    async fn admits(&self, peer: IpAddr) -> bool {
        self.admits_within(peer, PEERS_PENDING_WAIT).await
    }

    /// [`Endpoint::admits`], waiting at most `wait` for a pending rule (refused after that).
    async fn admits_within(&self, peer: IpAddr, wait: Duration) -> bool {
        match *self.peers_tx.borrow() {
            Peers::Any => return true,
            Peers::Only(ip) => return ip == peer,
            Peers::Pending => {}
        }
        let mut rx = self.peers_tx.subscribe();
        let settled = tokio::time::timeout(wait, rx.wait_for(|p| *p != Peers::Pending)).await;
        match settled {
            Ok(Ok(p)) => match *p {
                Peers::Any => true,
                Peers::Only(ip) => ip == peer,
                Peers::Pending => false,
            },
            _ => false,
        }
    }

    /// Forgets the invocation in flight (after a timeout): late answers get 400.
    pub fn clear_in_flight(&self) {
        self.in_flight.lock().take();
    }

    fn take_in_flight(&self, id: &str) -> Option<oneshot::Sender<Outcome>> {
        let mut slot = self.in_flight.lock();
        match &*slot {
            Some(f) if f.request_id == id && f.done.is_some() => slot.take().and_then(|f| f.done),
            _ => None,
        }
    }

    /// The outcome's sender for a response that starts streaming: the invocation stays in
    /// flight until [`Endpoint::end_stream`].
    fn start_stream(&self, id: &str) -> Option<oneshot::Sender<Outcome>> {
        match &mut *self.in_flight.lock() {
            Some(f) if f.request_id == id => f.done.take(),
            _ => None,
        }
    }

    fn end_stream(&self, id: &str) {
        let mut slot = self.in_flight.lock();
        if matches!(&*slot, Some(f) if f.request_id == id) {
            slot.take();
        }
    }

    fn has_in_flight(&self, id: &str) -> bool {
        matches!(&*self.in_flight.lock(), Some(f) if f.request_id == id && f.done.is_some())
    }
}

/// A running listener for one endpoint; dropping it stops accepting.
pub struct Listener {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `ip:0` and serves `endpoint` on it.
pub async fn serve(ip: std::net::IpAddr, endpoint: Arc<Endpoint>) -> std::io::Result<Listener> {
    let listener = TcpListener::bind(SocketAddr::new(ip, 0)).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "runtime api accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let ep = endpoint.clone();
            conns.spawn(crate::http_util::serve_http1(stream, move |req| {
                let ep = ep.clone();
                async move {
                    if !ep.admits(peer.ip()).await {
                        tracing::warn!(env = %ep.label, peer = %peer, "Runtime API request from a source that is not the environment's container: refused");
                        return error(
                            StatusCode::FORBIDDEN,
                            "AccessDenied",
                            "this Runtime API endpoint serves only its own execution environment",
                        );
                    }
                    handle(&ep, req).await
                }
            }));
            // Reap finished connection tasks so the set stays small.
            while conns.try_join_next().is_some() {}
        }
    });
    Ok(Listener { addr, task })
}

fn error(status: StatusCode, error_type: &str, message: &str) -> Response<Body> {
    http_util::json(status, &serde_json::json!({"errorMessage": message, "errorType": error_type}))
}

fn accepted() -> Response<Body> {
    http_util::full(StatusCode::ACCEPTED, "application/json", Bytes::from_static(b"{\"status\":\"OK\"}"))
}

fn header(req: &Request<Incoming>, name: impl http::header::AsHeaderName) -> Option<String> {
    req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

async fn handle(ep: &Endpoint, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    if path == METADATA_PATH {
        return metadata(ep, &req);
    }
    let Some(rest) = path.strip_prefix("/2018-06-01/runtime/") else {
        return error(StatusCode::NOT_FOUND, "NotFound", "unknown Runtime API path");
    };
    let parts: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    match (req.method(), parts.as_slice()) {
        (&Method::GET, ["invocation", "next"]) => next(ep).await,
        (&Method::POST, ["invocation", id, kind @ ("response" | "error")]) => {
            let id = id.to_string();
            let is_error = *kind == "error";
            post_result(ep, req, &id, is_error).await
        }
        (&Method::POST, ["init", "error"]) => {
            let error_type = header(&req, "lambda-runtime-function-error-type");
            match http_util::read_body(req.into_body(), MAX_RESPONSE_BYTES).await {
                Ok(body) => {
                    tracing::debug!(env = %ep.label, "runtime reported an init error");
                    ep.set_death(Death::InitError { body, error_type });
                    accepted()
                }
                Err(_) => error(StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLarge", "init error too large"),
            }
        }
        _ => error(StatusCode::NOT_FOUND, "NotFound", "unknown Runtime API path"),
    }
}

/// The metadata endpoint, as AWS's emulator answers it: GET only (405), `Authorization:
/// Bearer <AWS_LAMBDA_METADATA_TOKEN>` or 401, then the JSON with a 12-hour private cache.
fn metadata(ep: &Endpoint, req: &Request<Incoming>) -> Response<Body> {
    let plain = |status: StatusCode| {
        let text = format!("{}\n", status.canonical_reason().unwrap_or(""));
        let mut r = http_util::full(status, "text/plain; charset=utf-8", Bytes::from(text));
        r.headers_mut().insert("x-content-type-options", HeaderValue::from_static("nosniff"));
        r
    };
    if req.method() != Method::GET {
        return plain(StatusCode::METHOD_NOT_ALLOWED);
    }
    let token =
        req.headers().get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if token != Some(ep.metadata_token.as_str()) {
        tracing::debug!(env = %ep.label, "metadata request without the environment's token: 401");
        return plain(StatusCode::UNAUTHORIZED);
    }
    let Some(body) = ep.metadata.get() else {
        return plain(StatusCode::SERVICE_UNAVAILABLE);
    };
    let mut r = http_util::full(StatusCode::OK, "application/json", body.clone());
    r.headers_mut().insert("cache-control", HeaderValue::from_static("private, max-age=43200, immutable"));
    r
}

/// The ID of a region's first Availability Zone: `us-east-1` → `use1-az1`,
/// `ap-northeast-1` → `apne1-az1`, `eu-central-1` → `euc1-az1`.
fn availability_zone_id(region: &str) -> String {
    let parts: Vec<&str> = region.split('-').collect();
    let [area, direction @ .., number] = parts.as_slice() else { return "use1-az1".into() };
    let mut dir = String::new();
    for d in direction {
        for (word, letter) in [("north", 'n'), ("south", 's'), ("east", 'e'), ("west", 'w'), ("central", 'c')] {
            if let Some(rest) = d.strip_prefix(word) {
                dir.push(letter);
                if let Some(r) = [("east", 'e'), ("west", 'w')].iter().find(|(w, _)| rest == *w) {
                    dir.push(r.1);
                }
            }
        }
    }
    format!("{area}{dir}{number}-az1")
}

async fn next(ep: &Endpoint) -> Response<Body> {
    if ep.in_flight.lock().is_some() {
        return error(
            StatusCode::FORBIDDEN,
            "InvalidStateTransition",
            "State transition from Running to Ready failed for runtime: post a response or error first",
        );
    }
    if ep.ready_tx.send_if_modified(|r| !std::mem::replace(r, true)) {
        tracing::debug!(env = %ep.label, "runtime ready: first /next");
    }
    let Ok(mut rx) = ep.queue_rx.try_lock() else {
        return error(
            StatusCode::FORBIDDEN,
            "InvalidStateTransition",
            "State transition from Ready to Ready failed for runtime: /next is already being polled",
        );
    };
    let Some(inv) = rx.recv().await else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError", "environment stopped");
    };
    drop(rx);
    let deadline = Instant::now() + inv.timeout;
    let deadline_ms = crate::aws::epoch_ms() + inv.timeout.as_millis() as u64;
    let mut resp = Response::new(Body::new(inv.payload));
    let h = resp.headers_mut();
    h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let mut put = |name: &'static http::HeaderName, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(name, v);
        }
    };
    use http_util::names;
    put(&names::LAMBDA_RUNTIME_AWS_REQUEST_ID, &inv.request_id);
    put(&names::LAMBDA_RUNTIME_DEADLINE_MS, &deadline_ms.to_string());
    put(&names::LAMBDA_RUNTIME_INVOKED_FUNCTION_ARN, &inv.invoked_arn);
    put(&names::LAMBDA_RUNTIME_TRACE_ID, &inv.trace_id);
    if let Some(c) = &inv.client_context {
        put(&names::LAMBDA_RUNTIME_CLIENT_CONTEXT, c);
    }
    if let Some(c) = &inv.cognito_identity {
        put(&names::LAMBDA_RUNTIME_COGNITO_IDENTITY, c);
    }
    if let Some(t) = &inv.tenant_id {
        put(&names::LAMBDA_RUNTIME_AWS_TENANT_ID, t);
    }
    *ep.in_flight.lock() = Some(InFlight { request_id: inv.request_id, done: Some(inv.done) });
    let _ = inv.started.send(deadline);
    resp
}

async fn post_result(ep: &Endpoint, req: Request<Incoming>, id: &str, is_error: bool) -> Response<Body> {
    if !ep.has_in_flight(id) {
        return error(StatusCode::BAD_REQUEST, "InvalidRequestID", "Invalid request ID");
    }
    if let Some(mode) = header(&req, &http_util::names::LAMBDA_RUNTIME_FUNCTION_RESPONSE_MODE) {
        if mode != "streaming" {
            return error(StatusCode::BAD_REQUEST, "InvalidFunctionResponseMode", "Invalid function response mode");
        }
        if !is_error {
            return post_stream(ep, req, id).await;
        }
    }
    let content_type = header(&req, http::header::CONTENT_TYPE);
    let error_type = header(&req, &http_util::names::LAMBDA_RUNTIME_FUNCTION_ERROR_TYPE);
    let rss_kb = req.headers().get(&MAX_RSS_KB).and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    let body = match http_util::read_body(req.into_body(), MAX_RESPONSE_BYTES).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => {
            if let Some(done) = ep.take_in_flight(id) {
                let _ = done.send(Outcome::TooLarge);
            }
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                &format!("Exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes)."),
            );
        }
        Err(BodyError::Io(e)) => {
            return error(StatusCode::BAD_REQUEST, "TruncatedHTTPRequest", &e);
        }
    };
    let Some(done) = ep.take_in_flight(id) else {
        return error(StatusCode::BAD_REQUEST, "InvalidRequestID", "Invalid request ID");
    };
    ep.reported_rss_kb.store(rss_kb.unwrap_or(0), std::sync::atomic::Ordering::Relaxed);
    let outcome = if is_error { Outcome::Error { body, error_type } } else { Outcome::Response { body, content_type } };
    if done.send(outcome).is_ok() {
        // The invocation's task was woken onto this thread: a yield lets it (and the caller's
        // answer) run before this 202 is written. Written first, the 202 woke the runtime,
        // which could take this CPU from the server before the caller had its answer.
        tokio::task::yield_now().await;
    }
    accepted()
}

/// Serves a streamed `/response`: each chunk goes on to the caller as it arrives (paced as
/// AWS paces streams), then the end: complete, the error of the trailers, or cut short.
async fn post_stream(ep: &Endpoint, req: Request<Incoming>, id: &str) -> Response<Body> {
    use http_body_util::BodyExt;
    let Some(done) = ep.start_stream(id) else {
        return error(StatusCode::BAD_REQUEST, "InvalidRequestID", "Invalid request ID");
    };
    let content_type = header(&req, "content-type");
    let (tx, chunks) = mpsc::channel(STREAM_QUEUE);
    let (end_tx, end) = oneshot::channel();
    let _ = done.send(Outcome::Streaming(Streamed { content_type, chunks, end }));
    let mut body = req.into_body();
    // None once the caller is gone: the rest is read and dropped, so the runtime can finish.
    let mut tx = Some(tx);
    let mut pace = Pace::default();
    let mut trailer_error = None;
    let end = loop {
        let frame = match body.frame().await {
            None => break trailer_error.take().unwrap_or(StreamEnd::Complete),
            Some(Err(e)) => break StreamEnd::Truncated(e.to_string()),
            Some(Ok(f)) => f,
        };
        let data = match frame.into_data() {
            Ok(d) => d,
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    trailer_error = stream_error(&trailers);
                }
                continue;
            }
        };
        if data.is_empty() {
            continue;
        }
        match pace.admit(data.len(), Instant::now()) {
            Err(()) => break StreamEnd::TooLarge,
            Ok(Some(at)) => tokio::time::sleep_until(at.into()).await,
            Ok(None) => {}
        }
        if let Some(t) = &tx
            && t.send(data).await.is_err()
        {
            tx = None;
        }
    };
    drop(tx);
    ep.end_stream(id);
    let answer = match &end {
        StreamEnd::TooLarge => error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            &format!("Exceeded maximum allowed payload size ({MAX_STREAM_BYTES} bytes)."),
        ),
        StreamEnd::Truncated(e) => error(StatusCode::BAD_REQUEST, "TruncatedHTTPRequest", e),
        _ => accepted(),
    };
    let _ = end_tx.send(end);
    answer
}

/// The error a runtime reports in a stream's trailers: its type, and its body (base64 of
/// the error JSON; taken as is when it is not base64).
fn stream_error(trailers: &http::HeaderMap) -> Option<StreamEnd> {
    use base64::Engine;
    let get = |name: &str| trailers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let error_type = get("lambda-runtime-function-error-type");
    let raw = get("lambda-runtime-function-error-body");
    if error_type.is_none() && raw.is_none() {
        return None;
    }
    let body = raw
        .map(|b| match base64::engine::general_purpose::STANDARD.decode(b.trim()) {
            Ok(decoded) => Bytes::from(decoded),
            Err(_) => Bytes::from(b),
        })
        .unwrap_or_default();
    Some(StreamEnd::Error { error_type, body })
}

/// AWS's pace for one streamed response: the first [`STREAM_BURST_BYTES`] at once, then
/// [`STREAM_BYTES_PER_SEC`]; nothing past [`MAX_STREAM_BYTES`].
#[derive(Default)]
struct Pace {
    sent: usize,
    /// When the burst was used up.
    burst_end: Option<Instant>,
}

impl Pace {
    /// Counts `n` more bytes: when they may go (None: now), or Err when they pass the limit.
    fn admit(&mut self, n: usize, now: Instant) -> Result<Option<Instant>, ()> {
        self.sent += n;
        if self.sent > MAX_STREAM_BYTES {
            return Err(());
        }
        if self.sent <= STREAM_BURST_BYTES {
            return Ok(None);
        }
        let since = *self.burst_end.get_or_insert(now);
        // Bytes past the burst go at the capped rate; this chunk may leave once the bytes
        // before it have had their time.
        let before = (self.sent - n).saturating_sub(STREAM_BURST_BYTES);
        let at = since + Duration::from_secs_f64(before as f64 / STREAM_BYTES_PER_SEC);
        Ok((at > now).then_some(at))
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn availability_zone_ids() {
        for (region, id) in [
            ("us-east-1", "use1-az1"),
            ("us-west-2", "usw2-az1"),
            ("eu-central-1", "euc1-az1"),
            ("ap-northeast-1", "apne1-az1"),
            ("ap-southeast-2", "apse2-az1"),
            ("sa-east-1", "sae1-az1"),
            ("bogus", "use1-az1"),
        ] {
            assert_eq!(super::availability_zone_id(region), id, "{region}");
        }
    }
    use super::*;

    #[test]
    fn pace_is_free_for_the_burst_then_two_megabytes_a_second() {
        let t0 = Instant::now();
        let mut p = Pace::default();
        let mb = 1024 * 1024;
        for _ in 0..6 {
            assert_eq!(p.admit(mb, t0), Ok(None));
        }
        // The first byte past the burst goes at once, the next MB half a second later.
        assert_eq!(p.admit(mb, t0), Ok(None));
        assert_eq!(p.admit(mb, t0), Ok(Some(t0 + Duration::from_millis(500))));
        assert_eq!(p.admit(mb, t0), Ok(Some(t0 + Duration::from_millis(1000))));
        // A caller that is slower anyway waits for nothing.
        assert_eq!(p.admit(mb, t0 + Duration::from_secs(5)), Ok(None));
    }

    #[test]
    fn pace_refuses_past_the_limit() {
        let t0 = Instant::now();
        let mut p = Pace { sent: MAX_STREAM_BYTES - 10, burst_end: Some(t0) };
        assert!(p.admit(10, t0 + Duration::from_secs(1000)).is_ok());
        assert_eq!(p.admit(1, t0), Err(()));
    }

    #[test]
    fn trailers_carry_the_error() {
        let mut h = http::HeaderMap::new();
        assert!(stream_error(&h).is_none());
        h.insert("lambda-runtime-function-error-type", HeaderValue::from_static("Error"));
        // base64 of {"errorType":"Error","errorMessage":"boom"}
        h.insert(
            "lambda-runtime-function-error-body",
            HeaderValue::from_static("eyJlcnJvclR5cGUiOiJFcnJvciIsImVycm9yTWVzc2FnZSI6ImJvb20ifQ=="),
        );
        match stream_error(&h) {
            Some(StreamEnd::Error { error_type, body }) => {
                assert_eq!(error_type.as_deref(), Some("Error"));
                assert_eq!(&body[..], br#"{"errorType":"Error","errorMessage":"boom"}"#);
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn peers_rule_serves_only_the_container_and_pending_waits_for_it() {
        let a: IpAddr = "172.17.0.5".parse().unwrap();
        let b: IpAddr = "172.17.0.1".parse().unwrap();
        let ep = Endpoint::new("t");
        // Default: any source (loopback listeners, remote engines).
        assert!(ep.admits(b).await);
        ep.allow_peers(Peers::Only(a));
        assert!(ep.admits(a).await);
        assert!(!ep.admits(b).await);
        // Pending: requests wait for the container's address, then the rule decides.
        ep.allow_peers(Peers::Pending);
        let (wa, wb) = (ep.clone(), ep.clone());
        let ta = tokio::spawn(async move { wa.admits_within(a, Duration::from_secs(30)).await });
        let tb = tokio::spawn(async move { wb.admits_within(b, Duration::from_secs(30)).await });
        tokio::task::yield_now().await;
        assert!(!ta.is_finished() && !tb.is_finished(), "a pending rule must not decide before it is settled");
        ep.allow_peers(Peers::Only(a));
        assert!(ta.await.unwrap());
        assert!(!tb.await.unwrap());
        // A rule never settled refuses once the wait is over.
        ep.allow_peers(Peers::Pending);
        assert!(!ep.admits_within(a, Duration::from_millis(20)).await);
    }
}
