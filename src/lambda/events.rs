//! Asynchronous (Event) invocations: written to the data dir before the 202, run in the
//! background at least once (also after a crash), retried on function error like AWS (twice,
//! or as PutFunctionEventInvokeConfig says), discarded when older than the configured maximum
//! age, and reported to a function destination (OnSuccess / OnFailure) with AWS's invocation
//! record.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc};

use super::Lambda;
use super::invoke::{self, CallContext};
use super::model::{EventInvokeConfig, FunctionConfig, Scope};
use serde_json::{Value, json};

#[derive(Serialize, Deserialize, Clone)]
struct Event {
    /// The code digests (zip and layers) of the version it was queued for: kept from the
    /// code store's collector until the event has run or been dropped. First, so that a start
    /// reads them from the head of the file (see [`head_digests`]).
    #[serde(default)]
    code: Vec<String>,
    id: String,
    function: String,
    qualifier: Option<String>,
    region: String,
    /// base64 payload.
    payload: String,
    attempts: u32,
    /// When it was queued (epoch ms; 0 in events queued by older versions: no age limit).
    #[serde(default)]
    queued_ms: u64,
    /// The configuration of the version it was queued for (an Invoke's Event): it runs on
    /// that code even if `$LATEST` was updated meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    version: Option<Arc<FunctionConfig>>,
}

/// The code digests a version runs: its zip and its layers.
fn digests(c: &FunctionConfig) -> Vec<String> {
    let zip = (!c.code_sha_hex.is_empty()).then(|| c.code_sha_hex.clone());
    zip.into_iter().chain(c.layers.iter().map(|l| l.sha_hex.clone())).collect()
}

