//! Lambda control plane routes (REST-JSON, PROTOCOL.md §1): one route table, one handler
//! per operation (one module per resource under `api/`), every error through [`AwsError`].

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
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
mod esm;
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
use esm::*;
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
use super::hot_reload;
use super::invoke::{self, CallContext, MAX_EVENT_PAYLOAD, MAX_SYNC_PAYLOAD};
use super::model::{
    Alias, EventInvokeConfig, FunctionConfig, FunctionRecord, LastUpdateStatus, LayerRef, LayerVersion, PackageType,
    RUNTIMES, Scope, State, TracingMode, UrlConfig,
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
    // On the heap: the router's future is a few KB (its largest arm, Invoke), and the HTTP
    // server moves the future of every request into place, a copy per request otherwise.
    let mut resp = match Box::pin(route(lambda, req, scope)).await {
        Ok(r) => r,
        Err(e) => {
            if e.status.is_server_error() {
                tracing::warn!(error = %e, "lambda api error");
            } else {
                tracing::debug!(error = %e, "lambda api error");
            }
            e.to_response(request_id).map(Body::from)
        }
    };
    // Invoke answers with the invocation's own id.
    let id = &crate::http_util::names::X_AMZN_REQUESTID;
    if !resp.headers().contains_key(id)
        && let Ok(v) = HeaderValue::from_str(request_id)
    {
        resp.headers_mut().insert(id, v);
    }
    resp
}

async fn route(lambda: &Arc<Lambda>, req: Request<Incoming>, scope: Scope) -> R {
    let query = http_util::query_pairs(req.uri().query());
    let ctx = Ctx { lambda, scope, query, pins: Default::default() };
    // The generated table (the model's operations) is the one route table.
    let segs: Vec<_> = req.uri().path().split('/').filter(|s| !s.is_empty()).map(http_util::decode_segment).collect();
    let Some(routed) = validate::find(req.method().as_str(), &segs, &ctx.query) else {
        return Err(AwsError::unknown_operation(req.method(), req.uri().path()));
    };
    drop(segs);
    let op = routed.op;
    let param = |name: &str| routed.params.iter().find(|(k, _)| *k == name).map_or("", |(_, v)| v.as_str());
    let f = param("FunctionName");
    // The model layer first (ValidationException), then the handlers' semantic checks.
    let model_check = |headers: &http::HeaderMap, body: Option<&Map<String, Value>>| {
        validate::check(op, &validate::Request { params: &routed.params, query: &ctx.query, headers, body })
    };
    // Only an operation with body members needs the headers after the body is read (the
    // request is consumed by then); the others, Invoke among them, are checked in place.
    let headers = if op.has_json_body() {
        Some(req.headers().clone())
    } else {
        model_check(req.headers(), None)?;
        None
    };
    // A function ARN of another region or account is refused for every operation (one place).
    if routed.params.iter().any(|(k, _)| *k == "FunctionName") {
        check_function_scope(&ctx.scope, f)?;
    }
    // Operations whose body is not a JSON document of members.
    match op.name {
        "Invoke" => return invoke_op(&ctx, f, req, false).await,
        "InvokeWithResponseStream" => return invoke_op(&ctx, f, req, true).await,
        "InvokeAsync" => {
            let body = read(req, MAX_EVENT_PAYLOAD, true).await?;
            return invoke_async_legacy(&ctx, f, body).await;
        }
        _ => {}
    }
    let body = read(req, MAX_REQUEST, false).await?;
    // The body is parsed once: the model layer checks the document, then it becomes the
    // operation's typed input (`model_gen::input`) without another parse.
    let doc = match &headers {
        Some(headers) => {
            let doc = validate::parse_body(&body)?;
            model_check(headers, Some(&doc))?;
            doc
        }
        None => Map::new(),
    };
    // Reads answer from memory in place; every other operation writes a record (a temp
    // file, an fsync, a rename), stores or frees code, or reads S3: on the blocking pool, so
    // that no async worker waits on the disk.
    if op.name.starts_with("Get") || op.name.starts_with("List") {
        dispatch(&ctx, op, &routed.params, doc, body)
    } else {
        let params = routed.params;
        blocking(&ctx, move |ctx| dispatch(ctx, op, &params, doc, body)).await
    }
}

