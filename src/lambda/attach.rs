//! The server side of `ruststack attach`, under `/_ruststack/attach`: it registers a runtime
//! started by hand (for example under a debugger) with the engine as an attached sandbox.
//!
//! The function is that of the region named by `?region=R`, else by the request's SigV4
//! credential scope, else the server's `--region` (an ARN's own region wins): the same name
//! in another region is another function, which an attachment leaves alone.
//!
//! - `POST /_ruststack/attach/{function}` with `{"keep_timeout": bool}` creates the
//!   attachment: a dedicated Runtime API endpoint. Answers `{"id", "runtime_api", "env",
//!   "runtime", "layers"}`: `env` holds the metadata endpoint's variables too; `runtime` and
//!   `layers` are the function's runtime and layer directories (in the function's order), for
//!   `ruststack attach --debug`.
//!   A second attachment to the same function is refused with 409.
//! - `GET /_ruststack/attach/{function}/hold?id=ID` is held open by the client; when the
//!   client goes away (exit, Ctrl-C, kill -9) the attachment ends.
//! - `DELETE /_ruststack/attach/{function}?id=ID` ends it explicitly.
//! - `GET /_ruststack/attach` lists attachments (each with its `region`).
//!
//! While attached, every invocation of the function goes to the attached runtime, one at a
//! time, with the timeout suspended unless `keep_timeout` was asked for.

use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::Lambda;
use super::model::Scope;
use crate::aws::AwsError;
use crate::engine::FunctionId;
use crate::http_util::{self, Body};

/// The function `raw` (a name or an ARN) names in the request's region (`region`: the
/// `?region=` or SigV4 one).
fn function_id(lambda: &Lambda, raw: &str, region: Option<&str>) -> Result<FunctionId, AwsError> {
    let r = crate::aws::arn::parse_function_ref(raw).map_err(|e| AwsError::invalid_param(e.to_string()))?;
    if r.qualifier.is_some() {
        return Err(AwsError::invalid_param(format!(
            "ruststack attach takes a function, not a version or alias: {raw}"
        )));
    }
    let region = r.region.as_deref().or(region).unwrap_or(&lambda.cfg.region).to_string();
    if !crate::aws::arn::is_region(&region) {
        return Err(AwsError::invalid_param(format!("Invalid region: {region}")));
    }
    Ok(FunctionId { account: lambda.cfg.account_id.clone(), region, name: r.name })
}

/// The server side of attach, under `/_ruststack/attach`.
pub async fn handle_api(lambda: &Arc<Lambda>, req: Request<Incoming>) -> Response<Body> {
    let request_id = crate::aws::request_id();
    match route(lambda, req).await {
        Ok(r) => r,
        Err(e) => e.to_response(&request_id).map(crate::http_util::Body::from),
    }
}

