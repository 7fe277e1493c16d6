//! How an execution environment runs: a host subprocess, a Docker container, or a runtime
//! attached by hand. Every kind talks to RustStack through the same Runtime API endpoint;
//! the invoke path never knows which one it has.

pub mod docker;
pub mod subprocess;

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::aws::AwsError;
use crate::config::{Config, ExecutorMode};
use crate::lambda::model::FunctionConfig;
use crate::runtime_api::Endpoint;

/// Everything needed to start an environment for one function version.
#[derive(Clone)]
pub struct EnvSpec {
    /// Pool key: environments are only reused for the same key.
    pub key: String,
    pub config: Arc<FunctionConfig>,
    /// Unpacked code (zip functions).
    pub code_dir: Option<PathBuf>,
    /// Unpacked layers, in the function's order (each is what AWS mounts at /opt).
    pub layer_dirs: Vec<PathBuf>,
    pub region: String,
    pub account: String,
    pub kind: ExecutorKind,
    /// Why this executor was chosen (for the log).
    pub reason: &'static str,
    /// Started ahead for provisioned concurrency (`AWS_LAMBDA_INITIALIZATION_TYPE`).
    pub provisioned: bool,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ExecutorKind {
    Subprocess,
    Docker,
}

/// Bounded log of an environment's output, handed to the invocation in flight.
pub struct LogSink {
    function: String,
    /// The environment's log stream, `YYYY/MM/DD/[<version>]<32 hex>` as on AWS.
    stream: String,
    /// The function's log group, `/aws/lambda/<function>`.
    group: String,
    buf: Mutex<VecDeque<u8>>,
    echo: Mutex<Echo>,
}

/// How much output is kept per invocation (Tail needs only the last 4 KB).
const LOG_KEEP: usize = 64 * 1024;
/// Lines per second of one environment's output echoed to the server log. A runtime that
/// floods stdout would otherwise flood the server's log (and its CPU) with it.
const ECHO_LINES_PER_SEC: u32 = 200;
/// Longest line echoed to the server log.
const ECHO_LINE_MAX: usize = 2048;

/// Rate limit state of the server-log echo.
struct Echo {
    window: Instant,
    shown: u32,
    /// Lines left out since the last note about them.
    suppressed: u64,
}

impl LogSink {
    pub fn new(function: &str, version: &str) -> Arc<LogSink> {
        let stream = format!("{}/[{version}]{}", chrono::Utc::now().format("%Y/%m/%d"), uuid::Uuid::new_v4().simple());
        Arc::new(LogSink {
            function: function.to_string(),
            stream,
            group: format!("/aws/lambda/{function}"),
            buf: Mutex::new(VecDeque::new()),
            echo: Mutex::new(Echo { window: Instant::now(), shown: 0, suppressed: 0 }),
        })
    }

    /// Appends raw output; echoes complete lines to the server log, at most
    /// [`ECHO_LINES_PER_SEC`] a second, noting how many were left out.
    pub fn append(&self, chunk: &[u8]) {
        {
            let mut echo = self.echo.lock();
            let now = Instant::now();
            for line in chunk.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                if now.duration_since(echo.window) >= Duration::from_secs(1) {
                    self.note_suppressed(&mut echo);
                    echo.window = now;
                    echo.shown = 0;
                }
                if echo.shown < ECHO_LINES_PER_SEC {
                    echo.shown += 1;
                    let shown = &line[..line.len().min(ECHO_LINE_MAX)];
                    tracing::info!(target: "lambda", "[{}] {}", self.function, String::from_utf8_lossy(shown).trim_end());
                } else {
                    echo.suppressed += 1;
                }
            }
        }
        let mut buf = self.buf.lock();
        buf.extend(chunk.iter().rev().take(LOG_KEEP).rev());
        let excess = buf.len().saturating_sub(LOG_KEEP);
        buf.drain(..excess);
    }

    fn note_suppressed(&self, echo: &mut Echo) {
        if echo.suppressed > 0 {
            tracing::info!(
                target: "lambda",
                "[{}] \u{2026} suppressed {} lines of output (server log echo is limited to {ECHO_LINES_PER_SEC} lines/s per environment)",
                self.function,
                echo.suppressed
            );
            echo.suppressed = 0;
        }
    }

    /// Moves the whole lines at the front of `pending` into the log. A trailing partial line
    /// waits for its newline, unless it has grown past `max_partial` bytes.
    pub fn append_lines(&self, pending: &mut Vec<u8>, max_partial: usize) {
        let cut = match pending.iter().rposition(|b| *b == b'\n') {
            Some(i) => i + 1,
            None if pending.len() > max_partial => pending.len(),
            None => 0,
        };
        if cut > 0 {
            self.append(&pending[..cut]);
            pending.drain(..cut);
        }
    }

    /// Takes what was written since the last take.
    pub fn take(&self) -> Vec<u8> {
        self.note_suppressed(&mut self.echo.lock());
        let mut buf = self.buf.lock();
        let v: Vec<u8> = buf.iter().copied().collect();
        buf.clear();
        v
    }

    pub fn function(&self) -> &str {
        &self.function
    }

    pub fn stream(&self) -> &str {
        &self.stream
    }

    pub fn group(&self) -> &str {
        &self.group
    }
}

/// A started sandbox, stopped on demand.
pub enum Sandbox {
    Process(subprocess::Process),
    Container(docker::Container),
}

impl Sandbox {
    pub async fn stop(&self) {
        match self {
            Sandbox::Process(p) => p.stop().await,
            Sandbox::Container(c) => c.stop().await,
        }
    }

