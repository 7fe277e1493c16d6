//! The invoke path of the Lambda service: resolve the function and qualifier to an engine
//! [`EnvSpec`] (cached by pool key), call [`crate::engine::Engine::invoke`], and render its
//! outcome as AWS answers it (payload, function error, START/END/REPORT log lines).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};

use super::Lambda;
use super::model::{self, FunctionConfig, Scope};
use super::store::Regions;
use crate::aws::AwsError;
use crate::engine::{
    Architecture, Death, Ended, EnvSpec, ImageConfig, LogSettings, Outcome, PackageType, Request, ResponseStream,
    RunOutcome, StreamEnd,
};

/// Synchronous payload limit (6 MB).
pub const MAX_SYNC_PAYLOAD: usize = 6 * 1024 * 1024;
/// Asynchronous (Event) payload limit (1 MB).
pub const MAX_EVENT_PAYLOAD: usize = 1024 * 1024;
/// Bytes of log returned by LogType=Tail.
const TAIL_BYTES: usize = 4096;

/// The function version an invoke runs, as resolved from name and qualifier.
#[derive(Clone)]
pub struct Target {
    pub config: Arc<FunctionConfig>,
    /// `$LATEST` or the version number that runs.
    pub executed_version: String,
    /// The ARN as the caller named it (with alias or version).
    pub invoked_arn: String,
    pub tags_force_docker: Option<String>,
}

/// Resolves `name` plus an optional qualifier (version number, alias or `$LATEST`).
pub fn resolve(lambda: &Lambda, name: &str, qualifier: Option<&str>, scope: &Scope) -> Result<Target, AwsError> {
    resolve_routed(lambda, name, qualifier, scope, true)
}

/// [`resolve`] with an alias's main version, never its RoutingConfig's weighted draw (what an
/// alias's provisioned concurrency runs).
pub fn resolve_main(lambda: &Lambda, name: &str, qualifier: Option<&str>, scope: &Scope) -> Result<Target, AwsError> {
    resolve_routed(lambda, name, qualifier, scope, false)
}

fn resolve_routed(
    lambda: &Lambda,
    name: &str,
    qualifier: Option<&str>,
    scope: &Scope,
    weighted: bool,
) -> Result<Target, AwsError> {
    let not_found = || {
        let arn = crate::aws::arn::function_arn(&scope.region, &scope.account, name, qualifier);
        AwsError::not_found(format!("Function not found: {arn}"))
    };
    lambda
        .stores
        .get(&scope.region)
        .with_function(name, |rec| {
            let force = rec.tags.get("force-docker").cloned();
            let (config, executed) = match qualifier {
                None | Some("$LATEST") => (rec.latest.clone(), "$LATEST".to_string()),
                Some(q) if q.chars().all(|c| c.is_ascii_digit()) => {
                    let v: u64 = q.parse().map_err(|_| not_found())?;
                    let c = rec.versions.get(&v).ok_or_else(not_found)?;
                    (c.clone(), q.to_string())
                }
                Some(alias) => {
                    let a = rec.aliases.get(alias).ok_or_else(not_found)?;
                    // RoutingConfig: the additional version runs with its weight's probability.
                    let version = match a.additional_version() {
                        Some((extra, weight)) if weighted && unit_random() < weight => extra,
                        _ => a.function_version.clone(),
                    };
                    match version.as_str() {
                        "$LATEST" => (rec.latest.clone(), "$LATEST".to_string()),
                        v => {
                            let n: u64 = v.parse().map_err(|_| not_found())?;
                            (rec.versions.get(&n).ok_or_else(not_found)?.clone(), v.to_string())
                        }
                    }
                }
            };
            let invoked_arn = crate::aws::arn::function_arn(&scope.region, &scope.account, name, qualifier);
            Ok(Target { config, executed_version: executed, invoked_arn, tags_force_docker: force })
        })
        .ok_or_else(not_found)?
}

/// A uniform draw from [0, 1), for weighted alias routing: 53 random bits of a v4 UUID
/// (its top 64 bits hold only the 4 fixed version bits, at 48..52, which are skipped).
fn unit_random() -> f64 {
    let bits = uuid::Uuid::new_v4().as_u128();
    let high = (bits >> 80) as u64; // 48 random bits
    let low = ((bits >> 64) & 0xfff) as u64; // 12 random bits below the version nibble
    let x = ((high << 12) | low) >> 7; // 53 bits
    x as f64 / (1u64 << 53) as f64
}

/// What an invoke produced, before it is rendered as HTTP.
pub struct InvokeOutput {
    /// The invocation's request id: the function's `context.aws_request_id`, and the
    /// response's `x-amzn-RequestId`, as on AWS.
    pub request_id: String,
    pub body: Bytes,
    pub content_type: Option<String>,
    pub function_error: bool,
    /// The invocation's log (START … REPORT), for LogType=Tail.
    pub log: Vec<u8>,
}

impl InvokeOutput {
    pub fn tail_b64(&self) -> String {
        use base64::Engine;
        let start = self.log.len().saturating_sub(TAIL_BYTES);
        base64::engine::general_purpose::STANDARD.encode(&self.log[start..])
    }
}

