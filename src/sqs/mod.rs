//! Amazon SQS, embedded: queues, messages, visibility, FIFO, dead-letter queues and long
//! polling, persisted under `<data-dir>/sqs`. [`Sqs`] is the state and its operations (also
//! called in-process, by Lambda's event source mappings); [`api`] decodes and answers both
//! wire protocols (AWS JSON 1.0 and the query protocol).
//!
//! The state sits behind one `parking_lot` mutex: every section is a few map operations,
//! never held across an `.await`; the log's writer thread does the file I/O, and a caller
//! that must not answer before its change is on disk awaits the [`log::Ack`] after
//! releasing the lock.

pub mod api;
pub mod error;
mod log;
mod queue;
mod wire;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

pub use error::SqsError;
use log::{Ack, Log, Record};
use queue::{Queue, QueueMeta, Stored};

/// A queue, as other services see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueInfo {
    pub name: String,
    pub url: String,
    pub arn: String,
    pub visibility_timeout: u32,
    pub fifo: bool,
    pub region: String,
}

/// A received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub message_id: String,
    pub receipt_handle: String,
    pub body: String,
    pub md5_of_body: String,
    /// ApproximateReceiveCount, SentTimestamp, SenderId, ApproximateFirstReceiveTimestamp,
    /// and for FIFO MessageGroupId, MessageDeduplicationId, SequenceNumber.
    pub attributes: BTreeMap<String, String>,
    pub message_attributes: BTreeMap<String, MessageAttributeValue>,
    pub md5_of_message_attributes: Option<String>,
}

/// A message attribute's value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageAttributeValue {
    pub data_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub string_value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "b64")]
    pub binary_value: Option<Vec<u8>>,
}

mod b64 {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        s.map(|s| base64::engine::general_purpose::STANDARD.decode(s).map_err(serde::de::Error::custom)).transpose()
    }
}

/// What a send carries, validated.
#[derive(Debug, Clone, Default)]
pub struct Outgoing {
    pub body: String,
    pub delay_seconds: Option<u32>,
    pub attributes: BTreeMap<String, MessageAttributeValue>,
    pub trace_header: Option<String>,
    pub group_id: Option<String>,
    pub dedup_id: Option<String>,
}

/// A send's result.
#[derive(Debug, Clone)]
pub struct Sent {
    pub message_id: String,
    pub md5_of_body: String,
    pub md5_of_attributes: Option<String>,
    pub md5_of_system_attributes: Option<String>,
    pub sequence_number: Option<String>,
}

type Key = (String, String);

struct State {
    queues: HashMap<Key, Queue>,
    /// The next message sequence number (global, so FIFO numbers only grow).
    next_seq: u64,
}

pub struct Sqs {
    state: Arc<Mutex<State>>,
    log: Log,
    pub account: String,
    pub default_region: String,
    /// `http://host:port` of the server, for [`QueueInfo::url`].
    pub base_url: String,
    dir: PathBuf,
    /// Receives waiting in a long poll now (for the health endpoint).
    waiting: std::sync::atomic::AtomicUsize,
}

/// Counts a long poll while it waits.
struct Waiting<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

fn now_ms() -> u64 {
    crate::aws::epoch_ms()
}

/// A receipt handle: the queue's ARN, the message's seq and a nonce, base64-encoded.
fn make_receipt(arn: &str, seq: u64) -> String {
    let raw = format!("{seq} {} {arn}", uuid::Uuid::new_v4().simple());
    base64::engine::general_purpose::STANDARD.encode(raw)
}

/// The (queue ARN, seq) a receipt handle names, if it is one of ours.
fn parse_receipt(handle: &str) -> Option<(String, u64)> {
    let raw = base64::engine::general_purpose::STANDARD.decode(handle).ok()?;
    let raw = String::from_utf8(raw).ok()?;
    let mut it = raw.splitn(3, ' ');
    let seq = it.next()?.parse().ok()?;
    let _nonce = it.next()?;
    Some((it.next()?.to_string(), seq))
}

