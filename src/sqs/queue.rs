//! One queue's state: its attributes, its messages in send order, visibility, FIFO group
//! locks and deduplication. Plain data: no I/O, no locks (the [`super::Sqs`] lock guards it).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::error::SqsError;
use super::{MessageAttributeValue, QueueInfo};

/// FIFO deduplication interval.
pub const DEDUP_WINDOW_MS: u64 = 5 * 60 * 1000;
/// AWS's largest message (and the default MaximumMessageSize).
pub const MAX_MESSAGE_SIZE: u64 = 1_048_576;

/// The attributes a queue can be given, with AWS's defaults and bounds.
/// (name, default, min, max) for the numeric ones.
const NUMERIC: &[(&str, u64, u64, u64)] = &[
    ("DelaySeconds", 0, 0, 900),
    ("MaximumMessageSize", MAX_MESSAGE_SIZE, 1024, MAX_MESSAGE_SIZE),
    ("MessageRetentionPeriod", 345_600, 60, 1_209_600),
    ("ReceiveMessageWaitTimeSeconds", 0, 0, 20),
    ("VisibilityTimeout", 30, 0, 43_200),
    ("KmsDataKeyReusePeriodSeconds", 300, 60, 86_400),
];
/// Settable attributes that only FIFO queues have.
const FIFO_ONLY: &[&str] = &["FifoQueue", "ContentBasedDeduplication", "DeduplicationScope", "FifoThroughputLimit"];
/// Settable attributes of any queue that are not numeric.
const OTHER: &[&str] = &["Policy", "RedrivePolicy", "RedriveAllowPolicy", "KmsMasterKeyId", "SqsManagedSseEnabled"];

/// A message as stored (and persisted).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stored {
    pub id: String,
    /// Global send order; FIFO's SequenceNumber.
    pub seq: u64,
    pub body: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attrs: BTreeMap<String, MessageAttributeValue>,
    pub md5_body: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5_attrs: Option<String>,
    /// AWSTraceHeader, the one system attribute a sender may set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_header: Option<String>,
    pub sent_ms: u64,
    /// When the message is next visible (send delay, then each visibility timeout).
    pub visible_at: u64,
    #[serde(default)]
    pub receive_count: u32,
    #[serde(default)]
    pub first_receive_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup_id: Option<String>,
    pub sender: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dlq_source: Option<String>,
    /// The receipt handle of the current receive, while in flight; not persisted (a restart
    /// makes every message visible again).
    #[serde(skip)]
    pub receipt: Option<String>,
}

/// A queue's persisted description.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueueMeta {
    pub region: String,
    pub account: String,
    pub name: String,
    /// Seconds since the epoch.
    pub created: u64,
    pub modified: u64,
    /// The attributes set explicitly (defaults are not stored).
    pub attrs: BTreeMap<String, String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

pub struct Queue {
    pub meta: QueueMeta,
    pub arn: String,
    pub fifo: bool,
    pub messages: BTreeMap<u64, Stored>,
    /// FIFO: deduplication id → (expiry ms, message id, sequence number).
    pub dedup: HashMap<String, (u64, String, u64)>,
    pub notify: Arc<tokio::sync::Notify>,
    pub last_purge_ms: Option<u64>,
}

/// A queue name's rules; `fifo` says whether the queue is FIFO.
pub fn validate_name(name: &str, fifo: bool) -> Result<(), SqsError> {
    let stem = name.strip_suffix(".fifo").unwrap_or(name);
    let chars_ok = !stem.is_empty() && stem.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if name.len() > 80 || !chars_ok {
        return Err(SqsError::invalid_parameter(if fifo || name.ends_with(".fifo") {
            "The name of a FIFO queue can only include alphanumeric characters, hyphens, or underscores, must end with .fifo suffix and be 1 to 80 in length."
        } else {
            "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length"
        }));
    }
    if fifo != name.ends_with(".fifo") {
        return Err(SqsError::invalid_parameter(
            "The name of a FIFO queue can only include alphanumeric characters, hyphens, or underscores, must end with .fifo suffix and be 1 to 80 in length.",
        ));
    }
    Ok(())
}

fn is_true(v: &str) -> bool {
    v.eq_ignore_ascii_case("true")
}

