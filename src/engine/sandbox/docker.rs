//! The Docker executor: each environment is a container from a Lambda image whose own
//! `/lambda-entrypoint.sh` runs the image's runtime client against the environment's
//! Runtime API endpoint (PROTOCOL.md §5). Talks to the engine through bollard only.
//!
//! - One shared client, connected on first use with bollard's local defaults, or `DOCKER_HOST`
//!   (`unix://`, `tcp://` with `DOCKER_TLS_VERIFY`/`DOCKER_CERT_PATH`, `https://`, `ssh://`),
//!   and the API version negotiated with the engine. The log says whether it is local.
//! - A remote engine cannot see this machine's files: code and layers are then uploaded into
//!   each container before it starts ([`upload`]; `--lambda-code-transfer` forces either way),
//!   and containers reach RustStack at `--lambda-advertise-host`.
//! - Images ([`images`]): `--lambda-runtime-image RUNTIME=IMAGE`, else
//!   `public.ecr.aws/lambda/<runtime>`; PackageType=Image runs its ImageUri. A missing image is
//!   pulled with progress in the log; a failed pull is a clear error, never a hang.
//! - A cold start is create → start (plus an attach for uploaded code). The image is
//!   looked at once per server, not per container; the warm path makes no Docker calls.
//! - Code is mounted read-only at `/var/task`, layers merged read-only at `/opt` ([`layers`]),
//!   output goes to the environment's log ([`output`]).
//! - Every container is labelled `ruststack=1` plus its owner. Containers left by a crashed
//!   server are removed in the background at start; [`DockerExecutor::shutdown`] removes
//!   every container this server still has.

mod images;
mod layers;
pub(crate) mod output;
mod upload;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerCreateBody, ContainerUpdateBody, HostConfig, Mount, MountType};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, ListContainersOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, RenameContainerOptions, StatsOptionsBuilder, UploadToContainerOptionsBuilder,
    WaitContainerOptionsBuilder,
};
use futures_util::StreamExt;
use parking_lot::Mutex;

use super::cgroup::OomCount;
use crate::aws::AwsError;
use crate::engine::logsink::LogSink;
use crate::engine::runtime_api::{Death, Endpoint, Peers};
use crate::engine::{Advertise, CodeTransfer, EngineConfig, EnvSpec, Network as NetworkMode, PackageType};
use images::ImageState;
pub use images::default_image;
use output::{AttachOutput, FifoOutput, FifoPending, Output};

/// Most processes (and threads) one function container may run.
const PIDS_LIMIT: i64 = 512;
/// How long the engine may take to answer the version handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long shutdown waits for container starts already under way.
const SHUTDOWN_WAIT_STARTS: Duration = Duration::from_secs(10);

pub struct DockerExecutor {
    inner: Arc<Inner>,
}

struct Inner {
    /// Connected (and version-negotiated) on first use; a failure is retried next time.
    engine: tokio::sync::OnceCell<Engine>,
    /// `--lambda-runtime-image` mappings.
    runtime_images: HashMap<String, String>,
    network: NetworkMode,
    server_addr: SocketAddr,
    /// Merged layer directories, one per distinct layer list.
    merged_root: PathBuf,
    /// Output FIFOs: `<data>/run`, one subdirectory per server process.
    run_root: PathBuf,
    /// Archives of code and layers for upload: `<data>/upload`.
    upload_root: PathBuf,
    /// `--lambda-code-transfer`; `None`: by whether the engine is local.
    code_transfer: Option<CodeTransfer>,
    /// `--lambda-advertise-host`.
    advertise: Option<Advertise>,
    /// The default bridge's gateway (bridge mode), once known.
    gateway: OnceLock<Ipv4Addr>,
    /// Per image: what we know, behind a lock so concurrent starts share one pull.
    images: Mutex<HashMap<String, Arc<tokio::sync::Mutex<ImageState>>>>,
    /// Containers created and not yet removed (by id), for shutdown.
    live: Mutex<HashSet<String>>,
    /// Container starts under way.
    starting: AtomicUsize,
    /// Told when the last start under way ends (shutdown waits for it).
    started: tokio::sync::Notify,
    closing: AtomicBool,
    /// The engine cannot run blank spares (see [`Blank`]): found on the first try.
    no_blanks: AtomicBool,
    owner: Owner,
    /// `--lambda-debug`: where the exec wrapper is written, and the host Python whose
    /// debugpy is mounted into Python containers.
    debug_dir: PathBuf,
    python: String,
}

struct Engine {
    docker: Docker,
    /// The engine shares this machine's filesystem, so a FIFO bind-mounted into a container
    /// is the same FIFO (not so for remote engines or Docker Desktop's VM).
    local: bool,
    /// How code and layers get into containers.
    transfer: CodeTransfer,
    /// Whether containers run behind [`output::STDIO_HELPER`] (built, and of the engine's
    /// architecture), and where its host copy is when it is bind-mounted (a local engine that
    /// mounts the code; uploads put it in the archive).
    helper: Option<Option<PathBuf>>,
}

/// Who owns a container: lets a new server tell a crashed server's containers from a live one's.
struct Owner {
    host: String,
    pid: u32,
    server: String,
}

/// One running container. Dropping it without [`Container::stop`] removes it in the background.
pub struct Container {
    id: String,
    inner: Arc<Inner>,
    stopped: Arc<AtomicBool>,
    output: Output,
    /// The OOM kills in the container's memory cgroup, from the host's cgroup files (a local
    /// engine): looked up on first use, None where they cannot be read.
    oom: OnceLock<Option<Arc<OomCount>>>,
    /// The `/opt` merged for this container alone (layers that change in place).
    _opt: Option<layers::Scratch>,
}

/// What one container start is for: the environment's spec, image, Runtime API address,
/// merged `/opt`, endpoint and log.
#[derive(Clone, Copy)]
struct Launch<'a> {
    spec: &'a EnvSpec,
    image: &'a str,
    api: SocketAddr,
    files: Files<'a>,
    endpoint: &'a Arc<Endpoint>,
    log: &'a Arc<LogSink>,
    debug: Option<&'a super::debug::ContainerDebug>,
    /// When the start began (for the timing in the log).
    begun: Instant,
    /// Start the container but hold its runtime until [`Container::go`] (a spare).
    held: bool,
}

/// Why one attempt to start a container failed.
enum Failure {
    /// The image has no `/bin/sh` for the shell wrapper (no stdio helper): start again with attach.
    NoShell,
    Aws(AwsError),
}

impl From<AwsError> for Failure {
    fn from(e: AwsError) -> Failure {
        Failure::Aws(e)
    }
}

