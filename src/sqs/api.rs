//! SQS's operations on the wire: decode the request (either protocol), validate it as AWS
//! does, call [`Sqs`], and answer in the request's protocol.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, Response};
use serde_json::{Map, Value, json};

use super::error::SqsError;
use super::wire::{self, Proto};
use super::{Key, Message, MessageAttributeValue, Outgoing, Sqs};
use crate::http_util::Body;

/// Largest request body SQS accepts (a 10-entry batch of 1 MiB messages is refused anyway).
pub const MAX_BODY: usize = 2 * 1024 * 1024;
/// The sum of a batch's message sizes AWS allows.
const MAX_BATCH_BYTES: usize = 1_048_576;
/// The SenderId of requests (RustStack does not authenticate callers).
const SENDER_ID: &str = "AIDAIT2UOQQY3AUEKVGXU";

/// Whether a request is for SQS: `X-Amz-Target: AmazonSQS.*`, signed for `sqs`, or, unsigned,
/// a query-protocol call (a form or `?Action=`) to a queue URL `/<account>/<name>`.
pub fn is_sqs(headers: &HeaderMap, uri: &http::Uri, scope_service: Option<&str>, account: &str) -> bool {
    if scope_service == Some("sqs")
        || headers
            .get(&crate::http_util::names::X_AMZ_TARGET)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("AmazonSQS."))
    {
        return true;
    }
    if scope_service.is_some() {
        return false;
    }
    // `/<account>/<queue>` (checked first, with no allocation: every request comes here).
    let mut segs = uri.path().trim_matches('/').split('/');
    let queue_path =
        matches!((segs.next(), segs.next(), segs.next()), (Some(a), Some(q), None) if a == account && !q.is_empty());
    if !queue_path {
        return false;
    }
    const FORM: &str = "application/x-www-form-urlencoded";
    let form = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.get(..FORM.len()).is_some_and(|p| p.eq_ignore_ascii_case(FORM)));
    let action = uri.query().is_some_and(|q| q.split('&').any(|kv| kv.starts_with("Action=")));
    form || action
}

/// A call's context: where the queue URLs point, the region, the queue a path names.
struct Ctx<'a> {
    sqs: &'a Sqs,
    region: String,
    /// `http://host:port` as the client addressed us.
    base: String,
    path_queue: Option<String>,
}

/// Serves one SQS request.
pub async fn handle(
    sqs: &Sqs,
    headers: &HeaderMap,
    path: &str,
    query: Option<&str>,
    body: Option<Bytes>,
    region: String,
) -> Response<Body> {
    let request_id = crate::aws::request_id();
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok());
    let Some(body) = body else {
        let proto = if target.is_some() { Proto::Json } else { Proto::Query };
        return wire::error(proto, &SqsError::batch_too_long(MAX_BODY, MAX_BODY + 1), &request_id);
    };
    let (proto, decoded) = match target {
        Some(t) => {
            let op = t.strip_prefix("AmazonSQS.").unwrap_or(t).to_string();
            let input = if body.is_empty() {
                Ok(Value::Object(Map::new()))
            } else {
                serde_json::from_slice::<Value>(&body)
                    .ok()
                    .filter(Value::is_object)
                    .ok_or_else(|| SqsError::malformed("The request body is not a valid JSON object."))
            };
            (Proto::Json, input.map(|i| (op, i)))
        }
        None => {
            let mut pairs = crate::http_util::query_pairs(query);
            pairs.extend(wire::form_pairs(&body));
            (Proto::Query, wire::decode_query(&pairs))
        }
    };
    let (op, input) = match decoded {
        Ok(d) => d,
        Err(e) => return wire::error(proto, &e, &request_id),
    };
    let host = headers.get("host").and_then(|v| v.to_str().ok()).filter(|h| !h.is_empty());
    let base = host.map_or_else(|| sqs.base_url.clone(), |h| format!("http://{h}"));
    let segs: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let path_queue = (segs.len() == 2).then(|| segs[1].to_string());
    let ctx = Ctx { sqs, region, base, path_queue };
    match call(&ctx, &op, &input).await {
        Ok(out) => wire::ok(proto, &op, &out, &request_id),
        Err(e) => {
            tracing::debug!(operation = %op, code = e.code, message = %e.message, "sqs error");
            wire::error(proto, &e, &request_id)
        }
    }
}

