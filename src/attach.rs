//! `ruststack attach`: serve a function's invocations from a runtime started by hand
//! (for example under a debugger).
//!
//! Server side (under `/_ruststack/attach`):
//! - `POST /_ruststack/attach/{function}` with `{"keep_timeout": bool}` creates the
//!   attachment: a dedicated Runtime API endpoint. Answers `{"id", "runtime_api", "env"}`.
//!   A second attachment to the same function is refused with 409.
//! - `GET /_ruststack/attach/{function}/hold?id=ID` is held open by the client; when the
//!   client goes away (exit, Ctrl-C, kill -9) the attachment ends.
//! - `DELETE /_ruststack/attach/{function}?id=ID` ends it explicitly.
//! - `GET /_ruststack/attach` lists attachments.
//!
//! While attached, every invocation of the function goes to the attached runtime, one at a
//! time, with the timeout suspended unless `keep_timeout` was asked for.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::aws::AwsError;
use crate::config::AttachArgs;
use crate::executor::{EnvSpec, ExecutorKind, LogSink};
use crate::http_util::{self, Body};
use crate::lambda::invoke::{self, CallContext, InvokeOutput, Target};
use crate::lambda::model::Scope;
use crate::runtime_api::{self, Death, Endpoint};

/// How long an invocation waits for an attached runtime that has suspended its timeout.
const SUSPENDED_TIMEOUT: Duration = Duration::from_secs(12 * 3600);

pub struct Attachment {
    pub id: String,
    pub function: String,
    pub keep_timeout: bool,
    pub endpoint: Arc<Endpoint>,
    pub runtime_api: String,
    pub since: Instant,
    pub(crate) log: Arc<LogSink>,
    /// One invocation at a time, like any environment.
    turn: tokio::sync::Mutex<()>,
    _listener: runtime_api::Listener,
}

#[derive(Default)]
pub struct Attachments {
    by_function: Mutex<HashMap<String, Arc<Attachment>>>,
}

impl Attachments {
    pub fn get(&self, function: &str) -> Option<Arc<Attachment>> {
        let map = self.by_function.lock();
        if map.is_empty() {
            return None;
        }
        map.get(function).cloned()
    }

    fn remove(&self, function: &str, id: &str) -> bool {
        let mut map = self.by_function.lock();
        match map.get(function) {
            Some(a) if a.id == id => {
                #[allow(clippy::expect_used)] // present: matched just above, under the same lock
                let a = map.remove(function).expect("present: checked under the same lock");
                a.endpoint.set_death(Death::Exited("runtime detached".into()));
                tracing::info!(function, attachment = id, "detached: invocations go to normal environments again");
                true
            }
            _ => false,
        }
    }
}

/// Runs one invocation on the attached runtime.
pub async fn invoke_attached(
    att: &Attachment,
    target: &Target,
    spec: &EnvSpec,
    payload: Bytes,
    call: CallContext,
) -> Result<InvokeOutput, AwsError> {
    let _turn = att.turn.lock().await;
    let request_id = call.request_id.clone().unwrap_or_else(crate::aws::request_id);
    let timeout = if att.keep_timeout { Duration::from_secs(spec.config.timeout as u64) } else { SUSPENDED_TIMEOUT };
    tracing::info!(function = %att.function, request_id, "invocation → attached runtime");
    let run =
        invoke::run_invocation(&att.endpoint, None, &request_id, target, payload, call, timeout, SUSPENDED_TIMEOUT)
            .await;
    Ok(invoke::finish(&att.log, &request_id, target, spec, run, false))
}

fn function_name(raw: &str) -> Result<String, AwsError> {
    crate::aws::arn::parse_function_ref(raw).map(|r| r.name).map_err(|e| AwsError::invalid_param(e.to_string()))
}

/// The server side of attach, under `/_ruststack/attach`.
pub async fn handle_api(app: &Arc<crate::server::App>, req: Request<Incoming>) -> Response<Body> {
    let request_id = crate::aws::request_id();
    match route(app, req).await {
        Ok(r) => r,
        Err(e) => e.to_response(&request_id),
    }
}