    /// Whether the sandbox may still serve: false once a host process has exited, even before
    /// its exit has been reported (containers are trusted until their waiter says otherwise).
    pub fn alive(&self) -> bool {
        match self {
            Sandbox::Process(p) => p.alive(),
            Sandbox::Container(_) => true,
        }
    }

    /// Waits until the sandbox's output has been read into the log (best effort, bounded).
    pub async fn flush_logs(&self) {
        match self {
            Sandbox::Process(p) => p.flush_logs().await,
            Sandbox::Container(c) => c.flush_logs().await,
        }
    }
}

/// The executors this server can use, and the rule that picks one per function.
pub struct Executors {
    pub mode: ExecutorMode,
    pub subprocess: subprocess::SubprocessExecutor,
    pub docker: docker::DockerExecutor,
    /// The server's own address, for `AWS_ENDPOINT_URL` inside functions.
    pub server_addr: SocketAddr,
}

impl Executors {
    pub fn new(cfg: &Config, data_dir: &std::path::Path, server_addr: SocketAddr) -> std::io::Result<Executors> {
        Ok(Executors {
            mode: cfg.lambda_executor,
            subprocess: subprocess::SubprocessExecutor::new(cfg, data_dir)?,
            docker: docker::DockerExecutor::new(cfg, server_addr),
            server_addr,
        })
    }

    /// Which executor runs this function, and why.
    pub fn choose(
        &self,
        cfg: &FunctionConfig,
        tags: &std::collections::BTreeMap<String, String>,
    ) -> (ExecutorKind, &'static str) {
        match self.mode {
            ExecutorMode::Subprocess => (ExecutorKind::Subprocess, "--lambda-executor subprocess"),
            ExecutorMode::Docker => (ExecutorKind::Docker, "--lambda-executor docker"),
            ExecutorMode::Auto => {
                if cfg.package_type == "Image" {
                    (ExecutorKind::Docker, "auto: PackageType=Image")
                } else if !cfg.layers.is_empty() {
                    (ExecutorKind::Docker, "auto: function has layers")
                } else if tags.get("force-docker").is_some_and(|v| !v.eq_ignore_ascii_case("false")) {
                    (ExecutorKind::Docker, "auto: tagged force-docker")
                } else if !self.subprocess.can_run(cfg.runtime.as_deref().unwrap_or("")) {
                    (ExecutorKind::Docker, "auto: this host has no interpreter for the runtime")
                } else {
                    (ExecutorKind::Subprocess, "auto: plain zip function")
                }
            }
        }
    }

    /// The address an environment's Runtime API listener binds to.
    pub fn bind_ip(&self, kind: ExecutorKind) -> IpAddr {
        match kind {
            ExecutorKind::Subprocess => IpAddr::V4(Ipv4Addr::LOCALHOST),
            ExecutorKind::Docker => self.docker.bind_ip(),
        }
    }

    pub async fn start(
        &self,
        spec: &EnvSpec,
        api: SocketAddr,
        endpoint: Arc<Endpoint>,
        log: Arc<LogSink>,
    ) -> Result<Sandbox, AwsError> {
        match spec.kind {
            ExecutorKind::Subprocess => {
                let vars = function_env(spec, &api.to_string(), &format!("http://{}", self.server_addr), log.stream());
                self.subprocess.start(spec, vars, endpoint, log).await.map(Sandbox::Process)
            }
            ExecutorKind::Docker => self.docker.start(spec, api, endpoint, log).await.map(Sandbox::Container),
        }
    }
}

/// The environment a function sees (PROTOCOL.md §4.1): the function's own variables,
/// then the reserved ones, which the function cannot override.
pub fn function_env(spec: &EnvSpec, runtime_api: &str, endpoint_url: &str, log_stream: &str) -> Vec<(String, String)> {
    let c = &spec.config;
    let mut v: Vec<(String, String)> = c.environment.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let mut set = |k: &str, val: String| {
        v.retain(|(kk, _)| kk != k);
        v.push((k.to_string(), val));
    };
    set("AWS_LAMBDA_RUNTIME_API", runtime_api.to_string());
    set("AWS_LAMBDA_FUNCTION_NAME", c.name.clone());
    set("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", c.memory_size.to_string());
    set("AWS_LAMBDA_FUNCTION_VERSION", c.version.clone());
    let init_type = if spec.provisioned { "provisioned-concurrency" } else { "on-demand" };
    set("AWS_LAMBDA_INITIALIZATION_TYPE", init_type.into());
    set("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{}", c.name));
    set("AWS_LAMBDA_LOG_STREAM_NAME", log_stream.to_string());
    set("AWS_REGION", spec.region.clone());
    set("AWS_DEFAULT_REGION", spec.region.clone());
    set("AWS_ACCESS_KEY_ID", "test".into());
    set("AWS_SECRET_ACCESS_KEY", "test".into());
    set("AWS_SESSION_TOKEN", "test".into());
    set("_HANDLER", c.handler.clone().unwrap_or_default());
    // Not reserved: a function may set its own.
    for (k, val) in [("AWS_ENDPOINT_URL", endpoint_url), ("TZ", ":UTC")] {
        if !c.environment.contains_key(k) {
            set(k, val.to_string());
        }
    }
    if let Some(rt) = c.runtime.as_ref().filter(|r| !r.starts_with("provided")) {
        set("AWS_EXECUTION_ENV", format!("AWS_Lambda_{rt}"));
    }
    v
}

/// Bytes waiting unread in a pipe or FIFO (`fd` -1 means none).
pub(crate) fn pending_bytes(fd: std::os::fd::RawFd) -> i32 {
    if fd < 0 {
        return 0;
    }
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int; fd is a pipe or FIFO read end we own (or -1, checked above).
    let rc = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) };
    if rc == 0 { n } else { 0 }
}
