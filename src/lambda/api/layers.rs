//! The layer operations: PublishLayerVersion, Get (by name or ARN), List, ListVersions,
//! Delete; a layer version's permissions (Add/RemoveLayerVersionPermission,
//! GetLayerVersionPolicy); and the rules for a function's `Layers` list (the same layer
//! once, the same region, the unzipped size of function and layers together).

use super::*;

/// AWS's limit on a function's code and its layers together, unzipped.
pub(super) const MAX_UNZIPPED_WITH_LAYERS: u64 = 262_144_000;

pub(super) fn layer_name(raw: &str) -> Result<String, AwsError> {
    // Layer APIs accept a name or a layer ARN.
    arn::parse_layer_name(raw).map_err(|e| AwsError::invalid_param(e.to_string()))
}

/// Get/GetByArn on a layer or version that does not exist.
fn resource_not_found() -> AwsError {
    AwsError::not_found("The resource you requested does not exist.")
}

/// The layer-permission operations on a layer or version that does not exist.
pub(super) fn layer_not_found(ctx: &Ctx, name: &str, v: u64) -> AwsError {
    AwsError::not_found(format!(
        "Layer version {} does not exist.",
        arn::layer_version_arn(&ctx.scope.region, &ctx.scope.account, name, v)
    ))
}

/// A layer version number from the path: AWS refuses anything below 1 before looking.
fn version_number(v: &str) -> Result<u64, AwsError> {
    match v.parse::<i64>() {
        Ok(n) if n >= 1 => Ok(n as u64),
        Ok(_) => Err(AwsError::invalid_param("Layer Version Cannot be less than 1")),
        Err(_) => Err(AwsError::invalid_param(format!("Invalid layer version number: {v}"))),
    }
}

/// A layer version's compatible runtimes and architectures, as given (or not) in a request
/// (their values were checked by the model layer, with AWS's own value sets).
type Compatibilities = (Option<Vec<String>>, Option<Vec<String>>);

/// PublishLayerVersion. It reads S3 and writes the code store: the route runs it on the
/// blocking pool.
pub(super) fn publish_layer_version(ctx: &Ctx, raw: &str, m: input::PublishLayerVersionRequest) -> R {
    let name = layer_name(raw)?;
    let (runtimes, archs): Compatibilities = (m.compatible_runtimes, m.compatible_architectures);
    let content = required(m.content, "Content")?;
    // A hot-reload layer is a local directory: no blob, LocalStack's placeholder digest.
    let hot = ctx.lambda.hot_reload.dir_of(
        content.zip_file.is_some(),
        content.s3_bucket.as_deref(),
        content.s3_key.as_deref(),
    )?;
    let stored = match &hot {
        Some(_) => StoredCode { sha_hex: String::new(), sha_b64: hot_reload::CODE_SHA256.into(), size: 0 },
        None => {
            let source = CodeSource {
                zip_file: content.zip_file.as_deref(),
                s3_bucket: content.s3_bucket.as_deref(),
                s3_key: content.s3_key.as_deref(),
                s3_object_version: content.s3_object_version.as_deref(),
            };
            store_code(ctx, source)?.ok_or_else(|| {
                AwsError::invalid_param("Please provide a source for layer content: ZipFile or S3Bucket and S3Key")
            })?
        }
    };
    let lv = ctx.store().update_layer(&name, |rec| {
        let n = rec.next_version.max(1);
        rec.next_version = n + 1;
        let lv = LayerVersion {
            name: name.clone(),
            version: n,
            description: m.description.clone().unwrap_or_default(),
            created_date: crate::aws::timestamp_now(),
            compatible_runtimes: runtimes.clone(),
            compatible_architectures: archs.clone(),
            license_info: m.license_info.clone(),
            sha_hex: stored.sha_hex.clone(),
            code_sha256: stored.sha_b64.clone(),
            code_size: stored.size,
            hot_reload_dir: hot.clone(),
            policy: Vec::new(),
            policy_revision: None,
        };
        rec.versions.insert(n, lv.clone());
        Ok(lv)
    })?;
    if hot.is_some() {
        ctx.lambda.hot_reload.sync(ctx.lambda);
    }
    ok_json(StatusCode::CREATED, lv.to_json(&ctx.scope, &ctx.lambda.endpoint_url))
}

