//! The Lambda service: control plane routes (`api`), data (`model`, `store`),
//! deployment packages (`code`), the invoke path (`invoke`, `events`) and function URLs (`urls`).

pub mod api;
pub mod code;
pub mod events;
pub mod invoke;
pub mod model;
pub mod payload;
pub mod store;
pub mod urls;

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::config::Config;
use crate::executor::EnvSpec;
use crate::pool::Pool;
use crate::s3::S3;

/// Shared state of the Lambda service.
pub struct Lambda {
    pub cfg: Config,
    /// Functions and layers, per region.
    pub stores: store::Regions,
    pub pool: Arc<Pool>,
    pub s3: Arc<S3>,
    /// `http://host:port` of this server, for code Locations.
    pub endpoint_url: String,
    /// Environment specs by pool key, so the warm path touches no disk.
    specs: Mutex<HashMap<String, Arc<EnvSpec>>>,
    pub events: events::EventQueue,
    pub attachments: crate::attach::Attachments,
    /// CloudWatch Logs: every invocation's log lands in `/aws/lambda/<function>`.
    pub logs: Arc<crate::logs::Logs>,
}

impl Lambda {
    pub fn new(
        cfg: Config,
        stores: store::Regions,
        pool: Arc<Pool>,
        s3: Arc<S3>,
        endpoint_url: String,
        events: events::EventQueue,
    ) -> Lambda {
        Lambda {
            cfg,
            stores,
            pool,
            s3,
            endpoint_url,
            specs: Mutex::new(HashMap::new()),
            events,
            attachments: Default::default(),
            logs: Default::default(),
        }
    }

    /// Forgets cached specs and stops warm environments of a function (after an update).
    pub fn drain(&self, function: &str) {
        let prefix = format!("{function}:");
        self.specs.lock().retain(|k, _| !k.starts_with(&prefix));
        self.pool.drain(function);
    }
}
