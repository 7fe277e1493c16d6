//! A container's stdout and stderr, into its environment's log.
//!
//! - **FIFO** (the normal case, a local engine): the container's entrypoint is wrapped in
//!   [`STDIO_HELPER`], a static executable bind-mounted read-only at [`HELPER_TARGET`] (no
//!   shell needed), or else in `/bin/sh -c 'exec "$@" >FIFO 2>&1'`, with a host FIFO
//!   bind-mounted in. The runtime writes stdout and stderr straight into one kernel pipe that
//!   RustStack reads, in the order written, and [`Output::flush`] is exact, as for a
//!   subprocess: no bytes left in the pipe (`FIONREAD`), and the reader not mid-chunk.
//! - **Attach** (remote engines, uploaded code): the output comes through `docker attach`,
//!   behind the engine's own copying, so the flush can only wait for the stream to go quiet
//!   (best effort, bounded). The helper, uploaded with the code, puts stderr onto stdout
//!   first, so the one stream keeps the order. Without the helper (not built, an engine of
//!   another architecture), images without `/bin/sh` are read through attach too, and there
//!   stdout and stderr come as two streams and lose their order.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use bollard::container::LogOutput;
use bollard::errors::Error as DockerError;
use futures_util::{Stream, StreamExt};
use parking_lot::Mutex;
use tokio::net::unix::pipe;
use tokio::sync::watch;

use crate::engine::logsink::LogSink;

/// Where the FIFO appears inside the container.
pub const FIFO_TARGET: &str = "/dev/ruststack-log";
/// Where a held container's go FIFO appears (see [`FifoOutput::hold`]).
pub const GO_TARGET: &str = "/dev/ruststack-go";
/// The wrapper that sends the runtime's output into the FIFO; `"$@"` is the real command.
/// `held`: it first waits for a line on the go FIFO.
pub fn fifo_wrapper(held: bool) -> Vec<String> {
    // Opened read-write: the wait never sees an end of file, whatever happens to RustStack's
    // end (an unused spare is killed with its container, never let go by accident).
    let wait = if held { format!("read -r go <>{GO_TARGET} || exit 0; ") } else { String::new() };
    vec!["/bin/sh".into(), "-c".into(), format!("{wait}exec \"$@\" >{FIFO_TARGET} 2>&1"), "lambda-entrypoint".into()]
}

/// `ruststack-stdio` (stdio.c, built by build.rs with a static libc): empty where it could
/// not be built.
pub static STDIO_HELPER: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/ruststack-stdio"));
/// Where the helper appears inside the container (a bind mount, or in the uploaded archive).
pub const HELPER_TARGET: &str = "/var/ruststack/stdio";

/// The helper's command line before the real command: with `fifo`, stdout and stderr go to
/// the FIFO, else stderr onto stdout; `held`: it first waits for a line on the go FIFO.
pub fn helper_wrapper(fifo: bool, held: bool) -> Vec<String> {
    let arg = |on: bool, path: &str| if on { path.to_string() } else { String::new() };
    vec![HELPER_TARGET.into(), arg(fifo, FIFO_TARGET), arg(held, GO_TARGET)]
}

/// Longest a flush waits without the reader making progress.
const FLUSH_MAX: Duration = Duration::from_millis(50);
/// Longest a pipe flush waits in all.
const FLUSH_CAP: Duration = Duration::from_secs(2);
/// Attach mode: the output is complete once the stream has been quiet this long.
const ATTACH_QUIET: Duration = Duration::from_millis(2);
/// A partial line longer than this goes to the log without waiting for its newline.
const MAX_PARTIAL: usize = 8192;

pub enum Output {
    Fifo(FifoOutput),
    Attach(AttachOutput),
}

pub struct FifoOutput {
    dir: PathBuf,
    pipe: PipeOutput,
    /// A held container's go FIFO, open read-write: a line lets the runtime start.
    go: Option<std::fs::File>,
}

