//! Event source mappings (Create/Get/List/Update/DeleteEventSourceMapping) for SQS queues,
//! with AWS's semantic checks in AWS's order and its messages. The model layer has already
//! checked shapes and ranges (BatchSize 1–10,000, MaximumBatchingWindowInSeconds 0–300,
//! ScalingConfig.MaximumConcurrency 2–1000, FunctionResponseTypes).

use super::*;
use crate::lambda::esm::{self, Mapping, filter};

/// Largest page ListEventSourceMappings returns (AWS: 100, whatever MaxItems says).
const MAX_ESM_PAGE: usize = 100;
/// SQS's default batch size.
const SQS_DEFAULT_BATCH: u32 = 10;
/// Largest batch without a batching window (and the most one ReceiveMessage returns).
const SQS_UNWINDOWED_BATCH: u32 = 10;

fn esm_not_found() -> AwsError {
    AwsError::not_found("The resource you requested does not exist.")
}

fn invalid_filter() -> AwsError {
    AwsError::invalid_param("Invalid filter pattern definition.")
}

/// The members an SQS mapping's create or update may set, decoded and checked alone.
#[derive(Default)]
struct Members {
    batch_size: Option<u32>,
    window: Option<u32>,
    enabled: Option<bool>,
    /// `Some(None)`: FilterCriteria given without filters (an update clears them).
    filters: Option<Option<Vec<String>>>,
    response_types: Option<Vec<String>>,
    /// `Some(None)`: ScalingConfig given without MaximumConcurrency (clears it).
    concurrency: Option<Option<u32>>,
}

/// Decodes and checks the members a mapping's create and update share (one generated struct
/// in both inputs).
fn members(m: input::EventSourceMappingMembers) -> Result<Members, AwsError> {
    // SQS mappings take no destinations (AWS answers this before anything else).
    if m.destination_config.is_some_and(|d| !d.is_null()) {
        return Err(AwsError::invalid_param(
            "Unsupported DestinationConfig parameter for given event source mapping type.",
        ));
    }
    let filters = match m.filter_criteria {
        None => None,
        Some(fc) => match fc.filters {
            None => Some(None),
            Some(list) if list.is_empty() => Some(None),
            Some(list) => {
                let mut patterns = Vec::with_capacity(list.len());
                for f in list {
                    let p = f.pattern.filter(|p| !p.is_empty()).ok_or_else(invalid_filter)?;
                    filter::Pattern::parse(&p).map_err(|_| invalid_filter())?;
                    patterns.push(p);
                }
                Some(Some(patterns))
            }
        },
    };
    let count = |key: &str, n: Option<i64>| Ok::<_, AwsError>(non_negative(key, n)?.map(|n| n as u32));
    let concurrency = match m.scaling_config {
        None => None,
        Some(sc) => Some(count("MaximumConcurrency", sc.maximum_concurrency)?),
    };
    Ok(Members {
        batch_size: count("BatchSize", m.batch_size)?,
        window: count("MaximumBatchingWindowInSeconds", m.maximum_batching_window_in_seconds)?,
        enabled: m.enabled,
        filters,
        response_types: m.function_response_types,
        concurrency,
    })
}

/// AWS's batching rules for SQS: more than 10 records need a batching window, and FIFO
/// queues take no window at all.
fn check_batching(batch: u32, window: u32, fifo: bool) -> Result<(), AwsError> {
    if batch > SQS_UNWINDOWED_BATCH && window == 0 {
        return Err(AwsError::invalid_param(
            "Maximum batch window in seconds must be greater than 0 if maximum batch size is greater than 10",
        ));
    }
    if fifo && window > 0 {
        return Err(AwsError::invalid_param("Batching window is not supported for FIFO queues"));
    }
    Ok(())
}

/// The function a mapping names: (name, qualifier, ARN as reported, timeout). AWS answers
/// one message for a function, version or alias that does not exist.
fn mapping_function(ctx: &Ctx, raw: &str) -> Result<(String, Option<String>, String, u32), AwsError> {
    check_function_scope(&ctx.scope, raw)?;
    let r = arn::parse_function_ref(raw).map_err(|e| AwsError::invalid_param(e.to_string()))?;
    let missing = || AwsError::invalid_param("Function does not exist");
    let rec = ctx.store().get_function(&r.name).ok_or_else(missing)?;
    let cfg = config_for(ctx, &rec, r.qualifier.as_deref()).map_err(|_| missing())?;
    let function_arn = arn::function_arn(&ctx.scope.region, &ctx.scope.account, &r.name, r.qualifier.as_deref());
    Ok((r.name, r.qualifier, function_arn, cfg.timeout))
}

/// The queue must exist and hide a message for at least the function's timeout.
fn check_queue(ctx: &Ctx, queue_arn: &str, function_timeout: u32) -> Result<(), AwsError> {
    let Some(q) = ctx.lambda.queue_facts(queue_arn) else {
        return Err(AwsError::invalid_param(
            "Error occurred while ReceiveMessage. SQS Error Code: AWS.SimpleQueueService.NonExistentQueue. SQS Error Message: The specified queue does not exist.",
        ));
    };
    if q.visibility_timeout < function_timeout {
        return Err(AwsError::invalid_param(format!(
            "Queue visibility timeout: {} seconds is less than Function timeout: {function_timeout} seconds",
            q.visibility_timeout
        )));
    }
    Ok(())
}

