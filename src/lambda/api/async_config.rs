//! Asynchronous invocation settings (the FunctionEventInvokeConfig operations) and the small
//! settings infrastructure tools read (runtime management, recursion).

use super::*;

/// "The function doesn't exist.": Put, Update and List on a function or qualifier that is not there.
fn no_function() -> AwsError {
    AwsError::not_found("The function doesn't exist.")
}

/// The qualifier key of an event invoke config: `$LATEST`, a version or an alias that exists.
pub(super) fn event_invoke_key(rec: &FunctionRecord, q: Option<&str>) -> Result<String, AwsError> {
    match q {
        None | Some("$LATEST") => Ok("$LATEST".into()),
        Some(q) if super::targets::qualifier_exists(rec, q) => Ok(q.to_string()),
        Some(_) => Err(no_function()),
    }
}

/// The Java-style rendering AWS quotes a refused destination config in.
fn destination_config_text(d: &Map<String, Value>) -> String {
    let side = |key: &str, class: &str| match d.get(key).and_then(Value::as_object) {
        None => "null".to_string(),
        Some(o) => {
            let dest = o.get("Destination").and_then(Value::as_str).unwrap_or("null");
            format!("{class}(destination={dest})")
        }
    };
    format!(
        "DestinationConfig(onSuccess={}, onFailure={})",
        side("OnSuccess", "OnSuccess"),
        side("OnFailure", "OnFailure")
    )
}

/// Whether `dest` has the shape the model allows: empty, `kafka://…` or
/// `arn:aws…:service:[region]:[account]:resource`.
fn destination_shape_ok(dest: &str) -> bool {
    if dest.is_empty() || dest.starts_with("kafka://") {
        return true;
    }
    let parts: Vec<&str> = dest.splitn(6, ':').collect();
    let [arn_lit, partition, service, region, account, _resource] = parts.as_slice() else {
        return false;
    };
    *arn_lit == "arn"
        && partition.starts_with("aws")
        && partition.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !service.is_empty()
        && service.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && region.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && (account.is_empty() || (account.len() == 12 && account.chars().all(|c| c.is_ascii_digit())))
}

