//! The listener on 4566: routing by service (Lambda, S3, RustStack's own `/_ruststack/`),
//! and graceful shutdown on SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;
use tokio::net::TcpListener;

use crate::aws::arn;
use crate::aws::error::{AwsError, JsonVersion, S3XmlError, aws_json, s3_xml};
use crate::config::{CodeTransferMode, Config, ExecutorMode, NetworkMode};
use crate::engine::{Advertise, CodeTransfer, Engine, EngineConfig, Network, SandboxMode};
use crate::http_util::{self, Body};
use crate::lambda::model::Scope;
use crate::lambda::{Lambda, events, store::Regions};
use crate::s3::S3;
use crate::sqs::Sqs;

/// Largest S3 request body held in memory.
const MAX_S3_BODY: usize = 512 * 1024 * 1024;
/// PutLogEvents takes at most 1 MB of events; a little room for the JSON around them.
const MAX_LOGS_BODY: usize = 2 * 1024 * 1024;

pub struct App {
    pub lambda: Arc<Lambda>,
    pub s3: Arc<S3>,
    pub sqs: Arc<Sqs>,
    pub cfg: Config,
    in_flight: AtomicUsize,
    /// Told when the last in-flight request ends (for the shutdown drain).
    drained: tokio::sync::Notify,
}

pub async fn run(cfg: Config) -> Result<u8, String> {
    // Signal handlers first: a SIGTERM right after the port opens must still shut down gracefully.
    let signals = Signals::new()?;
    let data_dir = cfg.data_dir();
    std::fs::create_dir_all(&data_dir).map_err(|e| format!("cannot create data dir {}: {e}", data_dir.display()))?;
    // A bad --lambda-advertise-host stops the start before the port opens.
    let advertise = resolve_advertise(&cfg).await?;
    let addr = SocketAddr::new(cfg.host, cfg.port);
    let listener = TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    if !cfg.host.is_loopback() {
        tracing::warn!(
            "listening on {addr}, which is NOT a loopback address: anyone who can reach it can run code on this machine"
        );
    }
    let app = build_with(cfg.clone(), &data_dir, addr, advertise.clone())?;
    tracing::info!(
        "RustStack Lambda ready on http://{addr} (data dir {}, executor {:?})",
        data_dir.display(),
        cfg.lambda_executor
    );
    let gateway = match &advertise {
        Some(a) => advertise_listener(&app, a, addr).await,
        None => bridge_listener(&app, addr).await,
    };
    serve(app, listener, gateway, signals).await
}

struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Signals, String> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate()).map_err(|e| e.to_string())?,
            int: signal(SignalKind::interrupt()).map_err(|e| e.to_string())?,
        })
    }
}

/// `--lambda-advertise-host`, resolved off the async workers (DNS), with a loud warning when
/// it is not an address of this machine (the listeners for containers then bind 0.0.0.0).
async fn resolve_advertise(cfg: &Config) -> Result<Option<Advertise>, String> {
    let Some(host) = cfg.lambda_advertise_host.clone().filter(|h| !h.trim().is_empty()) else { return Ok(None) };
    let a = tokio::task::spawn_blocking(move || Advertise::resolve(&host)).await.map_err(|e| e.to_string())??;
    if a.bind.is_unspecified() {
        tracing::warn!(
            "--lambda-advertise-host {} is not an address of this machine: Runtime API listeners bind {} (ALL interfaces). \
             Anyone who can reach this machine can reach them; keep it behind a firewall",
            a.host,
            a.bind
        );
    } else {
        tracing::info!("containers reach RustStack at {} (listening for them on {})", a.host, a.bind);
    }
    Ok(Some(a))
}