// ---- input accessors ----

fn get_str(v: &Value, k: &str) -> Option<String> {
    match v.get(k)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn req_str(v: &Value, k: &str) -> Result<String, SqsError> {
    get_str(v, k).ok_or_else(|| SqsError::missing_parameter(k))
}

fn get_int(v: &Value, k: &str) -> Result<Option<i64>, SqsError> {
    match v.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| SqsError::invalid_value(n, k, "Not an integer.")),
        Some(Value::String(s)) => {
            s.trim().parse().map(Some).map_err(|_| SqsError::invalid_value(s, k, "Not an integer."))
        }
        Some(other) => Err(SqsError::invalid_value(other, k, "Not an integer.")),
    }
}

fn str_map(v: &Value, k: &str) -> BTreeMap<String, String> {
    v.get(k)
        .and_then(Value::as_object)
        .map(|o| o.iter().map(|(k, v)| (k.clone(), get_str(&json!({"v": v}), "v").unwrap_or_default())).collect())
        .unwrap_or_default()
}

fn str_list(v: &Value, k: &str) -> Vec<String> {
    v.get(k)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

impl Ctx<'_> {
    /// The queue a request names: its QueueUrl (`http://host/account/name`), else the path.
    fn queue(&self, input: &Value) -> Result<Key, SqsError> {
        let name = match get_str(input, "QueueUrl") {
            Some(url) => {
                let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
                let path = rest.split_once('/').map_or("", |(_, p)| p);
                let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
                match segs.as_slice() {
                    [_account, name] => name.to_string(),
                    [name] if !url.contains("://") => name.to_string(),
                    _ => return Err(SqsError::non_existent_queue()),
                }
            }
            None => self.path_queue.clone().ok_or_else(|| SqsError::missing_parameter("QueueUrl"))?,
        };
        let key = (self.region.clone(), name);
        if self.sqs.exists(&key) { Ok(key) } else { Err(SqsError::non_existent_queue()) }
    }

    fn url(&self, key: &Key) -> String {
        format!("{}/{}/{}", self.base, self.sqs.account, key.1)
    }
}

