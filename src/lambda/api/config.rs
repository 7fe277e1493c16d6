//! The function configuration members CreateFunction and UpdateFunctionConfiguration share:
//! decoded, checked and applied to a [`FunctionConfig`].

use super::*;

pub(super) fn validate_runtime(r: &str) -> Result<(), AwsError> {
    if RUNTIMES.contains(&r) {
        Ok(())
    } else {
        Err(AwsError::invalid_param(format!(
            "Value {r} at 'runtime' failed to satisfy constraint: Member must satisfy enum value set: [{}] or be a valid ARN",
            RUNTIMES.join(", ")
        )))
    }
}

pub(super) fn validate_handler(h: &str) -> Result<(), AwsError> {
    if h.is_empty() || h.len() > 128 || h.chars().any(char::is_whitespace) {
        return Err(AwsError::invalid_param(format!(
            "1 validation error detected: Value '{h}' at 'handler' failed to satisfy constraint: Member must satisfy regular expression pattern: [^\\s]+"
        )));
    }
    Ok(())
}

/// The `Layers` member resolved to stored layers, when the request names any.
/// This reads files and the store, so callers do it before taking the store's write lock.
pub(super) fn requested_layers(ctx: &Ctx, m: &Map<String, Value>) -> Result<Option<Vec<LayerRef>>, AwsError> {
    str_list(m, "Layers")?.map(|l| resolve_layers(ctx, &l)).transpose()
}

/// Applies the configuration members present in `m` to `c`; `layers` comes from
/// [`requested_layers`] on the same request.
pub(super) fn apply_config(
    c: &mut FunctionConfig,
    m: &Map<String, Value>,
    layers: Option<Vec<LayerRef>>,
) -> Result<(), AwsError> {
    if let Some(r) = opt_str(m, "Role")? {
        arn::validate_role(&r).map_err(|e| AwsError::invalid_param(e.to_string()))?;
        c.role = r;
    }
    if let Some(r) = opt_str(m, "Runtime")? {
        validate_runtime(&r)?;
        c.runtime = Some(r);
    }
    if let Some(h) = opt_str(m, "Handler")? {
        validate_handler(&h)?;
        c.handler = Some(h);
    }
    if let Some(d) = opt_str(m, "Description")? {
        if d.len() > 256 {
            return Err(AwsError::invalid_param("Description must be at most 256 characters"));
        }
        c.description = d;
    }
    if let Some(t) = opt_u64(m, "Timeout")? {
        if !(1..=900).contains(&t) {
            return Err(AwsError::invalid_param(format!(
                "1 validation error detected: Value '{t}' at 'timeout' failed to satisfy constraint: Member must have value between 1 and 900"
            )));
        }
        c.timeout = t as u32;
    }
    if let Some(ms) = opt_u64(m, "MemorySize")? {
        if !(128..=10240).contains(&ms) {
            return Err(AwsError::invalid_param(format!(
                "1 validation error detected: Value '{ms}' at 'memorySize' failed to satisfy constraint: Member must have value between 128 and 10240"
            )));
        }
        c.memory_size = ms as u32;
    }
    if let Some(env) = opt_obj(m, "Environment")? {
        let vars = str_map(env, "Variables")?.unwrap_or_default();
        let size: usize = vars.iter().map(|(k, v)| k.len() + v.len()).sum();
        if size > 4096 {
            return Err(AwsError::invalid_param(
                "Lambda was unable to configure your environment variables because the environment variables you have provided exceeded the 4KB limit.",
            ));
        }
        // The model's key pattern, `[a-zA-Z]([a-zA-Z0-9_])+`: a letter, then at least one more.
        let well_formed = |k: &str| {
            k.len() >= 2
                && k.starts_with(|c: char| c.is_ascii_alphabetic())
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        };
        if vars.keys().any(|k| !well_formed(k)) {
            return Err(AwsError::invalid_param(
                "1 validation error detected: Value at 'environment.variables' failed to satisfy constraint: Map keys must satisfy constraint: [Member must satisfy regular expression pattern: [a-zA-Z]([a-zA-Z0-9_])+]",
            ));
        }
        let reserved: Vec<&str> = vars.keys().map(String::as_str).filter(|k| RESERVED_ENV_KEYS.contains(k)).collect();
        if !reserved.is_empty() {
            return Err(AwsError::invalid_param(format!(
                "Lambda was unable to configure your environment variables because the environment variables you have provided contains reserved keys that are currently not supported for modification. Reserved keys used in this request: {}",
                reserved.join(", ")
            )));
        }
        c.environment = vars;
    }
    if let Some(layers) = layers {
        c.layers = layers;
    }
    if let Some(a) = str_list(m, "Architectures")? {
        if a.len() != 1 || !(a[0] == "x86_64" || a[0] == "arm64") {
            return Err(AwsError::invalid_param("Architectures must be one of [x86_64] or [arm64]"));
        }
        c.architectures = a;
    }
    if let Some(e) = opt_obj(m, "EphemeralStorage")?
        && let Some(s) = opt_u64(e, "Size")?
    {
        if !(512..=10240).contains(&s) {
            return Err(AwsError::invalid_param("EphemeralStorage.Size must be between 512 and 10240"));
        }
        c.ephemeral_storage = s as u32;
    }
    if let Some(t) = opt_obj(m, "TracingConfig")?
        && let Some(mode) = opt_str(t, "Mode")?
    {
        c.tracing_mode = mode;
    }
    if let Some(ic) = m.get("ImageConfig").filter(|v| !v.is_null()) {
        c.image_config = Some(ic.clone());
    }
    if let Some(lc) = m.get("LoggingConfig").filter(|v| !v.is_null()) {
        c.logging_config = Some(lc.clone());
    }
    if let Some(d) = m.get("DeadLetterConfig").filter(|v| !v.is_null()) {
        c.dead_letter_config = Some(d.clone());
    }
    if let Some(k) = opt_str(m, "KMSKeyArn")? {
        c.kms_key_arn = Some(k);
    }
    if let Some(v) = m.get("VpcConfig").filter(|v| !v.is_null()) {
        c.vpc_config = Some(v.clone());
    }
    Ok(())
}

pub(super) fn check_runnable(c: &FunctionConfig) -> Result<(), AwsError> {
    if c.package_type == "Zip" {
        if c.runtime.is_none() {
            return Err(AwsError::invalid_param("Runtime is required for a function with PackageType Zip"));
        }
        if c.handler.is_none() && !c.runtime.as_deref().unwrap_or("").starts_with("provided") {
            return Err(AwsError::invalid_param("Handler is required for a function with PackageType Zip"));
        }
    }
    Ok(())
}
