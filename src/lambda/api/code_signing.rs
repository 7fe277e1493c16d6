//! Code signing configs (Create/Get/List/Update/DeleteCodeSigningConfig) and which one a
//! function uses (Put/Get/DeleteFunctionCodeSigningConfig, ListFunctionsByCodeSigningConfig).
//!
//! They are stored and reported truthfully; RustStack does not verify signatures, so a
//! config changes no deployment (see README, PROTOCOL notes).

use super::*;
use crate::lambda::model::CodeSigningConfig;

/// Get/Update/Delete/ListFunctionsBy on a config that does not exist.
fn csc_not_found(arn: &str) -> AwsError {
    AwsError::not_found(format!("The Lambda code signing configuration {arn} can not be found."))
}

/// PutFunctionCodeSigningConfig naming a config that does not exist.
fn csc_missing_for_function(arn: &str) -> AwsError {
    AwsError::new(
        StatusCode::NOT_FOUND,
        "CodeSigningConfigNotFoundException",
        format!(
            "The code signing configuration cannot be found. Check that the provided configuration is not deleted: {arn}."
        ),
    )
}

/// The config an ARN names in the request's region and account, if it exists.
fn find_csc(ctx: &Ctx, arn: &str) -> Option<CodeSigningConfig> {
    let id = arn.rsplit(':').next()?;
    ctx.store().get_code_signing(id).filter(|c| c.arn == arn)
}

/// `AllowedPublishers` and `CodeSigningPolicies` members of a request, checked.
fn csc_members(
    publishers: Option<input::AllowedPublishers>,
    policies: Option<input::CodeSigningPolicies>,
) -> Result<(Option<Vec<String>>, Option<String>), AwsError> {
    let publishers = match publishers {
        None => None,
        Some(p) => {
            let arns = p.signing_profile_version_arns.unwrap_or_default();
            if arns.is_empty() || arns.len() > 20 {
                return Err(super::targets::validation(
                    &format!("[{}]", arns.join(", ")),
                    "allowedPublishers.signingProfileVersionArns",
                    "Member must have length less than or equal to 20, Member must have length greater than or equal to 1",
                ));
            }
            Some(arns)
        }
    };
    // UntrustedArtifactOnDeployment is one of the model's values (checked by the model layer).
    let policy = policies.and_then(|p| p.untrusted_artifact_on_deployment);
    Ok((publishers, policy))
}

pub(super) fn create_csc(ctx: &Ctx, m: input::CreateCodeSigningConfigRequest) -> R {
    let (publishers, policy) = csc_members(m.allowed_publishers, m.code_signing_policies)?;
    let publishers = publishers.ok_or_else(|| {
        AwsError::new(
            StatusCode::BAD_REQUEST,
            "ValidationException",
            "1 validation error detected: Value null at 'allowedPublishers' failed to satisfy constraint: Member must not be null",
        )
    })?;
    // 17 random hex digits (a v4 UUID's 13th digit is always 4: skip it).
    let hex = uuid::Uuid::new_v4().simple().to_string();
    let id = format!("csc-{}{}", &hex[..12], &hex[13..18]);
    let partition = arn::partition_for_region(&ctx.scope.region);
    let csc = CodeSigningConfig {
        arn: format!("arn:{partition}:lambda:{}:{}:code-signing-config:{id}", ctx.scope.region, ctx.scope.account),
        id,
        description: m.description.unwrap_or_default(),
        signing_profile_version_arns: publishers,
        untrusted_artifact_on_deployment: policy.unwrap_or_else(|| "Warn".into()),
        last_modified: crate::aws::timestamp_now(),
        tags: m.tags.unwrap_or_default(),
    };
    ctx.store().create_code_signing(csc.clone())?;
    ok_json(StatusCode::CREATED, json!({"CodeSigningConfig": csc.to_json()}))
}

pub(super) fn get_csc(ctx: &Ctx, arn: &str) -> R {
    let csc = find_csc(ctx, arn).ok_or_else(|| csc_not_found(arn))?;
    ok_json(StatusCode::OK, json!({"CodeSigningConfig": csc.to_json()}))
}

pub(super) fn list_cscs(ctx: &Ctx) -> R {
    let items = ctx.store().list_code_signing().into_iter().map(|c| (c.id.clone(), c.to_json())).collect();
    page_response(ctx, "CodeSigningConfigs", items)
}