impl DockerExecutor {
    pub fn new(cfg: &EngineConfig) -> DockerExecutor {
        let runtime_images = cfg.runtime_images.iter().cloned().collect();
        let data_dir = &cfg.data_dir;
        let server_addr = cfg.server_addr;
        // Upload archives are a cache for this run: what earlier runs left (and any removal a
        // crash cut short) is moved aside here and deleted on a thread of its own.
        let upload_root = data_dir.join("upload");
        let stale = data_dir.join(format!("upload.old-{}", uuid::Uuid::new_v4().simple()));
        let _ = std::fs::rename(&upload_root, &stale);
        let root = data_dir.clone();
        let _ = std::thread::Builder::new().name("upload-sweep".into()).spawn(move || {
            for e in std::fs::read_dir(&root).into_iter().flatten().flatten() {
                if e.file_name().to_string_lossy().starts_with("upload.old-") {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        });
        let inner = Arc::new(Inner {
            engine: tokio::sync::OnceCell::new(),
            runtime_images,
            network: cfg.network,
            server_addr,
            merged_root: data_dir.join("layers-merged"),
            run_root: data_dir.join("run"),
            upload_root,
            code_transfer: cfg.code_transfer,
            advertise: cfg.advertise.clone(),
            gateway: OnceLock::new(),
            images: Mutex::new(HashMap::new()),
            live: Mutex::new(HashSet::new()),
            starting: AtomicUsize::new(0),
            started: tokio::sync::Notify::new(),
            closing: AtomicBool::new(false),
            no_blanks: AtomicBool::new(false),
            owner: Owner { host: hostname(), pid: std::process::id(), server: server_addr.to_string() },
            debug_dir: data_dir.join("debug"),
            python: cfg.python.clone(),
        });
        // Clean up after a crashed earlier run, off the start-up path.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let inner = inner.clone();
            rt.spawn(async move { inner.remove_stale().await });
        }
        DockerExecutor { inner }
    }

    /// The address Runtime API listeners for containers bind to: the advertised host's local
    /// address, else loopback with the host network, the default bridge's gateway in bridge
    /// mode (never 0.0.0.0 unless the advertised host is not local, warned about at start).
    pub fn bind_ip(&self) -> IpAddr {
        if let Some(a) = &self.inner.advertise {
            return a.bind;
        }
        match (self.inner.network, self.inner.gateway.get()) {
            (NetworkMode::Bridge, Some(gw)) => IpAddr::V4(*gw),
            _ => IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }

    /// Bridge mode: the default bridge network's gateway address, looked up once.
    pub async fn bridge_gateway(&self) -> Result<Ipv4Addr, String> {
        self.inner.bridge_gateway().await
    }

    /// The image a function runs in: its ImageUri, the `--lambda-runtime-image` mapping for
    /// its runtime, or `public.ecr.aws/lambda/<runtime>`. Empty when there is none.
    pub fn image_for(&self, package: PackageType, image_uri: Option<&str>, runtime: Option<&str>) -> String {
        self.inner.image_for(package, image_uri, runtime)
    }

    /// Makes sure `image` is present, pulling it (progress in the log) when it is not.
    /// The error names the image and says why, e.g. for a function's StateReason.
    pub async fn ensure_image(&self, image: &str) -> Result<(), String> {
        self.inner.ensure_image(image).await
    }

    /// Creates and starts a container for `spec`. `held`: its runtime waits for
    /// [`Container::go`] (needs the output FIFO: a local engine; the stdio helper or `/bin/sh`).
    pub async fn start(
        &self,
        spec: &EnvSpec,
        api: SocketAddr,
        endpoint: Arc<Endpoint>,
        log: Arc<LogSink>,
        held: bool,
    ) -> Result<Container, AwsError> {
        // Run the start in its own task: if the caller goes away half way, the container is
        // still handed to a `Container`, whose drop removes it.
        let inner = self.inner.clone();
        let spec = spec.clone();
        inner.starting.fetch_add(1, Ordering::SeqCst);
        let task = tokio::spawn(async move {
            let r = inner.start(&spec, api, endpoint, log, held).await;
            if inner.starting.fetch_sub(1, Ordering::SeqCst) == 1 {
                inner.started.notify_waiters();
            }
            r
        });
        task.await.map_err(|e| AwsError::service(format!("container start failed: {e}")))?
    }

    /// What blank spare `spec` could take, if any: a zip function with its code mounted,
    /// on an engine that can run blank spares (a local one that mounts the code, with the
    /// stdio helper; not known before the first try).
    pub fn blank_key(&self, spec: &EnvSpec) -> Option<BlankKey> {
        if self.inner.no_blanks.load(Ordering::Relaxed)
            || spec.package != PackageType::Zip
            || spec.code_dir.is_none()
            || spec.debug.is_some()
        {
            return None;
        }
        let image = self.inner.image_for(spec.package, spec.image_uri.as_deref(), spec.runtime.as_deref());
        (!image.is_empty()).then_some(BlankKey { image, opt: !spec.layer_dirs.is_empty() })
    }

    /// Creates and starts a blank spare for `key`, with a memory limit of `memory_mb`.
    pub async fn make_blank(&self, key: &BlankKey, memory_mb: u32) -> Result<Blank, AwsError> {
        let inner = self.inner.clone();
        let key = key.clone();
        inner.starting.fetch_add(1, Ordering::SeqCst);
        let task = tokio::spawn(async move {
            let r = inner.make_blank(&key, memory_mb).await;
            if inner.starting.fetch_sub(1, Ordering::SeqCst) == 1 {
                inner.started.notify_waiters();
            }
            r
        });
        task.await.map_err(|e| AwsError::service(format!("blank spare failed: {e}")))?
    }

    /// Makes `blank` the container of an environment of `spec` (see [`Blank`]): its
    /// runtime starts now. On an error the blank is removed, and the caller starts a
    /// container as without it.
    pub async fn take_blank(
        &self,
        blank: Blank,
        spec: &EnvSpec,
        api: SocketAddr,
        endpoint: Arc<Endpoint>,
        log: Arc<LogSink>,
    ) -> Result<Container, AwsError> {
        endpoint.set_region(&spec.region);
        self.inner.take_blank(blank, spec, api, endpoint, log).await
    }

    /// Removes every container this server still has, and refuses new ones.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        inner.closing.store(true, Ordering::SeqCst);
        let until = tokio::time::Instant::now() + SHUTDOWN_WAIT_STARTS;
        loop {
            let started = inner.started.notified();
            tokio::pin!(started);
            // Registered before the check, so a start ending between the two is not missed.
            started.as_mut().enable();
            if inner.starting.load(Ordering::SeqCst) == 0 || tokio::time::timeout_at(until, started).await.is_err() {
                break;
            }
        }
        let ids: Vec<String> = inner.live.lock().iter().cloned().collect();
        if ids.is_empty() {
            return;
        }
        tracing::info!(count = ids.len(), "removing containers");
        futures_util::future::join_all(ids.iter().map(|id| inner.remove(id))).await;
    }
}

/// A blank spare: a container of one image, created and started ahead for no function yet,
/// its wrapper (the stdio helper) holding before anything of the image runs. Taking it for a
/// function ([`DockerExecutor::take_blank`]) hard-links the function's code (and layers) into
/// the directories it mounts at `/var/task` (and `/opt`), sets its memory limit when it
/// differs, and sends the wrapper its orders on the go FIFO: the function's variables, its
/// working directory and the command, which it runs as a container made for the function
/// would. Labelled `ruststack.spare=1` (labels cannot change), renamed for its function when
/// taken. Dropped untaken: removed in the background.
pub struct Blank {
    id: String,
    inner: Arc<Inner>,
    stopped: Arc<AtomicBool>,
    fifo: Option<FifoPending>,
    watch: Arc<Mutex<Watch>>,
    memory_mb: u32,
    /// Its address on a local bridge (the one source its Runtime API serves).
    ip: Option<IpAddr>,
    pub key: BlankKey,
}

/// What a blank spare fits: functions of this image, with layers (an `/opt` mount) or not.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BlankKey {
    pub image: String,
    pub opt: bool,
}

impl Blank {
    /// The container exited before it was taken (it is of no use).
    pub fn exited(&self) -> bool {
        self.watch.lock().exited.is_some()
    }

    /// Kills and removes it.
    pub async fn stop(&self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        self.inner.remove(&self.id).await;
        tracing::debug!(container = short(&self.id), "blank spare removed");
    }
}

impl Drop for Blank {
    fn drop(&mut self) {
        if self.fifo.is_none() || self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let inner = self.inner.clone();
            let id = self.id.clone();
            rt.spawn(async move { inner.remove(&id).await });
        }
    }
}

/// A container's memory limit in bytes.
fn memory_bytes(mb: u32) -> i64 {
    i64::from(mb.max(16)) * 1024 * 1024
}

/// Hard-links (or copies) a function's code into `slot/task` and its layers into
/// `slot/opt`, with the permissions of the directories they come from. Blocking.
fn fill_slot(slot: &Path, code: &Path, opt: Option<&Path>) -> std::io::Result<()> {
    let fill = |from: &Path, to: PathBuf| -> std::io::Result<()> {
        layers::merge_into(&to, &[from.to_path_buf()])?;
        std::fs::set_permissions(&to, std::fs::metadata(from)?.permissions())
    };
    fill(code, slot.join("task"))?;
    if let Some(opt) = opt {
        fill(opt, slot.join("opt"))?;
    }
    Ok(())
}

/// A blank spare's orders (see stdio.c): working directory, variables, command.
fn orders(dir: Option<&str>, env: &[String], command: impl IntoIterator<Item = String>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut put = |s: &str| {
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    };
    put(dir.unwrap_or_default());
    for kv in env {
        put(kv);
    }
    put("");
    for a in command {
        put(&a);
    }
    put("");
    out
}

