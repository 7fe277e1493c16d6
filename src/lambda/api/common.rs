//! Helpers the control-plane handlers share: JSON member decoding, function names and
//! qualifiers, record lookups with AWS's not-found errors, code storing and list paging.

use super::*;

/// The operations' typed inputs (generated from the model).
pub(super) use crate::lambda::model_gen::input;
/// The JSON body, decoded once by the same function the validator uses.
pub(super) use crate::lambda::validate::parse_body;

/// The checked body as an operation's typed input (`serde_json::from_value`: no second parse).
/// The validator has type-checked every member, so this fails only on what it lets through.
pub(super) fn typed<T: serde::de::DeserializeOwned>(doc: Map<String, Value>) -> Result<T, AwsError> {
    serde_json::from_value(Value::Object(doc))
        .map_err(|e| AwsError::invalid_content(format!("Could not parse request body into json: {e}")))
}

/// An integer member that must not be negative (the decoders' type error, as before).
pub(super) fn non_negative(key: &str, n: Option<i64>) -> Result<Option<u64>, AwsError> {
    n.map(|n| u64::try_from(n).map_err(|_| type_err(key, "a non-negative integer"))).transpose()
}

pub(super) fn type_err(key: &str, want: &str) -> AwsError {
    AwsError::invalid_content(format!(
        "Could not parse request body into json: Could not parse payload into json: field '{key}' must be {want}"
    ))
}

pub(super) fn opt_str(m: &Map<String, Value>, key: &str) -> Result<Option<String>, AwsError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(type_err(key, "a string")),
    }
}

/// A required member (the model layer has refused a missing one; this is the same answer).
pub(super) fn required<T>(v: Option<T>, key: &str) -> Result<T, AwsError> {
    v.ok_or_else(|| {
        AwsError::invalid_param(format!(
            "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
            lower_first(key)
        ))
    })
}

pub(super) fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_lowercase().collect::<String>() + c.as_str()).unwrap_or_default()
}

pub(super) fn opt_obj<'a>(m: &'a Map<String, Value>, key: &str) -> Result<Option<&'a Map<String, Value>>, AwsError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(_) => Err(type_err(key, "an object")),
    }
}

/// The function name and qualifier from a path label plus `?Qualifier=`.
pub(super) fn function_target(ctx: &Ctx, raw: &str) -> Result<(String, Option<String>), AwsError> {
    let FunctionRef { name, qualifier, .. } =
        arn::parse_function_ref(raw).map_err(|e| AwsError::invalid_param(e.to_string()))?;
    let q = ctx.q("Qualifier").filter(|s| !s.is_empty()).map(str::to_string);
    match (qualifier, q) {
        (Some(a), Some(b)) if a != b => Err(errors::qualifier_mismatch()),
        (a, b) => Ok((name, a.or(b))),
    }
}

/// Refuses a function ARN (full or partial) of another region or account before anything is
/// looked up: the store is per region, so without this a `eu-central-1` ARN would act on the
/// `us-east-1` function of the same name. Names that do not parse are left to the handler.
pub(super) fn check_function_scope(scope: &Scope, raw: &str) -> Result<(), AwsError> {
    let Ok(r) = arn::parse_function_ref(raw) else { return Ok(()) };
    if let Some(region) = &r.region
        && *region != scope.region
    {
        return Err(errors::other_region(region, &scope.region));
    }
    if let Some(account) = &r.account
        && *account != scope.account
    {
        let region = r.region.as_deref().unwrap_or(&scope.region);
        return Err(errors::other_account(&scope.account, &arn::function_arn(region, account, &r.name, None)));
    }
    Ok(())
}

/// An unqualified function name (operations that take the unqualified shape).
pub(super) fn unqualified(raw: &str) -> Result<String, AwsError> {
    let r = arn::parse_function_ref(raw).map_err(|e| AwsError::invalid_param(e.to_string()))?;
    if r.qualifier.is_some() {
        return Err(AwsError::invalid_param(format!(
            "1 validation error detected: Value '{raw}' at 'functionName' failed to satisfy constraint: unqualified function name expected"
        )));
    }
    Ok(r.name)
}