async fn route(lambda: &Arc<Lambda>, req: Request<Incoming>) -> Result<Response<Body>, AwsError> {
    let path = req.uri().path().to_string();
    let query = http_util::query_pairs(req.uri().query());
    let id = query.iter().find(|(k, _)| k == "id").map(|(_, v)| v.clone()).unwrap_or_default();
    let region = query.iter().find(|(k, _)| k == "region").map(|(_, v)| v.clone()).or_else(|| {
        req.headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(crate::aws::arn::region_from_authorization)
    });
    let region = region.as_deref().filter(|r| !r.is_empty());
    let segs: Vec<_> = path.split('/').filter(|s| !s.is_empty()).skip(2).map(http_util::decode_segment).collect();
    let segs: Vec<&str> = segs.iter().map(|s| s.as_ref()).collect();
    match (req.method().clone(), segs.as_slice()) {
        (Method::GET, []) => {
            let list: Vec<Value> = lambda
                .engine
                .attachments()
                .iter()
                .map(|a| {
                    json!({"function": a.function.name, "region": a.function.region, "id": a.id,
                                "runtime_api": a.runtime_api,
                                "keep_timeout": a.keep_timeout, "seconds": a.since.elapsed().as_secs()})
                })
                .collect();
            Ok(http_util::json(StatusCode::OK, &json!({"attachments": list})))
        }
        (Method::POST, [f]) => {
            let fid = function_id(lambda, f, region)?;
            let body = http_util::read_body(req.into_body(), 64 * 1024)
                .await
                .map_err(|_| AwsError::invalid_content("attach request too large"))?;
            let opts: Value = if body.is_empty() {
                json!({})
            } else {
                serde_json::from_slice(&body).map_err(|e| AwsError::invalid_content(e.to_string()))?
            };
            attach(lambda, &fid, opts["keep_timeout"].as_bool().unwrap_or(false), opts["cwd"].as_str()).await
        }
        (Method::GET, [f, "hold"]) => {
            let fid = function_id(lambda, f, region)?;
            let mut end = lambda.engine.attachment_end(&fid, &id).ok_or_else(|| no_attachment(&id, &fid))?;
            // Ends the attachment when this request's future is dropped (the client went away).
            struct Hold(Arc<Lambda>, FunctionId, String);
            impl Drop for Hold {
                fn drop(&mut self) {
                    self.0.engine.detach(&self.1, &self.2);
                }
            }
            let _hold = Hold(lambda.clone(), fid, id);
            let _ = end.wait_for(|d| d.is_some()).await;
            Ok(http_util::json(StatusCode::OK, &json!({"detached": true})))
        }
        (Method::DELETE, [f]) => {
            let fid = function_id(lambda, f, region)?;
            if lambda.engine.detach(&fid, &id) {
                Ok(http_util::empty(StatusCode::NO_CONTENT))
            } else {
                Err(no_attachment(&id, &fid))
            }
        }
        _ => Err(AwsError::unknown_operation(req.method(), &path)),
    }
}

fn no_attachment(id: &str, f: &FunctionId) -> AwsError {
    AwsError::not_found(format!("No attachment {id} for function {} in {}", f.name, f.region))
}

async fn attach(
    lambda: &Arc<Lambda>,
    fid: &FunctionId,
    keep_timeout: bool,
    cwd: Option<&str>,
) -> Result<Response<Body>, AwsError> {
    let name = fid.name.as_str();
    let scope = Scope { region: fid.region.clone(), account: fid.account.clone() };
    let config = lambda.stores.get(&scope.region).latest(name).ok_or_else(|| {
        AwsError::not_found(format!(
            "Function not found: {}",
            crate::aws::arn::function_arn(&scope.region, &scope.account, name, None)
        ))
    })?;
    let mut spec = super::invoke::spec_of(&config, String::new(), &scope);
    spec.reason = "attached";
    // The layers, for the runtime `attach --debug` starts (each root stands for /opt). Unpacking
    // may touch the disk: off the async worker threads.
    // The layers' dirs are not freed before the engine has the attachment on its books.
    let hold = lambda.stores.hold_code();
    let (stores, c) = (lambda.stores.clone(), config.clone());
    spec.layer_dirs = tokio::task::spawn_blocking(move || super::invoke::layer_dirs(&stores, &c))
        .await
        .map_err(|e| AwsError::service(format!("the layers' lookup failed: {e}")))??;
    let info = lambda.engine.attach(&spec, keep_timeout).await;
    drop(hold);
    let info = info?;
    let mut vars = crate::engine::function_env(&spec, &info.runtime_api, &lambda.endpoint_url, &info.log_stream);
    crate::engine::add_metadata_env(&mut vars, &info.runtime_api, &info.metadata_token);
    let mut env: serde_json::Map<String, Value> = vars.into_iter().map(|(k, v)| (k, v.into())).collect();
    if let Some(cwd) = cwd {
        env.insert("LAMBDA_TASK_ROOT".into(), cwd.into());
    }
    let (id, runtime_api) = (info.id, info.runtime_api);
    tracing::info!(
        function = name,
        region = %scope.region,
        attachment = %id,
        runtime_api = %runtime_api,
        keep_timeout,
        "attached: invocations of {name} now go to the attached runtime"
    );
    let runtime = spec.runtime.clone();
    let layers: Vec<String> = spec.layer_dirs.iter().map(|d| d.display().to_string()).collect();
    Ok(http_util::json(
        StatusCode::CREATED,
        &json!({"id": id, "runtime_api": runtime_api, "env": env, "runtime": runtime, "layers": layers}),
    ))
}
