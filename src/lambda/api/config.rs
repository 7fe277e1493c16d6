//! The function configuration members CreateFunction and UpdateFunctionConfiguration share:
//! decoded, checked and applied to a [`FunctionConfig`].

use super::*;

/// The runtimes CreateFunction accepts today, in the order AWS lists them in its message: the
/// recorded set the generator writes for PublishLayerVersion's runtimes (one list, in
/// `model_gen.rs`; see tools/gen_lambda_model.py).
fn creatable_runtimes() -> &'static [&'static str] {
    crate::lambda::model_gen::SHAPES
        .iter()
        .find(|s| s.name == "CompatibleRuntimesForPublishLayerVersionRequest")
        .map_or(&[], |s| s.enum_values)
}

/// A function's `Runtime`: creatable, else deprecated (a model value) or unknown.
pub(super) fn validate_function_runtime(r: &str) -> Result<(), AwsError> {
    if creatable_runtimes().contains(&r) {
        Ok(())
    } else if RUNTIMES.contains(&r) {
        Err(errors::runtime_deprecated(r))
    } else {
        Err(errors::runtime_unknown(r, creatable_runtimes()))
    }
}

/// `Environment.Variables` as AWS measures it against the 4 KB limit: the map serialized as
/// compact JSON (`{"K":"V",...}`) in the request's order, which AWS's message quotes.
/// `body` is the request the map came from; its order is read again only for the message.
pub(super) fn env_measured(vars: &BTreeMap<String, String>, body: &[u8]) -> String {
    let sorted = || serde_json::to_string(vars).unwrap_or_default();
    let Ok(probe) = serde_json::from_slice::<EnvProbe>(body) else { return sorted() };
    let Some(pairs) = probe.environment.and_then(|e| e.variables) else { return sorted() };
    let mut out = String::from("{");
    for (i, (k, v)) in pairs.0.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::to_string(k).unwrap_or_default());
        out.push(':');
        out.push_str(&serde_json::to_string(v).unwrap_or_default());
    }
    out.push('}');
    // The same bytes as the sorted form in another order; fall back if the probe disagrees.
    if out.len() == sorted().len() { out } else { sorted() }
}

/// Just `Environment.Variables` of a request body, in the order the request has it.
#[derive(serde::Deserialize)]
struct EnvProbe {
    #[serde(rename = "Environment")]
    environment: Option<EnvVarsProbe>,
}

#[derive(serde::Deserialize)]
struct EnvVarsProbe {
    #[serde(rename = "Variables")]
    variables: Option<OrderedPairs>,
}

/// A JSON object of strings as its (key, value) pairs in document order.
struct OrderedPairs(Vec<(String, String)>);

impl<'de> serde::Deserialize<'de> for OrderedPairs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = OrderedPairs;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of strings")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<OrderedPairs, A::Error> {
                let mut pairs = Vec::new();
                while let Some(kv) = a.next_entry::<String, String>()? {
                    pairs.push(kv);
                }
                Ok(OrderedPairs(pairs))
            }
        }
        d.deserialize_map(V)
    }
}

/// The most bytes of serialized environment variables a function may have (AWS: 4 KB).
const MAX_ENV_BYTES: usize = 4096;

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
pub(super) fn requested_layers(ctx: &Ctx, layers: Option<&[String]>) -> Result<Option<Vec<LayerRef>>, AwsError> {
    layers.map(|l| resolve_layers(ctx, l)).transpose()
}

