//! Lambda control plane routes (REST-JSON, PROTOCOL.md §1): one route table, one handler
//! per operation, every error through [`AwsError`].

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{Map, Value, json};

mod async_config;
mod permissions;
mod provisioned;
mod url_configs;

use async_config::*;
use permissions::*;
pub use provisioned::restore_provisioned;
use provisioned::*;
use url_configs::*;

use super::Lambda;
use super::invoke::{self, CallContext, MAX_EVENT_PAYLOAD, MAX_SYNC_PAYLOAD};
use super::model::{
    Alias, EventInvokeConfig, FunctionConfig, FunctionRecord, LayerRef, LayerVersion, RUNTIMES, Scope, UrlConfig,
};
use super::store::Store;
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
    let ctx = Ctx { lambda, scope, query };
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let m = &method;
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
            return invoke_async_legacy(&ctx, &f, body);
        }
        _ => {}
    }
    let body = read(req, MAX_REQUEST, false).await?;
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
        ([_, "functions", f, "code-signing-config"], &Method::GET) => code_signing_config(&ctx, f),
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
        ([_, "tags", a], &Method::GET) => list_tags(&ctx, a),
        ([_, "tags", a], &Method::POST) => tag_resource(&ctx, a, &body),
        ([_, "tags", a], &Method::DELETE) => untag_resource(&ctx, a),
        ([_, "account-settings"], &Method::GET) => account_settings(&ctx),
        _ => Err(AwsError::unknown_operation(&method, &path)),
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

// ---------- JSON input helpers ----------

fn parse_body(body: &[u8]) -> Result<Map<String, Value>, AwsError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(AwsError::invalid_content("Could not parse request body into json: expected an object")),
        Err(e) => Err(AwsError::invalid_content(format!("Could not parse request body into json: {e}"))),
    }
}

fn type_err(key: &str, want: &str) -> AwsError {
    AwsError::invalid_content(format!(
        "Could not parse request body into json: Could not parse payload into json: field '{key}' must be {want}"
    ))
}

fn opt_str(m: &Map<String, Value>, key: &str) -> Result<Option<String>, AwsError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(type_err(key, "a string")),
    }
}

fn req_str(m: &Map<String, Value>, key: &str) -> Result<String, AwsError> {
    opt_str(m, key)?.ok_or_else(|| {
        AwsError::invalid_param(format!(
            "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
            lower_first(key)
        ))
    })
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_lowercase().collect::<String>() + c.as_str()).unwrap_or_default()
}

fn opt_u64(m: &Map<String, Value>, key: &str) -> Result<Option<u64>, AwsError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(|| type_err(key, "a non-negative integer")),
        Some(_) => Err(type_err(key, "an integer")),
    }
}

fn opt_bool(m: &Map<String, Value>, key: &str) -> Result<bool, AwsError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(type_err(key, "a boolean")),
    }
}

fn opt_obj<'a>(m: &'a Map<String, Value>, key: &str) -> Result<Option<&'a Map<String, Value>>, AwsError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(_) => Err(type_err(key, "an object")),
    }
}

fn str_list(m: &Map<String, Value>, key: &str) -> Result<Option<Vec<String>>, AwsError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(|| type_err(key, "a list of strings")))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(type_err(key, "a list of strings")),
    }
}

fn str_map(m: &Map<String, Value>, key: &str) -> Result<Option<BTreeMap<String, String>>, AwsError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => o
            .iter()
            .map(|(k, v)| {
                v.as_str().map(|s| (k.clone(), s.to_string())).ok_or_else(|| type_err(key, "a map of strings"))
            })
            .collect::<Result<BTreeMap<_, _>, _>>()
            .map(Some),
        Some(_) => Err(type_err(key, "a map of strings")),
    }
}

// ---------- names and qualifiers ----------

/// The function name and qualifier from a path label plus `?Qualifier=`.
fn function_target(ctx: &Ctx, raw: &str) -> Result<(String, Option<String>), AwsError> {
    let FunctionRef { name, qualifier, .. } =
        arn::parse_function_ref(raw).map_err(|e| AwsError::invalid_param(e.to_string()))?;
    let q = ctx.q("Qualifier").filter(|s| !s.is_empty()).map(str::to_string);
    match (qualifier, q) {
        (Some(a), Some(b)) if a != b => Err(AwsError::invalid_param(format!(
            "The derived qualifier from the function name does not match the specified qualifier: {a} vs {b}"
        ))),
        (a, b) => Ok((name, a.or(b))),
    }
}

/// An unqualified function name (operations that take the unqualified shape).
fn unqualified(raw: &str) -> Result<String, AwsError> {
    let r = arn::parse_function_ref(raw).map_err(|e| AwsError::invalid_param(e.to_string()))?;
    if r.qualifier.is_some() {
        return Err(AwsError::invalid_param(format!(
            "1 validation error detected: Value '{raw}' at 'functionName' failed to satisfy constraint: unqualified function name expected"
        )));
    }
    Ok(r.name)
}

/// A qualifier that names a published version or an alias of `rec`; `None` for none or
/// `$LATEST`; not found otherwise.
fn existing_qualifier(
    ctx: &Ctx,
    rec: &FunctionRecord,
    name: &str,
    q: Option<&str>,
) -> Result<Option<String>, AwsError> {
    match q {
        None | Some("$LATEST") => Ok(None),
        Some(q) => {
            let exists = q.parse::<u64>().is_ok_and(|v| rec.versions.contains_key(&v)) || rec.aliases.contains_key(q);
            if exists { Ok(Some(q.to_string())) } else { Err(not_found(ctx, name, Some(q))) }
        }
    }
}

fn not_found(ctx: &Ctx, name: &str, q: Option<&str>) -> AwsError {
    AwsError::not_found(format!(
        "Function not found: {}",
        arn::function_arn(&ctx.scope.region, &ctx.scope.account, name, q)
    ))
}

/// [`Store::update_function`](super::store::Store::update_function) with AWS's not-found error.
fn update_record<R>(
    ctx: &Ctx,
    name: &str,
    f: impl FnOnce(&mut FunctionRecord) -> Result<R, AwsError>,
) -> Result<(FunctionRecord, R), AwsError> {
    ctx.store().update_function(name, f)?.ok_or_else(|| not_found(ctx, name, None))
}

fn get_record(ctx: &Ctx, name: &str) -> Result<FunctionRecord, AwsError> {
    ctx.store().get_function(name).ok_or_else(|| not_found(ctx, name, None))
}

/// The configuration a qualifier names.
fn config_for(ctx: &Ctx, rec: &FunctionRecord, q: Option<&str>) -> Result<Arc<FunctionConfig>, AwsError> {
    let name = &rec.latest.name;
    match q {
        None | Some("$LATEST") => Ok(rec.latest.clone()),
        Some(v) if v.chars().all(|c| c.is_ascii_digit()) => {
            v.parse::<u64>().ok().and_then(|n| rec.versions.get(&n).cloned()).ok_or_else(|| not_found(ctx, name, q))
        }
        Some(alias) => {
            let a = rec.aliases.get(alias).ok_or_else(|| not_found(ctx, name, q))?;
            config_for(ctx, rec, Some(&a.function_version.clone()))
        }
    }
}

