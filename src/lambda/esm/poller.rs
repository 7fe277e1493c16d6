//! The poller of one enabled SQS event source mapping, a task inside the server. It
//! receives batches (long polling, the batching window, at most BatchSize records and about
//! 6 MB), drops the records the filters reject (deleting them without an invocation, as
//! AWS does), and invokes the function through the ordinary invoke path with AWS's SQS
//! event, up to MaximumConcurrency batches at once.
//!
//! After a successful invocation the batch is deleted; with ReportBatchItemFailures only
//! the records the function did not name are. After a function error nothing is deleted:
//! the messages become visible again after the queue's visibility timeout, so SQS retries
//! them and moves them to the dead-letter queue after maxReceiveCount. FIFO order within a
//! message group holds because SQS hands out no message of a group while one is in flight.

use std::collections::HashSet;
use std::sync::{Arc, Weak};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use serde_json::{Map, Value, json};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::Mapping;
use super::filter::{self, Filters};
use crate::lambda::Lambda;
use crate::lambda::invoke::{self, CallContext, Target};
use crate::lambda::model::Scope;
use crate::sqs::{Message, Sqs};

/// Longest long poll SQS allows.
const LONG_POLL: Duration = Duration::from_secs(20);
/// Most messages taken by one receive (so the byte limit is checked between chunks).
const CHUNK: usize = 100;
/// A batch stops growing past this many body bytes (the invoke payload limit is 6 MB; the
/// rest of each record takes room too).
const BATCH_BYTES: usize = 5 * 1024 * 1024;
/// Pause after an error (missing function, unreachable queue) before the next try.
const BACKOFF: Duration = Duration::from_secs(1);
/// Longest wait for the engine's room signal before a throttled batch is retried.
const ROOM_FALLBACK: Duration = Duration::from_secs(1);

/// Resolves when the poller is told to stop.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Runs a mapping's poller until it is told to stop, then waits for its batches in flight.
pub async fn run(lambda: Weak<Lambda>, uuid: String, mut stop: watch::Receiver<bool>) {
    let Some(mapping) = lambda.upgrade().and_then(|l| l.esm.get(&uuid)) else { return };
    // The patterns were checked when they were stored.
    let filters = Filters::parse(mapping.filters.iter().flatten().map(String::as_str)).unwrap_or_default();
    let limit = match mapping.max_concurrency {
        Some(c) => c as usize,
        None => lambda.upgrade().map_or(1, |l| l.cfg.lambda_max_containers.max(1)),
    };
    let permits = Arc::new(Semaphore::new(limit));
    let mapping = Arc::new(mapping);
    let scope = Scope { region: mapping.region.clone(), account: mapping.account.clone() };
    let mut batches = JoinSet::new();
    let mut failing = false;
    tracing::info!(uuid, queue = %mapping.event_source_arn, function = %mapping.function_arn, "event source mapping poller started");
    loop {
        while batches.try_join_next().is_some() {}
        // A permit first: no message is taken that no invocation could run.
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = stopped(&mut stop) => break,
        };
        let Some(lambda) = lambda.upgrade() else { break };
        let ready = invoke::resolve(&lambda, &mapping.function_name, mapping.qualifier.as_deref(), &scope)
            .map_err(|e| e.to_string())
            .and_then(|t| lambda.sqs().map(|s| (t, s)).ok_or_else(|| "SQS is not running".to_string()));
        let (target, sqs) = match ready {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(uuid, error = %e, "event source mapping cannot poll yet");
                tokio::select! { _ = tokio::time::sleep(BACKOFF) => continue, _ = stopped(&mut stop) => break }
            }
        };
        let got = tokio::select! {
            b = collect(&sqs, &mapping) => b,
            _ = stopped(&mut stop) => break,
        };
        let messages = match got {
            Ok(m) => m,
            Err(e) => {
                // Said once per outage (a deleted queue would repeat it every second).
                if !failing {
                    tracing::warn!(uuid, error = %e, "event source mapping cannot receive");
                }
                failing = true;
                tokio::select! { _ = tokio::time::sleep(BACKOFF) => continue, _ = stopped(&mut stop) => break }
            }
        };
        failing = false;
        if messages.is_empty() {
            continue;
        }
        let (keep, drop_) = split(&mapping, &filters, messages);
        if !drop_.is_empty() {
            delete(&sqs, &mapping.event_source_arn, drop_.iter().map(|(_, rh)| rh.clone()).collect()).await;
        }
        if keep.is_empty() {
            continue;
        }
        // Resolved again now that the batch is here: a function deleted (or updated) during
        // the long poll is not invoked through a stale target. Without one the batch
        // returns to the queue after its visibility timeout.
        let target = match invoke::resolve(&lambda, &mapping.function_name, mapping.qualifier.as_deref(), &scope) {
            Ok(t) => t,
            Err(e) => {
                tracing::debug!(uuid, error = %e, "function gone during the poll: the batch returns to the queue");
                drop(target);
                continue;
            }
        };
        let (lambda, mapping, scope) = (lambda.clone(), mapping.clone(), scope.clone());
        batches.spawn(async move {
            process(&lambda, &sqs, &mapping, &target, &scope, keep).await;
            drop(permit);
        });
    }
    while batches.join_next().await.is_some() {}
    tracing::info!(uuid, "event source mapping poller stopped");
}