/// The `code` list at the head of an event file, read without the payload behind it.
fn head_digests(path: &std::path::Path) -> Vec<String> {
    use std::io::Read;
    let mut head = vec![0u8; 2048];
    let n = std::fs::File::open(path).and_then(|mut f| f.read(&mut head)).unwrap_or(0);
    let head = &head[..n];
    let Some(rest) = head.strip_prefix(br#"{"code":"#.as_slice()) else { return Vec::new() };
    let Some(end) = rest.iter().position(|b| *b == b']') else { return Vec::new() };
    serde_json::from_slice(&rest[..=end]).unwrap_or_default()
}

/// Handle for queueing events; the worker runs them. Only ids wait in memory: an event
/// (up to 1 MB of payload) stays on disk until it runs, so a deep queue costs no RAM.
pub struct EventQueue {
    dir: PathBuf,
    /// Events on disk, not yet finished (counted, so that health never lists the directory).
    pending: Arc<AtomicUsize>,
    /// Bytes of those events on disk (a counter, for the same reason).
    bytes: Arc<AtomicU64>,
    tx: mpsc::UnboundedSender<String>,
    rx: parking_lot::Mutex<Option<mpsc::UnboundedReceiver<String>>>,
    /// The code digests of every pending event, by id (what the code store must keep).
    refs: Arc<parking_lot::Mutex<HashMap<String, Vec<String>>>>,
}

impl EventQueue {
    pub fn open(data_dir: &std::path::Path) -> std::io::Result<EventQueue> {
        let dir = data_dir.join("lambda").join("events");
        std::fs::create_dir_all(&dir)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let q = EventQueue {
            dir,
            pending: Arc::default(),
            bytes: Arc::default(),
            tx,
            rx: parking_lot::Mutex::new(Some(rx)),
            refs: Arc::default(),
        };
        // Events left by an earlier run (even one killed with -9) run again.
        let mut pending = 0;
        let mut bytes = 0;
        if let Ok(entries) = std::fs::read_dir(&q.dir) {
            for e in entries.flatten() {
                let p = e.path();
                if p.extension().and_then(|x| x.to_str()) != Some("json") {
                    let _ = std::fs::remove_file(&p);
                    continue;
                }
                if let Some(id) = p.file_stem().and_then(|s| s.to_str()) {
                    let code = head_digests(&p);
                    if !code.is_empty() {
                        q.refs.lock().insert(id.to_string(), code);
                    }
                    pending += 1;
                    bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
                    let _ = q.tx.send(id.to_string());
                }
            }
        }
        if pending > 0 {
            tracing::info!(pending, "resuming queued Event invocations");
        }
        q.pending.store(pending, Ordering::SeqCst);
        q.bytes.store(bytes, Ordering::SeqCst);
        Ok(q)
    }

    /// The code digests pending events keep (for [`super::store::Regions`]' collector).
    pub fn code_refs(&self) -> impl Fn() -> HashSet<String> + Send + Sync + 'static {
        let refs = self.refs.clone();
        move || refs.lock().values().flatten().cloned().collect()
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Persists then queues an event, from a thread that may block. Returns the request id.
    pub fn push(
        &self,
        function: &str,
        qualifier: Option<&str>,
        region: &str,
        payload: &[u8],
    ) -> std::io::Result<String> {
        self.writer(function, qualifier, region, None)(payload)
    }

    /// Persists (on the blocking pool) then queues an event. Returns the request id once the
    /// event is on disk, so a 202 is only sent for an event that survives a crash. With
    /// `version` (the configuration the qualifier resolved to), the event runs that version's
    /// code and keeps it stored until it has run.
    pub async fn queue(
        &self,
        function: &str,
        qualifier: Option<&str>,
        region: &str,
        payload: Bytes,
        version: Option<Arc<FunctionConfig>>,
    ) -> std::io::Result<String> {
        let write = self.writer(function, qualifier, region, version);
        tokio::task::spawn_blocking(move || write(&payload)).await.map_err(std::io::Error::other)?
    }

    /// The work of queueing one event, ready to run on any thread.
    fn writer(
        &self,
        function: &str,
        qualifier: Option<&str>,
        region: &str,
        version: Option<Arc<FunctionConfig>>,
    ) -> impl FnOnce(&[u8]) -> std::io::Result<String> + Send + 'static {
        let id = crate::aws::request_id();
        let code = version.as_deref().map(digests).unwrap_or_default();
        let mut ev = Event {
            code: code.clone(),
            id: id.clone(),
            function: function.to_string(),
            qualifier: qualifier.map(str::to_string),
            region: region.to_string(),
            payload: String::new(),
            attempts: 0,
            queued_ms: crate::aws::epoch_ms(),
            version,
        };
        let (path, tx, pending, queued) = (self.path(&id), self.tx.clone(), self.pending.clone(), self.bytes.clone());
        let refs = self.refs.clone();
        move |payload| {
            ev.payload = base64::engine::general_purpose::STANDARD.encode(payload);
            let bytes = serde_json::to_vec(&ev).map_err(std::io::Error::other)?;
            // Counted before the file exists: a collection meanwhile keeps the code (at worst
            // an event that failed to write keeps it until the next one).
            if !code.is_empty() {
                refs.lock().insert(id.clone(), code);
            }
            if let Err(e) = write_event(&path, &bytes) {
                refs.lock().remove(&id);
                return Err(e);
            }
            pending.fetch_add(1, Ordering::SeqCst);
            queued.fetch_add(bytes.len() as u64, Ordering::SeqCst);
            let _ = tx.send(id.clone());
            Ok(id)
        }
    }

    /// Reads a queued event back; an unreadable one is dropped.
    fn load(&self, id: &str) -> Option<Event> {
        let path = self.path(id);
        match std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        {
            Ok(ev) => Some(ev),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "dropping unreadable Event invocation");
                self.finished(id);
                None
            }
        }
    }

    /// Removes a finished event from the disk.
    fn finished(&self, id: &str) {
        let path = self.path(id);
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if std::fs::remove_file(&path).is_ok() {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            let _ = self.bytes.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| Some(b.saturating_sub(size)));
        }
        // Its code may go now (collected by the caller, off this lock).
        self.refs.lock().remove(id);
    }

    /// Bytes of the events on disk.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::SeqCst)
    }

    /// Events not yet finished (on disk).
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }
}

