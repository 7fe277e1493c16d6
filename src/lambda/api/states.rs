//! Function states as AWS reports them: CreateFunction leaves a function `Pending` and an
//! update leaves `LastUpdateStatus: InProgress`; a background task moves it on as soon as its
//! code is ready (a Docker image pulled, a zip at once) and wakes the invokes waiting for it.

use std::time::Duration;

use super::*;
use crate::lambda::invoke::Target;
use crate::lambda::model::CREATING_REASON;

/// The longest an Invoke waits for a function to leave Pending or InProgress.
const TRANSITION_WAIT: Duration = Duration::from_secs(60);

/// Marks a new function `Pending` with AWS's reason.
pub(super) fn mark_creating(c: &mut FunctionConfig) {
    c.state = State::Pending;
    c.state_reason = Some(CREATING_REASON.into());
    c.state_reason_code = Some("Creating".into());
}

/// Marks an updated `$LATEST` as `LastUpdateStatus: InProgress`.
pub(super) fn mark_updating(c: &mut FunctionConfig) {
    c.last_update_status = LastUpdateStatus::InProgress;
}

/// Finishes the transition of `name` on a background task: after `image` (when the function
/// runs in Docker) is present, `$LATEST` and versions still Pending turn Active (or Failed),
/// and an InProgress update turns Successful. Each change gets a new RevisionId, as on AWS.
/// With `scope` (and `--lambda-docker-spare`), a Docker `$LATEST` that settled gets its
/// spare container made.
pub(super) fn settle(
    lambda: Arc<Lambda>,
    store: Arc<Store>,
    name: String,
    image: Option<String>,
    scope: Option<Scope>,
) {
    tokio::spawn(async move {
        let result = match &image {
            Some(image) => lambda.engine.ensure_image(image).await,
            None => Ok(()),
        };
        // --lambda-state-delay-ms holds the transition (for clients that wait for it).
        let delay = lambda.cfg.lambda_state_delay_ms;
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        // The store writes its file: off the async workers.
        let (result, outcome) = {
            let (task_name, image) = (name.clone(), image.clone());
            let done = tokio::task::spawn_blocking(move || {
                let outcome = finish_transition(&store, &task_name, image.as_deref(), &result);
                (result, outcome)
            });
            match done.await {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(function = %name, error = %e, "transition task failed");
                    return;
                }
            }
        };
        // The spare's making is on the books before a waiting invoke wakes, so that invoke
        // takes it rather than starting a container beside it.
        if let (Ok(()), Ok(_), Some(scope)) = (&result, &outcome, &scope)
            && lambda.engine.keeps_spares()
        {
            let spec = match invoke::resolve(&lambda, &name, None, scope) {
                Ok(t) => invoke::spec_for(&lambda, &t, scope).await,
                Err(e) => Err(e),
            };
            match spec {
                Ok(spec) => lambda.engine.prepare(&spec),
                Err(e) => tracing::debug!(function = %name, error = %e.message, "no spare container"),
            }
        }
        lambda.state_changes.notify_waiters();
        match (&result, outcome) {
            (Ok(()), Ok(_)) => tracing::debug!(function = %name, "function ready"),
            (Err(e), Ok(_)) => tracing::warn!(function = %name, error = %e, "image not available; function Failed"),
            (_, Err(e)) => tracing::warn!(function = %name, error = %e, "could not record the function's new state"),
        }
    });
}

/// Moves `$LATEST` and the versions of `name` that are in transition to where `result` says.
fn finish_transition(
    store: &Store,
    name: &str,
    image: Option<&str>,
    result: &Result<(), String>,
) -> Result<(), AwsError> {
    // A function deleted meanwhile has nothing left to finish.
    let finished = store.update_function(name, |rec| {
        let finish = |c: &Arc<FunctionConfig>| -> Option<Arc<FunctionConfig>> {
            if !c.in_transition() {
                return None;
            }
            let mut c = (**c).clone();
            match result {
                Ok(()) => {
                    c.state = State::Active;
                    c.state_reason = None;
                    c.state_reason_code = None;
                    c.last_update_status = LastUpdateStatus::Successful;
                }
                Err(e) => {
                    c.state = State::Failed;
                    c.state_reason = Some(format!("Image {} could not be prepared: {e}", image.unwrap_or_default()));
                    c.state_reason_code = Some("ImageAccessDenied".into());
                    c.last_update_status = LastUpdateStatus::Failed;
                }
            }
            c.revision_id = new_revision();
            Some(Arc::new(c))
        };
        if let Some(c) = finish(&rec.latest) {
            rec.latest = c;
        }
        for v in rec.versions.values_mut() {
            if let Some(c) = finish(v) {
                *v = c;
            }
        }
        Ok(())
    });
    finished.map(|_| ())
}

/// Resolves an invoke's target, waiting (bounded) while the function is Pending or its update
/// InProgress. AWS refuses such an invoke; RustStack's transitions take milliseconds, so a
/// script that invokes right after CreateFunction waits for them instead (README, PROTOCOL).
pub(super) async fn resolve_settled(ctx: &Ctx<'_>, name: &str, q: Option<&str>) -> Result<Target, AwsError> {
    // Invoke names an unqualified function as `:$LATEST` when it is not found (as AWS).
    let resolve = || {
        invoke::resolve(ctx.lambda, name, q, &ctx.scope).map_err(|e| match q {
            None if e.status == StatusCode::NOT_FOUND => errors::function_not_found(&ctx.scope, name, Some("$LATEST")),
            _ => e,
        })
    };
    // The common case, a settled function, registers for no signal.
    let target = resolve()?;
    if !target.config.in_transition() {
        return Ok(target);
    }
    let deadline = tokio::time::Instant::now() + TRANSITION_WAIT;
    loop {
        // Registered before the state is read again, so a change in between still wakes us.
        let changed = ctx.lambda.state_changes.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let target = resolve()?;
        if !target.config.in_transition() {
            return Ok(target);
        }
        if tokio::time::timeout_at(deadline, changed).await.is_err() {
            let state = if target.config.state == State::Pending { "Pending" } else { "Active (update in progress)" };
            return Err(errors::not_ready(state));
        }
    }
}

/// At server start: finishes the transitions a stopped server left (a function persisted
/// Pending or InProgress would otherwise stay so, and its invokes would wait in vain).
pub fn restore_states(lambda: &Arc<Lambda>) {
    for (_, store) in lambda.stores.all() {
        for rec in store.list_functions() {
            let pending = rec.latest.in_transition() || rec.versions.values().any(|v| v.in_transition());
            if !pending {
                continue;
            }
            let image = invoke::docker_image(lambda, &rec.latest, &rec.tags);
            settle(lambda.clone(), store.clone(), rec.latest.name.clone(), image, None);
        }
    }
}
