//! The function operations: Create, Get, GetConfiguration, List, UpdateCode,
//! UpdateConfiguration and Delete.

use super::*;

/// A CreateFunction request, decoded and checked without touching the store or the disk.
pub(super) struct CreateInput {
    /// The configuration asked for; layers and code are resolved by [`create_function`].
    config: FunctionConfig,
    code: input::FunctionCode,
    tags: BTreeMap<String, String>,
    publish: bool,
    layers: Option<Vec<String>>,
    code_signing_config: Option<String>,
}

/// Decodes a CreateFunction body into the configuration it asks for, with no side effects
/// (layers and code are not resolved). The control-plane fuzz target feeds it arbitrary JSON.
pub fn decode_create_function(body: &[u8]) -> Result<FunctionConfig, AwsError> {
    let input = typed(parse_body(body)?)?;
    decode_create(input, body).map(|input| input.config)
}

pub(super) fn decode_create(mut m: input::CreateFunctionRequest, body: &[u8]) -> Result<CreateInput, AwsError> {
    let raw = required(m.function_name.take(), "FunctionName")?;
    let name = unqualified(&raw)?;
    arn::validate_function_name(&name).map_err(|e| AwsError::invalid_param(e.to_string()))?;
    let role = required(m.config.role.clone(), "Role")?;
    let package_type = match m.package_type.take() {
        None => PackageType::Zip,
        Some(p) => {
            PackageType::parse(&p).ok_or_else(|| AwsError::invalid_param(format!("Unsupported PackageType {p}")))?
        }
    };
    let code = required(m.code.take(), "Code")?;
    let mut c = FunctionConfig {
        name: name.clone(),
        version: "$LATEST".into(),
        runtime: None,
        role,
        handler: None,
        description: String::new(),
        timeout: 3,
        memory_size: 128,
        last_modified: crate::aws::timestamp_now(),
        package_type,
        code_sha_hex: String::new(),
        code_sha256: String::new(),
        code_size: 0,
        image_uri: None,
        image_config: None,
        environment: BTreeMap::new(),
        layers: Vec::new(),
        architectures: vec!["x86_64".into()],
        ephemeral_storage: 512,
        tracing_mode: TracingMode::PassThrough,
        logging_config: None,
        dead_letter_config: None,
        kms_key_arn: None,
        vpc_config: None,
        revision_id: new_revision(),
        state: State::Active,
        state_reason: None,
        state_reason_code: None,
        last_update_status: LastUpdateStatus::Successful,
        environment_set: false,
        source_description: None,
        hot_reload_dir: None,
    };
    apply_config(&mut c, &m.config, None, m.architectures.as_deref(), body)?;
    if package_type == PackageType::Image {
        let uri = code
            .image_uri
            .clone()
            .ok_or_else(|| AwsError::invalid_param("Code.ImageUri is required for PackageType Image"))?;
        c.code_sha256 = crate::lambda::code::digest(uri.as_bytes()).sha256_b64;
        c.image_uri = Some(uri);
        c.runtime = None;
        c.handler = None;
    } else {
        check_runnable(&c)?;
    }
    let tags = m.tags.take().unwrap_or_default();
    if tags.len() > MAX_TAGS {
        return Err(errors::too_many_tags());
    }
    let publish = m.publish.unwrap_or(false);
    Ok(CreateInput {
        config: c,
        code,
        tags,
        publish,
        layers: m.config.layers.take(),
        code_signing_config: m.code_signing_config_arn.take(),
    })
}