fn find_version(ctx: &Ctx, name: &str, n: u64) -> Option<LayerVersion> {
    ctx.store().get_layer(name).and_then(|r| r.versions.get(&n).cloned())
}

pub(super) fn get_layer_version(ctx: &Ctx, raw: &str, v: &str) -> R {
    let name = layer_name(raw)?;
    let n = version_number(v)?;
    let lv = find_version(ctx, &name, n).ok_or_else(resource_not_found)?;
    ok_json(StatusCode::OK, lv.to_json(&ctx.scope, &ctx.lambda.endpoint_url))
}

pub(super) fn get_layer_version_by_arn(ctx: &Ctx) -> R {
    let a = ctx.q("Arn").unwrap_or_default();
    // The model layer refused what is not a layer version ARN; an `awslayer` ARN names none here.
    let r = arn::parse_layer_version_arn(a).ok_or_else(resource_not_found)?;
    let lv = find_version(ctx, &r.name, r.version).ok_or_else(resource_not_found)?;
    ok_json(StatusCode::OK, lv.to_json(&ctx.scope, &ctx.lambda.endpoint_url))
}

/// The `CompatibleRuntime` / `CompatibleArchitecture` filters of ListLayers and
/// ListLayerVersions (their values were checked by the model layer).
fn list_filters<'a>(ctx: &'a Ctx) -> Result<(Option<&'a str>, Option<&'a str>), AwsError> {
    Ok((ctx.q("CompatibleRuntime"), ctx.q("CompatibleArchitecture")))
}

fn layer_matches(filters: (Option<&str>, Option<&str>), lv: &LayerVersion) -> bool {
    let has = |list: &Option<Vec<String>>, x: &str| list.as_ref().is_some_and(|l| l.iter().any(|y| y == x));
    filters.0.is_none_or(|r| has(&lv.compatible_runtimes, r))
        && filters.1.is_none_or(|a| has(&lv.compatible_architectures, a))
}

