//! The engine: everything that runs function code. It holds the Runtime API endpoint (one per
//! environment), the pool (warm environments, limits, TTL, provisioned, draining), the
//! sandboxes (`subprocess`, `docker`, `attached`, and the debugger modes of [`debug`]) and
//! the log sink.
//!
//! Its only input is its own plain-data [`EnvSpec`], and its one entry point for running code
//! is [`Engine::invoke`]. It imports nothing from the services above it (`lambda`, `server`,
//! `s3`); it stands on the wire helpers (`aws`, `http_util`) only.
//!
//! A runtime that streams its response makes the invocation's outcome [`Ended::Streaming`]:
//! the caller reads the body from the [`ResponseStream`] as it arrives, while the invocation
//! runs on in a task of its own until the stream ends (or dies, or times out); the stream's
//! [`ResponseStream::end`] then gives the usual [`RunOutcome`], log included.

mod advertise;
mod logsink;
mod pool;
pub mod runtime_api;
mod sandbox;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};

use crate::aws::AwsError;
pub use advertise::Advertise;
pub use logsink::LogSink;
use pool::{Environment, Lease, Pool};
pub use runtime_api::{Death, MAX_RESPONSE_BYTES, MAX_STREAM_BYTES, Outcome, StreamEnd};
use runtime_api::{Endpoint, Invocation};
pub use sandbox::subprocess::LayerPaths;
pub use sandbox::{SandboxKind, add_metadata_env, debug, function_env};

/// How the engine picks a sandbox for a function (`--lambda-executor`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum SandboxMode {
    Subprocess,
    Docker,
    /// Docker for images, layers and `force-docker`, or a runtime the host cannot run.
    Auto,
}

/// How containers reach RustStack (`--lambda-network`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Network {
    Host,
    Bridge,
}

/// How a Docker container gets its code and layers (`--lambda-code-transfer`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum CodeTransfer {
    /// Bind-mounted read-only from this machine's data dir (the engine must see its files).
    Mount,
    /// Copied into the container with the engine's archive API before it starts.
    Upload,
}

/// What the engine is told at start: where it keeps its files, what it may run, its limits.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub mode: SandboxMode,
    pub network: Network,
    /// The server's data dir: runtime bootstraps, merged layers, output FIFOs live under it.
    pub data_dir: PathBuf,
    /// Interpreters for python3.x and nodejs functions in subprocess mode.
    pub python: String,
    /// `python3.X` → interpreter overrides (`--python-runtime`).
    pub python_runtimes: Vec<(String, String)>,
    /// Fork python3.x environments from a pre-initialized interpreter (`--python-fork`).
    pub python_fork: bool,
    pub node: String,
    /// RUNTIME → IMAGE overrides of the public.ecr.aws/lambda images.
    pub runtime_images: Vec<(String, String)>,
    /// The server's own address, for `AWS_ENDPOINT_URL` inside functions.
    pub server_addr: SocketAddr,
    /// Most environments alive at once (and busy at once).
    pub max_environments: usize,
    /// Invocations that may wait for a busy slot before the caller gets 429.
    pub queue_size: usize,
    /// How long an idle environment stays warm.
    pub ttl: Duration,
    /// How long a new environment may take to call `/next`.
    pub init_timeout: Duration,
    /// `--lambda-code-transfer`; `None`: mount for a local engine, upload for a remote one.
    pub code_transfer: Option<CodeTransfer>,
    /// `--lambda-advertise-host`, resolved.
    pub advertise: Option<Advertise>,
    /// `--lambda-docker-spare`: each Docker function keeps a container started ahead.
    pub docker_spares: bool,
}

#[cfg(test)]
impl EngineConfig {
    /// Defaults for tests: subprocess sandboxes, loopback, the given data dir.
    pub fn for_tests(data_dir: PathBuf) -> EngineConfig {
        EngineConfig {
            mode: SandboxMode::Subprocess,
            network: Network::Host,
            data_dir,
            python: "python3".into(),
            python_runtimes: Vec::new(),
            python_fork: true,
            node: "node".into(),
            runtime_images: Vec::new(),
            server_addr: SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 4566)),
            max_environments: 10,
            queue_size: 100,
            ttl: Duration::from_secs(300),
            init_timeout: Duration::from_secs(10),
            code_transfer: None,
            advertise: None,
            docker_spares: false,
        }
    }
}

/// A function's deployment package type.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum PackageType {
    Zip,
    Image,
}

/// The instruction set a function is built for.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Architecture {
    X86_64,
    Arm64,
}

