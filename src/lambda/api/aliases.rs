//! The alias operations: Create, Get, List, Update and Delete.

use super::*;

pub(super) fn validate_alias_version(rec: &FunctionRecord, v: &str) -> Result<(), AwsError> {
    if v == "$LATEST" {
        return Ok(());
    }
    match v.parse::<u64>() {
        Ok(n) if rec.versions.contains_key(&n) => Ok(()),
        _ => Err(AwsError::not_found(format!("Function not found: version {v} of {}", rec.latest.name))),
    }
}

pub(super) fn create_alias(ctx: &Ctx, raw: &str, body: &[u8]) -> R {
    let name = unqualified(raw)?;
    let m = parse_body(body)?;
    let alias = req_str(&m, "Name")?;
    let valid = !alias.is_empty()
        && alias.len() <= 128
        && alias.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !alias.chars().all(|c| c.is_ascii_digit());
    if !valid {
        return Err(AwsError::invalid_param(format!("Invalid alias name: {alias}")));
    }
    let version = req_str(&m, "FunctionVersion")?;
    let (_, a) = update_record(ctx, &name, |rec| {
        if rec.aliases.contains_key(&alias) {
            return Err(AwsError::conflict(format!(
                "Alias already exists: {}",
                arn::function_arn(&ctx.scope.region, &ctx.scope.account, &name, Some(&alias))
            )));
        }
        validate_alias_version(rec, &version)?;
        let a = Alias {
            name: alias.clone(),
            function_version: version.clone(),
            description: opt_str(&m, "Description")?.unwrap_or_default(),
            routing_config: m.get("RoutingConfig").filter(|v| !v.is_null()).cloned(),
            revision_id: new_revision(),
        };
        rec.aliases.insert(alias.clone(), a.clone());
        Ok(a)
    })?;
    ok_json(StatusCode::CREATED, a.to_json(&ctx.scope, &name))
}

pub(super) fn alias_not_found(ctx: &Ctx, name: &str, alias: &str) -> AwsError {
    AwsError::not_found(format!(
        "Alias not found: {}",
        arn::function_arn(&ctx.scope.region, &ctx.scope.account, name, Some(alias))
    ))
}

pub(super) fn get_alias(ctx: &Ctx, raw: &str, alias: &str) -> R {
    let name = unqualified(raw)?;
    let rec = get_record(ctx, &name)?;
    let a = rec.aliases.get(alias).ok_or_else(|| alias_not_found(ctx, &name, alias))?;
    ok_json(StatusCode::OK, a.to_json(&ctx.scope, &name))
}

pub(super) fn list_aliases(ctx: &Ctx, raw: &str) -> R {
    let name = unqualified(raw)?;
    let rec = get_record(ctx, &name)?;
    let fv = ctx.q("FunctionVersion");
    let items = rec
        .aliases
        .values()
        .filter(|a| fv.is_none_or(|v| a.function_version == v))
        .map(|a| (a.name.clone(), a.to_json(&ctx.scope, &name)))
        .collect();
    page_response(ctx, "Aliases", items)
}

pub(super) fn update_alias(ctx: &Ctx, raw: &str, alias: &str, body: &[u8]) -> R {
    let name = unqualified(raw)?;
    let m = parse_body(body)?;
    let (_, a) = update_record(ctx, &name, |rec| {
        let mut a = rec.aliases.get(alias).cloned().ok_or_else(|| alias_not_found(ctx, &name, alias))?;
        if let Some(r) = opt_str(&m, "RevisionId")?
            && r != a.revision_id
        {
            return Err(AwsError::precondition("The Revision Id provided does not match the latest Revision Id."));
        }
        if let Some(v) = opt_str(&m, "FunctionVersion")? {
            validate_alias_version(rec, &v)?;
            a.function_version = v;
        }
        if let Some(d) = opt_str(&m, "Description")? {
            a.description = d;
        }
        if let Some(rc) = m.get("RoutingConfig") {
            a.routing_config = (!rc.is_null()).then(|| rc.clone());
        }
        a.revision_id = new_revision();
        rec.aliases.insert(alias.to_string(), a.clone());
        Ok(a)
    })?;
    ok_json(StatusCode::OK, a.to_json(&ctx.scope, &name))
}

pub(super) fn delete_alias(ctx: &Ctx, raw: &str, alias: &str) -> R {
    let name = unqualified(raw)?;
    if get_record(ctx, &name)?.provisioned.contains_key(alias) {
        unprovision(ctx.lambda, &ctx.scope, &name, alias);
    }
    update_record(ctx, &name, |rec| {
        rec.aliases.remove(alias);
        forget_qualifier(rec, alias);
        Ok(())
    })?;
    Ok(http_util::empty(StatusCode::NO_CONTENT))
}

/// Drops what was configured for a deleted version or alias: its policy, function URL,
/// async-invoke settings and provisioned concurrency.
pub(super) fn forget_qualifier(rec: &mut FunctionRecord, q: &str) {
    rec.policies.remove(q);
    rec.urls.remove(q);
    rec.event_invoke.remove(q);
    rec.provisioned.remove(q);
}
