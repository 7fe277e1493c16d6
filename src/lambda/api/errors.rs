//! AWS's semantic error answers for functions, versions, aliases, tags and invokes: one
//! constructor per message, with the text, code and status recorded from real AWS.

use super::*;

/// `Function not found: <arn>`, the ARN carrying the qualifier AWS puts there.
pub(super) fn function_not_found(scope: &Scope, name: &str, q: Option<&str>) -> AwsError {
    AwsError::not_found(format!("Function not found: {}", arn::function_arn(&scope.region, &scope.account, name, q)))
}

/// An ARN of another region: AWS answers 404 without looking the function up.
pub(super) fn other_region(arn_region: &str, region: &str) -> AwsError {
    AwsError::not_found(format!("Functions from '{arn_region}' are not reachable in this region ('{region}')"))
}

/// An ARN of another account. AWS's recorded answer is a 403 `AccessDeniedException`
/// (its body carries no message botocore reads); RustStack says what was refused.
pub(super) fn other_account(caller: &str, function_arn: &str) -> AwsError {
    AwsError::new(
        StatusCode::FORBIDDEN,
        "AccessDeniedException",
        format!(
            "User: arn:aws:iam::{caller}:root is not authorized to access {function_arn}: the function belongs to another account"
        ),
    )
}

pub(super) fn qualifier_mismatch() -> AwsError {
    AwsError::invalid_param("The derived qualifier from the function name does not match the specified qualifier.")
}

pub(super) fn delete_latest() -> AwsError {
    AwsError::invalid_param("$LATEST version cannot be deleted without deleting the function.")
}

pub(super) fn delete_alias_unsupported() -> AwsError {
    AwsError::invalid_param("Deletion of aliases is not currently supported.")
}

pub(super) fn alias_cannot_find(scope: &Scope, name: &str, alias: &str) -> AwsError {
    AwsError::not_found(format!(
        "Cannot find alias arn: {}",
        arn::function_arn(&scope.region, &scope.account, name, Some(alias))
    ))
}

pub(super) fn alias_not_found(scope: &Scope, name: &str, alias: &str) -> AwsError {
    AwsError::not_found(format!(
        "Alias not found: {}",
        arn::function_arn(&scope.region, &scope.account, name, Some(alias))
    ))
}

pub(super) fn alias_exists(scope: &Scope, name: &str, alias: &str) -> AwsError {
    AwsError::conflict(format!(
        "Alias already exists: {}",
        arn::function_arn(&scope.region, &scope.account, name, Some(alias))
    ))
}

pub(super) fn too_many_routing() -> AwsError {
    AwsError::invalid_param("Number of items in AdditionalVersionWeights cannot be greater than 1")
}

pub(super) fn routing_same_version(v: &str) -> AwsError {
    AwsError::invalid_param(format!(
        "Invalid function version {v}. Function version {v} is already included in routing configuration."
    ))
}

pub(super) fn routing_latest() -> AwsError {
    AwsError::invalid_param("$LATEST is not supported for an alias pointing to more than 1 version")
}

/// A weight outside [0, 1] (AWS answers it from its model, as a ValidationException).
pub(super) fn routing_weight_range(v: &str, w: f64) -> AwsError {
    AwsError::new(
        StatusCode::BAD_REQUEST,
        "ValidationException",
        format!(
            "1 validation error detected: Value '{{{v}={w:?}}}' at 'routingConfig.additionalVersionWeights' failed to satisfy constraint: Map value must satisfy constraint: [Member must have value less than or equal to 1.0, Member must have value greater than or equal to 0.0, Member must not be null]"
        ),
    )
}

pub(super) fn tags_on_qualified() -> AwsError {
    AwsError::invalid_param("Tags on function aliases and versions are not supported. Please specify a function ARN.")
}

pub(super) fn too_many_tags() -> AwsError {
    AwsError::invalid_param("Number of tags exceeds resource tag limit.")
}

/// TagResource with an empty `Tags` map.
pub(super) fn empty_tags() -> AwsError {
    AwsError::invalid_param("An error occurred and the request cannot be processed.")
}

/// UntagResource without `tagKeys`.
pub(super) fn tag_keys_null() -> AwsError {
    AwsError::new(
        StatusCode::BAD_REQUEST,
        "ValidationException",
        "1 validation error detected: Value null at 'tagKeys' failed to satisfy constraint: Member must not be null",
    )
}

/// `measured` is the Variables map as compact JSON, the string AWS measures.
pub(super) fn env_too_large(measured: &str) -> AwsError {
    AwsError::invalid_param(format!(
        "Lambda was unable to configure your environment variables because the environment variables you have provided exceeded the 4KB limit. String measured: {measured}"
    ))
}

pub(super) fn runtime_deprecated(r: &str) -> AwsError {
    AwsError::invalid_param(format!(
        "The runtime parameter of {r} is no longer supported for creating or updating AWS Lambda functions. We recommend you use a supported runtime while creating or updating functions."
    ))
}

pub(super) fn runtime_unknown(r: &str, creatable: &[&str]) -> AwsError {
    AwsError::invalid_param(format!(
        "Value {r} at 'runtime' failed to satisfy constraint: Member must satisfy enum value set: [{}] or be a valid ARN",
        creatable.join(", ")
    ))
}

pub(super) fn function_version_filter(v: &str) -> AwsError {
    AwsError::new(
        StatusCode::BAD_REQUEST,
        "ValidationException",
        format!(
            "1 validation error detected: Value '{v}' at 'functionVersion' failed to satisfy constraint: Member must satisfy enum value set: [ALL]"
        ),
    )
}

/// An invoke still waiting for a transition when its bound ran out.
pub(super) fn not_ready(state: &str) -> AwsError {
    AwsError::conflict(format!(
        "The operation cannot be performed at this time. The function is currently in the following state: {state}"
    ))
}

/// A routing key that is not a version number (AWS answers it from its model).
pub(super) fn routing_key_pattern(v: &str, w: f64) -> AwsError {
    AwsError::new(
        StatusCode::BAD_REQUEST,
        "ValidationException",
        format!(
            "1 validation error detected: Value '{{{v}={w:?}}}' at 'routingConfig.additionalVersionWeights' failed to satisfy constraint: Map keys must satisfy constraint: [Member must have length less than or equal to 1024, Member must have length greater than or equal to 1, Member must satisfy regular expression pattern: [0-9]+]"
        ),
    )
}