fn check_revision(m: &Map<String, Value>, current: &str) -> Result<(), AwsError> {
    if let Some(r) = opt_str(m, "RevisionId")?
        && r != current
    {
        return Err(AwsError::precondition(
            "The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id",
        ));
    }
    Ok(())
}

fn new_revision() -> String {
    uuid::Uuid::new_v4().to_string()
}

// ---------- code ----------

/// Stored code: (sha hex, sha b64, size).
struct StoredCode {
    sha_hex: String,
    sha_b64: String,
    size: u64,
}

fn b64_decode(s: &str, what: &str) -> Result<Vec<u8>, AwsError> {
    base64::engine::general_purpose::STANDARD.decode(s.trim()).map_err(|_| {
        AwsError::invalid_content(format!("Could not parse request body into json: {what} is not valid base64"))
    })
}

/// Reads code from `ZipFile` (base64) or `S3Bucket`/`S3Key`/`S3ObjectVersion` and stores it.
fn store_code(ctx: &Ctx, m: &Map<String, Value>) -> Result<Option<StoredCode>, AwsError> {
    let bytes = if let Some(z) = opt_str(m, "ZipFile")? {
        b64_decode(&z, "ZipFile")?
    } else if let Some(bucket) = opt_str(m, "S3Bucket")? {
        let key = req_str(m, "S3Key")?;
        let version = opt_str(m, "S3ObjectVersion")?;
        let s3 = ctx.lambda.s3.clone();
        let got = tokio::task::block_in_place(|| s3.get_object_bytes(&bucket, &key, version.as_deref()));
        match got {
            Ok(b) => b.to_vec(),
            Err(e) => {
                let (code, msg) = match &e {
                    crate::s3::S3Error::NoSuchBucket(_) => ("NoSuchBucket", "The specified bucket does not exist"),
                    crate::s3::S3Error::NoSuchKey(_) => ("NoSuchKey", "The specified key does not exist."),
                    crate::s3::S3Error::NoSuchVersion(_) => ("NoSuchVersion", "The specified version does not exist."),
                    _ => ("InternalError", "We encountered an internal error. Please try again."),
                };
                return Err(AwsError::invalid_param(format!(
                    "Error occurred while GetObject. S3 Error Code: {code}. S3 Error Message: {msg}"
                )));
            }
        }
    } else {
        return Ok(None);
    };
    let d = tokio::task::block_in_place(|| ctx.store().put_zip(&bytes))?;
    Ok(Some(StoredCode { sha_hex: d.sha256_hex, sha_b64: d.sha256_b64, size: d.size }))
}

/// Reads a local layer zip named by path. Only a regular file no larger than a package may
/// be read: a path such as `/dev/zero` or a FIFO must not hang or exhaust the server.
fn read_local_layer(path: &str) -> Result<Vec<u8>, AwsError> {
    use std::io::Read;
    let cannot = |e: &dyn std::fmt::Display| AwsError::invalid_param(format!("Cannot read layer file {path}: {e}"));
    let max = crate::lambda::code::Limits::default().max_zip_bytes;
    let f = std::fs::File::open(path).map_err(|e| cannot(&e))?;
    let meta = f.metadata().map_err(|e| cannot(&e))?;
    if !meta.is_file() {
        return Err(cannot(&"not a regular file"));
    }
    if meta.len() > max as u64 {
        return Err(cannot(&format!("larger than {max} bytes")));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    f.take(max as u64 + 1).read_to_end(&mut bytes).map_err(|e| cannot(&e))?;
    if bytes.len() > max {
        return Err(cannot(&format!("larger than {max} bytes")));
    }
    Ok(bytes)
}

/// Resolves the `Layers` list: layer version ARNs, or local zip paths (the seed's form).
fn resolve_layers(ctx: &Ctx, list: &[String]) -> Result<Vec<LayerRef>, AwsError> {
    if list.len() > 5 {
        return Err(AwsError::invalid_param("Cannot reference more than 5 layers."));
    }
    list.iter()
        .map(|l| {
            if let Some(r) = arn::parse_layer_version_arn(l) {
                let rec = ctx.store().get_layer(&r.name);
                let v = rec.and_then(|rec| rec.versions.get(&r.version).cloned()).ok_or_else(|| {
                    AwsError::invalid_param(format!(
                        "Layer version {l} does not exist."
                    ))
                })?;
                Ok(LayerRef { arn: l.clone(), code_size: v.code_size, sha_hex: v.sha_hex })
            } else if l.starts_with('/') || l.ends_with(".zip") || std::path::Path::new(l).is_file() {
                let d = tokio::task::block_in_place(|| ctx.store().put_zip(&read_local_layer(l)?))?;
                Ok(LayerRef { arn: l.clone(), code_size: d.size, sha_hex: d.sha256_hex })
            } else {
                Err(AwsError::invalid_param(format!(
                    "1 validation error detected: Value '{l}' at 'layers' failed to satisfy constraint: Member must be a layer version ARN or a local .zip path"
                )))
            }
        })
        .collect()
}

// ---------- configuration fields shared by Create and UpdateConfiguration ----------

fn validate_runtime(r: &str) -> Result<(), AwsError> {
    if RUNTIMES.contains(&r) {
        Ok(())
    } else {
        Err(AwsError::invalid_param(format!(
            "Value {r} at 'runtime' failed to satisfy constraint: Member must satisfy enum value set: [{}] or be a valid ARN",
            RUNTIMES.join(", ")
        )))
    }
}

fn validate_handler(h: &str) -> Result<(), AwsError> {
    if h.is_empty() || h.len() > 128 || h.chars().any(char::is_whitespace) {
        return Err(AwsError::invalid_param(format!(
            "1 validation error detected: Value '{h}' at 'handler' failed to satisfy constraint: Member must satisfy regular expression pattern: [^\\s]+"
        )));
    }
    Ok(())
}

/// The `Layers` member resolved to stored layers, when the request names any.
/// This reads files and the store, so callers do it before taking the store's write lock.
fn requested_layers(ctx: &Ctx, m: &Map<String, Value>) -> Result<Option<Vec<LayerRef>>, AwsError> {
    str_list(m, "Layers")?.map(|l| resolve_layers(ctx, &l)).transpose()
}

/// Applies the configuration members present in `m` to `c`; `layers` comes from
/// [`requested_layers`] on the same request.
fn apply_config(c: &mut FunctionConfig, m: &Map<String, Value>, layers: Option<Vec<LayerRef>>) -> Result<(), AwsError> {
    if let Some(r) = opt_str(m, "Role")? {
        arn::validate_role(&r).map_err(|e| AwsError::invalid_param(e.to_string()))?;
        c.role = r;
    }
    if let Some(r) = opt_str(m, "Runtime")? {
        validate_runtime(&r)?;
        c.runtime = Some(r);
    }
    if let Some(h) = opt_str(m, "Handler")? {
        validate_handler(&h)?;
        c.handler = Some(h);
    }
    if let Some(d) = opt_str(m, "Description")? {
        if d.len() > 256 {
            return Err(AwsError::invalid_param("Description must be at most 256 characters"));
        }
        c.description = d;
    }
    if let Some(t) = opt_u64(m, "Timeout")? {
        if !(1..=900).contains(&t) {
            return Err(AwsError::invalid_param(format!(
                "1 validation error detected: Value '{t}' at 'timeout' failed to satisfy constraint: Member must have value between 1 and 900"
            )));
        }
        c.timeout = t as u32;
    }
    if let Some(ms) = opt_u64(m, "MemorySize")? {
        if !(128..=10240).contains(&ms) {
            return Err(AwsError::invalid_param(format!(
                "1 validation error detected: Value '{ms}' at 'memorySize' failed to satisfy constraint: Member must have value between 128 and 10240"
            )));
        }
        c.memory_size = ms as u32;
    }
    if let Some(env) = opt_obj(m, "Environment")? {
        let vars = str_map(env, "Variables")?.unwrap_or_default();
        let size: usize = vars.iter().map(|(k, v)| k.len() + v.len()).sum();
        if size > 4096 {
            return Err(AwsError::invalid_param(
                "Lambda was unable to configure your environment variables because the environment variables you have provided exceeded the 4KB limit.",
            ));
        }
        // The model's key pattern, `[a-zA-Z]([a-zA-Z0-9_])+`: a letter, then at least one more.
        let well_formed = |k: &str| {
            k.len() >= 2
                && k.starts_with(|c: char| c.is_ascii_alphabetic())
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        };
        if vars.keys().any(|k| !well_formed(k)) {
            return Err(AwsError::invalid_param(
                "1 validation error detected: Value at 'environment.variables' failed to satisfy constraint: Map keys must satisfy constraint: [Member must satisfy regular expression pattern: [a-zA-Z]([a-zA-Z0-9_])+]",
            ));
        }
        let reserved: Vec<&str> = vars.keys().map(String::as_str).filter(|k| RESERVED_ENV_KEYS.contains(k)).collect();
        if !reserved.is_empty() {
            return Err(AwsError::invalid_param(format!(
                "Lambda was unable to configure your environment variables because the environment variables you have provided contains reserved keys that are currently not supported for modification. Reserved keys used in this request: {}",
                reserved.join(", ")
            )));
        }
        c.environment = vars;
    }
    if let Some(layers) = layers {
        c.layers = layers;
    }
    if let Some(a) = str_list(m, "Architectures")? {
        if a.len() != 1 || !(a[0] == "x86_64" || a[0] == "arm64") {
            return Err(AwsError::invalid_param("Architectures must be one of [x86_64] or [arm64]"));
        }
        c.architectures = a;
    }
    if let Some(e) = opt_obj(m, "EphemeralStorage")?
        && let Some(s) = opt_u64(e, "Size")?
    {
        if !(512..=10240).contains(&s) {
            return Err(AwsError::invalid_param("EphemeralStorage.Size must be between 512 and 10240"));
        }
        c.ephemeral_storage = s as u32;
    }
    if let Some(t) = opt_obj(m, "TracingConfig")?
        && let Some(mode) = opt_str(t, "Mode")?
    {
        c.tracing_mode = mode;
    }
    if let Some(ic) = m.get("ImageConfig").filter(|v| !v.is_null()) {
        c.image_config = Some(ic.clone());
    }
    if let Some(lc) = m.get("LoggingConfig").filter(|v| !v.is_null()) {
        c.logging_config = Some(lc.clone());
    }
    if let Some(d) = m.get("DeadLetterConfig").filter(|v| !v.is_null()) {
        c.dead_letter_config = Some(d.clone());
    }
    if let Some(k) = opt_str(m, "KMSKeyArn")? {
        c.kms_key_arn = Some(k);
    }
    if let Some(v) = m.get("VpcConfig").filter(|v| !v.is_null()) {
        c.vpc_config = Some(v.clone());
    }
    Ok(())
}

fn check_runnable(c: &FunctionConfig) -> Result<(), AwsError> {
    if c.package_type == "Zip" {
        if c.runtime.is_none() {
            return Err(AwsError::invalid_param("Runtime is required for a function with PackageType Zip"));
        }
        if c.handler.is_none() && !c.runtime.as_deref().unwrap_or("").starts_with("provided") {
            return Err(AwsError::invalid_param("Handler is required for a function with PackageType Zip"));
        }
    }
    Ok(())
}

// ---------- functions ----------

/// A CreateFunction request, decoded and checked without touching the store or the disk.
struct CreateInput<'a> {
    /// The configuration asked for; layers and code are resolved by [`create_function`].
    config: FunctionConfig,
    code: &'a Map<String, Value>,
    tags: BTreeMap<String, String>,
    publish: bool,
}