/// An Image function's overrides of its image's ENTRYPOINT, CMD and WORKDIR.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageConfig {
    pub entry_point: Option<Vec<String>>,
    pub command: Option<Vec<String>>,
    pub working_directory: Option<String>,
}

/// Everything needed to start an environment for one function version: plain data, only
/// what a sandbox reads.
#[derive(Clone, Debug)]
pub struct EnvSpec {
    /// Pool key: environments are only reused for the same key.
    pub key: String,
    pub function: String,
    /// `$LATEST` or a version number.
    pub version: String,
    pub runtime: Option<String>,
    pub handler: Option<String>,
    pub memory_mb: u32,
    /// The function's timeout: the deadline of each invocation.
    pub timeout: Duration,
    /// The function's own environment variables.
    pub environment: BTreeMap<String, String>,
    pub architecture: Architecture,
    pub package: PackageType,
    /// Image functions: the image they run.
    pub image_uri: Option<String>,
    pub image_config: ImageConfig,
    /// Unpacked code (zip functions).
    pub code_dir: Option<PathBuf>,
    /// The code directory changes in place (a hot-reload directory).
    pub live_code: bool,
    /// Unpacked layers, in the function's order (each is what AWS mounts at /opt).
    pub layer_dirs: Vec<PathBuf>,
    /// Some layer directory changes in place (a hot-reload directory): Docker merges several
    /// layers afresh for each container, not once per list.
    pub live_layers: bool,
    pub region: String,
    pub account: String,
    /// The function's log group: `LoggingConfig.LogGroup`, else `/aws/lambda/<function>`.
    pub log_group: String,
    /// The rest of `LoggingConfig`: format and levels.
    pub logging: LogSettings,
    pub kind: SandboxKind,
    /// Why this sandbox was chosen (for the log).
    pub reason: &'static str,
    /// Started ahead for provisioned concurrency (`AWS_LAMBDA_INITIALIZATION_TYPE`).
    pub provisioned: bool,
    /// `--lambda-debug`: the runtime starts under a debugger, the timeouts are suspended and
    /// the pool keeps one environment of the function (no TTL), one invocation at a time.
    pub debug: Option<debug::DebugSpec>,
}

/// Which function an environment belongs to: the same name in another region (or account)
/// is another function, whose environments a drain or a retire of this one never touches.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FunctionId {
    pub account: String,
    pub region: String,
    pub name: String,
}

impl EnvSpec {
    pub fn function_id(&self) -> FunctionId {
        FunctionId { account: self.account.clone(), region: self.region.clone(), name: self.function.clone() }
    }

    /// Whether this is a spec of function `id`.
    pub fn is(&self, id: &FunctionId) -> bool {
        self.function == id.name && self.region == id.region && self.account == id.account
    }

    /// Its code or a layer is a hot-reload directory.
    pub fn reloads(&self) -> bool {
        self.live_code || self.live_layers
    }

    /// Whether a container made before a change in place of its code or layers runs the
    /// new code once its runtime starts: yes when all it reads is bind-mounted in place, not
    /// when Docker merges several layers, a directory among them, into a `/opt` of its own.
    pub fn survives_change(&self) -> bool {
        !(self.live_layers && self.layer_dirs.len() > 1)
    }
}

/// How a function's logs are written and filtered (`LoggingConfig`, advanced logging controls).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogSettings {
    /// `LogFormat=JSON`: the runtime clients write JSON records and the platform lines are
    /// JSON platform records; levels only apply then.
    pub json: bool,
    /// `ApplicationLogLevel` (TRACE|DEBUG|INFO|WARN|ERROR|FATAL), upper case; INFO when unset.
    pub application_level: String,
    /// `SystemLogLevel` (DEBUG|INFO|WARN), upper case; INFO when unset.
    pub system_level: String,
}

/// One invocation, as the caller asks for it.
#[derive(Clone, Debug, Default)]
pub struct Request {
    pub request_id: String,
    pub payload: Bytes,
    /// The ARN as the caller named it (with alias or version).
    pub invoked_arn: String,
    pub client_context: Option<String>,
    pub cognito_identity: Option<String>,
    pub tenant_id: Option<String>,
    /// Whatever the caller wants kept until an environment is leased for this invocation
    /// (the service's hold on the code the spec names), then dropped.
    pub until_leased: UntilLeased,
}

/// A value the engine drops once the invocation's environment is leased (see
/// [`Request::until_leased`]): from then on the pool's own books say what is in use.
#[derive(Clone, Default)]
pub struct UntilLeased(pub Option<Arc<dyn std::any::Any + Send + Sync>>);

impl std::fmt::Debug for UntilLeased {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "UntilLeased(Some)" } else { "UntilLeased(None)" })
    }
}

