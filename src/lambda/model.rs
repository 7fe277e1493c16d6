//! The Lambda data model: what is stored for functions, versions, aliases and layers,
//! and how each renders as the JSON that AWS returns.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::aws::arn;

/// Where an ARN is rendered: the request's region and the server's account.
#[derive(Clone, Debug)]
pub struct Scope {
    pub region: String,
    pub account: String,
}

/// A layer attached to a function: a published layer version or a local zip file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LayerRef {
    /// The layer version ARN, or the local path as given.
    pub arn: String,
    pub code_size: u64,
    /// Blob address of the layer's zip (empty for a hot-reload layer).
    pub sha_hex: String,
    /// A hot-reload layer: the local directory it runs from, in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hot_reload_dir: Option<String>,
}

/// One version's configuration (`$LATEST` or a published number).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FunctionConfig {
    pub name: String,
    pub version: String,
    pub runtime: Option<String>,
    pub role: String,
    pub handler: Option<String>,
    pub description: String,
    pub timeout: u32,
    pub memory_size: u32,
    pub last_modified: String,
    pub package_type: PackageType,
    /// Blob address (hex sha256) of the zip; empty for images.
    pub code_sha_hex: String,
    /// CodeSha256 as AWS renders it (base64).
    pub code_sha256: String,
    pub code_size: u64,
    pub image_uri: Option<String>,
    pub image_config: Option<Value>,
    pub environment: BTreeMap<String, String>,
    pub layers: Vec<LayerRef>,
    pub architectures: Vec<String>,
    pub ephemeral_storage: u32,
    pub tracing_mode: TracingMode,
    pub logging_config: Option<Value>,
    pub dead_letter_config: Option<Value>,
    pub kms_key_arn: Option<String>,
    pub vpc_config: Option<Value>,
    pub revision_id: String,
    pub state: State,
    pub state_reason: Option<String>,
    pub state_reason_code: Option<String>,
    /// `LastUpdateStatus`: `Successful`, or `InProgress` from an update until its code and
    /// configuration are ready (or `Failed`).
    #[serde(default = "successful")]
    pub last_update_status: LastUpdateStatus,
    /// Whether `Environment` was ever given: AWS then renders `{"Variables": {}}` even empty.
    #[serde(default)]
    pub environment_set: bool,
    /// For a version published with its own `Description`: the `$LATEST` description it was
    /// published from (what "unchanged since the last publish" compares).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_description: Option<String>,
    /// Hot reload (`Code.S3Bucket` is `--hot-reload-bucket`): the local directory the code
    /// runs from, in place. `code_sha_hex` is then empty: there is no blob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hot_reload_dir: Option<String>,
}

fn successful() -> LastUpdateStatus {
    LastUpdateStatus::Successful
}

/// A function's `PackageType`, stored and answered as AWS spells it (`"Zip"`, `"Image"`: the
/// spelling metadata of earlier runs has on disk).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PackageType {
    Zip,
    Image,
}

impl PackageType {
    pub fn as_str(self) -> &'static str {
        match self {
            PackageType::Zip => "Zip",
            PackageType::Image => "Image",
        }
    }

    /// The package type a request names, if it is one.
    pub fn parse(s: &str) -> Option<PackageType> {
        match s {
            "Zip" => Some(PackageType::Zip),
            "Image" => Some(PackageType::Image),
            _ => None,
        }
    }
}

/// A function's `TracingConfig.Mode`, stored and answered as AWS spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TracingMode {
    PassThrough,
    Active,
}

impl TracingMode {
    pub fn as_str(self) -> &'static str {
        match self {
            TracingMode::PassThrough => "PassThrough",
            TracingMode::Active => "Active",
        }
    }

    /// The mode a request names, if it is one.
    pub fn parse(s: &str) -> Option<TracingMode> {
        match s {
            "PassThrough" => Some(TracingMode::PassThrough),
            "Active" => Some(TracingMode::Active),
            _ => None,
        }
    }
}

/// A function version's `State`, stored and answered as AWS spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum State {
    Pending,
    Active,
    Inactive,
    Failed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "Pending",
            State::Active => "Active",
            State::Inactive => "Inactive",
            State::Failed => "Failed",
        }
    }
}

/// A function version's `LastUpdateStatus`, stored and answered as AWS spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LastUpdateStatus {
    Successful,
    Failed,
    InProgress,
}

impl LastUpdateStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            LastUpdateStatus::Successful => "Successful",
            LastUpdateStatus::Failed => "Failed",
            LastUpdateStatus::InProgress => "InProgress",
        }
    }
}

