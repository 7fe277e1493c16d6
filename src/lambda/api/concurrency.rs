//! Reserved concurrency: Put, Get and DeleteFunctionConcurrency.

use super::*;

pub(super) fn put_concurrency(ctx: &Ctx, raw: &str, body: &[u8]) -> R {
    let name = unqualified(raw)?;
    let m = parse_body(body)?;
    let n = opt_u64(&m, "ReservedConcurrentExecutions")?
        .ok_or_else(|| AwsError::invalid_param("ReservedConcurrentExecutions is required"))?;
    // AWS keeps at least UNRESERVED_MIN of the account's concurrency unreserved.
    let others = ctx.store().reserved_concurrency_total(Some(&name));
    if others + n > ACCOUNT_CONCURRENCY - UNRESERVED_MIN {
        return Err(AwsError::invalid_param(format!(
            "Specified ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [{UNRESERVED_MIN}]."
        )));
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