impl Inner {
    /// The shared client: bollard's local defaults, or `DOCKER_HOST` when set.
    async fn engine(&self) -> Result<&Engine, String> {
        self.engine
            .get_or_try_init(|| async {
                let host = std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty());
                let docker = match &host {
                    Some(h) => connect(h),
                    None => Docker::connect_with_local_defaults(),
                };
                let local = cfg!(target_os = "linux") && host.as_deref().is_none_or(engine_is_local);
                let where_ = host.unwrap_or_else(|| "unix:///var/run/docker.sock".into());
                let docker = docker.map_err(|e| format!("cannot connect to Docker at {where_}: {e}"))?;
                let docker = match tokio::time::timeout(CONNECT_TIMEOUT, docker.negotiate_version()).await {
                    Err(_) => return Err(format!("Docker at {where_} did not answer within {}s", CONNECT_TIMEOUT.as_secs())),
                    Ok(Err(e)) => return Err(format!("cannot connect to Docker at {where_}: {e}")),
                    Ok(Ok(d)) => d,
                };
                // Docker Desktop runs the engine in a VM: a FIFO would not cross into it.
                let version = docker.version().await.ok();
                let platform =
                    version.as_ref().and_then(|v| v.platform.as_ref()).map(|p| p.name.clone()).unwrap_or_default();
                let local = local && !platform.contains("Desktop");
                let transfer = self.code_transfer.unwrap_or(if local { CodeTransfer::Mount } else { CodeTransfer::Upload });
                tracing::info!(
                    docker = %where_,
                    api = %docker.client_version(),
                    engine = %platform,
                    local,
                    code_transfer = ?transfer,
                    "connected to {} Docker engine",
                    if local { "a local" } else { "a REMOTE" }
                );
                if !local && self.advertise.is_none() {
                    tracing::warn!(
                        "the Docker engine at {where_} is remote: set --lambda-advertise-host to an address of this machine its containers can reach"
                    );
                }
                let helper = self.helper(version.as_ref(), local, transfer).await;
                Ok(Engine { docker, local, transfer, helper })
            })
            .await
    }

    /// Whether the stdio helper can run in this engine's containers, and (mounted code) its
    /// host copy, written under this server's run directory. Says once in the log when not.
    async fn helper(
        &self,
        version: Option<&bollard::models::SystemVersion>,
        local: bool,
        transfer: CodeTransfer,
    ) -> Option<Option<PathBuf>> {
        let arch = version.and_then(|v| v.arch.clone()).unwrap_or_default();
        let os = version.and_then(|v| v.os.clone()).unwrap_or_default();
        let why = if output::STDIO_HELPER.is_empty() {
            "it was not built (no C compiler or static libc at build time)".to_string()
        } else if os != "linux" || arch != docker_arch() {
            format!("the engine runs {os}/{arch}, not linux/{}", docker_arch())
        } else if transfer == CodeTransfer::Upload {
            return Some(None);
        } else if !local {
            "the engine is remote but mounts the code: it cannot see a copy here".to_string()
        } else {
            let dir = self.run_root.join(self.owner.pid.to_string());
            match tokio::task::spawn_blocking(move || write_helper(&dir)).await {
                Ok(Ok(path)) => return Some(Some(path)),
                Ok(Err(e)) => format!("its copy cannot be written or run: {e}"),
                Err(e) => format!("its copy cannot be written: {e}"),
            }
        };
        tracing::warn!(
            "no stdio helper ({why}): images without /bin/sh and uploaded code keep stdout and stderr apart (docker attach), out of order"
        );
        None
    }

    fn image_for(&self, package: PackageType, image_uri: Option<&str>, runtime: Option<&str>) -> String {
        if package == PackageType::Image {
            return image_uri.unwrap_or_default().to_string();
        }
        let Some(runtime) = runtime else { return String::new() };
        if let Some(image) = self.runtime_images.get(runtime) {
            return image.clone();
        }
        default_image(runtime).unwrap_or_default()
    }

    fn image_slot(&self, image: &str) -> Arc<tokio::sync::Mutex<ImageState>> {
        self.images.lock().entry(image.to_string()).or_default().clone()
    }

    async fn ensure_image(&self, image: &str) -> Result<(), String> {
        if image.is_empty() {
            return Err("no image: the function has no runtime or ImageUri".into());
        }
        let docker = &self.engine().await?.docker;
        let slot = self.image_slot(image);
        let mut st = slot.lock().await;
        if st.present {
            return Ok(());
        }
        match docker.inspect_image(image).await {
            Ok(_) => {}
            Err(e) if status(&e) == Some(404) => images::pull(docker, image).await?,
            Err(e) => return Err(format!("cannot inspect image {image}: {}", message(&e))),
        }
        st.present = true;
        Ok(())
    }

    /// The image's ENTRYPOINT and CMD, looked up once (pulling the image if it is missing).
    async fn image_config(&self, docker: &Docker, image: &str) -> Result<(Vec<String>, Vec<String>), String> {
        let slot = self.image_slot(image);
        let mut st = slot.lock().await;
        if let Some(c) = &st.config {
            return Ok(c.clone());
        }
        let inspected = match docker.inspect_image(image).await {
            Ok(i) => i,
            Err(e) if status(&e) == Some(404) => {
                images::pull(docker, image).await?;
                docker
                    .inspect_image(image)
                    .await
                    .map_err(|e| format!("image {image} pulled but not found: {}", message(&e)))?
            }
            Err(e) => return Err(format!("cannot inspect image {image}: {}", message(&e))),
        };
        let cfg = inspected.config.unwrap_or_default();
        let c = (cfg.entrypoint.unwrap_or_default(), cfg.cmd.unwrap_or_default());
        st.present = true;
        st.config = Some(c.clone());
        Ok(c)
    }

    /// Forgets what we knew about an image (it was removed behind our back).
    fn forget_image(&self, image: &str) {
        self.images.lock().remove(image);
    }

    async fn bridge_gateway(&self) -> Result<Ipv4Addr, String> {
        if let Some(gw) = self.gateway.get() {
            return Ok(*gw);
        }
        let docker = &self.engine().await?.docker;
        let net = docker
            .inspect_network("bridge", None)
            .await
            .map_err(|e| format!("cannot inspect the default bridge network: {}", message(&e)))?;
        let configs = net.ipam.and_then(|i| i.config).unwrap_or_default();
        let gw = configs
            .iter()
            .find_map(|c| c.gateway.as_deref().and_then(|g| g.parse::<Ipv4Addr>().ok()))
            .or_else(|| configs.iter().find_map(|c| c.subnet.as_deref().and_then(gateway_in_subnet)))
            .ok_or_else(|| "the default bridge network has no IPv4 gateway".to_string())?;
        let _ = self.gateway.set(gw);
        tracing::info!(gateway = %gw, "bridge network: containers reach RustStack through the bridge gateway");
        Ok(gw)
    }

    async fn start(
        self: &Arc<Self>,
        spec: &EnvSpec,
        api: SocketAddr,
        endpoint: Arc<Endpoint>,
        log: Arc<LogSink>,
        held: bool,
    ) -> Result<Container, AwsError> {
        if self.closing.load(Ordering::SeqCst) {
            return Err(AwsError::service("server is shutting down"));
        }
        let begun = Instant::now();
        let engine = self.engine().await.map_err(|e| {
            AwsError::new(http::StatusCode::BAD_GATEWAY, "ServiceException", format!("Docker executor: {e}"))
        })?;
        // The go FIFO is a bind mount, like the output FIFO: a remote engine cannot hold.
        if held && !(engine.local && engine.transfer == CodeTransfer::Mount) {
            return Err(AwsError::service("a held container needs a local engine that mounts the code"));
        }
        let image = self.image_for(spec.package, spec.image_uri.as_deref(), spec.runtime.as_deref());
        if image.is_empty() {
            return Err(invalid_runtime(format!(
                "Function {}: no image for runtime {}",
                spec.function,
                spec.runtime.as_deref().unwrap_or("(none)")
            )));
        }
        if self.network == NetworkMode::Bridge && self.advertise.is_none() {
            let gw = self.bridge_gateway().await.map_err(AwsError::service)?;
            if api.ip() != IpAddr::V4(gw) {
                return Err(AwsError::service(format!(
                    "bridge network: the Runtime API listener is on {api}, not on the bridge gateway {gw}"
                )));
            }
        }
        let mut scratch = None;
        let opt_dir = if spec.layer_dirs.is_empty() || spec.package == PackageType::Image {
            None
        } else if let [only] = spec.layer_dirs.as_slice() {
            // One layer is its own merge: mounted as it is (a hot-reload layer directory
            // then shows its changes at /opt).
            Some(only.clone())
        } else if spec.live_layers {
            // A hot-reload layer changes in place: a merge made once would go stale, so this
            // container gets one of its own (hard links, made in moments), removed with it.
            let dir =
                self.run_root.join(self.owner.pid.to_string()).join(format!("opt-{}", uuid::Uuid::new_v4().simple()));
            let (dest, dirs) = (dir.clone(), spec.layer_dirs.clone());
            tokio::task::spawn_blocking(move || layers::merge_into(&dest, &dirs))
                .await
                .map_err(|e| AwsError::service(format!("layer merge failed: {e}")))?
                .map_err(|e| AwsError::service(format!("cannot merge the function's layers: {e}")))?;
            scratch = Some(layers::Scratch(dir.clone()));
            Some(dir)
        } else {
            let root = self.merged_root.clone();
            let dirs = spec.layer_dirs.clone();
            let merged = tokio::task::spawn_blocking(move || layers::merge(&root, &dirs))
                .await
                .map_err(|e| AwsError::service(format!("layer merge failed: {e}")))?
                .map_err(|e| AwsError::service(format!("cannot merge the function's layers: {e}")))?;
            Some(merged)
        };
        let helper = engine.helper.is_some();
        // An Image function's archive has only the helper.
        let archive = if engine.transfer == CodeTransfer::Upload && (spec.package != PackageType::Image || helper) {
            let root = self.upload_root.clone();
            let (code, opt) = match spec.package {
                PackageType::Image => (None, None),
                _ => (spec.code_dir.clone(), opt_dir.clone()),
            };
            let built = tokio::task::spawn_blocking(move || {
                upload::archive(&root, code.as_deref(), opt.as_deref(), helper.then_some(output::STDIO_HELPER))
            })
            .await
            .map_err(|e| AwsError::service(format!("code archive failed: {e}")))?
            .map_err(|e| AwsError::service(format!("cannot archive the function's code for upload: {e}")))?;
            Some(built)
        } else {
            None
        };
        let debug = match &spec.debug {
            Some(d) => {
                let (d, dir, python) = (d.clone(), self.debug_dir.clone(), self.python.clone());
                let debugger =
                    super::debug::Debugger::for_function(spec.runtime.as_deref(), spec.package == PackageType::Image);
                let env = spec.environment.clone();
                let bridge = self.network == NetworkMode::Bridge;
                tokio::task::spawn_blocking(move || {
                    super::debug::prepare_container(&d, debugger, &env, &dir, &python, bridge)
                })
                .await
                .map_err(|e| AwsError::service(format!("debug setup failed: {e}")))?
                .map_err(|why| image_unavailable(&spec.function, &why))?
            }
            _ => None,
        };
        // The FIFO is a bind mount too: uploads read output through attach. The helper
        // needs no shell.
        let mut fifo = engine.local
            && engine.transfer == CodeTransfer::Mount
            && (helper || !self.image_slot(&image).lock().await.no_shell);
        let files = Files {
            opt_dir: opt_dir.as_deref(),
            archive: archive.as_deref(),
            helper: engine.helper.as_ref().map(|p| p.as_deref().filter(|_| archive.is_none())),
        };
        let launch = Launch {
            spec,
            image: &image,
            api,
            files,
            endpoint: &endpoint,
            log: &log,
            debug: debug.as_ref(),
            begun,
            held,
        };
        loop {
            if held && !fifo {
                return Err(AwsError::service(
                    "a held container needs the output FIFO (a local engine; the stdio helper or /bin/sh)",
                ));
            }
            match self.start_once(engine, &launch, fifo).await {
                Ok(mut c) => {
                    c._opt = scratch;
                    return Ok(c);
                }
                Err(Failure::NoShell) if fifo => {
                    tracing::info!(image = %image, "image has no /bin/sh: reading its output through docker attach");
                    self.image_slot(&image).lock().await.no_shell = true;
                    fifo = false;
                }
                Err(Failure::NoShell) => {
                    return Err(invalid_runtime(format!("cannot start a container from {image}: no /bin/sh")));
                }
                Err(Failure::Aws(e)) => return Err(e),
            }
        }
    }

    /// One create → (attach) → start. With `fifo`, the output goes through a FIFO.
    async fn start_once(
        self: &Arc<Self>,
        engine: &Engine,
        launch: &Launch<'_>,
        fifo: bool,
    ) -> Result<Container, Failure> {
        let Launch { spec, image, api: _, files, endpoint, log, debug, begun, held } = *launch;
        let docker = &engine.docker;
        let opt_dir = files.opt_dir;
        let name = container_name(&spec.function);
        let fifo_out = if fifo {
            let dir = self.run_root.join(self.owner.pid.to_string()).join(&name);
            match FifoOutput::create(dir, log.clone()).and_then(|mut f| {
                if held {
                    f.hold()?;
                }
                Ok(f)
            }) {
                Ok(f) => Some(f),
                Err(e) => {
                    tracing::debug!(error = %e, "cannot make an output FIFO: using docker attach");
                    None
                }
            }
        } else {
            None
        };
        let wrapper = match (&fifo_out, files.helper.is_some()) {
            (Some(f), true) => output::helper_wrapper(true, f.go_path().is_some()),
            (Some(f), false) => output::fifo_wrapper(f.go_path().is_some()),
            (None, true) => output::helper_wrapper(false, false),
            (None, false) => Vec::new(),
        };
        let command = self
            .command(docker, spec, image, opt_dir, wrapper)
            .await
            .map_err(|why| image_unavailable(&spec.function, &why))?;
        let mut body = self.container_body(launch, command, fifo_out.as_ref())?;
        if let Some(d) = debug {
            with_debugger(&mut body, d);
        }
        let opts = || Some(CreateContainerOptionsBuilder::new().name(&name).build());
        let t0 = Instant::now();
        let created = match docker.create_container(opts(), body.clone()).await {
            Ok(r) => r,
            Err(e) if status(&e) == Some(404) => {
                // The image went away since we looked: get it again.
                self.forget_image(image);
                self.image_config(docker, image).await.map_err(|why| image_unavailable(&spec.function, &why))?;
                docker
                    .create_container(opts(), body)
                    .await
                    .map_err(|e| invalid_runtime(format!("cannot create a container from {image}: {}", message(&e))))?
            }
            Err(e) => {
                return Err(invalid_runtime(format!("cannot create a container from {image}: {}", message(&e))).into());
            }
        };
        let id = created.id;
        self.live.lock().insert(id.clone());
        let stopped = Arc::new(AtomicBool::new(false));
        let output = match fifo_out {
            Some(f) => Output::Fifo(f),
            None => {
                // Attach before start, so no output is lost.
                let opts =
                    AttachContainerOptionsBuilder::new().stdout(true).stderr(true).stream(true).logs(true).build();
                match docker.attach_container(&id, Some(opts)).await {
                    Ok(a) => Output::Attach(AttachOutput::start(a.output, log.clone())),
                    Err(e) => {
                        self.remove(&id).await;
                        let msg = format!("cannot attach to container {}: {}", short(&id), message(&e));
                        return Err(AwsError::service(msg).into());
                    }
                }
            }
        };
        let fifo = matches!(output, Output::Fifo(_));
        if held && !fifo {
            self.remove(&id).await;
            return Err(AwsError::service("a held container needs the output FIFO").into());
        }
        // From here on, dropping `container` (on any error) removes it.
        let container = Container {
            id: id.clone(),
            inner: self.clone(),
            stopped: stopped.clone(),
            output,
            oom: OnceLock::new(),
            _opt: None,
        };
        if self.closing.load(Ordering::SeqCst) {
            container.stop().await;
            return Err(AwsError::service("server is shutting down").into());
        }
        if let Some(tar) = files.archive {
            let t = Instant::now();
            upload_archive(docker, &id, tar).await.map_err(AwsError::service)?;
            tracing::debug!(container = short(&id), upload_ms = t.elapsed().as_millis() as u64, "code uploaded");
        }
        // On a local bridge the container's own address is the only source to serve; it is
        // known once the container runs, and requests wait for it meanwhile.
        let learn_source = engine.local && self.network == NetworkMode::Bridge;
        if learn_source {
            endpoint.allow_peers(Peers::Pending);
        }
        let t1 = Instant::now();
        if let Err(e) = docker.start_container(&id, None).await {
            let msg = message(&e);
            let no_shell = msg.contains("/bin/sh") && (msg.contains("no such file") || msg.contains("not found"));
            if fifo && no_shell {
                container.stop().await;
                return Err(Failure::NoShell);
            }
            return Err(invalid_runtime(format!("cannot start a container from {image}: {msg}")).into());
        }
        if learn_source {
            let peers = match container_ip(docker, &id).await {
                Some(ip) => Peers::Only(ip),
                None => {
                    tracing::warn!(
                        container = short(&id),
                        "cannot learn the container's address: its Runtime API serves any source"
                    );
                    Peers::Any
                }
            };
            endpoint.allow_peers(peers);
        }
        let watch = Watch { exited: None, endpoint: Some(endpoint.clone()), log: fifo.then(|| log.clone()) };
        spawn_waiter(docker.clone(), id.clone(), Arc::new(Mutex::new(watch)), stopped);
        tracing::debug!(
            function = %spec.function,
            container = short(&id),
            image,
            fifo,
            prep_ms = (t0 - begun).as_millis() as u64,
            create_ms = (t1 - t0).as_millis() as u64,
            start_ms = t1.elapsed().as_millis() as u64,
            "container started"
        );
        Ok(container)
    }

    /// ENTRYPOINT, CMD and working directory for a function's container. Zip functions run
    /// the image's entrypoint with the handler as CMD (a custom runtime's own bootstrap, if it
    /// has one); Image functions run the image with ImageConfig's overrides. The whole
    /// command runs behind `wrapper` (the output wrapper, see [`output`]; empty: none).
    async fn command(
        &self,
        docker: &Docker,
        spec: &EnvSpec,
        image: &str,
        opt_dir: Option<&Path>,
        wrapper: Vec<String>,
    ) -> Result<(Vec<String>, Vec<String>, Option<String>), String> {
        let (image_entry, image_cmd) = self.image_config(docker, image).await?;
        let (entry, cmd, working_dir) = if spec.package == PackageType::Image {
            let ic = &spec.image_config;
            (
                ic.entry_point.clone().unwrap_or(image_entry),
                ic.command.clone().unwrap_or(image_cmd),
                ic.working_directory.clone(),
            )
        } else {
            let handler = spec.handler.clone().unwrap_or_default();
            // A custom runtime's own bootstrap, found where AWS looks: /var/task, then /opt.
            let own_bootstrap = if spec.runtime.as_deref().is_some_and(|r| r.starts_with("provided")) {
                if spec.code_dir.as_ref().is_some_and(|d| d.join("bootstrap").is_file()) {
                    Some("/var/task/bootstrap")
                } else if opt_dir.is_some_and(|d| d.join("bootstrap").is_file()) {
                    Some("/opt/bootstrap")
                } else {
                    None
                }
            } else {
                None
            };
            match own_bootstrap {
                Some(b) => (vec![b.to_string()], vec![], Some("/var/task".to_string())),
                None => (image_entry, vec![handler], Some("/var/task".to_string())),
            }
        };
        if entry.is_empty() && cmd.is_empty() {
            return Err(format!("image {image} has no ENTRYPOINT or CMD"));
        }
        let entry = wrapper.into_iter().chain(entry).collect();
        Ok((entry, cmd, working_dir))
    }

    /// The container a function's environment runs in, running `command` (ENTRYPOINT, CMD
    /// and working directory).
    fn container_body(
        &self,
        launch: &Launch<'_>,
        command: (Vec<String>, Vec<String>, Option<String>),
        fifo: Option<&FifoOutput>,
    ) -> Result<ContainerCreateBody, AwsError> {
        let Launch { spec, image, api, files, endpoint, log, .. } = *launch;
        let (entrypoint, cmd, working_dir) = command;
        let env = self.container_env(spec, api, endpoint, log);

        let mut mounts = Vec::new();
        if spec.package != PackageType::Image && files.archive.is_none() {
            let code = spec.code_dir.as_ref().ok_or_else(|| AwsError::service("function has no code"))?;
            mounts.push(bind(code, "/var/task", true));
        }
        if let Some(opt) = files.opt_dir.filter(|_| files.archive.is_none()) {
            mounts.push(bind(opt, "/opt", true));
        }
        if let Some(Some(helper)) = files.helper {
            mounts.push(bind(helper, output::HELPER_TARGET, true));
        }
        if let Some(f) = fifo {
            mounts.push(bind(&f.path(), output::FIFO_TARGET, false));
            if let Some(go) = f.go_path() {
                mounts.push(bind(&go, output::GO_TARGET, false));
            }
        }
        Ok(ContainerCreateBody {
            image: Some(image.to_string()),
            entrypoint: Some(entrypoint),
            cmd: Some(cmd),
            working_dir,
            env: Some(env),
            labels: Some(self.labels(Some(spec))),
            tty: Some(false),
            open_stdin: Some(false),
            host_config: Some(self.host_config(mounts, spec.memory_mb)),
            ..Default::default()
        })
    }

    /// The variables a function's container runs with (`api`: its Runtime API listener).
    fn container_env(&self, spec: &EnvSpec, api: SocketAddr, endpoint: &Endpoint, log: &LogSink) -> Vec<String> {
        let port = self.server_addr.port();
        let endpoint_url = match (&self.advertise, self.network) {
            (Some(a), _) => format!("http://{}", a.authority(port)),
            (None, NetworkMode::Host) => {
                let ip = self.server_addr.ip();
                let ip = if ip.is_unspecified() { IpAddr::V4(Ipv4Addr::LOCALHOST) } else { ip };
                format!("http://{}", SocketAddr::new(ip, port))
            }
            (None, NetworkMode::Bridge) => format!("http://host.docker.internal:{port}"),
        };
        let runtime_api = match &self.advertise {
            Some(a) => a.authority(api.port()),
            None => api.to_string(),
        };
        let mut vars = crate::engine::sandbox::function_env(spec, &runtime_api, &endpoint_url, log.stream());
        crate::engine::sandbox::add_metadata_env(&mut vars, &runtime_api, endpoint.metadata_token());
        // Image functions: the entrypoint sets _HANDLER from CMD.
        vars.retain(|(k, v)| !(k == "_HANDLER" && v.is_empty()));
        vars.push(("LAMBDA_TASK_ROOT".into(), "/var/task".into()));
        vars.push(("LAMBDA_RUNTIME_DIR".into(), "/var/runtime".into()));
        vars.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
    }

    /// `ruststack=1` and the owner's labels, plus the function's (`None`: a blank spare,
    /// labelled `ruststack.spare=1`).
    fn labels(&self, function: Option<&EnvSpec>) -> HashMap<String, String> {
        let mut labels = HashMap::from([
            ("ruststack".to_string(), "1".to_string()),
            ("ruststack.host".to_string(), self.owner.host.clone()),
            ("ruststack.pid".to_string(), self.owner.pid.to_string()),
            ("ruststack.server".to_string(), self.owner.server.clone()),
        ]);
        match function {
            Some(spec) => {
                labels.insert("ruststack.function".to_string(), spec.function.clone());
                labels.insert("ruststack.version".to_string(), spec.version.clone());
            }
            None => {
                labels.insert("ruststack.spare".to_string(), "1".to_string());
            }
        }
        labels
    }

    /// The limits, mounts and network of a function's container.
    fn host_config(&self, mounts: Vec<Mount>, memory_mb: u32) -> HostConfig {
        let memory = memory_bytes(memory_mb);
        let (network_mode, extra_hosts) = match self.network {
            NetworkMode::Host => ("host", None),
            NetworkMode::Bridge => ("bridge", Some(vec!["host.docker.internal:host-gateway".to_string()])),
        };
        HostConfig {
            mounts: Some(mounts),
            memory: Some(memory),
            memory_swap: Some(memory),
            pids_limit: Some(PIDS_LIMIT),
            privileged: Some(false),
            cap_drop: Some(vec!["ALL".to_string()]),
            security_opt: Some(vec!["no-new-privileges".to_string()]),
            network_mode: Some(network_mode.to_string()),
            extra_hosts,
            auto_remove: Some(false),
            ..Default::default()
        }
    }

    async fn make_blank(self: &Arc<Self>, key: &BlankKey, memory_mb: u32) -> Result<Blank, AwsError> {
        if self.closing.load(Ordering::SeqCst) {
            return Err(AwsError::service("server is shutting down"));
        }
        let begun = Instant::now();
        let engine = self.engine().await.map_err(AwsError::service)?;
        let helper = match &engine.helper {
            Some(Some(path)) if engine.local && engine.transfer == CodeTransfer::Mount => path.clone(),
            _ => {
                self.no_blanks.store(true, Ordering::Relaxed);
                return Err(AwsError::service(
                    "blank spares need a local engine that mounts the code, and the stdio helper",
                ));
            }
        };
        let docker = &engine.docker;
        self.image_config(docker, &key.image).await.map_err(AwsError::service)?;
        let name = container_name("spare");
        let dir = self.run_root.join(self.owner.pid.to_string()).join(&name);
        let opt = key.opt;
        let fifo = tokio::task::spawn_blocking(move || {
            let f = FifoPending::create(dir)?;
            std::fs::create_dir(f.dir().join("task"))?;
            if opt {
                std::fs::create_dir(f.dir().join("opt"))?;
            }
            Ok::<_, std::io::Error>(f)
        })
        .await
        .map_err(|e| AwsError::service(format!("blank spare failed: {e}")))?
        .map_err(|e| AwsError::service(format!("cannot make a blank spare's FIFOs: {e}")))?;
        let d = fifo.dir().to_path_buf();
        let mut mounts = vec![bind(&d.join("task"), "/var/task", true)];
        if opt {
            mounts.push(bind(&d.join("opt"), "/opt", true));
        }
        mounts.push(bind(&helper, output::HELPER_TARGET, true));
        mounts.push(bind(&d.join("log"), output::FIFO_TARGET, false));
        mounts.push(bind(&d.join("go"), output::GO_TARGET, false));
        let mut entrypoint = output::helper_wrapper(true, true);
        entrypoint.push("@go".into());
        let body = ContainerCreateBody {
            image: Some(key.image.clone()),
            entrypoint: Some(entrypoint),
            cmd: Some(Vec::new()),
            labels: Some(self.labels(None)),
            tty: Some(false),
            open_stdin: Some(false),
            host_config: Some(self.host_config(mounts, memory_mb)),
            ..Default::default()
        };
        let t0 = Instant::now();
        let opts = CreateContainerOptionsBuilder::new().name(&name).build();
        let created = docker.create_container(Some(opts), body).await.map_err(|e| {
            if status(&e) == Some(404) {
                self.forget_image(&key.image);
            }
            invalid_runtime(format!("cannot create a container from {}: {}", key.image, message(&e)))
        })?;
        let id = created.id;
        self.live.lock().insert(id.clone());
        let mut blank = Blank {
            id: id.clone(),
            inner: self.clone(),
            stopped: Arc::new(AtomicBool::new(false)),
            fifo: Some(fifo),
            watch: Arc::new(Mutex::new(Watch::default())),
            memory_mb,
            ip: None,
            key: key.clone(),
        };
        if self.closing.load(Ordering::SeqCst) {
            blank.stop().await;
            return Err(AwsError::service("server is shutting down"));
        }
        let t1 = Instant::now();
        docker
            .start_container(&id, None)
            .await
            .map_err(|e| invalid_runtime(format!("cannot start a container from {}: {}", key.image, message(&e))))?;
        if engine.local && self.network == NetworkMode::Bridge {
            blank.ip = container_ip(docker, &id).await;
        }
        spawn_waiter(docker.clone(), id.clone(), blank.watch.clone(), blank.stopped.clone());
        tracing::debug!(
            container = short(&id),
            image = %key.image,
            prep_ms = (t0 - begun).as_millis() as u64,
            create_ms = (t1 - t0).as_millis() as u64,
            start_ms = t1.elapsed().as_millis() as u64,
            "blank spare started"
        );
        Ok(blank)
    }

    async fn take_blank(
        self: &Arc<Self>,
        mut blank: Blank,
        spec: &EnvSpec,
        api: SocketAddr,
        endpoint: Arc<Endpoint>,
        log: Arc<LogSink>,
    ) -> Result<Container, AwsError> {
        let begun = Instant::now();
        let engine = self.engine().await.map_err(AwsError::service)?;
        let docker = &engine.docker;
        let code = spec.code_dir.clone().ok_or_else(|| AwsError::service("function has no code"))?;
        let opt_src = match spec.layer_dirs.as_slice() {
            [] => None,
            [only] => Some(only.clone()),
            dirs => {
                let (root, dirs) = (self.merged_root.clone(), dirs.to_vec());
                let merged = tokio::task::spawn_blocking(move || layers::merge(&root, &dirs))
                    .await
                    .map_err(|e| AwsError::service(format!("layer merge failed: {e}")))?
                    .map_err(|e| AwsError::service(format!("cannot merge the function's layers: {e}")))?;
                Some(merged)
            }
        };
        if opt_src.is_some() != blank.key.opt {
            return Err(AwsError::service("the blank spare does not fit the function's layers"));
        }
        let slot = blank.fifo.as_ref().map(|f| f.dir().to_path_buf()).unwrap_or_default();
        let from = opt_src.clone();
        tokio::task::spawn_blocking(move || fill_slot(&slot, &code, from.as_deref()))
            .await
            .map_err(|e| AwsError::service(format!("code link failed: {e}")))?
            .map_err(|e| AwsError::service(format!("cannot link the function's code: {e}")))?;
        let t_link = begun.elapsed();
        let (entry, cmd, dir) = self
            .command(docker, spec, &blank.key.image, opt_src.as_deref(), Vec::new())
            .await
            .map_err(|why| image_unavailable(&spec.function, &why))?;
        let env = self.container_env(spec, api, &endpoint, &log);
        let id = blank.id.clone();
        if memory_bytes(spec.memory_mb) != memory_bytes(blank.memory_mb) {
            let memory = memory_bytes(spec.memory_mb);
            let update = ContainerUpdateBody { memory: Some(memory), memory_swap: Some(memory), ..Default::default() };
            docker.update_container(&id, update).await.map_err(|e| {
                AwsError::service(format!("cannot set the memory limit of container {}: {}", short(&id), message(&e)))
            })?;
        }
        {
            let mut w = blank.watch.lock();
            if let Some(why) = &w.exited {
                return Err(AwsError::service(format!("the blank spare exited: {why}")));
            }
            w.endpoint = Some(endpoint.clone());
            w.log = Some(log.clone());
        }
        if engine.local && self.network == NetworkMode::Bridge {
            endpoint.allow_peers(blank.ip.map_or(Peers::Any, Peers::Only));
        }
        let pending = blank.fifo.take().ok_or_else(|| AwsError::service("blank spare already taken"))?;
        let fifo = match pending.open(log) {
            Ok(f) => f,
            Err(e) => {
                blank.stop().await;
                return Err(AwsError::service(format!("cannot read a blank spare's FIFO: {e}")));
            }
        };
        let container = Container {
            id: id.clone(),
            inner: self.clone(),
            stopped: blank.stopped.clone(),
            output: Output::Fifo(fifo),
            oom: OnceLock::new(),
            _opt: None,
        };
        let Output::Fifo(f) = &container.output else { unreachable!() };
        if !f.send(&orders(dir.as_deref(), &env, entry.into_iter().chain(cmd))) {
            return Err(AwsError::service("cannot send a blank spare its orders"));
        }
        // While its runtime starts: named for its function, as the containers made for one.
        let rename = RenameContainerOptions { name: container_name(&spec.function) };
        if let Err(e) = docker.rename_container(&id, rename).await {
            tracing::debug!(container = short(&id), error = %message(&e), "cannot rename a taken blank spare");
        }
        tracing::debug!(
            function = %spec.function,
            container = short(&id),
            link_ms = t_link.as_millis() as u64,
            take_ms = begun.elapsed().as_millis() as u64,
            "blank spare taken"
        );
        Ok(container)
    }

    /// Kills and removes a container; one that is already gone counts as removed.
    async fn remove(&self, id: &str) {
        let Ok(engine) = self.engine().await else { return };
        let opts = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
        match engine.docker.remove_container(id, Some(opts)).await {
            Ok(()) => {}
            Err(e) if matches!(status(&e), Some(404)) => {}
            // 409: a removal is already under way. Wait (bounded) until it is done: the caller
            // that began it may be a task that shutdown does not wait for.
            Err(e) if matches!(status(&e), Some(409)) => {
                tracing::debug!(container = short(id), "removal already under way: waiting for it");
                let until = Instant::now() + Duration::from_secs(10);
                while Instant::now() < until && engine.docker.inspect_container(id, None).await.is_ok() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            Err(e) => {
                tracing::warn!(container = short(id), error = %message(&e), "cannot remove container");
                return;
            }
        }
        self.live.lock().remove(id);
    }

    /// Removes labelled containers (and output FIFOs) left by servers that are gone.
    async fn remove_stale(self: Arc<Self>) {
        let run_root = self.run_root.clone();
        let _ = tokio::task::spawn_blocking(move || output::remove_stale_dirs(&run_root, process_alive)).await;
        let docker = match self.engine().await {
            Ok(e) => &e.docker,
            Err(e) => {
                tracing::debug!(error = %e, "Docker not reachable: no stale containers removed");
                return;
            }
        };
        let filters = HashMap::from([("label", vec!["ruststack=1"])]);
        let opts = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
        let list = match docker.list_containers(Some(opts)).await {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(error = %message(&e), "cannot list containers");
                return;
            }
        };
        let stale: Vec<String> =
            list.into_iter().filter(|s| self.owner.is_stale(s.labels.as_ref())).filter_map(|s| s.id).collect();
        if stale.is_empty() {
            return;
        }
        tracing::info!(count = stale.len(), "removing containers left by an earlier run");
        for id in &stale {
            let opts = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
            if let Err(e) = docker.remove_container(id, Some(opts)).await
                && status(&e) != Some(404)
            {
                tracing::warn!(container = short(id), error = %message(&e), "cannot remove stale container");
            }
        }
    }
}