/// How one invocation ended, as seen from RustStack.
#[derive(Debug)]
pub enum Ended {
    Posted(Outcome),
    Died(Death),
    TimedOut {
        timeout: Duration,
    },
    InitTimedOut {
        after: Duration,
    },
    /// The runtime is streaming its response: the invocation runs on, and its real end (with
    /// its log) comes from the stream once the body has.
    Streaming(ResponseStream),
    /// A streamed response ended (the end a [`ResponseStream`] gives).
    StreamEnded(StreamEnd),
}

/// A response the runtime streams, handed to the caller chunk by chunk as it arrives.
pub struct ResponseStream {
    pub content_type: Option<String>,
    chunks: mpsc::Receiver<Bytes>,
    end: oneshot::Receiver<RunOutcome>,
    /// The end, once it came (before the last chunks were read).
    ended: Option<Option<Box<RunOutcome>>>,
}

impl std::fmt::Debug for ResponseStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseStream").field("content_type", &self.content_type).finish_non_exhaustive()
    }
}

impl ResponseStream {
    /// The next chunk of the body; None once there are no more (the body is complete, or the
    /// invocation ended otherwise: a timeout, say).
    pub async fn chunk(&mut self) -> Option<Bytes> {
        if self.ended.is_none() {
            tokio::select! {
                biased;
                c = self.chunks.recv() => return c,
                e = &mut self.end => self.ended = Some(e.ok().map(Box::new)),
            }
        }
        // Ended: what was sent before the end still goes out.
        self.chunks.try_recv().ok()
    }

    /// How the invocation ended, with its log: call it after the last chunk.
    pub async fn end(mut self) -> Result<RunOutcome, AwsError> {
        let end = match self.ended.take() {
            Some(e) => e.map(|b| *b),
            None => (&mut self.end).await.ok(),
        };
        end.ok_or_else(|| AwsError::service("the streaming invocation was lost"))
    }
}

/// What an invocation produced, for the service to render.
pub struct RunOutcome {
    pub ended: Ended,
    pub duration: Duration,
    /// Cold starts: how long init took.
    pub init_duration: Option<Duration>,
    /// The environment's output during the invocation.
    pub output: Vec<u8>,
    /// Peak memory of the environment so far (its process tree or container), in MB.
    pub max_memory_mb: u64,
    /// Where the invocation's log lines go.
    pub log_group: String,
    pub log_stream: String,
}

/// What [`Engine::attach`] registered.
#[derive(Clone, Debug)]
pub struct AttachInfo {
    pub id: String,
    /// The attached function (its account, region and name).
    pub function: FunctionId,
    pub runtime_api: String,
    /// The bearer token its metadata endpoint (the Runtime API's) accepts.
    pub metadata_token: String,
    pub keep_timeout: bool,
    pub log_stream: String,
    pub since: Instant,
}

/// How long an invocation waits for an attached runtime that has suspended its timeout.
const SUSPENDED_TIMEOUT: Duration = Duration::from_secs(12 * 3600);

/// The engine: a pool of environments over the sandboxes.
pub struct Engine {
    pool: Arc<Pool>,
    init_timeout: Duration,
}

impl Engine {
    pub fn new(cfg: &EngineConfig) -> std::io::Result<Arc<Engine>> {
        let sandboxes = sandbox::Sandboxes::new(cfg)?;
        let pool = Pool::new(sandboxes, cfg.max_environments, cfg.queue_size, cfg.ttl, cfg.docker_spares);
        Ok(Arc::new(Engine { pool, init_timeout: cfg.init_timeout }))
    }

    /// Runs one invocation on an environment of `spec`: an attached runtime first, then an
    /// idle one, then a new one; waits for the runtime's answer, its death or the deadline.
    ///
    /// The invocation runs in a task of its own. A caller that hangs up (a client read
    /// timeout, say) drops this future; had that cancelled the invocation half-way, it leaked
    /// the environment (a live process outside every limit), its busy slot or its queue place.
    pub async fn invoke(&self, spec: Arc<EnvSpec>, req: Request) -> Result<RunOutcome, AwsError> {
        self.invoke_then(spec, req, |run| run).await
    }