/// CreateFunction. It reads S3 and writes the code store: the route runs it on the blocking
/// pool.
pub(super) fn create_function(ctx: &Ctx, m: input::CreateFunctionRequest, body: &[u8]) -> R {
    if let Some(raw) = &m.function_name {
        check_function_scope(&ctx.scope, raw)?;
    }
    let CreateInput { config: mut c, code, tags, publish, layers, code_signing_config } = decode_create(m, body)?;
    let name = c.name.clone();
    if ctx.store().latest(&name).is_some() {
        return Err(errors::function_exists(&name));
    }
    if let Some(layers) = requested_layers(ctx, layers.as_deref())? {
        c.layers = layers;
    }
    let hot = if c.package_type == PackageType::Zip {
        ctx.lambda.hot_reload.dir_of(code.zip_file.is_some(), code.s3_bucket.as_deref(), code.s3_key.as_deref())?
    } else {
        None
    };
    if let Some(dir) = hot {
        // Runs from the directory in place: no blob, LocalStack's placeholder digest and size.
        c.hot_reload_dir = Some(dir);
        c.code_sha256 = hot_reload::CODE_SHA256.into();
        c.code_size = 0;
    } else if c.package_type == PackageType::Zip {
        let source = CodeSource {
            zip_file: code.zip_file.as_deref(),
            s3_bucket: code.s3_bucket.as_deref(),
            s3_key: code.s3_key.as_deref(),
            s3_object_version: code.s3_object_version.as_deref(),
        };
        let stored = store_code(ctx, source)?.ok_or_else(|| {
            AwsError::invalid_param(
                "Please provide a source for function code: Code.ZipFile or Code.S3Bucket and Code.S3Key",
            )
        })?;
        c.code_sha_hex = stored.sha_hex;
        c.code_sha256 = stored.sha_b64;
        c.code_size = stored.size;
    }
    check_combined_size(ctx, &c.code_sha_hex, &c.layers)?;
    // Pending until the code is ready: a zip at once, a Docker function's image once it is
    // present (pulled now, not on the first invoke).
    let docker_image = invoke::docker_image(ctx.lambda, &c, &tags);
    mark_creating(&mut c);
    let latest = Arc::new(c);
    let mut rec = FunctionRecord {
        latest: latest.clone(),
        versions: BTreeMap::new(),
        aliases: BTreeMap::new(),
        next_version: 1,
        tags,
        reserved_concurrency: None,
        policies: BTreeMap::new(),
        urls: BTreeMap::new(),
        event_invoke: BTreeMap::new(),
        provisioned: BTreeMap::new(),
        recursive_loop: None,
        code_signing_config: requested_csc(ctx, code_signing_config.as_deref())?,
    };
    let mut out = latest.to_json(&ctx.scope, false);
    if publish {
        // The published version's configuration, under the unqualified ARN (as AWS answers).
        let v = publish_into(&mut rec, None);
        out = v.to_json_with_arn(latest.arn(&ctx.scope, false));
    }
    ctx.store().create_function(rec)?;
    if latest.hot_reload_dir.is_some() || latest.layers.iter().any(|l| l.hot_reload_dir.is_some()) {
        ctx.lambda.hot_reload.sync(ctx.lambda);
    }
    tracing::info!(function = %name, "created function");
    settle(ctx.lambda.clone(), ctx.store(), name.clone(), docker_image, Some(ctx.scope.clone()));
    ok_json(StatusCode::CREATED, out)
}

pub(super) fn get_function(ctx: &Ctx, raw: &str) -> R {
    let (name, q) = function_target(ctx, raw)?;
    let rec = ctx.store().get_function(&name).ok_or_else(|| not_found(ctx, &name, q.as_deref()))?;
    let c = config_for(ctx, &rec, q.as_deref())?;
    // A qualified request gets a qualified ARN: `:$LATEST`, `:<version>`, or the alias it named.
    let function_arn = match q.as_deref() {
        Some(alias) if rec.aliases.contains_key(alias) => {
            arn::function_arn(&ctx.scope.region, &ctx.scope.account, &name, Some(alias))
        }
        Some(_) => c.arn(&ctx.scope, true),
        None => c.arn(&ctx.scope, false),
    };
    let mut out = json!({"Configuration": c.to_json_with_arn(function_arn)});
    // Tags only when there are some, as AWS answers.
    if !rec.tags.is_empty() {
        out["Tags"] = json!(rec.tags);
    }
    out["Code"] = if let Some(uri) = &c.image_uri {
        json!({"RepositoryType": "ECR", "ImageUri": uri, "ResolvedImageUri": uri})
    } else if let Some(dir) = &c.hot_reload_dir {
        json!({"RepositoryType": "S3", "Location": hot_reload::location(dir)})
    } else {
        json!({"RepositoryType": "S3", "Location": format!("{}/_ruststack/code/{}", ctx.lambda.endpoint_url, c.code_sha_hex)})
    };
    if let Some(n) = rec.reserved_concurrency {
        out["Concurrency"] = json!({"ReservedConcurrentExecutions": n});
    }
    ok_json(StatusCode::OK, out)
}

pub(super) fn get_configuration(ctx: &Ctx, raw: &str) -> R {
    let (name, q) = function_target(ctx, raw)?;
    let rec = ctx.store().get_function(&name).ok_or_else(|| not_found(ctx, &name, q.as_deref()))?;
    let c = config_for(ctx, &rec, q.as_deref())?;
    // Qualified by the version that was resolved, also for an alias (as AWS does here).
    ok_json(StatusCode::OK, c.to_json(&ctx.scope, q.is_some()))
}

pub(super) fn list_functions(ctx: &Ctx) -> R {
    let all_versions = match ctx.q("FunctionVersion") {
        None => false,
        Some("ALL") => true,
        Some(other) => return Err(errors::function_version_filter(other)),
    };
    let mut items = Vec::new();
    for rec in ctx.store().list_functions() {
        let name = &rec.latest.name;
        items.push((function_key(name, 0), list_item(&rec.latest, ctx, all_versions)));
        if all_versions {
            for (n, v) in &rec.versions {
                items.push((function_key(name, *n), list_item(v, ctx, true)));
            }
        }
    }
    page_response(ctx, "Functions", items)
}

