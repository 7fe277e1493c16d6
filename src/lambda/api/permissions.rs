//! AddPermission, GetPolicy and RemovePermission: a function's resource-based policy.

use super::*;

/// The qualifier a permission call names ("" for none), after checking it exists.
pub(super) fn policy_qualifier(
    ctx: &Ctx,
    rec: &FunctionRecord,
    name: &str,
    q: Option<&str>,
) -> Result<String, AwsError> {
    Ok(existing_qualifier(ctx, rec, name, q)?.unwrap_or_default())
}

/// One policy statement as AddPermission writes it.
pub(super) fn permission_statement(ctx: &Ctx, name: &str, q: &str, m: &Map<String, Value>) -> Result<Value, AwsError> {
    let sid = req_str(m, "StatementId")?;
    if sid.is_empty() || sid.len() > 100 || !sid.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        return Err(AwsError::invalid_param(format!(
            "1 validation error detected: Value '{sid}' at 'statementId' failed to satisfy constraint: Member must satisfy regular expression pattern: ([a-zA-Z0-9-_.]+)"
        )));
    }
    let action = req_str(m, "Action")?;
    let action_ok = action == "*"
        || action
            .strip_prefix("lambda:")
            .is_some_and(|a| a == "*" || (!a.is_empty() && a.chars().all(|c| c.is_ascii_alphabetic())));
    if !action_ok {
        return Err(AwsError::invalid_param(format!(
            "1 validation error detected: Value '{action}' at 'action' failed to satisfy constraint: Member must satisfy regular expression pattern: (lambda:[*]|lambda:[a-zA-Z]+|[*])"
        )));
    }
    let principal = req_str(m, "Principal")?;
    let principal_json = if principal == "*" {
        json!("*")
    } else if principal.len() == 12 && principal.chars().all(|c| c.is_ascii_digit()) {
        json!({"AWS": format!("arn:aws:iam::{principal}:root")})
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
    add("ArnLike", "AWS:SourceArn", opt_str(m, "SourceArn")?);
    add("StringEquals", "AWS:SourceAccount", opt_str(m, "SourceAccount")?);
    add("StringEquals", "aws:PrincipalOrgID", opt_str(m, "PrincipalOrgID")?);
    add("StringEquals", "lambda:EventSourceToken", opt_str(m, "EventSourceToken")?);
    add("StringEquals", "lambda:FunctionUrlAuthType", opt_str(m, "FunctionUrlAuthType")?);
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

pub(super) fn add_permission(ctx: &Ctx, raw: &str, body: &[u8]) -> R {
    let (name, q) = function_target(ctx, raw)?;
    let m = parse_body(body)?;
    let rec = get_record(ctx, &name)?;
    let key = policy_qualifier(ctx, &rec, &name, q.as_deref())?;
    let st = permission_statement(ctx, &name, &key, &m)?;
    let sid = st["Sid"].as_str().unwrap_or_default().to_string();
    update_record(ctx, &name, |rec| {
        check_revision(&m, &rec.latest.revision_id)?;
        let list = rec.policies.entry(key.clone()).or_default();
        if list.iter().any(|s| s["Sid"] == sid.as_str()) {
            return Err(AwsError::conflict(format!(
                "The statement id ({sid}) provided already exists. Please provide a new statement id, or remove the existing statement."
            )));
        }
        list.push(st.clone());
        Ok(())
    })?;
    ok_json(StatusCode::CREATED, json!({"Statement": st.to_string()}))
}

pub(super) fn get_policy(ctx: &Ctx, raw: &str) -> R {
    let (name, q) = function_target(ctx, raw)?;
    let rec = get_record(ctx, &name)?;
    let key = policy_qualifier(ctx, &rec, &name, q.as_deref())?;
    let statements = rec
        .policies
        .get(&key)
        .filter(|l| !l.is_empty())
        .ok_or_else(|| AwsError::not_found("The resource you requested does not exist."))?;
    let policy = json!({"Version": "2012-10-17", "Id": "default", "Statement": statements});
    ok_json(StatusCode::OK, json!({"Policy": policy.to_string(), "RevisionId": rec.latest.revision_id}))
}

pub(super) fn remove_permission(ctx: &Ctx, raw: &str, sid: &str) -> R {
    let (name, q) = function_target(ctx, raw)?;
    let rec = get_record(ctx, &name)?;
    let key = policy_qualifier(ctx, &rec, &name, q.as_deref())?;
    let revision = ctx.q("RevisionId").map(str::to_string);
    update_record(ctx, &name, |rec| {
        if let Some(r) = &revision
            && *r != rec.latest.revision_id
        {
            return Err(AwsError::precondition(
                "The Revision Id provided does not match the latest Revision Id. Call the GetPolicy API to retrieve the latest Revision Id",
            ));
        }
        let list = rec.policies.entry(key.clone()).or_default();
        let before = list.len();
        list.retain(|s| s["Sid"] != sid);
        if list.is_empty() {
            rec.policies.remove(&key);
        }
        if before == rec.policies.get(&key).map_or(0, Vec::len) {
            return Err(AwsError::not_found(format!("Statement {sid} is not found in resource policy.")));
        }
        Ok(())
    })?;
    Ok(http_util::empty(StatusCode::NO_CONTENT))
}