    /// [`Engine::invoke`], then `then` on its outcome, in the same task: what `then` does
    /// (writing the invocation's log, say) is done even if the caller hangs up, without the
    /// caller spawning a task of its own for it. The task starts when this is called; the
    /// returned future (small: a channel's end) only awaits its answer.
    pub fn invoke_then<T: Send + 'static>(
        &self,
        spec: Arc<EnvSpec>,
        req: Request,
        then: impl FnOnce(Result<RunOutcome, AwsError>) -> Result<T, AwsError> + Send + 'static,
    ) -> impl std::future::Future<Output = Result<T, AwsError>> + Send + 'static {
        self.invoke_early(spec, req, |_: &Outcome| None, then)
    }

    /// [`Engine::invoke_then`], with an early answer: when the runtime posts a response
    /// (a whole one, not a stream), `early` sees it at once and may answer the caller with it
    /// (`Some`). The run is then settled after the answer has gone: the environment's output
    /// is flushed and taken, its peak memory and OOM-kill count read, and `then` called with
    /// the whole [`RunOutcome`] (its result dropped), before the environment takes its next
    /// invocation. `None`, and every other end (an error, a death, a timeout): settled first,
    /// and `then`'s result is the answer, as with [`Engine::invoke_then`].
    pub fn invoke_early<T: Send + 'static>(
        &self,
        spec: Arc<EnvSpec>,
        req: Request,
        early: impl FnOnce(&Outcome) -> Option<T> + Send + 'static,
        then: impl FnOnce(Result<RunOutcome, AwsError>) -> Result<T, AwsError> + Send + 'static,
    ) -> impl std::future::Future<Output = Result<T, AwsError>> + Send + 'static {
        let pool = self.pool.clone();
        let init_timeout = self.init_timeout;
        let (answer_tx, answer_rx) = oneshot::channel();
        // Boxed: the task then moves a pointer, not the whole state of the run (a few KB), each
        // time it is spawned and polled.
        tokio::spawn(Box::pin(async move {
            match run(&pool, &spec, req, init_timeout, early).await {
                Ran::Settled(r) => {
                    let _ = answer_tx.send(then(r));
                }
                Ran::Answered(answer, unsettled) => {
                    // The answer wakes the caller, which runs next on this thread; the yield
                    // lets it write the answer before the settling's reads (a task spawned
                    // for them instead woke another thread first, on the answer's way).
                    let _ = answer_tx.send(Ok(answer));
                    tokio::task::yield_now().await;
                    let (run, hold) = unsettled.settle().await;
                    let _ = then(Ok(run));
                    drop(hold);
                }
            }
        }));
        async move { answer_rx.await.unwrap_or_else(|_| Err(AwsError::service("the invocation failed: its task ended"))) }
    }

    /// Which sandbox runs a function, and why.
    pub fn choose(
        &self,
        package: PackageType,
        runtime: Option<&str>,
        has_layers: bool,
        force_docker: bool,
    ) -> (SandboxKind, &'static str) {
        self.pool.sandboxes.choose(package, runtime, has_layers, force_docker)
    }

    /// The image a Docker environment of this function runs: its ImageUri, the
    /// `--lambda-runtime-image` mapping for its runtime, or `public.ecr.aws/lambda/<runtime>`.
    /// Empty when there is none.
    pub fn image_for(&self, package: PackageType, image_uri: Option<&str>, runtime: Option<&str>) -> String {
        self.pool.sandboxes.docker.image_for(package, image_uri, runtime)
    }

    /// Makes sure `image` is present, pulling it (progress in the log) when it is not.
    pub async fn ensure_image(&self, image: &str) -> Result<(), String> {
        self.pool.sandboxes.docker.ensure_image(image).await
    }

    /// Bridge mode: the default bridge network's gateway address, looked up once.
    pub async fn bridge_gateway(&self) -> Result<std::net::Ipv4Addr, String> {
        self.pool.sandboxes.docker.bridge_gateway().await
    }

    /// Stops a function's idle environments (and spares); busy ones are stopped when released.
    pub fn drain(&self, id: &FunctionId) {
        self.pool.drain(id)
    }

    /// The code of `versions` of a function changed in place: retires their environments
    /// (provisioned ones too) and, with `ahead`, starts replacements at once (see
    /// [`pool::Pool::retire`]).
    pub fn retire(&self, id: &FunctionId, versions: &[String], ahead: bool) {
        self.pool.retire(id, versions, ahead)
    }

    /// With `--lambda-docker-spare`: makes a spare container for `spec` in the background
    /// (a Docker function that just became Active), so its first cold start only lets the
    /// runtime go. Does nothing for other functions.
    pub fn prepare(&self, spec: &Arc<EnvSpec>) {
        self.pool.prepare(spec)
    }

    /// Whether Docker functions keep spare containers (`--lambda-docker-spare`).
    pub fn keeps_spares(&self) -> bool {
        self.pool.spares
    }

    /// Keeps `want` initialized environments of `spec` (a published version); 0 stops.
    pub async fn provision(&self, spec: Arc<EnvSpec>, want: usize) -> Result<usize, String> {
        self.pool.provision(spec, want).await
    }

    /// Stops keeping environments for a pool key.
    pub fn unprovision(&self, key: &str) {
        self.pool.unprovision(key)
    }

    /// Stops every environment and refuses new ones.
    pub async fn shutdown(&self) {
        self.pool.shutdown().await
    }

    /// The code and layer directories live environments run from: storage must not free them.
    pub fn dirs_in_use(&self) -> std::collections::HashSet<std::path::PathBuf> {
        self.pool.dirs_in_use()
    }

    /// Signalled (`notify_waiters`) whenever a busy slot or a place in the invocation queue
    /// frees: a caller refused with 429 waits on it rather than polling. Create the
    /// `notified()` future before the attempt, so a slot freed meanwhile is not missed.
    pub fn room(&self) -> Arc<tokio::sync::Notify> {
        self.pool.room()
    }

    /// (live, idle, busy) environment counts.
    pub fn counts(&self) -> (usize, usize, usize) {
        let (live, idle) = self.pool.counts();
        (live, idle, self.pool.busy_now())
    }

    /// Registers a runtime started by hand for `spec`'s function: a Runtime API endpoint of
    /// its own, which gets every invocation of the function until [`Engine::detach`].
    /// A second attachment to the same function (account, region and name) is refused.
    pub async fn attach(&self, spec: &EnvSpec, keep_timeout: bool) -> Result<AttachInfo, AwsError> {
        self.pool.attach(spec, keep_timeout).await
    }

    /// Ends attachment `id` of `function`; false if there is no such attachment.
    pub fn detach(&self, function: &FunctionId, id: &str) -> bool {
        self.pool.detach(function, id)
    }

    /// Every attachment.
    pub fn attachments(&self) -> Vec<AttachInfo> {
        self.pool.attachments()
    }

    /// Tells when attachment `id` of `function` ends (detached, or its runtime gone).
    pub fn attachment_end(&self, function: &FunctionId, id: &str) -> Option<watch::Receiver<Option<Death>>> {
        self.pool.attachment(function, id).map(|e| e.endpoint.death())
    }
}

