//! Warm execution environments: acquire (reuse before create), release, TTL reaping,
//! the server-wide limit on live environments, draining on code or config updates (by
//! account, region and name), retiring on a change of code in place (hot reload: by version,
//! provisioned ones too, with replacements started ahead that invocations wait for), and
//! provisioned concurrency (environments started ahead, kept whatever their idle time, and
//! replaced when they die), attached runtimes, which it hands out first, and spares:
//! with `--lambda-docker-spare`, each Docker function keeps one container created and
//! started ahead with its runtime held, which its next cold start takes (see [`Pool::prepare`]).
//!
//! All pool state sits in one `parking_lot::Mutex<PoolState>`: sections are tiny and never
//! held across `.await` (starting and stopping sandboxes happens outside the lock).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use tokio::sync::{Notify, OwnedMutexGuard, OwnedSemaphorePermit, Semaphore};

use super::logsink::LogSink;
use super::runtime_api::{self, Death, Endpoint};
use super::sandbox::attached::Attached;
use super::sandbox::docker::{Blank, BlankKey};
use super::sandbox::{Sandbox, Sandboxes};
use super::{AttachInfo, EnvSpec, FunctionId};
use crate::aws::AwsError;

/// One sandbox with its own Runtime API endpoint; serves one invocation at a time.
pub struct Environment {
    pub id: u64,
    pub key: String,
    pub function: String,
    pub endpoint: Arc<Endpoint>,
    pub log: Arc<LogSink>,
    pub sandbox: Sandbox,
    pub created: Instant,
    /// Invocations served so far (0 means the next one is a cold start).
    pub uses: AtomicU64,
    /// The function's drain epoch when this environment started.
    epoch: u64,
    /// Its version's retire epoch (hot reload) when this environment started.
    version_epoch: u64,
    /// What it was started for (a replacement after a code change starts from it).
    pub spec: Arc<EnvSpec>,
    /// Started ahead of its first invocation (a replacement after a code change): how long
    /// its init took, which that invocation reports.
    pub init_took: std::sync::OnceLock<Duration>,
    /// Started ahead for provisioned concurrency.
    pub provisioned: bool,
    /// The code and layer directories it runs from (its working directory among them).
    pub dirs: Vec<std::path::PathBuf>,
    /// Runs under a debugger (`--lambda-debug`): kept whatever its idle time, never evicted,
    /// and the only environment of its function.
    pub debug: bool,
    /// Its last invocation's settling, when that was answered early: the next one waits.
    pub settling: super::Settling,
    _listener: runtime_api::Listener,
}

struct Idle {
    env: Arc<Environment>,
    since: Instant,
}

#[derive(Default)]
struct PoolState {
    idle: HashMap<String, Vec<Idle>>,
    /// Environments alive (idle, busy or starting).
    live: usize,
    /// Bumped by `drain`: environments from an older epoch are not reused.
    epochs: HashMap<FunctionId, u64>,
    /// Bumped by `retire` (a version's code changed in place): environments of that version
    /// from an older epoch are not reused, provisioned ones included.
    version_epochs: HashMap<(FunctionId, String), u64>,
    /// Replacements being started ahead, by pool key: how many, and how many of them an
    /// invocation already waits for.
    warming: HashMap<String, Warming>,
    /// Every live environment, for shutdown.
    all: HashMap<u64, Arc<Environment>>,
    /// Provisioned concurrency by pool key.
    provisioned: HashMap<String, Provisioned>,
    /// The directories of environments being started, by environment id: counted as in use
    /// from the moment a start begins until the environment is in `all` (or failed).
    starting: HashMap<u64, Vec<std::path::PathBuf>>,
    /// Spares by pool key (one each, at most `max` in all): not live until taken.
    spares: HashMap<String, Spare>,
    /// Pool keys whose spare is being made.
    making: std::collections::HashSet<String>,
    /// Blank spares (Docker containers started ahead for no function yet, see
    /// [`docker::Blank`]) by what they fit, oldest first; not live until taken.
    blanks: HashMap<BlankKey, Vec<Blank>>,
    /// Blank spares being made, by what they fit.
    making_blanks: HashMap<BlankKey, usize>,
    shutting_down: bool,
}

impl PoolState {
    /// Spares and blank spares, made or being made (at most `max` in all).
    fn spare_count(&self) -> usize {
        self.spares.len()
            + self.making.len()
            + self.blanks.values().map(Vec::len).sum::<usize>()
            + self.making_blanks.values().sum::<usize>()
    }

    /// Takes a blank spare for `key` whose container still runs (the oldest first).
    fn take_blank(&mut self, key: &BlankKey) -> Option<Blank> {
        let v = self.blanks.get_mut(key)?;
        let mut taken = None;
        while !v.is_empty() {
            let b = v.remove(0);
            if b.exited() {
                tokio::spawn(async move { b.stop().await });
                continue;
            }
            taken = Some(b);
            break;
        }
        if v.is_empty() {
            self.blanks.remove(key);
        }
        taken
    }
}

/// An environment whose container is started with its runtime held: the next cold start of
/// its key lets the runtime go, saving the container's create and start.
struct Spare {
    env: Environment,
    made: Instant,
}

/// The environments provisioned concurrency keeps for one pool key.
struct Provisioned {
    spec: Arc<EnvSpec>,
    want: usize,
    /// Provisioned environments alive or starting.
    have: usize,
    /// A task is starting environments for it.
    filling: bool,
    /// Starting one failed: no more tries until provisioning is asked for again.
    failed: bool,
}

/// Replacements under way for one pool key.
#[derive(Default)]
struct Warming {
    starting: usize,
    claimed: usize,
}

impl PoolState {
    /// The drain and retire epochs an environment of `spec` starts with.
    fn epochs_for(&self, spec: &EnvSpec) -> (u64, u64) {
        // Most pools have drained and retired nothing: no key to build (this runs on every invoke).
        if self.epochs.is_empty() && self.version_epochs.is_empty() {
            return (0, 0);
        }
        let id = spec.function_id();
        let v = self.version_epochs.get(&(id.clone(), spec.version.clone())).copied().unwrap_or(0);
        (self.epochs.get(&id).copied().unwrap_or(0), v)
    }

    /// Whether an environment may serve again: no drain of its function since it started
    /// (provisioned ones run a published version, which no update changes), and no change
    /// of its version's code in place.
    fn current(&self, env: &Environment) -> bool {
        let (epoch, version_epoch) = self.epochs_for(&env.spec);
        (epoch == env.epoch || self.kept(env)) && version_epoch == env.version_epoch
    }

    /// A replacement started ahead for `key` is ready or failed.
    fn end_warming(&mut self, key: &str) {
        if let Some(w) = self.warming.get_mut(key) {
            w.starting = w.starting.saturating_sub(1);
            w.claimed = w.claimed.min(w.starting);
            if w.starting == 0 {
                self.warming.remove(key);
            }
        }
    }

