//! AddPermission, GetPolicy and RemovePermission: a function's resource-based policy.
//!
//! A policy belongs to `$LATEST`, a version or an alias. Its RevisionId is the revision of
//! what it belongs to, and every statement added or removed gives that a new revision, as
//! AWS does.

use super::targets::{bump_revision, existing_target, target_revision};
use super::*;

/// RevisionId mismatch on AddPermission / RemovePermission.
const POLICY_REVISION_MISMATCH: &str = "The Revision Id provided does not match the latest Revision Id. Call the GetPolicy API to retrieve the latest Revision Id";
/// GetPolicy's answer for a function, qualifier or policy that does not exist.
const POLICY_NOT_FOUND: &str = "The resource you requested does not exist.";

/// RemovePermission on a qualifier with no statement at all.
pub(super) fn no_policy() -> AwsError {
    AwsError::not_found("No policy is associated with the given resource.")
}

/// The key order AWS writes policy documents in; keys not listed follow in sorted order.
const KEY_ORDER: &[&str] = &[
    "Version",
    "Id",
    "Statement",
    "Sid",
    "Effect",
    "Principal",
    "Action",
    "Resource",
    "Condition",
    "StringEquals",
    "ArnLike",
    "AWS:SourceAccount",
    "lambda:FunctionUrlAuthType",
    "aws:PrincipalOrgID",
    "lambda:EventSourceToken",
    "AWS:SourceArn",
];