/// The deadlines an invocation runs under on one environment.
struct Timing {
    cold_since: Option<Instant>,
    /// An environment started ahead, on its first invocation: how long its init took.
    init_took: Option<Duration>,
    timeout: Duration,
    init_timeout: Duration,
}

impl Timing {
    fn for_lease(lease: &Lease, spec: &EnvSpec, init_timeout: Duration) -> Timing {
        match lease.env.sandbox.attached() {
            Some(a) => Timing {
                cold_since: None,
                init_took: None,
                timeout: if a.keep_timeout { spec.timeout } else { SUSPENDED_TIMEOUT },
                init_timeout: SUSPENDED_TIMEOUT,
            },
            // Under a debugger: a breakpoint (or the wait for the IDE) must not time out.
            None if spec.debug.is_some() => Timing {
                cold_since: lease.cold.then_some(lease.env.created),
                init_took: None,
                timeout: SUSPENDED_TIMEOUT,
                init_timeout: SUSPENDED_TIMEOUT,
            },
            None => Timing {
                cold_since: lease.cold.then_some(lease.env.created),
                init_took: lease.env.init_took.get().copied().filter(|_| lease.env.uses.load(Ordering::Relaxed) == 0),
                timeout: spec.timeout,
                init_timeout,
            },
        }
    }
}

/// How [`run`] ended: settled, or answered early (the settling still to do).
enum Ran<T> {
    Settled(Result<RunOutcome, AwsError>),
    Answered(T, Unsettled),
}