/// Writes an event file: temp file, then rename, without the fsync of `aws::fs::write_atomic`.
///
/// The rename is atomic, so a crash of RustStack (even kill -9) leaves either the whole
/// event or none of it, and the kernel still writes it out. Only a power loss or kernel
/// crash within the kernel's writeback delay (seconds) can lose a queued event. An fsync per
/// event cost ~1.4 ms of every Event call and capped queueing at a few hundred a second.
fn write_event(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let result = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Runs queued events until the Lambda service is gone.
pub fn start_worker(lambda: &Arc<Lambda>) {
    let Some(mut rx) = lambda.events.rx.lock().take() else { return };
    let weak: Weak<Lambda> = Arc::downgrade(lambda);
    // At most as many events in flight as environments, so Events never starve sync calls of queue room.
    let limit = Arc::new(Semaphore::new(lambda.cfg.lambda_max_containers.max(1)));
    tokio::spawn(async move {
        while let Some(id) = rx.recv().await {
            let Ok(permit) = limit.clone().acquire_owned().await else { break };
            let Some(lambda) = weak.upgrade() else { break };
            tokio::spawn(async move {
                let loaded = {
                    let lambda = lambda.clone();
                    tokio::task::spawn_blocking(move || lambda.events.load(&id)).await.ok().flatten()
                };
                if let Some(ev) = loaded {
                    run_event(&lambda, ev).await;
                }
                drop(permit);
            });
        }
    });
}

/// The function's asynchronous invocation settings for the event's qualifier.
fn settings(lambda: &Lambda, ev: &Event) -> EventInvokeConfig {
    let key = ev.qualifier.as_deref().unwrap_or("$LATEST");
    lambda
        .stores
        .get(&ev.region)
        .with_function(&ev.function, |rec| rec.event_invoke.get(key).cloned())
        .flatten()
        .unwrap_or_default()
}

/// How an event ended, for its destination.
struct Ending<'a> {
    condition: &'static str,
    target: Option<&'a invoke::Target>,
    output: Option<&'a invoke::InvokeOutput>,
}

/// Sends the invocation record to the OnSuccess / OnFailure destination, if one is set.
/// Functions are the destinations RustStack can deliver to; others are logged.
async fn deliver_record(lambda: &Lambda, ev: &Event, cfg: &EventInvokeConfig, payload: &[u8], end: Ending<'_>) {
    let side = if end.condition == "Success" { "OnSuccess" } else { "OnFailure" };
    let Some(dest) = cfg.destinations.as_ref().and_then(|d| d[side]["Destination"].as_str()).filter(|d| !d.is_empty())
    else {
        return;
    };
    let executed = end.target.map_or("$LATEST", |t| t.executed_version.as_str());
    let function_arn = crate::aws::arn::function_arn(
        &ev.region,
        &lambda.cfg.account_id,
        &ev.function,
        Some(ev.qualifier.as_deref().unwrap_or("$LATEST")),
    );
    let as_json = |b: &[u8]| serde_json::from_slice::<Value>(b).unwrap_or_else(|_| json!(String::from_utf8_lossy(b)));
    let mut response = json!({"statusCode": 200, "executedVersion": executed});
    if end.output.is_some_and(|o| o.function_error) {
        response["functionError"] = json!("Unhandled");
    }
    let mut record = json!({
        "version": "1.0",
        "timestamp": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        "requestContext": {
            "requestId": ev.id,
            "functionArn": function_arn,
            "condition": end.condition,
            "approximateInvokeCount": ev.attempts,
        },
        "requestPayload": as_json(payload),
        "responseContext": response,
    });
    if let Some(out) = end.output {
        record["responsePayload"] = as_json(&out.body);
    }
    let parts: Vec<&str> = dest.split(':').collect();
    let function = match parts.get(2) {
        Some(&"lambda") => crate::aws::arn::parse_function_ref(dest).ok(),
        _ => None,
    };
    let Some(r) = function else {
        tracing::warn!(
            destination = dest,
            "destination is not a Lambda function: RustStack delivers only to functions"
        );
        return;
    };
    let region = parts.get(3).filter(|r| !r.is_empty()).copied().unwrap_or(&ev.region);
    let bytes = serde_json::to_vec(&record).unwrap_or_default();
    match lambda.events.queue(&r.name, r.qualifier.as_deref(), region, Bytes::from(bytes), None).await {
        Ok(id) => tracing::info!(function = %ev.function, destination = dest, id, "invocation record sent"),
        Err(e) => tracing::warn!(destination = dest, error = %e, "could not queue the invocation record"),
    }
}