/// One batch: long polls until a message arrives, then, with a batching window, keeps
/// receiving until BatchSize, the window or the byte limit is reached.
async fn collect(sqs: &Sqs, m: &Mapping) -> Result<Vec<Message>, String> {
    let want = m.batch_size.max(1) as usize;
    let arn = &m.event_source_arn;
    let mut out = sqs.receive(arn, want.min(CHUNK), LONG_POLL, None).await.map_err(|e| e.to_string())?;
    if out.is_empty() || m.max_batching_window == 0 {
        return Ok(out);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(u64::from(m.max_batching_window));
    let mut bytes: usize = out.iter().map(|x| x.body.len()).sum();
    while out.len() < want && bytes < BATCH_BYTES {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            break;
        }
        let more = sqs
            .receive(arn, (want - out.len()).min(CHUNK), left.min(LONG_POLL), None)
            .await
            .map_err(|e| e.to_string())?;
        bytes += more.iter().map(|x| x.body.len()).sum::<usize>();
        out.extend(more);
    }
    Ok(out)
}

/// The region of an SQS ARN (`arn:aws:sqs:REGION:ACCOUNT:NAME`).
fn arn_region(arn: &str) -> &str {
    arn.split(':').nth(3).unwrap_or_default()
}

/// One message as the record AWS puts in the SQS event.
pub fn record(msg: &Message, queue_arn: &str) -> Value {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let attrs: Map<String, Value> = msg
        .message_attributes
        .iter()
        .map(|(name, a)| {
            let mut v = Map::new();
            if let Some(s) = &a.string_value {
                v.insert("stringValue".into(), json!(s));
            }
            if let Some(b) = &a.binary_value {
                v.insert("binaryValue".into(), json!(b64(b)));
            }
            v.insert("stringListValues".into(), json!([]));
            v.insert("binaryListValues".into(), json!([]));
            v.insert("dataType".into(), json!(a.data_type));
            (name.clone(), Value::Object(v))
        })
        .collect();
    json!({
        "messageId": msg.message_id,
        "receiptHandle": msg.receipt_handle,
        "body": msg.body,
        "attributes": msg.attributes,
        "messageAttributes": attrs,
        "md5OfMessageAttributes": msg.md5_of_message_attributes,
        "md5OfBody": msg.md5_of_body,
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": arn_region(queue_arn),
    })
}

/// (record, receipt handle) pairs: those the filters keep, and those they drop.
type Records = Vec<(Value, String)>;

fn split(m: &Mapping, filters: &Filters, messages: Vec<Message>) -> (Records, Records) {
    let mut keep = Vec::with_capacity(messages.len());
    let mut drop_ = Vec::new();
    for msg in messages {
        let rec = record(&msg, &m.event_source_arn);
        if filters.is_empty() || filters.matches(&filter::sqs_view(&rec)) {
            keep.push((rec, msg.receipt_handle));
        } else {
            drop_.push((rec, msg.receipt_handle));
        }
    }
    (keep, drop_)
}

/// Deletes messages by receipt handle (off the async workers: SQS writes its log).
async fn delete(sqs: &Arc<Sqs>, arn: &str, handles: Vec<String>) {
    let (sqs, arn) = (sqs.clone(), arn.to_string());
    let _ = tokio::task::spawn_blocking(move || {
        for rh in handles {
            if let Err(e) = sqs.delete(&arn, &rh) {
                // A handle that expired (the message became visible again) is SQS's to redeliver.
                tracing::debug!(queue = %arn, error = %e, "cannot delete a processed message");
            }
        }
    })
    .await;
}