/// Per-invoke inputs that come from the caller.
#[derive(Default, Clone)]
pub struct CallContext {
    /// A request id chosen before the call (an Event keeps its id through retries).
    pub request_id: Option<String>,
    pub client_context: Option<String>,
    pub cognito_identity: Option<String>,
    pub tenant_id: Option<String>,
    /// The caller wants the log's tail with the answer (LogType=Tail): the answer waits for
    /// the REPORT line. Otherwise a response is answered at once and its log (with the
    /// REPORT's measured memory) written right after.
    pub tail: bool,
}

/// The environment spec for a target, cached by pool key so the warm path touches no disk.
/// A spec not cached yet looks its code up (and may unpack it) on the blocking pool.
pub(crate) async fn spec_for(lambda: &Lambda, target: &Target, scope: &Scope) -> Result<Arc<EnvSpec>, AwsError> {
    let key = spec_key(target);
    if let Some(s) = lambda.specs.lock().get(&key) {
        return Ok(s.clone());
    }
    let (stores, engine, c) = (lambda.stores.clone(), lambda.engine.clone(), target.config.clone());
    let force = target.tags_force_docker.clone();
    let dirs = tokio::task::spawn_blocking(move || resolve_run(&stores, &engine, &c, force.as_deref()))
        .await
        .map_err(|e| AwsError::service(format!("the code lookup failed: {e}")))??;
    Ok(build_spec(lambda, target, scope, key, dirs))
}

/// [`spec_for`] on a thread that may wait on the disk (the blocking pool).
pub(crate) fn spec_for_blocking(lambda: &Lambda, target: &Target, scope: &Scope) -> Result<Arc<EnvSpec>, AwsError> {
    let key = spec_key(target);
    if let Some(s) = lambda.specs.lock().get(&key) {
        return Ok(s.clone());
    }
    let dirs = resolve_run(&lambda.stores, &lambda.engine, &target.config, target.tags_force_docker.as_deref())?;
    Ok(build_spec(lambda, target, scope, key, dirs))
}

/// The spec cache's key of a target: `name:version:revision`.
fn spec_key(target: &Target) -> String {
    let c = &target.config;
    // Pushed piece by piece: this runs on every invoke.
    let mut key = String::with_capacity(c.name.len() + target.executed_version.len() + c.revision_id.len() + 2);
    for part in [c.name.as_str(), ":", &target.executed_version, ":", &c.revision_id] {
        key.push_str(part);
    }
    key
}

/// Which sandbox kind runs a function, and why.
pub(crate) fn choose(
    lambda: &Lambda,
    c: &FunctionConfig,
    force_docker: Option<&str>,
) -> (crate::engine::SandboxKind, &'static str) {
    choose_on(&lambda.engine, c, force_docker)
}

/// [`choose`] by the engine (blocking: the first choice of a runtime may wait for the probe
/// of its host interpreter).
fn choose_on(
    engine: &crate::engine::Engine,
    c: &FunctionConfig,
    force_docker: Option<&str>,
) -> (crate::engine::SandboxKind, &'static str) {
    let force = force_docker.is_some_and(|v| !v.eq_ignore_ascii_case("false"));
    engine.choose(package_type(c), c.runtime.as_deref(), !c.layers.is_empty(), force)
}

/// The image a function's Docker environments run, if Docker runs it.
pub(crate) fn docker_image(
    lambda: &Lambda,
    c: &FunctionConfig,
    tags: &std::collections::BTreeMap<String, String>,
) -> Option<String> {
    match choose(lambda, c, tags.get("force-docker").map(String::as_str)).0 {
        crate::engine::SandboxKind::Docker => {
            Some(lambda.engine.image_for(package_type(c), c.image_uri.as_deref(), c.runtime.as_deref()))
        }
        _ => None,
    }
}

/// The one conversion from the stored package type to the engine's.
fn package_type(c: &FunctionConfig) -> PackageType {
    match c.package_type {
        model::PackageType::Zip => PackageType::Zip,
        model::PackageType::Image => PackageType::Image,
    }
}

