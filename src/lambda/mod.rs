//! The Lambda service: control plane routes (`api`), data (`model`, `store`),
//! deployment packages (`code`), the invoke path (`invoke`, `events`), function URLs (`urls`)
//! and the server side of `ruststack attach` (`attach`). It runs code through the engine.
//! `validate` checks each request against botocore's model (`model_gen`, generated).
//! `esm` holds the event source mappings and their pollers, which read the embedded SQS.
//! `hot_reload` runs local code directories in place and retires their environments when
//! `watch` (the file watcher, on threads of its own) reports a change.

pub mod api;
pub mod attach;
pub mod code;
pub mod esm;
pub mod events;
pub mod hot_reload;
pub mod invoke;
pub mod model;
pub mod model_gen;
pub mod payload;
pub mod store;
pub mod urls;
pub mod validate;
pub mod watch;

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::config::Config;
use crate::engine::{Engine, EnvSpec};
use crate::s3::S3;

/// Shared state of the Lambda service.
pub struct Lambda {
    pub cfg: Config,
    /// Functions and layers, per region.
    pub stores: Arc<store::Regions>,
    /// Runs the code: environments, sandboxes, attached runtimes.
    pub engine: Arc<Engine>,
    pub s3: Arc<S3>,
    /// `http://host:port` of this server, for code Locations.
    pub endpoint_url: String,
    /// Environment specs by pool key, so the warm path touches no disk.
    specs: Mutex<HashMap<String, Arc<EnvSpec>>>,
    pub events: events::EventQueue,
    /// CloudWatch Logs: every invocation's log lands in `/aws/lambda/<function>`.
    pub logs: Arc<crate::logs::Logs>,
    /// Woken whenever a function leaves Pending or InProgress (invokes that arrived during
    /// the transition wait on it).
    pub state_changes: tokio::sync::Notify,
    /// Event source mappings (their records; the pollers run from them).
    pub esm: esm::Mappings,
    /// The running pollers, one per enabled mapping.
    pollers: esm::Pollers,
    /// The embedded SQS the mappings poll (set once by the server).
    sqs: std::sync::OnceLock<Arc<crate::sqs::Sqs>>,
    /// Local code directories run in place, watched for changes.
    pub hot_reload: hot_reload::HotReload,
}

impl Lambda {
    pub fn new(
        cfg: Config,
        stores: store::Regions,
        engine: Arc<Engine>,
        s3: Arc<S3>,
        endpoint_url: String,
        events: events::EventQueue,
    ) -> Lambda {
        // Code directories that environments run from are freed only once they stop.
        let weak = Arc::downgrade(&engine);
        stores.set_in_use(move || weak.upgrade().map(|e| e.dirs_in_use()).unwrap_or_default());
        let hot_reload = hot_reload::HotReload::new(&cfg, &engine);
        Lambda {
            stores: Arc::new(stores),
            engine,
            s3,
            endpoint_url,
            specs: Mutex::new(HashMap::new()),
            events,
            logs: Default::default(),
            state_changes: tokio::sync::Notify::new(),
            esm: esm::Mappings::open(&cfg.data_dir()),
            pollers: Default::default(),
            sqs: std::sync::OnceLock::new(),
            cfg,
            hot_reload,
        }
    }

    /// Starts the service's background work: the Event queue's worker, and the provisioned
    /// concurrency that the stored records ask for.
    pub fn start(self: &Arc<Self>) {
        events::start_worker(self);
        api::restore_provisioned(self);
        api::restore_states(self);
        esm::start_pollers(self);
        // The hot-reload directories the stored records name are watched again.
        self.hot_reload.sync(self);
        // Unreferenced code that a running environment kept is freed once it stops.
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
            loop {
                tick.tick().await;
                let Some(lambda) = weak.upgrade() else { return };
                if lambda.stores.usage().deferred_code_dirs > 0 {
                    let _ = tokio::task::spawn_blocking(move || lambda.stores.collect()).await;
                }
            }
        });
    }

    /// Connects the embedded SQS (event source mappings poll it).
    pub fn set_sqs(&self, sqs: Arc<crate::sqs::Sqs>) {
        let _ = self.sqs.set(sqs);
    }

    pub fn sqs(&self) -> Option<Arc<crate::sqs::Sqs>> {
        self.sqs.get().cloned()
    }

    /// Forgets cached specs and stops warm environments of a function (after an update).
    pub fn drain(&self, scope: &model::Scope, function: &str) {
        let prefix = format!("{function}:");
        self.specs.lock().retain(|k, _| !k.starts_with(&prefix));
        let id = crate::engine::FunctionId {
            account: scope.account.clone(),
            region: scope.region.clone(),
            name: function.to_string(),
        };
        self.engine.drain(&id);
        // Its idle environments are gone now: code the change stopped referencing can go.
        self.stores.collect();
    }
}