/// Applies the configuration members present in `m` (the members CreateFunction and
/// UpdateFunctionConfiguration share, one generated struct in both inputs) to `c`. `layers`
/// comes from [`requested_layers`] on the same request; `architectures` is CreateFunction's
/// (UpdateFunctionCode sets them for an update); `body` is the request's text (for one
/// message's order).
pub(super) fn apply_config(
    c: &mut FunctionConfig,
    m: &input::FunctionConfigMembers,
    layers: Option<Vec<LayerRef>>,
    architectures: Option<&[String]>,
    body: &[u8],
) -> Result<(), AwsError> {
    if let Some(r) = &m.role {
        arn::validate_role(r).map_err(|e| AwsError::invalid_param(e.to_string()))?;
        c.role = r.clone();
    }
    if let Some(r) = &m.runtime {
        validate_function_runtime(r)?;
        c.runtime = Some(r.clone());
    }
    if let Some(h) = &m.handler {
        validate_handler(h)?;
        c.handler = Some(h.clone());
    }
    if let Some(d) = m.description.clone() {
        if d.len() > 256 {
            return Err(AwsError::invalid_param("Description must be at most 256 characters"));
        }
        c.description = d;
    }
    if let Some(t) = non_negative("Timeout", m.timeout)? {
        if !(1..=900).contains(&t) {
            return Err(AwsError::invalid_param(format!(
                "1 validation error detected: Value '{t}' at 'timeout' failed to satisfy constraint: Member must have value between 1 and 900"
            )));
        }
        c.timeout = t as u32;
    }
    if let Some(ms) = non_negative("MemorySize", m.memory_size)? {
        if !(128..=10240).contains(&ms) {
            return Err(AwsError::invalid_param(format!(
                "1 validation error detected: Value '{ms}' at 'memorySize' failed to satisfy constraint: Member must have value between 128 and 10240"
            )));
        }
        c.memory_size = ms as u32;
    }
    if let Some(env) = &m.environment {
        let vars = env.variables.clone().unwrap_or_default();
        let size = serde_json::to_string(&vars).map(|s| s.len()).unwrap_or(usize::MAX);
        if size > MAX_ENV_BYTES {
            return Err(errors::env_too_large(&env_measured(&vars, body)));
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
        c.environment_set = true;
    }
    if let Some(layers) = layers {
        c.layers = layers;
    }
    if let Some(a) = architectures {
        if a.len() != 1 || !(a[0] == "x86_64" || a[0] == "arm64") {
            return Err(AwsError::invalid_param("Architectures must be one of [x86_64] or [arm64]"));
        }
        c.architectures = a.to_vec();
    }
    if let Some(e) = &m.ephemeral_storage
        && let Some(s) = non_negative("Size", e.size)?
    {
        if !(512..=10240).contains(&s) {
            return Err(AwsError::invalid_param("EphemeralStorage.Size must be between 512 and 10240"));
        }
        c.ephemeral_storage = s as u32;
    }
    if let Some(mode) = m.tracing_config.as_ref().and_then(|t| t.mode.as_deref()) {
        // The model layer has refused any other value; this is for callers without it.
        c.tracing_mode = TracingMode::parse(mode)
            .ok_or_else(|| AwsError::invalid_param(format!("Unsupported TracingConfig.Mode {mode}")))?;
    }
    let given = |v: &Option<Value>| v.clone().filter(|v| !v.is_null());
    if let Some(ic) = given(&m.image_config) {
        c.image_config = Some(ic);
    }
    if let Some(lc) = given(&m.logging_config) {
        c.logging_config = Some(lc);
    }
    if let Some(d) = given(&m.dead_letter_config) {
        c.dead_letter_config = Some(d);
    }
    if let Some(k) = &m.kms_key_arn {
        c.kms_key_arn = Some(k.clone());
    }
    if let Some(v) = given(&m.vpc_config) {
        c.vpc_config = Some(v);
    }
    Ok(())
}

pub(super) fn check_runnable(c: &FunctionConfig) -> Result<(), AwsError> {
    if c.package_type == PackageType::Zip {
        if c.runtime.is_none() {
            return Err(AwsError::invalid_param("Runtime is required for a function with PackageType Zip"));
        }
        if c.handler.is_none() && !c.runtime.as_deref().unwrap_or("").starts_with("provided") {
            return Err(AwsError::invalid_param("Handler is required for a function with PackageType Zip"));
        }
    }
    Ok(())
}
