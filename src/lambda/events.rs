//! Asynchronous (Event) invocations: written to the data dir before the 202, run in the
//! background at least once (also after a crash), retried twice on function error like AWS.

use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc};

use super::Lambda;
use super::invoke::{self, CallContext};
use super::model::Scope;

#[derive(Serialize, Deserialize, Clone)]
struct Event {
    id: String,
    function: String,
    qualifier: Option<String>,
    region: String,
    /// base64 payload.
    payload: String,
    attempts: u32,
}

/// Handle for queueing events; the worker runs them. Only ids wait in memory: an event
/// (up to 1 MB of payload) stays on disk until it runs, so a deep queue costs no RAM.
pub struct EventQueue {
    dir: PathBuf,
    tx: mpsc::UnboundedSender<String>,
    rx: parking_lot::Mutex<Option<mpsc::UnboundedReceiver<String>>>,
}

impl EventQueue {
    pub fn open(data_dir: &std::path::Path) -> std::io::Result<EventQueue> {
        let dir = data_dir.join("lambda").join("events");
        std::fs::create_dir_all(&dir)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let q = EventQueue { dir, tx, rx: parking_lot::Mutex::new(Some(rx)) };
        // Events left by an earlier run (even one killed with -9) run again.
        let mut pending = 0;
        if let Ok(entries) = std::fs::read_dir(&q.dir) {
            for e in entries.flatten() {
                let p = e.path();
                if p.extension().and_then(|x| x.to_str()) != Some("json") {
                    let _ = std::fs::remove_file(&p);
                    continue;
                }
                if let Some(id) = p.file_stem().and_then(|s| s.to_str()) {
                    pending += 1;
                    let _ = q.tx.send(id.to_string());
                }
            }
        }
        if pending > 0 {
            tracing::info!(pending, "resuming queued Event invocations");
        }
        Ok(q)
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Persists then queues an event. Returns the request id.
    pub fn push(
        &self,
        function: &str,
        qualifier: Option<&str>,
        region: &str,
        payload: &[u8],
    ) -> std::io::Result<String> {
        let id = crate::aws::request_id();
        let ev = Event {
            id: id.clone(),
            function: function.to_string(),
            qualifier: qualifier.map(str::to_string),
            region: region.to_string(),
            payload: base64::engine::general_purpose::STANDARD.encode(payload),
            attempts: 0,
        };
        let bytes = serde_json::to_vec(&ev).map_err(std::io::Error::other)?;
        write_event(&self.path(&id), &bytes)?;
        let _ = self.tx.send(id.clone());
        Ok(id)
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
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Events not yet finished (on disk).
    pub fn pending(&self) -> usize {
        std::fs::read_dir(&self.dir).map(|d| d.flatten().count()).unwrap_or(0)
    }
}

/// Writes an event file: temp file, then rename, without the fsync of `store::write_atomic`.
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
                if let Some(ev) = lambda.events.load(&id) {
                    run_event(&lambda, ev).await;
                }
                drop(permit);
            });
        }
    });
}

async fn run_event(lambda: &Arc<Lambda>, mut ev: Event) {
    let scope = Scope { region: ev.region.clone(), account: lambda.cfg.account_id.clone() };
    let payload = Bytes::from(base64::engine::general_purpose::STANDARD.decode(&ev.payload).unwrap_or_default());
    let delay = Duration::from_millis(lambda.cfg.lambda_event_retry_delay_ms);
    loop {
        ev.attempts += 1;
        let target = match invoke::resolve(lambda, &ev.function, ev.qualifier.as_deref(), &scope) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(function = %ev.function, error = %e, "dropping Event invocation");
                break;
            }
        };
        let call = CallContext { request_id: Some(ev.id.clone()), ..CallContext::default() };
        match invoke::invoke(lambda, &target, &scope, payload.clone(), call).await {
            Ok(out) if !out.function_error => break,
            Ok(_) if ev.attempts >= 3 => {
                tracing::warn!(function = %ev.function, id = %ev.id, "Event invocation failed 3 times; giving up");
                break;
            }
            Ok(_) => {
                tracing::info!(function = %ev.function, id = %ev.id, attempt = ev.attempts, "Event invocation failed; retrying");
                if let Ok(bytes) = serde_json::to_vec(&ev) {
                    let _ = write_event(&lambda.events.path(&ev.id), &bytes);
                }
                tokio::time::sleep(delay).await;
            }
            Err(e) if e.code == "TooManyRequestsException" => {
                ev.attempts -= 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => {
                tracing::warn!(function = %ev.function, error = %e, "Event invocation could not run");
                if ev.attempts >= 3 {
                    break;
                }
                tokio::time::sleep(delay).await;
            }
        }
    }
    let _ = std::fs::remove_file(lambda.events.path(&ev.id));
}
