//! How an execution environment runs: a host subprocess, a Docker container, or a runtime
//! attached by hand. Every kind talks to RustStack through the same Runtime API endpoint;
//! the invoke path never knows which one it has.

pub mod attached;
mod cgroup;
pub mod debug;
pub mod docker;
#[cfg(test)]
pub mod fake;
pub mod subprocess;
mod zygote;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use super::logsink::LogSink;
use super::runtime_api::Endpoint;
use super::{EngineConfig, EnvSpec, PackageType, SandboxMode};
use crate::aws::AwsError;

/// Which sandbox runs an environment the pool starts.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum SandboxKind {
    Subprocess,
    Docker,
    /// A runtime inside the test process (engine unit tests only).
    #[cfg(test)]
    Fake,
}

/// A started sandbox, stopped on demand.
pub enum Sandbox {
    Process(subprocess::Process),
    Container(docker::Container),
    /// A runtime a developer started by hand; RustStack neither starts nor stops it.
    Attached(attached::Attached),
    #[cfg(test)]
    Fake(fake::FakeRuntime),
}

impl Sandbox {
    pub async fn stop(&self) {
        match self {
            Sandbox::Process(p) => p.stop().await,
            Sandbox::Container(c) => c.stop().await,
            Sandbox::Attached(_) => {}
            #[cfg(test)]
            Sandbox::Fake(f) => f.stop(),
        }
    }

    /// Whether the sandbox may still serve: false once a host process has exited, even before
    /// its exit has been reported (containers are trusted until their waiter says otherwise).
    pub fn alive(&self) -> bool {
        match self {
            Sandbox::Process(p) => p.alive(),
            Sandbox::Container(_) | Sandbox::Attached(_) => true,
            #[cfg(test)]
            Sandbox::Fake(f) => f.alive(),
        }
    }

    /// Lets a spare's held runtime start (see [`docker::Container::go`]); false for others.
    pub fn go(&self) -> bool {
        match self {
            Sandbox::Container(c) => c.go(),
            _ => false,
        }
    }

    /// Waits until the sandbox's output has been read into the log (best effort, bounded).
    pub async fn flush_logs(&self) {
        match self {
            Sandbox::Process(p) => p.flush_logs().await,
            Sandbox::Container(c) => c.flush_logs().await,
            Sandbox::Attached(_) => {}
            #[cfg(test)]
            Sandbox::Fake(_) => {}
        }
    }

    /// The environment's peak memory so far, in MB (0 when it cannot be measured).
    /// `reported`: the runtime's own peak RSS in bytes as its bootstrap reported it (see
    /// [`subprocess::Process::peak_memory_mb`]).
    pub async fn peak_memory_mb(&self, reported: Option<u64>) -> u64 {
        match self {
            Sandbox::Process(p) => p.peak_memory_mb(reported).await,
            Sandbox::Container(c) => c.peak_memory_mb().await,
            Sandbox::Attached(_) => 0,
            #[cfg(test)]
            Sandbox::Fake(_) => 0,
        }
    }

    /// Whether the kernel's OOM killer killed a process of the environment since this was
    /// last asked (subprocess environments with a memory cgroup, containers on a local
    /// engine); each kill is told once.
    pub async fn oom_killed(&self) -> bool {
        match self {
            Sandbox::Process(p) => p.oom_killed(),
            Sandbox::Container(c) => c.oom_killed().await,
            Sandbox::Attached(_) => false,
            #[cfg(test)]
            Sandbox::Fake(_) => false,
        }
    }

    /// What runs the environment, for a debugger: "pid N" (a host process), "container ID".
    pub fn debug_target(&self) -> String {
        match self {
            Sandbox::Process(p) => format!("pid {}", p.pid()),
            Sandbox::Container(c) => format!("container {}", c.id().get(..12).unwrap_or(c.id())),
            Sandbox::Attached(a) => format!("attachment {}", a.id),
            #[cfg(test)]
            Sandbox::Fake(_) => "a fake runtime".into(),
        }
    }

    /// The attached runtime, if this is one.
    pub fn attached(&self) -> Option<&attached::Attached> {
        match self {
            Sandbox::Attached(a) => Some(a),
            _ => None,
        }
    }
}

/// The sandboxes this server can start, and the rule that picks one per function.
pub struct Sandboxes {
    mode: SandboxMode,
    subprocess: subprocess::SubprocessExecutor,
    pub(super) docker: docker::DockerExecutor,
    /// The server's own address, for `AWS_ENDPOINT_URL` inside functions.
    server_addr: SocketAddr,
}

impl Sandboxes {
    pub fn new(cfg: &EngineConfig) -> std::io::Result<Sandboxes> {
        Ok(Sandboxes {
            mode: cfg.mode,
            subprocess: subprocess::SubprocessExecutor::new(cfg)?,
            docker: docker::DockerExecutor::new(cfg),
            server_addr: cfg.server_addr,
        })
    }

    /// Removes what the subprocess executor keeps ahead (the fork servers' spares).
    pub async fn subprocess_shutdown(&self) {
        self.subprocess.shutdown().await;
    }