impl Owner {
    fn is_stale(&self, labels: Option<&HashMap<String, String>>) -> bool {
        let Some(l) = labels else { return true };
        let pid: Option<u32> = l.get("ruststack.pid").and_then(|p| p.parse().ok());
        match (l.get("ruststack.host"), pid) {
            // Another machine's container (a shared engine): not ours to judge.
            (Some(h), _) if *h != self.host => false,
            (_, Some(pid)) if pid == self.pid => false,
            // Same address as ours: that server is gone, since we hold the port now.
            _ if l.get("ruststack.server") == Some(&self.server) => true,
            (_, Some(pid)) => !process_alive(pid),
            (_, None) => true,
        }
    }
}

impl Container {
    /// The container's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Kills and removes the container (a container already gone counts as removed).
    pub async fn stop(&self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        self.inner.remove(&self.id).await;
        tracing::debug!(container = short(&self.id), "container removed");
    }

    /// Lets a held container's runtime start; false if it was not held (or its FIFO failed).
    pub fn go(&self) -> bool {
        match &self.output {
            Output::Fifo(f) => f.go(),
            Output::Attach(_) => false,
        }
    }

    /// Waits until the output written so far is in the log (exact with the FIFO; bounded).
    pub async fn flush_logs(&self) {
        self.output.flush().await;
    }