    /// Takes a live environment off the books (the caller stops it).
    fn forget(&mut self, env: &Environment) {
        self.all.remove(&env.id);
        self.live -= 1;
        if env.provisioned
            && let Some(p) = self.provisioned.get_mut(&env.key)
        {
            p.have = p.have.saturating_sub(1);
        }
    }

    /// Whether provisioned concurrency still keeps this environment.
    fn kept(&self, env: &Environment) -> bool {
        env.provisioned && self.provisioned.contains_key(&env.key)
    }
}

pub struct Pool {
    state: Mutex<PoolState>,
    busy: Arc<Semaphore>,
    waiting: AtomicUsize,
    /// Signalled (`notify_waiters`) when a busy slot frees or a place in the queue does.
    room: Arc<Notify>,
    queue_size: usize,
    max: usize,
    ttl: Duration,
    next_id: AtomicU64,
    pub(in crate::engine) sandboxes: Sandboxes,
    /// Attached runtimes by function (account, region, name): handed out before any pooled
    /// environment. Apart from `state`: the invoke path reads it on every call, and it rarely
    /// changes.
    attached: RwLock<HashMap<FunctionId, Arc<Environment>>>,
    /// Functions under a debugger: one invocation (and one environment) at a time per
    /// debugger port, since it can be bound once (see [`DebugTurn`]).
    debug_turns: Mutex<HashMap<DebugTurn, Arc<tokio::sync::Mutex<()>>>>,
    /// Signalled (`notify_waiters`) when a replacement started ahead is ready or failed.
    warmed: Notify,
    me: std::sync::Weak<Pool>,
    /// `--lambda-docker-spare`: Docker functions keep a spare (see [`Pool::prepare`]).
    pub(super) spares: bool,
    /// Signalled (`notify_waiters`) whenever the making of a spare ends.
    spare_made: Notify,
}

/// What a debugged function's invocations take turns on: the port its debugger listens on
/// (the same-named functions of every region `--lambda-debug FN` names share it, as do
/// functions given the same port), or the function itself when the runtime brings its own
/// debugger and RustStack binds no port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum DebugTurn {
    Port(u16),
    Function(FunctionId),
}

impl DebugTurn {
    fn of(spec: &EnvSpec) -> Option<DebugTurn> {
        let debug = spec.debug.as_ref()?;
        Some(match debug.port_for(spec.runtime.as_deref()) {
            0 => DebugTurn::Function(spec.function_id()),
            port => DebugTurn::Port(port),
        })
    }
}

/// How long a cold start waits for its key's spare that is being made.
const SPARE_WAIT: Duration = Duration::from_secs(30);
/// Blank spares kept for each image (and layers or not): two, so that cold starts one after
/// the other (a test suite creating functions) each find one while the next is made.
const BLANKS_PER_KEY: usize = 2;

/// An environment on loan to one invocation. Give it back with [`Pool::release`].
pub struct Lease {
    pub env: Arc<Environment>,
    pub cold: bool,
    _hold: Hold,
    /// A debugged function's turn (see `Pool::debug_turns`).
    _debug_turn: Option<OwnedMutexGuard<()>>,
}