/// Decodes a CreateFunction body into the configuration it asks for, with no side effects
/// (layers and code are not resolved). The control-plane fuzz target feeds it arbitrary JSON.
pub fn decode_create_function(body: &[u8]) -> Result<FunctionConfig, AwsError> {
    let m = parse_body(body)?;
    decode_create(&m).map(|input| input.config)
}

fn decode_create(m: &Map<String, Value>) -> Result<CreateInput<'_>, AwsError> {
    let raw = req_str(m, "FunctionName")?;
    let name = unqualified(&raw)?;
    arn::validate_function_name(&name).map_err(|e| AwsError::invalid_param(e.to_string()))?;
    let role = req_str(m, "Role")?;
    let package_type = opt_str(m, "PackageType")?.unwrap_or_else(|| "Zip".into());
    if package_type != "Zip" && package_type != "Image" {
        return Err(AwsError::invalid_param(format!("Unsupported PackageType {package_type}")));
    }
    let code = opt_obj(m, "Code")?.ok_or_else(|| {
        AwsError::invalid_param(
            "1 validation error detected: Value null at 'code' failed to satisfy constraint: Member must not be null",
        )
    })?;
    let mut c = FunctionConfig {
        name: name.clone(),
        version: "$LATEST".into(),
        runtime: None,
        role,
        handler: None,
        description: String::new(),
        timeout: 3,
        memory_size: 128,
        last_modified: crate::aws::timestamp_now(),
        package_type: package_type.clone(),
        code_sha_hex: String::new(),
        code_sha256: String::new(),
        code_size: 0,
        image_uri: None,
        image_config: None,
        environment: BTreeMap::new(),
        layers: Vec::new(),
        architectures: vec!["x86_64".into()],
        ephemeral_storage: 512,
        tracing_mode: "PassThrough".into(),
        logging_config: None,
        dead_letter_config: None,
        kms_key_arn: None,
        vpc_config: None,
        revision_id: new_revision(),
        state: "Active".into(),
        state_reason: None,
        state_reason_code: None,
    };
    apply_config(&mut c, m, None)?;
    if package_type == "Image" {
        let uri = opt_str(code, "ImageUri")?
            .ok_or_else(|| AwsError::invalid_param("Code.ImageUri is required for PackageType Image"))?;
        c.code_sha256 = crate::lambda::code::digest(uri.as_bytes()).sha256_b64;
        c.image_uri = Some(uri);
        c.runtime = None;
        c.handler = None;
    } else {
        check_runnable(&c)?;
    }
    let tags = str_map(m, "Tags")?.unwrap_or_default();
    let publish = opt_bool(m, "Publish")?;
    Ok(CreateInput { config: c, code, tags, publish })
}