    /// The container's peak memory so far, in MB: its memory cgroup's high-water mark, read
    /// from the host's cgroup files when the engine is local (no Docker call on the warm
    /// path), else from a one-shot stats call (`max_usage`; cgroup v2 engines only report
    /// the current usage there). 0 when neither answers.
    pub async fn peak_memory_mb(&self) -> u64 {
        let id = self.id.clone();
        let from_cgroup = tokio::task::spawn_blocking(move || cgroup_peak_bytes(&id)).await.ok().flatten();
        let bytes = match from_cgroup {
            Some(b) => b,
            None => self.stats_peak_bytes().await.unwrap_or(0),
        };
        bytes.div_ceil(1024 * 1024)
    }

    /// Whether the kernel's OOM killer killed a process of the container (its runtime, or a
    /// child of it) since this was last asked. The host's cgroup file is found once (on the
    /// blocking pool), then re-read inline; false where there is none (a remote engine).
    pub async fn oom_killed(&self) -> bool {
        let count = match self.oom.get() {
            Some(c) => c.clone(),
            None => {
                let id = self.id.clone();
                let found = tokio::task::spawn_blocking(move || cgroup_oom_count(&id)).await.ok().flatten();
                self.oom.get_or_init(|| found.map(Arc::new)).clone()
            }
        };
        count.is_some_and(|c| c.new_kills())
    }