/// Longest wait for the engine's room signal before an Event refused with 429 is retried.
const ROOM_FALLBACK: Duration = Duration::from_secs(1);

async fn run_event(lambda: &Arc<Lambda>, mut ev: Event) {
    let scope = Scope { region: ev.region.clone(), account: lambda.cfg.account_id.clone() };
    let payload = Bytes::from(base64::engine::general_purpose::STANDARD.decode(&ev.payload).unwrap_or_default());
    let delay = Duration::from_millis(lambda.cfg.lambda_event_retry_delay_ms);
    loop {
        let cfg = settings(lambda, &ev);
        let max_age_ms = u64::from(cfg.max_event_age.unwrap_or(21600)) * 1000;
        if ev.queued_ms > 0 && crate::aws::epoch_ms().saturating_sub(ev.queued_ms) > max_age_ms {
            tracing::warn!(function = %ev.function, id = %ev.id, "Event invocation older than its maximum age: discarded");
            deliver_record(
                lambda,
                &ev,
                &cfg,
                &payload,
                Ending { condition: "EventAgeExceeded", target: None, output: None },
            )
            .await;
            break;
        }
        let attempts = 1 + cfg.max_retry_attempts.unwrap_or(2);
        ev.attempts += 1;
        let target = match invoke::resolve(lambda, &ev.function, ev.qualifier.as_deref(), &scope) {
            // The version it was queued for, when the qualifier still names that version
            // but its code changed since (an update of `$LATEST`).
            Ok(mut t) => {
                if let Some(v) = &ev.version
                    && v.version == t.executed_version
                    && v.revision_id != t.config.revision_id
                {
                    t.config = v.clone();
                }
                t
            }
            Err(e) => {
                tracing::warn!(function = %ev.function, error = %e, "dropping Event invocation");
                break;
            }
        };
        let call = CallContext { request_id: Some(ev.id.clone()), ..CallContext::default() };
        // Armed before the attempt: a slot that frees while it is refused wakes the retry.
        let room = lambda.engine.room();
        let room_freed = room.notified();
        match invoke::invoke(lambda, &target, &scope, payload.clone(), call).await {
            Ok(out) if !out.function_error => {
                let end = Ending { condition: "Success", target: Some(&target), output: Some(&out) };
                deliver_record(lambda, &ev, &cfg, &payload, end).await;
                break;
            }
            Ok(out) if ev.attempts >= attempts => {
                tracing::warn!(function = %ev.function, id = %ev.id, attempts, "Event invocation failed; giving up");
                let end = Ending { condition: "RetriesExhausted", target: Some(&target), output: Some(&out) };
                deliver_record(lambda, &ev, &cfg, &payload, end).await;
                break;
            }
            Ok(_) => {
                tracing::info!(function = %ev.function, id = %ev.id, attempt = ev.attempts, "Event invocation failed; retrying");
                if let Ok(bytes) = serde_json::to_vec(&ev) {
                    let path = lambda.events.path(&ev.id);
                    let _ = tokio::task::spawn_blocking(move || write_event(&path, &bytes)).await;
                }
                tokio::time::sleep(delay).await;
            }
            Err(e) if e.code == "TooManyRequestsException" => {
                ev.attempts -= 1;
                // Retried when the engine has room; the timeout bounds a missed signal.
                let _ = tokio::time::timeout(ROOM_FALLBACK, room_freed).await;
            }
            Err(e) => {
                tracing::warn!(function = %ev.function, error = %e, "Event invocation could not run");
                if ev.attempts >= attempts {
                    let end = Ending { condition: "RetriesExhausted", target: Some(&target), output: None };
                    deliver_record(lambda, &ev, &cfg, &payload, end).await;
                    break;
                }
                tokio::time::sleep(delay).await;
            }
        }
    }
    let lambda = lambda.clone();
    let _ = tokio::task::spawn_blocking(move || {
        lambda.events.finished(&ev.id);
        if !ev.code.is_empty() {
            lambda.stores.collect();
        }
    })
    .await;
}
