//! A sandbox for the engine's unit tests: a runtime that runs as a task in the test process
//! and drives its environment's real Runtime API endpoint over HTTP, as any runtime client.
//!
//! What it does is the spec's `handler`:
//! - `echo`: answers every invocation with `{"env": <Runtime API address>, "payload": …}`;
//! - `sleep:MS`: the same, MS milliseconds after taking each invocation;
//! - `exit`: exits (`exit status 1`) before its first `/next`;
//! - `once`: answers one invocation, then exits (`exit status 0`);
//! - `hold:NAME`: its start waits until the test calls [`release`]`(NAME)`, then it echoes;
//! - `stream`: streams each answer (a chunked POST in streaming response mode): `first;`,
//!   then, once the test calls [`release`]`(<payload, a JSON string>)`, `last` (or, for a payload starting
//!   `fail`, the error trailers; for one starting `hang`, nothing more).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Semaphore;

use crate::engine::EnvSpec;
use crate::engine::logsink::LogSink;
use crate::engine::runtime_api::{Death, Endpoint};

pub struct FakeRuntime {
    task: tokio::task::JoinHandle<()>,
    exited: Arc<AtomicBool>,
    endpoint: Arc<Endpoint>,
}

/// A gate: how many starts wait at it, and its permits.
type Gate = (usize, Arc<Semaphore>);

/// Gates of `hold:NAME` starts by NAME.
static GATES: LazyLock<Mutex<HashMap<String, Gate>>> = LazyLock::new(Default::default);

fn gate(name: &str) -> Arc<Semaphore> {
    GATES.lock().entry(name.to_string()).or_insert_with(|| (0, Arc::new(Semaphore::new(0)))).1.clone()
}

/// How many `hold:NAME` starts are waiting now.
pub fn held(name: &str) -> usize {
    GATES.lock().get(name).map_or(0, |g| g.0)
}

/// Lets one `hold:NAME` start go on.
pub fn release(name: &str) {
    gate(name).add_permits(1);
}

impl FakeRuntime {
    pub async fn start(spec: &EnvSpec, api: SocketAddr, endpoint: Arc<Endpoint>, log: Arc<LogSink>) -> FakeRuntime {
        let mut handler = spec.handler.clone().unwrap_or_default();
        if let Some(name) = handler.strip_prefix("hold:").map(str::to_string) {
            let gate = gate(&name);
            set_held(&name, 1);
            let permit = gate.acquire().await;
            set_held(&name, -1);
            if let Ok(p) = permit {
                p.forget();
            }
            handler = "echo".into();
        }
        let exited = Arc::new(AtomicBool::new(false));
        let (ep, ex) = (endpoint.clone(), exited.clone());
        let task = tokio::spawn(async move {
            let why = serve(&handler, api, &log).await;
            ex.store(true, Ordering::SeqCst);
            ep.set_death(Death::Exited(why));
        });
        FakeRuntime { task, exited, endpoint }
    }

    pub fn stop(&self) {
        self.task.abort();
        self.exited.store(true, Ordering::SeqCst);
        self.endpoint.set_death(Death::Exited("signal: killed".into()));
    }

    pub fn alive(&self) -> bool {
        !self.exited.load(Ordering::SeqCst)
    }
}

fn set_held(name: &str, by: isize) {
    if let Some(g) = GATES.lock().get_mut(name) {
        g.0 = g.0.saturating_add_signed(by);
    }
}

/// Runs the runtime loop; returns why it exited.
async fn serve(handler: &str, api: SocketAddr, log: &LogSink) -> String {
    if handler == "exit" {
        return "exit status 1".into();
    }
    let delay = handler.strip_prefix("sleep:").and_then(|ms| ms.parse().ok()).map(Duration::from_millis);
    let Ok(client) = reqwest::Client::builder().no_proxy().build() else { return "exit status 2".into() };
    let base = format!("http://{api}/2018-06-01/runtime/invocation");
    loop {
        let Ok(next) = client.get(format!("{base}/next")).send().await else { return "exit status 3".into() };
        let id = next
            .headers()
            .get("lambda-runtime-aws-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let payload = next.text().await.unwrap_or_default();
        log.append(format!("handling {id}\n").as_bytes());
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        if handler == "stream" {
            if stream(api, &id, &payload).await.is_err() {
                return "exit status 5".into();
            }
            continue;
        }
        let body = serde_json::json!({"env": api.to_string(), "payload": payload}).to_string();
        if client.post(format!("{base}/{id}/response")).body(body).send().await.is_err() {
            return "exit status 4".into();
        }
        if handler == "once" {
            return "exit status 0".into();
        }
    }
}

/// Streams one answer over a raw connection, as the Node.js runtime does: chunked, with the
/// error (if any) in the trailers; waits for the server's answer.
async fn stream(api: SocketAddr, id: &str, payload: &str) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // The payload is a JSON string: the gate's name.
    let payload = payload.trim_matches('"');
    let mut conn = tokio::net::TcpStream::connect(api).await?;
    let head = format!(
        "POST /2018-06-01/runtime/invocation/{id}/response HTTP/1.1\r\nHost: runtime\r\n\
         Lambda-Runtime-Function-Response-Mode: streaming\r\nTransfer-Encoding: chunked\r\n\
         Trailer: Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body\r\n\
         Content-Type: text/plain\r\n\r\n6\r\nfirst;\r\n"
    );
    conn.write_all(head.as_bytes()).await?;
    if payload.starts_with("hang") {
        std::future::pending::<()>().await;
    }
    if let Ok(p) = gate(payload).acquire().await {
        p.forget();
    }
    let tail = if payload.starts_with("fail") {
        // base64 of {"errorType":"Boom","errorMessage":"mid-stream"}
        "0\r\nLambda-Runtime-Function-Error-Type: Boom\r\n\
         Lambda-Runtime-Function-Error-Body: eyJlcnJvclR5cGUiOiJCb29tIiwiZXJyb3JNZXNzYWdlIjoibWlkLXN0cmVhbSJ9\r\n\r\n"
    } else {
        "4\r\nlast\r\n0\r\n\r\n"
    };
    conn.write_all(tail.as_bytes()).await?;
    let mut answer = [0u8; 512];
    let n = conn.read(&mut answer).await?;
    if !answer[..n].starts_with(b"HTTP/1.1 202") {
        return Err(std::io::Error::other(String::from_utf8_lossy(&answer[..n]).into_owned()));
    }
    Ok(())
}