/// Leases an environment, runs the invocation on it, and gives it back. A response that
/// `early` answers is answered before the run is settled (see [`Engine::invoke_early`]).
async fn run<T>(
    pool: &Arc<Pool>,
    spec: &Arc<EnvSpec>,
    mut req: Request,
    init_timeout: Duration,
    early: impl FnOnce(&Outcome) -> Option<T>,
) -> Ran<T> {
    let mut early = Some(early);
    let leased = pool.acquire(spec).await;
    req.until_leased.0.take();
    let mut lease = match leased {
        Ok(l) => l,
        Err(e) => return Ran::Settled(Err(e)),
    };
    // After a cold start, the key's next one gets a spare (when it keeps one); made once
    // this run is answered, so the two do not compete.
    let _prepare = Prepare { pool, spec, cold: lease.cold };
    loop {
        let env = lease.env.clone();
        let timing = Timing::for_lease(&lease, spec, init_timeout);
        if let Some(a) = env.sandbox.attached() {
            tracing::info!(function = %env.function, request_id = %req.request_id, attachment = %a.id, "invocation → attached runtime");
        }
        // The previous invocation's settling (its output, memory and log) comes first.
        env.settling.wait().await;
        // At debug level: no info event happens inside, and an enabled span (its fields
        // formatted, entered and left on every poll) cost ~4.8k instructions per invoke.
        let span = tracing::debug_span!("invoke", function = %spec.function, request_id = %req.request_id);
        let mut r = tracing::Instrument::instrument(run_invocation(&env.endpoint, &timing, &req), span).await;
        // A plain response answered at once: the settling runs after the answer has gone,
        // and the environment waits for it before its next invocation.
        if let Ended::Posted(o @ Outcome::Response { .. }) = &r.ended
            && env.sandbox.attached().is_none()
            && let Some(answer) = early.take().and_then(|f| f(o))
        {
            let unsettled = Unsettled::begin(&env, r);
            env.uses.fetch_add(1, Ordering::Relaxed);
            pool.release(lease, !env.endpoint.is_dead());
            return Ran::Answered(answer, unsettled);
        }
        if !matches!(r.ended, Ended::Posted(Outcome::Streaming(_))) {
            // Still running when it streams: its output and memory are measured at the
            // stream's end.
            measure(&env, &mut r).await;
        }
        // A warm runtime that died before taking the invocation (it exited right after
        // its previous answer, say) never saw it: run it on a fresh environment instead.
        let replaceable = env.sandbox.attached().is_none();
        if !r.picked_up && !lease.cold && replaceable && matches!(r.ended, Ended::Died(_)) {
            tracing::debug!(function = %spec.function, "warm runtime gone before /next: starting a fresh one");
            env.sandbox.stop().await;
            pool.release(lease, false);
            lease = match pool.acquire(spec).await {
                Ok(l) => l,
                Err(e) => return Ran::Settled(Err(e)),
            };
            continue;
        }
        return Ran::Settled(Ok(match r.ended {
            Ended::Posted(Outcome::Streaming(s)) => {
                let at = StreamStart { duration: r.duration, init_duration: r.init_duration, picked: r.picked };
                stream_on(pool, lease, s, at, r.deadline, timing.timeout)
            }
            ended => settle(pool, lease, RunResult { ended, ..r }).await,
        }));
    }
}

/// An environment's settling after an early answer: until it is dropped, the environment
/// takes no invocation (see [`Settling`]).
struct Unsettled {
    r: RunResult,
    hold: SettlingHold,
}

/// Holds an environment's [`Settling`] busy until dropped.
struct SettlingHold(Arc<Environment>);

impl Drop for SettlingHold {
    fn drop(&mut self) {
        self.0.settling.end();
    }
}

impl Unsettled {
    fn begin(env: &Arc<Environment>, r: RunResult) -> Unsettled {
        env.settling.begin();
        Unsettled { r, hold: SettlingHold(env.clone()) }
    }

    /// Flushes and takes the environment's output, reads its peak memory and its OOM-kill
    /// count (a kill during an invocation that succeeded is counted and let be, as in
    /// [`oom_verdict`]). Drop the hold it gives back once the run's log is written: the
    /// environment then takes its next invocation.
    async fn settle(self) -> (RunOutcome, SettlingHold) {
        let Unsettled { r, hold } = self;
        let env = &hold.0;
        let ((), mem) =
            tokio::join!(env.sandbox.flush_logs(), env.sandbox.peak_memory_mb(env.endpoint.take_reported_rss()));
        let _ = env.sandbox.oom_killed().await;
        let run = RunOutcome {
            ended: r.ended,
            duration: r.duration,
            init_duration: r.init_duration,
            output: env.log.take(),
            max_memory_mb: mem,
            log_group: env.log.group().to_string(),
            log_stream: env.log.stream().to_string(),
        };
        (run, hold)
    }
}

/// Whether an environment is being settled after an early answer (see
/// [`Engine::invoke_early`]): its next invocation waits, so the output, memory and log
/// written for the previous one are that one's alone, in order.
#[derive(Default)]
pub struct Settling {
    busy: std::sync::atomic::AtomicBool,
    done: tokio::sync::Notify,
}

impl Settling {
    fn begin(&self) {
        self.busy.store(true, Ordering::SeqCst);
    }

    fn end(&self) {
        self.busy.store(false, Ordering::SeqCst);
        self.done.notify_waiters();
    }

