//! Provisioned concurrency (Put/Get/Delete/ListProvisionedConcurrencyConfig): environments of
//! a published version or alias started and initialized ahead (`AWS_LAMBDA_INITIALIZATION_TYPE
//! =provisioned-concurrency`), kept whatever their idle time, replaced if they die, and used
//! first by its invocations, which then have no cold start. The pool does the keeping; the
//! record holds the request and its status, and the server provisions again at start.

use super::*;
use crate::engine::EnvSpec;
use crate::lambda::model::ProvisionedConfig;
use crate::lambda::store::Store;

/// The qualifier of a provisioned concurrency call: a version or an alias that exists.
fn pc_key(ctx: &Ctx, rec: &FunctionRecord, name: &str, q: Option<&str>) -> Result<String, AwsError> {
    match q {
        None => Err(AwsError::invalid_param(
            "1 validation error detected: Value null at 'qualifier' failed to satisfy constraint: Member must not be null",
        )),
        Some("$LATEST") => Err(AwsError::invalid_param(
            "Provisioned Concurrency Configs cannot be applied to unpublished function versions.",
        )),
        Some(q) => Ok(existing_qualifier(ctx, rec, name, Some(q))?.unwrap_or_default()),
    }
}

/// The environment spec provisioned environments of `name:key` run.
fn provisioned_spec(lambda: &Lambda, scope: &Scope, name: &str, key: &str) -> Result<Arc<EnvSpec>, AwsError> {
    let target = invoke::resolve(lambda, name, Some(key), scope)?;
    let mut spec = (*invoke::spec_for(lambda, &target, scope)?).clone();
    spec.provisioned = true;
    Ok(Arc::new(spec))
}

fn not_configured() -> AwsError {
    AwsError::new(
        StatusCode::NOT_FOUND,
        "ProvisionedConcurrencyConfigNotFoundException",
        "No Provisioned Concurrency Config found for this function",
    )
}

fn pc_json(c: &ProvisionedConfig) -> Value {
    let allocated = if c.status == "READY" { c.requested } else { 0 };
    let mut v = json!({
        "RequestedProvisionedConcurrentExecutions": c.requested,
        "AvailableProvisionedConcurrentExecutions": allocated,
        "AllocatedProvisionedConcurrentExecutions": allocated,
        "Status": c.status,
        "LastModified": c.last_modified,
    });
    if let Some(r) = &c.reason {
        v["StatusReason"] = json!(r);
    }
    v
}

/// Starts (or resizes) the environments in the background; the record gets READY or FAILED.
fn spawn_provision(lambda: Arc<Lambda>, store: Arc<Store>, name: String, key: String, spec: Arc<EnvSpec>, n: u32) {
    tokio::spawn(async move {
        let result = lambda.engine.provision(spec, n as usize).await;
        match &result {
            Ok(_) => tracing::info!(function = %name, qualifier = %key, n, "provisioned concurrency ready"),
            Err(e) => tracing::warn!(function = %name, qualifier = %key, error = %e, "provisioned concurrency failed"),
        }
        let _ = store.update_function(&name, |rec| {
            if let Some(c) = rec.provisioned.get_mut(&key)
                && c.requested == n
            {
                (c.status, c.reason) = match &result {
                    Ok(_) => ("READY".into(), None),
                    Err(e) => ("FAILED".into(), Some(e.clone())),
                };
            }
            Ok(())
        });
    });
}

pub(super) fn put_provisioned(ctx: &Ctx, raw: &str, body: &[u8]) -> R {
    let (name, q) = function_target(ctx, raw)?;
    let m = parse_body(body)?;
    let n = opt_u64(&m, "ProvisionedConcurrentExecutions")?.filter(|n| *n >= 1).ok_or_else(|| {
        AwsError::invalid_param(
            "1 validation error detected: Value at 'provisionedConcurrentExecutions' failed to satisfy constraint: Member must have value greater than or equal to 1",
        )
    })?;
    let max = ctx.lambda.cfg.lambda_max_containers as u64;
    if n > max {
        return Err(AwsError::invalid_param(format!(
            "Requested Provisioned Concurrency ({n}) exceeds the environments this server may run at once (--lambda-max-containers {max})."
        )));
    }
    let rec = get_record(ctx, &name)?;
    let key = pc_key(ctx, &rec, &name, q.as_deref())?;
    let spec = provisioned_spec(ctx.lambda, &ctx.scope, &name, &key)?;
    let c = ProvisionedConfig {
        requested: n as u32,
        status: "IN_PROGRESS".into(),
        reason: None,
        last_modified: crate::aws::timestamp_now(),
    };
    update_record(ctx, &name, |rec| {
        rec.provisioned.insert(key.clone(), c.clone());
        Ok(())
    })?;
    spawn_provision(ctx.lambda.clone(), ctx.store(), name, key, spec, n as u32);
    ok_json(StatusCode::ACCEPTED, pc_json(&c))
}

pub(super) fn get_provisioned(ctx: &Ctx, raw: &str) -> R {
    let (name, q) = function_target(ctx, raw)?;
    let rec = get_record(ctx, &name)?;
    let key = pc_key(ctx, &rec, &name, q.as_deref())?;
    let c = rec.provisioned.get(&key).ok_or_else(not_configured)?;
    ok_json(StatusCode::OK, pc_json(c))
}

pub(super) fn delete_provisioned(ctx: &Ctx, raw: &str) -> R {
    let (name, q) = function_target(ctx, raw)?;
    let rec = get_record(ctx, &name)?;
    let key = pc_key(ctx, &rec, &name, q.as_deref())?;
    update_record(ctx, &name, |rec| rec.provisioned.remove(&key).map(|_| ()).ok_or_else(not_configured))?;
    unprovision(ctx.lambda, &ctx.scope, &name, &key);
    Ok(http_util::empty(StatusCode::NO_CONTENT))
}

pub(super) fn list_provisioned(ctx: &Ctx, raw: &str) -> R {
    let name = unqualified(raw)?;
    let rec = get_record(ctx, &name)?;
    let items = rec
        .provisioned
        .iter()
        .map(|(key, c)| {
            let mut v = pc_json(c);
            v["FunctionArn"] = json!(arn::function_arn(&ctx.scope.region, &ctx.scope.account, &name, Some(key)));
            (key.clone(), v)
        })
        .collect();
    page_response(ctx, "ProvisionedConcurrencyConfigs", items)
}

/// Stops keeping the environments of `name:key` (they then age out like any other).
pub(super) fn unprovision(lambda: &Arc<Lambda>, scope: &Scope, name: &str, key: &str) {
    if let Ok(spec) = provisioned_spec(lambda, scope, name, key) {
        lambda.engine.unprovision(&spec.key);
    }
}

/// At server start: provision again what the records ask for.
pub fn restore_provisioned(lambda: &Arc<Lambda>) {
    for (region, store) in lambda.stores.all() {
        let scope = Scope { region, account: lambda.cfg.account_id.clone() };
        for rec in store.list_functions() {
            let name = rec.latest.name.clone();
            for (key, c) in &rec.provisioned {
                match provisioned_spec(lambda, &scope, &name, key) {
                    Ok(spec) => {
                        spawn_provision(lambda.clone(), store.clone(), name.clone(), key.clone(), spec, c.requested)
                    }
                    Err(e) => tracing::warn!(function = %name, qualifier = %key, error = %e, "cannot provision again"),
                }
            }
        }
    }
}