pub(super) fn update_csc(ctx: &Ctx, arn: &str, m: input::UpdateCodeSigningConfigRequest) -> R {
    let (publishers, policy) = csc_members(m.allowed_publishers, m.code_signing_policies)?;
    let description = m.description;
    let id = find_csc(ctx, arn).ok_or_else(|| csc_not_found(arn))?.id;
    let (csc, _) = ctx
        .store()
        .update_code_signing(&id, |c| {
            let changed = publishers.is_some() || policy.is_some() || description.is_some();
            if let Some(p) = &publishers {
                c.signing_profile_version_arns = p.clone();
            }
            if let Some(p) = &policy {
                c.untrusted_artifact_on_deployment = p.clone();
            }
            if let Some(d) = &description {
                c.description = d.clone();
            }
            if changed {
                c.last_modified = crate::aws::timestamp_now();
            }
            Ok(())
        })?
        .ok_or_else(|| csc_not_found(arn))?;
    ok_json(StatusCode::OK, json!({"CodeSigningConfig": csc.to_json()}))
}

pub(super) fn delete_csc(ctx: &Ctx, arn: &str) -> R {
    let id = find_csc(ctx, arn).ok_or_else(|| csc_not_found(arn))?.id;
    match ctx.store().delete_code_signing(&id, arn)? {
        Ok(true) => Ok(http_util::empty(StatusCode::NO_CONTENT)),
        Ok(false) => Err(csc_not_found(arn)),
        Err(users) => Err(AwsError::conflict(format!(
            "The code signing configuration {arn} cannot be deleted because it is used by the following functions: {}",
            users.join(", ")
        ))),
    }
}

pub(super) fn list_functions_by_csc(ctx: &Ctx, arn: &str) -> R {
    find_csc(ctx, arn).ok_or_else(|| csc_not_found(arn))?;
    let items = ctx
        .store()
        .list_functions()
        .into_iter()
        .filter(|r| r.code_signing_config.as_deref() == Some(arn))
        .map(|r| {
            let fa = arn::function_arn(&ctx.scope.region, &ctx.scope.account, &r.latest.name, None);
            (r.latest.name.clone(), json!(fa))
        })
        .collect();
    page_response(ctx, "FunctionArns", items)
}

/// CreateFunction's `CodeSigningConfigArn`, when given: the config must exist.
pub(super) fn requested_csc(ctx: &Ctx, arn: Option<&str>) -> Result<Option<String>, AwsError> {
    match arn.map(str::to_string) {
        None => Ok(None),
        Some(a) => {
            find_csc(ctx, &a).ok_or_else(|| csc_missing_for_function(&a))?;
            Ok(Some(a))
        }
    }
}

pub(super) fn get_function_csc(ctx: &Ctx, raw: &str) -> R {
    let name = unqualified(raw)?;
    let rec = get_record(ctx, &name)?;
    match rec.code_signing_config {
        // AWS answers an empty object for a function without one.
        None => ok_json(StatusCode::OK, json!({})),
        Some(a) => ok_json(StatusCode::OK, json!({"CodeSigningConfigArn": a, "FunctionName": name})),
    }
}

pub(super) fn put_function_csc(ctx: &Ctx, raw: &str, m: input::PutFunctionCodeSigningConfigRequest) -> R {
    let name = unqualified(raw)?;
    let csc_arn = required(m.code_signing_config_arn, "CodeSigningConfigArn")?;
    // The config is checked first: AWS names it even when the function is missing too.
    find_csc(ctx, &csc_arn).ok_or_else(|| csc_missing_for_function(&csc_arn))?;
    update_record(ctx, &name, |rec| {
        rec.code_signing_config = Some(csc_arn.clone());
        Ok(())
    })?;
    ok_json(StatusCode::OK, json!({"CodeSigningConfigArn": csc_arn, "FunctionName": name}))
}

pub(super) fn delete_function_csc(ctx: &Ctx, raw: &str) -> R {
    let name = unqualified(raw)?;
    update_record(ctx, &name, |rec| {
        rec.code_signing_config = None;
        Ok(())
    })?;
    Ok(http_util::empty(StatusCode::NO_CONTENT))
}