/// The operations whose body is a JSON document of members (`doc`), by name.
fn dispatch(
    ctx: &Ctx,
    op: &'static validate::Operation,
    params: &[(&'static str, String)],
    doc: Map<String, Value>,
    body: Bytes,
) -> R {
    let param = |name: &str| params.iter().find(|(k, _)| *k == name).map_or("", |(_, v)| v.as_str());
    let (f, l, v) = (param("FunctionName"), param("LayerName"), param("VersionNumber"));
    match op.name {
        "ListFunctions" => list_functions(ctx),
        "CreateFunction" => create_function(ctx, typed(doc)?, &body),
        "GetFunction" => get_function(ctx, f),
        "DeleteFunction" => delete_function(ctx, f),
        "GetFunctionConfiguration" => get_configuration(ctx, f),
        "UpdateFunctionConfiguration" => update_configuration(ctx, f, typed(doc)?, &body),
        "UpdateFunctionCode" => update_code(ctx, f, typed(doc)?),
        "PublishVersion" => publish_version(ctx, f, typed(doc)?),
        "ListVersionsByFunction" => list_versions(ctx, f),
        "CreateAlias" => create_alias(ctx, f, typed(doc)?),
        "ListAliases" => list_aliases(ctx, f),
        "GetAlias" => get_alias(ctx, f, param("Name")),
        "UpdateAlias" => update_alias(ctx, f, param("Name"), typed(doc)?),
        "DeleteAlias" => delete_alias(ctx, f, param("Name")),
        "PutFunctionConcurrency" => put_concurrency(ctx, f, typed(doc)?),
        "GetFunctionConcurrency" => get_concurrency(ctx, f),
        "DeleteFunctionConcurrency" => delete_concurrency(ctx, f),
        "CreateFunctionUrlConfig" => create_url_config(ctx, f, typed(doc)?),
        "GetFunctionUrlConfig" => get_url_config(ctx, f),
        "UpdateFunctionUrlConfig" => update_url_config(ctx, f, typed(doc)?),
        "DeleteFunctionUrlConfig" => delete_url_config(ctx, f),
        "ListFunctionUrlConfigs" => list_url_configs(ctx, f),
        "PutFunctionEventInvokeConfig" => {
            put_event_invoke(ctx, f, typed::<input::PutFunctionEventInvokeConfigRequest>(doc)?.into(), true)
        }
        "UpdateFunctionEventInvokeConfig" => {
            put_event_invoke(ctx, f, typed::<input::UpdateFunctionEventInvokeConfigRequest>(doc)?.into(), false)
        }
        "GetFunctionEventInvokeConfig" => get_event_invoke(ctx, f),
        "DeleteFunctionEventInvokeConfig" => delete_event_invoke(ctx, f),
        "ListFunctionEventInvokeConfigs" => list_event_invoke(ctx, f),
        "GetFunctionCodeSigningConfig" => get_function_csc(ctx, f),
        "PutFunctionCodeSigningConfig" => put_function_csc(ctx, f, typed(doc)?),
        "DeleteFunctionCodeSigningConfig" => delete_function_csc(ctx, f),
        "CreateCodeSigningConfig" => create_csc(ctx, typed(doc)?),
        "ListCodeSigningConfigs" => list_cscs(ctx),
        "GetCodeSigningConfig" => get_csc(ctx, param("CodeSigningConfigArn")),
        "UpdateCodeSigningConfig" => update_csc(ctx, param("CodeSigningConfigArn"), typed(doc)?),
        "DeleteCodeSigningConfig" => delete_csc(ctx, param("CodeSigningConfigArn")),
        "ListFunctionsByCodeSigningConfig" => list_functions_by_csc(ctx, param("CodeSigningConfigArn")),
        "GetRuntimeManagementConfig" => runtime_management_config(ctx, f),
        "GetFunctionRecursionConfig" => get_recursion(ctx, f),
        "PutFunctionRecursionConfig" => put_recursion(ctx, f, typed(doc)?),
        "PutProvisionedConcurrencyConfig" => put_provisioned(ctx, f, typed(doc)?),
        "ListProvisionedConcurrencyConfigs" => list_provisioned(ctx, f),
        "GetProvisionedConcurrencyConfig" => get_provisioned(ctx, f),
        "DeleteProvisionedConcurrencyConfig" => delete_provisioned(ctx, f),
        "AddPermission" => add_permission(ctx, f, typed(doc)?),
        "GetPolicy" => get_policy(ctx, f),
        "RemovePermission" => remove_permission(ctx, f, param("StatementId")),
        "GetLayerVersionByArn" => get_layer_version_by_arn(ctx),
        "ListLayers" => list_layers(ctx),
        "PublishLayerVersion" => publish_layer_version(ctx, l, typed(doc)?),
        "ListLayerVersions" => list_layer_versions(ctx, l),
        "GetLayerVersion" => get_layer_version(ctx, l, v),
        "DeleteLayerVersion" => delete_layer_version(ctx, l, v),
        "AddLayerVersionPermission" => add_layer_permission(ctx, l, v, typed(doc)?),
        "GetLayerVersionPolicy" => get_layer_policy(ctx, l, v),
        "RemoveLayerVersionPermission" => remove_layer_permission(ctx, l, v, param("StatementId")),
        "ListTags" => list_tags(ctx, param("Resource")),
        "TagResource" => tag_resource(ctx, param("Resource"), typed(doc)?),
        "UntagResource" => untag_resource(ctx, param("Resource")),
        "GetAccountSettings" => account_settings(ctx),
        "CreateEventSourceMapping" => create_esm(ctx, typed(doc)?),
        "GetEventSourceMapping" => get_esm(ctx, param("UUID")),
        "UpdateEventSourceMapping" => update_esm(ctx, param("UUID"), typed(doc)?),
        "DeleteEventSourceMapping" => delete_esm(ctx, param("UUID")),
        "ListEventSourceMappings" => list_esms(ctx),
        _ => Err(validate::not_implemented(op)),
    }
}

/// Runs a handler that blocks (S3 reads, code store writes and fsyncs, unzips) on the
/// blocking pool, with a context of its own: its pins live until the handler has returned.
async fn blocking(ctx: &Ctx<'_>, f: impl for<'a> FnOnce(&Ctx<'a>) -> R + Send + 'static) -> R {
    let lambda = ctx.lambda.clone();
    let (scope, query) = (ctx.scope.clone(), ctx.query.clone());
    tokio::task::spawn_blocking(move || f(&Ctx { lambda: &lambda, scope, query, pins: Default::default() }))
        .await
        .map_err(|e| AwsError::service(format!("the request failed: {e}")))?
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