async fn route(app: &Arc<crate::server::App>, req: Request<Incoming>) -> Result<Response<Body>, AwsError> {
    let lambda = &app.lambda;
    let path = req.uri().path().to_string();
    let query = http_util::query_pairs(req.uri().query());
    let id = query.iter().find(|(k, _)| k == "id").map(|(_, v)| v.clone()).unwrap_or_default();
    let segs: Vec<String> = path.split('/').filter(|s| !s.is_empty()).skip(2).map(http_util::decode_segment).collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    match (req.method().clone(), segs.as_slice()) {
        (Method::GET, []) => {
            let list: Vec<Value> = lambda
                .attachments
                .by_function
                .lock()
                .values()
                .map(|a| {
                    json!({"function": a.function, "id": a.id, "runtime_api": a.runtime_api,
                                "keep_timeout": a.keep_timeout, "seconds": a.since.elapsed().as_secs()})
                })
                .collect();
            Ok(http_util::json(StatusCode::OK, &json!({"attachments": list})))
        }
        (Method::POST, [f]) => {
            let name = function_name(f)?;
            let body = http_util::read_body(req.into_body(), 64 * 1024)
                .await
                .map_err(|_| AwsError::invalid_content("attach request too large"))?;
            let opts: Value = if body.is_empty() {
                json!({})
            } else {
                serde_json::from_slice(&body).map_err(|e| AwsError::invalid_content(e.to_string()))?
            };
            attach(app, &name, opts["keep_timeout"].as_bool().unwrap_or(false), opts["cwd"].as_str()).await
        }
        (Method::GET, [f, "hold"]) => {
            let name = function_name(f)?;
            let att = lambda
                .attachments
                .get(&name)
                .filter(|a| a.id == id)
                .ok_or_else(|| AwsError::not_found(format!("No attachment {id} for function {name}")))?;
            // Ends the attachment when this request's future is dropped (the client went away).
            struct Hold(Arc<crate::lambda::Lambda>, String, String);
            impl Drop for Hold {
                fn drop(&mut self) {
                    self.0.attachments.remove(&self.1, &self.2);
                }
            }
            let _hold = Hold(lambda.clone(), name, id);
            let mut death = att.endpoint.death();
            drop(att);
            let _ = death.wait_for(|d| d.is_some()).await;
            Ok(http_util::json(StatusCode::OK, &json!({"detached": true})))
        }
        (Method::DELETE, [f]) => {
            let name = function_name(f)?;
            if lambda.attachments.remove(&name, &id) {
                Ok(http_util::empty(StatusCode::NO_CONTENT))
            } else {
                Err(AwsError::not_found(format!("No attachment {id} for function {name}")))
            }
        }
        _ => Err(AwsError::unknown_operation(req.method(), &path)),
    }
}

async fn attach(
    app: &Arc<crate::server::App>,
    name: &str,
    keep_timeout: bool,
    cwd: Option<&str>,
) -> Result<Response<Body>, AwsError> {
    let lambda = &app.lambda;
    let scope = Scope { region: app.cfg.region.clone(), account: app.cfg.account_id.clone() };
    let config = lambda.stores.get(&scope.region).latest(name).ok_or_else(|| {
        AwsError::not_found(format!(
            "Function not found: {}",
            crate::aws::arn::function_arn(&scope.region, &scope.account, name, None)
        ))
    })?;
    let endpoint = Endpoint::new(format!("{name}#attached"));
    let listener = runtime_api::serve(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), endpoint.clone())
        .await
        .map_err(|e| AwsError::service(format!("cannot open a Runtime API endpoint: {e}")))?;
    let runtime_api = listener.addr.to_string();
    let spec = EnvSpec {
        key: String::new(),
        config: config.clone(),
        code_dir: None,
        layer_dirs: Vec::new(),
        region: scope.region.clone(),
        account: scope.account.clone(),
        kind: ExecutorKind::Subprocess,
        reason: "attached",
        provisioned: false,
    };
    let log = LogSink::new(name, &spec.config.version);
    let mut env: serde_json::Map<String, Value> =
        crate::executor::function_env(&spec, &runtime_api, &lambda.endpoint_url, log.stream())
            .into_iter()
            .map(|(k, v)| (k, v.into()))
            .collect();
    if let Some(cwd) = cwd {
        env.insert("LAMBDA_TASK_ROOT".into(), cwd.into());
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    let att = Arc::new(Attachment {
        id: id.clone(),
        function: name.to_string(),
        keep_timeout,
        endpoint,
        runtime_api: runtime_api.clone(),
        since: Instant::now(),
        log,
        turn: tokio::sync::Mutex::new(()),
        _listener: listener,
    });
    {
        let mut map = lambda.attachments.by_function.lock();
        if let Some(cur) = map.get(name) {
            return Err(AwsError::conflict(format!(
                "Function {name} is already attached (attachment {}, runtime API {}, for {} s); detach it first",
                cur.id,
                cur.runtime_api,
                cur.since.elapsed().as_secs()
            )));
        }
        map.insert(name.to_string(), att);
    }
    tracing::info!(
        function = name,
        attachment = %id,
        runtime_api = %runtime_api,
        keep_timeout,
        "attached: invocations of {name} now go to the attached runtime"
    );
    Ok(http_util::json(StatusCode::CREATED, &json!({"id": id, "runtime_api": runtime_api, "env": env})))
}