/// Checks the attributes of a CreateQueue (`creating`) or SetQueueAttributes call, as AWS does.
pub fn validate_attributes(attrs: &BTreeMap<String, String>, fifo: bool, creating: bool) -> Result<(), SqsError> {
    for (k, v) in attrs {
        let k = k.as_str();
        if let Some(&(_, _, min, max)) = NUMERIC.iter().find(|(n, ..)| *n == k) {
            match v.trim().parse::<u64>() {
                Ok(n) if (min..=max).contains(&n) => {}
                _ => return Err(SqsError::invalid_attribute_value(format!("Invalid value for the parameter {k}."))),
            }
        } else if FIFO_ONLY.contains(&k) {
            if !fifo {
                if k == "DeduplicationScope" || k == "FifoThroughputLimit" {
                    return Err(SqsError::invalid_attribute_name(format!(
                        "You can specify the {k} only when FifoQueue is set to true."
                    )));
                }
                if !(creating && k == "FifoQueue" && !is_true(v)) {
                    return Err(SqsError::invalid_attribute_name(format!("Unknown Attribute {k}.")));
                }
            }
            let ok = match k {
                "FifoQueue" => {
                    if !creating {
                        return Err(SqsError::invalid_attribute_value(
                            "Invalid value for the parameter FifoQueue. Reason: Modifying queue type is not supported.",
                        ));
                    }
                    is_true(v) || v.eq_ignore_ascii_case("false")
                }
                "ContentBasedDeduplication" => is_true(v) || v.eq_ignore_ascii_case("false"),
                "DeduplicationScope" => v == "messageGroup" || v == "queue",
                _ => v == "perQueue" || v == "perMessageGroupId",
            };
            if !ok {
                return Err(SqsError::invalid_attribute_value(format!("Invalid value for the parameter {k}.")));
            }
        } else if k == "RedrivePolicy" {
            if !v.is_empty() {
                parse_redrive(v)?;
            }
        } else if k == "RedriveAllowPolicy" || k == "Policy" {
            if !v.is_empty() && serde_json::from_str::<serde_json::Value>(v).map(|j| !j.is_object()).unwrap_or(true) {
                return Err(SqsError::invalid_attribute_value(format!("Invalid value for the parameter {k}.")));
            }
        } else if k == "SqsManagedSseEnabled" {
            if !(is_true(v) || v.eq_ignore_ascii_case("false")) {
                return Err(SqsError::invalid_attribute_value(format!("Invalid value for the parameter {k}.")));
            }
        } else if !OTHER.contains(&k) {
            return Err(SqsError::invalid_attribute_name(format!("Unknown Attribute {k}.")));
        }
    }
    Ok(())
}

/// RedrivePolicy's `deadLetterTargetArn` and `maxReceiveCount`.
pub fn parse_redrive(v: &str) -> Result<(String, u32), SqsError> {
    let bad = |why: &str| {
        SqsError::invalid_attribute_value(format!("Value {v} for parameter RedrivePolicy is invalid. Reason: {why}"))
    };
    let j: serde_json::Value = serde_json::from_str(v).map_err(|_| bad("Redrive policy is not a valid JSON map."))?;
    let arn = j
        .get("deadLetterTargetArn")
        .and_then(|a| a.as_str())
        .ok_or_else(|| bad("Redrive policy does not contain mandatory attribute: deadLetterTargetArn."))?;
    let count = match j.get("maxReceiveCount") {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.parse::<u64>().ok(),
        None => return Err(bad("Redrive policy does not contain mandatory attribute: maxReceiveCount.")),
        _ => None,
    }
    .filter(|n| (1..=1000).contains(n))
    .ok_or_else(|| bad("Invalid value for maxReceiveCount: must be an integer from 1 to 1000."))?;
    Ok((arn.to_string(), count as u32))
}

/// AWS's MD5 of message attributes: per attribute in name order, the length-prefixed name,
/// data type, a transport byte (1 string, 2 binary) and the length-prefixed value.
pub fn md5_of_attributes(attrs: &BTreeMap<String, MessageAttributeValue>) -> Option<String> {
    if attrs.is_empty() {
        return None;
    }
    let mut buf = Vec::new();
    let put = |b: &[u8], buf: &mut Vec<u8>| {
        buf.extend_from_slice(&(b.len() as u32).to_be_bytes());
        buf.extend_from_slice(b);
    };
    for (name, v) in attrs {
        put(name.as_bytes(), &mut buf);
        put(v.data_type.as_bytes(), &mut buf);
        if let Some(b) = &v.binary_value {
            buf.push(2);
            put(b, &mut buf);
        } else {
            buf.push(1);
            put(v.string_value.as_deref().unwrap_or("").as_bytes(), &mut buf);
        }
    }
    Some(crate::aws::checksum::hex(&crate::aws::checksum::md5(&buf)))
}

pub fn md5_hex(s: &str) -> String {
    crate::aws::checksum::hex(&crate::aws::checksum::md5(s.as_bytes()))
}