/// (region, name) of a queue ARN.
fn key_of_arn(arn: &str) -> Option<Key> {
    let mut p = arn.split(':');
    let (_, _, service, region, _account, name) = (p.next()?, p.next()?, p.next()?, p.next()?, p.next()?, p.next()?);
    (service == "sqs" && p.next().is_none()).then(|| (region.to_string(), name.to_string()))
}

impl Sqs {
    /// Opens (or creates) the SQS state in `dir`: replays the log, then compacts it. The
    /// log is compacted again whenever it grows past 64 MiB and twice its size after the
    /// last compaction.
    pub fn open(dir: PathBuf, account: &str, region: &str, base_url: &str) -> std::io::Result<Sqs> {
        Sqs::open_with(dir, account, region, base_url, 64 * 1024 * 1024)
    }

    /// [`Sqs::open`] with the log size that starts a compaction.
    pub fn open_with(
        dir: PathBuf,
        account: &str,
        region: &str,
        base_url: &str,
        compact_at: u64,
    ) -> std::io::Result<Sqs> {
        std::fs::create_dir_all(&dir)?;
        let mut replayed = log::Replayed::default();
        for r in log::replay(&dir)? {
            replayed.apply(r);
        }
        let mut queues = HashMap::new();
        let mut next_seq = 1;
        let now = now_ms();
        for (key, (meta, messages)) in replayed.queues {
            let mut q = Queue::new(meta);
            for (seq, mut m) in messages {
                next_seq = next_seq.max(seq + 1);
                // A message in flight at the stop is visible again (its receipt is gone).
                if m.receive_count > 0 {
                    m.visible_at = m.visible_at.min(now);
                }
                if now < m.sent_ms + queue::DEDUP_WINDOW_MS {
                    q.remember_dedup(&m);
                }
                q.messages.insert(seq, m);
            }
            queues.insert(key, q);
        }
        let state = State { queues, next_seq };
        log::rewrite(&dir, &live_records(&state))?;
        let state = Arc::new(Mutex::new(state));
        let weak = Arc::downgrade(&state);
        // Called by the writer thread; it takes the state lock before the log's own (the
        // order every appender uses), so the snapshot and the records queued agree.
        let snapshot: log::Snapshot = Box::new(move |take_pending: &mut dyn FnMut()| {
            let state = weak.upgrade()?;
            let st = state.lock();
            take_pending();
            Some(live_records(&st))
        });
        let log = Log::start(&dir, compact_at, snapshot)?;
        Ok(Sqs {
            state,
            log,
            account: account.to_string(),
            default_region: region.to_string(),
            base_url: base_url.to_string(),
            dir,
            waiting: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    /// Flushes the log and stops its writer.
    pub fn shutdown(&self) {
        self.log.shutdown();
    }

    async fn durable(ack: Option<Ack>) -> Result<(), SqsError> {
        match ack {
            None => Ok(()),
            Some(rx) => match rx.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(SqsError::internal(format!("cannot persist the change: {e}"))),
                Err(_) => Err(SqsError::internal("the SQS log writer stopped")),
            },
        }
    }

    // ---- the in-process API (event source mappings) ----

    pub fn queue_by_arn(&self, arn: &str) -> Option<QueueInfo> {
        let key = key_of_arn(arn)?;
        self.state.lock().queues.get(&key).map(|q| q.info(&self.base_url))
    }

    /// Receives up to `max` messages (1..=10 on the wire; any here), waiting up to `wait`
    /// for the first. Every system and message attribute is included.
    pub async fn receive(
        &self,
        arn: &str,
        max: usize,
        wait: Duration,
        visibility_timeout: Option<u32>,
    ) -> Result<Vec<Message>, SqsError> {
        let key = key_of_arn(arn).ok_or_else(SqsError::non_existent_queue)?;
        self.receive_key(&key, max.max(1), wait, visibility_timeout).await
    }

    /// Deletes a received message. The change is queued to the log and written within
    /// milliseconds, without waiting for the fsync (the wire's DeleteMessage waits).
    pub fn delete(&self, arn: &str, receipt_handle: &str) -> Result<(), SqsError> {
        let key = key_of_arn(arn).ok_or_else(SqsError::non_existent_queue)?;
        self.delete_key(&key, receipt_handle).map(|_| ())
    }

    pub fn change_visibility(&self, arn: &str, receipt_handle: &str, timeout_secs: u32) -> Result<(), SqsError> {
        let key = key_of_arn(arn).ok_or_else(SqsError::non_existent_queue)?;
        self.change_visibility_key(&key, receipt_handle, timeout_secs)
    }

    /// Sends a message to the queue with this ARN (in-process; awaits durability).
    pub async fn send(&self, arn: &str, msg: Outgoing) -> Result<Sent, SqsError> {
        let key = key_of_arn(arn).ok_or_else(SqsError::non_existent_queue)?;
        let (sent, ack) = self.send_key(&key, msg, "AIDAIT2UOQQY3AUEKVGXU")?;
        Self::durable(ack).await?;
        Ok(sent)
    }

    // ---- queue operations (keyed by (region, name)) ----

    fn with_queue<T>(&self, key: &Key, f: impl FnOnce(&mut Queue) -> Result<T, SqsError>) -> Result<T, SqsError> {
        let mut st = self.state.lock();
        let q = st.queues.get_mut(key).ok_or_else(SqsError::non_existent_queue)?;
        f(q)
    }

    pub fn exists(&self, key: &Key) -> bool {
        self.state.lock().queues.contains_key(key)
    }

    /// CreateQueue: idempotent when the attributes given equal the queue's.
    async fn create_queue(
        &self,
        region: &str,
        name: &str,
        attrs: BTreeMap<String, String>,
        tags: BTreeMap<String, String>,
    ) -> Result<(), SqsError> {
        let fifo = attrs.get("FifoQueue").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        queue::validate_name(name, fifo)?;
        queue::validate_attributes(&attrs, fifo, true)?;
        let key = (region.to_string(), name.to_string());
        let ack = {
            let mut st = self.state.lock();
            if let Some(q) = st.queues.get(&key) {
                for (k, v) in &attrs {
                    if q.attr(k).as_deref() != Some(v.as_str()) {
                        return Err(SqsError::queue_exists(k));
                    }
                }
                return Ok(());
            }
            let now = now_ms() / 1000;
            let mut attrs = attrs;
            attrs.remove("FifoQueue");
            let meta = QueueMeta {
                region: region.to_string(),
                account: self.account.clone(),
                name: name.to_string(),
                created: now,
                modified: now,
                attrs,
                tags,
            };
            let ack = self.log.append(&[Record::Queue { meta: meta.clone() }], true);
            st.queues.insert(key, Queue::new(meta));
            ack
        };
        Self::durable(ack).await
    }

    async fn delete_queue(&self, key: &Key) -> Result<(), SqsError> {
        let ack = {
            let mut st = self.state.lock();
            let q = st.queues.remove(key).ok_or_else(SqsError::non_existent_queue)?;
            q.notify.notify_waiters();
            self.log.append(&[Record::DropQueue { region: key.0.clone(), name: key.1.clone() }], true)
        };
        Self::durable(ack).await
    }

    /// Changes a queue's description (attributes, tags) and persists it.
    async fn update_meta(&self, key: &Key, f: impl FnOnce(&mut Queue) -> Result<(), SqsError>) -> Result<(), SqsError> {
        let ack = self.with_queue(key, |q| {
            f(q)?;
            q.meta.modified = now_ms() / 1000;
            // A shorter delay or visibility may make messages visible sooner.
            q.notify.notify_waiters();
            Ok(self.log.append(&[Record::Queue { meta: q.meta.clone() }], true))
        })?;
        Self::durable(ack).await
    }

    fn list_queues(&self, region: &str, prefix: &str) -> Vec<(String, String)> {
        let st = self.state.lock();
        let mut names: Vec<(String, String)> = st
            .queues
            .iter()
            .filter(|((r, n), _)| r == region && n.starts_with(prefix))
            .map(|((_, n), q)| (n.clone(), q.meta.account.clone()))
            .collect();
        names.sort();
        names
    }

    /// Validates and stores one message. Returns the result and the log ack to await.
    fn send_key(&self, key: &Key, msg: Outgoing, sender: &str) -> Result<(Sent, Option<Ack>), SqsError> {
        let mut st = self.state.lock();
        let seq = st.next_seq;
        let q = st.queues.get_mut(key).ok_or_else(SqsError::non_existent_queue)?;
        let size = msg.body.len()
            + msg
                .attributes
                .iter()
                .map(|(k, v)| {
                    k.len()
                        + v.data_type.len()
                        + v.string_value.as_ref().map_or(0, |s| s.len())
                        + v.binary_value.as_ref().map_or(0, |b| b.len())
                })
                .sum::<usize>();
        let max_size = q.num("MaximumMessageSize");
        if size as u64 > max_size {
            return Err(SqsError::message_too_long(max_size));
        }
        let now = now_ms();
        let (group, dedup_id) = if q.fifo {
            if msg.delay_seconds.is_some_and(|d| d > 0) {
                return Err(SqsError::invalid_value(
                    msg.delay_seconds.unwrap_or(0),
                    "DelaySeconds",
                    "The request include parameter that is not valid for this queue type.",
                ));
            }
            let group = msg.group_id.clone().ok_or_else(|| SqsError::missing_parameter("MessageGroupId"))?;
            let dedup = match msg.dedup_id.clone() {
                Some(d) => d,
                None if q.content_based_dedup() => {
                    crate::aws::checksum::hex(&crate::aws::checksum::sha256(msg.body.as_bytes()))
                }
                None => {
                    return Err(SqsError::invalid_parameter(
                        "The queue should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly",
                    ));
                }
            };
            (Some(group), Some(dedup))
        } else {
            if let Some(d) = &msg.dedup_id {
                return Err(SqsError::invalid_value(
                    d,
                    "MessageDeduplicationId",
                    "The request includes a parameter that is not valid for this queue type.",
                ));
            }
            (msg.group_id.clone(), None)
        };
        let md5_body = queue::md5_hex(&msg.body);
        let md5_attrs = queue::md5_of_attributes(&msg.attributes);
        let md5_sys = msg.trace_header.as_ref().map(|t| {
            let mut m = BTreeMap::new();
            m.insert(
                "AWSTraceHeader".to_string(),
                MessageAttributeValue { data_type: "String".into(), string_value: Some(t.clone()), binary_value: None },
            );
            queue::md5_of_attributes(&m).unwrap_or_default()
        });
        if let Some(d) = &dedup_id {
            let dkey = q.dedup_key(group.as_deref(), d);
            if let Some((id, seq)) = q.duplicate(&dkey, now) {
                return Ok((
                    Sent {
                        message_id: id,
                        md5_of_body: md5_body,
                        md5_of_attributes: md5_attrs,
                        md5_of_system_attributes: md5_sys,
                        sequence_number: Some(format!("{seq:020}")),
                    },
                    None,
                ));
            }
        }
        // A FIFO queue has no per-message delay (0 is accepted and the queue's delay applies).
        let queue_delay = q.num("DelaySeconds");
        let delay = if q.fifo { queue_delay } else { msg.delay_seconds.map_or(queue_delay, u64::from) };
        let stored = Stored {
            id: uuid::Uuid::new_v4().to_string(),
            seq,
            body: msg.body,
            attrs: msg.attributes,
            md5_body: md5_body.clone(),
            md5_attrs: md5_attrs.clone(),
            trace_header: msg.trace_header,
            sent_ms: now,
            visible_at: now + delay * 1000,
            receive_count: 0,
            first_receive_ms: 0,
            group,
            dedup_id,
            sender: sender.to_string(),
            dlq_source: None,
            receipt: None,
        };
        let fifo = q.fifo;
        q.remember_dedup(&stored);
        let sent = Sent {
            message_id: stored.id.clone(),
            md5_of_body: md5_body,
            md5_of_attributes: md5_attrs,
            md5_of_system_attributes: md5_sys,
            sequence_number: fifo.then(|| format!("{seq:020}")),
        };
        let ack = self.log.append(
            &[Record::Send { region: key.0.clone(), name: key.1.clone(), msg: Box::new(stored.clone()) }],
            true,
        );
        q.messages.insert(seq, stored);
        if delay == 0 {
            q.notify.notify_waiters();
        }
        st.next_seq += 1;
        Ok((sent, ack))
    }

    /// One receive pass under the lock: the messages delivered (possibly none), the log ack
    /// to await before answering, and the earliest moment a message becomes visible.
    #[allow(clippy::type_complexity)]
    fn try_receive(
        &self,
        key: &Key,
        max: usize,
        visibility_timeout: Option<u32>,
    ) -> Result<(Vec<Message>, Option<Ack>, Option<u64>), SqsError> {
        let mut guard = self.state.lock();
        let st = &mut *guard;
        let now = now_ms();
        let dlq_exists = st
            .queues
            .get(key)
            .and_then(Queue::redrive)
            .and_then(|(arn, _)| key_of_arn(&arn))
            .is_some_and(|k| st.queues.contains_key(&k));
        let q = st.queues.get_mut(key).ok_or_else(SqsError::non_existent_queue)?;
        let (mut expired, mut to_dlq) = (Vec::new(), Vec::new());
        let (picked, next_wake) = q.pick(now, max, dlq_exists, &mut expired, &mut to_dlq);
        let mut records = Vec::new();
        for seq in &expired {
            q.messages.remove(seq);
            records.push(Record::Delete { region: key.0.clone(), name: key.1.clone(), seq: *seq });
        }
        let vt = u64::from(visibility_timeout.unwrap_or_else(|| q.visibility_timeout()));
        let mut out = Vec::with_capacity(picked.len());
        let (arn, fifo) = (q.arn.clone(), q.fifo);
        for seq in picked {
            let Some(m) = q.messages.get_mut(&seq) else { continue };
            m.receive_count += 1;
            if m.first_receive_ms == 0 {
                m.first_receive_ms = now;
            }
            m.visible_at = now + vt * 1000;
            let receipt = make_receipt(&arn, seq);
            m.receipt = Some(receipt.clone());
            records.push(Record::Receive {
                region: key.0.clone(),
                name: key.1.clone(),
                seq,
                count: m.receive_count,
                first: m.first_receive_ms,
            });
            out.push(to_message(m, receipt, fifo));
        }
        // Messages past maxReceiveCount move to the dead-letter queue (when it exists).
        let mut durable = false;
        if !to_dlq.is_empty()
            && let Some((target_arn, _)) = q.redrive()
            && let Some(target) = key_of_arn(&target_arn).filter(|t| st.queues.contains_key(t))
        {
            let source_arn = arn.clone();
            let moved: Vec<Stored> = {
                let Some(q) = st.queues.get_mut(key) else { return Err(SqsError::non_existent_queue()) };
                to_dlq.iter().filter_map(|s| q.messages.remove(s)).collect()
            };
            let mut next_seq = st.next_seq;
            if let Some(dlq) = st.queues.get_mut(&target) {
                for mut m in moved {
                    records.push(Record::Delete { region: key.0.clone(), name: key.1.clone(), seq: m.seq });
                    m.seq = next_seq;
                    next_seq += 1;
                    // The receive count and first receive carry over (AWS's DLQ answers them).
                    m.visible_at = now;
                    m.receipt = None;
                    m.dlq_source = Some(source_arn.clone());
                    if !dlq.fifo {
                        m.group = m.group.filter(|_| false);
                        m.dedup_id = None;
                    }
                    records.push(Record::Send {
                        region: target.0.clone(),
                        name: target.1.clone(),
                        msg: Box::new(m.clone()),
                    });
                    dlq.messages.insert(m.seq, m);
                }
                dlq.notify.notify_waiters();
                durable = true;
            }
            st.next_seq = next_seq;
        }
        // A receive answers once its counts are written; a move to the DLQ once it is fsynced.
        let ack = if durable { self.log.append(&records, true) } else { self.log.append_written(&records) };
        Ok((out, ack, next_wake))
    }

    async fn receive_key(
        &self,
        key: &Key,
        max: usize,
        wait: Duration,
        visibility_timeout: Option<u32>,
    ) -> Result<Vec<Message>, SqsError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before the pass, so a send between the pass and the wait is not missed.
            let notify = self.with_queue(key, |q| Ok(q.notify.clone()))?;
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (msgs, ack, next_wake) = self.try_receive(key, max, visibility_timeout)?;
            Self::durable(ack).await?;
            if !msgs.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(msgs);
            }
            let mut until = deadline;
            if let Some(w) = next_wake {
                let in_ms = w.saturating_sub(now_ms());
                until = until.min(tokio::time::Instant::now() + Duration::from_millis(in_ms));
            }
            self.waiting.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let _counted = Waiting(&self.waiting);
            let _ = tokio::time::timeout_at(until, notified).await;
        }
    }

    /// Deletes by receipt handle. Returns the log ack to await.
    fn delete_key(&self, key: &Key, handle: &str) -> Result<Option<Ack>, SqsError> {
        self.with_queue(key, |q| {
            let (arn, seq) = parse_receipt(handle)
                .filter(|(arn, _)| *arn == q.arn)
                .ok_or_else(|| SqsError::receipt_handle_invalid(handle))?;
            let _ = arn;
            let now = now_ms();
            match q.messages.get(&seq) {
                None => Ok(None),
                Some(m) => {
                    if q.fifo && (m.receipt.as_deref() != Some(handle) || m.visible_at <= now) {
                        return Err(SqsError::receipt_handle_expired(handle));
                    }
                    let group_freed = q.fifo;
                    q.messages.remove(&seq);
                    if group_freed {
                        q.notify.notify_waiters();
                    }
                    Ok(self.log.append(&[Record::Delete { region: key.0.clone(), name: key.1.clone(), seq }], true))
                }
            }
        })
    }

    fn change_visibility_key(&self, key: &Key, handle: &str, timeout: u32) -> Result<(), SqsError> {
        if timeout > 43_200 {
            return Err(SqsError::invalid_value(
                timeout,
                "VisibilityTimeout",
                "Must be between 0 and 43200, if provided.",
            ));
        }
        self.with_queue(key, |q| {
            let (_, seq) = parse_receipt(handle)
                .filter(|(arn, _)| *arn == q.arn)
                .ok_or_else(|| SqsError::receipt_handle_invalid(handle))?;
            let now = now_ms();
            let m = q.messages.get_mut(&seq).ok_or_else(|| SqsError::message_not_available(handle))?;
            // A handle whose visibility timeout has run out is accepted and changes nothing
            // (AWS answers 200; the message stays visible).
            if m.receipt.is_none() || m.visible_at <= now {
                return Ok(());
            }
            m.visible_at = now + u64::from(timeout) * 1000;
            if timeout == 0 {
                q.notify.notify_waiters();
            }
            Ok(())
        })
    }

    async fn purge(&self, key: &Key) -> Result<(), SqsError> {
        let ack = self.with_queue(key, |q| {
            let now = now_ms();
            if q.last_purge_ms.is_some_and(|t| now < t + 60_000) {
                return Err(SqsError::purge_in_progress(&q.meta.name));
            }
            q.last_purge_ms = Some(now);
            let upto = q.messages.keys().next_back().copied().unwrap_or(0);
            q.messages.clear();
            Ok(self.log.append(&[Record::Purge { region: key.0.clone(), name: key.1.clone(), upto }], true))
        })?;
        Self::durable(ack).await
    }

    fn attributes(&self, key: &Key) -> Result<BTreeMap<String, String>, SqsError> {
        self.with_queue(key, |q| Ok(q.all_attributes(now_ms())))
    }

    fn tags(&self, key: &Key) -> Result<BTreeMap<String, String>, SqsError> {
        self.with_queue(key, |q| Ok(q.meta.tags.clone()))
    }

    /// Queues whose RedrivePolicy names `arn` as their dead-letter queue.
    fn dead_letter_sources(&self, region: &str, arn: &str) -> Vec<(String, String)> {
        let st = self.state.lock();
        let mut out: Vec<(String, String)> = st
            .queues
            .iter()
            .filter(|((r, _), q)| r == region && q.redrive().is_some_and(|(t, _)| t == arn))
            .map(|((_, n), q)| (n.clone(), q.meta.account.clone()))
            .collect();
        out.sort();
        out
    }

    fn arn_of(&self, key: &Key) -> Result<String, SqsError> {
        self.with_queue(key, |q| Ok(q.arn.clone()))
    }

    /// Queues, messages and waiting long polls, for the health endpoint.
    pub fn health(&self) -> serde_json::Value {
        let st = self.state.lock();
        let messages: usize = st.queues.values().map(|q| q.messages.len()).sum();
        serde_json::json!({
            "queues": st.queues.len(),
            "messages": messages,
            "waiting_receives": self.waiting.load(std::sync::atomic::Ordering::Relaxed),
        })
    }
}