/// ImageConfig as stored (AWS's JSON): empty lists and strings mean "the image's own".
fn image_config(v: Option<&Value>) -> ImageConfig {
    let strings = |key: &str| -> Option<Vec<String>> {
        let list = v?.get(key)?.as_array()?;
        Some(list.iter().filter_map(|s| s.as_str().map(str::to_string)).collect::<Vec<_>>()).filter(|l| !l.is_empty())
    };
    ImageConfig {
        entry_point: strings("EntryPoint"),
        command: strings("Command"),
        working_directory: v
            .and_then(|v| v.get("WorkingDirectory"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string),
    }
}

/// The engine's plain-data view of a function version (code not unpacked: see [`spec_for`]).
pub(crate) fn spec_of(c: &FunctionConfig, key: String, scope: &Scope) -> EnvSpec {
    EnvSpec {
        key,
        function: c.name.clone(),
        version: c.version.clone(),
        runtime: c.runtime.clone(),
        handler: c.handler.clone(),
        memory_mb: c.memory_size,
        timeout: Duration::from_secs(u64::from(c.timeout)),
        environment: c.environment.clone(),
        architecture: if c.architectures.iter().any(|a| a == "arm64") {
            Architecture::Arm64
        } else {
            Architecture::X86_64
        },
        package: package_type(c),
        image_uri: c.image_uri.clone(),
        image_config: image_config(c.image_config.as_ref()),
        code_dir: None,
        layer_dirs: Vec::new(),
        live_code: false,
        live_layers: false,
        region: scope.region.clone(),
        account: scope.account.clone(),
        log_group: log_group(c),
        logging: log_settings(c.logging_config.as_ref()),
        kind: crate::engine::SandboxKind::Subprocess,
        reason: "",
        provisioned: false,
        debug: None,
    }
}

/// `LoggingConfig.LogGroup`, else `/aws/lambda/<function>`.
fn log_group(c: &FunctionConfig) -> String {
    c.logging_config
        .as_ref()
        .and_then(|l| l.get("LogGroup"))
        .and_then(Value::as_str)
        .filter(|g| !g.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| format!("/aws/lambda/{}", c.name))
}

/// The format and levels of `LoggingConfig` as stored (AWS's JSON).
fn log_settings(v: Option<&Value>) -> LogSettings {
    let get = |key: &str| v.and_then(|v| v.get(key)).and_then(Value::as_str).map(str::to_ascii_uppercase);
    let json = get("LogFormat").as_deref() == Some("JSON");
    LogSettings {
        json,
        application_level: get("ApplicationLogLevel").filter(|_| json).unwrap_or_else(|| "INFO".into()),
        system_level: get("SystemLogLevel").filter(|_| json).unwrap_or_else(|| "INFO".into()),
    }
}

/// The unpacked directory of stored code `sha` of function `c` (blocking: may unpack).
fn unpacked(stores: &Regions, c: &FunctionConfig, sha: &str) -> Result<std::path::PathBuf, AwsError> {
    stores.code_dir(sha).map_err(|e| match e {
        // The package was checked and unpacked when it was uploaded: what fails now is
        // the data directory, never the zip.
        crate::lambda::code::CodeError::Io(io) => {
            let why = stores.damaged(sha).unwrap_or_else(|| {
                if io.kind() == std::io::ErrorKind::NotFound {
                    format!("the stored code blob {} is missing", stores.blob_path(sha).display())
                } else {
                    format!("it cannot be unpacked from {}: {io}", stores.blob_path(sha).display())
                }
            });
            AwsError::service(format!(
                "The stored code of function {} version {} (digest {sha}) is missing or unusable: {why}. \
                 Upload the code again (UpdateFunctionCode) to repair it.",
                c.name, c.version
            ))
        }
        e => AwsError::new(
            http::StatusCode::BAD_GATEWAY,
            "InvalidZipFileException",
            format!("Lambda was unable to unzip the package: {e}"),
        ),
    })
}

/// The directories of `c`'s layers, in the function's order (blocking: may unpack).
/// Hot-reload layers run from their directories in place.
pub(crate) fn layer_dirs(stores: &Regions, c: &FunctionConfig) -> Result<Vec<std::path::PathBuf>, AwsError> {
    c.layers
        .iter()
        .map(|l| match &l.hot_reload_dir {
            Some(dir) => Ok(std::path::PathBuf::from(dir)),
            None => unpacked(stores, c, &l.sha_hex),
        })
        .collect()
}

/// What a version runs with: the sandbox kind (and why), its code's directory (none for an
/// image) and its layers'. Blocking: may unpack, and may wait for a host interpreter's probe.
/// Hot-reload code and layers run from their directories in place.
fn resolve_run(
    stores: &Regions,
    engine: &crate::engine::Engine,
    c: &FunctionConfig,
    force_docker: Option<&str>,
) -> Result<RunWith, AwsError> {
    let code_dir = match (&c.hot_reload_dir, c.package_type == model::PackageType::Zip) {
        (Some(dir), true) => Some(std::path::PathBuf::from(dir)),
        (None, true) => Some(unpacked(stores, c, &c.code_sha_hex)?),
        _ => None,
    };
    let layer_dirs = layer_dirs(stores, c)?;
    let (kind, reason) = choose_on(engine, c, force_docker);
    Ok(RunWith { kind, reason, code_dir, layer_dirs })
}

/// See [`resolve_run`].
struct RunWith {
    kind: crate::engine::SandboxKind,
    reason: &'static str,
    code_dir: Option<std::path::PathBuf>,
    layer_dirs: Vec<std::path::PathBuf>,
}

fn build_spec(lambda: &Lambda, target: &Target, scope: &Scope, key: String, run: RunWith) -> Arc<EnvSpec> {
    let c = &target.config;
    let RunWith { kind, reason, code_dir, layer_dirs } = run;
    tracing::info!(function = %c.name, executor = ?kind, reason, "executor chosen");
    let mut spec = spec_of(&with_service_endpoints(c, &lambda.cfg), key.clone(), scope);
    if c.hot_reload_dir.is_some() || c.layers.iter().any(|l| l.hot_reload_dir.is_some()) {
        // No `__pycache__` written into the user's directory (a host process could), and no
        // bytecode cached by a one-second mtime that an edit within that second would defeat.
        spec.environment.entry("PYTHONDONTWRITEBYTECODE".into()).or_insert_with(|| "1".into());
    }
    spec.live_code = c.hot_reload_dir.is_some() && code_dir.is_some();
    spec.code_dir = code_dir;
    spec.layer_dirs = layer_dirs;
    spec.live_layers = c.layers.iter().any(|l| l.hot_reload_dir.is_some());
    spec.kind = kind;
    spec.reason = reason;
    spec.debug = lambda.cfg.debug_port(&c.name, &scope.region).map(|port| crate::engine::debug::DebugSpec { port });
    let spec = Arc::new(spec);
    lambda.specs.lock().insert(key, spec.clone());
    spec
}

/// `--service-endpoint` variables (`AWS_ENDPOINT_URL_<SERVICE>`) join the function's own, which win,
/// so every sandbox sees them through the one environment path.
fn with_service_endpoints(c: &Arc<FunctionConfig>, cfg: &crate::config::Config) -> Arc<FunctionConfig> {
    let vars = cfg.service_endpoint_env().unwrap_or_default();
    if vars.iter().all(|(k, _)| c.environment.contains_key(k)) {
        return c.clone();
    }
    let mut owned = FunctionConfig::clone(c);
    for (k, v) in vars {
        owned.environment.entry(k).or_insert(v);
    }
    Arc::new(owned)
}

fn error_body(error_type: &str, message: String) -> Bytes {
    Bytes::from(serde_json::to_vec(&json!({"errorMessage": message, "errorType": error_type})).unwrap_or_default())
}

/// Runs one invocation synchronously. A streamed response is collected into one body, as
/// AWS buffers it for Invoke (over the synchronous limit, the invocation fails).
pub async fn invoke(
    lambda: &Lambda,
    target: &Target,
    scope: &Scope,
    payload: Bytes,
    call: CallContext,
) -> Result<InvokeOutput, AwsError> {
    match invoke_streaming(lambda, target, scope, payload, call).await? {
        Answer::Whole(out) => Ok(out),
        Answer::Stream(s) => Ok(s.collect().await),
    }
}

/// An invocation's answer: whole, or streamed by the runtime as it writes it.
pub enum Answer {
    Whole(InvokeOutput),
    Stream(StreamingOutput),
}

/// A response the function streams: its chunks as they come, then the invocation's end
/// (success, or the error the runtime reported mid-stream, with the log).
pub struct StreamingOutput {
    pub request_id: String,
    pub content_type: Option<String>,
    /// The body's chunks; closed once the body is over (the end is ready then).
    pub chunks: tokio::sync::mpsc::Receiver<Bytes>,
    /// The invocation's end; its `body` is empty unless it ended in an error.
    pub end: tokio::sync::oneshot::Receiver<InvokeOutput>,
}

impl StreamingOutput {
    /// The whole body, then the end (Invoke and BUFFERED URLs of a streaming function).
    pub async fn collect(mut self) -> InvokeOutput {
        let mut body = Vec::new();
        let mut too_large = false;
        while let Some(c) = self.chunks.recv().await {
            if body.len() + c.len() > crate::engine::MAX_RESPONSE_BYTES {
                too_large = true;
            } else if !too_large {
                body.extend_from_slice(&c);
            }
        }
        let mut out = self.end.await.unwrap_or_else(|_| lost(&self.request_id));
        if too_large && !out.function_error {
            let msg = format!(
                "Response payload size exceeded maximum allowed payload size ({} bytes).",
                crate::engine::MAX_RESPONSE_BYTES
            );
            out.body = error_body("Function.ResponseSizeTooLarge", msg);
            out.function_error = true;
        } else if !out.function_error {
            out.body = Bytes::from(body);
            out.content_type = self.content_type;
        }
        out
    }
}

/// The end of a stream whose invocation task was lost (it panicked).
fn lost(request_id: &str) -> InvokeOutput {
    InvokeOutput {
        request_id: request_id.to_string(),
        body: error_body("ServiceException", "the streaming invocation was lost".into()),
        content_type: None,
        function_error: true,
        log: Vec::new(),
    }
}

/// Runs one invocation; a response the runtime streams is handed on as it streams.
pub async fn invoke_streaming(
    lambda: &Lambda,
    target: &Target,
    scope: &Scope,
    payload: Bytes,
    call: CallContext,
) -> Result<Answer, AwsError> {
    // The code directory the spec names is not freed before the pool has it on its books:
    // held from before the lookup until the engine has leased an environment.
    let hold = crate::engine::UntilLeased(Some(lambda.stores.hold_code()));
    let spec = spec_for(lambda, target, scope).await?;
    let gone = super::hot_reload::missing_dir(&target.config).await;
    let request_id = call.request_id.clone().unwrap_or_else(crate::aws::request_id);
    if let Some(dir) = gone {
        // The directory the code runs from is gone: an init error, no environment.
        let (error_type, message) = super::hot_reload::missing_error(&target.config, &dir);
        let run = RunOutcome {
            ended: Ended::Died(Death::InitError {
                body: error_body(&error_type, message.clone()),
                error_type: Some(error_type),
            }),
            duration: Duration::ZERO,
            init_duration: None,
            output: format!("[hot-reload] {message}\n").into_bytes(),
            max_memory_mb: 0,
            log_group: spec.log_group.clone(),
            log_stream: format!(
                "{}/[{}]{}",
                chrono::Utc::now().format("%Y/%m/%d"),
                spec.version,
                uuid::Uuid::new_v4().simple()
            ),
        };
        let (group, stream) = (run.log_group.clone(), run.log_stream.clone());
        let out = finish(&request_id, target, &spec.logging, run);
        lambda.logs.put_lines(&spec.region, &group, &stream, &out.log);
        return Ok(Answer::Whole(out));
    }
    // The rendering and the log write run in the engine's task for the invocation: a caller
    // that hangs up still gets the invocation's log lines written. Its copy of the target
    // gives its ARN to the request (the rendering does not read it).
    let mut target = target.clone();
    let req = Request {
        request_id: request_id.clone(),
        payload,
        invoked_arn: std::mem::take(&mut target.invoked_arn),
        client_context: call.client_context,
        cognito_identity: call.cognito_identity,
        tenant_id: call.tenant_id,
        until_leased: hold,
    };
    let logs = lambda.logs.clone();
    let hot_reload = lambda.hot_reload.shared();
    // A response answered before its log is written: log readers wait for that write (a
    // caller that reads the log right after its answer finds it there).
    let written = Arc::new(parking_lot::Mutex::new(None));
    let early = {
        let (request_id, logs, written, tail) = (request_id.clone(), logs.clone(), written.clone(), call.tail);
        move |o: &Outcome| match o {
            Outcome::Response { body, content_type } if !tail => {
                *written.lock() = Some(logs.pending());
                Some(Answer::Whole(InvokeOutput {
                    request_id,
                    body: body.clone(),
                    content_type: content_type.clone(),
                    function_error: false,
                    log: Vec::new(),
                }))
            }
            _ => None,
        }
    };
    lambda
        .engine
        .invoke_early(spec.clone(), req, early, move |run| {
            let _written = written.lock().take();
            let mut run = run?;
            // The first invocation on an environment a code change started says which change.
            if run.init_duration.is_some()
                && let Some(note) = hot_reload.take_note(&spec.region, &spec.function)
            {
                run.output.splice(0..0, note.into_bytes());
            }
            let mut run = match run.ended {
                Ended::Streaming(stream) => {
                    return Ok(Answer::Stream(relay(stream, request_id, target, spec, logs)));
                }
                ended => RunOutcome { ended, ..run },
            };
            // Taken, not copied: the rendering does not read them.
            let (group, stream) = (std::mem::take(&mut run.log_group), std::mem::take(&mut run.log_stream));
            let out = finish(&request_id, &target, &spec.logging, run);
            logs.put_lines(&spec.region, &group, &stream, &out.log);
            Ok(Answer::Whole(out))
        })
        .await
}

/// Hands a streamed response's chunks on to the caller and, at its end, renders and writes
/// the invocation's log, in a task of its own: a caller that hangs up mid-stream stops getting
/// chunks, but the function runs to its end and its log is written all the same.
fn relay(
    mut stream: ResponseStream,
    request_id: String,
    target: Target,
    spec: Arc<EnvSpec>,
    logs: Arc<crate::logs::Logs>,
) -> StreamingOutput {
    let (tx, chunks) = tokio::sync::mpsc::channel(16);
    let (end_tx, end) = tokio::sync::oneshot::channel();
    let content_type = stream.content_type.clone();
    let id = request_id.clone();
    tokio::spawn(async move {
        let mut tx = Some(tx);
        while let Some(c) = stream.chunk().await {
            if let Some(t) = &tx
                && t.send(c).await.is_err()
            {
                tx = None;
            }
        }
        drop(tx);
        let out = match stream.end().await {
            Ok(run) => {
                let (group, log_stream) = (run.log_group.clone(), run.log_stream.clone());
                let out = finish(&id, &target, &spec.logging, run);
                logs.put_lines(&spec.region, &group, &log_stream, &out.log);
                out
            }
            Err(_) => lost(&id),
        };
        let _ = end_tx.send(out);
    });
    StreamingOutput { request_id, content_type, chunks, end }
}

/// How an invocation ended, as its REPORT (and, in JSON, its platform records) says it.
struct Status {
    /// `success`, `error` or `timeout`.
    status: &'static str,
    error_type: Option<String>,
    /// Whether the text REPORT line says it (`Status: …`): only for what the platform
    /// detected (a timeout, a runtime that exited), not for an error the function posted.
    in_text_report: bool,
}

/// Turns the run into the caller's response and the invocation's log lines.
///
/// Text format, as AWS writes it: `START`, the function's output, the platform's error lines
/// (`<time> <request id> Task timed out after N.NN seconds`, or `RequestId: … Error: Runtime
/// exited with error: …` then `Runtime.ExitError`), `END`, then `REPORT` (with `Status:` and
/// `Error Type:` when the platform ended the invocation). JSON format: `platform.start`, the
/// function's records filtered by ApplicationLogLevel, `platform.runtimeDone` (DEBUG) and
/// `platform.report` with its metrics, filtered by SystemLogLevel.
fn finish(request_id: &str, target: &Target, logging: &LogSettings, run: RunOutcome) -> InvokeOutput {
    let platform =
        |error_type: &str| Status { status: "error", error_type: Some(error_type.into()), in_text_report: true };
    let (body, content_type, function_error, error_lines, status) = match run.ended {
        Ended::Posted(Outcome::Response { body, content_type }) => {
            (body, content_type, false, None, Status { status: "success", error_type: None, in_text_report: false })
        }
        Ended::Posted(Outcome::Error { body, error_type }) => {
            // The Lambda-Runtime-Function-Error-Type header, else the errorType of the body.
            let error_type = error_type.or_else(|| {
                let v: Value = serde_json::from_slice(&body).ok()?;
                v.get("errorType").and_then(Value::as_str).map(str::to_string)
            });
            (body, None, true, None, Status { status: "error", error_type, in_text_report: false })
        }
        Ended::Posted(Outcome::TooLarge) => {
            let msg = format!(
                "Response payload size exceeded maximum allowed payload size ({} bytes).",
                crate::engine::MAX_RESPONSE_BYTES
            );
            let line = format!("{} {request_id} {msg}", log_time());
            let t = "Function.ResponseSizeTooLarge";
            (error_body(t, msg), None, true, Some(line), platform(t))
        }
        Ended::Died(Death::InitError { body, error_type }) => {
            let t = error_type.unwrap_or_else(|| "Runtime.Unknown".into());
            (body, None, true, None, Status { status: "error", error_type: Some(t), in_text_report: false })
        }
        Ended::Died(Death::Exited(why)) => {
            let msg = format!("RequestId: {request_id} Error: Runtime exited with error: {why}");
            let lines = format!("{msg}\nRuntime.ExitError");
            (error_body("Runtime.ExitError", msg), None, true, Some(lines), platform("Runtime.ExitError"))
        }
        Ended::Died(Death::OutOfMemory(why)) => {
            // AWS: the ExitError message with the OutOfMemory type, in the body, the log's
            // error lines and the REPORT's `Error Type`.
            let msg = format!("RequestId: {request_id} Error: Runtime exited with error: {why}");
            let lines = format!("{msg}\nRuntime.OutOfMemory");
            (error_body("Runtime.OutOfMemory", msg), None, true, Some(lines), platform("Runtime.OutOfMemory"))
        }
        Ended::TimedOut { timeout } => {
            let secs = timeout.as_secs_f64();
            let msg = format!("RequestId: {request_id} Error: Task timed out after {secs:.2} seconds");
            let line = format!("{} {request_id} Task timed out after {secs:.2} seconds", log_time());
            let st = Status { status: "timeout", error_type: Some("Sandbox.Timedout".into()), in_text_report: true };
            (error_body("Sandbox.Timedout", msg), None, true, Some(line), st)
        }
        Ended::StreamEnded(StreamEnd::Complete) => {
            (Bytes::new(), None, false, None, Status { status: "success", error_type: None, in_text_report: false })
        }
        Ended::StreamEnded(StreamEnd::Error { body, error_type }) => {
            let error_type = error_type.or_else(|| {
                let v: Value = serde_json::from_slice(&body).ok()?;
                v.get("errorType").and_then(Value::as_str).map(str::to_string)
            });
            (body, None, true, None, Status { status: "error", error_type, in_text_report: false })
        }
        Ended::StreamEnded(StreamEnd::TooLarge) => {
            let msg = format!(
                "Response payload size exceeded maximum allowed payload size ({} bytes).",
                crate::engine::MAX_STREAM_BYTES
            );
            let line = format!("{} {request_id} {msg}", log_time());
            let t = "Function.ResponseSizeTooLarge";
            (error_body(t, msg), None, true, Some(line), platform(t))
        }
        Ended::StreamEnded(StreamEnd::Truncated(why)) => {
            let msg = format!("RequestId: {request_id} Error: the runtime's response stream broke off: {why}");
            let t = "Runtime.TruncatedResponse";
            (error_body(t, msg.clone()), None, true, Some(msg), platform(t))
        }
        Ended::Streaming(_) | Ended::Posted(Outcome::Streaming(_)) => {
            let msg = format!("RequestId: {request_id} Error: the response stream was not read to its end");
            (error_body("Runtime.Unknown", msg), None, true, None, platform("Runtime.Unknown"))
        }
        Ended::InitTimedOut { after } => {
            let msg = format!(
                "RequestId: {request_id} Error: Runtime did not become ready: init timed out after {:.2} seconds",
                after.as_secs_f64()
            );
            (error_body("Runtime.InitTimeout", msg.clone()), None, true, Some(msg), platform("Runtime.InitTimeout"))
        }
    };
    let c = &target.config;
    let ms = run.duration.as_secs_f64() * 1000.0;
    let billed = ms.ceil().max(1.0) as u64;
    let init_ms = run.init_duration.map(|d| d.as_secs_f64() * 1000.0);
    // An environment killed at its limit used all of it: AWS's REPORT then says
    // `Max Memory Used` = `Memory Size`.
    let max_memory_mb = if status.error_type.as_deref() == Some("Runtime.OutOfMemory") {
        u64::from(c.memory_size)
    } else {
        run.max_memory_mb
    };
    let report = Report {
        request_id,
        version: &target.executed_version,
        output: &run.output,
        status: &status,
        ms,
        billed,
        memory_mb: c.memory_size,
        max_memory_mb,
        init_ms,
        produced_bytes: body.len(),
    };
    let text = if logging.json { json_log(&report, logging) } else { text_log(&report, error_lines.as_deref()) };
    // One line per invoke is one write(2) to the server's log: keep it out of the default
    // (info) log; `RUST_LOG=info,lambda=debug` shows it. The function's own output stays at info.
    if tracing::enabled!(target: "lambda", tracing::Level::DEBUG) {
        let all = String::from_utf8_lossy(&text);
        let report = all.lines().rev().find(|l| !l.is_empty()).unwrap_or_default();
        tracing::debug!(target: "lambda", "[{}] {}", c.name, report.trim_end());
    }
    if function_error {
        tracing::info!(function = %c.name, request_id, "invocation ended with a function error");
    }
    InvokeOutput { request_id: request_id.to_string(), body, content_type, function_error, log: text }
}

/// A log line's timestamp as Lambda writes it: `2024-05-01T12:00:03.005Z`.
fn log_time() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// What an invocation's log lines report (START, the output, END and REPORT, or their JSON
/// platform records).
struct Report<'a> {
    request_id: &'a str,
    version: &'a str,
    output: &'a [u8],
    status: &'a Status,
    ms: f64,
    billed: u64,
    memory_mb: u32,
    max_memory_mb: u64,
    init_ms: Option<f64>,
    /// The response's size (`producedBytes` of the JSON `platform.runtimeDone` record).
    produced_bytes: usize,
}