/// ListFunctions and ListVersionsByFunction return a subset of FunctionConfiguration.
pub(super) fn list_item(c: &FunctionConfig, ctx: &Ctx, qualified: bool) -> Value {
    let mut v = c.to_json(&ctx.scope, qualified);
    if let Some(m) = v.as_object_mut() {
        for k in [
            "State",
            "StateReason",
            "StateReasonCode",
            "LastUpdateStatus",
            "LastUpdateStatusReason",
            "LastUpdateStatusReasonCode",
            "RuntimeVersionConfig",
        ] {
            m.remove(k);
        }
    }
    v
}

/// Sort key of a function version in ListFunctions: the name, then `$LATEST` (0) and the
/// versions in order. `!` sorts below every name character, so `a`'s versions come before `a-b`.
pub(super) fn function_key(name: &str, version: u64) -> String {
    format!("{name}!{version:020}")
}

/// UpdateFunctionCode (on the blocking pool, as [`create_function`]).
pub(super) fn update_code(ctx: &Ctx, raw: &str, m: input::UpdateFunctionCodeRequest) -> R {
    let name = unqualified(raw)?;
    let cur = ctx.store().latest(&name).ok_or_else(|| not_found(ctx, &name, None))?;
    let image_uri = m.image_uri.clone();
    let hot = if cur.package_type == PackageType::Zip && image_uri.is_none() {
        ctx.lambda.hot_reload.dir_of(m.zip_file.is_some(), m.s3_bucket.as_deref(), m.s3_key.as_deref())?
    } else {
        None
    };
    let stored = if hot.is_some() {
        // A directory in place: no blob, LocalStack's placeholder digest and size.
        Some(StoredCode { sha_hex: String::new(), sha_b64: hot_reload::CODE_SHA256.into(), size: 0 })
    } else if cur.package_type == PackageType::Zip {
        if image_uri.is_some() {
            return Err(AwsError::invalid_param(
                "Please don't provide ImageUri when updating a function with packageType Zip.",
            ));
        }
        let source = CodeSource {
            zip_file: m.zip_file.as_deref(),
            s3_bucket: m.s3_bucket.as_deref(),
            s3_key: m.s3_key.as_deref(),
            s3_object_version: m.s3_object_version.as_deref(),
        };
        Some(store_code(ctx, source)?.ok_or_else(|| {
            AwsError::invalid_param("Please provide a source for function code: ZipFile or S3Bucket and S3Key")
        })?)
    } else {
        if image_uri.is_none() {
            return Err(AwsError::invalid_param(
                "Please provide ImageUri when updating a function with packageType Image.",
            ));
        }
        None
    };
    if let Some(s) = &stored {
        check_combined_size(ctx, &s.sha_hex, &cur.layers)?;
    }
    let arch = m.architectures.clone();
    if m.dry_run.unwrap_or(false) {
        let mut c = (*cur).clone();
        if let Some(s) = &stored {
            c.code_sha256 = s.sha_b64.clone();
            c.code_size = s.size;
            c.hot_reload_dir = hot.clone();
        }
        return ok_json(StatusCode::OK, c.to_json(&ctx.scope, false));
    }
    let publish = m.publish.unwrap_or(false);
    let (rec, published) = update_record(ctx, &name, |rec| {
        check_revision(m.revision_id.as_deref(), &rec.latest.revision_id)?;
        let mut c = (*rec.latest).clone();
        if let Some(s) = &stored {
            c.code_sha_hex = s.sha_hex.clone();
            c.code_sha256 = s.sha_b64.clone();
            c.code_size = s.size;
            c.hot_reload_dir = hot.clone();
        }
        if let Some(uri) = &image_uri {
            c.code_sha256 = crate::lambda::code::digest(uri.as_bytes()).sha256_b64;
            c.image_uri = Some(uri.clone());
        }
        if let Some(a) = &arch {
            c.architectures = a.clone();
        }
        c.last_modified = crate::aws::timestamp_now();
        c.revision_id = new_revision();
        mark_updating(&mut c);
        rec.latest = Arc::new(c);
        Ok(if publish { Some(publish_into(rec, None)) } else { None })
    })?;
    ctx.lambda.drain(&ctx.scope, &name);
    if hot.is_some() || cur.hot_reload_dir.is_some() {
        ctx.lambda.hot_reload.sync(ctx.lambda);
    }
    settle(ctx.lambda.clone(), ctx.store(), name.clone(), None, Some(ctx.scope.clone()));
    tracing::info!(function = %name, "updated function code");
    match published {
        Some(v) => ok_json(StatusCode::OK, v.to_json(&ctx.scope, true)),
        None => ok_json(StatusCode::OK, rec.latest.to_json(&ctx.scope, false)),
    }
}