fn create_function(ctx: &Ctx, body: &[u8]) -> R {
    let m = parse_body(body)?;
    let CreateInput { config: mut c, code, tags, publish } = decode_create(&m)?;
    let name = c.name.clone();
    if ctx.store().latest(&name).is_some() {
        return Err(AwsError::conflict(format!("Function already exist: {name}")));
    }
    if let Some(layers) = requested_layers(ctx, &m)? {
        c.layers = layers;
    }
    if c.package_type == "Zip" {
        let stored = store_code(ctx, code)?.ok_or_else(|| {
            AwsError::invalid_param(
                "Please provide a source for function code: Code.ZipFile or Code.S3Bucket and Code.S3Key",
            )
        })?;
        c.code_sha_hex = stored.sha_hex;
        c.code_sha256 = stored.sha_b64;
        c.code_size = stored.size;
    }
    // Docker functions are Pending until their image is present (pulled now, not on the first invoke).
    let docker_image = match ctx.lambda.pool.executors.choose(&c, &tags).0 {
        crate::executor::ExecutorKind::Docker => Some(ctx.lambda.pool.executors.docker.image_for(&c)),
        crate::executor::ExecutorKind::Subprocess => None,
    };
    if docker_image.is_some() {
        c.state = "Pending".into();
        c.state_reason = Some("The function is being created.".into());
        c.state_reason_code = Some("Creating".into());
    }
    let latest = Arc::new(c);
    let mut rec = FunctionRecord {
        latest: latest.clone(),
        versions: BTreeMap::new(),
        aliases: BTreeMap::new(),
        next_version: 1,
        tags,
        reserved_concurrency: None,
        policies: BTreeMap::new(),
        urls: BTreeMap::new(),
        event_invoke: BTreeMap::new(),
        provisioned: BTreeMap::new(),
        recursive_loop: None,
    };
    let mut out = latest.to_json(&ctx.scope, false);
    if publish {
        let v = publish_into(&mut rec, None);
        out = v.to_json(&ctx.scope, true);
    }
    ctx.store().create_function(rec)?;
    tracing::info!(function = %name, "created function");
    if let Some(image) = docker_image {
        prepare_image(ctx.lambda.clone(), ctx.store(), name.clone(), image);
    }
    ok_json(StatusCode::CREATED, out)
}

/// Makes sure a Docker function's image is present (pulling it, with progress in the log),
/// then moves the function from Pending to Active, or to Failed with the reason.
fn prepare_image(lambda: Arc<Lambda>, store: Arc<Store>, name: String, image: String) {
    tokio::spawn(async move {
        let result = lambda.pool.executors.docker.ensure_image(&image).await;
        let outcome = store.update_function(&name, |rec| {
            if rec.latest.state != "Pending" {
                return Ok(());
            }
            let mut c = (*rec.latest).clone();
            match &result {
                Ok(()) => {
                    c.state = "Active".into();
                    c.state_reason = None;
                    c.state_reason_code = None;
                }
                Err(e) => {
                    c.state = "Failed".into();
                    c.state_reason = Some(format!("Image {image} could not be prepared: {e}"));
                    c.state_reason_code = Some("ImageAccessDenied".into());
                }
            }
            rec.latest = Arc::new(c);
            Ok(())
        });
        match (&result, outcome) {
            (Ok(()), Ok(_)) => tracing::info!(function = %name, image = %image, "image ready; function Active"),
            (Err(e), Ok(_)) => {
                tracing::warn!(function = %name, image = %image, error = %e, "image not available; function Failed")
            }
            (_, Err(e)) => {
                tracing::debug!(function = %name, error = %e, "function changed while its image was prepared")
            }
        }
    });
}

/// Publishes `$LATEST` as a new version unless nothing changed since the last one.
fn publish_into(rec: &mut FunctionRecord, description: Option<String>) -> Arc<FunctionConfig> {
    if let Some((_, last)) = rec.versions.iter().next_back()
        && last.same_content(&rec.latest)
    {
        return last.clone();
    }
    let n = rec.next_version.max(1);
    rec.next_version = n + 1;
    let mut v = (*rec.latest).clone();
    v.version = n.to_string();
    v.last_modified = crate::aws::timestamp_now();
    v.revision_id = new_revision();
    if let Some(d) = description {
        v.description = d;
    }
    let v = Arc::new(v);
    rec.versions.insert(n, v.clone());
    v
}

fn get_function(ctx: &Ctx, raw: &str) -> R {
    let (name, q) = function_target(ctx, raw)?;
    let rec = ctx.store().get_function(&name).ok_or_else(|| not_found(ctx, &name, q.as_deref()))?;
    let c = config_for(ctx, &rec, q.as_deref())?;
    // A qualified request gets a qualified ARN: `:$LATEST`, `:<version>`, or the alias it named.
    let function_arn = match q.as_deref() {
        Some(alias) if rec.aliases.contains_key(alias) => {
            arn::function_arn(&ctx.scope.region, &ctx.scope.account, &name, Some(alias))
        }
        Some(_) => c.arn(&ctx.scope, true),
        None => c.arn(&ctx.scope, false),
    };
    let mut out = json!({
        "Configuration": c.to_json_with_arn(function_arn),
        "Tags": rec.tags,
    });
    out["Code"] = if let Some(uri) = &c.image_uri {
        json!({"RepositoryType": "ECR", "ImageUri": uri, "ResolvedImageUri": uri})
    } else {
        json!({"RepositoryType": "S3", "Location": format!("{}/_ruststack/code/{}", ctx.lambda.endpoint_url, c.code_sha_hex)})
    };
    if let Some(n) = rec.reserved_concurrency {
        out["Concurrency"] = json!({"ReservedConcurrentExecutions": n});
    }
    ok_json(StatusCode::OK, out)
}

fn get_configuration(ctx: &Ctx, raw: &str) -> R {
    let (name, q) = function_target(ctx, raw)?;
    let rec = ctx.store().get_function(&name).ok_or_else(|| not_found(ctx, &name, q.as_deref()))?;
    let c = config_for(ctx, &rec, q.as_deref())?;
    // Qualified by the version that was resolved, also for an alias (as AWS does here).
    ok_json(StatusCode::OK, c.to_json(&ctx.scope, q.is_some()))
}

fn list_functions(ctx: &Ctx) -> R {
    let all_versions = ctx.q("FunctionVersion") == Some("ALL");
    let mut items = Vec::new();
    for rec in ctx.store().list_functions() {
        let name = &rec.latest.name;
        items.push((function_key(name, 0), list_item(&rec.latest, ctx, all_versions)));
        if all_versions {
            for (n, v) in &rec.versions {
                items.push((function_key(name, *n), list_item(v, ctx, true)));
            }
        }
    }
    page_response(ctx, "Functions", items)
}

/// ListFunctions returns a subset of FunctionConfiguration.
fn list_item(c: &FunctionConfig, ctx: &Ctx, qualified: bool) -> Value {
    let mut v = c.to_json(&ctx.scope, qualified);
    if let Some(m) = v.as_object_mut() {
        for k in [
            "State",
            "StateReason",
            "StateReasonCode",
            "LastUpdateStatus",
            "LastUpdateStatusReason",
            "LastUpdateStatusReasonCode",
        ] {
            m.remove(k);
        }
    }
    v
}