impl Queue {
    pub fn new(meta: QueueMeta) -> Queue {
        let fifo = meta.name.ends_with(".fifo");
        let arn = format!(
            "arn:{}:sqs:{}:{}:{}",
            crate::aws::arn::partition_for_region(&meta.region),
            meta.region,
            meta.account,
            meta.name
        );
        Queue {
            meta,
            arn,
            fifo,
            messages: BTreeMap::new(),
            dedup: HashMap::new(),
            notify: Arc::new(tokio::sync::Notify::new()),
            last_purge_ms: None,
        }
    }

    /// The value of a settable attribute, explicit or default.
    pub fn attr(&self, name: &str) -> Option<String> {
        if let Some(v) = self.meta.attrs.get(name) {
            return Some(v.clone());
        }
        if let Some(&(_, d, ..)) = NUMERIC.iter().find(|(n, ..)| *n == name) {
            return Some(d.to_string());
        }
        match name {
            "SqsManagedSseEnabled" => Some("true".into()),
            "FifoQueue" if self.fifo => Some("true".into()),
            "ContentBasedDeduplication" if self.fifo => Some("false".into()),
            "DeduplicationScope" if self.fifo => Some("queue".into()),
            "FifoThroughputLimit" if self.fifo => Some("perQueue".into()),
            _ => None,
        }
    }

    pub fn num(&self, name: &str) -> u64 {
        self.attr(name).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
    }

    pub fn visibility_timeout(&self) -> u32 {
        self.num("VisibilityTimeout") as u32
    }

    pub fn content_based_dedup(&self) -> bool {
        self.attr("ContentBasedDeduplication").is_some_and(|v| is_true(&v))
    }

    pub fn redrive(&self) -> Option<(String, u32)> {
        self.meta.attrs.get("RedrivePolicy").filter(|v| !v.is_empty()).and_then(|v| parse_redrive(v).ok())
    }

    pub fn info(&self, base_url: &str) -> QueueInfo {
        QueueInfo {
            name: self.meta.name.clone(),
            url: self.url(base_url),
            arn: self.arn.clone(),
            visibility_timeout: self.visibility_timeout(),
            fifo: self.fifo,
            region: self.meta.region.clone(),
        }
    }

    pub fn url(&self, base_url: &str) -> String {
        format!("{}/{}/{}", base_url.trim_end_matches('/'), self.meta.account, self.meta.name)
    }

    /// (visible, in flight, delayed) counts.
    pub fn counts(&self, now: u64) -> (usize, usize, usize) {
        let (mut visible, mut inflight, mut delayed) = (0, 0, 0);
        for m in self.messages.values() {
            if m.visible_at <= now {
                visible += 1;
            } else if m.receipt.is_some() || m.receive_count > 0 {
                inflight += 1;
            } else {
                delayed += 1;
            }
        }
        (visible, inflight, delayed)
    }