/// The reason AWS gives while a function is created or updated (it says "created" for both).
pub const CREATING_REASON: &str = "The function is being created.";

impl FunctionConfig {
    pub fn arn(&self, scope: &Scope, qualified: bool) -> String {
        let q = if qualified { Some(self.version.as_str()) } else { None };
        arn::function_arn(&scope.region, &scope.account, &self.name, q)
    }

    pub fn is_python(&self) -> bool {
        self.runtime.as_deref().is_some_and(|r| r.starts_with("python"))
    }

    /// FunctionConfiguration as AWS returns it. `qualified_arn` adds `:<version>`.
    pub fn to_json(&self, scope: &Scope, qualified_arn: bool) -> Value {
        self.to_json_with_arn(self.arn(scope, qualified_arn))
    }

    /// FunctionConfiguration with a given FunctionArn (GetFunction through an alias
    /// names the alias, not the version it resolved to).
    pub fn to_json_with_arn(&self, function_arn: String) -> Value {
        let mut v = json!({
            "FunctionName": self.name,
            "FunctionArn": function_arn,
            "Role": self.role,
            "CodeSize": self.code_size,
            "Description": self.description,
            "Timeout": self.timeout,
            "MemorySize": self.memory_size,
            "LastModified": self.last_modified,
            "CodeSha256": self.code_sha256,
            "Version": self.version,
            "TracingConfig": {"Mode": self.tracing_mode.as_str()},
            "RevisionId": self.revision_id,
            "State": self.state.as_str(),
            "PackageType": self.package_type.as_str(),
            "Architectures": self.architectures,
            "EphemeralStorage": {"Size": self.ephemeral_storage},
            "SnapStart": {"ApplyOn": "None", "OptimizationStatus": "Off"},
            "LoggingConfig": self.logging_config.clone().unwrap_or_else(|| json!({
                "LogFormat": "Text",
                "LogGroup": format!("/aws/lambda/{}", self.name),
            })),
        });
        #[allow(clippy::expect_used)] // `v` is the `json!({...})` object literal above
        let m = v.as_object_mut().expect("json! object literal");
        if let Some(r) = &self.runtime {
            m.insert("Runtime".into(), r.clone().into());
        }
        if let Some(h) = &self.handler {
            m.insert("Handler".into(), h.clone().into());
        }
        if !self.environment.is_empty() || self.environment_set {
            m.insert("Environment".into(), json!({"Variables": self.environment}));
        }
        if let Some(r) = &self.runtime {
            let region = function_arn.split(':').nth(3).unwrap_or_default();
            m.insert("RuntimeVersionConfig".into(), json!({"RuntimeVersionArn": runtime_version_arn(region, r)}));
        }
        if !self.layers.is_empty() {
            let layers: Vec<Value> =
                self.layers.iter().map(|l| json!({"Arn": l.arn, "CodeSize": l.code_size})).collect();
            m.insert("Layers".into(), layers.into());
        }
        if let Some(r) = &self.state_reason {
            m.insert("StateReason".into(), r.clone().into());
        }
        if let Some(c) = &self.state_reason_code {
            m.insert("StateReasonCode".into(), c.clone().into());
        }
        // A function being created has no LastUpdateStatus yet (as AWS answers CreateFunction).
        if self.state != State::Pending {
            let status = if self.state == State::Failed { LastUpdateStatus::Failed } else { self.last_update_status };
            m.insert("LastUpdateStatus".into(), status.as_str().into());
            if status == LastUpdateStatus::InProgress {
                m.insert("LastUpdateStatusReason".into(), CREATING_REASON.into());
                m.insert("LastUpdateStatusReasonCode".into(), "Creating".into());
            } else if status == LastUpdateStatus::Failed {
                if let Some(r) = &self.state_reason {
                    m.insert("LastUpdateStatusReason".into(), r.clone().into());
                }
                if let Some(c) = &self.state_reason_code {
                    m.insert("LastUpdateStatusReasonCode".into(), c.clone().into());
                }
            }
        }
        if let Some(ic) = &self.image_config {
            m.insert("ImageConfigResponse".into(), json!({"ImageConfig": ic}));
        }
        if let Some(d) = &self.dead_letter_config {
            m.insert("DeadLetterConfig".into(), d.clone());
        }
        if let Some(k) = &self.kms_key_arn {
            m.insert("KMSKeyArn".into(), k.clone().into());
        }
        if let Some(vpc) = &self.vpc_config {
            m.insert("VpcConfig".into(), vpc.clone());
        }
        v
    }

    /// Whether the function is between states: being created (Pending) or updated (InProgress).
    pub fn in_transition(&self) -> bool {
        self.state == State::Pending
            || (self.state == State::Active && self.last_update_status == LastUpdateStatus::InProgress)
    }