pub(super) fn not_found(ctx: &Ctx, name: &str, q: Option<&str>) -> AwsError {
    errors::function_not_found(&ctx.scope, name, q)
}

/// [`Store::update_function`](super::store::Store::update_function) with AWS's not-found error.
pub(super) fn update_record<R>(
    ctx: &Ctx,
    name: &str,
    f: impl FnOnce(&mut FunctionRecord) -> Result<R, AwsError>,
) -> Result<(FunctionRecord, R), AwsError> {
    ctx.store().update_function(name, f)?.ok_or_else(|| not_found(ctx, name, None))
}

pub(super) fn get_record(ctx: &Ctx, name: &str) -> Result<FunctionRecord, AwsError> {
    ctx.store().get_function(name).ok_or_else(|| not_found(ctx, name, None))
}

/// The configuration a qualifier names.
pub(super) fn config_for(ctx: &Ctx, rec: &FunctionRecord, q: Option<&str>) -> Result<Arc<FunctionConfig>, AwsError> {
    let name = &rec.latest.name;
    match q {
        None | Some("$LATEST") => Ok(rec.latest.clone()),
        Some(v) if v.chars().all(|c| c.is_ascii_digit()) => {
            v.parse::<u64>().ok().and_then(|n| rec.versions.get(&n).cloned()).ok_or_else(|| not_found(ctx, name, q))
        }
        Some(alias) => {
            let a = rec.aliases.get(alias).ok_or_else(|| not_found(ctx, name, q))?;
            config_for(ctx, rec, Some(&a.function_version.clone()))
        }
    }
}

pub(super) fn check_revision(revision: Option<&str>, current: &str) -> Result<(), AwsError> {
    if let Some(r) = revision
        && r != current
    {
        return Err(errors::revision_mismatch());
    }
    Ok(())
}

pub(super) fn new_revision() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Stored code: (sha hex, sha b64, size).
pub(super) struct StoredCode {
    pub(super) sha_hex: String,
    pub(super) sha_b64: String,
    pub(super) size: u64,
}

pub(super) fn b64_decode(s: &str, what: &str) -> Result<Vec<u8>, AwsError> {
    base64::engine::general_purpose::STANDARD.decode(s.trim()).map_err(|_| {
        AwsError::invalid_content(format!("Could not parse request body into json: {what} is not valid base64"))
    })
}

/// Where a request's code comes from: `ZipFile` (base64) or `S3Bucket`/`S3Key`/`S3ObjectVersion`
/// (members of `Code`, `Content` or UpdateFunctionCode's body).
#[derive(Clone, Copy, Default)]
pub(super) struct CodeSource<'a> {
    pub(super) zip_file: Option<&'a str>,
    pub(super) s3_bucket: Option<&'a str>,
    pub(super) s3_key: Option<&'a str>,
    pub(super) s3_object_version: Option<&'a str>,
}

/// Reads the code a request names and stores it. It blocks (S3 reads, hashing, fsync): only
/// handlers the route runs on the blocking pool call it.
pub(super) fn store_code(ctx: &Ctx, src: CodeSource) -> Result<Option<StoredCode>, AwsError> {
    let bytes = if let Some(z) = src.zip_file {
        b64_decode(z, "ZipFile")?
    } else if let Some(bucket) = src.s3_bucket {
        let key = required(src.s3_key, "S3Key")?;
        let got = ctx.lambda.s3.get_object_bytes(bucket, key, src.s3_object_version);
        match got {
            Ok(b) => b.to_vec(),
            Err(e) => {
                let (code, msg) = match &e {
                    crate::s3::S3Error::NoSuchBucket(_) => ("NoSuchBucket", "The specified bucket does not exist"),
                    crate::s3::S3Error::NoSuchKey(_) => ("NoSuchKey", "The specified key does not exist."),
                    crate::s3::S3Error::NoSuchVersion(_) => ("NoSuchVersion", "The specified version does not exist."),
                    _ => ("InternalError", "We encountered an internal error. Please try again."),
                };
                return Err(AwsError::invalid_param(format!(
                    "Error occurred while GetObject. S3 Error Code: {code}. S3 Error Message: {msg}"
                )));
            }
        }
    } else {
        return Ok(None);
    };
    let (d, pin) = ctx.store().put_zip(&bytes)?;
    ctx.pins.lock().push(pin);
    Ok(Some(StoredCode { sha_hex: d.sha256_hex, sha_b64: d.sha256_b64, size: d.size }))
}