async fn call(ctx: &Ctx<'_>, op: &str, input: &Value) -> Result<Value, SqsError> {
    let sqs = ctx.sqs;
    match op {
        "CreateQueue" => {
            let name = req_str(input, "QueueName")?;
            let attrs = str_map(input, "Attributes");
            let tags = str_map(input, "tags");
            sqs.create_queue(&ctx.region, &name, attrs, tags).await?;
            Ok(json!({"QueueUrl": ctx.url(&(ctx.region.clone(), name))}))
        }
        "GetQueueUrl" => {
            let name = req_str(input, "QueueName")?;
            let key = (ctx.region.clone(), name);
            if !sqs.exists(&key) {
                return Err(SqsError::non_existent_queue());
            }
            Ok(json!({"QueueUrl": ctx.url(&key)}))
        }
        "ListQueues" => {
            let prefix = get_str(input, "QueueNamePrefix").unwrap_or_default();
            let max = get_int(input, "MaxResults")?;
            if let Some(m) = max
                && !(1..=1000).contains(&m)
            {
                return Err(SqsError::invalid_value(
                    m,
                    "MaxResults",
                    "MaxResults must be an integer between 1 and 1000.",
                ));
            }
            let names = sqs.list_queues(&ctx.region, &prefix);
            let start = match get_str(input, "NextToken") {
                Some(t) => {
                    let after = base64::engine::general_purpose::STANDARD
                        .decode(&t)
                        .ok()
                        .and_then(|b| String::from_utf8(b).ok())
                        .ok_or_else(|| SqsError::invalid_parameter("Invalid NextToken value."))?;
                    names.iter().position(|(n, _)| *n > after).unwrap_or(names.len())
                }
                None => 0,
            };
            let limit = max.map_or(1000, |m| m as usize);
            let page: Vec<&(String, String)> = names[start..].iter().take(limit).collect();
            let mut out = Map::new();
            if !page.is_empty() {
                out.insert(
                    "QueueUrls".into(),
                    page.iter().map(|(n, a)| Value::String(format!("{}/{a}/{n}", ctx.base))).collect(),
                );
            }
            if max.is_some()
                && start + page.len() < names.len()
                && let Some((last, _)) = page.last()
            {
                out.insert("NextToken".into(), Value::String(base64::engine::general_purpose::STANDARD.encode(last)));
            }
            Ok(Value::Object(out))
        }
        "DeleteQueue" => {
            let key = ctx.queue(input)?;
            sqs.delete_queue(&key).await?;
            Ok(json!({}))
        }
        "GetQueueAttributes" => {
            let key = ctx.queue(input)?;
            let names = str_list(input, "AttributeNames");
            let all = sqs.attributes(&key)?;
            let mut out = Map::new();
            for n in &names {
                if n == "All" {
                    for (k, v) in &all {
                        out.insert(k.clone(), Value::String(v.clone()));
                    }
                } else if let Some(v) = all.get(n) {
                    out.insert(n.clone(), Value::String(v.clone()));
                } else if !is_known_attribute(n) {
                    return Err(SqsError::invalid_attribute_name(format!("Unknown Attribute {n}.")));
                }
            }
            if out.is_empty() { Ok(json!({})) } else { Ok(json!({"Attributes": out})) }
        }
        "SetQueueAttributes" => {
            let key = ctx.queue(input)?;
            let attrs = str_map(input, "Attributes");
            sqs.update_meta(&key, |q| {
                super::queue::validate_attributes(&attrs, q.fifo, false)?;
                for (k, v) in attrs {
                    if v.is_empty() && matches!(k.as_str(), "RedrivePolicy" | "RedriveAllowPolicy" | "Policy") {
                        q.meta.attrs.remove(&k);
                    } else {
                        q.meta.attrs.insert(k, v);
                    }
                }
                Ok(())
            })
            .await?;
            Ok(json!({}))
        }
        "PurgeQueue" => {
            let key = ctx.queue(input)?;
            sqs.purge(&key).await?;
            Ok(json!({}))
        }
        "TagQueue" => {
            let key = ctx.queue(input)?;
            let tags = str_map(input, "Tags");
            sqs.update_meta(&key, |q| {
                q.meta.tags.extend(tags);
                Ok(())
            })
            .await?;
            Ok(json!({}))
        }
        "UntagQueue" => {
            let key = ctx.queue(input)?;
            let keys = str_list(input, "TagKeys");
            sqs.update_meta(&key, |q| {
                for k in &keys {
                    q.meta.tags.remove(k);
                }
                Ok(())
            })
            .await?;
            Ok(json!({}))
        }
        "ListQueueTags" => {
            let key = ctx.queue(input)?;
            let tags = sqs.tags(&key)?;
            if tags.is_empty() { Ok(json!({})) } else { Ok(json!({"Tags": tags})) }
        }
        "ListDeadLetterSourceQueues" => {
            let key = ctx.queue(input)?;
            let arn = sqs.arn_of(&key)?;
            let urls: Vec<String> = sqs
                .dead_letter_sources(&ctx.region, &arn)
                .into_iter()
                .map(|(n, a)| format!("{}/{a}/{n}", ctx.base))
                .collect();
            Ok(json!({"queueUrls": urls}))
        }
        "SendMessage" => {
            let key = ctx.queue(input)?;
            let msg = outgoing(input)?;
            let (sent, ack) = sqs.send_key(&key, msg, SENDER_ID)?;
            Sqs::durable(ack).await?;
            Ok(sent_json(&sent, None))
        }
        "SendMessageBatch" => {
            let key = ctx.queue(input)?;
            let entries = batch_entries(input, "SendMessageBatchRequestEntry")?;
            let total: usize = entries
                .iter()
                .map(|e| {
                    get_str(e, "MessageBody").map_or(0, |b| b.len())
                        + e.get("MessageAttributes").map_or(0, |a| a.to_string().len().saturating_sub(2))
                })
                .sum();
            if total > MAX_BATCH_BYTES {
                return Err(SqsError::batch_too_long(MAX_BATCH_BYTES, total));
            }
            // On a FIFO queue an entry without its group (or, without content-based
            // deduplication, its deduplication id) fails the whole request, as on AWS.
            let (fifo, content_dedup) = sqs.with_queue(&key, |q| Ok((q.fifo, q.content_based_dedup())))?;
            if fifo {
                if entries.iter().any(|e| get_str(e, "MessageGroupId").is_none()) {
                    return Err(SqsError::invalid_parameter("The request must contain the parameter MessageGroupId."));
                }
                if !content_dedup && entries.iter().any(|e| get_str(e, "MessageDeduplicationId").is_none()) {
                    return Err(SqsError::invalid_parameter(
                        "The queue should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly",
                    ));
                }
            }
            let (mut ok, mut failed, mut acks) = (Vec::new(), Vec::new(), Vec::new());
            for e in &entries {
                let id = get_str(e, "Id").unwrap_or_default();
                match outgoing(e).and_then(|m| sqs.send_key(&key, m, SENDER_ID)) {
                    Ok((sent, ack)) => {
                        ok.push(sent_json(&sent, Some(&id)));
                        acks.push(ack);
                    }
                    Err(err) => failed.push(failure(&id, &err.in_batch())),
                }
            }
            for a in acks {
                Sqs::durable(a).await?;
            }
            Ok(json!({"Successful": ok, "Failed": failed}))
        }
        "ReceiveMessage" => {
            let key = ctx.queue(input)?;
            let max = get_int(input, "MaxNumberOfMessages")?.unwrap_or(1);
            if !(1..=10).contains(&max) {
                return Err(SqsError::invalid_value(
                    max,
                    "MaxNumberOfMessages",
                    "Must be between 1 and 10, if provided.",
                ));
            }
            let wait = match get_int(input, "WaitTimeSeconds")? {
                Some(w) if !(0..=20).contains(&w) => {
                    return Err(SqsError::invalid_value(w, "WaitTimeSeconds", "Must be >= 0 and <= 20, if provided."));
                }
                Some(w) => w as u64,
                None => sqs.with_queue(&key, |q| Ok(q.num("ReceiveMessageWaitTimeSeconds")))?,
            };
            let vt = match get_int(input, "VisibilityTimeout")? {
                Some(v) if !(0..=43_200).contains(&v) => {
                    return Err(SqsError::invalid_value(
                        v,
                        "VisibilityTimeout",
                        "Must be between 0 and 43200, if provided.",
                    ));
                }
                v => v.map(|v| v as u32),
            };
            let mut sys_names = str_list(input, "AttributeNames");
            sys_names.extend(str_list(input, "MessageSystemAttributeNames"));
            let attr_names = str_list(input, "MessageAttributeNames");
            let msgs = sqs.receive_key(&key, max as usize, Duration::from_secs(wait), vt).await?;
            let out: Vec<Value> = msgs.iter().map(|m| message_json(m, &sys_names, &attr_names)).collect();
            if out.is_empty() { Ok(json!({})) } else { Ok(json!({"Messages": out})) }
        }
        "DeleteMessage" => {
            let key = ctx.queue(input)?;
            let handle = req_str(input, "ReceiptHandle")?;
            let ack = sqs.delete_key(&key, &handle)?;
            Sqs::durable(ack).await?;
            Ok(json!({}))
        }
        "DeleteMessageBatch" => {
            let key = ctx.queue(input)?;
            let entries = batch_entries(input, "DeleteMessageBatchRequestEntry")?;
            let (mut ok, mut failed, mut acks) = (Vec::new(), Vec::new(), Vec::new());
            for e in &entries {
                let id = get_str(e, "Id").unwrap_or_default();
                let r = req_str(e, "ReceiptHandle").and_then(|h| sqs.delete_key(&key, &h));
                match r {
                    Ok(ack) => {
                        ok.push(json!({"Id": id}));
                        acks.push(ack);
                    }
                    Err(err) => failed.push(failure(&id, &err)),
                }
            }
            for a in acks {
                Sqs::durable(a).await?;
            }
            Ok(json!({"Successful": ok, "Failed": failed}))
        }
        "ChangeMessageVisibility" => {
            let key = ctx.queue(input)?;
            let handle = req_str(input, "ReceiptHandle")?;
            let vt = visibility_arg(input)?;
            sqs.change_visibility_key(&key, &handle, vt)?;
            Ok(json!({}))
        }
        "ChangeMessageVisibilityBatch" => {
            let key = ctx.queue(input)?;
            let entries = batch_entries(input, "ChangeMessageVisibilityBatchRequestEntry")?;
            let (mut ok, mut failed) = (Vec::new(), Vec::new());
            for e in &entries {
                let id = get_str(e, "Id").unwrap_or_default();
                let r = req_str(e, "ReceiptHandle")
                    .and_then(|h| visibility_arg(e).and_then(|vt| sqs.change_visibility_key(&key, &h, vt)));
                match r {
                    Ok(()) => ok.push(json!({"Id": id})),
                    Err(err) => failed.push(failure(&id, &err)),
                }
            }
            Ok(json!({"Successful": ok, "Failed": failed}))
        }
        "AddPermission" | "RemovePermission" => {
            ctx.queue(input)?;
            Ok(json!({}))
        }
        "ListMessageMoveTasks" | "StartMessageMoveTask" | "CancelMessageMoveTask" => {
            Err(SqsError::unsupported_operation(format!("RustStack does not implement the SQS operation {op}.")))
        }
        other => Err(SqsError::invalid_action(other)),
    }
}