/// What a lease holds while it lasts.
enum Hold {
    /// A busy slot (pooled environments).
    Permit(#[allow(dead_code)] Slot),
    /// The attached runtime's turn.
    Turn(#[allow(dead_code)] OwnedMutexGuard<()>),
}

/// A busy slot: given back (then the pool's `room` signalled) when dropped.
struct Slot {
    permit: Option<OwnedSemaphorePermit>,
    room: Arc<Notify>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        // Free first, so that whoever the signal wakes finds the slot free.
        drop(self.permit.take());
        self.room.notify_waiters();
    }
}

impl Pool {
    pub fn new(sandboxes: Sandboxes, max: usize, queue_size: usize, ttl: Duration, spares: bool) -> Arc<Pool> {
        let max = max.max(1);
        let pool = Arc::new_cyclic(|me| Pool {
            state: Mutex::new(PoolState::default()),
            busy: Arc::new(Semaphore::new(max)),
            waiting: AtomicUsize::new(0),
            room: Arc::new(Notify::new()),
            queue_size,
            max,
            ttl,
            next_id: AtomicU64::new(1),
            sandboxes,
            attached: RwLock::new(HashMap::new()),
            debug_turns: Mutex::new(HashMap::new()),
            warmed: Notify::new(),
            me: me.clone(),
            spares,
            spare_made: Notify::new(),
        });
        let weak = Arc::downgrade(&pool);
        let tick = (ttl / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(tick).await;
                let Some(pool) = weak.upgrade() else { break };
                pool.reap();
            }
        });
        pool
    }

    /// Takes the function's attached runtime (waiting for its turn) if it has one; else a
    /// busy slot (waiting in the bounded queue if needed), then an idle environment for the
    /// spec's key, or a new one.
    pub async fn acquire(self: &Arc<Self>, spec: &Arc<EnvSpec>) -> Result<Lease, AwsError> {
        let attached = {
            let map = self.attached.read();
            if map.is_empty() { None } else { map.get(&spec.function_id()).cloned() }
        };
        if let Some(env) = attached
            && let Some(a) = env.sandbox.attached()
        {
            let turn = a.turn.clone().lock_owned().await;
            return Ok(Lease { env, cold: false, _hold: Hold::Turn(turn), _debug_turn: None });
        }
        let debug_turn = match DebugTurn::of(spec) {
            Some(key) => {
                let turn = self.debug_turns.lock().entry(key).or_default().clone();
                Some(turn.lock_owned().await)
            }
            None => None,
        };
        // From here the spec's directories count as in use (queued, starting), until the
        // environment that serves it is on the books.
        let starting = self.starting(spec);
        let permit = match self.busy.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.queue_size {
                    self.waiting.fetch_sub(1, Ordering::SeqCst);
                    return Err(AwsError::too_many_requests("Rate Exceeded.", "ConcurrentInvocationLimitExceeded"));
                }
                let p = self.busy.clone().acquire_owned().await;
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                self.room.notify_waiters();
                p.map_err(|_| AwsError::service("server is shutting down"))?
            }
        };
        let permit = Slot { permit: Some(permit), room: self.room.clone() };
        self.await_warming(&spec.key).await;
        let function = spec.function.clone();
        let spares = self.keeps_spare(spec);
        let blank_key = if spares { None } else { self.blank_key(spec) };
        if spares {
            self.await_spare(&spec.key).await;
        } else if let Some(k) = &blank_key {
            self.kick_blank(k, spec);
            self.await_blank(k, &spec.key).await;
        }
        let (epochs, evicted, displaced, spare, blank) = {
            let mut st = self.state.lock();
            if st.shutting_down {
                return Err(AwsError::service("server is shutting down"));
            }
            while let Some(idle) = st.idle.get_mut(&spec.key).and_then(take_one) {
                if idle.env.endpoint.is_dead() || !idle.env.sandbox.alive() {
                    st.forget(&idle.env);
                    let env = idle.env;
                    tokio::spawn(async move { env.sandbox.stop().await });
                    continue;
                }
                return Ok(Lease { env: idle.env, cold: false, _hold: Hold::Permit(permit), _debug_turn: debug_turn });
            }
            // Under a debugger, the environment that holds the debugger's port (the function's
            // other version, or another function on that port) goes first.
            let displaced = if let Some(turn) = DebugTurn::of(spec) {
                Self::take_idle(&mut st, |i| i.env.debug && DebugTurn::of(&i.env.spec).as_ref() == Some(&turn))
            } else {
                Vec::new()
            };
            // Make room: evict the oldest idle environment of any function.
            let mut evicted = None;
            if st.live >= self.max {
                let kept = |e: &Environment| e.debug || (e.provisioned && st.provisioned.contains_key(&e.key));
                let oldest = st
                    .idle
                    .iter()
                    .flat_map(|(k, v)| v.iter().enumerate().map(move |(i, e)| (k.clone(), i, e)))
                    .filter(|(_, _, e)| !kept(&e.env))
                    .min_by_key(|(_, _, e)| e.since)
                    .map(|(k, i, _)| (k, i));
                if let Some((k, i)) = oldest
                    && let Some(v) = st.idle.get_mut(&k)
                {
                    let e = v.remove(i).env;
                    st.forget(&e);
                    evicted = Some(e);
                }
            }
            st.live += 1;
            let spare = if spares { st.spares.remove(&spec.key) } else { None };
            let blank = blank_key.as_ref().and_then(|k| st.take_blank(k));
            (st.epochs_for(spec), evicted, displaced, spare, blank)
        };
        if let Some(e) = evicted {
            tracing::debug!(function = %e.function, "evicting idle environment to make room");
            e.sandbox.stop().await;
        }
        for e in displaced {
            e.sandbox.stop().await;
        }
        if let Some(spare) = spare
            && let Some(env) = self.let_go(spare, epochs)
        {
            tracing::info!(function = %function, env = env.id, "environment from a spare container");
            let env = Arc::new(env);
            self.state.lock().all.insert(env.id, env.clone());
            drop(starting);
            return Ok(Lease { env, cold: true, _hold: Hold::Permit(permit), _debug_turn: debug_turn });
        }
        if blank.is_some() {
            tracing::info!(function = %function, "environment from a blank spare container");
        }
        match self.start_with(starting.id, spec, epochs, false, false, blank).await {
            Ok(env) => {
                let env = Arc::new(env);
                let mut st = self.state.lock();
                st.all.insert(env.id, env.clone());
                drop(st);
                drop(starting);
                Ok(Lease { env, cold: true, _hold: Hold::Permit(permit), _debug_turn: debug_turn })
            }
            Err(e) => {
                self.state.lock().live -= 1;
                Err(e)
            }
        }
    }

    /// Counts `spec`'s directories as in use from now until the returned guard is dropped
    /// (once the environment it starts is in `all`, or its start failed).
    fn starting(&self, spec: &EnvSpec) -> Starting<'_> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.state.lock().starting.insert(id, env_dirs(spec));
        Starting { pool: self, id }
    }

    /// With no idle environment for `key` but a replacement of it starting ahead (after a
    /// code change) that no other invocation waits for, waits until that one is ready (or
    /// failed): the invocation then takes it rather than starting a second one beside it.
    async fn await_warming(&self, key: &str) {
        let claimed = {
            let mut st = self.state.lock();
            let idle = st.idle.get(key).is_some_and(|v| !v.is_empty());
            match st.warming.get_mut(key) {
                Some(w) if !idle && w.claimed < w.starting => {
                    w.claimed += 1;
                    true
                }
                _ => false,
            }
        };
        if !claimed {
            return;
        }
        let until = tokio::time::Instant::now() + READY_WAIT;
        loop {
            let warmed = self.warmed.notified();
            tokio::pin!(warmed);
            warmed.as_mut().enable();
            {
                let st = self.state.lock();
                let idle = st.idle.get(key).is_some_and(|v| !v.is_empty());
                if idle || !st.warming.contains_key(key) {
                    break;
                }
            }
            if tokio::time::timeout_at(until, warmed).await.is_err() {
                break;
            }
        }
        if let Some(w) = self.state.lock().warming.get_mut(key) {
            w.claimed = w.claimed.saturating_sub(1);
        }
    }

    /// Starts a replacement of `spec`'s environment ahead of its next invocation (its code
    /// changed in place while it had a warm one, so the user is about to invoke again). It
    /// goes idle once its runtime is ready; meanwhile an invocation that finds no idle one
    /// waits for it. Returns once the sandbox runs (or could not start), not once it is ready.
    /// The key's spare, if it has one that still fits, is taken: only the runtime's init
    /// remains. Once the replacement is ready, a new spare is made.
    async fn prestart(self: &Arc<Self>, spec: Arc<EnvSpec>) {
        let (epochs, spare) = {
            let mut st = self.state.lock();
            if st.shutting_down || st.live >= self.max {
                return;
            }
            st.live += 1;
            st.warming.entry(spec.key.clone()).or_default().starting += 1;
            let spare = if self.keeps_spare(&spec) { st.spares.remove(&spec.key) } else { None };
            (st.epochs_for(&spec), spare)
        };
        let key = spec.key.clone();
        let starting = self.starting(&spec);
        let taken = spare.and_then(|s| self.let_go(s, epochs));
        if let Some(env) = &taken {
            tracing::info!(function = %env.function, env = env.id, "replacement from a spare container");
        }
        let started = match taken {
            Some(env) => Ok(env),
            None => self.start(starting.id, &spec, epochs, false, false).await,
        };
        let env = match started {
            Ok(env) => {
                let env = Arc::new(env);
                self.state.lock().all.insert(env.id, env.clone());
                drop(starting);
                env
            }
            Err(e) => {
                tracing::warn!(function = %spec.function, error = %e.message, "cannot start a replacement ahead");
                {
                    let mut st = self.state.lock();
                    st.live -= 1;
                    st.end_warming(&key);
                }
                self.warmed.notify_waiters();
                return;
            }
        };
        tracing::debug!(function = %env.function, env = env.id, "replacement started ahead");
        let pool = self.clone();
        tokio::spawn(async move {
            let ready = wait_ready(&env).await;
            let (kept, again) = {
                let mut st = pool.state.lock();
                let kept = ready.is_ok() && st.current(&env) && !st.shutting_down && !env.endpoint.is_dead();
                if kept {
                    let _ = env.init_took.set(env.created.elapsed());
                    st.idle.entry(key.clone()).or_default().push(Idle { env: env.clone(), since: Instant::now() });
                } else {
                    st.forget(&env);
                }
                st.end_warming(&key);
                // The code changed again while it started (and nothing else replaces it): the
                // same spec starts once more. After a drain (an update) the spec is an old one.
                let (epoch, version_epoch) = st.epochs_for(&env.spec);
                let again = ready.is_ok()
                    && !kept
                    && !st.shutting_down
                    && epoch == env.epoch
                    && version_epoch != env.version_epoch
                    && !st.warming.contains_key(&key);
                (kept, again)
            };
            pool.warmed.notify_waiters();
            if again {
                pool.prestart_soon(env.spec.clone());
            }
            if kept {
                // The next change (or cold start) takes it.
                pool.prepare(&env.spec);
            }
            match ready {
                Ok(()) if kept => tracing::debug!(function = %env.function, env = env.id, "replacement ready"),
                Ok(()) => env.sandbox.stop().await,
                Err(why) => {
                    tracing::info!(function = %env.function, env = env.id, why, "the replacement started ahead did not become ready");
                    env.sandbox.stop().await;
                }
            }
        });
    }

    /// [`Pool::prestart`] in a task of its own.
    fn prestart_soon(self: &Arc<Self>, spec: Arc<EnvSpec>) {
        let pool = self.clone();
        tokio::spawn(async move { pool.prestart(spec).await });
    }

    /// Starts an environment; `held`, a spare (its runtime waits for [`Sandbox::go`]).
    async fn start(
        &self,
        id: u64,
        spec: &Arc<EnvSpec>,
        epochs: (u64, u64),
        provisioned: bool,
        held: bool,
    ) -> Result<Environment, AwsError> {
        self.start_with(id, spec, epochs, provisioned, held, None).await
    }

    /// [`Pool::start`], in `blank` when there is one (if taking it fails, as without it).
    async fn start_with(
        &self,
        id: u64,
        spec: &Arc<EnvSpec>,
        (epoch, version_epoch): (u64, u64),
        provisioned: bool,
        held: bool,
        mut blank: Option<Blank>,
    ) -> Result<Environment, AwsError> {
        let function = spec.function.clone();
        let (endpoint, listener, log, created, sandbox) = loop {
            let endpoint = Endpoint::new(format!("{function}#{id}"));
            let listener = runtime_api::serve(self.sandboxes.bind_ip(spec.kind), endpoint.clone())
                .await
                .map_err(|e| AwsError::service(format!("cannot open a Runtime API endpoint: {e}")))?;
            let log = LogSink::new(&function, &spec.version, &spec.log_group);
            let created = Instant::now();
            let sandbox = match blank.take() {
                Some(b) => {
                    let (api, e, l) = (listener.addr, endpoint.clone(), log.clone());
                    match self.sandboxes.docker.take_blank(b, spec, api, e, l).await {
                        Ok(c) => Sandbox::Container(c),
                        Err(e) => {
                            // Its endpoint may hear of the blank's removal: a new one serves.
                            tracing::info!(function = %function, error = %e.message, "blank spare not taken: starting a container");
                            continue;
                        }
                    }
                }
                None => self.sandboxes.start(spec, listener.addr, endpoint.clone(), log.clone(), held).await?,
            };
            break (endpoint, listener, log, created, sandbox);
        };
        if held {
            tracing::info!(function = %function, env = id, runtime_api = %listener.addr, "spare container ready");
        } else {
            tracing::info!(function = %function, env = id, executor = ?spec.kind, reason = spec.reason, runtime_api = %listener.addr, "started environment");
        }
        if let Some(d) = &spec.debug {
            use super::debug::Debugger;
            let runtime = spec.runtime.as_deref();
            let debugger = Debugger::for_function(runtime, spec.package == super::PackageType::Image);
            match debugger {
                Debugger::Own | Debugger::Image => {
                    // Said in the function's own log too (its first invocation's, after START).
                    let target = sandbox.debug_target();
                    let api = listener.addr.to_string();
                    let note = super::debug::own_debugger_note(debugger, runtime, d.port, &target, &api);
                    log.append(note.as_bytes());
                    tracing::info!(function = %function, env = id, runtime_api = %listener.addr, target = %target,
                        "debug mode: {}", note.trim_end().trim_start_matches("RustStack --lambda-debug: "));
                }
                _ => {
                    let port = d.port_for(runtime);
                    tracing::info!(function = %function, env = id, debugger = debugger.describe(),
                        "debug mode: the debugger listens on 127.0.0.1:{port}; the runtime waits for it to attach, timeout suspended")
                }
            }
        }
        Ok(Environment {
            id,
            key: spec.key.clone(),
            function,
            endpoint,
            log,
            sandbox,
            created,
            uses: AtomicU64::new(0),
            epoch,
            version_epoch,
            spec: spec.clone(),
            init_took: std::sync::OnceLock::new(),
            provisioned,
            dirs: env_dirs(spec),
            debug: spec.debug.is_some(),
            settling: Default::default(),
            _listener: listener,
        })
    }

    /// Returns an environment: back to idle if it is healthy and current, else stopped.
    pub fn release(&self, lease: Lease, healthy: bool) {
        let env = lease.env;
        if env.sandbox.attached().is_some() {
            // Not the pool's to keep or stop: it serves until it is detached.
            return;
        }
        let mut st = self.state.lock();
        if healthy && st.current(&env) && !st.shutting_down && !env.endpoint.is_dead() {
            st.idle.entry(env.key.clone()).or_default().push(Idle { env, since: Instant::now() });
            return;
        }
        // Provisioned concurrency replaces what it keeps at once.
        let refill = st.kept(&env).then(|| env.key.clone());
        st.forget(&env);
        drop(st);
        tokio::spawn(async move { env.sandbox.stop().await });
        if let (Some(key), Some(pool)) = (refill, self.me.upgrade()) {
            tokio::spawn(async move {
                if let Err(e) = pool.fill(&key).await {
                    tracing::warn!(key, error = %e, "cannot replace provisioned environments");
                }
            });
        }
    }

    /// Stops a function's idle environments; busy ones are stopped when released.
    /// Provisioned ones stay: they run a published version, which no update changes. Its
    /// spares go too.
    pub fn drain(&self, id: &FunctionId) {
        let (stopped, spares) = {
            let mut st = self.state.lock();
            *st.epochs.entry(id.clone()).or_default() += 1;
            let kept: Vec<u64> = st.all.values().filter(|e| st.kept(e)).map(|e| e.id).collect();
            let stopped = Self::take_idle(&mut st, |i| i.env.spec.is(id) && !kept.contains(&i.env.id));
            (stopped, Self::take_spares(&mut st, |s| s.env.spec.is(id)))
        };
        for env in stopped {
            tokio::spawn(async move { env.sandbox.stop().await });
        }
        for s in spares {
            tokio::spawn(async move { s.env.sandbox.stop().await });
        }
    }

    /// Whether `spec` keeps a spare: Docker, on demand, not under a debugger, and spares on
    /// or hot-reload code (a change then takes the spare: see [`Pool::retire`]).
    fn keeps_spare(&self, spec: &EnvSpec) -> bool {
        (self.spares || spec.reloads())
            && spec.kind == super::sandbox::SandboxKind::Docker
            && spec.debug.is_none()
            && !spec.provisioned
            && spec.package == super::PackageType::Zip
            && (spec.reloads() || self.blank_key(spec).is_none())
    }

    /// The blank spares `spec`'s cold starts take (`--lambda-docker-spare`): Docker zip
    /// functions on demand, not under a debugger, whose code does not change in place (those
    /// keep a spare of their own, made with the code mounted), on an engine that can.
    fn blank_key(&self, spec: &EnvSpec) -> Option<BlankKey> {
        if !self.spares || spec.kind != super::sandbox::SandboxKind::Docker || spec.provisioned || spec.reloads() {
            return None;
        }
        self.sandboxes.docker.blank_key(spec)
    }

    /// Makes blank spares for `spec`'s image in the background, up to [`BLANKS_PER_KEY`]
    /// (made or being made), within `max` spares in all. Where the engine cannot run them,
    /// the function keeps a spare of its own instead.
    fn prepare_blanks(self: &Arc<Self>, key: BlankKey, spec: &Arc<EnvSpec>) {
        self.prepare_blanks_up_to(key, spec, BLANKS_PER_KEY);
    }

    /// A cold start that finds no blank spare ready or being made for its image (one that
    /// came between its function turning Active and the making of that function's spares
    /// being on the books, or after the spares were all taken) has one made now and waits
    /// for it: making a blank is a container's create and start, as a start without one, and
    /// the refill after the take keeps the image's spares.
    fn kick_blank(self: &Arc<Self>, key: &BlankKey, spec: &Arc<EnvSpec>) {
        let none = {
            let st = self.state.lock();
            st.blanks.get(key).is_none_or(Vec::is_empty)
                && st.making_blanks.get(key).is_none_or(|n| *n == 0)
                && st.idle.get(&spec.key).is_none_or(|v| v.is_empty())
        };
        if none {
            self.prepare_blanks_up_to(key.clone(), spec, 1);
        }
    }

    /// [`Pool::prepare_blanks`], up to `per_key` blank spares for `key`.
    fn prepare_blanks_up_to(self: &Arc<Self>, key: BlankKey, spec: &Arc<EnvSpec>, per_key: usize) {
        let want = {
            let mut st = self.state.lock();
            if st.shutting_down {
                return;
            }
            let have = st.blanks.get(&key).map_or(0, Vec::len) + st.making_blanks.get(&key).copied().unwrap_or(0);
            let want = per_key.saturating_sub(have).min(self.max.saturating_sub(st.spare_count()));
            if want > 0 {
                *st.making_blanks.entry(key.clone()).or_default() += want;
            }
            want
        };
        for _ in 0..want {
            let (pool, key, spec) = (self.clone(), key.clone(), spec.clone());
            tokio::spawn(async move {
                let made = pool.sandboxes.docker.make_blank(&key, spec.memory_mb).await;
                let unused = {
                    let mut st = pool.state.lock();
                    if let Some(n) = st.making_blanks.get_mut(&key) {
                        *n = n.saturating_sub(1);
                        if *n == 0 {
                            st.making_blanks.remove(&key);
                        }
                    }
                    match made {
                        Ok(b) if !st.shutting_down => {
                            st.blanks.entry(key.clone()).or_default().push(b);
                            None
                        }
                        Ok(b) => Some(b),
                        Err(e) => {
                            tracing::debug!(image = %key.image, error = %e.message, "no spare container");
                            None
                        }
                    }
                };
                if let Some(b) = unused {
                    b.stop().await;
                }
                pool.spare_made.notify_waiters();
                // The engine cannot: the function keeps a spare of its own, if it can.
                if pool.blank_key(&spec).is_none() {
                    pool.prepare(&spec);
                }
            });
        }
    }

    /// Waits (bounded) while a blank spare for `key` is being made and none is ready, unless
    /// an idle environment of `pool_key` serves first.
    async fn await_blank(&self, key: &BlankKey, pool_key: &str) {
        self.await_making(|st| {
            st.making_blanks.get(key).is_some_and(|n| *n > 0)
                && st.blanks.get(key).is_none_or(|v| v.is_empty())
                && st.idle.get(pool_key).is_none_or(|v| v.is_empty())
        })
        .await
    }

    /// Waits (bounded by [`SPARE_WAIT`]) while `waiting` holds, woken by each spare made.
    async fn await_making(&self, waiting: impl Fn(&PoolState) -> bool) {
        let until = tokio::time::Instant::now() + SPARE_WAIT;
        loop {
            let made = self.spare_made.notified();
            tokio::pin!(made);
            // Registered before the check, so a making that ends in between is not missed.
            made.as_mut().enable();
            let wait = waiting(&self.state.lock());
            if !wait || tokio::time::timeout_at(until, made).await.is_err() {
                return;
            }
        }
    }

    /// Makes a spare for `spec`'s key in the background, unless it has one (or one is being
    /// made). At most `max` spares in all: the oldest makes room. Starting one that fails
    /// (no local engine; no `/bin/sh` without the stdio helper) is only logged: the cold start
    /// then does it all.
    pub fn prepare(self: &Arc<Self>, spec: &Arc<EnvSpec>) {
        if let Some(key) = self.blank_key(spec) {
            self.prepare_blanks(key, spec);
            return;
        }
        if !self.keeps_spare(spec) {
            return;
        }
        let (epochs, evicted) = {
            let mut st = self.state.lock();
            if st.shutting_down || st.spares.contains_key(&spec.key) || st.making.contains(&spec.key) {
                return;
            }
            let mut evicted = None;
            if st.spare_count() >= self.max {
                let oldest = st.spares.iter().min_by_key(|(_, s)| s.made).map(|(k, _)| k.clone());
                match oldest {
                    Some(k) => evicted = st.spares.remove(&k),
                    None => return,
                }
            }
            st.making.insert(spec.key.clone());
            (st.epochs_for(spec), evicted)
        };
        let pool = self.clone();
        let spec = spec.clone();
        tokio::spawn(async move {
            if let Some(s) = evicted {
                s.env.sandbox.stop().await;
            }
            let starting = pool.starting(&spec);
            let made = pool.start(starting.id, &spec, epochs, false, true).await;
            let (unused, again) = {
                let mut st = pool.state.lock();
                match made {
                    Ok(env) => {
                        let now = st.epochs_for(&spec);
                        if Self::spare_fits(&spec, epochs, now) && !st.shutting_down && !env.endpoint.is_dead() {
                            st.making.remove(&spec.key);
                            st.spares.insert(spec.key.clone(), Spare { env, made: Instant::now() });
                            (None, false)
                        } else {
                            // Its merged `/opt` went stale while it was made: made again.
                            let again = now.0 == epochs.0 && now.1 != epochs.1 && !st.shutting_down;
                            (Some(env), again)
                        }
                    }
                    Err(e) => {
                        st.making.remove(&spec.key);
                        tracing::debug!(function = %spec.function, error = %e.message, "no spare container");
                        (None, false)
                    }
                }
            };
            // One made for nothing (an update or the shutdown came first) is stopped before
            // its making ends: the shutdown waits for the makings, so none outlives the server.
            if let Some(env) = unused {
                env.sandbox.stop().await;
                pool.state.lock().making.remove(&spec.key);
            }
            drop(starting);
            pool.spare_made.notify_waiters();
            if again {
                pool.prepare(&spec);
            }
        });
    }

    /// Whether a spare made with `made` epochs may serve at `now`: a spare is made for the
    /// current drain epoch only (`drain` removes it), and a change in place since does not
    /// matter when its runtime will read the new code anyway.
    fn spare_fits(spec: &EnvSpec, made: (u64, u64), now: (u64, u64)) -> bool {
        made.0 == now.0 && (made.1 == now.1 || spec.survives_change())
    }

    /// Lets a spare's runtime go if it fits `epochs` (its init starts now), as an
    /// environment of these epochs; else stops it in the background.
    fn let_go(&self, spare: Spare, epochs: (u64, u64)) -> Option<Environment> {
        let Spare { mut env, .. } = spare;
        if Self::spare_fits(&env.spec, (env.epoch, env.version_epoch), epochs)
            && !env.endpoint.is_dead()
            && env.sandbox.go()
        {
            env.created = Instant::now();
            env.version_epoch = epochs.1;
            return Some(env);
        }
        tokio::spawn(async move { env.sandbox.stop().await });
        None
    }

    /// Waits (bounded) while `key`'s spare is being made, so a cold start right after
    /// CreateFunction takes it rather than starting a second container beside it.
    async fn await_spare(&self, key: &str) {
        // A warm environment serves first: no waiting for the next cold start's spare.
        self.await_making(|st| st.making.contains(key) && st.idle.get(key).is_none_or(|v| v.is_empty())).await
    }

    /// Removes the spares matching `pred`; the caller stops them.
    fn take_spares(st: &mut PoolState, pred: impl Fn(&Spare) -> bool) -> Vec<Spare> {
        let keys: Vec<String> = st.spares.iter().filter(|(_, s)| pred(s)).map(|(k, _)| k.clone()).collect();
        keys.iter().filter_map(|k| st.spares.remove(k)).collect()
    }

    /// The code of `versions` of a function changed in place (hot reload): their
    /// environments are retired, provisioned ones too (idle ones at once, busy ones when
    /// their invocation ends), and (with `ahead`: the code is there to start) replacements
    /// start ahead: provisioned concurrency fills up again, and each pool key that had an
    /// on-demand environment gets one new one, which the next invocation finds ready or
    /// starting. A replacement takes the key's spare (Docker) when there is one: its
    /// container, made before the change, mounts the code in place, so its runtime, let go
    /// now, loads the new code. A spare that would not (its `/opt` merged when it was made)
    /// is stopped, and a new one made. The retired environments are stopped
    /// after the replacements have started, so that their removal does not slow the starts.
    pub fn retire(self: &Arc<Self>, id: &FunctionId, versions: &[String], start_ahead: bool) {
        let hit = |e: &Environment| e.spec.is(id) && versions.contains(&e.spec.version);
        let (old, ahead, refill, stale) = {
            let mut st = self.state.lock();
            for v in versions {
                *st.version_epochs.entry((id.clone(), v.clone())).or_default() += 1;
            }
            let mut ahead: Vec<Arc<EnvSpec>> = Vec::new();
            let mut refill: Vec<String> = Vec::new();
            for e in st.all.values().filter(|e| hit(e)) {
                if st.kept(e) {
                    if !refill.contains(&e.key) {
                        refill.push(e.key.clone());
                    }
                } else if !e.debug && !ahead.iter().any(|s| s.key == e.key) {
                    ahead.push(e.spec.clone());
                }
            }
            if !start_ahead {
                ahead.clear();
                refill.clear();
            }
            let stale = Self::take_spares(&mut st, |s| hit(&s.env) && !s.env.spec.survives_change());
            (Self::take_idle(&mut st, |i| hit(&i.env)), ahead, refill, stale)
        };
        let pool = self.clone();
        tokio::spawn(async move {
            let fills: Vec<_> = refill
                .into_iter()
                .map(|key| {
                    let pool = pool.clone();
                    tokio::spawn(async move {
                        if let Err(e) = pool.fill(&key).await {
                            tracing::warn!(key, error = %e, "cannot replace provisioned environments");
                        }
                    })
                })
                .collect();
            for spec in ahead {
                pool.prestart(spec).await;
            }
            for env in old {
                env.sandbox.stop().await;
            }
            for s in stale {
                s.env.sandbox.stop().await;
                // A key with a replacement starting gets its spare once that is ready.
                let warming = pool.state.lock().warming.contains_key(&s.env.key);
                if start_ahead && !warming {
                    pool.prepare(&s.env.spec);
                }
            }
            for f in fills {
                let _ = f.await;
            }
        });
    }

    fn reap(self: &Arc<Self>) {
        let now = Instant::now();
        let (expired, refill) = {
            let mut st = self.state.lock();
            let kept: Vec<u64> = st.all.values().filter(|e| st.kept(e)).map(|e| e.id).collect();
            let expired = Self::take_idle(&mut st, |i| {
                i.env.endpoint.is_dead()
                    || (now.duration_since(i.since) >= self.ttl && !kept.contains(&i.env.id) && !i.env.debug)
            });
            // A spare's container that exited is of no use.
            for s in Self::take_spares(&mut st, |s| s.env.endpoint.is_dead()) {
                tokio::spawn(async move { s.env.sandbox.stop().await });
            }
            for v in st.blanks.values_mut() {
                let (gone, keep): (Vec<Blank>, Vec<Blank>) = v.drain(..).partition(Blank::exited);
                *v = keep;
                for b in gone {
                    tokio::spawn(async move { b.stop().await });
                }
            }
            st.blanks.retain(|_, v| !v.is_empty());
            // Provisioned environments that died are replaced.
            let refill: Vec<String> = st
                .provisioned
                .iter()
                .filter(|(_, p)| p.have < p.want && !p.filling && !p.failed)
                .map(|(k, _)| k.clone())
                .collect();
            (expired, refill)
        };
        for env in expired {
            tracing::info!(function = %env.function, env = env.id, "stopping idle environment (ttl)");
            tokio::spawn(async move { env.sandbox.stop().await });
        }
        for key in refill {
            let pool = self.clone();
            tokio::spawn(async move {
                if let Err(e) = pool.fill(&key).await {
                    tracing::warn!(key, error = %e, "cannot replace provisioned environments");
                }
            });
        }
    }

    /// Keeps `want` environments of `spec` (a published version) started and initialized,
    /// whatever their idle time; 0 stops keeping them. Returns how many are allocated once
    /// the environments are ready, or why they could not all be.
    pub async fn provision(self: &Arc<Self>, spec: Arc<EnvSpec>, want: usize) -> Result<usize, String> {
        let key = spec.key.clone();
        let surplus = {
            let mut st = self.state.lock();
            if want == 0 {
                st.provisioned.remove(&key);
                return Ok(0);
            }
            let p = st.provisioned.entry(key.clone()).or_insert(Provisioned {
                spec: spec.clone(),
                want,
                have: 0,
                filling: false,
                failed: false,
            });
            p.spec = spec;
            p.want = want;
            p.failed = false;
            let extra = p.have.saturating_sub(want);
            let mut ids = Vec::new();
            if let Some(idle) = st.idle.get(&key) {
                ids.extend(idle.iter().filter(|i| i.env.provisioned).take(extra).map(|i| i.env.id));
            }
            Self::take_idle(&mut st, |i| ids.contains(&i.env.id))
        };
        for env in surplus {
            tokio::spawn(async move { env.sandbox.stop().await });
        }
        self.fill(&key).await
    }

    /// Starts provisioned environments for `key` until it has what it wants.
    async fn fill(self: &Arc<Self>, key: &str) -> Result<usize, String> {
        {
            let mut st = self.state.lock();
            let Some(p) = st.provisioned.get_mut(key) else { return Ok(0) };
            if p.filling {
                return Ok(p.have.min(p.want));
            }
            p.filling = true;
        }
        let result = self.fill_loop(key).await;
        if let Some(p) = self.state.lock().provisioned.get_mut(key) {
            p.filling = false;
            p.failed = result.is_err();
        }
        result
    }

    async fn fill_loop(self: &Arc<Self>, key: &str) -> Result<usize, String> {
        loop {
            let (spec, epochs, evicted) = {
                let mut st = self.state.lock();
                if st.shutting_down {
                    return Err("server is shutting down".into());
                }
                let Some(p) = st.provisioned.get(key) else { return Ok(0) };
                if p.have >= p.want {
                    return Ok(p.want);
                }
                let spec = p.spec.clone();
                // Make room by stopping the oldest idle on-demand environment, if need be.
                let mut evicted = None;
                if st.live >= self.max {
                    let oldest = st
                        .idle
                        .iter()
                        .flat_map(|(k, v)| v.iter().enumerate().map(move |(i, e)| (k.clone(), i, e)))
                        .filter(|(_, _, e)| !e.env.provisioned && !e.env.debug)
                        .min_by_key(|(_, _, e)| e.since)
                        .map(|(k, i, _)| (k, i));
                    let Some((k, i)) = oldest else {
                        return Err(format!("no room for more environments: --lambda-max-containers is {}", self.max));
                    };
                    if let Some(v) = st.idle.get_mut(&k) {
                        let e = v.remove(i).env;
                        st.forget(&e);
                        evicted = Some(e);
                    }
                }
                st.live += 1;
                if let Some(p) = st.provisioned.get_mut(key) {
                    p.have += 1;
                }
                // Invocations that find no idle environment meanwhile wait for this one.
                st.warming.entry(key.to_string()).or_default().starting += 1;
                let epochs = st.epochs_for(&spec);
                (spec, epochs, evicted)
            };
            if let Some(e) = evicted {
                e.sandbox.stop().await;
            }
            let starting = self.starting(&spec);
            let started = self.start(starting.id, &spec, epochs, true, false).await.map_err(|e| e.message.clone());
            let ready = match started {
                Ok(env) => {
                    let env = Arc::new(env);
                    let closing = {
                        let mut st = self.state.lock();
                        st.all.insert(env.id, env.clone());
                        st.shutting_down
                    };
                    drop(starting);
                    if closing {
                        self.state.lock().end_warming(key);
                        env.sandbox.stop().await;
                        return Err("server is shutting down".into());
                    }
                    match wait_ready(&env).await {
                        Ok(()) => Ok(env),
                        Err(why) => {
                            env.sandbox.stop().await;
                            self.state.lock().forget(&env);
                            Err(why)
                        }
                    }
                }
                Err(why) => {
                    let mut st = self.state.lock();
                    st.live -= 1;
                    if let Some(p) = st.provisioned.get_mut(key) {
                        p.have = p.have.saturating_sub(1);
                    }
                    Err(why)
                }
            };
            let warmed = || {
                self.state.lock().end_warming(key);
                self.warmed.notify_waiters();
            };
            let env = match ready {
                Ok(env) => env,
                Err(why) => {
                    warmed();
                    return Err(why);
                }
            };
            let (closing, stale) = {
                let mut st = self.state.lock();
                st.end_warming(key);
                // Its code changed in place while it started: another one starts.
                let stale = !st.current(&env);
                if stale {
                    st.forget(&env);
                } else if !st.shutting_down {
                    st.idle.entry(env.key.clone()).or_default().push(Idle { env: env.clone(), since: Instant::now() });
                }
                (st.shutting_down, stale)
            };
            self.warmed.notify_waiters();
            if closing || stale {
                env.sandbox.stop().await;
                if closing {
                    return Err("server is shutting down".into());
                }
                continue;
            }
            tracing::info!(function = %env.function, env = env.id, "provisioned environment ready");
        }
    }

    /// Stops keeping environments for `key`: the ones it kept age out like any other.
    pub fn unprovision(&self, key: &str) {
        self.state.lock().provisioned.remove(key);
    }

    /// Removes the idle environments matching `pred` from the pool's books; the caller stops them.
    fn take_idle(st: &mut PoolState, pred: impl Fn(&Idle) -> bool) -> Vec<Arc<Environment>> {
        let mut out = Vec::new();
        for v in st.idle.values_mut() {
            let (gone, keep): (Vec<Idle>, Vec<Idle>) = v.drain(..).partition(&pred);
            *v = keep;
            out.extend(gone.into_iter().map(|i| i.env));
        }
        st.idle.retain(|_, v| !v.is_empty());
        for e in &out {
            st.forget(e);
        }
        out
    }

    /// Stops every environment and refuses new ones.
    pub async fn shutdown(&self) {
        let (all, spares, blanks): (Vec<Arc<Environment>>, Vec<Spare>, Vec<Blank>) = {
            let mut st = self.state.lock();
            st.shutting_down = true;
            st.idle.clear();
            (
                st.all.drain().map(|(_, e)| e).collect(),
                st.spares.drain().map(|(_, s)| s).collect(),
                st.blanks.drain().flat_map(|(_, v)| v).collect(),
            )
        };
        self.busy.close();
        // The fork servers' spares first: they serve no invocation, and once the environments
        // are stopped the process should exit at once, before an ended invocation is answered.
        self.sandboxes.subprocess_shutdown().await;
        let stops = all.iter().map(|e| e.sandbox.stop()).chain(spares.iter().map(|s| s.env.sandbox.stop()));
        futures_util::future::join_all(stops).await;
        futures_util::future::join_all(blanks.iter().map(Blank::stop)).await;
        // Spares still being made: each is stopped by its own task, which sees the shutdown.
        let until = tokio::time::Instant::now() + SPARE_WAIT;
        loop {
            let made = self.spare_made.notified();
            tokio::pin!(made);
            made.as_mut().enable();
            let idle = {
                let st = self.state.lock();
                st.making.is_empty() && st.making_blanks.is_empty()
            };
            if idle || tokio::time::timeout_at(until, made).await.is_err() {
                break;
            }
        }
        // Containers whose stop was spawned earlier, or that were still starting.
        self.sandboxes.docker.shutdown().await;
    }

    /// Registers an attached runtime for `spec`'s function (see [`super::Engine::attach`]).
    pub async fn attach(&self, spec: &EnvSpec, keep_timeout: bool) -> Result<AttachInfo, AwsError> {
        let (name, key) = (&spec.function, spec.function_id());
        let endpoint = Endpoint::new(format!("{name}#attached"));
        endpoint.set_region(&spec.region);
        let listener = runtime_api::serve(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), endpoint.clone())
            .await
            .map_err(|e| AwsError::service(format!("cannot open a Runtime API endpoint: {e}")))?;
        let runtime_api = listener.addr.to_string();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let env = Arc::new(Environment {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            key: String::new(),
            function: name.clone(),
            endpoint,
            log: LogSink::new(name, &spec.version, &spec.log_group),
            sandbox: Sandbox::Attached(Attached::new(id, keep_timeout, runtime_api)),
            created: Instant::now(),
            uses: AtomicU64::new(0),
            epoch: 0,
            version_epoch: 0,
            spec: Arc::new(spec.clone()),
            init_took: std::sync::OnceLock::new(),
            provisioned: false,
            // Its layers, which the attached runtime may load, stay unpacked while attached.
            dirs: env_dirs(spec),
            debug: false,
            settling: Default::default(),
            _listener: listener,
        });
        let info = attach_info(&env).ok_or_else(|| AwsError::service("not an attached runtime"))?;
        let mut map = self.attached.write();
        if let Some(cur) = map.get(&key).and_then(|e| attach_info(e)) {
            return Err(AwsError::conflict(format!(
                "Function {name} is already attached in {} (attachment {}, runtime API {}, for {} s); detach it first",
                key.region,
                cur.id,
                cur.runtime_api,
                cur.since.elapsed().as_secs()
            )));
        }
        map.insert(key, env);
        Ok(info)
    }

    /// Ends attachment `id` of `function`: its endpoint dies, invocations go to pooled
    /// environments again.
    pub fn detach(&self, function: &FunctionId, id: &str) -> bool {
        let mut map = self.attached.write();
        if self.attachment_in(&map, function, id).is_none() {
            return false;
        }
        if let Some(env) = map.remove(function) {
            env.endpoint.set_death(Death::Exited("runtime detached".into()));
        }
        tracing::info!(
            function = %function.name,
            region = %function.region,
            attachment = id,
            "detached: invocations go to normal environments again"
        );
        true
    }

    pub fn attachments(&self) -> Vec<AttachInfo> {
        self.attached.read().values().filter_map(|e| attach_info(e)).collect()
    }

    pub fn attachment(&self, function: &FunctionId, id: &str) -> Option<Arc<Environment>> {
        self.attachment_in(&self.attached.read(), function, id)
    }

    fn attachment_in(
        &self,
        map: &HashMap<FunctionId, Arc<Environment>>,
        function: &FunctionId,
        id: &str,
    ) -> Option<Arc<Environment>> {
        map.get(function).filter(|e| e.sandbox.attached().is_some_and(|a| a.id == id)).cloned()
    }

    /// The code directories live environments run from, those being started, and the layers
    /// of attached runtimes.
    pub fn dirs_in_use(&self) -> std::collections::HashSet<std::path::PathBuf> {
        let mut dirs: std::collections::HashSet<std::path::PathBuf> = {
            let st = self.state.lock();
            st.all
                .values()
                .flat_map(|e| e.dirs.iter().cloned())
                .chain(st.starting.values().flatten().cloned())
                .chain(st.spares.values().flat_map(|s| s.env.dirs.iter().cloned()))
                .collect()
        };
        dirs.extend(self.attached.read().values().flat_map(|e| e.dirs.iter().cloned()));
        dirs
    }

    /// (live, idle) environment counts.
    pub fn counts(&self) -> (usize, usize) {
        let st = self.state.lock();
        (st.live, st.idle.values().map(Vec::len).sum())
    }

    /// Invocations waiting in the queue for a busy slot.
    #[cfg(test)]
    pub fn queued(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// Signalled when a busy slot or a queue place frees (see [`crate::engine::Engine::room`]).
    pub fn room(&self) -> Arc<Notify> {
        self.room.clone()
    }

    pub fn busy_now(&self) -> usize {
        self.max - self.busy.available_permits()
    }
}

