//! GetAccountSettings.

use super::*;

pub(super) fn account_settings(ctx: &Ctx) -> R {
    ok_json(
        StatusCode::OK,
        json!({
            "AccountLimit": {
                "TotalCodeSize": 80530636800u64,
                "CodeSizeUnzipped": 262144000u64,
                "CodeSizeZipped": 52428800u64,
                "ConcurrentExecutions": ACCOUNT_CONCURRENCY,
                "UnreservedConcurrentExecutions":
                    ACCOUNT_CONCURRENCY.saturating_sub(ctx.store().reserved_concurrency_total(None)),
            },
            "AccountUsage": {
                "TotalCodeSize": ctx.store().total_code_size(),
                "FunctionCount": ctx.store().function_count(),
            },
        }),
    )
}
