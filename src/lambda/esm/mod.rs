//! Event source mappings: their records (persisted under `--data-dir`, one JSON file per
//! mapping, written atomically like every Lambda record), AWS's state machine (Creating →
//! Enabled, Enabling, Updating, Disabling → Disabled, Deleting), the filter engine
//! ([`filter`]) and the pollers that feed a function from its queue ([`poller`]).
//!
//! A mapping is regional and keyed by its UUID. The records sit behind one
//! `parking_lot::RwLock` whose sections are short and never held across `.await`; writers
//! take `writing` so that a record is durable on disk before readers see it.

pub mod filter;
pub mod poller;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::aws::AwsError;
use crate::aws::fs::write_atomic;

/// States as AWS names them.
pub const CREATING: &str = "Creating";
pub const ENABLED: &str = "Enabled";
pub const ENABLING: &str = "Enabling";
pub const UPDATING: &str = "Updating";
pub const DISABLING: &str = "Disabling";
pub const DISABLED: &str = "Disabled";
pub const DELETING: &str = "Deleting";

/// One event source mapping.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Mapping {
    pub uuid: String,
    pub region: String,
    pub account: String,
    /// The function's ARN as the mapping names it (qualified when it was given a qualifier).
    pub function_arn: String,
    pub function_name: String,
    pub qualifier: Option<String>,
    pub event_source_arn: String,
    pub batch_size: u32,
    pub max_batching_window: u32,
    /// What the user asked for; `state` is where the mapping is on the way there.
    pub enabled: bool,
    pub state: String,
    /// Filter patterns, as given (JSON text).
    #[serde(default)]
    pub filters: Option<Vec<String>>,
    #[serde(default)]
    pub function_response_types: Vec<String>,
    #[serde(default)]
    pub max_concurrency: Option<u32>,
    /// Epoch seconds.
    pub last_modified: f64,
    /// Creation order (epoch ms), the listing order.
    pub created_ms: u64,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

impl Mapping {
    pub fn arn(&self) -> String {
        let partition = crate::aws::arn::partition_for_region(&self.region);
        format!("arn:{partition}:lambda:{}:{}:event-source-mapping:{}", self.region, self.account, self.uuid)
    }

    /// Whether the queue is FIFO (its name ends in `.fifo`).
    pub fn fifo(&self) -> bool {
        self.event_source_arn.ends_with(".fifo")
    }

    pub fn reports_item_failures(&self) -> bool {
        self.function_response_types.iter().any(|t| t == "ReportBatchItemFailures")
    }

    /// The state it settles in once the transition in progress is done.
    pub fn settled_state(&self) -> &'static str {
        if self.enabled { ENABLED } else { DISABLED }
    }

    /// The mapping as AWS renders an SQS event source mapping.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "UUID": self.uuid,
            "BatchSize": self.batch_size,
            "MaximumBatchingWindowInSeconds": self.max_batching_window,
            "EventSourceArn": self.event_source_arn,
            "EventSourceMappingArn": self.arn(),
            "FunctionArn": self.function_arn,
            "LastModified": self.last_modified,
            "State": self.state,
            "StateTransitionReason": "USER_INITIATED",
            "FunctionResponseTypes": self.function_response_types,
        });
        if let Some(filters) = &self.filters {
            let list: Vec<Value> = filters.iter().map(|p| json!({"Pattern": p})).collect();
            v["FilterCriteria"] = json!({"Filters": list});
        }
        if let Some(c) = self.max_concurrency {
            v["ScalingConfig"] = json!({"MaximumConcurrency": c});
        }
        v
    }
}

/// Every event source mapping, in every region.
pub struct Mappings {
    dir: PathBuf,
    state: RwLock<HashMap<String, Mapping>>,
    /// Held by one writer at a time, across its disk write.
    writing: Mutex<()>,
}

fn io_err(e: std::io::Error) -> AwsError {
    AwsError::service(format!("store write failed: {e}"))
}

