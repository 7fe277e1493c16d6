//! TagResource, UntagResource and ListTags on functions (and, through `esm`, on event
//! source mappings).

use super::*;

/// Most tags a function may carry (AWS: 50), on CreateFunction and TagResource alike.
pub(super) const MAX_TAGS: usize = 50;

/// The function a tagging call names: an unqualified function ARN of this region and account.
pub(super) fn tag_target(ctx: &Ctx, resource: &str) -> Result<String, AwsError> {
    let r = arn::parse_function_ref(resource).map_err(|e| AwsError::invalid_param(e.to_string()))?;
    if !resource.starts_with("arn:") {
        return Err(AwsError::invalid_param(format!("Invalid ARN: {resource}")));
    }
    check_function_scope(&ctx.scope, resource)?;
    if r.qualifier.is_some() {
        return Err(errors::tags_on_qualified());
    }
    if ctx.store().latest(&r.name).is_none() {
        return Err(not_found(ctx, &r.name, None));
    }
    Ok(r.name)
}

/// An event source mapping's ARN (the model's pattern has already checked its form).
fn is_esm_arn(resource: &str) -> bool {
    resource.split(':').nth(5) == Some("event-source-mapping")
}

pub(super) fn list_tags(ctx: &Ctx, resource: &str) -> R {
    if is_esm_arn(resource) {
        return super::esm::list_esm_tags(ctx, resource);
    }
    let name = tag_target(ctx, resource)?;
    let rec = get_record(ctx, &name)?;
    ok_json(StatusCode::OK, json!({"Tags": rec.tags}))
}

pub(super) fn tag_resource(ctx: &Ctx, resource: &str, input: input::TagResourceRequest) -> R {
    if is_esm_arn(resource) {
        return super::esm::tag_esm(ctx, resource, input.tags.unwrap_or_default());
    }
    let name = tag_target(ctx, resource)?;
    let tags = input.tags.unwrap_or_default();
    if tags.is_empty() {
        return Err(errors::empty_tags());
    }
    update_record(ctx, &name, |rec| {
        let added = tags.keys().filter(|k| !rec.tags.contains_key(*k)).count();
        if rec.tags.len() + added > MAX_TAGS {
            return Err(errors::too_many_tags());
        }
        rec.tags.extend(tags.clone());
        Ok(())
    })?;
    if tags.contains_key("force-docker") {
        ctx.lambda.drain(&ctx.scope, &name);
    }
    Ok(http_util::empty(StatusCode::NO_CONTENT))
}

pub(super) fn untag_resource(ctx: &Ctx, resource: &str) -> R {
    if is_esm_arn(resource) {
        return super::esm::untag_esm(ctx, resource);
    }
    let name = tag_target(ctx, resource)?;
    let keys: Vec<String> = ctx.query.iter().filter(|(k, _)| k == "tagKeys").map(|(_, v)| v.clone()).collect();
    if keys.is_empty() {
        return Err(errors::tag_keys_null());
    }
    update_record(ctx, &name, |rec| {
        for k in &keys {
            rec.tags.remove(k);
        }
        Ok(())
    })?;
    ctx.lambda.drain(&ctx.scope, &name);
    Ok(http_util::empty(StatusCode::NO_CONTENT))
}