/// `--lambda-advertise-host`: the service port also listens on the advertised address, so
/// `AWS_ENDPOINT_URL` in containers works (unless the main listener covers it already).
async fn advertise_listener(app: &Arc<App>, a: &Advertise, addr: SocketAddr) -> Option<TcpListener> {
    if app.cfg.lambda_executor == ExecutorMode::Subprocess || addr.ip().is_unspecified() || a.bind == addr.ip() {
        return None;
    }
    match TcpListener::bind((a.bind, addr.port())).await {
        Ok(l) => {
            tracing::info!("also listening on http://{}:{} for containers", a.bind, addr.port());
            Some(l)
        }
        Err(e) => {
            tracing::warn!(
                "cannot listen on {}:{}: {e}; containers cannot reach AWS_ENDPOINT_URL (try --host {})",
                a.bind,
                addr.port(),
                a.bind
            );
            None
        }
    }
}

/// Bridge network: containers reach the API at `host.docker.internal`, the bridge gateway,
/// so the API listens there too (only there, never on 0.0.0.0).
async fn bridge_listener(app: &Arc<App>, addr: SocketAddr) -> Option<TcpListener> {
    if app.cfg.lambda_network != NetworkMode::Bridge
        || app.cfg.lambda_executor == ExecutorMode::Subprocess
        || addr.ip().is_unspecified()
    {
        return None;
    }
    let gw = match app.lambda.engine.bridge_gateway().await {
        Ok(gw) => gw,
        Err(e) => {
            tracing::warn!("bridge network: {e}; containers cannot reach RustStack");
            return None;
        }
    };
    match TcpListener::bind((gw, addr.port())).await {
        Ok(l) => {
            tracing::info!("bridge network: also listening on http://{gw}:{} for containers", addr.port());
            Some(l)
        }
        Err(e) => {
            tracing::warn!(
                "bridge network: cannot listen on {gw}:{}: {e}; containers cannot reach RustStack",
                addr.port()
            );
            None
        }
    }
}

