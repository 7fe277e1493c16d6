//! The server side of the Lambda Runtime API (2018-06-01): one endpoint per environment.
//!
//! Each environment gets its own listener (`host:port`, PROTOCOL.md §5.3) and its own
//! [`Endpoint`]: a one-slot queue of invocations for `/next`, the invocation in flight, and
//! a watch that says when the runtime died. Request ids live in the endpoint, so one
//! environment can never answer another's invocation.

use std::net::SocketAddr;
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

struct InFlight {
    request_id: String,
    done: oneshot::Sender<Outcome>,
}

/// The state shared by an environment's listener and its owner.
pub struct Endpoint {
    queue_tx: mpsc::Sender<Invocation>,
    queue_rx: tokio::sync::Mutex<mpsc::Receiver<Invocation>>,
    in_flight: Mutex<Option<InFlight>>,
    death_tx: watch::Sender<Option<Death>>,
    /// Set once the runtime first calls `/next` (init done).
    ready_tx: watch::Sender<bool>,
    label: String,
    /// The bearer token of the metadata endpoint (`AWS_LAMBDA_METADATA_TOKEN`).
    metadata_token: String,
    /// What the metadata endpoint answers: `{"AvailabilityZoneID": …}`, set at start.
    metadata: std::sync::OnceLock<Bytes>,
}

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
            label: label.into(),
            metadata_token: uuid::Uuid::new_v4().to_string(),
            metadata: std::sync::OnceLock::new(),
        })
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

    /// Forgets the invocation in flight (after a timeout): late answers get 400.
    pub fn clear_in_flight(&self) {
        self.in_flight.lock().take();
    }

    fn take_in_flight(&self, id: &str) -> Option<oneshot::Sender<Outcome>> {
        let mut slot = self.in_flight.lock();
        match &*slot {
            Some(f) if f.request_id == id => slot.take().map(|f| f.done),
            _ => None,
        }
    }

    fn has_in_flight(&self, id: &str) -> bool {
        matches!(&*self.in_flight.lock(), Some(f) if f.request_id == id)
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
            let (stream, _) = match listener.accept().await {
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
                async move { handle(&ep, req).await }
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

fn header(req: &Request<Incoming>, name: &str) -> Option<String> {
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
    ep.ready_tx.send_if_modified(|r| !std::mem::replace(r, true));
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
    let mut resp = Response::new(http_body_util::Full::new(inv.payload));
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    let mut put = |name: &'static str, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(name, v);
        }
    };
    put("lambda-runtime-aws-request-id", &inv.request_id);
    put("lambda-runtime-deadline-ms", &deadline_ms.to_string());
    put("lambda-runtime-invoked-function-arn", &inv.invoked_arn);
    put("lambda-runtime-trace-id", &inv.trace_id);
    if let Some(c) = &inv.client_context {
        put("lambda-runtime-client-context", c);
    }
    if let Some(c) = &inv.cognito_identity {
        put("lambda-runtime-cognito-identity", c);
    }
    if let Some(t) = &inv.tenant_id {
        put("lambda-runtime-aws-tenant-id", t);
    }
    *ep.in_flight.lock() = Some(InFlight { request_id: inv.request_id, done: inv.done });
    let _ = inv.started.send(deadline);
    resp
}

async fn post_result(ep: &Endpoint, req: Request<Incoming>, id: &str, is_error: bool) -> Response<Body> {
    if !ep.has_in_flight(id) {
        return error(StatusCode::BAD_REQUEST, "InvalidRequestID", "Invalid request ID");
    }
    if let Some(mode) = header(&req, "lambda-runtime-function-response-mode")
        && mode != "streaming"
    {
        return error(StatusCode::BAD_REQUEST, "InvalidFunctionResponseMode", "Invalid function response mode");
    }
    let content_type = header(&req, "content-type");
    let error_type = header(&req, "lambda-runtime-function-error-type");
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
    let outcome = if is_error { Outcome::Error { body, error_type } } else { Outcome::Response { body, content_type } };
    let _ = done.send(outcome);
    accepted()
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
}
