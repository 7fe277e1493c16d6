//! Asynchronous invocation settings (the FunctionEventInvokeConfig operations) and the small
//! settings infrastructure tools read (code signing, runtime management, recursion).

use super::*;

/// The qualifier key of an event invoke config: `$LATEST`, a version or an alias that exists.
pub(super) fn event_invoke_key(
    ctx: &Ctx,
    rec: &FunctionRecord,
    name: &str,
    q: Option<&str>,
) -> Result<String, AwsError> {
    Ok(existing_qualifier(ctx, rec, name, q)?.unwrap_or_else(|| "$LATEST".into()))
}

pub(super) fn event_invoke_json(ctx: &Ctx, name: &str, key: &str, c: &EventInvokeConfig) -> Value {
    let mut v = json!({
        "LastModified": c.last_modified,
        "FunctionArn": arn::function_arn(&ctx.scope.region, &ctx.scope.account, name, Some(key)),
    });
    if let Some(n) = c.max_retry_attempts {
        v["MaximumRetryAttempts"] = json!(n);
    }
    if let Some(n) = c.max_event_age {
        v["MaximumEventAgeInSeconds"] = json!(n);
    }
    v["DestinationConfig"] = c.destinations.clone().unwrap_or_else(|| json!({"OnSuccess": {}, "OnFailure": {}}));
    v
}

pub(super) fn no_event_invoke(ctx: &Ctx, name: &str, key: &str) -> AwsError {
    AwsError::not_found(format!(
        "The function {} doesn't have an EventInvokeConfig",
        arn::function_arn(&ctx.scope.region, &ctx.scope.account, name, Some(key))
    ))
}

/// PutFunctionEventInvokeConfig (`replace`: absent settings are removed) and
/// UpdateFunctionEventInvokeConfig (absent settings are kept).
pub(super) fn put_event_invoke(ctx: &Ctx, raw: &str, body: &[u8], replace: bool) -> R {
    let (name, q) = function_target(ctx, raw)?;
    let m = parse_body(body)?;
    let ranged = |key: &str, lo: u64, hi: u64| -> Result<Option<u32>, AwsError> {
        match opt_u64(&m, key)? {
            Some(n) if !(lo..=hi).contains(&n) => Err(AwsError::invalid_param(format!(
                "1 validation error detected: Value '{n}' at '{}' failed to satisfy constraint: Member must have value between {lo} and {hi}",
                lower_first(key)
            ))),
            n => Ok(n.map(|n| n as u32)),
        }
    };
    let retries = ranged("MaximumRetryAttempts", 0, 2)?;
    let age = ranged("MaximumEventAgeInSeconds", 60, 21600)?;
    let destinations = match opt_obj(&m, "DestinationConfig")? {
        None => None,
        Some(d) => {
            let mut out = json!({"OnSuccess": {}, "OnFailure": {}});
            for side in ["OnSuccess", "OnFailure"] {
                if let Some(dest) = opt_obj(d, side)?.map(|o| opt_str(o, "Destination")).transpose()?.flatten() {
                    if !dest.is_empty() && !dest.starts_with("arn:") {
                        return Err(AwsError::invalid_param(format!("The destination ARN {dest} is invalid.")));
                    }
                    out[side] = json!({"Destination": dest});
                }
            }
            Some(out)
        }
    };
    let rec = get_record(ctx, &name)?;
    let key = event_invoke_key(ctx, &rec, &name, q.as_deref())?;
    let now = crate::aws::epoch_ms() as f64 / 1000.0;
    let (_, c) = update_record(ctx, &name, |rec| {
        let c = if replace {
            rec.event_invoke.insert(key.clone(), EventInvokeConfig::default());
            rec.event_invoke.get_mut(&key)
        } else {
            rec.event_invoke.get_mut(&key)
        }
        .ok_or_else(|| no_event_invoke(ctx, &name, &key))?;
        if replace || retries.is_some() {
            c.max_retry_attempts = retries;
        }
        if replace || age.is_some() {
            c.max_event_age = age;
        }
        if replace || destinations.is_some() {
            c.destinations = destinations.clone();
        }
        c.last_modified = now;
        Ok(c.clone())
    })?;
    ok_json(StatusCode::OK, event_invoke_json(ctx, &name, &key, &c))
}

pub(super) fn get_event_invoke(ctx: &Ctx, raw: &str) -> R {
    let (name, q) = function_target(ctx, raw)?;
    let rec = get_record(ctx, &name)?;
    let key = event_invoke_key(ctx, &rec, &name, q.as_deref())?;
    let c = rec.event_invoke.get(&key).ok_or_else(|| no_event_invoke(ctx, &name, &key))?;
    ok_json(StatusCode::OK, event_invoke_json(ctx, &name, &key, c))
}

pub(super) fn delete_event_invoke(ctx: &Ctx, raw: &str) -> R {
    let (name, q) = function_target(ctx, raw)?;
    let rec = get_record(ctx, &name)?;
    let key = event_invoke_key(ctx, &rec, &name, q.as_deref())?;
    update_record(ctx, &name, |rec| {
        rec.event_invoke.remove(&key).map(|_| ()).ok_or_else(|| no_event_invoke(ctx, &name, &key))
    })?;
    Ok(http_util::empty(StatusCode::NO_CONTENT))
}

pub(super) fn list_event_invoke(ctx: &Ctx, raw: &str) -> R {
    let name = unqualified(raw)?;
    let rec = get_record(ctx, &name)?;
    let items = rec.event_invoke.iter().map(|(k, c)| (k.clone(), event_invoke_json(ctx, &name, k, c))).collect();
    page_response(ctx, "FunctionEventInvokeConfigs", items)
}

// ---------- settings read by infrastructure tools ----------

pub(super) fn code_signing_config(ctx: &Ctx, raw: &str) -> R {
    let name = unqualified(raw)?;
    get_record(ctx, &name)?;
    ok_json(StatusCode::OK, json!({"CodeSigningConfigArn": "", "FunctionName": name}))
}

pub(super) fn runtime_management_config(ctx: &Ctx, raw: &str) -> R {
    let (name, q) = function_target(ctx, raw)?;
    let rec = get_record(ctx, &name)?;
    config_for(ctx, &rec, q.as_deref())?;
    let arn = arn::function_arn(&ctx.scope.region, &ctx.scope.account, &name, Some(q.as_deref().unwrap_or("$LATEST")));
    ok_json(StatusCode::OK, json!({"UpdateRuntimeOn": "Auto", "FunctionArn": arn}))
}

pub(super) fn get_recursion(ctx: &Ctx, raw: &str) -> R {
    let name = unqualified(raw)?;
    let rec = get_record(ctx, &name)?;
    ok_json(StatusCode::OK, json!({"RecursiveLoop": rec.recursive_loop.as_deref().unwrap_or("Terminate")}))
}

pub(super) fn put_recursion(ctx: &Ctx, raw: &str, body: &[u8]) -> R {
    let name = unqualified(raw)?;
    let m = parse_body(body)?;
    let v = req_str(&m, "RecursiveLoop")?;
    if v != "Allow" && v != "Terminate" {
        return Err(AwsError::invalid_param(format!(
            "1 validation error detected: Value '{v}' at 'recursiveLoop' failed to satisfy constraint: Member must satisfy enum value set: [Allow, Terminate]"
        )));
    }
    update_record(ctx, &name, |rec| {
        rec.recursive_loop = Some(v.clone());
        Ok(())
    })?;
    ok_json(StatusCode::OK, json!({"RecursiveLoop": v}))
}
