//! Lambda control plane routes (REST-JSON, PROTOCOL.md §1): one route table, one handler
//! per operation (one module per resource under `api/`), every error through [`AwsError`].

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{Map, Value, json};

mod account;
mod aliases;
mod async_config;
mod code_signing;
mod common;
mod concurrency;
mod config;
mod errors;
mod functions;
mod invoke_ops;
mod layers;
mod permissions;
mod provisioned;
mod states;
mod tags;
mod targets;
mod url_configs;
mod versions;

use account::*;
use aliases::*;
use async_config::*;
use code_signing::*;
use common::*;
use concurrency::*;
use config::*;
pub use functions::decode_create_function;
use functions::*;
use invoke_ops::*;
use layers::*;
use permissions::*;
pub use provisioned::restore_provisioned;
use provisioned::*;
pub use states::restore_states;
use states::*;
use tags::*;
use url_configs::*;
use versions::*;

use super::Lambda;
use super::invoke::{self, CallContext, MAX_EVENT_PAYLOAD, MAX_SYNC_PAYLOAD};
use super::model::{
    Alias, EventInvokeConfig, FunctionConfig, FunctionRecord, LayerRef, LayerVersion, RUNTIMES, Scope, UrlConfig,
};
use super::store::Store;
use super::validate;
use crate::aws::AwsError;
use crate::aws::arn::{self, FunctionRef};
use crate::http_util::{self, Body, BodyError};

/// Largest control-plane request (50 MB zip after base64, as AWS).
const MAX_REQUEST: usize = 69_905_067;
/// Page size cap for list operations (AWS: 50).
const MAX_PAGE: usize = 50;
/// The account's concurrency limit that GetAccountSettings reports (AWS's default).
const ACCOUNT_CONCURRENCY: u64 = 1000;
/// Environment variables Lambda sets itself and a function's configuration may not
/// (AWS rejects them; `_HANDLER` and `_X_AMZN_TRACE_ID` already fail the key pattern).
/// TZ, LANG, PATH, LD_LIBRARY_PATH, PYTHONPATH and NODE_PATH may be set.
pub const RESERVED_ENV_KEYS: &[&str] = &[
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
];

/// Concurrency that PutFunctionConcurrency must leave unreserved (AWS: 100).
const UNRESERVED_MIN: u64 = 100;

type R = Result<Response<Body>, AwsError>;

/// One request's context.
pub struct Ctx<'a> {
    pub lambda: &'a Arc<Lambda>,
    pub scope: Scope,
    pub query: Vec<(String, String)>,
    /// Code this request stored or is about to reference: kept from being freed until the
    /// request ends (by then the record naming it is stored, or it was refused).
    pub pins: parking_lot::Mutex<Vec<crate::lambda::store::Pin>>,
}

