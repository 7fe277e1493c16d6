//! The function URL configuration operations (the HTTP side is `lambda::urls`).

use super::*;

/// Which operation asks: Create, Update (and List) word a missing function or alias
/// "Function does not exist"; Get and Delete answer [`url_not_found`].
#[derive(Clone, Copy, PartialEq)]
pub(super) enum UrlOp {
    Write,
    Read,
}

fn missing(op: UrlOp) -> AwsError {
    match op {
        UrlOp::Write => AwsError::not_found("Function does not exist"),
        UrlOp::Read => url_not_found(),
    }
}

/// The record and qualifier key of a function URL: "" for none, else an existing alias
/// (`$LATEST` and version numbers fail the model's qualifier pattern, as on AWS).
pub(super) fn url_target(ctx: &Ctx, raw: &str, op: UrlOp) -> Result<(String, FunctionRecord, String), AwsError> {
    // The model layer refused a qualifier that is not alias-shaped (in the ARN or the query).
    let (name, q) = function_target(ctx, raw)?;
    let rec = ctx.store().get_function(&name).ok_or_else(|| missing(op))?;
    let key = match q {
        None => String::new(),
        Some(q) if rec.aliases.contains_key(&q) => q,
        Some(_) => return Err(missing(op)),
    };
    Ok((name, rec, key))
}

pub(super) fn url_not_found() -> AwsError {
    AwsError::not_found("The resource you requested does not exist.")
}

/// The members of a Create/UpdateFunctionUrlConfig body; absent ones are `None`.
pub(super) struct UrlSettings {
    auth: Option<String>,
    cors: Option<Value>,
    mode: Option<String>,
}

/// AuthType, Cors and InvokeMode from a Create/UpdateFunctionUrlConfig body (the model layer
/// checked their values).
pub(super) fn url_settings(auth: Option<String>, cors: Option<Value>, mode: Option<String>) -> UrlSettings {
    UrlSettings { auth, cors: cors.filter(|c| !c.is_null()), mode }
}

/// A function URL config as Get and List render it; Create and Update leave out what
/// [`trim_written`] removes.
pub(super) fn url_json(ctx: &Ctx, name: &str, key: &str, u: &UrlConfig, modified: bool) -> Value {
    let q = (!key.is_empty()).then_some(key);
    let mut v = json!({
        "FunctionUrl": crate::lambda::urls::function_url(&ctx.lambda.endpoint_url, &u.url_id, &ctx.scope.region),
        "FunctionArn": arn::function_arn(&ctx.scope.region, &ctx.scope.account, name, q),
        "AuthType": u.auth_type,
        "CreationTime": u.creation_time,
        "InvokeMode": u.invoke_mode,
    });
    if let Some(c) = &u.cors {
        v["Cors"] = c.clone();
    }
    if modified {
        v["LastModifiedTime"] = json!(u.last_modified_time);
    }
    v
}

/// Create and Update answer `InvokeMode` only when the request named it, as AWS does.
fn trim_written(mut v: Value, mode_given: bool) -> Value {
    if !mode_given && let Some(m) = v.as_object_mut() {
        m.remove("InvokeMode");
    }
    v
}

pub(super) fn create_url_config(ctx: &Ctx, raw: &str, input: input::CreateFunctionUrlConfigRequest) -> R {
    let UrlSettings { auth, cors, mode } = url_settings(input.auth_type, input.cors, input.invoke_mode);
    let auth = auth.ok_or_else(|| {
        AwsError::invalid_param(
            "1 validation error detected: Value null at 'authType' failed to satisfy constraint: Member must not be null",
        )
    })?;
    let (name, _, key) = url_target(ctx, raw, UrlOp::Write)?;
    let mode_given = mode.is_some();
    let now = crate::lambda::urls::timestamp();
    let u = UrlConfig {
        url_id: uuid::Uuid::new_v4().simple().to_string(),
        auth_type: auth,
        cors,
        invoke_mode: mode.unwrap_or_else(|| "BUFFERED".into()),
        creation_time: now.clone(),
        last_modified_time: now,
    };
    update_record(ctx, &name, |rec| {
        if rec.urls.contains_key(&key) {
            let arn =
                arn::function_arn(&ctx.scope.region, &ctx.scope.account, &name, (!key.is_empty()).then_some(&key));
            return Err(AwsError::conflict(format!(
                "Failed to create function url config for [functionArn = {arn}]. Error message:  FunctionUrlConfig exists for this Lambda function"
            )));
        }
        rec.urls.insert(key.clone(), u.clone());
        Ok(())
    })?;
    ok_json(StatusCode::CREATED, trim_written(url_json(ctx, &name, &key, &u, false), mode_given))
}

pub(super) fn get_url_config(ctx: &Ctx, raw: &str) -> R {
    let (name, rec, key) = url_target(ctx, raw, UrlOp::Read)?;
    let u = rec.urls.get(&key).ok_or_else(url_not_found)?;
    ok_json(StatusCode::OK, url_json(ctx, &name, &key, u, true))
}

pub(super) fn update_url_config(ctx: &Ctx, raw: &str, input: input::UpdateFunctionUrlConfigRequest) -> R {
    let UrlSettings { auth, cors, mode } = url_settings(input.auth_type, input.cors, input.invoke_mode);
    let (name, _, key) = url_target(ctx, raw, UrlOp::Write)?;
    let mode_given = mode.is_some();
    let (_, u) = update_record(ctx, &name, |rec| {
        let u = rec.urls.get_mut(&key).ok_or_else(url_not_found)?;
        if let Some(a) = auth {
            u.auth_type = a;
        }
        if cors.is_some() {
            u.cors = cors;
        }
        if let Some(v) = mode {
            u.invoke_mode = v;
        }
        u.last_modified_time = crate::lambda::urls::timestamp();
        Ok(u.clone())
    })?;
    ok_json(StatusCode::OK, trim_written(url_json(ctx, &name, &key, &u, true), mode_given))
}

pub(super) fn delete_url_config(ctx: &Ctx, raw: &str) -> R {
    let (name, _, key) = url_target(ctx, raw, UrlOp::Read)?;
    update_record(ctx, &name, |rec| rec.urls.remove(&key).map(|_| ()).ok_or_else(url_not_found))?;
    Ok(http_util::empty(StatusCode::NO_CONTENT))
}

pub(super) fn list_url_configs(ctx: &Ctx, raw: &str) -> R {
    let name = unqualified(raw)?;
    let rec = ctx.store().get_function(&name).ok_or_else(|| missing(UrlOp::Write))?;
    let items = rec.urls.iter().map(|(key, u)| (key.clone(), url_json(ctx, &name, key, u, true))).collect();
    page_response(ctx, "FunctionUrlConfigs", items)
}