/// The text-format log of an invocation; `error_lines` go after the output.
fn text_log(r: &Report, error_lines: Option<&str>) -> Vec<u8> {
    use std::io::Write;
    let Report { request_id, version, output, status, ms, billed, memory_mb, max_memory_mb, init_ms, .. } = *r;
    // Written straight into the buffer: no per-line Strings on the hot path (writes to a
    // Vec cannot fail).
    let mut text = Vec::with_capacity(output.len() + 320);
    let _ = writeln!(text, "START RequestId: {request_id} Version: {version}");
    text.extend_from_slice(output);
    if !output.is_empty() && !output.ends_with(b"\n") {
        text.push(b'\n');
    }
    if let Some(lines) = error_lines {
        let _ = writeln!(text, "{lines}");
    }
    let _ = writeln!(text, "END RequestId: {request_id}");
    let _ = write!(
        text,
        "REPORT RequestId: {request_id}\tDuration: {ms:.2} ms\tBilled Duration: {billed} ms\tMemory Size: {memory_mb} MB\tMax Memory Used: {max_memory_mb} MB\t"
    );
    if let Some(init) = init_ms {
        let _ = write!(text, "Init Duration: {init:.2} ms\t");
    }
    if status.in_text_report {
        let _ = write!(text, "Status: {}\t", status.status);
        if let Some(t) = status.error_type.as_ref().filter(|_| status.status == "error") {
            let _ = write!(text, "Error Type: {t}\t");
        }
    }
    text.push(b'\n');
    text
}

