//! Provisioned concurrency (Put/Get/Delete/ListProvisionedConcurrencyConfig): environments of
//! a published version or alias started and initialized ahead (`AWS_LAMBDA_INITIALIZATION_TYPE
//! =provisioned-concurrency`), kept whatever their idle time, replaced if they die, and used
//! first by its invocations, which then have no cold start. The pool does the keeping; the
//! record holds the request and its status, and the server provisions again at start.

use super::*;
use crate::engine::EnvSpec;
use crate::lambda::model::ProvisionedConfig;
use crate::lambda::store::Store;

/// Which operation asks: they word `$LATEST` differently.
#[derive(Clone, Copy, PartialEq)]
enum PcOp {
    Put,
    Other,
}

/// The qualifier of a provisioned concurrency call: a version or an alias that exists. A
/// missing function is a missing version or alias too, in AWS's words.
fn pc_key(ctx: &Ctx, name: &str, q: Option<&str>, op: PcOp) -> Result<(FunctionRecord, String), AwsError> {
    let q = match q {
        None => {
            return Err(AwsError::new(
                StatusCode::BAD_REQUEST,
                "ValidationException",
                "1 validation error detected: Value null at 'qualifier' failed to satisfy constraint: Member must not be null",
            ));
        }
        Some("$LATEST") if op == PcOp::Put => {
            return Err(AwsError::invalid_param(
                "Provisioned Concurrency Configs cannot be applied to unpublished function versions.",
            ));
        }
        Some("$LATEST") => {
            return Err(AwsError::invalid_param(
                "The function resource provided must be an alias or a published version.",
            ));
        }
        Some(q) => q,
    };
    let rec = ctx.store().get_function(name).ok_or_else(|| super::targets::missing_qualifier(ctx, name, q))?;
    if !super::targets::qualifier_exists(&rec, q) {
        return Err(super::targets::missing_qualifier(ctx, name, q));
    }
    Ok((rec, q.to_string()))
}

/// AWS's conflict and limit rules for asking `n` environments for `rec`'s `key`.
fn check_provisioned_request(ctx: &Ctx, rec: &FunctionRecord, key: &str, n: u64) -> Result<(), AwsError> {
    if let Some(alias) = rec.aliases.get(key) {
        if rec.provisioned.contains_key(&alias.function_version) {
            return Err(AwsError::conflict(
                "Alias can't be used for Provisioned Concurrency configuration on an already Provisioned version",
            ));
        }
    } else if rec.aliases.values().any(|a| a.function_version == key && rec.provisioned.contains_key(&a.name)) {
        return Err(AwsError::conflict("Version is pointed by a Provisioned Concurrency alias"));
    }
    // Everything else this function keeps provisioned counts too.
    let others: u64 =
        rec.provisioned.iter().filter(|(k, _)| k.as_str() != key).map(|(_, c)| u64::from(c.requested)).sum();
    match rec.reserved_concurrency {
        Some(reserved) if others + n > u64::from(reserved) => Err(AwsError::invalid_param(
            "Requested Provisioned Concurrency should not be greater than the reservedConcurrentExecution for function",
        )),
        Some(_) => Ok(()),
        None => {
            let unreserved = ACCOUNT_CONCURRENCY.saturating_sub(ctx.store().reserved_concurrency_total(None));
            if others + n > unreserved {
                Err(AwsError::invalid_param(format!(
                    "Specified ConcurrentExecutions for function is greater than account's unreserved concurrency [{unreserved}]."
                )))
            } else if unreserved - (others + n) < UNRESERVED_MIN {
                Err(AwsError::invalid_param(format!(
                    "Specified ConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [{UNRESERVED_MIN}]."
                )))
            } else {
                Ok(())
            }
        }
    }
}