    /// Every attribute GetQueueAttributes answers for `All`.
    pub fn all_attributes(&self, now: u64) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let (visible, inflight, delayed) = self.counts(now);
        out.insert("ApproximateNumberOfMessages".into(), visible.to_string());
        out.insert("ApproximateNumberOfMessagesNotVisible".into(), inflight.to_string());
        out.insert("ApproximateNumberOfMessagesDelayed".into(), delayed.to_string());
        out.insert("CreatedTimestamp".into(), self.meta.created.to_string());
        out.insert("LastModifiedTimestamp".into(), self.meta.modified.to_string());
        out.insert("QueueArn".into(), self.arn.clone());
        for &(n, ..) in NUMERIC {
            if n == "KmsDataKeyReusePeriodSeconds" && !self.meta.attrs.contains_key("KmsMasterKeyId") {
                continue;
            }
            out.insert(n.into(), self.attr(n).unwrap_or_default());
        }
        for n in OTHER.iter().chain(FIFO_ONLY) {
            if let Some(v) = self.attr(n).filter(|v| !v.is_empty()) {
                out.insert((*n).into(), v);
            }
        }
        out
    }

    /// Whether a sent message is a duplicate within the window: the earlier message's id and seq.
    pub fn duplicate(&mut self, dedup_id: &str, now: u64) -> Option<(String, u64)> {
        self.dedup.retain(|_, (exp, ..)| *exp > now);
        self.dedup.get(dedup_id).map(|(_, id, seq)| (id.clone(), *seq))
    }

    /// The dedup key, scoped by group when DeduplicationScope is messageGroup.
    pub fn dedup_key(&self, group: Option<&str>, dedup_id: &str) -> String {
        if self.attr("DeduplicationScope").as_deref() == Some("messageGroup") {
            format!("{}\u{0}{dedup_id}", group.unwrap_or(""))
        } else {
            dedup_id.to_string()
        }
    }

    pub fn remember_dedup(&mut self, msg: &Stored) {
        if let Some(d) = &msg.dedup_id {
            let key = self.dedup_key(msg.group.as_deref(), d);
            self.dedup.insert(key, (msg.sent_ms + DEDUP_WINDOW_MS, msg.id.clone(), msg.seq));
        }
    }

    /// Picks up to `max` visible messages for a receive, in send order; FIFO skips groups
    /// with a message in flight (or not yet visible). Messages past their retention are
    /// dropped (`expired`); those past the redrive policy's maxReceiveCount are listed in
    /// `to_dlq` instead of being delivered (when the dead-letter queue exists). Returns the seqs to deliver and the earliest time
    /// a not-yet-visible message becomes visible.
    pub fn pick(
        &self,
        now: u64,
        max: usize,
        dlq_exists: bool,
        expired: &mut Vec<u64>,
        to_dlq: &mut Vec<u64>,
    ) -> (Vec<u64>, Option<u64>) {
        let retention_ms = self.num("MessageRetentionPeriod") * 1000;
        // Without its dead-letter queue, a policy moves nothing (the message is delivered).
        let max_receives = self.redrive().map(|(_, n)| n).filter(|_| dlq_exists);
        let mut locked: HashSet<&str> = HashSet::new();
        let mut picked = Vec::new();
        let mut next_wake: Option<u64> = None;
        for (seq, m) in &self.messages {
            if m.sent_ms + retention_ms <= now {
                expired.push(*seq);
                continue;
            }
            let group = m.group.as_deref();
            if m.visible_at > now {
                if let (true, Some(g)) = (self.fifo, group) {
                    locked.insert(g);
                }
                next_wake = Some(next_wake.map_or(m.visible_at, |w| w.min(m.visible_at)));
                continue;
            }
            if let (true, Some(g)) = (self.fifo, group)
                && locked.contains(g)
            {
                continue;
            }
            if max_receives.is_some_and(|n| m.receive_count >= n) {
                to_dlq.push(*seq);
                continue;
            }
            picked.push(*seq);
            if picked.len() >= max {
                break;
            }
        }
        (picked, next_wake)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn queue(attrs: &[(&str, &str)]) -> Queue {
        Queue::new(QueueMeta {
            region: "us-east-1".into(),
            account: "000000000000".into(),
            name: "q".into(),
            created: 0,
            modified: 0,
            attrs: attrs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            tags: BTreeMap::new(),
        })
    }

    fn stored(seq: u64, sent_ms: u64) -> Stored {
        Stored {
            id: format!("id-{seq}"),
            seq,
            body: "b".into(),
            attrs: BTreeMap::new(),
            md5_body: md5_hex("b"),
            md5_attrs: None,
            trace_header: None,
            sent_ms,
            visible_at: sent_ms,
            receive_count: 0,
            first_receive_ms: 0,
            group: None,
            dedup_id: None,
            sender: "s".into(),
            dlq_source: None,
            receipt: None,
        }
    }

    #[test]
    fn messages_past_the_retention_period_expire() {
        // MessageRetentionPeriod 60 s: a message sent at 0 is delivered at 59.999 s and
        // dropped (never delivered) from 60 s on; a younger one is delivered.
        let mut q = queue(&[("MessageRetentionPeriod", "60")]);
        q.messages.insert(1, stored(1, 0));
        q.messages.insert(2, stored(2, 30_000));
        let (mut expired, mut to_dlq) = (Vec::new(), Vec::new());
        let (picked, _) = q.pick(59_999, 10, false, &mut expired, &mut to_dlq);
        assert_eq!((picked, expired.len()), (vec![1, 2], 0));
        let (picked, _) = q.pick(60_000, 10, false, &mut expired, &mut to_dlq);
        assert_eq!((picked, expired), (vec![2], vec![1]));
        assert!(to_dlq.is_empty());
    }

    #[test]
    fn redrive_lists_messages_past_max_receive_count_only_with_the_dlq() {
        let policy = r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:dlq","maxReceiveCount":2}"#;
        let mut q = queue(&[("RedrivePolicy", policy)]);
        let mut m = stored(1, 0);
        m.receive_count = 2;
        q.messages.insert(1, m);
        let (mut expired, mut to_dlq) = (Vec::new(), Vec::new());
        // Without its dead-letter queue the message is delivered again.
        let (picked, _) = q.pick(1_000, 10, false, &mut expired, &mut to_dlq);
        assert_eq!((picked, to_dlq.clone()), (vec![1], vec![]));
        let (picked, _) = q.pick(1_000, 10, true, &mut expired, &mut to_dlq);
        assert_eq!((picked, to_dlq), (vec![], vec![1]));
    }
}