fn is_known_attribute(n: &str) -> bool {
    matches!(
        n,
        "Policy"
            | "VisibilityTimeout"
            | "MaximumMessageSize"
            | "MessageRetentionPeriod"
            | "ApproximateNumberOfMessages"
            | "ApproximateNumberOfMessagesNotVisible"
            | "CreatedTimestamp"
            | "LastModifiedTimestamp"
            | "QueueArn"
            | "ApproximateNumberOfMessagesDelayed"
            | "DelaySeconds"
            | "ReceiveMessageWaitTimeSeconds"
            | "RedrivePolicy"
            | "FifoQueue"
            | "ContentBasedDeduplication"
            | "KmsMasterKeyId"
            | "KmsDataKeyReusePeriodSeconds"
            | "DeduplicationScope"
            | "FifoThroughputLimit"
            | "RedriveAllowPolicy"
            | "SqsManagedSseEnabled"
    )
}

fn visibility_arg(input: &Value) -> Result<u32, SqsError> {
    match get_int(input, "VisibilityTimeout")? {
        None => Err(SqsError::missing_parameter("VisibilityTimeout")),
        Some(v) if !(0..=43_200).contains(&v) => {
            Err(SqsError::invalid_value(v, "VisibilityTimeout", "Must be between 0 and 43200, if provided."))
        }
        Some(v) => Ok(v as u32),
    }
}