impl Ctx<'_> {
    /// The functions and layers of the request's region.
    fn store(&self) -> Arc<Store> {
        self.lambda.stores.get(&self.scope.region)
    }

    fn q(&self, key: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

fn ok_json(status: StatusCode, v: Value) -> R {
    Ok(http_util::json(status, &v))
}

/// Entry point from the server: routes one Lambda API request.
pub async fn handle(lambda: &Arc<Lambda>, req: Request<Incoming>, scope: Scope, request_id: &str) -> Response<Body> {
    let mut resp = match route(lambda, req, scope).await {
        Ok(r) => r,
        Err(e) => {
            if e.status.is_server_error() {
                tracing::warn!(error = %e, "lambda api error");
            } else {
                tracing::debug!(error = %e, "lambda api error");
            }
            e.to_response(request_id)
        }
    };
    // Invoke answers with the invocation's own id.
    if !resp.headers().contains_key("x-amzn-requestid")
        && let Ok(v) = HeaderValue::from_str(request_id)
    {
        resp.headers_mut().insert("x-amzn-requestid", v);
    }
    resp
}

async fn route(lambda: &Arc<Lambda>, req: Request<Incoming>, scope: Scope) -> R {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = http_util::query_pairs(req.uri().query());
    let segs: Vec<String> = path.split('/').filter(|s| !s.is_empty()).map(http_util::decode_segment).collect();
    let ctx = Ctx { lambda, scope, query, pins: Default::default() };
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let m = &method;
    // The model layer first (ValidationException), then the handlers' semantic checks.
    let routed = validate::find(method.as_str(), &segs, &ctx.query);
    let headers = req.headers().clone();
    let model_check = |body: Option<&Map<String, Value>>| match &routed {
        Some(r) => {
            validate::check(r.op, &validate::Request { params: &r.params, query: &ctx.query, headers: &headers, body })
        }
        None => Ok(()),
    };
    if !routed.as_ref().is_some_and(|r| r.op.has_json_body()) {
        model_check(None)?;
    }
    // A function ARN of another region or account is refused for every operation (one place).
    if let [_, "functions", f, ..] = s.as_slice() {
        check_function_scope(&ctx.scope, f)?;
    }
    match (s.as_slice(), m) {
        ([_, "functions", f, "invocations"], &Method::POST) => {
            let f = f.to_string();
            return invoke_op(&ctx, &f, req, false).await;
        }
        ([_, "functions", f, "response-streaming-invocations"], &Method::POST) => {
            let f = f.to_string();
            return invoke_op(&ctx, &f, req, true).await;
        }
        ([_, "functions", f, "invoke-async"], &Method::POST) => {
            let f = f.to_string();
            let body = read(req, MAX_EVENT_PAYLOAD, true).await?;
            return invoke_async_legacy(&ctx, &f, body).await;
        }
        _ => {}
    }
    let body = read(req, MAX_REQUEST, false).await?;
    if routed.as_ref().is_some_and(|r| r.op.has_json_body()) {
        model_check(Some(&validate::parse_body(&body)?))?;
    }
    match (s.as_slice(), m) {
        ([_, "functions"], &Method::GET) => list_functions(&ctx),
        ([_, "functions"], &Method::POST) => create_function(&ctx, &body),
        ([_, "functions", f], &Method::GET) => get_function(&ctx, f),
        ([_, "functions", f], &Method::DELETE) => delete_function(&ctx, f),
        ([_, "functions", f, "configuration"], &Method::GET) => get_configuration(&ctx, f),
        ([_, "functions", f, "configuration"], &Method::PUT) => update_configuration(&ctx, f, &body),
        ([_, "functions", f, "code"], &Method::PUT) => update_code(&ctx, f, &body),
        ([_, "functions", f, "versions"], &Method::POST) => publish_version(&ctx, f, &body),
        ([_, "functions", f, "versions"], &Method::GET) => list_versions(&ctx, f),
        ([_, "functions", f, "aliases"], &Method::POST) => create_alias(&ctx, f, &body),
        ([_, "functions", f, "aliases"], &Method::GET) => list_aliases(&ctx, f),
        ([_, "functions", f, "aliases", a], &Method::GET) => get_alias(&ctx, f, a),
        ([_, "functions", f, "aliases", a], &Method::PUT) => update_alias(&ctx, f, a, &body),
        ([_, "functions", f, "aliases", a], &Method::DELETE) => delete_alias(&ctx, f, a),
        ([_, "functions", f, "concurrency"], &Method::PUT) => put_concurrency(&ctx, f, &body),
        ([_, "functions", f, "concurrency"], &Method::GET) => get_concurrency(&ctx, f),
        ([_, "functions", f, "concurrency"], &Method::DELETE) => delete_concurrency(&ctx, f),
        ([_, "functions", f, "url"], &Method::POST) => create_url_config(&ctx, f, &body),
        ([_, "functions", f, "url"], &Method::GET) => get_url_config(&ctx, f),
        ([_, "functions", f, "url"], &Method::PUT) => update_url_config(&ctx, f, &body),
        ([_, "functions", f, "url"], &Method::DELETE) => delete_url_config(&ctx, f),
        ([_, "functions", f, "urls"], &Method::GET) => list_url_configs(&ctx, f),
        ([_, "functions", f, "event-invoke-config"], &Method::PUT) => put_event_invoke(&ctx, f, &body, true),
        ([_, "functions", f, "event-invoke-config"], &Method::POST) => put_event_invoke(&ctx, f, &body, false),
        ([_, "functions", f, "event-invoke-config"], &Method::GET) => get_event_invoke(&ctx, f),
        ([_, "functions", f, "event-invoke-config"], &Method::DELETE) => delete_event_invoke(&ctx, f),
        ([_, "functions", f, "event-invoke-config", "list"], &Method::GET) => list_event_invoke(&ctx, f),
        ([_, "functions", f, "code-signing-config"], &Method::GET) => get_function_csc(&ctx, f),
        ([_, "functions", f, "code-signing-config"], &Method::PUT) => put_function_csc(&ctx, f, &body),
        ([_, "functions", f, "code-signing-config"], &Method::DELETE) => delete_function_csc(&ctx, f),
        ([_, "code-signing-configs"], &Method::POST) => create_csc(&ctx, &body),
        ([_, "code-signing-configs"], &Method::GET) => list_cscs(&ctx),
        ([_, "code-signing-configs", a], &Method::GET) => get_csc(&ctx, a),
        ([_, "code-signing-configs", a], &Method::PUT) => update_csc(&ctx, a, &body),
        ([_, "code-signing-configs", a], &Method::DELETE) => delete_csc(&ctx, a),
        ([_, "code-signing-configs", a, "functions"], &Method::GET) => list_functions_by_csc(&ctx, a),
        ([_, "functions", f, "runtime-management-config"], &Method::GET) => runtime_management_config(&ctx, f),
        ([_, "functions", f, "recursion-config"], &Method::GET) => get_recursion(&ctx, f),
        ([_, "functions", f, "recursion-config"], &Method::PUT) => put_recursion(&ctx, f, &body),
        ([_, "functions", f, "provisioned-concurrency"], &Method::PUT) => put_provisioned(&ctx, f, &body),
        ([_, "functions", f, "provisioned-concurrency"], &Method::GET) if ctx.q("List") == Some("ALL") => {
            list_provisioned(&ctx, f)
        }
        ([_, "functions", f, "provisioned-concurrency"], &Method::GET) => get_provisioned(&ctx, f),
        ([_, "functions", f, "provisioned-concurrency"], &Method::DELETE) => delete_provisioned(&ctx, f),
        ([_, "functions", f, "policy"], &Method::POST) => add_permission(&ctx, f, &body),
        ([_, "functions", f, "policy"], &Method::GET) => get_policy(&ctx, f),
        ([_, "functions", f, "policy", sid], &Method::DELETE) => remove_permission(&ctx, f, sid),
        ([_, "layers"], &Method::GET) => {
            if ctx.q("find") == Some("LayerVersion") {
                get_layer_version_by_arn(&ctx)
            } else {
                list_layers(&ctx)
            }
        }
        ([_, "layers", l, "versions"], &Method::POST) => publish_layer_version(&ctx, l, &body),
        ([_, "layers", l, "versions"], &Method::GET) => list_layer_versions(&ctx, l),
        ([_, "layers", l, "versions", v], &Method::GET) => get_layer_version(&ctx, l, v),
        ([_, "layers", l, "versions", v], &Method::DELETE) => delete_layer_version(&ctx, l, v),
        ([_, "layers", l, "versions", v, "policy"], &Method::POST) => add_layer_permission(&ctx, l, v, &body),
        ([_, "layers", l, "versions", v, "policy"], &Method::GET) => get_layer_policy(&ctx, l, v),
        ([_, "layers", l, "versions", v, "policy", sid], &Method::DELETE) => {
            remove_layer_permission(&ctx, l, v, sid)
        }
        ([_, "tags", a], &Method::GET) => list_tags(&ctx, a),
        ([_, "tags", a], &Method::POST) => tag_resource(&ctx, a, &body),
        ([_, "tags", a], &Method::DELETE) => untag_resource(&ctx, a),
        ([_, "account-settings"], &Method::GET) => account_settings(&ctx),
        _ => Err(match &routed {
            Some(r) => validate::not_implemented(r.op),
            None => AwsError::unknown_operation(&method, &path),
        }),
    }
}

async fn read(req: Request<Incoming>, limit: usize, invoke: bool) -> Result<Bytes, AwsError> {
    http_util::read_body(req.into_body(), limit).await.map_err(|e| match e {
        BodyError::TooLarge if invoke => {
            AwsError::request_too_large(format!("Request must be smaller than {limit} bytes for the Invoke operation"))
        }
        BodyError::TooLarge => AwsError::entity_too_large(format!("Request must be smaller than {limit} bytes")),
        BodyError::Io(e) => AwsError::invalid_content(format!("Could not read request body: {e}")),
    })
}
