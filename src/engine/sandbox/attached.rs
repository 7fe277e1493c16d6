//! The attached sandbox: a runtime a developer started by hand (`ruststack attach`, for
//! example under a debugger). RustStack neither starts nor stops it; while attached it serves
//! its function's invocations one at a time, with the timeout suspended unless asked to keep it.

use std::sync::Arc;
use std::time::Instant;

/// One attachment: what the pool keeps besides the environment's endpoint and log.
pub struct Attached {
    pub id: String,
    pub keep_timeout: bool,
    pub runtime_api: String,
    pub since: Instant,
    /// One invocation at a time, like any environment (queued callers wait their turn).
    pub(in crate::engine) turn: Arc<tokio::sync::Mutex<()>>,
}

impl Attached {
    pub fn new(id: String, keep_timeout: bool, runtime_api: String) -> Attached {
        Attached { id, keep_timeout, runtime_api, since: Instant::now(), turn: Arc::new(tokio::sync::Mutex::new(())) }
    }
}