async fn accept_on(l: &Option<TcpListener>) -> std::io::Result<(tokio::net::TcpStream, SocketAddr)> {
    match l {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// Opens the stores and starts the services behind the listener.
pub fn build(cfg: Config, data_dir: &std::path::Path, addr: SocketAddr) -> Result<Arc<App>, String> {
    build_with(cfg, data_dir, addr, None)
}

/// [`build`], with `--lambda-advertise-host` already resolved.
fn build_with(
    cfg: Config,
    data_dir: &std::path::Path,
    addr: SocketAddr,
    advertise: Option<Advertise>,
) -> Result<Arc<App>, String> {
    let sqs = Arc::new(
        Sqs::open(data_dir.join("sqs"), &cfg.account_id, &cfg.region, &format!("http://{addr}"))
            .map_err(|e| format!("cannot open SQS store: {e}"))?,
    );
    // The Event queue first: the code its pending events run is kept by the store's sweep.
    let events = events::EventQueue::open(data_dir).map_err(|e| format!("cannot open event queue: {e}"))?;
    let store = Regions::open_with(data_dir, &cfg.region, Some(events.code_refs()))
        .map_err(|e| format!("cannot open store: {e}"))?;
    let s3 = Arc::new(S3::open(data_dir.join("s3")).map_err(|e| format!("cannot open S3 store: {e}"))?);
    cfg.service_endpoint_env()?;
    cfg.lambda_debug()?;
    crate::lambda::watch::Filter::new(&cfg.hot_reload_patterns)?;
    crate::upstream::check_upstream(&cfg)?;
    let engine = Engine::new(&engine_config(&cfg, data_dir, addr, advertise)?)
        .map_err(|e| format!("cannot set up executors: {e}"))?;
    let lambda = Arc::new(Lambda::new(cfg.clone(), store, engine, s3.clone(), format!("http://{addr}"), events));
    // Event source mappings poll the embedded SQS (connected before their pollers start).
    lambda.set_sqs(sqs.clone());
    lambda.start();
    // Bucket notifications become Event invocations of the function they name.
    let weak = Arc::downgrade(&lambda);
    s3.notifications.set_sink(Box::new(move |function_arn: &str, payload: Vec<u8>| {
        let Some(lambda) = weak.upgrade() else { return };
        let region = function_arn.split(':').nth(3).filter(|r| !r.is_empty()).unwrap_or(&lambda.cfg.region).to_string();
        let queued = arn::parse_function_ref(function_arn).map_err(|e| e.to_string()).and_then(|r| {
            lambda.events.push(&r.name, r.qualifier.as_deref(), &region, &payload).map_err(|e| e.to_string())
        });
        if let Err(e) = queued {
            tracing::warn!(function = function_arn, error = %e, "cannot queue the S3 notification");
        }
    }));
    Ok(Arc::new(App { lambda, s3, sqs, cfg, in_flight: AtomicUsize::new(0), drained: tokio::sync::Notify::new() }))
}

/// What the engine needs of the command line.
fn engine_config(
    cfg: &Config,
    data_dir: &std::path::Path,
    addr: SocketAddr,
    advertise: Option<Advertise>,
) -> Result<EngineConfig, String> {
    Ok(EngineConfig {
        mode: match cfg.lambda_executor {
            ExecutorMode::Subprocess => SandboxMode::Subprocess,
            ExecutorMode::Docker => SandboxMode::Docker,
            ExecutorMode::Auto => SandboxMode::Auto,
        },
        network: match cfg.lambda_network {
            NetworkMode::Host => Network::Host,
            NetworkMode::Bridge => Network::Bridge,
        },
        data_dir: data_dir.to_path_buf(),
        python: cfg.python.clone(),
        python_runtimes: cfg.python_runtimes()?,
        python_fork: cfg.python_fork,
        node: cfg.node.clone(),
        runtime_images: cfg.runtime_images()?,
        server_addr: addr,
        max_environments: cfg.lambda_max_containers,
        queue_size: cfg.lambda_queue_size,
        ttl: Duration::from_secs(cfg.lambda_container_ttl),
        init_timeout: Duration::from_secs(cfg.lambda_init_timeout),
        code_transfer: cfg.lambda_code_transfer.map(|m| match m {
            CodeTransferMode::Mount => CodeTransfer::Mount,
            CodeTransferMode::Upload => CodeTransfer::Upload,
        }),
        advertise,
        docker_spares: cfg.lambda_docker_spare,
    })
}

async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    gateway: Option<TcpListener>,
    mut signals: Signals,
) -> Result<u8, String> {
    loop {
        tokio::select! {
            r = listener.accept() => serve_conn(&app, r).await,
            r = accept_on(&gateway) => serve_conn(&app, r).await,
            _ = signals.term.recv() => break,
            _ = signals.int.recv() => break,
        }
    }
    drop(listener);
    drop(gateway);
    tracing::info!("shutting down: waiting for in-flight requests");
    let grace = tokio::time::Instant::now() + Duration::from_secs(app.cfg.shutdown_grace);
    loop {
        let drained = app.drained.notified();
        tokio::pin!(drained);
        // Registered before the check, so an end between the two is not missed.
        drained.as_mut().enable();
        if app.in_flight.load(Ordering::SeqCst) == 0 {
            break;
        }
        if tokio::time::timeout_at(grace, drained).await.is_err() {
            break;
        }
    }
    // Event source mapping pollers stop taking messages; their batches in flight may finish
    // within the grace (an unfinished one returns to its queue after the visibility timeout).
    let _ = tokio::time::timeout_at(grace, app.lambda.stop_pollers()).await;
    // SQS's log is flushed before the environments are stopped: stopping them ends the
    // invocations still running, and the process must exit right after that (before their
    // connections are answered; test_faults::test_sigterm_grace_period_is_bounded).
    let sqs = app.sqs.clone();
    let _ = tokio::task::spawn_blocking(move || sqs.shutdown()).await;
    app.lambda.engine.shutdown().await;
    tracing::info!("stopped");
    Ok(0)
}

/// Serves one accepted connection in its own task.
async fn serve_conn(app: &Arc<App>, accepted: std::io::Result<(tokio::net::TcpStream, SocketAddr)>) {
    let (stream, peer) = match accepted {
        Ok((s, a)) => (s, a),
        Err(e) => {
            tracing::warn!(error = %e, "accept failed");
            tokio::time::sleep(Duration::from_millis(10)).await;
            return;
        }
    };
    let app = app.clone();
    tokio::spawn(http_util::serve_http1(stream, move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(crate::lambda::urls::Peer(peer));
        let app = app.clone();
        async move { dispatch(&app, req).await }
    }));
}