    /// Waits until no settling runs.
    async fn wait(&self) {
        // Nearly always so: no waiter is registered then.
        if !self.busy.load(Ordering::SeqCst) {
            return;
        }
        loop {
            let notified = self.done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.busy.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }
}

/// Makes the key's next spare when a cold run ends (see [`Pool::prepare`]).
struct Prepare<'a> {
    pool: &'a Arc<Pool>,
    spec: &'a Arc<EnvSpec>,
    cold: bool,
}

impl Drop for Prepare<'_> {
    fn drop(&mut self) {
        if self.cold {
            self.pool.prepare(self.spec);
        }
    }
}

/// Ends a run on its environment: counts the use, takes its output, stops an environment
/// that is no longer healthy, and gives the lease back.
async fn settle(pool: &Pool, lease: Lease, r: RunResult) -> RunOutcome {
    let env = lease.env.clone();
    env.uses.fetch_add(1, Ordering::Relaxed);
    let healthy = match &r.ended {
        Ended::Posted(_) => true,
        Ended::StreamEnded(e) => matches!(e, StreamEnd::Complete | StreamEnd::Error { .. }),
        _ => false,
    } && !env.endpoint.is_dead();
    let output = env.log.take();
    let max_memory_mb = r.max_memory_mb;
    if !healthy {
        env.sandbox.stop().await;
    }
    let out = RunOutcome {
        ended: r.ended,
        duration: r.duration,
        init_duration: r.init_duration,
        output,
        max_memory_mb,
        log_group: env.log.group().to_string(),
        log_stream: env.log.stream().to_string(),
    };
    pool.release(lease, healthy);
    out
}

/// The runtime began streaming: the caller gets the stream now, while a task of its own waits
/// for the stream's end (or the runtime's death, or the deadline) and then settles the run.
/// Where a run stood when its response began to stream.
struct StreamStart {
    duration: Duration,
    init_duration: Option<Duration>,
    picked: Instant,
}

fn stream_on(
    pool: &Arc<Pool>,
    lease: Lease,
    s: runtime_api::Streamed,
    r: StreamStart,
    deadline: Instant,
    timeout: Duration,
) -> RunOutcome {
    let env = lease.env.clone();
    let (end_tx, end_rx) = oneshot::channel();
    let out = RunOutcome {
        ended: Ended::Streaming(ResponseStream {
            content_type: s.content_type,
            chunks: s.chunks,
            end: end_rx,
            ended: None,
        }),
        duration: r.duration,
        init_duration: r.init_duration,
        output: Vec::new(),
        max_memory_mb: 0,
        log_group: env.log.group().to_string(),
        log_stream: env.log.stream().to_string(),
    };
    let (pool, end, picked) = (pool.clone(), s.end, r.picked);
    let init_duration = r.init_duration;
    tokio::spawn(async move {
        let mut death = env.endpoint.death();
        let ended = tokio::select! {
            biased;
            e = end => match e {
                Ok(StreamEnd::Truncated(why)) => match env.endpoint.death().borrow().clone() {
                    Some(d) => Ended::Died(d),
                    None => Ended::StreamEnded(StreamEnd::Truncated(why)),
                },
                Ok(e) => Ended::StreamEnded(e),
                Err(_) => Ended::Died(Death::Exited("runtime api closed".into())),
            },
            d = death.wait_for(|d| d.is_some()) => {
                Ended::Died(d.map(|d| d.clone()).ok().flatten().unwrap_or(Death::Exited("unknown".into())))
            }
            _ = tokio::time::sleep_until(deadline.into()) => {
                env.endpoint.clear_in_flight();
                Ended::TimedOut { timeout }
            }
        };
        let duration = picked.elapsed();
        let ((), max_memory_mb) =
            tokio::join!(env.sandbox.flush_logs(), env.sandbox.peak_memory_mb(env.endpoint.take_reported_rss()));
        let ended = oom_verdict(&env, ended).await;
        let r = RunResult { picked_up: true, ended, duration, init_duration, max_memory_mb, picked, deadline };
        let _ = end_tx.send(settle(&pool, lease, r).await);
    });
    out
}

/// How a run on one environment went.
struct RunResult {
    /// Whether the runtime took the invocation (`/next`) before it ended.
    picked_up: bool,
    ended: Ended,
    duration: Duration,
    init_duration: Option<Duration>,
    /// The environment's peak memory, measured once the invocation ended.
    max_memory_mb: u64,
    /// When the runtime took the invocation, and its deadline (for a response that streams on).
    picked: Instant,
    deadline: Instant,
}