    /// Whether the `$LATEST` configuration `other` is unchanged since this version was published
    /// from it (PublishVersion's dedup). The description counts, as on AWS: a `$LATEST` whose
    /// description changed publishes a new version.
    pub fn same_content(&self, other: &FunctionConfig) -> bool {
        self.code_sha256 == other.code_sha256
            && self.hot_reload_dir == other.hot_reload_dir
            && self.source_description.as_ref().unwrap_or(&self.description) == &other.description
            && self.package_type == other.package_type
            && self.runtime == other.runtime
            && self.handler == other.handler
            && self.environment == other.environment
            && self.layers == other.layers
            && self.timeout == other.timeout
            && self.memory_size == other.memory_size
            && self.role == other.role
            && self.image_uri == other.image_uri
            && self.image_config == other.image_config
            && self.architectures == other.architectures
            && self.ephemeral_storage == other.ephemeral_storage
            && self.tracing_mode == other.tracing_mode
            && self.logging_config == other.logging_config
            && self.dead_letter_config == other.dead_letter_config
            && self.kms_key_arn == other.kms_key_arn
            && self.vpc_config == other.vpc_config
    }
}

/// The `RuntimeVersionArn` of a managed runtime in `region`: AWS names each runtime build
/// by a 64-hex-digit id; RustStack derives a stable one from the runtime's name.
pub fn runtime_version_arn(region: &str, runtime: &str) -> String {
    let id = crate::lambda::code::digest(format!("ruststack-runtime:{runtime}").as_bytes()).sha256_hex;
    format!("arn:aws:lambda:{region}::runtime:{id}")
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Alias {
    pub name: String,
    pub function_version: String,
    pub description: String,
    pub routing_config: Option<Value>,
    pub revision_id: String,
}

impl Alias {
    pub fn to_json(&self, scope: &Scope, function: &str) -> Value {
        let mut v = json!({
            "AliasArn": arn::function_arn(&scope.region, &scope.account, function, Some(&self.name)),
            "Name": self.name,
            "FunctionVersion": self.function_version,
            "Description": self.description,
            "RevisionId": self.revision_id,
        });
        // An empty RoutingConfig is left out, as AWS does.
        if let Some(rc) = &self.routing_config
            && rc.get("AdditionalVersionWeights").and_then(Value::as_object).is_some_and(|w| !w.is_empty())
        {
            v["RoutingConfig"] = rc.clone();
        }
        v
    }

    /// The extra version and its weight from `RoutingConfig.AdditionalVersionWeights`, if any.
    pub fn additional_version(&self) -> Option<(String, f64)> {
        let w = self.routing_config.as_ref()?.get("AdditionalVersionWeights")?.as_object()?;
        w.iter().next().and_then(|(v, weight)| weight.as_f64().map(|x| (v.clone(), x)))
    }
}

/// Everything stored for one function: `$LATEST`, published versions, aliases, tags.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FunctionRecord {
    pub latest: Arc<FunctionConfig>,
    #[serde(default)]
    pub versions: BTreeMap<u64, Arc<FunctionConfig>>,
    #[serde(default)]
    pub aliases: BTreeMap<String, Alias>,
    #[serde(default)]
    pub next_version: u64,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub reserved_concurrency: Option<u32>,
    /// Resource-based policy statements (AddPermission), by qualifier ("" = unqualified).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub policies: BTreeMap<String, Vec<serde_json::Value>>,
    /// Function URLs, by qualifier ("" = unqualified, else an alias).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub urls: BTreeMap<String, UrlConfig>,
    /// Asynchronous invocation settings, by qualifier (`$LATEST`, a version or an alias).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub event_invoke: BTreeMap<String, EventInvokeConfig>,
    /// Provisioned concurrency, by qualifier (a version or an alias).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub provisioned: BTreeMap<String, ProvisionedConfig>,
    /// PutFunctionRecursionConfig's `RecursiveLoop` (AWS's default: `Terminate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recursive_loop: Option<String>,
    /// PutFunctionCodeSigningConfig's code signing config ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_signing_config: Option<String>,
}

/// A code signing configuration (CreateCodeSigningConfig), stored per region.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CodeSigningConfig {
    /// `csc-` and 17 lowercase hex digits.
    pub id: String,
    pub arn: String,
    pub description: String,
    pub signing_profile_version_arns: Vec<String>,
    /// `Enforce` or `Warn` (AWS's default).
    pub untrusted_artifact_on_deployment: String,
    pub last_modified: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