/// Requests for services RustStack does not implement go to [`crate::upstream`]; the rest to [`handle`].
async fn dispatch(app: &Arc<App>, req: Request<Incoming>) -> Response<crate::upstream::Served> {
    match crate::upstream::classify(req.headers()) {
        Some(foreign) => {
            let _guard = InFlight(app);
            crate::upstream::serve(&app.cfg, foreign, req).await
        }
        None => handle(app, req).await.map(http_body_util::Either::Left),
    }
}

struct InFlight<'a>(&'a App);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.drained.notify_waiters();
        }
    }
}

pub async fn handle(app: &Arc<App>, req: Request<Incoming>) -> Response<Body> {
    app.in_flight.fetch_add(1, Ordering::SeqCst);
    let _guard = InFlight(app);
    let path = req.uri().path();
    let url_host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(crate::lambda::urls::url_id_from_host);
    if let Some(id) = url_host {
        let (id, raw_path) = (id.to_string(), path.to_string());
        return crate::lambda::urls::handle(&app.lambda, req, &id, &raw_path).await;
    }
    if let Some((id, raw_path)) = crate::lambda::urls::url_id_from_path(path) {
        let (id, raw_path) = (id.to_string(), raw_path.to_string());
        return crate::lambda::urls::handle(&app.lambda, req, &id, &raw_path).await;
    }
    if path.starts_with("/_ruststack/") {
        return internal(app, req).await;
    }
    let scope_hdr =
        req.headers().get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(arn::credential_scope);
    let service = scope_hdr.as_ref().map(|(_, s)| s.as_str());
    let logs_target = req
        .headers()
        .get(&http_util::names::X_AMZ_TARGET)
        .and_then(|v| v.to_str().ok())
        .filter(|t| t.starts_with("Logs_20140328."))
        .map(str::to_string);
    if let Some(target) = logs_target {
        let region = scope_hdr.map(|(r, _)| r).unwrap_or_else(|| app.cfg.region.clone());
        return match http_util::read_body(req.into_body(), MAX_LOGS_BODY).await {
            Ok(body) => {
                // An invocation answered before its log was written: that log first.
                app.lambda.logs.settled().await;
                app.lambda.logs.handle(&region, &app.cfg.account_id, &target, &body)
            }
            Err(_) => aws_json(
                JsonVersion::V1_1,
                StatusCode::PAYLOAD_TOO_LARGE,
                "InvalidParameterException",
                "Request body too large",
                &crate::aws::request_id(),
            )
            .map(Body::from),
        };
    }
    if crate::sqs::api::is_sqs(req.headers(), req.uri(), service, &app.cfg.account_id) {
        let region = scope_hdr.map(|(r, _)| r).unwrap_or_else(|| app.cfg.region.clone());
        let (parts, body) = req.into_parts();
        let body = http_util::read_body(body, crate::sqs::api::MAX_BODY).await.ok();
        return crate::sqs::api::handle(&app.sqs, &parts.headers, parts.uri.path(), parts.uri.query(), body, region)
            .await;
    }
    let looks_lambda = is_lambda_path(path);
    let request_id = crate::aws::request_id();
    if service == Some("lambda") || (service.is_none() && looks_lambda) || (service != Some("s3") && looks_lambda) {
        let region = scope_hdr.map(|(r, _)| r).unwrap_or_else(|| app.cfg.region.clone());
        let scope = Scope { region, account: app.cfg.account_id.clone() };
        return crate::lambda::api::handle(&app.lambda, req, scope, &request_id).await;
    }
    let (parts, body) = req.into_parts();
    let body = match http_util::read_body(body, MAX_S3_BODY).await {
        Ok(b) => b,
        Err(_) => {
            let max = [("MaxSizeAllowed", MAX_S3_BODY.to_string())];
            let e = S3XmlError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                code: "EntityTooLarge",
                message: "Your proposed upload exceeds the maximum allowed size",
                extra: &max,
                headers: &[],
            };
            return s3_xml(&e, &request_id, parts.method == http::Method::HEAD).map(Body::new);
        }
    };
    let s3 = app.s3.clone();
    match tokio::task::spawn_blocking(move || s3.handle(&parts, body)).await {
        Ok(r) => r.map(Body::new),
        Err(_) => {
            let e = S3XmlError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                code: "InternalError",
                message: "We encountered an internal error. Please try again.",
                extra: &[],
                headers: &[],
            };
            s3_xml(&e, &request_id, false).map(Body::new)
        }
    }
}