/// A batch's entries, checked as AWS does: 1 to 10, ids distinct and well-formed.
fn batch_entries(input: &Value, entry_name: &str) -> Result<Vec<Value>, SqsError> {
    let entries = input.get("Entries").and_then(Value::as_array).cloned().unwrap_or_default();
    if entries.is_empty() {
        return Err(SqsError::empty_batch(entry_name));
    }
    if entries.len() > 10 {
        return Err(SqsError::too_many_entries(entries.len()));
    }
    let mut seen = HashSet::new();
    for e in &entries {
        let id = get_str(e, "Id").ok_or_else(|| SqsError::missing_parameter("Id"))?;
        if id.is_empty() || id.len() > 80 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(SqsError::invalid_batch_entry_id());
        }
        if !seen.insert(id.clone()) {
            return Err(SqsError::batch_ids_not_distinct(&id));
        }
    }
    Ok(entries)
}

fn failure(id: &str, e: &SqsError) -> Value {
    json!({"Id": id, "SenderFault": e.status < 500, "Code": e.code, "Message": e.message})
}

fn sent_json(s: &super::Sent, id: Option<&str>) -> Value {
    let mut o = Map::new();
    if let Some(id) = id {
        o.insert("Id".into(), Value::String(id.to_string()));
    }
    o.insert("MessageId".into(), Value::String(s.message_id.clone()));
    o.insert("MD5OfMessageBody".into(), Value::String(s.md5_of_body.clone()));
    if let Some(m) = &s.md5_of_attributes {
        o.insert("MD5OfMessageAttributes".into(), Value::String(m.clone()));
    }
    if let Some(m) = &s.md5_of_system_attributes {
        o.insert("MD5OfMessageSystemAttributes".into(), Value::String(m.clone()));
    }
    if let Some(n) = &s.sequence_number {
        o.insert("SequenceNumber".into(), Value::String(n.clone()));
    }
    Value::Object(o)
}