/// The records that rebuild `st`: each queue's description, then its messages.
fn live_records(st: &State) -> Vec<Record> {
    let mut keys: Vec<&Key> = st.queues.keys().collect();
    keys.sort();
    let mut out = Vec::new();
    for key in keys {
        let Some(q) = st.queues.get(key) else { continue };
        out.push(Record::Queue { meta: q.meta.clone() });
        for m in q.messages.values() {
            out.push(Record::Send { region: key.0.clone(), name: key.1.clone(), msg: Box::new(m.clone()) });
        }
    }
    out
}

fn to_message(m: &Stored, receipt: String, fifo: bool) -> Message {
    let mut a = BTreeMap::new();
    a.insert("ApproximateReceiveCount".to_string(), m.receive_count.to_string());
    a.insert("SentTimestamp".to_string(), m.sent_ms.to_string());
    a.insert("SenderId".to_string(), m.sender.clone());
    a.insert("ApproximateFirstReceiveTimestamp".to_string(), m.first_receive_ms.to_string());
    if let Some(t) = &m.trace_header {
        a.insert("AWSTraceHeader".to_string(), t.clone());
    }
    if let Some(s) = &m.dlq_source {
        a.insert("DeadLetterQueueSourceArn".to_string(), s.clone());
    }
    // A standard queue keeps a sender's MessageGroupId too (fair queues), without ordering.
    if let Some(g) = &m.group {
        a.insert("MessageGroupId".to_string(), g.clone());
    }
    if fifo {
        if let Some(d) = &m.dedup_id {
            a.insert("MessageDeduplicationId".to_string(), d.clone());
        }
        a.insert("SequenceNumber".to_string(), format!("{:020}", m.seq));
    }
    Message {
        message_id: m.id.clone(),
        receipt_handle: receipt,
        body: m.body.clone(),
        md5_of_body: m.md5_body.clone(),
        attributes: a,
        message_attributes: m.attrs.clone(),
        md5_of_message_attributes: m.md5_attrs.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_of_attributes_matches_aws() {
        // Recorded by LocalStack against AWS: Foo=String "Bar".
        let mut m = BTreeMap::new();
        m.insert(
            "Foo".to_string(),
            MessageAttributeValue { data_type: "String".into(), string_value: Some("Bar".into()), binary_value: None },
        );
        assert_eq!(queue::md5_of_attributes(&m).as_deref(), Some("ae7155c6026991b6d54b11589678bf9c"));
        assert_eq!(queue::md5_hex("msg"), "6e2baaf3b97dbeef01c0043275f9a0e7");
        // AWS's md5OfMessageAttributes in an SQS event LocalStack recorded against AWS
        // (tests/aws/services/lambda_/event_source_mapping/test_lambda_integration_sqs.snapshot.json,
        // test_message_body_and_attributes_passed_correctly).
        let s = |t: &str, v: &str| MessageAttributeValue {
            data_type: t.into(),
            string_value: Some(v.into()),
            binary_value: None,
        };
        let mut m = BTreeMap::new();
        m.insert("Title".to_string(), s("String", "The Whistler"));
        m.insert("Author".to_string(), s("String", "John Grisham"));
        m.insert("WeeksOn".to_string(), s("Number", "6"));
        assert_eq!(queue::md5_of_attributes(&m).as_deref(), Some("d25a6aea97eb8f585bfa92d314504a92"));
    }

    #[test]
    fn receipts_round_trip() {
        let r = make_receipt("arn:aws:sqs:us-east-1:000000000000:q", 42);
        assert_eq!(parse_receipt(&r), Some(("arn:aws:sqs:us-east-1:000000000000:q".to_string(), 42)));
        assert_eq!(parse_receipt("garbage"), None);
        assert_eq!(key_of_arn("arn:aws:sqs:eu-west-1:1:q.fifo"), Some(("eu-west-1".into(), "q.fifo".into())));
        assert_eq!(key_of_arn("arn:aws:sns:eu-west-1:1:q"), None);
    }
}

#[cfg(test)]
mod durability_tests {
    use super::*;

    fn temp_dir() -> PathBuf {
        std::env::temp_dir().join(format!("ruststack-sqs-{}", uuid::Uuid::new_v4().simple()))
    }

    fn log_len(dir: &Path) -> u64 {
        std::fs::metadata(log::log_path(dir)).map(|m| m.len()).unwrap_or(0)
    }

    #[tokio::test]
    async fn compaction_keeps_the_live_state() {
        let dir = temp_dir();
        let arn = "arn:aws:sqs:us-east-1:000000000000:q";
        {
            let sqs = Sqs::open_with(dir.clone(), "000000000000", "us-east-1", "http://h", 4096).unwrap();
            sqs.create_queue("us-east-1", "q", BTreeMap::new(), BTreeMap::new()).await.unwrap();
            // Churn: each message sent, received and deleted; the live state stays small.
            for i in 0..300 {
                sqs.send(arn, Outgoing { body: format!("churn {i} {}", "x".repeat(100)), ..Default::default() })
                    .await
                    .unwrap();
                for m in sqs.receive(arn, 10, Duration::ZERO, Some(600)).await.unwrap() {
                    sqs.delete(arn, &m.receipt_handle).unwrap();
                }
            }
            for i in 0..5 {
                sqs.send(arn, Outgoing { body: format!("keep {i}"), ..Default::default() }).await.unwrap();
            }
            // Without compaction the log would hold 300 sends, receives and deletes (> 100 KB).
            assert!(log_len(&dir) < 20_000, "the log was compacted: {} bytes", log_len(&dir));
            sqs.shutdown();
        }
        let sqs = Sqs::open_with(dir.clone(), "000000000000", "us-east-1", "http://h", 4096).unwrap();
        let mut bodies: Vec<String> =
            sqs.receive(arn, 100, Duration::ZERO, None).await.unwrap().into_iter().map(|m| m.body).collect();
        bodies.sort();
        assert_eq!(bodies, ["keep 0", "keep 1", "keep 2", "keep 3", "keep 4"]);
        assert_eq!(sqs.queue_by_arn(arn).map(|q| q.visibility_timeout), Some(30));
        sqs.shutdown();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