/// `/<YYYY-MM-DD>/...`: the Lambda API's date-prefixed paths.
fn is_lambda_path(path: &str) -> bool {
    let b = path.as_bytes();
    b.len() > 11
        && b[0] == b'/'
        && b[1..5].iter().all(u8::is_ascii_digit)
        && b[5] == b'-'
        && b[6..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'-'
        && b[9..11].iter().all(u8::is_ascii_digit)
        && b[11] == b'/'
}

async fn internal(app: &Arc<App>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().trim_end_matches('/').to_string();
    if path == "/_ruststack/health" {
        let (live, idle, busy) = app.lambda.engine.counts();
        let usage = app.lambda.stores.usage();
        return http_util::json(
            StatusCode::OK,
            &json!({
                "status": "running",
                "version": env!("CARGO_PKG_VERSION"),
                "services": {"lambda": "running", "s3": "running", "logs": "running", "sqs": "running"},
                "executor": format!("{:?}", app.cfg.lambda_executor).to_lowercase(),
                "environments": {"live": live, "idle": idle, "busy": busy},
                "pending_events": app.lambda.events.pending(),
                "sqs": app.sqs.health(),
                "storage": {
                    "blob_bytes": usage.blob_bytes,
                    "code_bytes": usage.code_bytes,
                    "event_bytes": app.lambda.events.bytes(),
                    "damaged_code": usage.damaged.len(),
                },
            }),
        );
    }
    if path == "/_ruststack/storage" {
        // Counters kept by the stores, and S3's sizes from its in-memory index: no disk walk.
        let usage = app.lambda.stores.usage();
        let (objects, s3_bytes) = app.lambda.s3.stored_bytes();
        let events = &app.lambda.events;
        return http_util::json(
            StatusCode::OK,
            &json!({
                "blobs": {"count": usage.blob_count, "bytes": usage.blob_bytes},
                "code": {"count": usage.code_count, "bytes": usage.code_bytes, "deferred": usage.deferred_code_dirs},
                "s3": {"objects": objects, "bytes": s3_bytes},
                "events": {"count": events.pending(), "bytes": events.bytes()},
                "damaged": usage.damaged,
                "total_bytes": usage.blob_bytes + usage.code_bytes + s3_bytes + events.bytes(),
            }),
        );
    }
    if let Some(sha) = path.strip_prefix("/_ruststack/code/") {
        // A whole zip read from the disk: on the blocking pool.
        let (stores, sha_owned) = (app.lambda.stores.clone(), sha.to_string());
        let read = tokio::task::spawn_blocking(move || stores.read_blob(&sha_owned));
        return match read.await.unwrap_or_else(|e| Err(std::io::Error::other(e))) {
            Ok(b) => http_util::full(StatusCode::OK, "application/zip", Bytes::from(b)),
            Err(_) => AwsError::not_found(format!("no such code: {sha}"))
                .to_response(&crate::aws::request_id())
                .map(Body::from),
        };
    }
    if path.starts_with("/_ruststack/attach") {
        return crate::lambda::attach::handle_api(&app.lambda, req).await;
    }
    AwsError::new(StatusCode::NOT_FOUND, "NotFound", format!("unknown path {path}"))
        .to_response(&crate::aws::request_id())
        .map(Body::from)
}

#[cfg(test)]
mod tests {
    #[test]
    fn lambda_paths() {
        assert!(super::is_lambda_path("/2015-03-31/functions"));
        assert!(super::is_lambda_path("/2015-03-31/functions/"));
        assert!(!super::is_lambda_path("/mybucket/key"));
        assert!(!super::is_lambda_path("/2015-03-31"));
    }
}