/// One page of a list operation as `{list_key: [...], NextMarker}`.
///
/// Each item comes with a sort key whose order is the listing order. The marker is the key
/// of the last item returned, and the next page starts after it, so items created or
/// deleted between pages (a cleanup loop that deletes what it lists) neither shift nor
/// skip the rest.
fn page_response(ctx: &Ctx, list_key: &str, mut items: Vec<(String, Value)>) -> R {
    let max = match ctx.q("MaxItems") {
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=10000).contains(n))
            .ok_or_else(|| AwsError::invalid_param(format!("MaxItems must be between 1 and 10000, got {s}")))?,
        None => MAX_PAGE,
    }
    .min(MAX_PAGE);
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let marker = ctx.q("Marker").filter(|s| !s.is_empty());
    let start = marker.map_or(0, |m| items.partition_point(|(k, _)| k.as_str() <= m));
    let rest = items.len() - start;
    let page: Vec<(String, Value)> = items.into_iter().skip(start).take(max).collect();
    let next = if rest > page.len() { page.last().map(|(k, _)| k.clone()) } else { None };
    let mut out = json!({ list_key: page.into_iter().map(|(_, v)| v).collect::<Vec<_>>() });
    if let Some(n) = next {
        out["NextMarker"] = n.into();
    }
    ok_json(StatusCode::OK, out)
}

/// Sort key of a function version in ListFunctions: the name, then `$LATEST` (0) and the
/// versions in order. `!` sorts below every name character, so `a`'s versions come before `a-b`.
fn function_key(name: &str, version: u64) -> String {
    format!("{name}!{version:020}")
}

fn update_code(ctx: &Ctx, raw: &str, body: &[u8]) -> R {
    let name = unqualified(raw)?;
    let m = parse_body(body)?;
    let cur = ctx.store().latest(&name).ok_or_else(|| not_found(ctx, &name, None))?;
    let image_uri = opt_str(&m, "ImageUri")?;
    let stored = if cur.package_type == "Zip" {
        if image_uri.is_some() {
            return Err(AwsError::invalid_param(
                "Please don't provide ImageUri when updating a function with packageType Zip.",
            ));
        }
        Some(store_code(ctx, &m)?.ok_or_else(|| {
            AwsError::invalid_param("Please provide a source for function code: ZipFile or S3Bucket and S3Key")
        })?)
    } else {
        if image_uri.is_none() {
            return Err(AwsError::invalid_param(
                "Please provide ImageUri when updating a function with packageType Image.",
            ));
        }
        None
    };
    let arch = str_list(&m, "Architectures")?;
    if opt_bool(&m, "DryRun")? {
        let mut c = (*cur).clone();
        if let Some(s) = &stored {
            c.code_sha256 = s.sha_b64.clone();
            c.code_size = s.size;
        }
        return ok_json(StatusCode::OK, c.to_json(&ctx.scope, false));
    }
    let publish = opt_bool(&m, "Publish")?;
    let (rec, published) = update_record(ctx, &name, |rec| {
        check_revision(&m, &rec.latest.revision_id)?;
        let mut c = (*rec.latest).clone();
        if let Some(s) = &stored {
            c.code_sha_hex = s.sha_hex.clone();
            c.code_sha256 = s.sha_b64.clone();
            c.code_size = s.size;
        }
        if let Some(uri) = &image_uri {
            c.code_sha256 = crate::lambda::code::digest(uri.as_bytes()).sha256_b64;
            c.image_uri = Some(uri.clone());
        }
        if let Some(a) = &arch {
            c.architectures = a.clone();
        }
        c.last_modified = crate::aws::timestamp_now();
        c.revision_id = new_revision();
        rec.latest = Arc::new(c);
        Ok(if publish { Some(publish_into(rec, None)) } else { None })
    })?;
    ctx.lambda.drain(&name);
    tracing::info!(function = %name, "updated function code");
    match published {
        Some(v) => ok_json(StatusCode::OK, v.to_json(&ctx.scope, true)),
        None => ok_json(StatusCode::OK, rec.latest.to_json(&ctx.scope, false)),
    }
}

fn update_configuration(ctx: &Ctx, raw: &str, body: &[u8]) -> R {
    let name = unqualified(raw)?;
    let m = parse_body(body)?;
    if ctx.store().latest(&name).is_none() {
        return Err(not_found(ctx, &name, None));
    }
    // Layers may read files or the store: resolve them before taking the store lock.
    let layers = requested_layers(ctx, &m)?;
    let (rec, _) = update_record(ctx, &name, |rec| {
        check_revision(&m, &rec.latest.revision_id)?;
        // Apply to the record as it is under the lock, so a concurrent update is not lost.
        let mut c = (*rec.latest).clone();
        apply_config(&mut c, &m, layers)?;
        check_runnable(&c)?;
        c.last_modified = crate::aws::timestamp_now();
        c.revision_id = new_revision();
        rec.latest = Arc::new(c);
        Ok(())
    })?;
    ctx.lambda.drain(&name);
    tracing::info!(function = %name, "updated function configuration");
    ok_json(StatusCode::OK, rec.latest.to_json(&ctx.scope, false))
}

fn delete_function(ctx: &Ctx, raw: &str) -> R {
    let (name, q) = function_target(ctx, raw)?;
    match q.as_deref() {
        None => {
            if let Some(rec) = ctx.store().get_function(&name) {
                for key in rec.provisioned.keys() {
                    unprovision(ctx.lambda, &ctx.scope, &name, key);
                }
            }
            ctx.store().delete_function(&name)?.ok_or_else(|| not_found(ctx, &name, None))?;
            ctx.lambda.drain(&name);
            tracing::info!(function = %name, "deleted function");
        }
        Some("$LATEST") => {
            return Err(AwsError::invalid_param("$LATEST version cannot be deleted without deleting the function."));
        }
        Some(v) => {
            let n: u64 = v.parse().map_err(|_| {
                AwsError::invalid_param(format!("Deleting an alias is not supported by DeleteFunction: {v}"))
            })?;
            let referenced = |rec: &FunctionRecord| rec.aliases.values().any(|a| a.function_version == v);
            if let Some(rec) = ctx.store().get_function(&name)
                && rec.provisioned.contains_key(v)
                && !referenced(&rec)
            {
                unprovision(ctx.lambda, &ctx.scope, &name, v);
            }
            update_record(ctx, &name, |rec| {
                if rec.aliases.values().any(|a| a.function_version == v) {
                    return Err(AwsError::conflict(format!(
                        "Unable to delete version because the following aliases reference it: {:?}",
                        rec.aliases
                            .values()
                            .filter(|a| a.function_version == v)
                            .map(|a| a.name.clone())
                            .collect::<Vec<_>>()
                    )));
                }
                rec.versions.remove(&n).ok_or_else(|| not_found(ctx, &name, Some(v)))?;
                forget_qualifier(rec, v);
                Ok(())
            })?;
            ctx.lambda.drain(&name);
        }
    }
    Ok(http_util::empty(StatusCode::NO_CONTENT))
}

fn publish_version(ctx: &Ctx, raw: &str, body: &[u8]) -> R {
    let name = unqualified(raw)?;
    let m = parse_body(body)?;
    let sha = opt_str(&m, "CodeSha256")?;
    let description = opt_str(&m, "Description")?;
    let (_, v) = update_record(ctx, &name, |rec| {
        check_revision(&m, &rec.latest.revision_id)?;
        if let Some(s) = &sha
            && *s != rec.latest.code_sha256
        {
            return Err(AwsError::invalid_param(format!(
                "CodeSHA256 ({s}) is different from current CodeSHA256 in $LATEST ({}). Please try again with the CodeSHA256 in $LATEST.",
                rec.latest.code_sha256
            )));
        }
        Ok(publish_into(rec, description.clone()))
    })?;
    ok_json(StatusCode::CREATED, v.to_json(&ctx.scope, true))
}

