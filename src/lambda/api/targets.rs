//! Which version or alias a per-qualifier setting call names (policies, event-invoke configs,
//! provisioned concurrency, URLs), and AWS's words when it names none that exists.

use super::*;

/// Whether `q` could name an alias: the model's `(?!^[0-9]+$)([a-zA-Z0-9-_]+)`.
pub(super) fn is_alias_name(q: &str) -> bool {
    !q.is_empty()
        && q.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !q.chars().all(|c| c.is_ascii_digit())
}

/// A qualifier that exists neither as a version nor as an alias: an alias-shaped one is a
/// missing alias (`Cannot find alias arn: …`), anything else a missing version.
pub(super) fn missing_qualifier(ctx: &Ctx, name: &str, q: &str) -> AwsError {
    if is_alias_name(q) {
        super::errors::alias_cannot_find(&ctx.scope, name, q)
    } else {
        super::errors::function_not_found(&ctx.scope, name, Some(q))
    }
}

/// Whether `q` names a published version or an alias of `rec`.
pub(super) fn qualifier_exists(rec: &FunctionRecord, q: &str) -> bool {
    q.parse::<u64>().is_ok_and(|v| rec.versions.contains_key(&v)) || rec.aliases.contains_key(q)
}

/// `q` when it names a version or alias of `rec`; `None` for none or `$LATEST`; AWS's
/// not-found otherwise.
pub(super) fn existing_target(
    ctx: &Ctx,
    rec: &FunctionRecord,
    name: &str,
    q: Option<&str>,
) -> Result<Option<String>, AwsError> {
    match q {
        None | Some("$LATEST") => Ok(None),
        Some(q) if qualifier_exists(rec, q) => Ok(Some(q.to_string())),
        Some(q) => Err(missing_qualifier(ctx, name, q)),
    }
}

/// The revision id of what a qualifier key names ("" = `$LATEST`), which is also the
/// revision of its resource policy.
pub(super) fn target_revision(rec: &FunctionRecord, key: &str) -> String {
    if key.is_empty() || key == "$LATEST" {
        return rec.latest.revision_id.clone();
    }
    if let Some(v) = key.parse::<u64>().ok().and_then(|n| rec.versions.get(&n)) {
        return v.revision_id.clone();
    }
    rec.aliases.get(key).map(|a| a.revision_id.clone()).unwrap_or_default()
}

/// Gives what a qualifier key names a new revision id (a policy change is a change of it).
pub(super) fn bump_revision(rec: &mut FunctionRecord, key: &str) {
    let fresh = new_revision();
    if key.is_empty() || key == "$LATEST" {
        let mut c = (*rec.latest).clone();
        c.revision_id = fresh;
        rec.latest = Arc::new(c);
    } else if let Some(v) = key.parse::<u64>().ok().and_then(|n| rec.versions.get_mut(&n)) {
        let mut c = (**v).clone();
        c.revision_id = fresh;
        *v = Arc::new(c);
    } else if let Some(a) = rec.aliases.get_mut(key) {
        a.revision_id = fresh;
    }
}

/// A `ValidationException` in the model's wording, for the few member checks the model layer
/// cannot make as AWS does (destination ARN kinds, the signing-profile list's combined text).
pub(super) fn validation(value: &str, member: &str, constraint: &str) -> AwsError {
    AwsError::new(
        StatusCode::BAD_REQUEST,
        "ValidationException",
        format!(
            "1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: {constraint}"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::is_alias_name;

    #[test]
    fn alias_names_follow_the_model() {
        assert!(is_alias_name("live") && is_alias_name("v1-x_2") && is_alias_name("1a"));
        assert!(!is_alias_name("1") && !is_alias_name("$LATEST") && !is_alias_name("") && !is_alias_name("a?b"));
    }
}