/// The idle environment to serve next: a provisioned one first (it is there for this), else
/// the one idle last.
fn take_one(idle: &mut Vec<Idle>) -> Option<Idle> {
    match idle.iter().rposition(|i| i.env.provisioned) {
        Some(i) => Some(idle.remove(i)),
        None => idle.pop(),
    }
}

/// An environment start in progress: its directories count as in use while this lives.
struct Starting<'a> {
    pool: &'a Pool,
    id: u64,
}

impl Drop for Starting<'_> {
    fn drop(&mut self) {
        self.pool.state.lock().starting.remove(&self.id);
    }
}

/// The code and layer directories an environment of `spec` runs from.
fn env_dirs(spec: &EnvSpec) -> Vec<std::path::PathBuf> {
    spec.code_dir.iter().chain(spec.layer_dirs.iter()).cloned().collect()
}

fn attach_info(env: &Environment) -> Option<AttachInfo> {
    let a = env.sandbox.attached()?;
    Some(AttachInfo {
        id: a.id.clone(),
        function: env.spec.function_id(),
        runtime_api: a.runtime_api.clone(),
        metadata_token: env.endpoint.metadata_token().to_string(),
        keep_timeout: a.keep_timeout,
        log_stream: env.log.stream().to_string(),
        since: a.since,
    })
}

/// Longest wait for an environment started ahead to become ready.
const READY_WAIT: Duration = Duration::from_secs(60);

/// Waits until a new environment's runtime asks for its first invocation (init done), or
/// says why it will not.
async fn wait_ready(env: &Environment) -> Result<(), String> {
    let mut ready = env.endpoint.ready();
    let mut death = env.endpoint.death();
    tokio::select! {
        r = ready.wait_for(|r| *r) => r.map(|_| ()).map_err(|_| "runtime api closed".to_string()),
        d = death.wait_for(|d| d.is_some()) => Err(match d {
            Ok(d) => format!("the runtime failed during init: {:?}", *d),
            Err(_) => "runtime api closed".to_string(),
        }),
        _ = tokio::time::sleep(READY_WAIT) => Err(format!("init timed out after {} s", READY_WAIT.as_secs())),
    }
}
