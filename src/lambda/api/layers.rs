//! The layer operations: PublishLayerVersion, Get (by name or ARN), List, ListVersions, Delete.

use super::*;

pub(super) fn layer_name(raw: &str) -> Result<String, AwsError> {
    // Layer APIs accept a name or a layer ARN.
    arn::parse_layer_name(raw).map_err(|e| AwsError::invalid_param(e.to_string()))
}

pub(super) fn layer_not_found(ctx: &Ctx, name: &str, v: &str) -> AwsError {
    let _ = ctx;
    AwsError::not_found(format!("Layer version {name}:{v} does not exist."))
}

pub(super) fn publish_layer_version(ctx: &Ctx, raw: &str, body: &[u8]) -> R {
    let name = layer_name(raw)?;
    let m = parse_body(body)?;
    let content = opt_obj(&m, "Content")?
        .ok_or_else(|| AwsError::invalid_param("1 validation error detected: Value null at 'content' failed to satisfy constraint: Member must not be null"))?;
    let stored = store_code(ctx, content)?.ok_or_else(|| {
        AwsError::invalid_param("Please provide a source for layer content: ZipFile or S3Bucket and S3Key")
    })?;
    let runtimes = str_list(&m, "CompatibleRuntimes")?.unwrap_or_default();
    for r in &runtimes {
        validate_runtime(r)?;
    }
    let lv = ctx.store().update_layer(&name, |rec| {
        let n = rec.next_version.max(1);
        rec.next_version = n + 1;
        let lv = LayerVersion {
            name: name.clone(),
            version: n,
            description: opt_str(&m, "Description")?.unwrap_or_default(),
            created_date: crate::aws::timestamp_now(),
            compatible_runtimes: runtimes.clone(),
            compatible_architectures: str_list(&m, "CompatibleArchitectures")?.unwrap_or_default(),
            license_info: opt_str(&m, "LicenseInfo")?,
            sha_hex: stored.sha_hex.clone(),
            code_sha256: stored.sha_b64.clone(),
            code_size: stored.size,
        };
        rec.versions.insert(n, lv.clone());
        Ok(lv)
    })?;
    ok_json(StatusCode::CREATED, lv.to_json(&ctx.scope, &ctx.lambda.endpoint_url))
}

pub(super) fn find_layer_version(ctx: &Ctx, name: &str, v: &str) -> Result<LayerVersion, AwsError> {
    let n: u64 = v.parse().map_err(|_| AwsError::invalid_param(format!("Invalid layer version number: {v}")))?;
    ctx.store().get_layer(name).and_then(|r| r.versions.get(&n).cloned()).ok_or_else(|| layer_not_found(ctx, name, v))
}

pub(super) fn get_layer_version(ctx: &Ctx, raw: &str, v: &str) -> R {
    let name = layer_name(raw)?;
    let lv = find_layer_version(ctx, &name, v)?;
    ok_json(StatusCode::OK, lv.to_json(&ctx.scope, &ctx.lambda.endpoint_url))
}

pub(super) fn get_layer_version_by_arn(ctx: &Ctx) -> R {
    let a = ctx.q("Arn").unwrap_or_default();
    let r = arn::parse_layer_version_arn(a)
        .ok_or_else(|| AwsError::invalid_param(format!("Invalid layer version ARN: {a}")))?;
    let lv = find_layer_version(ctx, &r.name, &r.version.to_string())?;
    ok_json(StatusCode::OK, lv.to_json(&ctx.scope, &ctx.lambda.endpoint_url))
}

pub(super) fn layer_matches(ctx: &Ctx, lv: &LayerVersion) -> bool {
    let rt = ctx.q("CompatibleRuntime");
    let ar = ctx.q("CompatibleArchitecture");
    rt.is_none_or(|r| lv.compatible_runtimes.iter().any(|x| x == r))
        && ar.is_none_or(|a| lv.compatible_architectures.iter().any(|x| x == a))
}

pub(super) fn list_layers(ctx: &Ctx) -> R {
    let items = ctx
        .store()
        .list_layers()
        .into_iter()
        .filter_map(|rec| {
            let latest = rec.versions.values().rev().find(|lv| layer_matches(ctx, lv))?;
            let item = json!({
                "LayerName": rec.name,
                "LayerArn": arn::layer_arn(&ctx.scope.region, &ctx.scope.account, &rec.name),
                "LatestMatchingVersion": latest.to_list_json(&ctx.scope),
            });
            Some((rec.name, item))
        })
        .collect();
    page_response(ctx, "Layers", items)
}

pub(super) fn list_layer_versions(ctx: &Ctx, raw: &str) -> R {
    let name = layer_name(raw)?;
    // Newest first: the key counts down.
    let items = ctx
        .store()
        .get_layer(&name)
        .map(|rec| {
            rec.versions
                .values()
                .filter(|lv| layer_matches(ctx, lv))
                .map(|lv| (format!("{:020}", u64::MAX - lv.version), lv.to_list_json(&ctx.scope)))
                .collect()
        })
        .unwrap_or_default();
    page_response(ctx, "LayerVersions", items)
}

pub(super) fn delete_layer_version(ctx: &Ctx, raw: &str, v: &str) -> R {
    let name = layer_name(raw)?;
    let n: u64 = v.parse().map_err(|_| AwsError::invalid_param(format!("Invalid layer version number: {v}")))?;
    if ctx.store().get_layer(&name).is_some() {
        ctx.store().update_layer(&name, |rec| {
            rec.versions.remove(&n);
            Ok(())
        })?;
    }
    // AWS answers 204 even when the version does not exist.
    Ok(http_util::empty(StatusCode::NO_CONTENT))
}