impl CodeSigningConfig {
    pub fn to_json(&self) -> Value {
        json!({
            "CodeSigningConfigId": self.id,
            "CodeSigningConfigArn": self.arn,
            "Description": self.description,
            "AllowedPublishers": {"SigningProfileVersionArns": self.signing_profile_version_arns},
            "CodeSigningPolicies": {"UntrustedArtifactOnDeployment": self.untrusted_artifact_on_deployment},
            "LastModified": self.last_modified,
        })
    }
}

/// PutProvisionedConcurrencyConfig's request and how it went.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ProvisionedConfig {
    pub requested: u32,
    /// `IN_PROGRESS`, `READY` or `FAILED`.
    pub status: String,
    pub reason: Option<String>,
    pub last_modified: String,
}

/// PutFunctionEventInvokeConfig's settings for Event invocations.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct EventInvokeConfig {
    /// Retries after a function error (0–2; AWS's default is 2).
    pub max_retry_attempts: Option<u32>,
    /// Seconds an event may wait before it is discarded (60–21600; default 6 hours).
    pub max_event_age: Option<u32>,
    /// `{"OnSuccess": {"Destination": ARN}, "OnFailure": {...}}`.
    pub destinations: Option<serde_json::Value>,
    /// Epoch seconds.
    pub last_modified: f64,
}

/// A function URL's configuration (CreateFunctionUrlConfig).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UrlConfig {
    /// The host label that names the URL: 32 lowercase letters and digits.
    pub url_id: String,
    pub auth_type: String,
    #[serde(default)]
    pub cors: Option<serde_json::Value>,
    pub invoke_mode: String,
    pub creation_time: String,
    pub last_modified_time: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LayerVersion {
    pub name: String,
    pub version: u64,
    pub description: String,
    pub created_date: String,
    /// `None` when PublishLayerVersion named none; an empty list is kept (AWS returns it).
    pub compatible_runtimes: Option<Vec<String>>,
    pub compatible_architectures: Option<Vec<String>>,
    pub license_info: Option<String>,
    pub sha_hex: String,
    pub code_sha256: String,
    pub code_size: u64,
    /// A hot-reload layer (`Content.S3Bucket` is `--hot-reload-bucket`): the local directory
    /// it runs from, in place; `sha_hex` is then empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hot_reload_dir: Option<String>,
    /// AddLayerVersionPermission's statements, in the order they were added.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy: Vec<Value>,
    /// The policy's RevisionId; a new one on every statement added or removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_revision: Option<String>,
}

impl LayerVersion {
    pub fn to_json(&self, scope: &Scope, endpoint: &str) -> Value {
        let mut v = json!({
            "Content": {
                "Location": match &self.hot_reload_dir {
                    Some(dir) => super::hot_reload::location(dir),
                    None => format!("{endpoint}/_ruststack/code/{}", self.sha_hex),
                },
                "CodeSha256": self.code_sha256,
                "CodeSize": self.code_size,
            },
            "LayerArn": arn::layer_arn(&scope.region, &scope.account, &self.name),
            "LayerVersionArn": arn::layer_version_arn(&scope.region, &scope.account, &self.name, self.version),
            "Description": self.description,
            "CreatedDate": self.created_date,
            "Version": self.version,
        });
        #[allow(clippy::expect_used)] // `v` is the `json!({...})` object literal above
        let m = v.as_object_mut().expect("json! object literal");
        if let Some(r) = &self.compatible_runtimes {
            m.insert("CompatibleRuntimes".into(), r.clone().into());
        }
        if let Some(a) = &self.compatible_architectures {
            m.insert("CompatibleArchitectures".into(), a.clone().into());
        }
        if let Some(l) = &self.license_info {
            m.insert("LicenseInfo".into(), l.clone().into());
        }
        v
    }