pub(super) fn list_layers(ctx: &Ctx) -> R {
    let filters = list_filters(ctx)?;
    let items = ctx
        .store()
        .list_layers()
        .into_iter()
        .filter_map(|rec| {
            let latest = rec.versions.values().rev().find(|lv| layer_matches(filters, lv))?;
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
    let filters = list_filters(ctx)?;
    // Newest first: the key counts down.
    let items = ctx
        .store()
        .get_layer(&name)
        .map(|rec| {
            rec.versions
                .values()
                .filter(|lv| layer_matches(filters, lv))
                .map(|lv| (format!("{:020}", u64::MAX - lv.version), lv.to_list_json(&ctx.scope)))
                .collect()
        })
        .unwrap_or_default();
    page_response(ctx, "LayerVersions", items)
}

pub(super) fn delete_layer_version(ctx: &Ctx, raw: &str, v: &str) -> R {
    let name = layer_name(raw)?;
    let n = version_number(v)?;
    if ctx.store().get_layer(&name).is_some() {
        let gone = ctx.store().update_layer(&name, |rec| Ok(rec.versions.remove(&n)))?;
        if gone.is_some_and(|lv| lv.hot_reload_dir.is_some()) {
            ctx.lambda.hot_reload.sync(ctx.lambda);
        }
    }
    // AWS answers 204 even when the version does not exist.
    Ok(http_util::empty(StatusCode::NO_CONTENT))
}

// ---------- layer version permissions ----------

const LAYER_REVISION_MISMATCH: &str = "The Revision Id provided does not match the latest Revision Id. Call the GetLayerPolicy API to retrieve the latest Revision Id";

/// Applies `f` to an existing layer version, persisting the change; AWS's not-found otherwise.
fn update_version<T>(
    ctx: &Ctx,
    name: &str,
    n: u64,
    f: impl FnOnce(&mut LayerVersion) -> Result<T, AwsError>,
) -> Result<T, AwsError> {
    if find_version(ctx, name, n).is_none() {
        return Err(layer_not_found(ctx, name, n));
    }
    ctx.store().update_layer(name, |rec| {
        let lv = rec.versions.get_mut(&n).ok_or_else(|| layer_not_found(ctx, name, n))?;
        f(lv)
    })
}

pub(super) fn add_layer_permission(ctx: &Ctx, raw: &str, v: &str, m: input::AddLayerVersionPermissionRequest) -> R {
    let name = layer_name(raw)?;
    let n = version_number(v)?;
    // StatementId, Action and Principal passed the model's patterns.
    let sid = required(m.statement_id, "StatementId")?;
    let action = required(m.action, "Action")?;
    let principal = required(m.principal, "Principal")?;
    let is_account = |p: &str| p.len() == 12 && p.bytes().all(|b| b.is_ascii_digit());
    let root_account = principal
        .strip_prefix("arn:")
        .and_then(|r| r.split_once(":iam::"))
        .filter(|(partition, _)| partition.starts_with("aws"))
        .and_then(|(_, rest)| rest.strip_suffix(":root"))
        .filter(|a| is_account(a));
    let principal_json = if principal == "*" {
        json!("*")
    } else if is_account(&principal) {
        json!({"AWS": format!("arn:{}:iam::{principal}:root", arn::partition_for_region(&ctx.scope.region))})
    } else if root_account.is_some() {
        json!({"AWS": principal})
    } else {
        return Err(AwsError::service(format!(
            "principal {principal} passed the model's pattern but is none of its forms"
        )));
    };
    let org = m.organization_id;
    // RevisionId travels in the query string here (a body member on AddPermission).
    let revision = ctx.q("RevisionId").map(str::to_string);
    let mut st = json!({
        "Sid": sid,
        "Effect": "Allow",
        "Principal": principal_json,
        "Action": action,
        "Resource": arn::layer_version_arn(&ctx.scope.region, &ctx.scope.account, &name, n),
    });
    if let Some(o) = org {
        st["Condition"] = json!({"StringEquals": {"aws:PrincipalOrgID": o}});
    }
    let new_rev = new_revision();
    update_version(ctx, &name, n, |lv| {
        if revision.as_ref().is_some_and(|r| Some(r) != lv.policy_revision.as_ref()) {
            return Err(AwsError::precondition(LAYER_REVISION_MISMATCH));
        }
        if lv.policy.iter().any(|s| s["Sid"] == sid.as_str()) {
            return Err(AwsError::conflict(format!(
                "The statement id ({sid}) provided already exists. Please provide a new statement id, or remove the existing statement."
            )));
        }
        lv.policy.push(st.clone());
        lv.policy_revision = Some(new_rev.clone());
        Ok(())
    })?;
    ok_json(StatusCode::CREATED, json!({"Statement": super::permissions::policy_text(&st), "RevisionId": new_rev}))
}

pub(super) fn get_layer_policy(ctx: &Ctx, raw: &str, v: &str) -> R {
    let name = layer_name(raw)?;
    let n = version_number(v)?;
    let lv = find_version(ctx, &name, n).ok_or_else(|| layer_not_found(ctx, &name, n))?;
    if lv.policy.is_empty() {
        return Err(super::permissions::no_policy());
    }
    let policy = super::permissions::policy_document(&lv.policy);
    ok_json(StatusCode::OK, json!({"Policy": policy, "RevisionId": lv.policy_revision.unwrap_or_default()}))
}

pub(super) fn remove_layer_permission(ctx: &Ctx, raw: &str, v: &str, sid: &str) -> R {
    let name = layer_name(raw)?;
    let n = version_number(v)?;
    let revision = ctx.q("RevisionId").map(str::to_string);
    update_version(ctx, &name, n, |lv| {
        if revision.as_ref().is_some_and(|r| Some(r) != lv.policy_revision.as_ref()) {
            return Err(AwsError::precondition(LAYER_REVISION_MISMATCH));
        }
        let before = lv.policy.len();
        lv.policy.retain(|s| s["Sid"] != sid);
        if lv.policy.len() == before {
            return Err(AwsError::not_found(format!("Statement {sid} is not found in resource policy.")));
        }
        lv.policy_revision = if lv.policy.is_empty() { None } else { Some(new_revision()) };
        Ok(())
    })?;
    Ok(http_util::empty(StatusCode::NO_CONTENT))
}

// ---------- a function's Layers ----------

/// The rules for a function's `Layers` list that need no lookup: at most 5, all in the
/// function's region, no layer twice (in any version).
pub(super) fn check_layer_list(ctx: &Ctx, list: &[String]) -> Result<(), AwsError> {
    // An ARN that is not a layer version ARN fails the model's member constraint (a local
    // zip path, RustStack's own form, is not an ARN and passes).
    if list.iter().any(|l| l.starts_with("arn:") && arn::parse_layer_version_arn(l).is_none()) {
        return Err(AwsError::new(
            StatusCode::BAD_REQUEST,
            "ValidationException",
            format!(
                "1 validation error detected: Value '[{}]' at 'layers' failed to satisfy constraint: Member must satisfy constraint: [Member must have length less than or equal to 2048, Member must have length greater than or equal to 1, Member must satisfy regular expression pattern: (arn:(aws[a-zA-Z-]*)?:lambda:(eusc-)?[a-z]{{2}}((-gov)|(-iso([a-z]?)))?-[a-z]+-\\d{{1}}:\\d{{12}}:layer:[a-zA-Z0-9-_]+:[0-9]+)|(arn:[a-zA-Z0-9-]+:lambda:::awslayer:[a-zA-Z0-9-_]+), Member must not be null]",
                list.join(", ")
            ),
        ));
    }
    if list.len() > 5 {
        return Err(AwsError::invalid_param("Cannot reference more than 5 layers."));
    }
    let parsed: Vec<(&String, arn::LayerVersionRef)> =
        list.iter().filter_map(|l| arn::parse_layer_version_arn(l).map(|r| (l, r))).collect();
    if parsed.iter().any(|(_, r)| r.region != ctx.scope.region) {
        return Err(AwsError::invalid_param(format!(
            "Layers are not in the same region as the function. Layers are expected to be in region {}.",
            ctx.scope.region
        )));
    }
    for (i, (a, ra)) in parsed.iter().enumerate() {
        if let Some((b, _)) = parsed[i + 1..].iter().find(|(_, rb)| rb.name == ra.name && rb.account == ra.account) {
            return Err(AwsError::invalid_param(format!(
                "Two different versions of the same layer are not allowed to be referenced in the same function. {a} and {b} are versions of the same layer."
            )));
        }
    }
    Ok(())
}

/// The unzipped size of a stored zip (its central directory's declared sizes).
fn unzipped_size(ctx: &Ctx, sha_hex: &str) -> Result<u64, AwsError> {
    let bytes =
        ctx.store().read_blob(sha_hex).map_err(|e| AwsError::service(format!("cannot read code {sha_hex}: {e}")))?;
    let limits = crate::lambda::code::Limits { max_unzipped_bytes: u64::MAX, ..Default::default() };
    crate::lambda::code::validate_zip(&bytes, &limits)
        .map(|s| s.unzipped_bytes)
        .map_err(|e| AwsError::invalid_param(e.to_string()))
}

/// AWS's limit on a function's code and its layers together, unzipped (262,144,000 bytes).
/// `code_sha_hex` is empty for an image function (no zip to count). It reads the blobs: its
/// callers run on the blocking pool.
pub(super) fn check_combined_size(ctx: &Ctx, code_sha_hex: &str, layers: &[LayerRef]) -> Result<(), AwsError> {
    if layers.is_empty() {
        return Ok(());
    }
    let mut total = if code_sha_hex.is_empty() { 0 } else { unzipped_size(ctx, code_sha_hex)? };
    // A hot-reload layer is a directory of any size, as on LocalStack.
    for l in layers.iter().filter(|l| l.hot_reload_dir.is_none()) {
        total += unzipped_size(ctx, &l.sha_hex)?;
    }
    if total > MAX_UNZIPPED_WITH_LAYERS {
        return Err(AwsError::invalid_param(format!(
            "Function code combined with layers exceeds the maximum allowed size of {MAX_UNZIPPED_WITH_LAYERS} bytes. The actual size is {total} bytes."
        )));
    }
    Ok(())
}
