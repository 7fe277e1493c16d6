//! The invoke path: resolve the function and qualifier, lease an environment from the pool,
//! hand the invocation to its Runtime API endpoint, and wait for the outcome, the runtime's
//! death, or the deadline.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::json;
use tokio::sync::oneshot;

use super::Lambda;
use super::model::{FunctionConfig, Scope};
use crate::aws::AwsError;
use crate::executor::EnvSpec;
use crate::runtime_api::{Death, Invocation, Outcome};

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
                    match a.function_version.as_str() {
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
}

/// The environment spec for a target, cached by pool key so the warm path touches no disk.
pub(crate) fn spec_for(lambda: &Lambda, target: &Target, scope: &Scope) -> Result<Arc<EnvSpec>, AwsError> {
    let c = &target.config;
    let key = format!("{}:{}:{}", c.name, target.executed_version, c.revision_id);
    if let Some(s) = lambda.specs.lock().get(&key) {
        return Ok(s.clone());
    }
    // Extraction may touch the disk: keep it off the async worker threads.
    tokio::task::block_in_place(|| build_spec(lambda, target, scope, key))
}

fn build_spec(lambda: &Lambda, target: &Target, scope: &Scope, key: String) -> Result<Arc<EnvSpec>, AwsError> {
    let c = &target.config;
    let mut tags = std::collections::BTreeMap::new();
    if let Some(v) = &target.tags_force_docker {
        tags.insert("force-docker".to_string(), v.clone());
    }
    let (kind, reason) = lambda.pool.executors.choose(c, &tags);
    let unpack = |sha: &str| {
        lambda.stores.code_dir(sha).map_err(|e| {
            AwsError::new(
                http::StatusCode::BAD_GATEWAY,
                "InvalidZipFileException",
                format!("Lambda was unable to unzip the package: {e}"),
            )
        })
    };
    let code_dir = if c.package_type == "Zip" { Some(unpack(&c.code_sha_hex)?) } else { None };
    let layer_dirs = c.layers.iter().map(|l| unpack(&l.sha_hex)).collect::<Result<Vec<_>, _>>()?;
    tracing::info!(function = %c.name, executor = ?kind, reason, "executor chosen");
    let spec = Arc::new(EnvSpec {
        key: key.clone(),
        config: with_service_endpoints(c, &lambda.cfg),
        code_dir,
        layer_dirs,
        region: scope.region.clone(),
        account: scope.account.clone(),
        kind,
        reason,
        provisioned: false,
    });
    lambda.specs.lock().insert(key, spec.clone());
    Ok(spec)
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

/// Runs one invocation synchronously.
pub async fn invoke(
    lambda: &Lambda,
    target: &Target,
    scope: &Scope,
    payload: Bytes,
    call: CallContext,
) -> Result<InvokeOutput, AwsError> {
    let spec = spec_for(lambda, target, scope)?;
    // The invocation runs in a task of its own. A caller that hangs up (a client read
    // timeout, say) drops this future; had that cancelled the invocation half-way, it leaked
    // the environment (a live process outside every limit), its busy slot or its queue place
    // (for an attached runtime: an undelivered invocation left in its one-slot queue).
    let target = target.clone();
    let logs = lambda.logs.clone();
    if let Some(att) = lambda.attachments.get(&spec.config.name) {
        let task = tokio::spawn(async move {
            let out = crate::attach::invoke_attached(&att, &target, &spec, payload, call).await?;
            logs.put_lines(&spec.region, att.log.group(), att.log.stream(), &out.log);
            Ok(out)
        });
        return task.await.map_err(|e| AwsError::service(format!("the invocation failed: {e}")))?;
    }
    let pool = lambda.pool.clone();
    let init_timeout = Duration::from_secs(lambda.cfg.lambda_init_timeout);
    let task = tokio::spawn(async move {
        let request_id = call.request_id.clone().unwrap_or_else(crate::aws::request_id);
        let mut lease = pool.acquire(&spec).await?;
        let (env, outcome, healthy) = loop {
            let env = lease.env.clone();
            let span = tracing::info_span!("invoke", function = %spec.config.name, request_id = %request_id);
            let (outcome, healthy) = tracing::Instrument::instrument(
                run_on(
                    &env.endpoint,
                    &env.sandbox,
                    lease.cold.then_some(env.created),
                    &request_id,
                    &target,
                    payload.clone(),
                    call.clone(),
                    Duration::from_secs(spec.config.timeout as u64),
                    init_timeout,
                ),
                span,
            )
            .await;
            // A warm runtime that died before taking the invocation (it exited right after
            // its previous answer, say) never saw it: run it on a fresh environment instead.
            if !outcome.picked_up && !lease.cold && matches!(outcome.ended, Ended::Died(_)) {
                tracing::debug!(function = %spec.config.name, "warm runtime gone before /next: starting a fresh one");
                env.sandbox.stop().await;
                pool.release(lease, false);
                lease = pool.acquire(&spec).await?;
                continue;
            }
            break (env, outcome, healthy);
        };
        env.uses.fetch_add(1, Ordering::Relaxed);
        let out = finish(&env.log, &request_id, &target, &spec, outcome, lease.cold);
        logs.put_lines(&spec.region, env.log.group(), env.log.stream(), &out.log);
        if !healthy {
            env.sandbox.stop().await;
        }
        pool.release(lease, healthy);
        Ok(out)
    });
    task.await.map_err(|e| AwsError::service(format!("the invocation failed: {e}")))?
}

/// How one invocation ended, as seen from RustStack.
pub enum Ended {
    Posted(Outcome),
    Died(Death),
    TimedOut { timeout: Duration },
    InitTimedOut { after: Duration },
}

pub struct RunResult {
    /// Whether the runtime took the invocation (`/next`) before it ended.
    pub picked_up: bool,
    pub ended: Ended,
    pub duration: Duration,
    pub init_duration: Option<Duration>,
}

/// Hands the invocation to an endpoint and waits for its end. Returns whether the
/// environment may serve again.
#[allow(clippy::too_many_arguments)]
pub async fn run_on(
    endpoint: &crate::runtime_api::Endpoint,
    sandbox: &crate::executor::Sandbox,
    cold_since: Option<Instant>,
    request_id: &str,
    target: &Target,
    payload: Bytes,
    call: CallContext,
    timeout: Duration,
    init_timeout: Duration,
) -> (RunResult, bool) {
    let r = run_invocation(endpoint, cold_since, request_id, target, payload, call, timeout, init_timeout).await;
    sandbox.flush_logs().await;
    let healthy = matches!(r.ended, Ended::Posted(_)) && !endpoint.is_dead();
    (r, healthy)
}

#[allow(clippy::too_many_arguments)]
pub async fn run_invocation(
    endpoint: &crate::runtime_api::Endpoint,
    cold_since: Option<Instant>,
    request_id: &str,
    target: &Target,
    payload: Bytes,
    call: CallContext,
    timeout: Duration,
    init_timeout: Duration,
) -> RunResult {
    let (started_tx, started_rx) = oneshot::channel();
    let (done_tx, done_rx) = oneshot::channel();
    // AWS hands an empty payload to the runtime as `{}`.
    let payload = if payload.is_empty() { Bytes::from_static(b"{}") } else { payload };
    let inv = Invocation {
        request_id: request_id.to_string(),
        payload,
        invoked_arn: target.invoked_arn.clone(),
        trace_id: trace_id(),
        client_context: call.client_context,
        cognito_identity: call.cognito_identity,
        tenant_id: call.tenant_id,
        timeout,
        started: started_tx,
        done: done_tx,
    };
    let t0 = Instant::now();
    let mut death = endpoint.death();
    if endpoint.deliver(inv).is_err() {
        return RunResult {
            picked_up: false,
            ended: Ended::Died(Death::Exited("environment not accepting invocations".into())),
            duration: t0.elapsed(),
            init_duration: None,
        };
    }
    // Phase 1: the runtime picks the invocation up (after init on a cold start).
    let deadline = tokio::select! {
        biased;
        r = started_rx => match r {
            Ok(d) => d,
            Err(_) => return RunResult { picked_up: false, ended: Ended::Died(Death::Exited("runtime api closed".into())), duration: t0.elapsed(), init_duration: None },
        },
        d = death.wait_for(|d| d.is_some()) => {
            let d = d.map(|d| d.clone()).ok().flatten().unwrap_or(Death::Exited("unknown".into()));
            return RunResult { picked_up: false, ended: Ended::Died(d), duration: t0.elapsed(), init_duration: cold_since.map(|c| c.elapsed()) };
        }
        _ = tokio::time::sleep(init_timeout) => {
            return RunResult { picked_up: false, ended: Ended::InitTimedOut { after: init_timeout }, duration: t0.elapsed(), init_duration: cold_since.map(|c| c.elapsed()) };
        }
    };
    let picked = Instant::now();
    let init_duration = cold_since.map(|c| picked.duration_since(c));
    // Phase 2: the runtime posts a result, dies, or runs past the deadline.
    let ended = tokio::select! {
        biased;
        r = done_rx => match r {
            Ok(o) => Ended::Posted(o),
            Err(_) => Ended::Died(Death::Exited("runtime api closed".into())),
        },
        d = death.wait_for(|d| d.is_some()) => {
            Ended::Died(d.map(|d| d.clone()).ok().flatten().unwrap_or(Death::Exited("unknown".into())))
        }
        _ = tokio::time::sleep_until(deadline.into()) => {
            endpoint.clear_in_flight();
            Ended::TimedOut { timeout }
        }
    };
    RunResult { picked_up: true, ended, duration: picked.elapsed(), init_duration }
}

fn trace_id() -> String {
    let now = crate::aws::epoch_ms() / 1000;
    let r = uuid::Uuid::new_v4().simple().to_string();
    format!("Root=1-{now:08x}-{};Parent={};Sampled=0", &r[..24], &r[16..32])
}

/// Turns the run into the caller's response and the invocation's log lines.
pub fn finish(
    log: &crate::executor::LogSink,
    request_id: &str,
    target: &Target,
    spec: &EnvSpec,
    run: RunResult,
    _cold: bool,
) -> InvokeOutput {
    let (body, content_type, function_error, error_line) = match run.ended {
        Ended::Posted(Outcome::Response { body, content_type }) => (body, content_type, false, None),
        Ended::Posted(Outcome::Error { body, .. }) => (body, None, true, None),
        Ended::Posted(Outcome::TooLarge) => {
            let msg = format!(
                "Response payload size exceeded maximum allowed payload size ({} bytes).",
                crate::runtime_api::MAX_RESPONSE_BYTES
            );
            (error_body("Function.ResponseSizeTooLarge", msg.clone()), None, true, Some(msg))
        }
        Ended::Died(Death::InitError { body, .. }) => (body, None, true, None),
        Ended::Died(Death::Exited(why)) => {
            let msg = format!("RequestId: {request_id} Error: Runtime exited with error: {why}");
            (error_body("Runtime.ExitError", msg.clone()), None, true, Some(format!("{msg}\nRuntime.ExitError")))
        }
        Ended::TimedOut { timeout } => {
            let msg =
                format!("RequestId: {request_id} Error: Task timed out after {:.2} seconds", timeout.as_secs_f64());
            (error_body("Sandbox.Timedout", msg.clone()), None, true, Some(msg))
        }
        Ended::InitTimedOut { after } => {
            let msg = format!(
                "RequestId: {request_id} Error: Runtime did not become ready: init timed out after {:.2} seconds",
                after.as_secs_f64()
            );
            (error_body("Runtime.InitTimeout", msg.clone()), None, true, Some(msg))
        }
    };
    use std::io::Write;
    let output = log.take();
    let c = &spec.config;
    let ms = run.duration.as_secs_f64() * 1000.0;
    // Written straight into the buffer: no per-line Strings on the hot path (writes to a
    // Vec cannot fail).
    let mut text = Vec::with_capacity(output.len() + 320);
    let _ = writeln!(text, "START RequestId: {request_id} Version: {}", target.executed_version);
    text.extend_from_slice(&output);
    if !output.is_empty() && !output.ends_with(b"\n") {
        text.push(b'\n');
    }
    if let Some(line) = &error_line {
        let _ = writeln!(text, "{} {request_id} {line}", crate::aws::timestamp_now());
    }
    let _ = writeln!(text, "END RequestId: {request_id}");
    let report_at = text.len();
    let _ = write!(
        text,
        "REPORT RequestId: {request_id}\tDuration: {ms:.2} ms\tBilled Duration: {} ms\tMemory Size: {} MB\tMax Memory Used: {} MB\t",
        ms.ceil().max(1.0) as u64,
        c.memory_size,
        0
    );
    if let Some(init) = run.init_duration {
        let _ = write!(text, "Init Duration: {:.2} ms\t", init.as_secs_f64() * 1000.0);
    }
    // One line per invoke is one write(2) to the server's log: keep it out of the default
    // (info) log; `RUST_LOG=info,lambda=debug` shows it. The function's own output stays at info.
    if tracing::enabled!(target: "lambda", tracing::Level::DEBUG) {
        let report = String::from_utf8_lossy(&text[report_at..]);
        tracing::debug!(target: "lambda", "[{}] {}", c.name, report.trim_end());
    }
    text.push(b'\n');
    if function_error {
        tracing::info!(function = %c.name, request_id, "invocation ended with a function error");
    }
    InvokeOutput { request_id: request_id.to_string(), body, content_type, function_error, log: text }
}