/// After an invocation's end: waits for the output written so far and (meanwhile) measures
/// the environment's peak memory; an error or a death is checked against the OOM killer.
async fn measure(env: &Environment, r: &mut RunResult) {
    let ((), mem) =
        tokio::join!(env.sandbox.flush_logs(), env.sandbox.peak_memory_mb(env.endpoint.take_reported_rss()));
    r.max_memory_mb = mem;
    let ended = std::mem::replace(&mut r.ended, Ended::TimedOut { timeout: Duration::ZERO });
    r.ended = oom_verdict(env, ended).await;
}

/// An invocation that failed (an error, or its runtime's death) while the kernel's OOM killer
/// killed a process of its environment (the runtime, or only a child of the handler's) ran
/// out of memory: it ends as `Runtime.OutOfMemory`, and the environment, no longer healthy,
/// is retired. Kills during an invocation that succeeded are counted and let be.
async fn oom_verdict(env: &Environment, ended: Ended) -> Ended {
    let why = match &ended {
        Ended::Died(Death::Exited(why)) => Some(why.clone()),
        // The runtime lives on: it is killed when the environment is retired.
        Ended::Posted(Outcome::Error { .. })
        | Ended::StreamEnded(StreamEnd::Error { .. } | StreamEnd::Truncated(_)) => Some("signal: killed".to_string()),
        _ => None,
    };
    match (env.sandbox.oom_killed().await, why) {
        (true, Some(why)) => {
            tracing::debug!(function = %env.function, "a process of the environment was OOM-killed: Runtime.OutOfMemory");
            Ended::Died(Death::OutOfMemory(why))
        }
        _ => ended,
    }
}

async fn run_invocation(endpoint: &Endpoint, timing: &Timing, req: &Request) -> RunResult {
    let (started_tx, started_rx) = oneshot::channel();
    let (done_tx, done_rx) = oneshot::channel();
    // AWS hands an empty payload to the runtime as `{}`.
    let payload = if req.payload.is_empty() { Bytes::from_static(b"{}") } else { req.payload.clone() };
    let inv = Invocation {
        request_id: req.request_id.clone(),
        payload,
        invoked_arn: req.invoked_arn.clone(),
        trace_id: crate::aws::trace_header(true),
        client_context: req.client_context.clone(),
        cognito_identity: req.cognito_identity.clone(),
        tenant_id: req.tenant_id.clone(),
        timeout: timing.timeout,
        started: started_tx,
        done: done_tx,
    };
    let t0 = Instant::now();
    let cold_since = timing.cold_since;
    let mut death = endpoint.death();
    let died = |d: Death, init_duration| RunResult {
        picked_up: false,
        ended: Ended::Died(d),
        duration: t0.elapsed(),
        init_duration,
        max_memory_mb: 0,
        picked: t0,
        deadline: t0,
    };
    if endpoint.deliver(inv).is_err() {
        return died(Death::Exited("environment not accepting invocations".into()), None);
    }
    // Phase 1: the runtime picks the invocation up (after init on a cold start).
    let deadline = tokio::select! {
        biased;
        r = started_rx => match r {
            Ok(d) => d,
            Err(_) => return died(Death::Exited("runtime api closed".into()), None),
        },
        d = death.wait_for(|d| d.is_some()) => {
            let d = d.map(|d| d.clone()).ok().flatten().unwrap_or(Death::Exited("unknown".into()));
            return died(d, cold_since.map(|c| c.elapsed()));
        }
        _ = tokio::time::sleep(timing.init_timeout) => {
            return RunResult {
                picked_up: false,
                ended: Ended::InitTimedOut { after: timing.init_timeout },
                duration: t0.elapsed(),
                init_duration: cold_since.map(|c| c.elapsed()),
                max_memory_mb: 0,
                picked: t0,
                deadline: t0,
            };
        }
    };
    let picked = Instant::now();
    let init_duration = timing.init_took.or(cold_since.map(|c| picked.duration_since(c)));
    // Phase 2: the runtime posts a result, dies, or runs past the deadline.
    let ended = tokio::select! {
        biased;
        r = done_rx => match r {
            Ok(o) => Ended::Posted(o),
            Err(_) => Ended::Died(Death::Exited("runtime api closed".into())),
        },
        d = death.wait_for(|d| d.is_some()) => {
            Ended::Died(d.map(|d| d.clone()).ok().flatten().unwrap_or(Death::Exited("unknown".into())))
        }
        _ = tokio::time::sleep_until(deadline.into()) => {
            endpoint.clear_in_flight();
            Ended::TimedOut { timeout: timing.timeout }
        }
    };
    RunResult { picked_up: true, ended, duration: picked.elapsed(), init_duration, max_memory_mb: 0, picked, deadline }
}
