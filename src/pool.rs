//! Warm execution environments: acquire (reuse before create), release, TTL reaping,
//! the server-wide limit on live environments, and draining on code or config updates.
//!
//! All pool state sits in one `parking_lot::Mutex<PoolState>`: sections are tiny and never
//! held across `.await` (starting and stopping sandboxes happens outside the lock).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::aws::AwsError;
use crate::executor::{EnvSpec, Executors, LogSink, Sandbox};
use crate::runtime_api::{self, Endpoint};

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
    epochs: HashMap<String, u64>,
    /// Every live environment, for shutdown.
    all: HashMap<u64, Arc<Environment>>,
    shutting_down: bool,
}

pub struct Pool {
    state: Mutex<PoolState>,
    busy: Arc<Semaphore>,
    waiting: AtomicUsize,
    queue_size: usize,
    max: usize,
    ttl: Duration,
    next_id: AtomicU64,
    pub executors: Executors,
}

/// An environment on loan to one invocation. Give it back with [`Pool::release`].
pub struct Lease {
    pub env: Arc<Environment>,
    pub cold: bool,
    _permit: OwnedSemaphorePermit,
}

impl Pool {
    pub fn new(executors: Executors, max: usize, queue_size: usize, ttl: Duration) -> Arc<Pool> {
        let max = max.max(1);
        let pool = Arc::new(Pool {
            state: Mutex::new(PoolState::default()),
            busy: Arc::new(Semaphore::new(max)),
            waiting: AtomicUsize::new(0),
            queue_size,
            max,
            ttl,
            next_id: AtomicU64::new(1),
            executors,
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

    /// Takes a busy slot (waiting in the bounded queue if needed), then an idle
    /// environment for the spec's key, or starts a new one.
    pub async fn acquire(&self, spec: &EnvSpec) -> Result<Lease, AwsError> {
        let permit = match self.busy.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.queue_size {
                    self.waiting.fetch_sub(1, Ordering::SeqCst);
                    return Err(AwsError::too_many_requests("Rate Exceeded.", "ConcurrentInvocationLimitExceeded"));
                }
                let p = self.busy.clone().acquire_owned().await;
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                p.map_err(|_| AwsError::service("server is shutting down"))?
            }
        };
        let function = spec.config.name.clone();
        let (epoch, evicted) = {
            let mut st = self.state.lock();
            if st.shutting_down {
                return Err(AwsError::service("server is shutting down"));
            }
            while let Some(idle) = st.idle.get_mut(&spec.key).and_then(|v| v.pop()) {
                if idle.env.endpoint.is_dead() {
                    st.live -= 1;
                    st.all.remove(&idle.env.id);
                    let env = idle.env;
                    tokio::spawn(async move { env.sandbox.stop().await });
                    continue;
                }
                return Ok(Lease { env: idle.env, cold: false, _permit: permit });
            }
            // Make room: evict the oldest idle environment of any function.
            let mut evicted = None;
            if st.live >= self.max {
                let oldest = st
                    .idle
                    .iter()
                    .flat_map(|(k, v)| v.iter().enumerate().map(move |(i, e)| (k.clone(), i, e.since)))
                    .min_by_key(|(_, _, since)| *since);
                if let Some((k, i, _)) = oldest
                    && let Some(v) = st.idle.get_mut(&k)
                {
                    let e = v.remove(i).env;
                    st.all.remove(&e.id);
                    st.live -= 1;
                    evicted = Some(e);
                }
            }
            st.live += 1;
            (st.epochs.get(&function).copied().unwrap_or(0), evicted)
        };
        if let Some(e) = evicted {
            tracing::debug!(function = %e.function, "evicting idle environment to make room");
            e.sandbox.stop().await;
        }
        match self.start(spec, epoch).await {
            Ok(env) => {
                let env = Arc::new(env);
                let mut st = self.state.lock();
                st.all.insert(env.id, env.clone());
                drop(st);
                Ok(Lease { env, cold: true, _permit: permit })
            }
            Err(e) => {
                self.state.lock().live -= 1;
                Err(e)
            }
        }
    }

    async fn start(&self, spec: &EnvSpec, epoch: u64) -> Result<Environment, AwsError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let function = spec.config.name.clone();
        let endpoint = Endpoint::new(format!("{function}#{id}"));
        let listener = runtime_api::serve(self.executors.bind_ip(spec.kind), endpoint.clone())
            .await
            .map_err(|e| AwsError::service(format!("cannot open a Runtime API endpoint: {e}")))?;
        let log = LogSink::new(&function, &spec.config.version);
        let created = Instant::now();
        let sandbox = self.executors.start(spec, listener.addr, endpoint.clone(), log.clone()).await?;
        tracing::info!(function = %function, env = id, executor = ?spec.kind, reason = spec.reason, runtime_api = %listener.addr, "started environment");
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
            _listener: listener,
        })
    }

    /// Returns an environment: back to idle if it is healthy and current, else stopped.
    pub fn release(&self, lease: Lease, healthy: bool) {
        let env = lease.env;
        let mut st = self.state.lock();
        let current = st.epochs.get(&env.function).copied().unwrap_or(0) == env.epoch;
        if healthy && current && !st.shutting_down && !env.endpoint.is_dead() {
            st.idle.entry(env.key.clone()).or_default().push(Idle { env, since: Instant::now() });
            return;
        }
        st.live -= 1;
        st.all.remove(&env.id);
        drop(st);
        tokio::spawn(async move { env.sandbox.stop().await });
    }

    /// Stops a function's idle environments; busy ones are stopped when released.
    pub fn drain(&self, function: &str) {
        let stopped = {
            let mut st = self.state.lock();
            *st.epochs.entry(function.to_string()).or_default() += 1;
            Self::take_idle(&mut st, |i| i.env.function == function)
        };
        for env in stopped {
            tokio::spawn(async move { env.sandbox.stop().await });
        }
    }

    fn reap(&self) {
        let now = Instant::now();
        let expired = Self::take_idle(&mut self.state.lock(), |i| {
            now.duration_since(i.since) >= self.ttl || i.env.endpoint.is_dead()
        });
        for env in expired {
            tracing::info!(function = %env.function, env = env.id, "stopping idle environment (ttl)");
            tokio::spawn(async move { env.sandbox.stop().await });
        }
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
            st.all.remove(&e.id);
        }
        st.live -= out.len();
        out
    }

    /// Stops every environment and refuses new ones.
    pub async fn shutdown(&self) {
        let all: Vec<Arc<Environment>> = {
            let mut st = self.state.lock();
            st.shutting_down = true;
            st.idle.clear();
            st.all.drain().map(|(_, e)| e).collect()
        };
        self.busy.close();
        let stops = all.iter().map(|e| e.sandbox.stop());
        futures_util::future::join_all(stops).await;
        // Containers whose stop was spawned earlier, or that were still starting.
        self.executors.docker.shutdown().await;
    }

    /// (live, idle) environment counts.
    pub fn counts(&self) -> (usize, usize) {
        let st = self.state.lock();
        (st.live, st.idle.values().map(Vec::len).sum())
    }

    pub fn busy_now(&self) -> usize {
        self.max - self.busy.available_permits()
    }
}