fn list_versions(ctx: &Ctx, raw: &str) -> R {
    let name = unqualified(raw)?;
    let rec = get_record(ctx, &name)?;
    let mut items = vec![(format!("{:020}", 0), rec.latest.to_json(&ctx.scope, true))];
    items.extend(rec.versions.iter().map(|(n, v)| (format!("{n:020}"), v.to_json(&ctx.scope, true))));
    page_response(ctx, "Versions", items)
}

// ---------- aliases ----------

fn validate_alias_version(rec: &FunctionRecord, v: &str) -> Result<(), AwsError> {
    if v == "$LATEST" {
        return Ok(());
    }
    match v.parse::<u64>() {
        Ok(n) if rec.versions.contains_key(&n) => Ok(()),
        _ => Err(AwsError::not_found(format!("Function not found: version {v} of {}", rec.latest.name))),
    }
}

fn create_alias(ctx: &Ctx, raw: &str, body: &[u8]) -> R {
    let name = unqualified(raw)?;
    let m = parse_body(body)?;
    let alias = req_str(&m, "Name")?;
    let valid = !alias.is_empty()
        && alias.len() <= 128
        && alias.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !alias.chars().all(|c| c.is_ascii_digit());
    if !valid {
        return Err(AwsError::invalid_param(format!("Invalid alias name: {alias}")));
    }
    let version = req_str(&m, "FunctionVersion")?;
    let (_, a) = update_record(ctx, &name, |rec| {
        if rec.aliases.contains_key(&alias) {
            return Err(AwsError::conflict(format!(
                "Alias already exists: {}",
                arn::function_arn(&ctx.scope.region, &ctx.scope.account, &name, Some(&alias))
            )));
        }
        validate_alias_version(rec, &version)?;
        let a = Alias {
            name: alias.clone(),
            function_version: version.clone(),
            description: opt_str(&m, "Description")?.unwrap_or_default(),
            routing_config: m.get("RoutingConfig").filter(|v| !v.is_null()).cloned(),
            revision_id: new_revision(),
        };
        rec.aliases.insert(alias.clone(), a.clone());
        Ok(a)
    })?;
    ok_json(StatusCode::CREATED, a.to_json(&ctx.scope, &name))
}

fn alias_not_found(ctx: &Ctx, name: &str, alias: &str) -> AwsError {
    AwsError::not_found(format!(
        "Alias not found: {}",
        arn::function_arn(&ctx.scope.region, &ctx.scope.account, name, Some(alias))
    ))
}

fn get_alias(ctx: &Ctx, raw: &str, alias: &str) -> R {
    let name = unqualified(raw)?;
    let rec = get_record(ctx, &name)?;
    let a = rec.aliases.get(alias).ok_or_else(|| alias_not_found(ctx, &name, alias))?;
    ok_json(StatusCode::OK, a.to_json(&ctx.scope, &name))
}

fn list_aliases(ctx: &Ctx, raw: &str) -> R {
    let name = unqualified(raw)?;
    let rec = get_record(ctx, &name)?;
    let fv = ctx.q("FunctionVersion");
    let items = rec
        .aliases
        .values()
        .filter(|a| fv.is_none_or(|v| a.function_version == v))
        .map(|a| (a.name.clone(), a.to_json(&ctx.scope, &name)))
        .collect();
    page_response(ctx, "Aliases", items)
}

fn update_alias(ctx: &Ctx, raw: &str, alias: &str, body: &[u8]) -> R {
    let name = unqualified(raw)?;
    let m = parse_body(body)?;
    let (_, a) = update_record(ctx, &name, |rec| {
        let mut a = rec.aliases.get(alias).cloned().ok_or_else(|| alias_not_found(ctx, &name, alias))?;
        if let Some(r) = opt_str(&m, "RevisionId")?
            && r != a.revision_id
        {
            return Err(AwsError::precondition("The Revision Id provided does not match the latest Revision Id."));
        }
        if let Some(v) = opt_str(&m, "FunctionVersion")? {
            validate_alias_version(rec, &v)?;
            a.function_version = v;
        }
        if let Some(d) = opt_str(&m, "Description")? {
            a.description = d;
        }
        if let Some(rc) = m.get("RoutingConfig") {
            a.routing_config = (!rc.is_null()).then(|| rc.clone());
        }
        a.revision_id = new_revision();
        rec.aliases.insert(alias.to_string(), a.clone());
        Ok(a)
    })?;
    ok_json(StatusCode::OK, a.to_json(&ctx.scope, &name))
}

fn delete_alias(ctx: &Ctx, raw: &str, alias: &str) -> R {
    let name = unqualified(raw)?;
    if get_record(ctx, &name)?.provisioned.contains_key(alias) {
        unprovision(ctx.lambda, &ctx.scope, &name, alias);
    }
    update_record(ctx, &name, |rec| {
        rec.aliases.remove(alias);
        forget_qualifier(rec, alias);
        Ok(())
    })?;
    Ok(http_util::empty(StatusCode::NO_CONTENT))
}

/// Drops what was configured for a deleted version or alias: its policy, function URL,
/// async-invoke settings and provisioned concurrency.
fn forget_qualifier(rec: &mut FunctionRecord, q: &str) {
    rec.policies.remove(q);
    rec.urls.remove(q);
    rec.event_invoke.remove(q);
    rec.provisioned.remove(q);
}

// ---------- concurrency ----------

fn put_concurrency(ctx: &Ctx, raw: &str, body: &[u8]) -> R {
    let name = unqualified(raw)?;
    let m = parse_body(body)?;
    let n = opt_u64(&m, "ReservedConcurrentExecutions")?
        .ok_or_else(|| AwsError::invalid_param("ReservedConcurrentExecutions is required"))?;
    // AWS keeps at least UNRESERVED_MIN of the account's concurrency unreserved.
    let others = ctx.store().reserved_concurrency_total(Some(&name));
    if others + n > ACCOUNT_CONCURRENCY - UNRESERVED_MIN {
        return Err(AwsError::invalid_param(format!(
            "Specified ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [{UNRESERVED_MIN}]."
        )));
    }
    update_record(ctx, &name, |rec| {
        rec.reserved_concurrency = Some(n as u32);
        Ok(())
    })?;
    ok_json(StatusCode::OK, json!({"ReservedConcurrentExecutions": n}))
}

fn get_concurrency(ctx: &Ctx, raw: &str) -> R {
    let name = unqualified(raw)?;
    let rec = get_record(ctx, &name)?;
    match rec.reserved_concurrency {
        Some(n) => ok_json(StatusCode::OK, json!({"ReservedConcurrentExecutions": n})),
        None => ok_json(StatusCode::OK, json!({})),
    }
}

fn delete_concurrency(ctx: &Ctx, raw: &str) -> R {
    let name = unqualified(raw)?;
    update_record(ctx, &name, |rec| {
        rec.reserved_concurrency = None;
        Ok(())
    })?;
    Ok(http_util::empty(StatusCode::NO_CONTENT))
}