/// The service an event source ARN names (`arn:partition:service:region:account:resource`).
fn source_service(arn: &str) -> Option<&str> {
    let mut parts = arn.split(':');
    (parts.next() == Some("arn")).then_some(())?;
    parts.nth(1)
}

fn respond(status: StatusCode, m: &Mapping) -> R {
    ok_json(status, m.to_json())
}

pub(super) fn create_esm(ctx: &Ctx, m: input::CreateEventSourceMappingRequest) -> R {
    let function = m.mapping.function_name.clone();
    let given = members(m.mapping)?;
    let Some(source) = m.event_source_arn else {
        return Err(AwsError::invalid_param("Unrecognized event source."));
    };
    match source_service(&source) {
        Some("sqs") => {}
        Some("kinesis" | "dynamodb" | "kafka" | "mq" | "docdb") => {
            return Err(AwsError::invalid_param(format!(
                "RustStack maps SQS queues only; this event source is not supported: {source}"
            )));
        }
        _ => return Err(AwsError::invalid_param("Unrecognized event source.")),
    }
    if m.starting_position.is_some() {
        return Err(AwsError::invalid_param("StartingPosition is not valid for SQS event sources."));
    }
    let fifo = source.ends_with(".fifo");
    let batch = given.batch_size.unwrap_or(SQS_DEFAULT_BATCH);
    let window = given.window.unwrap_or(0);
    check_batching(batch, window, fifo)?;
    let (name, qualifier, function_arn, timeout) = mapping_function(ctx, &required(function, "FunctionName")?)?;
    check_queue(ctx, &source, timeout)?;
    let enabled = given.enabled.unwrap_or(true);
    let now = crate::aws::epoch_ms();
    let mapping = Mapping {
        uuid: uuid::Uuid::new_v4().to_string(),
        region: ctx.scope.region.clone(),
        account: ctx.scope.account.clone(),
        function_arn,
        function_name: name.clone(),
        qualifier,
        event_source_arn: source.clone(),
        batch_size: batch,
        max_batching_window: window,
        enabled,
        state: if enabled { esm::CREATING } else { esm::DISABLED }.to_string(),
        filters: given.filters.flatten(),
        function_response_types: given.response_types.unwrap_or_default(),
        max_concurrency: given.concurrency.flatten(),
        last_modified: now as f64 / 1000.0,
        created_ms: now,
        tags: m.tags.unwrap_or_default(),
    };
    ctx.lambda.esm.create(mapping.clone(), |other| {
        (other.region == mapping.region
            && other.function_arn == mapping.function_arn
            && other.event_source_arn == mapping.event_source_arn
            && other.state != esm::DELETING)
            .then(|| {
                AwsError::conflict(format!(
                    "An event source mapping with SQS arn (\" {source} \") and function (\" {name} \") already exists. Please update or delete the existing mapping with UUID {}",
                    other.uuid
                ))
            })
    })?;
    ctx.lambda.esm_changed(&mapping.uuid);
    respond(StatusCode::ACCEPTED, &mapping)
}

/// The mapping a UUID names, in the request's region.
fn find(ctx: &Ctx, uuid: &str) -> Result<Mapping, AwsError> {
    ctx.lambda
        .esm
        .get(uuid)
        .filter(|m| m.region == ctx.scope.region && m.account == ctx.scope.account)
        .ok_or_else(esm_not_found)
}

pub(super) fn get_esm(ctx: &Ctx, uuid: &str) -> R {
    respond(StatusCode::OK, &find(ctx, uuid)?)
}

pub(super) fn update_esm(ctx: &Ctx, uuid: &str, m: input::UpdateEventSourceMappingRequest) -> R {
    let current = find(ctx, uuid)?;
    let function = m.mapping.function_name.clone();
    let given = members(m.mapping)?;
    let function = match function {
        Some(f) => Some(mapping_function(ctx, &f)?),
        None => None,
    };
    let batch = given.batch_size.unwrap_or(current.batch_size);
    let window = given.window.unwrap_or(current.max_batching_window);
    check_batching(batch, window, current.fifo())?;
    if let Some((_, _, _, timeout)) = &function {
        check_queue(ctx, &current.event_source_arn, *timeout)?;
    }
    let updated = ctx
        .lambda
        .esm
        .update(uuid, |rec| {
            if rec.state == esm::DELETING {
                return Err(AwsError::new(
                    StatusCode::CONFLICT,
                    "ResourceInUseException",
                    format!("Cannot update the event source mapping because it is in use: {uuid}"),
                ));
            }
            if let Some((name, qualifier, function_arn, _)) = function {
                rec.function_name = name;
                rec.qualifier = qualifier;
                rec.function_arn = function_arn;
            }
            rec.batch_size = batch;
            rec.max_batching_window = window;
            if let Some(f) = given.filters {
                rec.filters = f;
            }
            if let Some(t) = given.response_types {
                rec.function_response_types = t;
            }
            if let Some(c) = given.concurrency {
                rec.max_concurrency = c;
            }
            let was = rec.enabled;
            if let Some(e) = given.enabled {
                rec.enabled = e;
            }
            rec.state = match (was, rec.enabled) {
                (false, true) => esm::ENABLING,
                (true, false) => esm::DISABLING,
                _ => esm::UPDATING,
            }
            .to_string();
            rec.last_modified = crate::aws::epoch_ms() as f64 / 1000.0;
            Ok(())
        })?
        .ok_or_else(esm_not_found)?;
    ctx.lambda.esm_changed(uuid);
    respond(StatusCode::ACCEPTED, &updated)
}