/// The read end of a pipe or FIFO whose bytes go to an environment's log, with an exact
/// flush. The subprocess executor uses it too, for the one pipe a runtime's stdout and
/// stderr share.
pub struct PipeOutput {
    /// The read end's fd while the reader holds it, else -1 (for FIONREAD).
    fd: Arc<AtomicI32>,
    /// Bytes read but not yet in the log (a partial line). The reader holds this lock
    /// while it reads and appends, so taking it means the reader is not mid-chunk.
    partial: Arc<Mutex<Vec<u8>>>,
    log: Arc<LogSink>,
    reader: tokio::task::AbortHandle,
}

pub struct AttachOutput {
    /// Counts chunks appended to the log.
    seen: watch::Receiver<u64>,
}

impl FifoOutput {
    /// Makes `<dir>/log` (a FIFO anyone may write: the container's root may be another uid)
    /// and starts reading it. Opened read-write, so it never reports EOF between writers.
    pub fn create(dir: PathBuf, log: Arc<LogSink>) -> std::io::Result<FifoOutput> {
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("log");
        let r = make_fifo(&path).and_then(|()| pipe::OpenOptions::new().read_write(true).open_receiver(&path));
        let rx = match r {
            Ok(rx) => rx,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        Ok(FifoOutput { dir, pipe: PipeOutput::start(rx, log), go: None })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join("log")
    }

    /// Makes `<dir>/go`, the FIFO a held container waits on before it runs its runtime.
    /// Held open read-write, so a line can be written before the container opens it.
    pub fn hold(&mut self) -> std::io::Result<()> {
        self.go = Some(open_go(&self.dir.join("go"))?);
        Ok(())
    }

    /// The go FIFO's path, once [`FifoOutput::hold`] made it.
    pub fn go_path(&self) -> Option<PathBuf> {
        self.go.as_ref().map(|_| self.dir.join("go"))
    }

    /// Lets a held container's runtime start: one line into the go FIFO (a pipe's buffer
    /// takes it at once). False if the container was not held.
    pub fn go(&self) -> bool {
        use std::io::Write;
        self.go.as_ref().is_some_and(|mut f| f.write_all(b"\n").is_ok())
    }

    /// Gives a blank spare's wrapper its orders (see stdio.c): a byte count line, then
    /// `orders`. The pipe is empty and its buffer larger than any orders: written at once.
    pub fn send(&self, orders: &[u8]) -> bool {
        use std::io::Write;
        let mut msg = format!("{}\n", orders.len()).into_bytes();
        msg.extend_from_slice(orders);
        self.go.as_ref().is_some_and(|mut f| f.write(&msg).is_ok_and(|n| n == msg.len()))
    }

    async fn flush(&self) {
        self.pipe.flush().await
    }
}

/// The FIFOs of a blank spare (`<dir>/log` and `<dir>/go`), made before it is known whose
/// log the output goes to: nothing is written before its orders, and the log's reader is
/// opened before they are sent ([`FifoPending::open`]). Dropped unopened: the directory goes.
pub struct FifoPending {
    dir: Option<PathBuf>,
    go: Option<std::fs::File>,
}

impl FifoPending {
    pub fn create(dir: PathBuf) -> std::io::Result<FifoPending> {
        std::fs::create_dir_all(&dir)?;
        let mut p = FifoPending { dir: Some(dir.clone()), go: None };
        make_fifo(&dir.join("log"))?;
        p.go = Some(open_go(&dir.join("go"))?);
        Ok(p)
    }

    pub fn dir(&self) -> &Path {
        self.dir.as_deref().unwrap_or(Path::new(""))
    }

    /// Starts reading the log FIFO into `log`.
    pub fn open(mut self, log: Arc<LogSink>) -> std::io::Result<FifoOutput> {
        let dir = self.dir.clone().unwrap_or_default();
        let rx = pipe::OpenOptions::new().read_write(true).open_receiver(dir.join("log"))?;
        self.dir = None;
        Ok(FifoOutput { dir, pipe: PipeOutput::start(rx, log), go: self.go.take() })
    }
}

impl Drop for FifoPending {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Makes a FIFO anyone may read and write (mkfifo honours the umask; the container's writer
/// may be another uid).
fn make_fifo(path: &Path) -> std::io::Result<()> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| std::io::Error::other("NUL in FIFO path"))?;
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o666) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o666))
}