    async fn stats_peak_bytes(&self) -> Option<u64> {
        let engine = self.inner.engine().await.ok()?;
        let opts = StatsOptionsBuilder::new().stream(false).one_shot(true).build();
        let mut stats = engine.docker.stats(&self.id, Some(opts));
        // Bounded: it runs before the invocation is answered.
        let s = tokio::time::timeout(Duration::from_millis(300), stats.next()).await.ok()??.ok()?;
        let m = s.memory_stats?;
        m.max_usage.or(m.usage)
    }
}

/// A container's memory high-water mark from the host's cgroup files (cgroup v1
/// `memory.max_usage_in_bytes`, v2 `memory.peak`, cgroupfs or systemd driver).
fn cgroup_peak_bytes(id: &str) -> Option<u64> {
    let candidates = [
        format!("/sys/fs/cgroup/memory/docker/{id}/memory.max_usage_in_bytes"),
        format!("/sys/fs/cgroup/memory/system.slice/docker-{id}.scope/memory.max_usage_in_bytes"),
        format!("/sys/fs/cgroup/system.slice/docker-{id}.scope/memory.peak"),
        format!("/sys/fs/cgroup/docker/{id}/memory.peak"),
    ];
    candidates.iter().find_map(|p| std::fs::read_to_string(p).ok()?.trim().parse::<u64>().ok())
}