/// Checks a DestinationConfig as AWS does: the ARN's shape, a service Lambda can deliver to
/// (S3 buckets only on failure), and for a function: that it exists and is not this one.
fn check_destinations(ctx: &Ctx, name: &str, d: &Map<String, Value>) -> Result<Value, AwsError> {
    let mut out = json!({"OnSuccess": {}, "OnFailure": {}});
    for (side, member) in [("OnSuccess", "onSuccess"), ("OnFailure", "onFailure")] {
        let Some(dest) = opt_obj(d, side)?.map(|o| opt_str(o, "Destination")).transpose()?.flatten() else {
            continue;
        };
        if !destination_shape_ok(&dest) {
            return Err(super::targets::validation(
                &dest,
                &format!("destinationConfig.{member}.destination"),
                "Member must satisfy regular expression pattern: $|kafka://([^.]([a-zA-Z0-9\\-_.]{0,248}))|arn:(aws[a-zA-Z0-9-]*):([a-zA-Z0-9\\-])+:((eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\\d{1})?:(\\d{12})?:(.*)",
            ));
        }
        if dest.is_empty() {
            continue;
        }
        let service = dest.split(':').nth(2).unwrap_or_default();
        let supported =
            matches!(service, "lambda" | "sqs" | "sns" | "events") || (service == "s3" && side == "OnFailure");
        if !supported {
            return Err(AwsError::invalid_param(format!(
                "The provided destination config {} is invalid.",
                destination_config_text(d)
            )));
        }
        if service == "lambda" {
            let target = arn::parse_function_ref(&dest).ok();
            let same_place = target.as_ref().is_some_and(|t| {
                t.region.as_deref().is_none_or(|r| r == ctx.scope.region)
                    && t.account.as_deref().is_none_or(|a| a == ctx.scope.account)
            });
            if same_place && target.as_ref().is_some_and(|t| t.name == name) {
                return Err(AwsError::invalid_param("You can't specify the function as a destination for itself."));
            }
            let exists = same_place
                && target.as_ref().is_some_and(|t| {
                    ctx.store()
                        .with_function(&t.name, |rec| match t.qualifier.as_deref() {
                            None | Some("$LATEST") => true,
                            Some(q) => super::targets::qualifier_exists(rec, q),
                        })
                        .unwrap_or(false)
                });
            if !exists {
                return Err(AwsError::invalid_param(format!("The destination ARN {dest} is invalid.")));
            }
        }
        out[side] = json!({"Destination": dest});
    }
    Ok(out)
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

/// The members Put and UpdateFunctionEventInvokeConfig share.
pub(super) struct EventInvokeInput {
    retries: Option<i64>,
    age: Option<i64>,
    destinations: Option<Value>,
}

impl From<input::PutFunctionEventInvokeConfigRequest> for EventInvokeInput {
    fn from(i: input::PutFunctionEventInvokeConfigRequest) -> Self {
        EventInvokeInput {
            retries: i.maximum_retry_attempts,
            age: i.maximum_event_age_in_seconds,
            destinations: i.destination_config,
        }
    }
}

impl From<input::UpdateFunctionEventInvokeConfigRequest> for EventInvokeInput {
    fn from(i: input::UpdateFunctionEventInvokeConfigRequest) -> Self {
        EventInvokeInput {
            retries: i.maximum_retry_attempts,
            age: i.maximum_event_age_in_seconds,
            destinations: i.destination_config,
        }
    }
}

/// PutFunctionEventInvokeConfig (`replace`: absent settings are removed) and
/// UpdateFunctionEventInvokeConfig (absent settings are kept).
pub(super) fn put_event_invoke(ctx: &Ctx, raw: &str, input: EventInvokeInput, replace: bool) -> R {
    let (name, q) = function_target(ctx, raw)?;
    // Their ranges were checked by the model layer.
    let ranged =
        |key: &str, n: Option<i64>| -> Result<Option<u32>, AwsError> { Ok(non_negative(key, n)?.map(|n| n as u32)) };
    let retries = ranged("MaximumRetryAttempts", input.retries)?;
    let age = ranged("MaximumEventAgeInSeconds", input.age)?;
    let dest_config = input.destinations.as_ref().and_then(Value::as_object);
    if retries.is_none() && age.is_none() && dest_config.is_none() {
        return Err(AwsError::invalid_param("You must specify at least one of error handling or destination setting."));
    }
    let rec = ctx.store().get_function(&name).ok_or_else(no_function)?;
    let key = event_invoke_key(&rec, q.as_deref())?;
    let destinations = dest_config.map(|d| check_destinations(ctx, &name, d)).transpose()?;
    let now = crate::aws::epoch_ms() as f64 / 1000.0;
    let (_, c) = ctx
        .store()
        .update_function(&name, |rec| {
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
        })?
        .ok_or_else(no_function)?;
    ok_json(StatusCode::OK, event_invoke_json(ctx, &name, &key, &c))
}

/// The key Get and Delete look under: they do not check that the function or qualifier
/// exists, so a missing one is a missing config (with the qualifier AWS names).
fn lookup_key(q: Option<&str>) -> String {
    q.unwrap_or("$LATEST").to_string()
}

pub(super) fn get_event_invoke(ctx: &Ctx, raw: &str) -> R {
    let (name, q) = function_target(ctx, raw)?;
    let key = lookup_key(q.as_deref());
    let c = ctx
        .store()
        .with_function(&name, |rec| rec.event_invoke.get(&key).cloned())
        .flatten()
        .ok_or_else(|| no_event_invoke(ctx, &name, &key))?;
    ok_json(StatusCode::OK, event_invoke_json(ctx, &name, &key, &c))
}

pub(super) fn delete_event_invoke(ctx: &Ctx, raw: &str) -> R {
    let (name, q) = function_target(ctx, raw)?;
    let key = lookup_key(q.as_deref());
    ctx.store()
        .update_function(&name, |rec| {
            rec.event_invoke.remove(&key).map(|_| ()).ok_or_else(|| no_event_invoke(ctx, &name, &key))
        })?
        .ok_or_else(|| no_event_invoke(ctx, &name, &key))?;
    Ok(http_util::empty(StatusCode::NO_CONTENT))
}

pub(super) fn list_event_invoke(ctx: &Ctx, raw: &str) -> R {
    let name = unqualified(raw)?;
    let rec = ctx.store().get_function(&name).ok_or_else(no_function)?;
    let items = rec.event_invoke.iter().map(|(k, c)| (k.clone(), event_invoke_json(ctx, &name, k, c))).collect();
    page_response(ctx, "FunctionEventInvokeConfigs", items)
}

// ---------- settings read by infrastructure tools ----------

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

pub(super) fn put_recursion(ctx: &Ctx, raw: &str, input: input::PutFunctionRecursionConfigRequest) -> R {
    let name = unqualified(raw)?;
    // One of the model's values (checked by the model layer).
    let v = required(input.recursive_loop, "RecursiveLoop")?;
    update_record(ctx, &name, |rec| {
        rec.recursive_loop = Some(v.clone());
        Ok(())
    })?;
    ok_json(StatusCode::OK, json!({"RecursiveLoop": v}))
}

#[cfg(test)]
mod tests {
    use super::{destination_config_text, destination_shape_ok};

    #[test]
    fn destination_shapes() {
        for d in [
            "",
            "kafka://b",
            "arn:aws:sqs:us-east-1:111111111111:q",
            "arn:aws:s3:::bucket",
            "arn:aws:lambda:us-east-1:111111111111:function:f",
        ] {
            assert!(destination_shape_ok(d), "{d}");
        }
        for d in [
            "arn:aws:_-/!lambda:us-east-1:111111111111:function:f",
            "arn:aws:sqs:us-east-1:1:q",
            "queue",
            "arn:x:sqs:::q",
        ] {
            assert!(!destination_shape_ok(d), "{d}");
        }
    }

    #[test]
    fn refused_config_is_quoted_as_aws_does() {
        let d = serde_json::json!({"OnSuccess": {"Destination": "arn:aws:iam::1:x"}});
        assert_eq!(
            destination_config_text(d.as_object().unwrap()),
            "DestinationConfig(onSuccess=OnSuccess(destination=arn:aws:iam::1:x), onFailure=null)"
        );
    }
}