// ---------- layers ----------

fn layer_name(raw: &str) -> Result<String, AwsError> {
    // Layer APIs accept a name or a layer ARN.
    arn::parse_layer_name(raw).map_err(|e| AwsError::invalid_param(e.to_string()))
}

fn layer_not_found(ctx: &Ctx, name: &str, v: &str) -> AwsError {
    let _ = ctx;
    AwsError::not_found(format!("Layer version {name}:{v} does not exist."))
}

fn publish_layer_version(ctx: &Ctx, raw: &str, body: &[u8]) -> R {
    let name = layer_name(raw)?;
    let m = parse_body(body)?;
    let content = opt_obj(&m, "Content")?
        .ok_or_else(|| AwsError::invalid_param("1 validation error detected: Value null at 'content' failed to satisfy constraint: Member must not be null"))?;
    let stored = store_code(ctx, content)?.ok_or_else(|| {
        AwsError::invalid_param("Please provide a source for layer content: ZipFile or S3Bucket and S3Key")
    })?;
    let runtimes = str_list(&m, "CompatibleRuntimes")?.unwrap_or_default();
    for r in &runtimes {
        validate_runtime(r)?;
    }
    let lv = ctx.store().update_layer(&name, |rec| {
        let n = rec.next_version.max(1);
        rec.next_version = n + 1;
        let lv = LayerVersion {
            name: name.clone(),
            version: n,
            description: opt_str(&m, "Description")?.unwrap_or_default(),
            created_date: crate::aws::timestamp_now(),
            compatible_runtimes: runtimes.clone(),
            compatible_architectures: str_list(&m, "CompatibleArchitectures")?.unwrap_or_default(),
            license_info: opt_str(&m, "LicenseInfo")?,
            sha_hex: stored.sha_hex.clone(),
            code_sha256: stored.sha_b64.clone(),
            code_size: stored.size,
        };
        rec.versions.insert(n, lv.clone());
        Ok(lv)
    })?;
    ok_json(StatusCode::CREATED, lv.to_json(&ctx.scope, &ctx.lambda.endpoint_url))
}

fn find_layer_version(ctx: &Ctx, name: &str, v: &str) -> Result<LayerVersion, AwsError> {
    let n: u64 = v.parse().map_err(|_| AwsError::invalid_param(format!("Invalid layer version number: {v}")))?;
    ctx.store().get_layer(name).and_then(|r| r.versions.get(&n).cloned()).ok_or_else(|| layer_not_found(ctx, name, v))
}

fn get_layer_version(ctx: &Ctx, raw: &str, v: &str) -> R {
    let name = layer_name(raw)?;
    let lv = find_layer_version(ctx, &name, v)?;
    ok_json(StatusCode::OK, lv.to_json(&ctx.scope, &ctx.lambda.endpoint_url))
}

fn get_layer_version_by_arn(ctx: &Ctx) -> R {
    let a = ctx.q("Arn").unwrap_or_default();
    let r = arn::parse_layer_version_arn(a)
        .ok_or_else(|| AwsError::invalid_param(format!("Invalid layer version ARN: {a}")))?;
    let lv = find_layer_version(ctx, &r.name, &r.version.to_string())?;
    ok_json(StatusCode::OK, lv.to_json(&ctx.scope, &ctx.lambda.endpoint_url))
}

fn layer_matches(ctx: &Ctx, lv: &LayerVersion) -> bool {
    let rt = ctx.q("CompatibleRuntime");
    let ar = ctx.q("CompatibleArchitecture");
    rt.is_none_or(|r| lv.compatible_runtimes.iter().any(|x| x == r))
        && ar.is_none_or(|a| lv.compatible_architectures.iter().any(|x| x == a))
}

fn list_layers(ctx: &Ctx) -> R {
    let items = ctx
        .store()
        .list_layers()
        .into_iter()
        .filter_map(|rec| {
            let latest = rec.versions.values().rev().find(|lv| layer_matches(ctx, lv))?;
            let item = json!({
                "LayerName": rec.name,
                "LayerArn": arn::layer_arn(&ctx.scope.region, &ctx.scope.account, &rec.name),
                "LatestMatchingVersion": latest.to_list_json(&ctx.scope),
            });
            Some((rec.name, item))
        })
        .collect();
    page_response(ctx, "Layers", items)
}

fn list_layer_versions(ctx: &Ctx, raw: &str) -> R {
    let name = layer_name(raw)?;
    // Newest first: the key counts down.
    let items = ctx
        .store()
        .get_layer(&name)
        .map(|rec| {
            rec.versions
                .values()
                .filter(|lv| layer_matches(ctx, lv))
                .map(|lv| (format!("{:020}", u64::MAX - lv.version), lv.to_list_json(&ctx.scope)))
                .collect()
        })
        .unwrap_or_default();
    page_response(ctx, "LayerVersions", items)
}

fn delete_layer_version(ctx: &Ctx, raw: &str, v: &str) -> R {
    let name = layer_name(raw)?;
    let n: u64 = v.parse().map_err(|_| AwsError::invalid_param(format!("Invalid layer version number: {v}")))?;
    if ctx.store().get_layer(&name).is_some() {
        ctx.store().update_layer(&name, |rec| {
            rec.versions.remove(&n);
            Ok(())
        })?;
    }
    // AWS answers 204 even when the version does not exist.
    Ok(http_util::empty(StatusCode::NO_CONTENT))
}

// ---------- tags ----------

fn tag_target(ctx: &Ctx, resource: &str) -> Result<String, AwsError> {
    let r = arn::parse_function_ref(resource).map_err(|e| AwsError::invalid_param(e.to_string()))?;
    if !resource.starts_with("arn:") {
        return Err(AwsError::invalid_param(format!("Invalid ARN: {resource}")));
    }
    if ctx.store().latest(&r.name).is_none() {
        return Err(not_found(ctx, &r.name, None));
    }
    Ok(r.name)
}

fn list_tags(ctx: &Ctx, resource: &str) -> R {
    let name = tag_target(ctx, resource)?;
    let rec = get_record(ctx, &name)?;
    ok_json(StatusCode::OK, json!({"Tags": rec.tags}))
}

fn tag_resource(ctx: &Ctx, resource: &str, body: &[u8]) -> R {
    let name = tag_target(ctx, resource)?;
    let m = parse_body(body)?;
    let tags = str_map(&m, "Tags")?.ok_or_else(|| AwsError::invalid_param("Tags is required"))?;
    update_record(ctx, &name, |rec| {
        if rec.tags.len() + tags.len() > 50 {
            return Err(AwsError::invalid_param("A function can have at most 50 tags"));
        }
        rec.tags.extend(tags.clone());
        Ok(())
    })?;
    if tags.contains_key("force-docker") {
        ctx.lambda.drain(&name);
    }
    Ok(http_util::empty(StatusCode::NO_CONTENT))
}

fn untag_resource(ctx: &Ctx, resource: &str) -> R {
    let name = tag_target(ctx, resource)?;
    let keys: Vec<String> = ctx.query.iter().filter(|(k, _)| k == "tagKeys").map(|(_, v)| v.clone()).collect();
    update_record(ctx, &name, |rec| {
        for k in &keys {
            rec.tags.remove(k);
        }
        Ok(())
    })?;
    ctx.lambda.drain(&name);
    Ok(http_util::empty(StatusCode::NO_CONTENT))
}