/// The OOM-kill counter of a container's memory cgroup in the host's cgroup files (v1
/// `memory.oom_control`, v2 `memory.events`; cgroupfs or systemd driver).
fn cgroup_oom_count(id: &str) -> Option<OomCount> {
    let candidates = [
        format!("/sys/fs/cgroup/memory/docker/{id}/memory.oom_control"),
        format!("/sys/fs/cgroup/memory/system.slice/docker-{id}.scope/memory.oom_control"),
        format!("/sys/fs/cgroup/system.slice/docker-{id}.scope/memory.events"),
        format!("/sys/fs/cgroup/docker/{id}/memory.events"),
    ];
    candidates.iter().find_map(|p| OomCount::open(Path::new(p)))
}

impl Drop for Container {
    fn drop(&mut self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let inner = self.inner.clone();
            let id = self.id.clone();
            rt.spawn(async move { inner.remove(&id).await });
        }
    }
}

/// Whom a container's waiter tells when it exits: the endpoint (and, with the FIFO, the log)
/// of the environment it serves. A blank spare serves none until it is taken: its exit is
/// then kept in `exited`, and taking it fails.
#[derive(Default)]
struct Watch {
    exited: Option<String>,
    endpoint: Option<Arc<Endpoint>>,
    /// With the FIFO, the container's own stdout only has what went wrong before the
    /// runtime started: copied into this log on a failed exit.
    log: Option<Arc<LogSink>>,
}

/// Tells the watch's endpoint when the container exits.
fn spawn_waiter(docker: Docker, id: String, watch: Arc<Mutex<Watch>>, stopped: Arc<AtomicBool>) {
    tokio::spawn(async move {
        let opts = WaitContainerOptionsBuilder::new().condition("not-running").build();
        let mut waits = docker.wait_container(&id, Some(opts));
        let (why, failed) = match waits.next().await {
            Some(Ok(r)) => (exit_reason(r.status_code), r.status_code != 0),
            Some(Err(DockerError::DockerContainerWaitError { code, .. })) => (exit_reason(code), true),
            Some(Err(e)) if status(&e) == Some(404) => ("container removed".to_string(), false),
            Some(Err(e)) => (format!("container wait failed: {}", message(&e)), false),
            None => ("container gone".to_string(), false),
        };
        let (endpoint, log) = {
            let mut w = watch.lock();
            match w.endpoint.clone() {
                Some(e) => (e, w.log.clone()),
                None => {
                    tracing::debug!(container = short(&id), why = %why, "blank spare exited");
                    w.exited = Some(why);
                    return;
                }
            }
        };
        if let Some(log) = log.filter(|_| failed && !stopped.load(Ordering::SeqCst)) {
            let opts = LogsOptionsBuilder::new().stdout(true).stderr(true).tail("50").build();
            let fetch = docker.logs(&id, Some(opts)).filter_map(|r| async move { r.ok() }).collect::<Vec<_>>();
            if let Ok(chunks) = tokio::time::timeout(Duration::from_secs(2), fetch).await {
                for c in chunks {
                    log.append(&c.into_bytes());
                }
            }
        }
        // A container over its memory limit is OOM-killed by the kernel (exit 137).
        let oom = failed
            && !stopped.load(Ordering::SeqCst)
            && docker.inspect_container(&id, None).await.ok().and_then(|c| c.state?.oom_killed) == Some(true);
        tracing::debug!(container = short(&id), why = %why, oom, "container exited");
        endpoint.set_death(if oom { Death::OutOfMemory(why) } else { Death::Exited(why) });
    });
}

/// Where a container's code and layers come from on this machine, and the archive that
/// carries them when they are uploaded rather than mounted.
#[derive(Copy, Clone)]
struct Files<'a> {
    opt_dir: Option<&'a Path>,
    archive: Option<&'a Path>,
    /// The stdio helper is the wrapper; `Some(Some(path))`: bind-mounted from there, else in
    /// the archive.
    helper: Option<Option<&'a Path>>,
}

/// Connects to `DOCKER_HOST`: bollard picks the transport by scheme (unix, tcp/http, TLS
/// when `DOCKER_TLS_VERIFY` is set or the scheme is https, ssh through the system `ssh`).
fn connect(host: &str) -> Result<Docker, DockerError> {
    Docker::connect_with_host(host)
}