/// Rank of an application log level: the higher, the more detail. Unknown levels count as
/// INFO, as Lambda assigns them.
fn app_level_rank(level: &str) -> u8 {
    match level.to_ascii_uppercase().as_str() {
        "TRACE" => 6,
        "DEBUG" => 5,
        "WARN" | "WARNING" => 3,
        "ERROR" => 2,
        "FATAL" | "CRITICAL" => 1,
        _ => 4,
    }
}

/// Rank of a system log level (DEBUG > INFO > WARN).
fn system_level_rank(level: &str) -> u8 {
    match level {
        "DEBUG" => 3,
        "WARN" => 1,
        _ => 2,
    }
}

/// The level of one line of application output: a JSON record's `level`, else INFO.
fn line_level_rank(line: &[u8]) -> u8 {
    if line.first() != Some(&b'{') {
        return app_level_rank("INFO");
    }
    match serde_json::from_slice::<Value>(line) {
        Ok(v) => app_level_rank(v.get("level").and_then(Value::as_str).unwrap_or("INFO")),
        Err(_) => app_level_rank("INFO"),
    }
}

/// The JSON-format log of an invocation (`LogFormat=JSON`), filtered by its levels.
fn json_log(r: &Report, logging: &LogSettings) -> Vec<u8> {
    let Report { request_id, version, output, status, ms, billed, memory_mb, max_memory_mb, init_ms, produced_bytes } =
        *r;
    let mut text = Vec::with_capacity(output.len() + 640);
    let system = system_level_rank(&logging.system_level);
    // Written by hand, not through serde_json::Value (whose maps sort their keys): AWS's
    // records keep their fields in this order.
    let q = |v: &str| serde_json::to_string(v).unwrap_or_else(|_| "\"\"".into());
    let num = |v: f64| serde_json::to_string(&((v * 100.0).round() / 100.0)).unwrap_or_else(|_| "0".into());
    let record = |level: &str, kind: &str, record: String, text: &mut Vec<u8>| {
        if system_level_rank(level) <= system {
            let line = format!(r#"{{"time":"{}","type":"{kind}","record":{record}}}"#, log_time());
            text.extend_from_slice(line.as_bytes());
            text.push(b'\n');
        }
    };
    let rid = q(request_id);
    record("INFO", "platform.start", format!(r#"{{"requestId":{rid},"version":{}}}"#, q(version)), &mut text);
    let wanted = app_level_rank(&logging.application_level);
    for line in output.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        if line_level_rank(line) <= wanted {
            text.extend_from_slice(line);
            text.push(b'\n');
        }
    }
    let error_type = status.error_type.as_deref().map(|t| format!(r#","errorType":{}"#, q(t))).unwrap_or_default();
    let done = format!(
        r#"{{"requestId":{rid},"status":{}{error_type},"metrics":{{"durationMs":{},"producedBytes":{produced_bytes}}}}}"#,
        q(status.status),
        num(ms)
    );
    record("DEBUG", "platform.runtimeDone", done, &mut text);
    let init = init_ms.map(|i| format!(r#","initDurationMs":{}"#, num(i))).unwrap_or_default();
    let report = format!(
        r#"{{"requestId":{rid},"metrics":{{"durationMs":{},"billedDurationMs":{billed},"memorySizeMB":{memory_mb},"maxMemoryUsedMB":{max_memory_mb}{init}}},"status":{}{error_type}}}"#,
        num(ms),
        q(status.status)
    );
    record("INFO", "platform.report", report, &mut text);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_levels_filter_json_records_and_count_text_as_info() {
        let wanted = app_level_rank("WARN");
        assert!(line_level_rank(br#"{"level":"ERROR","message":"x"}"#) <= wanted);
        assert!(line_level_rank(br#"{"level":"WARNING","message":"x"}"#) <= wanted);
        assert!(line_level_rank(br#"{"level":"INFO","message":"x"}"#) > wanted);
        assert!(line_level_rank(b"plain text") > wanted);
        assert!(line_level_rank(br#"{"level":"CRITICAL"}"#) <= app_level_rank("FATAL"));
    }

    #[test]
    fn json_platform_records_keep_aws_field_order() {
        let logging = LogSettings { json: true, application_level: "INFO".into(), system_level: "DEBUG".into() };
        let st = Status { status: "timeout", error_type: Some("Sandbox.Timedout".into()), in_text_report: true };
        let report = Report {
            request_id: "r-1",
            version: "$LATEST",
            output: b"hi\n",
            status: &st,
            ms: 1000.004,
            billed: 1001,
            memory_mb: 128,
            max_memory_mb: 42,
            init_ms: Some(12.5),
            produced_bytes: 0,
        };
        let text = json_log(&report, &logging);
        let text = String::from_utf8(text).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with(r#"{"time":""#), "{}", lines[0]);
        assert!(lines[0].ends_with(r#"","type":"platform.start","record":{"requestId":"r-1","version":"$LATEST"}}"#));
        assert_eq!(lines[1], "hi");
        assert!(lines[2].ends_with(r#""type":"platform.runtimeDone","record":{"requestId":"r-1","status":"timeout","errorType":"Sandbox.Timedout","metrics":{"durationMs":1000.0,"producedBytes":0}}}"#), "{}", lines[2]);
        assert!(lines[3].ends_with(r#""type":"platform.report","record":{"requestId":"r-1","metrics":{"durationMs":1000.0,"billedDurationMs":1001,"memorySizeMB":128,"maxMemoryUsedMB":42,"initDurationMs":12.5},"status":"timeout","errorType":"Sandbox.Timedout"}}"#), "{}", lines[3]);
        for l in [lines[0], lines[2], lines[3]] {
            serde_json::from_str::<Value>(l).unwrap();
        }
    }

    #[test]
    fn unit_random_is_uniform_on_the_unit_interval() {
        let draws: Vec<f64> = (0..20_000).map(|_| unit_random()).collect();
        assert!(draws.iter().all(|x| (0.0..1.0).contains(x)));
        // Each tenth of [0, 1) gets its share (2,000 expected; 6 sigma is about 255).
        for bin in 0..10 {
            let lo = bin as f64 / 10.0;
            let n = draws.iter().filter(|x| **x >= lo && **x < lo + 0.1).count();
            assert!((1_700..=2_300).contains(&n), "bin {bin}: {n}");
        }
    }
}