pub(super) fn delete_esm(ctx: &Ctx, uuid: &str) -> R {
    find(ctx, uuid)?;
    let deleting = ctx
        .lambda
        .esm
        .update(uuid, |rec| {
            rec.state = esm::DELETING.to_string();
            Ok(())
        })?
        .ok_or_else(esm_not_found)?;
    ctx.lambda.esm_changed(uuid);
    respond(StatusCode::ACCEPTED, &deleting)
}

pub(super) fn list_esms(ctx: &Ctx) -> R {
    let source = ctx.q("EventSourceArn").filter(|s| !s.is_empty());
    let function = match ctx.q("FunctionName").filter(|s| !s.is_empty()) {
        Some(f) => Some(arn::parse_function_ref(f).map_err(|e| AwsError::invalid_param(e.to_string()))?),
        None => None,
    };
    let max = match ctx.q("MaxItems") {
        Some(s) => s.parse::<usize>().unwrap_or(MAX_ESM_PAGE),
        None => MAX_ESM_PAGE,
    }
    .clamp(1, MAX_ESM_PAGE);
    let items: Vec<Mapping> = ctx
        .lambda
        .esm
        .list()
        .into_iter()
        .filter(|m| m.region == ctx.scope.region && m.account == ctx.scope.account)
        .filter(|m| source.is_none_or(|s| m.event_source_arn == s))
        .filter(|m| {
            function
                .as_ref()
                .is_none_or(|f| m.function_name == f.name && (f.qualifier.is_none() || f.qualifier == m.qualifier))
        })
        .collect();
    // The marker is the sort key of the last mapping returned; the next page starts after
    // it, so mappings deleted between pages neither shift nor skip the rest.
    let key = |m: &Mapping| format!("{:013}-{}", m.created_ms, m.uuid);
    let start = ctx
        .q("Marker")
        .filter(|s| !s.is_empty())
        .map_or(0, |marker| items.partition_point(|m| key(m).as_str() <= marker));
    let page: Vec<&Mapping> = items.iter().skip(start).take(max).collect();
    let mut out = json!({"EventSourceMappings": page.iter().map(|m| m.to_json()).collect::<Vec<_>>()});
    if start + page.len() < items.len()
        && let Some(last) = page.last()
    {
        out["NextMarker"] = json!(key(last));
    }
    ok_json(StatusCode::OK, out)
}

/// The mapping an event source mapping ARN names, with AWS's tagging not-found error.
fn tag_target(ctx: &Ctx, resource: &str) -> Result<Mapping, AwsError> {
    let uuid = resource.rsplit(':').next().unwrap_or_default();
    find(ctx, uuid)
        .ok()
        .filter(|m| m.arn() == resource)
        .ok_or_else(|| AwsError::not_found(format!("Event source mapping not found: {resource}")))
}

pub(super) fn list_esm_tags(ctx: &Ctx, resource: &str) -> R {
    ok_json(StatusCode::OK, json!({"Tags": tag_target(ctx, resource)?.tags}))
}

pub(super) fn tag_esm(ctx: &Ctx, resource: &str, tags: BTreeMap<String, String>) -> R {
    let uuid = tag_target(ctx, resource)?.uuid;
    if tags.is_empty() {
        return Err(errors::empty_tags());
    }
    ctx.lambda
        .esm
        .update(&uuid, |m| {
            let added = tags.keys().filter(|k| !m.tags.contains_key(*k)).count();
            if m.tags.len() + added > super::tags::MAX_TAGS {
                return Err(errors::too_many_tags());
            }
            m.tags.extend(tags.clone());
            Ok(())
        })?
        .ok_or_else(esm_not_found)?;
    Ok(http_util::empty(StatusCode::NO_CONTENT))
}

pub(super) fn untag_esm(ctx: &Ctx, resource: &str) -> R {
    let uuid = tag_target(ctx, resource)?.uuid;
    let keys: Vec<String> = ctx.query.iter().filter(|(k, _)| k == "tagKeys").map(|(_, v)| v.clone()).collect();
    if keys.is_empty() {
        return Err(errors::tag_keys_null());
    }
    ctx.lambda
        .esm
        .update(&uuid, |m| {
            for k in &keys {
                m.tags.remove(k);
            }
            Ok(())
        })?
        .ok_or_else(esm_not_found)?;
    Ok(http_util::empty(StatusCode::NO_CONTENT))
}
