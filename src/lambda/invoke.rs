//! The invoke path of the Lambda service: resolve the function and qualifier to an engine
//! [`EnvSpec`] (cached by pool key), call [`crate::engine::Engine::invoke`], and render its
//! outcome as AWS answers it (payload, function error, START/END/REPORT log lines).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};

use super::Lambda;
use super::model::{FunctionConfig, Scope};
use crate::aws::AwsError;
use crate::engine::{Architecture, Death, Ended, EnvSpec, ImageConfig, Outcome, PackageType, Request, RunOutcome};

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

/// Which sandbox kind runs a function, and why.
pub(crate) fn choose(lambda: &Lambda, c: &FunctionConfig, force_docker: Option<&str>) -> (crate::engine::SandboxKind, &'static str) {
    let force = force_docker.is_some_and(|v| !v.eq_ignore_ascii_case("false"));
    lambda.engine.choose(package_type(c), c.runtime.as_deref(), !c.layers.is_empty(), force)
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

fn package_type(c: &FunctionConfig) -> PackageType {
    if c.package_type == "Image" { PackageType::Image } else { PackageType::Zip }
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
        architecture: if c.architectures.iter().any(|a| a == "arm64") { Architecture::Arm64 } else { Architecture::X86_64 },
        package: package_type(c),
        image_uri: c.image_uri.clone(),
        image_config: image_config(c.image_config.as_ref()),
        code_dir: None,
        layer_dirs: Vec::new(),
        region: scope.region.clone(),
        account: scope.account.clone(),
        log_group: format!("/aws/lambda/{}", c.name),
        kind: crate::engine::SandboxKind::Subprocess,
        reason: "",
        provisioned: false,
    }
}

fn build_spec(lambda: &Lambda, target: &Target, scope: &Scope, key: String) -> Result<Arc<EnvSpec>, AwsError> {
    let c = &target.config;
    let (kind, reason) = choose(lambda, c, target.tags_force_docker.as_deref());
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
    let mut spec = spec_of(c, key.clone(), scope);
    spec.code_dir = code_dir;
    spec.layer_dirs = layer_dirs;
    spec.kind = kind;
    spec.reason = reason;
    let spec = Arc::new(spec);
    lambda.specs.lock().insert(key, spec.clone());
    Ok(spec)
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
    // In a task of its own, like the engine's part: a caller that hangs up still gets the
    // invocation's log lines written.
    let target = target.clone();
    let engine = lambda.engine.clone();
    let logs = lambda.logs.clone();
    let task = tokio::spawn(async move {
        let request_id = call.request_id.clone().unwrap_or_else(crate::aws::request_id);
        let req = Request {
            request_id: request_id.clone(),
            payload,
            invoked_arn: target.invoked_arn.clone(),
            client_context: call.client_context,
            cognito_identity: call.cognito_identity,
            tenant_id: call.tenant_id,
        };
        let run = engine.invoke(spec.clone(), req).await?;
        let (group, stream) = (run.log_group.clone(), run.log_stream.clone());
        let out = finish(&request_id, &target, run);
        logs.put_lines(&spec.region, &group, &stream, &out.log);
        Ok(out)
    });
    task.await.map_err(|e| AwsError::service(format!("the invocation failed: {e}")))?
}

/// Turns the run into the caller's response and the invocation's log lines.
fn finish(request_id: &str, target: &Target, run: RunOutcome) -> InvokeOutput {
    let (body, content_type, function_error, error_line) = match run.ended {
        Ended::Posted(Outcome::Response { body, content_type }) => (body, content_type, false, None),
        Ended::Posted(Outcome::Error { body, .. }) => (body, None, true, None),
        Ended::Posted(Outcome::TooLarge) => {
            let msg = format!(
                "Response payload size exceeded maximum allowed payload size ({} bytes).",
                crate::engine::MAX_RESPONSE_BYTES
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
    let output = run.output;
    let c = &target.config;
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

#[cfg(test)]
mod tests {
    use super::unit_random;

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