/// A policy document or statement as the JSON text AWS returns: its keys in AWS's order
/// (serde_json's maps would sort them).
pub(super) fn policy_text(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let rank = |k: &str| KEY_ORDER.iter().position(|x| *x == k).unwrap_or(KEY_ORDER.len());
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort_by_key(|k| rank(k));
            let fields: Vec<String> = keys
                .iter()
                .map(|k| format!("{}:{}", Value::String((*k).clone()), policy_text(&m[k.as_str()])))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(a) => format!("[{}]", a.iter().map(policy_text).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

/// A policy document holding `statements`, as AWS renders it.
pub(super) fn policy_document(statements: &[Value]) -> String {
    policy_text(&json!({"Version": "2012-10-17", "Id": "default", "Statement": statements}))
}

/// Whether AddPermission accepts `p` as a principal: `*`, an account id, an IAM or STS
/// ARN, or a service principal (`service.amazonaws.com` and the other AWS domains).
fn principal_ok(p: &str) -> bool {
    if p == "*" || (p.len() == 12 && p.bytes().all(|b| b.is_ascii_digit())) {
        return true;
    }
    if let Some(rest) = p.strip_prefix("arn:") {
        let parts: Vec<&str> = rest.splitn(5, ':').collect();
        return matches!(parts.as_slice(), [partition, "iam" | "sts", "", account, resource]
            if partition.starts_with("aws") && account.len() == 12
                && account.bytes().all(|b| b.is_ascii_digit()) && !resource.is_empty());
    }
    let service_domain =
        [".amazonaws.com", ".amazon.com", ".amazonaws.com.cn", ".api.aws"].iter().find_map(|d| p.strip_suffix(d));
    service_domain.is_some_and(|host| {
        !host.is_empty() && host.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    })
}

/// One policy statement as AddPermission writes it.
pub(super) fn permission_statement(
    ctx: &Ctx,
    name: &str,
    q: &str,
    m: &input::AddPermissionRequest,
) -> Result<Value, AwsError> {
    let sid = required(m.statement_id.clone(), "StatementId")?;
    let action = required(m.action.clone(), "Action")?;
    let principal = required(m.principal.clone(), "Principal")?;
    if !principal_ok(&principal) {
        return Err(AwsError::invalid_param(
            "The provided principal was invalid. Please check the principal and try again.",
        ));
    }
    let principal_json = if principal == "*" {
        json!("*")
    } else if principal.len() == 12 && principal.chars().all(|c| c.is_ascii_digit()) {
        let partition = arn::partition_for_region(&ctx.scope.region);
        json!({"AWS": format!("arn:{partition}:iam::{principal}:root")})
    } else if principal.starts_with("arn:") {
        json!({"AWS": principal})
    } else {
        json!({"Service": principal})
    };
    let mut condition = Map::new();
    let mut add = |op: &str, key: &str, value: Option<String>| {
        if let Some(v) = value {
            let entry = condition.entry(op.to_string()).or_insert_with(|| json!({}));
            entry[key] = json!(v);
        }
    };
    add("StringEquals", "AWS:SourceAccount", m.source_account.clone());
    add("StringEquals", "lambda:FunctionUrlAuthType", m.function_url_auth_type.clone());
    add("StringEquals", "aws:PrincipalOrgID", m.principal_org_id.clone());
    add("StringEquals", "lambda:EventSourceToken", m.event_source_token.clone());
    add("ArnLike", "AWS:SourceArn", m.source_arn.clone());
    let q = (!q.is_empty()).then_some(q);
    let mut st = json!({
        "Sid": sid,
        "Effect": "Allow",
        "Principal": principal_json,
        "Action": action,
        "Resource": arn::function_arn(&ctx.scope.region, &ctx.scope.account, name, q),
    });
    if !condition.is_empty() {
        st["Condition"] = Value::Object(condition);
    }
    Ok(st)
}

pub(super) fn add_permission(ctx: &Ctx, raw: &str, m: input::AddPermissionRequest) -> R {
    let (name, q) = function_target(ctx, raw)?;
    if q.as_deref() == Some("$LATEST") {
        return Err(AwsError::invalid_param("We currently do not support adding policies for $LATEST."));
    }
    let rec = ctx.store().get_function(&name).ok_or_else(|| not_found(ctx, &name, None))?;
    let key = existing_target(ctx, &rec, &name, q.as_deref())?.unwrap_or_default();
    let st = permission_statement(ctx, &name, &key, &m)?;
    let sid = st["Sid"].as_str().unwrap_or_default().to_string();
    let revision = m.revision_id;
    update_record(ctx, &name, |rec| {
        if revision.as_ref().is_some_and(|r| *r != target_revision(rec, &key)) {
            return Err(AwsError::precondition(POLICY_REVISION_MISMATCH));
        }
        let list = rec.policies.entry(key.clone()).or_default();
        if list.iter().any(|s| s["Sid"] == sid.as_str()) {
            return Err(AwsError::conflict(format!(
                "The statement id ({sid}) provided already exists. Please provide a new statement id, or remove the existing statement."
            )));
        }
        list.push(st.clone());
        bump_revision(rec, &key);
        Ok(())
    })?;
    ok_json(StatusCode::CREATED, json!({"Statement": policy_text(&st)}))
}

pub(super) fn get_policy(ctx: &Ctx, raw: &str) -> R {
    let (name, q) = function_target(ctx, raw)?;
    let missing = || AwsError::not_found(POLICY_NOT_FOUND);
    let rec = ctx.store().get_function(&name).ok_or_else(missing)?;
    let key = existing_target(ctx, &rec, &name, q.as_deref()).map_err(|_| missing())?.unwrap_or_default();
    let statements = rec.policies.get(&key).filter(|l| !l.is_empty()).ok_or_else(missing)?;
    ok_json(StatusCode::OK, json!({"Policy": policy_document(statements), "RevisionId": target_revision(&rec, &key)}))
}

pub(super) fn remove_permission(ctx: &Ctx, raw: &str, sid: &str) -> R {
    let (name, q) = function_target(ctx, raw)?;
    let rec = ctx.store().get_function(&name).ok_or_else(|| {
        AwsError::not_found(format!(
            "No policy found for: {}",
            arn::function_arn(&ctx.scope.region, &ctx.scope.account, &name, q.as_deref())
        ))
    })?;
    let key = existing_target(ctx, &rec, &name, q.as_deref())?.unwrap_or_default();
    let revision = ctx.q("RevisionId").map(str::to_string);
    update_record(ctx, &name, |rec| {
        if revision.as_ref().is_some_and(|r| *r != target_revision(rec, &key)) {
            return Err(AwsError::precondition(POLICY_REVISION_MISMATCH));
        }
        let list = rec.policies.get_mut(&key).filter(|l| !l.is_empty()).ok_or_else(no_policy)?;
        let before = list.len();
        list.retain(|s| s["Sid"] != sid);
        if list.len() == before {
            return Err(AwsError::not_found(format!("Statement {sid} is not found in resource policy.")));
        }
        if list.is_empty() {
            rec.policies.remove(&key);
        }
        bump_revision(rec, &key);
        Ok(())
    })?;
    Ok(http_util::empty(StatusCode::NO_CONTENT))
}

#[cfg(test)]
mod tests {
    use super::{policy_text, principal_ok};

    #[test]
    fn statements_keep_aws_key_order() {
        let st = serde_json::json!({"Sid": "s", "Effect": "Allow", "Principal": "*", "Action": "lambda:InvokeFunction",
            "Resource": "r", "Condition": {"StringEquals": {"AWS:SourceAccount": "1", "aws:PrincipalOrgID": "o",
            "lambda:FunctionUrlAuthType": "NONE"}, "ArnLike": {"AWS:SourceArn": "a"}}});
        assert_eq!(
            policy_text(&st),
            r#"{"Sid":"s","Effect":"Allow","Principal":"*","Action":"lambda:InvokeFunction","Resource":"r","Condition":{"StringEquals":{"AWS:SourceAccount":"1","lambda:FunctionUrlAuthType":"NONE","aws:PrincipalOrgID":"o"},"ArnLike":{"AWS:SourceArn":"a"}}}"#
        );
    }

    #[test]
    fn principals_aws_accepts() {
        for p in [
            "*",
            "111111111111",
            "s3.amazonaws.com",
            "alexa-appkit.amazon.com",
            "arn:aws:iam::111111111111:root",
            "arn:aws:iam::111111111111:user/u",
            "arn:aws:sts::111111111111:assumed-role/r/s",
        ] {
            assert!(principal_ok(p), "{p}");
        }
        for p in ["invalid.nonaws.com", "", "11111111111", "arn:aws:s3:::bucket", ".amazonaws.com", "S3.AMAZONAWS.COM"]
        {
            assert!(!principal_ok(p), "{p}");
        }
    }
}