impl Mappings {
    /// Opens `<data>/lambda/event-source-mappings`. A mapping caught mid-transition by a
    /// crash settles now: Deleting ones are removed, the others become Enabled or Disabled.
    pub fn open(data_dir: &std::path::Path) -> Mappings {
        let dir = data_dir.join("lambda").join("event-source-mappings");
        if let Err(e) = std::fs::create_dir_all(&dir) {
            tracing::error!(dir = %dir.display(), error = %e, "cannot create the event source mapping dir");
        }
        let mut map = HashMap::new();
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let p = e.path();
                if p.extension().and_then(|x| x.to_str()) != Some("json") {
                    if p.to_string_lossy().contains(".tmp-") {
                        let _ = std::fs::remove_file(&p);
                    }
                    continue;
                }
                match std::fs::read(&p)
                    .map_err(|e| e.to_string())
                    .and_then(|b| serde_json::from_slice::<Mapping>(&b).map_err(|e| e.to_string()))
                {
                    Ok(m) if m.state == DELETING => {
                        let _ = std::fs::remove_file(&p);
                    }
                    Ok(mut m) => {
                        m.state = m.settled_state().to_string();
                        map.insert(m.uuid.clone(), m);
                    }
                    Err(e) => {
                        tracing::warn!(path = %p.display(), error = %e, "skipping unreadable event source mapping")
                    }
                }
            }
        }
        Mappings { dir, state: RwLock::new(map), writing: Mutex::new(()) }
    }

    fn path(&self, uuid: &str) -> PathBuf {
        self.dir.join(format!("{uuid}.json"))
    }

    fn persist(&self, m: &Mapping) -> Result<(), AwsError> {
        let bytes = serde_json::to_vec_pretty(m).map_err(|e| AwsError::service(e.to_string()))?;
        let path = self.path(&m.uuid);
        write_atomic(&path, &bytes).map_err(io_err)
    }

    pub fn get(&self, uuid: &str) -> Option<Mapping> {
        self.state.read().get(uuid).cloned()
    }

    /// Every mapping, in creation order.
    pub fn list(&self) -> Vec<Mapping> {
        let mut v: Vec<Mapping> = self.state.read().values().cloned().collect();
        v.sort_by(|a, b| (a.created_ms, &a.uuid).cmp(&(b.created_ms, &b.uuid)));
        v
    }

    /// Stores a new mapping unless `conflict` finds one it clashes with (checked under the
    /// writers' lock, so two creates of the same pair cannot both succeed).
    pub fn create(&self, m: Mapping, conflict: impl Fn(&Mapping) -> Option<AwsError>) -> Result<(), AwsError> {
        let _writing = self.writing.lock();
        if let Some(e) = self.state.read().values().find_map(&conflict) {
            return Err(e);
        }
        self.persist(&m)?;
        self.state.write().insert(m.uuid.clone(), m);
        Ok(())
    }

    /// Applies `f` to a copy, persists it, then makes it visible. `Ok(None)`: no such mapping.
    pub fn update(
        &self,
        uuid: &str,
        f: impl FnOnce(&mut Mapping) -> Result<(), AwsError>,
    ) -> Result<Option<Mapping>, AwsError> {
        let _writing = self.writing.lock();
        let Some(mut m) = self.state.read().get(uuid).cloned() else { return Ok(None) };
        f(&mut m)?;
        self.persist(&m)?;
        self.state.write().insert(uuid.to_string(), m.clone());
        Ok(Some(m))
    }

    /// Removes a mapping and its file.
    pub fn remove(&self, uuid: &str) -> Result<(), AwsError> {
        let _writing = self.writing.lock();
        let path = self.path(uuid);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(e)),
        }
        self.state.write().remove(uuid);
        Ok(())
    }

    /// Ends a transition: the mapping reaches Enabled or Disabled (a Deleting one is removed).
    pub fn settle(&self, uuid: &str) {
        let deleting = self.get(uuid).is_some_and(|m| m.state == DELETING);
        let result = if deleting {
            self.remove(uuid)
        } else {
            self.update(uuid, |m| {
                m.state = m.settled_state().to_string();
                Ok(())
            })
            .map(|_| ())
        };
        if let Err(e) = result {
            tracing::warn!(uuid, error = %e, "cannot settle the event source mapping's state");
        }
    }
}

/// What a mapping needs to know of its queue.
pub struct QueueFacts {
    pub visibility_timeout: u32,
    pub fifo: bool,
}

/// One running poller: told to stop through `stop`, finished when `done` resolves.
struct Running {
    stop: tokio::sync::watch::Sender<bool>,
    done: tokio::task::JoinHandle<()>,
}

/// The running pollers by mapping UUID (the tasks; the records are in [`Mappings`]).
#[derive(Default)]
pub struct Pollers {
    running: Mutex<HashMap<String, Running>>,
}

impl Pollers {
    /// Stops a mapping's poller, if one runs, and returns its task to await.
    fn stop(&self, uuid: &str) -> Option<tokio::task::JoinHandle<()>> {
        let r = self.running.lock().remove(uuid)?;
        let _ = r.stop.send(true);
        Some(r.done)
    }

    /// Stops every poller (server shutdown) and waits for their in-flight batches.
    pub async fn stop_all(&self) {
        let all: Vec<Running> = self.running.lock().drain().map(|(_, r)| r).collect();
        for r in &all {
            let _ = r.stop.send(true);
        }
        for r in all {
            let _ = r.done.await;
        }
    }
}

/// Starts the pollers of every enabled mapping (at start-up: mappings resume after a restart).
pub fn start_pollers(lambda: &std::sync::Arc<super::Lambda>) {
    for m in lambda.esm.list() {
        if m.enabled {
            start(lambda, &m.uuid);
        }
    }
}

fn start(lambda: &std::sync::Arc<super::Lambda>, uuid: &str) {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let done = tokio::spawn(poller::run(std::sync::Arc::downgrade(lambda), uuid.to_string(), rx));
    if let Some(old) = lambda.pollers.running.lock().insert(uuid.to_string(), Running { stop: tx, done }) {
        let _ = old.stop.send(true);
    }
}

impl super::Lambda {
    /// The queue an ARN names, if it exists.
    pub fn queue_facts(&self, arn: &str) -> Option<QueueFacts> {
        let q = self.sqs()?.queue_by_arn(arn)?;
        Some(QueueFacts { visibility_timeout: q.visibility_timeout, fifo: q.fifo })
    }

    /// A mapping was created, updated or is being deleted: its poller restarts with the
    /// new configuration (or stops), then the mapping settles in its state.
    pub fn esm_changed(self: &std::sync::Arc<Self>, uuid: &str) {
        let lambda = self.clone();
        let uuid = uuid.to_string();
        let old = self.pollers.stop(&uuid);
        tokio::spawn(async move {
            if let Some(old) = old {
                let _ = old.await;
            }
            if let Some(m) = lambda.esm.get(&uuid)
                && m.enabled
                && m.state != DELETING
            {
                start(&lambda, &uuid);
            }
            let l = lambda.clone();
            let _ = tokio::task::spawn_blocking(move || l.esm.settle(&uuid)).await;
        });
    }

    /// Stops every poller (server shutdown).
    pub async fn stop_pollers(&self) {
        self.pollers.stop_all().await;
    }
}
