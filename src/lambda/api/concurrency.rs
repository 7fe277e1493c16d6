//! Reserved concurrency: Put, Get and DeleteFunctionConcurrency.

use super::*;

pub(super) fn put_concurrency(ctx: &Ctx, raw: &str, input: input::PutFunctionConcurrencyRequest) -> R {
    let r = arn::parse_function_ref(raw).map_err(|e| AwsError::invalid_param(e.to_string()))?;
    if r.qualifier.is_some() {
        return Err(errors::functions_only());
    }
    let name = r.name;
    let n = non_negative("ReservedConcurrentExecutions", input.reserved_concurrent_executions)?
        .ok_or_else(|| AwsError::invalid_param("ReservedConcurrentExecutions is required"))?;
    // A missing function is named as `:$LATEST` here (AWS's recorded answer), before the limit.
    if ctx.store().latest(&name).is_none() {
        return Err(not_found(ctx, &name, Some("$LATEST")));
    }
    // AWS keeps at least UNRESERVED_MIN of the account's concurrency unreserved.
    let others = ctx.store().reserved_concurrency_total(Some(&name));
    if others + n > ACCOUNT_CONCURRENCY - UNRESERVED_MIN {
        return Err(errors::unreserved_below_minimum(UNRESERVED_MIN));
    }
    update_record(ctx, &name, |rec| {
        rec.reserved_concurrency = Some(n as u32);
        Ok(())
    })?;
    ok_json(StatusCode::OK, json!({"ReservedConcurrentExecutions": n}))
}

pub(super) fn get_concurrency(ctx: &Ctx, raw: &str) -> R {
    let name = unqualified(raw)?;
    let rec = get_record(ctx, &name)?;
    match rec.reserved_concurrency {
        Some(n) => ok_json(StatusCode::OK, json!({"ReservedConcurrentExecutions": n})),
        None => ok_json(StatusCode::OK, json!({})),
    }
}

pub(super) fn delete_concurrency(ctx: &Ctx, raw: &str) -> R {
    let name = unqualified(raw)?;
    update_record(ctx, &name, |rec| {
        rec.reserved_concurrency = None;
        Ok(())
    })?;
    Ok(http_util::empty(StatusCode::NO_CONTENT))
}
