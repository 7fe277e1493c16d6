//! An environment's output: a bounded buffer handed to the invocation in flight, echoed
//! (rate-limited) to the server's log.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Bounded log of an environment's output, handed to the invocation in flight.
pub struct LogSink {
    function: String,
    /// The environment's log stream, `YYYY/MM/DD/[<version>]<32 hex>` as on AWS.
    stream: String,
    /// The function's log group, `/aws/lambda/<function>`.
    group: String,
    buf: Mutex<VecDeque<u8>>,
    echo: Mutex<Echo>,
}

/// How much output is kept per invocation (Tail needs only the last 4 KB).
const LOG_KEEP: usize = 64 * 1024;
/// Lines per second of one environment's output echoed to the server log. A runtime that
/// floods stdout would otherwise flood the server's log (and its CPU) with it.
const ECHO_LINES_PER_SEC: u32 = 200;
/// Longest line echoed to the server log.
const ECHO_LINE_MAX: usize = 2048;

/// Rate limit state of the server-log echo.
struct Echo {
    window: Instant,
    shown: u32,
    /// Lines left out since the last note about them.
    suppressed: u64,
}

impl LogSink {
    /// A sink for a new environment of `function`'s `version`, logging to `group`.
    pub fn new(function: &str, version: &str, group: &str) -> Arc<LogSink> {
        let stream = format!("{}/[{version}]{}", chrono::Utc::now().format("%Y/%m/%d"), uuid::Uuid::new_v4().simple());
        Arc::new(LogSink {
            function: function.to_string(),
            stream,
            group: group.to_string(),
            buf: Mutex::new(VecDeque::new()),
            echo: Mutex::new(Echo { window: Instant::now(), shown: 0, suppressed: 0 }),
        })
    }

    /// Appends raw output; echoes complete lines to the server log, at most
    /// [`ECHO_LINES_PER_SEC`] a second, noting how many were left out.
    pub fn append(&self, chunk: &[u8]) {
        {
            let mut echo = self.echo.lock();
            let now = Instant::now();
            for line in chunk.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                if now.duration_since(echo.window) >= Duration::from_secs(1) {
                    self.note_suppressed(&mut echo);
                    echo.window = now;
                    echo.shown = 0;
                }
                if echo.shown < ECHO_LINES_PER_SEC {
                    echo.shown += 1;
                    let shown = &line[..line.len().min(ECHO_LINE_MAX)];
                    tracing::info!(target: "lambda", "[{}] {}", self.function, String::from_utf8_lossy(shown).trim_end());
                } else {
                    echo.suppressed += 1;
                }
            }
        }
        let mut buf = self.buf.lock();
        buf.extend(chunk.iter().rev().take(LOG_KEEP).rev());
        let excess = buf.len().saturating_sub(LOG_KEEP);
        buf.drain(..excess);
    }

    fn note_suppressed(&self, echo: &mut Echo) {
        if echo.suppressed > 0 {
            tracing::info!(
                target: "lambda",
                "[{}] \u{2026} suppressed {} lines of output (server log echo is limited to {ECHO_LINES_PER_SEC} lines/s per environment)",
                self.function,
                echo.suppressed
            );
            echo.suppressed = 0;
        }
    }

    /// Moves the whole lines at the front of `pending` into the log. A trailing partial line
    /// waits for its newline, unless it has grown past `max_partial` bytes.
    pub fn append_lines(&self, pending: &mut Vec<u8>, max_partial: usize) {
        let cut = match pending.iter().rposition(|b| *b == b'\n') {
            Some(i) => i + 1,
            None if pending.len() > max_partial => pending.len(),
            None => 0,
        };
        if cut > 0 {
            self.append(&pending[..cut]);
            pending.drain(..cut);
        }
    }

    /// Takes what was written since the last take.
    pub fn take(&self) -> Vec<u8> {
        self.note_suppressed(&mut self.echo.lock());
        let mut buf = self.buf.lock();
        let v: Vec<u8> = buf.iter().copied().collect();
        buf.clear();
        v
    }

    pub fn function(&self) -> &str {
        &self.function
    }

    pub fn stream(&self) -> &str {
        &self.stream
    }

    pub fn group(&self) -> &str {
        &self.group
    }
}