/// The records a ReportBatchItemFailures response names as failed, or `None` when the
/// response is not a valid one (then, as on AWS, the whole batch counts as failed). An
/// empty or null response, or an empty list, means every record succeeded.
pub fn failed_items(body: &[u8], ids: &HashSet<&str>) -> Option<HashSet<String>> {
    let text = std::str::from_utf8(body).ok()?.trim();
    if text.is_empty() {
        return Some(HashSet::new());
    }
    let v: Value = serde_json::from_str(text).ok()?;
    let list = match &v {
        Value::Null => return Some(HashSet::new()),
        Value::Object(o) => match o.get("batchItemFailures") {
            None | Some(Value::Null) => return Some(HashSet::new()),
            Some(Value::Array(a)) => a,
            Some(_) => return None,
        },
        _ => return None,
    };
    let mut out = HashSet::new();
    for item in list {
        let id = item.get("itemIdentifier").and_then(Value::as_str).filter(|s| !s.is_empty())?;
        if !ids.contains(id) {
            return None;
        }
        out.insert(id.to_string());
    }
    Some(out)
}

/// Invokes the function with one batch and deletes what succeeded.
async fn process(lambda: &Arc<Lambda>, sqs: &Arc<Sqs>, m: &Mapping, target: &Target, scope: &Scope, batch: Records) {
    let records: Vec<&Value> = batch.iter().map(|(r, _)| r).collect();
    let payload = Bytes::from(json!({ "Records": records }).to_string());
    loop {
        // Armed before the attempt: a slot that frees while it is refused wakes the retry.
        let room = lambda.engine.room();
        let room_freed = room.notified();
        match invoke::invoke(lambda, target, scope, payload.clone(), CallContext::default()).await {
            Ok(out) if !out.function_error => {
                let done: Vec<String> = if m.reports_item_failures() {
                    let ids: HashSet<&str> = batch.iter().filter_map(|(r, _)| r["messageId"].as_str()).collect();
                    match failed_items(&out.body, &ids) {
                        Some(failed) => batch
                            .iter()
                            .filter(|(r, _)| !r["messageId"].as_str().is_some_and(|id| failed.contains(id)))
                            .map(|(_, rh)| rh.clone())
                            .collect(),
                        None => {
                            tracing::info!(uuid = %m.uuid, "invalid batchItemFailures response: the whole batch is retried");
                            Vec::new()
                        }
                    }
                } else {
                    batch.iter().map(|(_, rh)| rh.clone()).collect()
                };
                delete(sqs, &m.event_source_arn, done).await;
            }
            Ok(_) => {
                tracing::info!(uuid = %m.uuid, records = batch.len(), "function error: the batch returns to the queue after its visibility timeout");
            }
            Err(e) if e.code == "TooManyRequestsException" => {
                let _ = tokio::time::timeout(ROOM_FALLBACK, room_freed).await;
                continue;
            }
            Err(e) => {
                tracing::warn!(uuid = %m.uuid, error = %e, "the batch could not be delivered: it returns to the queue");
            }
        }
        break;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn batch_item_failures() {
        let ids: HashSet<&str> = ["a", "b", "c"].into_iter().collect();
        assert_eq!(failed_items(b"", &ids), Some(HashSet::new()));
        assert_eq!(failed_items(b"null", &ids), Some(HashSet::new()));
        assert_eq!(failed_items(b"{}", &ids), Some(HashSet::new()));
        assert_eq!(failed_items(br#"{"batchItemFailures": []}"#, &ids), Some(HashSet::new()));
        let one = failed_items(br#"{"batchItemFailures": [{"itemIdentifier": "b"}]}"#, &ids).unwrap();
        assert_eq!(one, ["b".to_string()].into_iter().collect());
        // Invalid answers fail the whole batch.
        assert_eq!(failed_items(b"not json", &ids), None);
        assert_eq!(failed_items(br#"{"batchItemFailures": [{"itemIdentifier": "zzz"}]}"#, &ids), None);
        assert_eq!(failed_items(br#"{"batchItemFailures": [{"itemIdentifier": ""}]}"#, &ids), None);
        assert_eq!(failed_items(br#"{"batchItemFailures": [{}]}"#, &ids), None);
        assert_eq!(failed_items(br#"{"batchItemFailures": "b"}"#, &ids), None);
        assert_eq!(failed_items(br#""text""#, &ids), None);
    }
}
