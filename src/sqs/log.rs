//! SQS's durability: an append-only log of JSON lines under `<data-dir>/sqs/`, written by
//! one writer thread that commits in groups (one write and one fsync for every record
//! queued meanwhile) and answers each waiting sender after the fsync. Replayed at start,
//! then compacted into a fresh log holding only the live state.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};
use serde::{Deserialize, Serialize};

use super::queue::{QueueMeta, Stored};

/// One change to the SQS state.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Record {
    /// A queue created, or its attributes or tags changed (the whole description).
    Queue {
        meta: QueueMeta,
    },
    DropQueue {
        region: String,
        name: String,
    },
    Send {
        region: String,
        name: String,
        msg: Box<Stored>,
    },
    Delete {
        region: String,
        name: String,
        seq: u64,
    },
    /// A receive: the message's new receive count (written before the answer, not fsynced:
    /// it survives kill -9, and a loss on power failure only lowers a count).
    Receive {
        region: String,
        name: String,
        seq: u64,
        count: u32,
        first: u64,
    },
    /// Every message with `seq <= upto` removed.
    Purge {
        region: String,
        name: String,
        upto: u64,
    },
}

/// The writer's mailbox.
#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    acks: Vec<tokio::sync::oneshot::Sender<Result<(), String>>>,
    /// Some record queued needs an fsync before its ack.
    sync: bool,
    shutdown: bool,
}

struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
}

/// The log's write side. Appending only queues bytes (cheap, done under the state lock, so
/// the log's order is the state's order); the writer thread does the I/O.
pub struct Log {
    shared: Arc<Shared>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Takes a consistent snapshot for a compaction: called with a function that empties the
/// writer's mailbox (whose records the snapshot already holds), it returns the live records.
pub type Snapshot = Box<dyn Fn(&mut dyn FnMut()) -> Option<Vec<Record>> + Send>;

/// Awaited by a caller that must not answer before its records are on disk.
pub type Ack = tokio::sync::oneshot::Receiver<Result<(), String>>;

pub fn log_path(dir: &Path) -> PathBuf {
    dir.join("log.jsonl")
}

/// Reads every record of the log; a torn last line (a write cut by kill -9) is skipped.
pub fn replay(dir: &Path) -> std::io::Result<Vec<Record>> {
    let f = match File::open(log_path(dir)) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(f).split(b'\n').enumerate() {
        let line = line?;
        if line.is_empty() {
            continue;
        }
        match serde_json::from_slice::<Record>(&line) {
            Ok(r) => out.push(r),
            Err(e) => tracing::warn!(line = i + 1, error = %e, "sqs log: skipping an unreadable record"),
        }
    }
    Ok(out)
}

/// Writes `records` as the whole new log (temp file, fsync, rename, fsync of the directory).
pub fn rewrite(dir: &Path, records: &[Record]) -> std::io::Result<()> {
    let mut bytes = Vec::new();
    for r in records {
        encode(r, &mut bytes);
    }
    crate::aws::fs::write_atomic(&log_path(dir), &bytes)?;
    File::open(dir)?.sync_all()
}

fn encode(r: &Record, out: &mut Vec<u8>) {
    // A Record is plain data with string keys: serialization cannot fail.
    if serde_json::to_writer(&mut *out, r).is_ok() {
        out.push(b'\n');
    }
}

impl Log {
    /// Starts the writer on the log in `dir` (opened for appending).
    /// It compacts the log once it exceeds `compact_at` bytes and twice its size after the
    /// last compaction.
    pub fn start(dir: &Path, compact_at: u64, snapshot: Snapshot) -> std::io::Result<Log> {
        let file = OpenOptions::new().create(true).append(true).open(log_path(dir))?;
        let shared = Arc::new(Shared { pending: Mutex::new(Pending::default()), wake: Condvar::new() });
        let s = shared.clone();
        let writer =
            Writer { len: file.metadata()?.len(), base: 0, file, dir: dir.to_path_buf(), compact_at, snapshot };
        let thread = std::thread::Builder::new().name("sqs-log".into()).spawn(move || writer.run(s))?;
        Ok(Log { shared, thread: Mutex::new(Some(thread)) })
    }

    /// Queues records; with `durable`, returns an [`Ack`] answered once they are fsynced.
    pub fn append(&self, records: &[Record], durable: bool) -> Option<Ack> {
        self.queue(records, durable.then_some(true))
    }

    /// Queues records and returns an [`Ack`] answered once they are written (in the page
    /// cache: they survive kill -9, not a power failure), without forcing an fsync.
    pub fn append_written(&self, records: &[Record]) -> Option<Ack> {
        self.queue(records, Some(false))
    }