/// A received message, with the system and message attributes the caller asked for.
fn message_json(m: &Message, sys_names: &[String], attr_names: &[String]) -> Value {
    let mut o = Map::new();
    o.insert("MessageId".into(), Value::String(m.message_id.clone()));
    o.insert("ReceiptHandle".into(), Value::String(m.receipt_handle.clone()));
    o.insert("MD5OfBody".into(), Value::String(m.md5_of_body.clone()));
    o.insert("Body".into(), Value::String(m.body.clone()));
    let all_sys = sys_names.iter().any(|n| n == "All");
    let attrs: Map<String, Value> = m
        .attributes
        .iter()
        .filter(|(k, _)| all_sys || sys_names.iter().any(|n| n == *k))
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    if !attrs.is_empty() {
        o.insert("Attributes".into(), Value::Object(attrs));
    }
    let wanted = |name: &str| {
        attr_names.iter().any(|n| {
            n == "All"
                || n == ".*"
                || n == name
                || n.strip_suffix(".*").is_some_and(|p| name.starts_with(&format!("{p}.")))
        })
    };
    let chosen: BTreeMap<String, MessageAttributeValue> =
        m.message_attributes.iter().filter(|(k, _)| wanted(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
    if let Some(md5) = super::queue::md5_of_attributes(&chosen) {
        o.insert("MD5OfMessageAttributes".into(), Value::String(md5));
        let mut ma = Map::new();
        for (k, v) in &chosen {
            let mut a = Map::new();
            if let Some(s) = &v.string_value {
                a.insert("StringValue".into(), Value::String(s.clone()));
            }
            if let Some(b) = &v.binary_value {
                a.insert("BinaryValue".into(), Value::String(base64::engine::general_purpose::STANDARD.encode(b)));
            }
            a.insert("DataType".into(), Value::String(v.data_type.clone()));
            ma.insert(k.clone(), Value::Object(a));
        }
        o.insert("MessageAttributes".into(), Value::Object(ma));
    }
    Value::Object(o)
}

fn valid_body(body: &str) -> bool {
    body.chars().all(|c| {
        matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
    })
}

fn check_id(value: &str, parameter: &str) -> Result<(), SqsError> {
    if value.is_empty() || value.len() > 128 || !value.bytes().all(|b| (33..=126).contains(&b)) {
        return Err(SqsError::invalid_value(
            value,
            parameter,
            &format!("{parameter} can only include alphanumeric and punctuation characters. 1 to 128 in length."),
        ));
    }
    Ok(())
}

/// SendMessage's (or a batch entry's) members, validated.
fn outgoing(input: &Value) -> Result<Outgoing, SqsError> {
    let body = get_str(input, "MessageBody")
        .filter(|b| !b.is_empty())
        .ok_or_else(|| SqsError::missing_parameter("MessageBody"))?;
    if !valid_body(&body) {
        return Err(SqsError::invalid_message_contents());
    }
    let delay = match get_int(input, "DelaySeconds")? {
        Some(d) if !(0..=900).contains(&d) => {
            return Err(SqsError::invalid_value(d, "DelaySeconds", "DelaySeconds must be >= 0 and <= 900"));
        }
        d => d.map(|d| d as u32),
    };
    let group_id = get_str(input, "MessageGroupId");
    if let Some(g) = &group_id {
        check_id(g, "MessageGroupId")?;
    }
    let dedup_id = get_str(input, "MessageDeduplicationId");
    if let Some(d) = &dedup_id {
        check_id(d, "MessageDeduplicationId")?;
    }
    let attributes = message_attributes(input.get("MessageAttributes"))?;
    let trace_header = input
        .get("MessageSystemAttributes")
        .and_then(|s| s.get("AWSTraceHeader"))
        .and_then(|t| get_str(t, "StringValue"));
    Ok(Outgoing { body, delay_seconds: delay, attributes, trace_header, group_id, dedup_id })
}

fn message_attributes(v: Option<&Value>) -> Result<BTreeMap<String, MessageAttributeValue>, SqsError> {
    let Some(obj) = v.and_then(Value::as_object) else { return Ok(BTreeMap::new()) };
    if obj.len() > 10 {
        return Err(SqsError::invalid_parameter(format!(
            "Number of message attributes [{}] exceeds the allowed maximum [10].",
            obj.len()
        )));
    }
    let mut out = BTreeMap::new();
    for (name, a) in obj {
        let name_ok = !name.is_empty()
            && name.len() <= 256
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
            && !name.starts_with('.')
            && !name.ends_with('.')
            && !name.contains("..")
            && !name.to_ascii_lowercase().starts_with("aws.")
            && !name.to_ascii_lowercase().starts_with("amazon.");
        if !name_ok {
            return Err(SqsError::invalid_parameter(format!("Message (user) attribute name '{name}' is invalid.")));
        }
        let data_type = get_str(a, "DataType").filter(|d| !d.is_empty()).ok_or_else(|| {
            SqsError::invalid_parameter(format!(
                "The message attribute '{name}' must contain non-empty message attribute type."
            ))
        })?;
        let base = data_type.split('.').next().unwrap_or("");
        let value = match base {
            "String" | "Number" => {
                let s = get_str(a, "StringValue").filter(|s| !s.is_empty()).ok_or_else(|| {
                    SqsError::invalid_parameter(format!(
                        "Message (user) attribute '{name}' must contain a non-empty value of type '{base}'."
                    ))
                })?;
                if base == "Number" && s.trim().parse::<f64>().is_err() {
                    return Err(SqsError::invalid_parameter(format!(
                        "Could not cast message attribute '{name}' value to number."
                    )));
                }
                MessageAttributeValue { data_type, string_value: Some(s), binary_value: None }
            }
            "Binary" => {
                let b = get_str(a, "BinaryValue")
                    .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s.trim()).ok())
                    .filter(|b| !b.is_empty())
                    .ok_or_else(|| {
                        SqsError::invalid_parameter(format!(
                            "Message (user) attribute '{name}' must contain a non-empty value of type 'Binary'."
                        ))
                    })?;
                MessageAttributeValue { data_type, string_value: None, binary_value: Some(b) }
            }
            _ => {
                return Err(SqsError::invalid_parameter(format!(
                    "The type of message (user) attribute '{name}' is invalid. You must use only the following supported type prefixes: Binary, Number, String."
                )));
            }
        };
        out.insert(name.clone(), value);
    }
    Ok(out)
}