/// UpdateFunctionConfiguration (on the blocking pool: local layers are read and stored).
pub(super) fn update_configuration(
    ctx: &Ctx,
    raw: &str,
    input: input::UpdateFunctionConfigurationRequest,
    body: &[u8],
) -> R {
    let name = unqualified(raw)?;
    if ctx.store().latest(&name).is_none() {
        return Err(not_found(ctx, &name, None));
    }
    // Layers may read files or the store: resolve them before taking the store lock.
    let layers = requested_layers(ctx, input.config.layers.as_deref())?;
    let hot_layers = layers.as_ref().is_some_and(|l| l.iter().any(|l| l.hot_reload_dir.is_some()));
    let (revision, m) = (input.revision_id, input.config);
    if let (Some(l), Some(cur)) = (&layers, ctx.store().latest(&name)) {
        check_combined_size(ctx, &cur.code_sha_hex, l)?;
    }
    let (rec, _) = update_record(ctx, &name, |rec| {
        check_revision(revision.as_deref(), &rec.latest.revision_id)?;
        // Apply to the record as it is under the lock, so a concurrent update is not lost.
        let mut c = (*rec.latest).clone();
        apply_config(&mut c, &m, layers, None, body)?;
        check_runnable(&c)?;
        c.last_modified = crate::aws::timestamp_now();
        c.revision_id = new_revision();
        mark_updating(&mut c);
        rec.latest = Arc::new(c);
        Ok(())
    })?;
    ctx.lambda.drain(&ctx.scope, &name);
    if hot_layers || ctx.lambda.hot_reload.uses(&name) {
        ctx.lambda.hot_reload.sync(ctx.lambda);
    }
    settle(ctx.lambda.clone(), ctx.store(), name.clone(), None, Some(ctx.scope.clone()));
    tracing::info!(function = %name, "updated function configuration");
    ok_json(StatusCode::OK, rec.latest.to_json(&ctx.scope, false))
}

/// DeleteFunction. With a version number it deletes that version; a version that does not
/// exist is already gone (204, as AWS answers). AWS's checks come in its order: qualifier
/// mismatch, `$LATEST`, an alias name, then whether the function exists.
pub(super) fn delete_function(ctx: &Ctx, raw: &str) -> R {
    let (name, q) = function_target(ctx, raw)?;
    let version = match q.as_deref() {
        None => None,
        Some("$LATEST") => return Err(errors::delete_latest()),
        Some(v) => match v.parse::<u64>() {
            Ok(n) if v.bytes().all(|c| c.is_ascii_digit()) => Some((v.to_string(), n)),
            _ if v.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_') => {
                return Err(errors::delete_alias_unsupported());
            }
            _ => return Err(not_found(ctx, &name, None)),
        },
    };
    let rec = ctx.store().get_function(&name).ok_or_else(|| not_found(ctx, &name, None))?;
    match version {
        None => {
            for key in rec.provisioned.keys() {
                unprovision(ctx.lambda, &ctx.scope, &name, key);
            }
            ctx.store().delete_function(&name)?.ok_or_else(|| not_found(ctx, &name, None))?;
            ctx.lambda.drain(&ctx.scope, &name);
            if ctx.lambda.hot_reload.uses(&name) {
                ctx.lambda.hot_reload.sync(ctx.lambda);
            }
            tracing::info!(function = %name, "deleted function");
        }
        Some((v, n)) => {
            let v = v.as_str();
            if !rec.versions.contains_key(&n) {
                return Ok(http_util::empty(StatusCode::NO_CONTENT));
            }
            // An alias references a version it points at or routes a share of its traffic to.
            let refers = |a: &Alias| a.function_version == v || a.additional_version().is_some_and(|(x, _)| x == v);
            let referenced = |rec: &FunctionRecord| rec.aliases.values().any(refers);
            if rec.provisioned.contains_key(v) && !referenced(&rec) {
                unprovision(ctx.lambda, &ctx.scope, &name, v);
            }
            update_record(ctx, &name, |rec| {
                if referenced(rec) {
                    let names: Vec<String> =
                        rec.aliases.values().filter(|a| refers(a)).map(|a| a.name.clone()).collect();
                    return Err(errors::version_referenced(&names));
                }
                rec.versions.remove(&n);
                forget_qualifier(rec, v);
                Ok(())
            })?;
            ctx.lambda.drain(&ctx.scope, &name);
        }
    }
    Ok(http_util::empty(StatusCode::NO_CONTENT))
}