    /// `ack`: None, Some(false) after the write, Some(true) after the fsync.
    fn queue(&self, records: &[Record], ack: Option<bool>) -> Option<Ack> {
        if records.is_empty() {
            return None;
        }
        let mut p = self.shared.pending.lock();
        for r in records {
            encode(r, &mut p.bytes);
        }
        let ack = ack.map(|sync| {
            let (tx, rx) = tokio::sync::oneshot::channel();
            p.acks.push(tx);
            p.sync |= sync;
            rx
        });
        drop(p);
        self.shared.wake.notify_one();
        ack
    }

    /// Flushes what is queued and stops the writer.
    pub fn shutdown(&self) {
        self.shared.pending.lock().shutdown = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Writer {
    file: File,
    dir: PathBuf,
    /// The log's length now, and after the last compaction.
    len: u64,
    base: u64,
    compact_at: u64,
    snapshot: Snapshot,
}

impl Writer {
    fn run(mut self, shared: Arc<Shared>) {
        self.base = self.len;
        loop {
            let (bytes, acks, sync, shutdown) = {
                let mut p = shared.pending.lock();
                while p.bytes.is_empty() && !p.shutdown {
                    shared.wake.wait(&mut p);
                }
                let sync = std::mem::take(&mut p.sync);
                (std::mem::take(&mut p.bytes), std::mem::take(&mut p.acks), sync, p.shutdown)
            };
            let mut result = if bytes.is_empty() { Ok(()) } else { self.file.write_all(&bytes) };
            self.len += bytes.len() as u64;
            if result.is_ok() && (sync || shutdown) {
                result = self.file.sync_data();
            }
            if let Err(e) = &result {
                tracing::error!(error = %e, "sqs log: cannot write; the records are not durable");
            }
            for a in acks {
                let _ = a.send(result.as_ref().map(|_| ()).map_err(|e| e.to_string()));
            }
            if shutdown {
                return;
            }
            if self.len > self.compact_at && self.len > 2 * self.base {
                self.compact(&shared);
            }
        }
    }

    /// Replaces the log by the live state. Records queued meanwhile are in the snapshot;
    /// their senders are answered once the new log is on disk.
    fn compact(&mut self, shared: &Shared) {
        let (mut acks, mut queued) = (Vec::new(), Vec::new());
        let Some(records) = (self.snapshot)(&mut || {
            let mut p = shared.pending.lock();
            queued = std::mem::take(&mut p.bytes);
            p.sync = false;
            acks = std::mem::take(&mut p.acks);
        }) else {
            return;
        };
        let result = rewrite(&self.dir, &records).and_then(|()| {
            let file = OpenOptions::new().append(true).open(log_path(&self.dir))?;
            let len = file.metadata()?.len();
            Ok((file, len))
        });
        let answer = match result {
            Ok((file, len)) => {
                tracing::info!(from = self.len, to = len, "sqs log compacted");
                self.file = file;
                self.len = len;
                self.base = len;
                Ok(())
            }
            Err(e) => {
                // The old log is intact (the rewrite is atomic): append what was queued to it.
                tracing::error!(error = %e, "sqs log: compaction failed");
                self.len += queued.len() as u64;
                self.base = self.len;
                self.file.write_all(&queued).and_then(|()| self.file.sync_data()).map_err(|e| e.to_string())
            }
        };
        for a in acks {
            let _ = a.send(answer.clone());
        }
    }
}

/// Applies replayed records to queue descriptions and messages keyed by (region, name).
#[derive(Default)]
pub struct Replayed {
    pub queues: BTreeMap<(String, String), (QueueMeta, BTreeMap<u64, Stored>)>,
}

impl Replayed {
    pub fn apply(&mut self, r: Record) {
        match r {
            Record::Queue { meta } => {
                let key = (meta.region.clone(), meta.name.clone());
                match self.queues.get_mut(&key) {
                    Some(q) => q.0 = meta,
                    None => {
                        self.queues.insert(key, (meta, BTreeMap::new()));
                    }
                }
            }
            Record::DropQueue { region, name } => {
                self.queues.remove(&(region, name));
            }
            Record::Send { region, name, msg } => {
                if let Some(q) = self.queues.get_mut(&(region, name)) {
                    q.1.insert(msg.seq, *msg);
                }
            }
            Record::Delete { region, name, seq } => {
                if let Some(q) = self.queues.get_mut(&(region, name)) {
                    q.1.remove(&seq);
                }
            }
            Record::Receive { region, name, seq, count, first } => {
                if let Some(m) = self.queues.get_mut(&(region, name)).and_then(|q| q.1.get_mut(&seq)) {
                    m.receive_count = count;
                    m.first_receive_ms = first;
                }
            }
            Record::Purge { region, name, upto } => {
                if let Some(q) = self.queues.get_mut(&(region, name)) {
                    q.1.retain(|s, _| *s > upto);
                }
            }
        }
    }
}
