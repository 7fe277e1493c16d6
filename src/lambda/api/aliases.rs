//! The alias operations: Create, Get, List, Update and Delete.

use super::*;

/// Checks that an alias's `FunctionVersion` names `$LATEST` or a published version.
pub(super) fn validate_alias_version(ctx: &Ctx, rec: &FunctionRecord, v: &str) -> Result<(), AwsError> {
    if v == "$LATEST" || v.parse::<u64>().is_ok_and(|n| rec.versions.contains_key(&n)) {
        return Ok(());
    }
    Err(errors::function_not_found(&ctx.scope, &rec.latest.name, Some(v)))
}

/// Checks `RoutingConfig` for an alias of `version`, in AWS's order, and returns what to
/// store: `None` for no routing (absent, null or an empty weights map).
pub(super) fn validate_routing(
    ctx: &Ctx,
    rec: &FunctionRecord,
    version: &str,
    rc: Option<&Value>,
) -> Result<Option<Value>, AwsError> {
    let Some(rc) = rc.filter(|v| !v.is_null()) else { return Ok(None) };
    let weights = match rc.get("AdditionalVersionWeights") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(w)) => w,
        Some(_) => return Err(type_err("AdditionalVersionWeights", "a map of numbers")),
    };
    let mut parsed = Vec::with_capacity(weights.len());
    for (v, w) in weights {
        let w = w.as_f64().ok_or_else(|| type_err("AdditionalVersionWeights", "a map of numbers"))?;
        if !(0.0..=1.0).contains(&w) {
            return Err(errors::routing_weight_range(v, w));
        }
        if v.is_empty() || v.len() > 1024 || !v.bytes().all(|c| c.is_ascii_digit()) {
            return Err(errors::routing_key_pattern(v, w));
        }
        parsed.push(v.as_str());
    }
    match parsed.as_slice() {
        [] => Ok(None),
        [extra] => {
            if version == "$LATEST" {
                return Err(errors::routing_latest());
            }
            if *extra == version {
                return Err(errors::routing_same_version(version));
            }
            validate_alias_version(ctx, rec, extra)?;
            Ok(Some(rc.clone()))
        }
        _ => Err(errors::too_many_routing()),
    }
}

fn valid_alias_name(alias: &str) -> bool {
    !alias.is_empty()
        && alias.len() <= 128
        && alias.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !alias.chars().all(|c| c.is_ascii_digit())
}

pub(super) fn create_alias(ctx: &Ctx, raw: &str, input: input::CreateAliasRequest) -> R {
    let name = unqualified(raw)?;
    let alias = required(input.name, "Name")?;
    if !valid_alias_name(&alias) {
        return Err(AwsError::invalid_param(format!("Invalid alias name: {alias}")));
    }
    let version = required(input.function_version, "FunctionVersion")?;
    let description = input.description.unwrap_or_default();
    // A missing function is named with the version the alias was to point at, as AWS does.
    if ctx.store().latest(&name).is_none() {
        return Err(errors::function_not_found(&ctx.scope, &name, Some(&version)));
    }
    let (_, a) = update_record(ctx, &name, |rec| {
        validate_alias_version(ctx, rec, &version)?;
        let routing_config = validate_routing(ctx, rec, &version, input.routing_config.as_ref())?;
        if rec.aliases.contains_key(&alias) {
            return Err(errors::alias_exists(&ctx.scope, &name, &alias));
        }
        let a = Alias {
            name: alias.clone(),
            function_version: version.clone(),
            description: description.clone(),
            routing_config,
            revision_id: new_revision(),
        };
        rec.aliases.insert(alias.clone(), a.clone());
        Ok(a)
    })?;
    ok_json(StatusCode::CREATED, a.to_json(&ctx.scope, &name))
}

pub(super) fn get_alias(ctx: &Ctx, raw: &str, alias: &str) -> R {
    let name = unqualified(raw)?;
    let rec = get_record(ctx, &name)?;
    let a = rec.aliases.get(alias).ok_or_else(|| errors::alias_cannot_find(&ctx.scope, &name, alias))?;
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

pub(super) fn update_alias(ctx: &Ctx, raw: &str, alias: &str, input: input::UpdateAliasRequest) -> R {
    let name = unqualified(raw)?;
    let (_, a) = update_record(ctx, &name, |rec| {
        let mut a = rec.aliases.get(alias).cloned().ok_or_else(|| errors::alias_not_found(&ctx.scope, &name, alias))?;
        // The same answer as for functions (AWS's recorded UpdateAlias message).
        check_revision(input.revision_id.as_deref(), &a.revision_id)?;
        if let Some(v) = &input.function_version {
            validate_alias_version(ctx, rec, v)?;
            a.function_version = v.clone();
        }
        if let Some(d) = &input.description {
            a.description = d.clone();
        }
        // The routing is checked against the version the alias points at after the update.
        if let Some(rc) = &input.routing_config {
            a.routing_config = validate_routing(ctx, rec, &a.function_version, Some(rc))?;
        } else if a.routing_config.is_some() {
            let current = a.routing_config.clone();
            a.routing_config = validate_routing(ctx, rec, &a.function_version, current.as_ref())?;
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