/// Whether a `DOCKER_HOST` names an engine on this machine: a unix socket, or TCP to a
/// loopback address (an SSH tunnel or a socket proxy). Anything else is remote.
fn engine_is_local(host: &str) -> bool {
    if host.starts_with("unix://") {
        return true;
    }
    let Some(rest) = ["tcp://", "http://", "https://"].iter().find_map(|p| host.strip_prefix(p)) else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let hostname = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    hostname.eq_ignore_ascii_case("localhost") || hostname.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Streams a code archive into a created container, unpacked at `/`.
async fn upload_archive(docker: &Docker, id: &str, tar: &Path) -> Result<(), String> {
    let file = tokio::fs::File::open(tar).await.map_err(|e| format!("cannot open the code archive: {e}"))?;
    let body = bollard::body_try_stream(tokio_util::io::ReaderStream::new(file));
    let opts = UploadToContainerOptionsBuilder::new().path("/").build();
    docker
        .upload_to_container(id, Some(opts), body)
        .await
        .map_err(|e| format!("cannot upload the function's code into container {}: {}", short(id), message(&e)))
}

/// A running container's address on its (first) network.
async fn container_ip(docker: &Docker, id: &str) -> Option<IpAddr> {
    let inspected = docker.inspect_container(id, None).await.ok()?;
    let nets = inspected.network_settings?.networks?;
    nets.values().find_map(|n| n.ip_address.as_deref().filter(|a| !a.is_empty())?.parse().ok())
}

/// The engine's name (Go's) for this machine's architecture.
fn docker_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        a => a,
    }
}

/// Writes the stdio helper to `<dir>/ruststack-stdio` (read and run by anyone) and checks that
/// its filesystem lets it run (a noexec bind mount would not). Blocking.
fn write_helper(dir: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    let path = dir.join("ruststack-stdio");
    let tmp = dir.join(format!(".ruststack-stdio.{}", uuid::Uuid::new_v4().simple()));
    std::fs::write(&tmp, output::STDIO_HELPER)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o555))?;
    std::fs::rename(&tmp, &path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })?;
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).map_err(std::io::Error::other)?;
    // SAFETY: `c` is a NUL-terminated path and `st` a statvfs the call fills in.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above; both live across the call.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if st.f_flag & libc::ST_NOEXEC != 0 {
        return Err(std::io::Error::other(format!("{} is on a noexec filesystem", dir.display())));
    }
    Ok(path)
}

/// `exit status N`, or the signal for the 128+N codes of SIGKILL and SIGSEGV.
fn exit_reason(code: i64) -> String {
    match code {
        137 => "signal: killed".to_string(),
        139 => "signal: segmentation fault".to_string(),
        c => format!("exit status {c}"),
    }
}

/// Adds a debugger's mounts, variables (replacing the function's of the same name) and
/// published port to a container's create body.
fn with_debugger(body: &mut ContainerCreateBody, d: &super::debug::ContainerDebug) {
    if let Some(env) = body.env.as_mut() {
        env.retain(|kv| !d.env.iter().any(|(k, _)| kv.split_once('=').is_some_and(|(kk, _)| kk == k)));
        env.extend(d.env.iter().map(|(k, v)| format!("{k}={v}")));
    }
    let host = body.host_config.get_or_insert_with(Default::default);
    let mounts = host.mounts.get_or_insert_with(Vec::new);
    mounts.extend(d.mounts.iter().map(|(src, target)| bind(src, target, true)));
    if !d.publish.is_empty() {
        let binding = |port: u16| bollard::models::PortBinding {
            host_ip: Some("127.0.0.1".to_string()),
            host_port: Some(port.to_string()),
        };
        let keys: Vec<(String, u16)> = d.publish.iter().map(|p| (format!("{p}/tcp"), *p)).collect();
        host.port_bindings = Some(keys.iter().map(|(k, p)| (k.clone(), Some(vec![binding(*p)]))).collect());
        body.exposed_ports = Some(keys.into_iter().map(|(k, _)| k).collect());
    }
}

fn bind(source: &Path, target: &str, read_only: bool) -> Mount {
    Mount {
        source: Some(source.display().to_string()),
        target: Some(target.to_string()),
        typ: Some(MountType::BIND),
        read_only: Some(read_only),
        ..Default::default()
    }
}

/// The first address of an IPv4 subnet (`172.17.0.0/16` → 172.17.0.1), or the address of a
/// local interface inside it (a `--bip` other than .1).
fn gateway_in_subnet(subnet: &str) -> Option<Ipv4Addr> {
    let (net, bits) = subnet.split_once('/')?;
    let net: Ipv4Addr = net.parse().ok()?;
    let bits: u32 = bits.parse().ok().filter(|b| *b <= 32)?;
    let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
    let base = u32::from(net) & mask;
    let inside = |ip: &Ipv4Addr| u32::from(*ip) & mask == base;
    local_ipv4s().into_iter().find(inside).or(Some(Ipv4Addr::from(base + 1)))
}

/// This machine's IPv4 interface addresses.
fn local_ipv4s() -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we walk read-only and free once below.
    unsafe {
        if libc::getifaddrs(&mut head) != 0 {
            return out;
        }
        let mut cur = head;
        while !cur.is_null() {
            let ifa = &*cur;
            if !ifa.ifa_addr.is_null() && i32::from((*ifa.ifa_addr).sa_family) == libc::AF_INET {
                let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                out.push(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
            }
            cur = ifa.ifa_next;
        }
        libc::freeifaddrs(head);
    }
    out
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

fn process_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else { return false };
    // SAFETY: signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// `ruststack-<function>-<8 hex>`: unique, and says whose container it is in `docker ps`.
fn container_name(function: &str) -> String {
    let f: String = function
        .chars()
        .map(|ch| if ch.is_ascii_alphanumeric() || ch == '-' || ch == '_' || ch == '.' { ch } else { '-' })
        .take(64)
        .collect();
    format!("ruststack-{f}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

fn status(e: &DockerError) -> Option<u16> {
    match e {
        DockerError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// The engine's own message when there is one, else bollard's.
fn message(e: &DockerError) -> String {
    match e {
        DockerError::DockerResponseServerError { message, .. } => message.trim().to_string(),
        DockerError::DockerStreamError { error } => error.trim().to_string(),
        other => other.to_string(),
    }
}

fn invalid_runtime(message: String) -> AwsError {
    AwsError::new(http::StatusCode::BAD_GATEWAY, "InvalidRuntimeException", message)
}

fn image_unavailable(function: &str, why: &str) -> AwsError {
    invalid_runtime(format!("Function {function} cannot start: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_from_subnet() {
        assert_eq!(gateway_in_subnet("203.0.113.0/24"), Some(Ipv4Addr::new(203, 0, 113, 1)));
        assert_eq!(gateway_in_subnet("127.0.0.0/8"), Some(Ipv4Addr::LOCALHOST));
        assert_eq!(gateway_in_subnet("bogus"), None);
    }

    #[test]
    fn which_hosts_are_local() {
        for h in ["unix:///var/run/docker.sock", "tcp://127.0.0.1:2375", "tcp://localhost:2376", "http://[::1]:2375"] {
            assert!(engine_is_local(h), "{h}");
        }
        for h in [
            "tcp://10.0.0.5:2376",
            "https://docker.example:2376",
            "ssh://me@box",
            "tcp://dockerhost",
            "npipe:////./pipe/x",
        ] {
            assert!(!engine_is_local(h), "{h}");
        }
    }

    #[test]
    fn stale_rule() {
        let me = Owner { host: "h".into(), pid: std::process::id(), server: "127.0.0.1:4566".into() };
        let labels = |host: &str, pid: u32, server: &str| {
            HashMap::from([
                ("ruststack.host".to_string(), host.to_string()),
                ("ruststack.pid".to_string(), pid.to_string()),
                ("ruststack.server".to_string(), server.to_string()),
            ])
        };
        assert!(!me.is_stale(Some(&labels("h", me.pid, "127.0.0.1:4566"))));
        assert!(!me.is_stale(Some(&labels("other", 999_999_999, "127.0.0.1:4566"))));
        assert!(me.is_stale(Some(&labels("h", 999_999_999, "127.0.0.1:1"))));
        assert!(me.is_stale(Some(&labels("h", 1, "127.0.0.1:4566"))));
        assert!(!me.is_stale(Some(&labels("h", 1, "127.0.0.1:1"))));
        assert!(me.is_stale(None));
    }
}