fn account_settings(ctx: &Ctx) -> R {
    ok_json(
        StatusCode::OK,
        json!({
            "AccountLimit": {
                "TotalCodeSize": 80530636800u64,
                "CodeSizeUnzipped": 262144000u64,
                "CodeSizeZipped": 52428800u64,
                "ConcurrentExecutions": ACCOUNT_CONCURRENCY,
                "UnreservedConcurrentExecutions":
                    ACCOUNT_CONCURRENCY.saturating_sub(ctx.store().reserved_concurrency_total(None)),
            },
            "AccountUsage": {
                "TotalCodeSize": ctx.store().total_code_size(),
                "FunctionCount": ctx.store().function_count(),
            },
        }),
    )
}

// ---------- invoke ----------

fn header(req: &Request<Incoming>, name: &str) -> Option<String> {
    req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// Invoke, and InvokeWithResponseStream when `streaming` (its answer is an event stream).
async fn invoke_op(ctx: &Ctx<'_>, raw: &str, req: Request<Incoming>, streaming: bool) -> R {
    let (name, q) = function_target(ctx, raw)?;
    let itype = header(&req, "x-amz-invocation-type").unwrap_or_else(|| "RequestResponse".into());
    if streaming && itype == "Event" {
        return Err(AwsError::invalid_param(
            "1 validation error detected: Value 'Event' at 'invocationType' failed to satisfy constraint: Member must satisfy enum value set: [RequestResponse, DryRun]",
        ));
    }
    let tail = match header(&req, "x-amz-log-type").as_deref() {
        None | Some("None") => false,
        Some("Tail") => true,
        Some(other) => return Err(AwsError::invalid_param(format!("Invalid LogType: {other}"))),
    };
    let client_context = match header(&req, "x-amz-client-context") {
        None => None,
        Some(c) => {
            if c.len() > 3583 {
                return Err(AwsError::invalid_param("Client context must be at most 3583 bytes"));
            }
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(c.trim())
                .ok()
                .filter(|d| serde_json::from_slice::<Value>(d).is_ok())
                .ok_or_else(|| {
                    AwsError::invalid_content("Client context must be a valid Base64-encoded JSON object.")
                })?;
            Some(String::from_utf8_lossy(&decoded).into_owned())
        }
    };
    let tenant_id = header(&req, "x-amz-tenant-id");
    let limit = if itype == "Event" { MAX_EVENT_PAYLOAD } else { MAX_SYNC_PAYLOAD };
    let payload = read(req, limit, true).await?;
    super::payload::check(&payload)?;
    let mut target = invoke::resolve(ctx.lambda, &name, q.as_deref(), &ctx.scope)?;
    // AWS refuses to invoke a Pending function; locally the image is usually ready in
    // moments, so wait for it a while instead of failing scripts that invoke right away.
    let waited = std::time::Instant::now();
    while target.config.state == "Pending" && waited.elapsed() < std::time::Duration::from_secs(60) {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        target = invoke::resolve(ctx.lambda, &name, q.as_deref(), &ctx.scope)?;
    }
    if target.config.state == "Failed" {
        return Err(AwsError::new(
            StatusCode::BAD_GATEWAY,
            "ResourceNotReadyException",
            format!("The function is in Failed state: {}", target.config.state_reason.clone().unwrap_or_default()),
        ));
    }
    if target.config.state == "Pending" {
        return Err(AwsError::conflict(
            "The operation cannot be performed at this time. The function is currently in the following state: Pending",
        ));
    }
    let executed = HeaderValue::from_str(&target.executed_version).unwrap_or(HeaderValue::from_static("$LATEST"));
    match itype.as_str() {
        "DryRun" => {
            let mut r = http_util::empty(StatusCode::NO_CONTENT);
            r.headers_mut().insert("x-amz-executed-version", executed);
            Ok(r)
        }
        "Event" => {
            let id = ctx
                .lambda
                .events
                .push(&name, q.as_deref(), &ctx.scope.region, &payload)
                .map_err(|e| AwsError::service(format!("could not queue the event: {e}")))?;
            let mut r = http_util::empty(StatusCode::ACCEPTED);
            r.headers_mut().insert("x-amz-executed-version", executed);
            if let Ok(v) = HeaderValue::from_str(&id) {
                r.headers_mut().insert("x-amzn-requestid", v);
            }
            Ok(r)
        }
        "RequestResponse" => {
            let call = CallContext { request_id: None, client_context, cognito_identity: None, tenant_id };
            let out = invoke::invoke(ctx.lambda, &target, &ctx.scope, payload, call).await?;
            let mut r = if streaming {
                http_util::full(StatusCode::OK, "application/vnd.amazon.eventstream", stream_body(&out, tail))
            } else {
                http_util::full(StatusCode::OK, "application/json", out.body.clone())
            };
            let h = r.headers_mut();
            h.insert("x-amz-executed-version", executed);
            if let Ok(v) = HeaderValue::from_str(&out.request_id) {
                h.insert("x-amzn-requestid", v);
            }
            if out.function_error && !streaming {
                h.insert("x-amz-function-error", HeaderValue::from_static("Unhandled"));
            }
            if tail
                && !streaming
                && let Ok(v) = HeaderValue::from_str(&out.tail_b64())
            {
                h.insert("x-amz-log-result", v);
            }
            Ok(r)
        }
        other => Err(AwsError::invalid_param(format!(
            "1 validation error detected: Value '{other}' at 'invocationType' failed to satisfy constraint: Member must satisfy enum value set: [Event, RequestResponse, DryRun]"
        ))),
    }
}

/// InvokeWithResponseStream's event stream for a buffered answer: the response as one
/// PayloadChunk, then InvokeComplete (a function error's type and body as ErrorCode and
/// ErrorDetails, as the platform reports a streamed error; the log tail as LogResult).
fn stream_body(out: &invoke::InvokeOutput, tail: bool) -> Bytes {
    use crate::aws::eventstream;
    let mut body = Vec::new();
    let mut complete = json!({});
    if out.function_error {
        let error_type = serde_json::from_slice::<Value>(&out.body)
            .ok()
            .and_then(|v| v.get("errorType").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| "Unhandled".into());
        complete["ErrorCode"] = json!(error_type);
        complete["ErrorDetails"] = json!(String::from_utf8_lossy(&out.body));
    } else if !out.body.is_empty() {
        body.extend(eventstream::event("PayloadChunk", "application/octet-stream", &out.body));
    }
    if tail {
        complete["LogResult"] = json!(out.tail_b64());
    }
    body.extend(eventstream::event("InvokeComplete", "application/json", complete.to_string().as_bytes()));
    Bytes::from(body)
}

fn invoke_async_legacy(ctx: &Ctx, raw: &str, body: Bytes) -> R {
    let (name, q) = function_target(ctx, raw)?;
    invoke::resolve(ctx.lambda, &name, q.as_deref(), &ctx.scope)?;
    ctx.lambda
        .events
        .push(&name, q.as_deref(), &ctx.scope.region, &body)
        .map_err(|e| AwsError::service(format!("could not queue the event: {e}")))?;
    ok_json(StatusCode::ACCEPTED, json!({"Status": 202}))
}