/// Makes a go FIFO, held open read-write (non-blocking), so a line can be written before
/// the container opens it.
fn open_go(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    make_fifo(path)?;
    std::fs::OpenOptions::new().read(true).write(true).custom_flags(libc::O_NONBLOCK).open(path)
}

impl PipeOutput {
    /// Starts copying `rx` into `log`: whole lines as they come, a partial line at the next
    /// [`PipeOutput::flush`].
    pub fn start(rx: pipe::Receiver, log: Arc<LogSink>) -> PipeOutput {
        let fd = Arc::new(AtomicI32::new(rx.as_raw_fd()));
        let partial = Arc::new(Mutex::new(Vec::new()));
        let reader = tokio::spawn(read_fifo(rx, log.clone(), partial.clone(), fd.clone())).abort_handle();
        PipeOutput { fd, partial, log, reader }
    }

    /// Waits until every byte written before now is in the log, the last partial line too:
    /// it belongs to the invocation that wrote it, not to the next one.
    pub async fn flush(&self) {
        // Gives up after FLUSH_MAX without progress (a writer that keeps writing), or
        // FLUSH_CAP in all; while the reader drains a flood (a busy machine), it waits.
        let cap = Instant::now() + FLUSH_CAP;
        let mut until = Instant::now() + FLUSH_MAX;
        let mut spins = 0;
        let mut last = i32::MAX;
        loop {
            let pending = crate::engine::sandbox::pending_bytes(self.fd.load(Ordering::SeqCst));
            let now = Instant::now();
            if pending == 0 || now >= cap {
                break;
            }
            if pending < last {
                last = pending;
                until = now + FLUSH_MAX;
            } else if now >= until {
                break;
            }
            if spins < 20 {
                tokio::task::yield_now().await;
                spins += 1;
            } else {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        }
        // Waits for a read in progress; then whatever is left is a partial line.
        let rest = std::mem::take(&mut *self.partial.lock());
        if !rest.is_empty() {
            self.log.append(&rest);
        }
    }
}

impl Drop for PipeOutput {
    fn drop(&mut self) {
        self.fd.store(-1, Ordering::SeqCst);
        self.reader.abort();
    }
}

impl Drop for FifoOutput {
    fn drop(&mut self) {
        self.pipe.fd.store(-1, Ordering::SeqCst);
        self.pipe.reader.abort();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn read_fifo(rx: pipe::Receiver, log: Arc<LogSink>, partial: Arc<Mutex<Vec<u8>>>, fd: Arc<AtomicI32>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if rx.readable().await.is_err() {
            break;
        }
        let mut p = partial.lock();
        let mut failed = false;
        loop {
            match rx.try_read(&mut buf) {
                Ok(0) => {
                    failed = true;
                    break;
                }
                Ok(n) => p.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        // Whole lines go to the log now; a partial line waits for its newline or a flush.
        log.append_lines(&mut p, MAX_PARTIAL);
        if failed {
            break;
        }
    }
    fd.store(-1, Ordering::SeqCst);
}

impl AttachOutput {
    /// Copies an attach stream into the log.
    pub fn start(
        mut stream: Pin<Box<dyn Stream<Item = Result<LogOutput, DockerError>> + Send>>,
        log: Arc<LogSink>,
    ) -> AttachOutput {
        let (tx, seen) = watch::channel(0u64);
        tokio::spawn(async move {
            while let Some(item) = stream.next().await {
                match item {
                    Ok(
                        LogOutput::StdOut { message } | LogOutput::StdErr { message } | LogOutput::Console { message },
                    ) => {
                        log.append(&message);
                        tx.send_modify(|n| *n += 1);
                    }
                    Ok(LogOutput::StdIn { .. }) => {}
                    Err(_) => break,
                }
            }
        });
        AttachOutput { seen }
    }

    async fn flush(&self) {
        let mut rx = self.seen.clone();
        rx.borrow_and_update();
        let until = Instant::now() + FLUSH_MAX;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match tokio::time::timeout(ATTACH_QUIET.min(left), rx.changed()).await {
                Ok(Ok(())) => continue,
                _ => break,
            }
        }
    }
}

impl Output {
    /// Waits until output written before now is in the log (exact for FIFO, bounded).
    pub async fn flush(&self) {
        match self {
            Output::Fifo(f) => f.flush().await,
            Output::Attach(a) => a.flush().await,
        }
    }
}

/// Removes FIFO directories (`<root>/<pid>/...`) of servers that are gone.
pub fn remove_stale_dirs(root: &Path, alive: impl Fn(u32) -> bool) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    for e in entries.flatten() {
        let pid = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok());
        if pid.is_some_and(|p| !alive(p)) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fifo_flush_is_exact() {
        let dir = std::env::temp_dir().join(format!("ruststack-fifo-{}", uuid::Uuid::new_v4().simple()));
        let log = LogSink::new("t", "$LATEST", "/aws/lambda/t");
        let out = FifoOutput::create(dir.clone(), log.clone()).unwrap();
        let mut w = std::fs::OpenOptions::new().write(true).open(out.path()).unwrap();
        for i in 0..200 {
            use std::io::Write;
            write!(w, "line {i}\npartial {i}").unwrap();
            out.flush().await;
            let got = String::from_utf8(log.take()).unwrap();
            assert_eq!(got, format!("line {i}\npartial {i}"));
        }
        drop(out);
        assert!(!dir.exists());
    }

    /// Waits (bounded) until process `pid` has `path` open: `who` is then held on it.
    async fn wait_opened(pid: u32, path: &std::path::Path, who: &str) {
        let opened = || {
            std::fs::read_dir(format!("/proc/{pid}/fd"))
                .into_iter()
                .flatten()
                .flatten()
                .any(|e| std::fs::read_link(e.path()).is_ok_and(|l| l == path))
        };
        let until = Instant::now() + Duration::from_secs(20);
        while !opened() {
            assert!(Instant::now() < until, "{who} never opened the go FIFO");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A held wrapper (run by the host's sh, the FIFOs at host paths) opens the go FIFO and
    /// waits there, and runs its command only after `go`.
    #[tokio::test]
    async fn held_wrapper_waits_for_go() {
        let dir = std::env::temp_dir().join(format!("ruststack-go-{}", uuid::Uuid::new_v4().simple()));
        let log = LogSink::new("t", "$LATEST", "/aws/lambda/t");
        let mut out = FifoOutput::create(dir.clone(), log.clone()).unwrap();
        out.hold().unwrap();
        let go_path = out.go_path().unwrap();
        let script = fifo_wrapper(true)[2]
            .replace(GO_TARGET, &go_path.display().to_string())
            .replace(FIFO_TARGET, &out.path().display().to_string());
        let mut child = tokio::process::Command::new("/bin/sh")
            .args(["-c", &script, "lambda-entrypoint", "echo", "ran"])
            .spawn()
            .unwrap();
        wait_opened(child.id().unwrap(), &go_path, "the wrapper").await;
        out.flush().await;
        assert!(log.take().is_empty(), "the command ran before go");
        assert!(out.go());
        let status = tokio::time::timeout(Duration::from_secs(20), child.wait()).await.unwrap().unwrap();
        assert!(status.success());
        // The FIFO flush is exact: what the child wrote is in the log now.
        out.flush().await;
        assert_eq!(String::from_utf8(log.take()).unwrap(), "ran\n");
    }

    /// The static helper, run on the host: held, it waits on the go FIFO before it runs its
    /// command, whose stdout and stderr then both go into the FIFO.
    #[tokio::test]
    async fn helper_holds_then_sends_both_streams_to_the_fifo() {
        if STDIO_HELPER.is_empty() {
            eprintln!("no stdio helper in this build: nothing to test");
            return;
        }
        let dir = std::env::temp_dir().join(format!("ruststack-helper-{}", uuid::Uuid::new_v4().simple()));
        let helper = super::super::write_helper(&dir.join("bin")).unwrap();
        let log = LogSink::new("t", "$LATEST", "/aws/lambda/t");
        let mut out = FifoOutput::create(dir.join("out"), log.clone()).unwrap();
        out.hold().unwrap();
        let go_path = out.go_path().unwrap();
        let mut child = tokio::process::Command::new(&helper)
            .arg(out.path())
            .arg(&go_path)
            .args(["/bin/sh", "-c", "for i in 1 2 3; do echo out $i; echo err $i >&2; done"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        wait_opened(child.id().unwrap(), &go_path, "the helper").await;
        out.flush().await;
        assert!(log.take().is_empty(), "the command ran before go");
        assert!(out.go());
        let status = tokio::time::timeout(Duration::from_secs(20), child.wait()).await.unwrap().unwrap();
        assert!(status.success());
        out.flush().await;
        assert_eq!(String::from_utf8(log.take()).unwrap(), "out 1\nerr 1\nout 2\nerr 2\nout 3\nerr 3\n");
        drop(out);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A blank spare's helper: its FIFOs made before the log is known, it waits for orders,
    /// then runs their command with their variables (over its own) in their directory, its
    /// output in the log opened at the take. Orders without a command are refused.
    #[tokio::test]
    async fn helper_takes_orders_on_the_go_fifo() {
        if STDIO_HELPER.is_empty() {
            eprintln!("no stdio helper in this build: nothing to test");
            return;
        }
        let dir = std::env::temp_dir().join(format!("ruststack-orders-{}", uuid::Uuid::new_v4().simple()));
        let helper = super::super::write_helper(&dir.join("bin")).unwrap();
        for (command, want) in
            [(vec!["/bin/sh", "-c", "echo $FOO $BAR $KEEP $(pwd); echo err >&2"], Some(0)), (vec![], None)]
        {
            let pending = FifoPending::create(dir.join("blank")).unwrap();
            let (fifo, go) = (pending.dir().join("log"), pending.dir().join("go"));
            let child = tokio::process::Command::new(&helper)
                .args([&fifo, &go])
                .arg("@go")
                .env("FOO", "old")
                .env("KEEP", "kept")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            wait_opened(child.id().unwrap(), &go, "the helper").await;
            let log = LogSink::new("t", "$LATEST", "/aws/lambda/t");
            let out = pending.open(log.clone()).unwrap();
            let env = ["FOO=new".to_string(), "BAR=a b".to_string()];
            let orders = super::super::orders(Some("/tmp"), &env, command.iter().map(|s| s.to_string()));
            assert!(out.send(&orders));
            let done = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output()).await.unwrap().unwrap();
            out.flush().await;
            match want {
                Some(code) => {
                    assert_eq!(done.status.code(), Some(code));
                    assert_eq!(String::from_utf8(log.take()).unwrap(), "new a b kept /tmp\nerr\n");
                }
                None => {
                    assert_eq!(done.status.code(), Some(126));
                    let said = String::from_utf8(done.stderr).unwrap();
                    assert!(said.starts_with("ruststack-stdio: bad orders on "), "{said}");
                }
            }
            drop(out);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Without a FIFO, the helper puts stderr onto stdout: one stream, in order; and a command
    /// it cannot run is an error on that stream, with the shell's exit status.
    #[test]
    fn helper_puts_stderr_onto_stdout() {
        if STDIO_HELPER.is_empty() {
            eprintln!("no stdio helper in this build: nothing to test");
            return;
        }
        let dir = std::env::temp_dir().join(format!("ruststack-helper-{}", uuid::Uuid::new_v4().simple()));
        let helper = super::super::write_helper(&dir).unwrap();
        let run = |args: &[&str]| std::process::Command::new(&helper).args(["", ""]).args(args).output().unwrap();
        let o = run(&["sh", "-c", "echo a; echo b >&2; echo c; echo d >&2"]);
        assert!(o.status.success());
        assert_eq!(String::from_utf8(o.stdout).unwrap(), "a\nb\nc\nd\n");
        assert!(o.stderr.is_empty());
        let o = run(&["/no/such/runtime"]);
        assert_eq!(o.status.code(), Some(127));
        let said = String::from_utf8(o.stdout).unwrap();
        assert!(said.starts_with("ruststack-stdio: cannot run /no/such/runtime: "), "{said}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
