//! `ruststack attach`: serve a function's invocations from a runtime started by hand.
//!
//! Not implemented yet (issue 5).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

use crate::aws::AwsError;
use crate::config::AttachArgs;
use crate::executor::EnvSpec;
use crate::lambda::invoke::{CallContext, InvokeOutput, Target};

pub struct Attachment {}

#[derive(Default)]
pub struct Attachments {
    by_function: Mutex<HashMap<String, Arc<Attachment>>>,
}

impl Attachments {
    pub fn get(&self, function: &str) -> Option<Arc<Attachment>> {
        self.by_function.lock().get(function).cloned()
    }
}

pub async fn invoke_attached(
    _att: &Attachment,
    _target: &Target,
    _spec: &EnvSpec,
    _payload: Bytes,
    _call: CallContext,
) -> Result<InvokeOutput, AwsError> {
    Err(AwsError::service("attach is not implemented yet"))
}

pub async fn run(_args: AttachArgs) -> Result<u8, String> {
    Err("attach is not implemented yet".into())
}

/// The server side of attach, under `/_ruststack/attach`.
pub async fn handle_api(
    _app: &std::sync::Arc<crate::server::App>,
    _req: http::Request<hyper::body::Incoming>,
) -> http::Response<crate::http_util::Body> {
    crate::http_util::json(
        http::StatusCode::NOT_IMPLEMENTED,
        &serde_json::json!({"Message": "attach is not implemented yet"}),
    )
}