// ---------------- client side: `ruststack attach` ----------------

pub async fn run(args: AttachArgs) -> Result<u8, String> {
    if args.command.is_empty() && !args.print_env {
        return Err("give the runtime command after `--` (or use --print-env)".into());
    }
    let base = args.endpoint.trim_end_matches('/').to_string();
    let client = reqwest::Client::new();
    let fname = percent_encoding::utf8_percent_encode(&args.function, percent_encoding::NON_ALPHANUMERIC).to_string();
    let cwd = std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default();
    let resp = client
        .post(format!("{base}/_ruststack/attach/{fname}"))
        .json(&json!({"keep_timeout": args.keep_timeout, "cwd": cwd}))
        .send()
        .await
        .map_err(|e| format!("cannot reach RustStack at {base}: {e}"))?;
    let status = resp.status();
    let body: Value = resp.json().await.map_err(|e| format!("bad answer from RustStack: {e}"))?;
    if !status.is_success() {
        let msg = body.get("message").or_else(|| body.get("Message")).and_then(Value::as_str).unwrap_or("");
        return Err(format!("attach refused ({status}): {msg}"));
    }
    let id = body["id"].as_str().unwrap_or_default().to_string();
    let runtime_api = body["runtime_api"].as_str().unwrap_or_default().to_string();
    let env: Vec<(String, String)> = body["env"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
        .unwrap_or_default();

    // Hold the attachment open: if this process dies, the server notices and detaches.
    let hold_url = format!("{base}/_ruststack/attach/{fname}/hold?id={id}");
    let hold_client = client.clone();
    let hold = tokio::spawn(async move { hold_client.get(hold_url).send().await.map(|_| ()) });

    eprintln!(
        "ruststack attach: {} attached (runtime API {runtime_api}, timeout {})",
        args.function,
        if args.keep_timeout { "kept" } else { "suspended" }
    );
    let code = if args.print_env {
        for (k, v) in &env {
            println!("{k}={v}");
        }
        eprintln!("ruststack attach: holding the attachment; press Ctrl-C to detach");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = hold => { eprintln!("ruststack attach: the server ended the attachment"); }
        }
        0
    } else {
        let mut cmd = tokio::process::Command::new(&args.command[0]);
        cmd.args(&args.command[1..]).envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let mut child = cmd.spawn().map_err(|e| format!("cannot run {}: {e}", args.command[0]))?;
        eprintln!("ruststack attach: running {:?}; invocations of {} now go to it", args.command, args.function);
        let code = tokio::select! {
            s = child.wait() => s.ok().and_then(|s| s.code()).unwrap_or(1),
            _ = tokio::signal::ctrl_c() => {
                let _ = child.kill().await;
                130
            }
        };
        eprintln!("ruststack attach: runtime exited ({code}); detaching");
        code
    };
    let _ = client.delete(format!("{base}/_ruststack/attach/{fname}?id={id}")).send().await;
    Ok(code.clamp(0, 255) as u8)
}
