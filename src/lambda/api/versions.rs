//! PublishVersion and ListVersionsByFunction.

use super::*;

/// Publishes `$LATEST` as a new version unless nothing changed since the last one.
pub(super) fn publish_into(rec: &mut FunctionRecord, description: Option<String>) -> Arc<FunctionConfig> {
    if let Some((_, last)) = rec.versions.iter().next_back()
        && last.same_content(&rec.latest)
    {
        return last.clone();
    }
    let n = rec.next_version.max(1);
    rec.next_version = n + 1;
    let mut v = (*rec.latest).clone();
    v.version = n.to_string();
    v.last_modified = crate::aws::timestamp_now();
    v.revision_id = new_revision();
    v.last_update_status = LastUpdateStatus::Successful;
    if let Some(d) = description {
        v.source_description = Some(std::mem::replace(&mut v.description, d));
    }
    let v = Arc::new(v);
    rec.versions.insert(n, v.clone());
    v
}

pub(super) fn publish_version(ctx: &Ctx, raw: &str, input: input::PublishVersionRequest) -> R {
    let name = unqualified(raw)?;
    let sha = input.code_sha256;
    let description = input.description;
    let (_, v) = update_record(ctx, &name, |rec| {
        check_revision(input.revision_id.as_deref(), &rec.latest.revision_id)?;
        // Hot-reload code has no digest to compare (LocalStack skips the check too).
        if let Some(s) = &sha
            && *s != rec.latest.code_sha256
            && rec.latest.hot_reload_dir.is_none()
        {
            return Err(errors::code_sha_mismatch(s, &rec.latest.code_sha256));
        }
        Ok(publish_into(rec, description.clone()))
    })?;
    // A version running from a directory is watched too: its environments are retired on a change.
    if v.hot_reload_dir.is_some() || v.layers.iter().any(|l| l.hot_reload_dir.is_some()) {
        ctx.lambda.hot_reload.sync(ctx.lambda);
    }
    ok_json(StatusCode::CREATED, v.to_json(&ctx.scope, true))
}

pub(super) fn list_versions(ctx: &Ctx, raw: &str) -> R {
    let name = unqualified(raw)?;
    let rec = get_record(ctx, &name)?;
    // The ListFunctions subset: no State, LastUpdateStatus or RuntimeVersionConfig (as AWS).
    let mut items = vec![(format!("{:020}", 0), list_item(&rec.latest, ctx, true))];
    items.extend(rec.versions.iter().map(|(n, v)| (format!("{n:020}"), list_item(v, ctx, true))));
    page_response(ctx, "Versions", items)
}