    /// Which sandbox runs a function, and why.
    pub fn choose(
        &self,
        package: PackageType,
        runtime: Option<&str>,
        has_layers: bool,
        force_docker: bool,
    ) -> (SandboxKind, &'static str) {
        match self.mode {
            SandboxMode::Subprocess => (SandboxKind::Subprocess, "--lambda-executor subprocess"),
            SandboxMode::Docker => (SandboxKind::Docker, "--lambda-executor docker"),
            SandboxMode::Auto => {
                if package == PackageType::Image {
                    (SandboxKind::Docker, "auto: PackageType=Image")
                } else if has_layers {
                    (SandboxKind::Docker, "auto: function has layers")
                } else if force_docker {
                    (SandboxKind::Docker, "auto: tagged force-docker")
                } else if !self.subprocess.can_run(runtime.unwrap_or("")) {
                    (SandboxKind::Docker, "auto: this host has no interpreter for the runtime")
                } else {
                    (SandboxKind::Subprocess, "auto: plain zip function")
                }
            }
        }
    }

    /// The address an environment's Runtime API listener binds to.
    pub fn bind_ip(&self, kind: SandboxKind) -> IpAddr {
        match kind {
            SandboxKind::Docker => self.docker.bind_ip(),
            _ => IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }

    /// Starts a sandbox for `spec`. `held` (Docker only): its runtime waits for [`Sandbox::go`].
    pub async fn start(
        &self,
        spec: &EnvSpec,
        api: SocketAddr,
        endpoint: Arc<Endpoint>,
        log: Arc<LogSink>,
        held: bool,
    ) -> Result<Sandbox, AwsError> {
        endpoint.set_region(&spec.region);
        match spec.kind {
            SandboxKind::Subprocess => {
                let mut vars =
                    function_env(spec, &api.to_string(), &format!("http://{}", self.server_addr), log.stream());
                add_metadata_env(&mut vars, &api.to_string(), endpoint.metadata_token());
                self.subprocess.start(spec, vars, endpoint, log).await.map(Sandbox::Process)
            }
            SandboxKind::Docker => self.docker.start(spec, api, endpoint, log, held).await.map(Sandbox::Container),
            #[cfg(test)]
            SandboxKind::Fake => Ok(Sandbox::Fake(fake::FakeRuntime::start(spec, api, endpoint, log).await)),
        }
    }
}

/// The environment a function sees (PROTOCOL.md §4.1): the function's own variables,
/// then the reserved ones, which the function cannot override.
pub fn function_env(spec: &EnvSpec, runtime_api: &str, endpoint_url: &str, log_stream: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = spec.environment.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let mut set = |k: &str, val: String| {
        v.retain(|(kk, _)| kk != k);
        v.push((k.to_string(), val));
    };
    set("AWS_LAMBDA_RUNTIME_API", runtime_api.to_string());
    set("AWS_LAMBDA_FUNCTION_NAME", spec.function.clone());
    set("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", spec.memory_mb.to_string());
    set("AWS_LAMBDA_FUNCTION_VERSION", spec.version.clone());
    let init_type = if spec.provisioned { "provisioned-concurrency" } else { "on-demand" };
    set("AWS_LAMBDA_INITIALIZATION_TYPE", init_type.into());
    set("AWS_LAMBDA_LOG_GROUP_NAME", spec.log_group.clone());
    set("AWS_LAMBDA_LOG_STREAM_NAME", log_stream.to_string());
    // Advanced logging controls, as AWS sets them: the format always, the application log
    // level only with JSON (the runtimes' loggers and Powertools read it).
    set("AWS_LAMBDA_LOG_FORMAT", if spec.logging.json { "JSON" } else { "Text" }.into());
    if spec.logging.json {
        let level = if spec.logging.application_level.is_empty() { "INFO" } else { &spec.logging.application_level };
        set("AWS_LAMBDA_LOG_LEVEL", level.to_string());
    }
    set("AWS_REGION", spec.region.clone());
    set("AWS_DEFAULT_REGION", spec.region.clone());
    set("AWS_ACCESS_KEY_ID", "test".into());
    set("AWS_SECRET_ACCESS_KEY", "test".into());
    set("AWS_SESSION_TOKEN", "test".into());
    set("_HANDLER", spec.handler.clone().unwrap_or_default());
    // Not reserved: a function may set its own.
    for (k, val) in [("AWS_ENDPOINT_URL", endpoint_url), ("TZ", ":UTC")] {
        if !spec.environment.contains_key(k) {
            set(k, val.to_string());
        }
    }
    if let Some(rt) = spec.runtime.as_ref().filter(|r| !r.starts_with("provided")) {
        set("AWS_EXECUTION_ENV", format!("AWS_Lambda_{rt}"));
    }
    v
}

/// Adds the metadata endpoint's variables (reserved: they replace the function's own). It is
/// served on the Runtime API's `host:port`.
pub fn add_metadata_env(vars: &mut Vec<(String, String)>, runtime_api: &str, token: &str) {
    vars.retain(|(k, _)| k != "AWS_LAMBDA_METADATA_API" && k != "AWS_LAMBDA_METADATA_TOKEN");
    vars.push(("AWS_LAMBDA_METADATA_API".to_string(), runtime_api.to_string()));
    vars.push(("AWS_LAMBDA_METADATA_TOKEN".to_string(), token.to_string()));
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