/// Reads a local layer zip named by path. Only a regular file no larger than a package may
/// be read: a path such as `/dev/zero` or a FIFO must not hang or exhaust the server.
pub(super) fn read_local_layer(path: &str) -> Result<Vec<u8>, AwsError> {
    use std::io::Read;
    let cannot = |e: &dyn std::fmt::Display| AwsError::invalid_param(format!("Cannot read layer file {path}: {e}"));
    let max = crate::lambda::code::Limits::default().max_zip_bytes;
    let f = std::fs::File::open(path).map_err(|e| cannot(&e))?;
    let meta = f.metadata().map_err(|e| cannot(&e))?;
    if !meta.is_file() {
        return Err(cannot(&"not a regular file"));
    }
    if meta.len() > max as u64 {
        return Err(cannot(&format!("larger than {max} bytes")));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    f.take(max as u64 + 1).read_to_end(&mut bytes).map_err(|e| cannot(&e))?;
    if bytes.len() > max {
        return Err(cannot(&format!("larger than {max} bytes")));
    }
    Ok(bytes)
}

/// Resolves the `Layers` list: layer version ARNs, or local zip paths (the seed's form).
pub(super) fn resolve_layers(ctx: &Ctx, list: &[String]) -> Result<Vec<LayerRef>, AwsError> {
    check_layer_list(ctx, list)?;
    list.iter()
        .map(|l| {
            if let Some(r) = arn::parse_layer_version_arn(l) {
                // Pinned before the layer is read: a DeleteLayerVersion running meanwhile
                // cannot free code this function is about to reference.
                let sha_pin = ctx.store().get_layer(&r.name).and_then(|rec| rec.versions.get(&r.version).map(|v| v.sha_hex.clone()));
                if let Some(sha) = sha_pin {
                    ctx.pins.lock().push(ctx.store().pin(&sha));
                }
                let rec = ctx.store().get_layer(&r.name);
                let v = rec.and_then(|rec| rec.versions.get(&r.version).cloned()).ok_or_else(|| {
                    AwsError::invalid_param(format!(
                        "Layer version {l} does not exist."
                    ))
                })?;
                Ok(LayerRef { arn: l.clone(), code_size: v.code_size, sha_hex: v.sha_hex, hot_reload_dir: v.hot_reload_dir })
            } else if l.starts_with('/') || l.ends_with(".zip") || std::path::Path::new(l).is_file() {
                let (d, pin) = ctx.store().put_zip(&read_local_layer(l)?)?;
                ctx.pins.lock().push(pin);
                Ok(LayerRef { arn: l.clone(), code_size: d.size, sha_hex: d.sha256_hex, hot_reload_dir: None })
            } else {
                Err(AwsError::invalid_param(format!(
                    "1 validation error detected: Value '{l}' at 'layers' failed to satisfy constraint: Member must be a layer version ARN or a local .zip path"
                )))
            }
        })
        .collect()
}

/// One page of a list operation as `{list_key: [...], NextMarker}`.
///
/// Each item comes with a sort key whose order is the listing order. The marker is the key
/// of the last item returned, and the next page starts after it, so items created or
/// deleted between pages (a cleanup loop that deletes what it lists) neither shift nor
/// skip the rest.
pub(super) fn page_response(ctx: &Ctx, list_key: &str, mut items: Vec<(String, Value)>) -> R {
    let max = match ctx.q("MaxItems") {
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=10000).contains(n))
            .ok_or_else(|| AwsError::invalid_param(format!("MaxItems must be between 1 and 10000, got {s}")))?,
        None => MAX_PAGE,
    }
    .min(MAX_PAGE);
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let marker = ctx.q("Marker").filter(|s| !s.is_empty());
    let start = marker.map_or(0, |m| items.partition_point(|(k, _)| k.as_str() <= m));
    let rest = items.len() - start;
    let page: Vec<(String, Value)> = items.into_iter().skip(start).take(max).collect();
    let next = if rest > page.len() { page.last().map(|(k, _)| k.clone()) } else { None };
    let mut out = json!({ list_key: page.into_iter().map(|(_, v)| v).collect::<Vec<_>>() });
    if let Some(n) = next {
        out["NextMarker"] = n.into();
    }
    ok_json(StatusCode::OK, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    /// The shared members reach the flattened struct, the others stay on the input, and a raw
    /// member keeps "present as null" apart from "absent" through the flattening.
    #[test]
    fn typed_inputs_flatten_the_shared_members() {
        let c: input::CreateFunctionRequest = typed(doc(json!({
            "FunctionName": "f", "Role": "r", "Timeout": 30, "Architectures": ["arm64"], "VpcConfig": null,
            "Layers": ["/l.zip"], "Publish": true, "Code": {"ZipFile": "eg=="},
        })))
        .expect("decodes");
        assert_eq!(c.function_name.as_deref(), Some("f"));
        assert_eq!(c.config.role.as_deref(), Some("r"));
        assert_eq!(c.config.timeout, Some(30));
        assert_eq!(c.config.layers, Some(vec!["/l.zip".to_string()]));
        assert_eq!(c.config.vpc_config, Some(Value::Null));
        assert_eq!(c.config.dead_letter_config, None);
        assert_eq!(c.architectures, Some(vec!["arm64".to_string()]));
        assert_eq!(c.publish, Some(true));
        assert_eq!(c.code.and_then(|c| c.zip_file).as_deref(), Some("eg=="));

        let u: input::UpdateFunctionConfigurationRequest =
            typed(doc(json!({"Handler": "h.f", "RevisionId": "x"}))).expect("decodes");
        assert_eq!(u.config.handler.as_deref(), Some("h.f"));
        assert_eq!(u.revision_id.as_deref(), Some("x"));

        let m: input::UpdateEventSourceMappingRequest = typed(doc(json!({
            "BatchSize": 5, "DestinationConfig": null, "FilterCriteria": {"Filters": [{"Pattern": "{}"}]},
            "ScalingConfig": {}, "Enabled": false,
        })))
        .expect("decodes");
        assert_eq!(m.mapping.batch_size, Some(5));
        assert_eq!(m.mapping.destination_config, Some(Value::Null));
        assert_eq!(m.mapping.enabled, Some(false));
        let filters = m.mapping.filter_criteria.and_then(|f| f.filters).unwrap_or_default();
        assert_eq!(filters.len(), 1);
        assert_eq!(filters[0].pattern.as_deref(), Some("{}"));
        assert!(m.mapping.scaling_config.is_some_and(|s| s.maximum_concurrency.is_none()));

        let c: input::CreateEventSourceMappingRequest =
            typed(doc(json!({"FunctionName": "f", "EventSourceArn": "arn:aws:sqs:us-east-1:000000000000:q"})))
                .expect("decodes");
        assert_eq!(c.mapping.function_name.as_deref(), Some("f"));
        assert_eq!(c.event_source_arn.as_deref(), Some("arn:aws:sqs:us-east-1:000000000000:q"));
        assert_eq!(c.mapping.destination_config, None);
    }
}