/// The environment spec provisioned environments of `name:key` run.
fn provisioned_spec(lambda: &Lambda, scope: &Scope, name: &str, key: &str) -> Result<Arc<EnvSpec>, AwsError> {
    // An alias's main version: its RoutingConfig's weights apply to invocations, not to provisioning.
    let target = invoke::resolve_main(lambda, name, Some(key), scope)?;
    let mut spec = (*invoke::spec_for_blocking(lambda, &target, scope)?).clone();
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

/// A provisioning's inputs, from its request or its record.
struct Provision {
    name: String,
    key: String,
    spec: Arc<EnvSpec>,
    n: u32,
    /// Taken before the spec looked its code up: the code is not freed before the pool has
    /// the environments on its books (as an invoke's, see [`crate::lambda::store::CodeHold`]).
    hold: Arc<crate::lambda::store::CodeHold>,
}

/// Starts (or resizes) the environments in the background; the record gets READY or FAILED.
fn spawn_provision(lambda: Arc<Lambda>, store: Arc<Store>, p: Provision) {
    let Provision { name, key, spec, n, hold } = p;
    tokio::spawn(async move {
        let result = lambda.engine.provision(spec, n as usize).await;
        drop(hold);
        match &result {
            Ok(_) => tracing::info!(function = %name, qualifier = %key, n, "provisioned concurrency ready"),
            Err(e) => tracing::warn!(function = %name, qualifier = %key, error = %e, "provisioned concurrency failed"),
        }
        // The record's file is written on the blocking pool.
        let _ = tokio::task::spawn_blocking(move || {
            store.update_function(&name, |rec| {
                if let Some(c) = rec.provisioned.get_mut(&key)
                    && c.requested == n
                {
                    (c.status, c.reason) = match &result {
                        Ok(_) => ("READY".into(), None),
                        Err(e) => ("FAILED".into(), Some(e.clone())),
                    };
                }
                Ok(())
            })
        })
        .await;
    });
}

pub(super) fn put_provisioned(ctx: &Ctx, raw: &str, input: input::PutProvisionedConcurrencyConfigRequest) -> R {
    let (name, q) = function_target(ctx, raw)?;
    // Present and at least 1: the model layer checked it.
    let n = non_negative("ProvisionedConcurrentExecutions", input.provisioned_concurrent_executions)?.unwrap_or(1);
    let (rec, key) = pc_key(ctx, &name, q.as_deref(), PcOp::Put)?;
    check_provisioned_request(ctx, &rec, &key, n)?;
    // Beyond AWS's rules: this server runs at most --lambda-max-containers at once.
    let max = ctx.lambda.cfg.lambda_max_containers as u64;
    if n > max {
        return Err(AwsError::invalid_param(format!(
            "Requested Provisioned Concurrency ({n}) exceeds the environments this server may run at once (--lambda-max-containers {max})."
        )));
    }
    let hold = ctx.lambda.stores.hold_code();
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
    spawn_provision(ctx.lambda.clone(), ctx.store(), Provision { name, key, spec, n: n as u32, hold });
    ok_json(StatusCode::ACCEPTED, pc_json(&c))
}

pub(super) fn get_provisioned(ctx: &Ctx, raw: &str) -> R {
    let (name, q) = function_target(ctx, raw)?;
    let (rec, key) = pc_key(ctx, &name, q.as_deref(), PcOp::Other)?;
    let c = rec.provisioned.get(&key).ok_or_else(not_configured)?;
    ok_json(StatusCode::OK, pc_json(c))
}

pub(super) fn delete_provisioned(ctx: &Ctx, raw: &str) -> R {
    let (name, q) = function_target(ctx, raw)?;
    let (rec, key) = pc_key(ctx, &name, q.as_deref(), PcOp::Other)?;
    // AWS answers 204 when there is nothing to delete.
    if rec.provisioned.contains_key(&key) {
        update_record(ctx, &name, |rec| {
            rec.provisioned.remove(&key);
            Ok(())
        })?;
        unprovision(ctx.lambda, &ctx.scope, &name, &key);
    }
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
                let hold = lambda.stores.hold_code();
                match provisioned_spec(lambda, &scope, &name, key) {
                    Ok(spec) => {
                        let (name, key, n) = (name.clone(), key.clone(), c.requested);
                        spawn_provision(lambda.clone(), store.clone(), Provision { name, key, spec, n, hold })
                    }
                    Err(e) => tracing::warn!(function = %name, qualifier = %key, error = %e, "cannot provision again"),
                }
            }
        }
    }
}