    /// The short form used inside ListLayers' LatestMatchingVersion and ListLayerVersions.
    pub fn to_list_json(&self, scope: &Scope) -> Value {
        let mut v = self.to_json(scope, "");
        if let Some(m) = v.as_object_mut() {
            m.remove("Content");
            m.remove("LayerArn");
        }
        v
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LayerRecord {
    pub name: String,
    pub versions: BTreeMap<u64, LayerVersion>,
    pub next_version: u64,
}

/// Runtimes Lambda accepts (the model's enum, deprecated ones included).
pub const RUNTIMES: &[&str] = &[
    "nodejs",
    "nodejs4.3",
    "nodejs6.10",
    "nodejs8.10",
    "nodejs10.x",
    "nodejs12.x",
    "nodejs14.x",
    "nodejs16.x",
    "nodejs18.x",
    "nodejs20.x",
    "nodejs22.x",
    "nodejs24.x",
    "java8",
    "java8.al2",
    "java11",
    "java17",
    "java21",
    "java25",
    "python2.7",
    "python3.6",
    "python3.7",
    "python3.8",
    "python3.9",
    "python3.10",
    "python3.11",
    "python3.12",
    "python3.13",
    "python3.14",
    "dotnetcore1.0",
    "dotnetcore2.0",
    "dotnetcore2.1",
    "dotnetcore3.1",
    "dotnet6",
    "dotnet8",
    "dotnet10",
    "nodejs4.3-edge",
    "go1.x",
    "ruby2.5",
    "ruby2.7",
    "ruby3.2",
    "ruby3.3",
    "ruby3.4",
    "provided",
    "provided.al2",
    "provided.al2023",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn alias(routing: Option<Value>) -> Alias {
        Alias {
            name: "live".into(),
            function_version: "1".into(),
            description: String::new(),
            routing_config: routing,
            revision_id: "r".into(),
        }
    }

    #[test]
    fn empty_routing_config_is_not_rendered() {
        let scope = Scope { region: "us-east-1".into(), account: "000000000000".into() };
        let empty = alias(Some(json!({"AdditionalVersionWeights": {}})));
        assert!(empty.to_json(&scope, "f").get("RoutingConfig").is_none());
        assert_eq!(empty.additional_version(), None);
        let routed = alias(Some(json!({"AdditionalVersionWeights": {"2": 0.25}})));
        assert_eq!(routed.to_json(&scope, "f")["RoutingConfig"], json!({"AdditionalVersionWeights": {"2": 0.25}}));
        assert_eq!(routed.additional_version(), Some(("2".to_string(), 0.25)));
    }

    #[test]
    fn runtime_version_arn_is_stable_and_shaped_like_aws() {
        let a = runtime_version_arn("eu-west-1", "python3.12");
        assert_eq!(a, runtime_version_arn("eu-west-1", "python3.12"));
        assert_ne!(a, runtime_version_arn("eu-west-1", "python3.11"));
        let id = a.strip_prefix("arn:aws:lambda:eu-west-1::runtime:").expect("prefix");
        assert!(id.len() == 64 && id.bytes().all(|c| c.is_ascii_hexdigit()), "{a}");
    }

    /// A function's metadata as an earlier run wrote it (package type and tracing mode were
    /// strings then): it loads, and is written back in the same spelling.
    #[test]
    fn stored_config_of_an_earlier_run_loads() {
        let stored = json!({
            "name": "f", "version": "$LATEST", "runtime": "python3.12", "role": "arn:aws:iam::000000000000:role/r",
            "handler": "h.handler", "description": "", "timeout": 3, "memory_size": 128,
            "last_modified": "2024-01-01T00:00:00.000+0000", "package_type": "Image", "code_sha_hex": "",
            "code_sha256": "x", "code_size": 0, "image_uri": "img", "image_config": null, "environment": {},
            "layers": [], "architectures": ["x86_64"], "ephemeral_storage": 512, "tracing_mode": "Active",
            "logging_config": null, "dead_letter_config": null, "kms_key_arn": null, "vpc_config": null,
            "revision_id": "r", "state": "Active", "state_reason": null, "state_reason_code": null,
        });
        let c: FunctionConfig = serde_json::from_value(stored).expect("an earlier run's metadata loads");
        assert_eq!(c.package_type, PackageType::Image);
        assert_eq!(c.tracing_mode, TracingMode::Active);
        assert_eq!(c.last_update_status, LastUpdateStatus::Successful);
        let written = serde_json::to_value(&c).expect("serializes");
        assert_eq!(written["package_type"], "Image");
        assert_eq!(written["tracing_mode"], "Active");
        let scope = Scope { region: "us-east-1".into(), account: "000000000000".into() };
        let wire = c.to_json(&scope, false);
        assert_eq!(wire["PackageType"], "Image");
        assert_eq!(wire["TracingConfig"], json!({"Mode": "Active"}));
        assert!(serde_json::from_value::<PackageType>(json!("zip")).is_err(), "the spelling is AWS's, exactly");
        for p in [PackageType::Zip, PackageType::Image] {
            assert_eq!(PackageType::parse(p.as_str()), Some(p));
            assert_eq!(serde_json::to_value(p).expect("serializes"), json!(p.as_str()));
        }
        for m in [TracingMode::PassThrough, TracingMode::Active] {
            assert_eq!(TracingMode::parse(m.as_str()), Some(m));
            assert_eq!(serde_json::to_value(m).expect("serializes"), json!(m.as_str()));
        }
    }
}
