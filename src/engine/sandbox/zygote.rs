//! The Python fork server ("zygote"): one pre-initialized interpreter per host Python
//! (runtime-api/python/zygote.py, the bootstrap's code loaded and its imports done) that
//! forks a child per new environment, so a cold start skips the interpreter's own start.
//!
//! The zygote is this server's child (PR_SET_PDEATHSIG, started from the long-lived spawner
//! thread); environments are the zygote's children (PR_SET_PDEATHSIG to the zygote). Each
//! child's pid comes back with a pidfd, which tells when it exits; the zygote reaps it and
//! reports its wait status. Requests and replies are JSON messages on a SOCK_SEQPACKET
//! socketpair, file descriptors passed as SCM_RIGHTS.

use std::collections::HashMap;
use std::io::BufRead;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use super::cgroup::EnvCgroup;

/// The bundled fork server.
pub const PYTHON_ZYGOTE: &str = include_str!("../../../runtime-api/python/zygote.py");

/// How long a zygote may take to report ready (a Python start, on a loaded machine).
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a fork may take to be answered.
const SPAWN_TIMEOUT: Duration = Duration::from_secs(10);
/// Starts of one interpreter's zygote before forking is given up for it.
const MAX_STARTS: u32 = 5;

/// How a forked environment ended, as its zygote reaped it.
#[derive(Copy, Clone, Debug)]
pub struct ExitInfo {
    /// The raw wait status.
    pub status: i32,
    /// Peak RSS of the child, in KB (`ru_maxrss`).
    pub maxrss_kb: u64,
}

/// A forked environment.
pub struct Spawned {
    pub pid: i32,
    /// Readable once the child has exited.
    pub pidfd: OwnedFd,
    /// Its exit, once reaped; closed (no value) when the zygote died first.
    pub exit: tokio::sync::oneshot::Receiver<ExitInfo>,
}

/// Where a reply goes: an async caller, or a blocking one (a spare being made).
enum Reply {
    Async(tokio::sync::oneshot::Sender<Result<Spawned, String>>),
    Blocking(std::sync::mpsc::Sender<Result<Spawned, String>>),
}

impl Reply {
    fn send(self, r: Result<Spawned, String>) {
        match self {
            Reply::Async(tx) => drop(tx.send(r)),
            Reply::Blocking(tx) => drop(tx.send(r)),
        }
    }
}

/// A child forked ahead into a fresh memory cgroup of its own, waiting for the environment it
/// is to become ([`Zygote::start_spare`]): a cold start then skips the fork and, above all,
/// the move into a cgroup (cgroup v1 waits there for an RCU grace period, 5–15 ms).
pub struct Spare {
    pub pid: i32,
    pidfd: OwnedFd,
    /// Its cgroup, with a default limit until it is taken.
    pub cgroup: EnvCgroup,
}

impl Spare {
    /// Whether it still waits (it is killed with everything else in the cgroup, or with the
    /// zygote).
    pub fn alive(&self) -> bool {
        let mut p = libc::pollfd { fd: self.pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: poll on one pollfd we own, without waiting.
        unsafe { libc::poll(&mut p, 1, 0) == 0 }
    }
}

/// What the zygote's reader thread shares with senders.
#[derive(Default)]
struct Shared {
    pending: Mutex<HashMap<u64, Reply>>,
    exits: Mutex<HashMap<i32, tokio::sync::oneshot::Sender<ExitInfo>>>,
    dead: AtomicBool,
    /// The spare, once made (and until taken).
    spare: Mutex<Option<Spare>>,
    /// Set while a spare is being made.
    making_spare: AtomicBool,
    /// Set at shutdown: no more spares.
    no_spares: AtomicBool,
}

/// One running zygote.
pub struct Zygote {
    ctl: Arc<OwnedFd>,
    shared: Arc<Shared>,
    next: AtomicU64,
    pid: u32,
}

impl Zygote {
    /// Whether it still takes requests.
    pub fn usable(&self) -> bool {
        !self.shared.dead.load(Ordering::SeqCst)
    }

    /// Forks an environment: `env` replaces its environment, `cwd` is its working dir,
    /// `out` becomes its stdout and stderr, `cgroup` (an open cgroup.procs) is joined
    /// before the child runs anything of the function's.
    pub async fn spawn(
        &self,
        env: &[(String, String)],
        cwd: &Path,
        out: &OwnedFd,
        cgroup: Option<RawFd>,
    ) -> Result<Spawned, String> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let body = serde_json::json!({ "id": id, "env": env, "cwd": cwd.display().to_string() });
        let mut fds = vec![out.as_raw_fd()];
        fds.extend(cgroup);
        self.request(id, body, fds).await
    }

    /// Takes the spare, if one waits (see [`Self::make_spare`]).
    pub fn take_spare(&self) -> Option<Spare> {
        self.shared.spare.lock().take()
    }

    /// Has the spare `pid` (taken by [`Self::take_spare`]) become an environment, as
    /// [`Self::spawn`] would fork one: same `env`, `cwd`, `out`.
    pub async fn start_spare(
        &self,
        pid: i32,
        env: &[(String, String)],
        cwd: &Path,
        out: &OwnedFd,
    ) -> Result<Spawned, String> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let body = serde_json::json!({ "id": id, "take": pid, "env": env, "cwd": cwd.display().to_string() });
        self.request(id, body, vec![out.as_raw_fd()]).await
    }

    /// Makes a spare in `cgroup` unless one waits or is being made (the cgroup is then
    /// removed). Blocking: a fork and a move into a cgroup, on the blocking pool.
    pub fn make_spare(&self, make_cgroup: impl FnOnce() -> std::io::Result<EnvCgroup>) {
        if !self.usable()
            || self.shared.no_spares.load(Ordering::SeqCst)
            || self.shared.spare.lock().is_some()
            || self.shared.making_spare.swap(true, Ordering::SeqCst)
        {
            return;
        }
        let made = make_cgroup().map_err(|e| format!("cannot create a memory cgroup: {e}"));
        let result = made.and_then(|cgroup| match self.fork_spare(&cgroup) {
            Ok(s) => Ok(Spare { pid: s.pid, pidfd: s.pidfd, cgroup }),
            Err(e) => {
                cgroup.remove();
                Err(e)
            }
        });
        match result {
            Ok(spare) => {
                tracing::debug!(pid = spare.pid, "python fork server: a spare environment waits");
                let old = self.shared.spare.lock().replace(spare);
                // The zygote died meanwhile (its spare with it), or the server is stopping.
                if (!self.usable() || self.shared.no_spares.load(Ordering::SeqCst))
                    && let Some(s) = self.shared.spare.lock().take()
                {
                    s.cgroup.remove();
                }
                if let Some(s) = old {
                    s.cgroup.remove();
                }
            }
            Err(why) => tracing::debug!("python fork server: no spare environment: {why}"),
        }
        self.shared.making_spare.store(false, Ordering::SeqCst);
    }

    fn fork_spare(&self, cgroup: &EnvCgroup) -> Result<Spawned, String> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let bytes = serde_json::to_vec(&serde_json::json!({ "id": id, "prefork": true })).map_err(|e| e.to_string())?;
        let (tx, rx) = std::sync::mpsc::channel();
        self.shared.pending.lock().insert(id, Reply::Blocking(tx));
        if !self.usable() {
            self.shared.pending.lock().remove(&id);
            return Err("the fork server has exited".into());
        }
        if let Err(e) = send_with_fds(self.ctl.as_raw_fd(), &bytes, &[cgroup.procs_fd()], 0) {
            self.shared.pending.lock().remove(&id);
            return Err(format!("cannot send to the fork server: {e}"));
        }
        match rx.recv_timeout(SPAWN_TIMEOUT) {
            Ok(r) => r,
            Err(_) => {
                // A late answer's child is killed by the reader (nothing waits for it).
                self.shared.pending.lock().remove(&id);
                Err("the fork server did not answer".into())
            }
        }
    }

    async fn request(&self, id: u64, body: serde_json::Value, fds: Vec<RawFd>) -> Result<Spawned, String> {
        let bytes = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.shared.pending.lock().insert(id, Reply::Async(tx));
        if !self.usable() {
            self.shared.pending.lock().remove(&id);
            return Err("the fork server has exited".into());
        }
        // A small message on a local socket: sent inline, unless the socket is full (a
        // burst of cold starts), then from the blocking pool. The caller's fds outlive it.
        let mut sent = send_with_fds(self.ctl.as_raw_fd(), &bytes, &fds, libc::MSG_DONTWAIT);
        if sent.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock) {
            let ctl = self.ctl.clone();
            sent = tokio::task::spawn_blocking(move || send_with_fds(ctl.as_raw_fd(), &bytes, &fds, 0))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        }
        if let Err(e) = sent {
            self.shared.pending.lock().remove(&id);
            return Err(format!("cannot send to the fork server: {e}"));
        }
        match tokio::time::timeout(SPAWN_TIMEOUT, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err("the fork server exited".into()),
            Err(_) => {
                // A stuck fork server takes no more requests: the next environment starts a
                // new one. It is not killed: its environments would die with it.
                self.shared.pending.lock().remove(&id);
                self.shared.dead.store(true, Ordering::SeqCst);
                Err("the fork server did not answer".into())
            }
        }
    }
}

/// Starts a zygote for `python` (blocking: until it is ready). `spawn_on` runs the spawn on
/// a thread that lives as long as the server (PR_SET_PDEATHSIG follows the forking thread).
fn start(
    python: &str,
    script: &Path,
    run: &Path,
    source: &Path,
    owner: (&str, &str),
    spawn_on: &dyn Fn(std::process::Command) -> std::io::Result<std::process::Child>,
) -> Result<Arc<Zygote>, String> {
    let (ours, theirs) = seqpacket_pair().map_err(|e| format!("socketpair: {e}"))?;
    let mut cmd = std::process::Command::new(python);
    cmd.args(["-u", "-X", "utf8"]).arg(script).arg(run).arg(source).env_clear();
    cmd.env("PATH", std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()))
        .env("LANG", "en_US.UTF-8")
        .env("HOME", std::env::var("HOME").unwrap_or_else(|_| "/tmp".into()))
        .env(owner.0, owner.1);
    if let Ok(ld) = std::env::var("LD_LIBRARY_PATH") {
        cmd.env("LD_LIBRARY_PATH", ld);
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).process_group(0);
    let fd = theirs.as_raw_fd();
    // SAFETY: prctl, dup2 and fcntl are async-signal-safe; `theirs` stays open until spawn returns.
    unsafe {
        cmd.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if fd == 3 {
                let flags = libc::fcntl(3, libc::F_GETFD);
                libc::fcntl(3, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
            } else if libc::dup2(fd, 3) != 3 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = spawn_on(cmd).map_err(|e| format!("cannot start {python}: {e}"))?;
    drop(theirs);
    let pid = child.id();
    if let Some(err) = child.stderr.take() {
        let who = python.to_string();
        let _ = std::thread::Builder::new().name("zygote-stderr".into()).spawn(move || {
            for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                tracing::warn!(python = %who, "python fork server: {line}");
            }
        });
    }
    let ctl = Arc::new(ours);
    let shared = Arc::new(Shared::default());
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<String>();
    let (c, s, who) = (ctl.clone(), shared.clone(), python.to_string());
    std::thread::Builder::new()
        .name("zygote-reader".into())
        .spawn(move || read_loop(&c, &s, ready_tx, child, &who))
        .map_err(|e| format!("cannot start a thread: {e}"))?;
    match ready_rx.recv_timeout(READY_TIMEOUT) {
        Ok(version) => {
            tracing::debug!(python, version = %version, pid, "python fork server ready");
            Ok(Arc::new(Zygote { ctl, shared, next: AtomicU64::new(1), pid }))
        }
        Err(_) => {
            // SAFETY: plain kill of our own child (still unreaped: the reader waits for it).
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            Err("it exited or did not get ready".into())
        }
    }
}

/// The reader thread: dispatches replies and exits until the zygote's end closes, then
/// fails what waits, and reaps the zygote.
fn read_loop(
    ctl: &OwnedFd,
    shared: &Shared,
    ready: std::sync::mpsc::Sender<String>,
    mut child: std::process::Child,
    python: &str,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let (n, mut fds) = match recv_with_fds(ctl.as_raw_fd(), &mut buf) {
            Ok((0, _)) | Err(_) => break,
            Ok(r) => r,
        };
        let Ok(msg) = serde_json::from_slice::<serde_json::Value>(&buf[..n]) else { continue };
        if let Some(v) = msg.get("ready").and_then(|v| v.as_str()) {
            let _ = ready.send(v.to_string());
        } else if let Some(pid) = msg.get("exit").and_then(serde_json::Value::as_i64) {
            let info = ExitInfo {
                status: msg.get("status").and_then(serde_json::Value::as_i64).unwrap_or(0) as i32,
                maxrss_kb: msg.get("maxrss").and_then(serde_json::Value::as_u64).unwrap_or(0),
            };
            if let Some(tx) = shared.exits.lock().remove(&(pid as i32)) {
                let _ = tx.send(info);
            }
        } else if let Some(id) = msg.get("id").and_then(serde_json::Value::as_u64) {
            let Some(reply) = shared.pending.lock().remove(&id) else {
                // Answered after its caller gave up (and started the environment by exec):
                // this child must not serve it too.
                if let Some(pid) = msg.get("pid").and_then(serde_json::Value::as_i64).filter(|p| *p > 0) {
                    // SAFETY: plain kill of a pid the zygote just forked and has not reaped
                    // (it reaps a child only after its pidfd reports the exit).
                    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                }
                continue;
            };
            let result = match (msg.get("pid").and_then(serde_json::Value::as_i64), fds.pop()) {
                (Some(pid), Some(pidfd)) => {
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    shared.exits.lock().insert(pid as i32, tx);
                    Ok(Spawned { pid: pid as i32, pidfd, exit: rx })
                }
                _ => Err(msg.get("error").and_then(|e| e.as_str()).unwrap_or("no pid in the reply").to_string()),
            };
            reply.send(result);
        } else if let Some(e) = msg.get("error").and_then(|e| e.as_str()) {
            tracing::warn!(python, "python fork server: {e}");
        }
    }
    shared.dead.store(true, Ordering::SeqCst);
    shared.pending.lock().clear();
    // The children die with it (PR_SET_PDEATHSIG): their waiters see the channel close.
    shared.exits.lock().clear();
    let _ = child.kill();
    // Its spare died with it: the spare's cgroup goes.
    if let Some(s) = shared.spare.lock().take() {
        s.cgroup.remove();
    }
    match child.wait() {
        Ok(s) => tracing::warn!(python, status = %s, "the python fork server exited"),
        Err(e) => tracing::warn!(python, error = %e, "the python fork server is gone"),
    }
}

/// The zygotes of this server, one per interpreter (and bootstrap build), started on first
/// need; after a zygote dies the next environment starts a new one, and after
/// [`MAX_STARTS`] (or a failed start) that interpreter's environments are exec'd.
pub struct Zygotes {
    script: PathBuf,
    owner: (String, String),
    map: Mutex<HashMap<String, Arc<Mutex<Slot>>>>,
    spawn_on: Box<dyn Fn(std::process::Command) -> std::io::Result<std::process::Child> + Send + Sync>,
}

#[derive(Default)]
struct Slot {
    zygote: Option<Arc<Zygote>>,
    starts: u32,
    off: bool,
}

impl Zygotes {
    pub fn new(
        script: PathBuf,
        owner: (String, String),
        spawn_on: Box<dyn Fn(std::process::Command) -> std::io::Result<std::process::Child> + Send + Sync>,
    ) -> Zygotes {
        Zygotes { script, owner, map: Mutex::new(HashMap::new()), spawn_on }
    }

    fn slot(&self, python: &str, run: &Path) -> Arc<Mutex<Slot>> {
        let key = format!("{python}\0{}", run.display());
        self.map.lock().entry(key).or_default().clone()
    }

    /// The spares of every zygote (at shutdown: their cgroups are to be removed).
    /// No spare is made after this (one being made is removed when made).
    pub fn take_spares(&self) -> Vec<Spare> {
        let slots: Vec<_> = self.map.lock().values().cloned().collect();
        let zygotes = slots.iter().filter_map(|s| s.try_lock().and_then(|st| st.zygote.clone()));
        zygotes
            .filter_map(|z| {
                z.shared.no_spares.store(true, Ordering::SeqCst);
                z.take_spare()
            })
            .collect()
    }

    /// The running zygote for `python` running `run`, without waiting (None if it is not
    /// running or is being started).
    pub fn running(&self, python: &str, run: &Path) -> Option<Arc<Zygote>> {
        let slot = self.slot(python, run);
        let st = slot.try_lock()?;
        st.zygote.clone().filter(|z| z.usable())
    }

    /// The zygote for `python` running `run` (`source` its source), started if need be.
    /// Blocking. None when forking is off for this interpreter (said once in the log).
    pub fn get(&self, python: &str, run: &Path, source: &Path) -> Option<Arc<Zygote>> {
        let slot = self.slot(python, run);
        let mut st = slot.lock();
        if st.off {
            return None;
        }
        if let Some(z) = st.zygote.as_ref().filter(|z| z.usable()) {
            return Some(z.clone());
        }
        if st.starts >= MAX_STARTS {
            st.off = true;
            tracing::warn!(
                python,
                "the python fork server exited {} times: python environments are started by exec",
                st.starts
            );
            return None;
        }
        st.starts += 1;
        let owner = (self.owner.0.as_str(), self.owner.1.as_str());
        match start(python, &self.script, run, source, owner, &*self.spawn_on) {
            Ok(z) => {
                if st.starts == 1 {
                    tracing::info!(
                        python,
                        pid = z.pid,
                        "python environments are forked from a pre-initialized interpreter"
                    );
                }
                st.zygote = Some(z.clone());
                Some(z)
            }
            Err(why) => {
                st.off = true;
                st.zygote = None;
                tracing::warn!(python, "no python fork server ({why}): python environments are started by exec");
                None
            }
        }
    }
}

/// Decodes a wait status: (exit code, terminating signal).
pub fn describe_status(status: i32) -> (Option<i32>, Option<i32>) {
    if libc::WIFEXITED(status) {
        (Some(libc::WEXITSTATUS(status)), None)
    } else if libc::WIFSIGNALED(status) {
        (None, Some(libc::WTERMSIG(status)))
    } else {
        (None, None)
    }
}

fn seqpacket_pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: socketpair writes two fds into `fds`, which we then own.
    if unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both fds were just returned by socketpair and are owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// One message with `fds` attached (SCM_RIGHTS).
fn send_with_fds(sock: RawFd, data: &[u8], fds: &[RawFd], flags: libc::c_int) -> std::io::Result<()> {
    let fd_bytes = std::mem::size_of_val(fds);
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(fd_bytes as u32) } as usize;
    let mut control = vec![0u64; space.div_ceil(8)];
    let mut iov = libc::iovec { iov_base: data.as_ptr() as *mut libc::c_void, iov_len: data.len() };
    // SAFETY: msghdr is plain old data; all-zero is a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: msg_control points to `space` zeroed, aligned bytes: room for one header
        // and `fds`; CMSG_FIRSTHDR/CMSG_DATA stay inside it.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(fd_bytes as u32) as _;
            std::ptr::copy_nonoverlapping(fds.as_ptr().cast::<u8>(), libc::CMSG_DATA(cmsg), fd_bytes);
        }
    }
    loop {
        // SAFETY: `msg` points to live buffers (data, iov, control) for the whole call.
        let rc = unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL | flags) };
        if rc >= 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// One message and the fds attached to it (close-on-exec). Blocking.
fn recv_with_fds(sock: RawFd, buf: &mut [u8]) -> std::io::Result<(usize, Vec<OwnedFd>)> {
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(8 * 4) } as usize;
    let mut control = vec![0u64; space.div_ceil(8)];
    loop {
        let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
        // SAFETY: msghdr is plain old data; all-zero is a valid value.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: `msg` points to live buffers we own for the whole call.
        let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let mut fds = Vec::new();
        // SAFETY: the CMSG_* walk stays within msg_controllen bytes the kernel filled; each
        // SCM_RIGHTS payload is a packed array of fds now owned by this process.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                    let len = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                    let data = libc::CMSG_DATA(cmsg);
                    for i in 0..len / 4 {
                        let fd = std::ptr::read_unaligned(data.add(i * 4).cast::<libc::c_int>());
                        fds.push(OwnedFd::from_raw_fd(fd));
                    }
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        return Ok((n as usize, fds));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn a_message_carries_its_fds() {
        let (a, b) = seqpacket_pair().unwrap();
        let (mut rx, tx) = std::io::pipe().unwrap();
        let tx: OwnedFd = tx.into();
        send_with_fds(a.as_raw_fd(), b"{\"id\":1}", &[tx.as_raw_fd()], 0).unwrap();
        drop(tx);
        let mut buf = [0u8; 64];
        let (n, mut fds) = recv_with_fds(b.as_raw_fd(), &mut buf).unwrap();
        assert_eq!(&buf[..n], b"{\"id\":1}");
        assert_eq!(fds.len(), 1);
        // The received fd is the pipe's write end: what is written there comes out of `rx`.
        let mut w = std::fs::File::from(fds.pop().unwrap());
        w.write_all(b"hi").unwrap();
        drop(w);
        let mut got = String::new();
        rx.read_to_string(&mut got).unwrap();
        assert_eq!(got, "hi");
        // No fds: a plain message; the peer's close reads as an empty one.
        send_with_fds(a.as_raw_fd(), b"x", &[], 0).unwrap();
        assert_eq!(recv_with_fds(b.as_raw_fd(), &mut buf).unwrap().0, 1);
        drop(a);
        assert_eq!(recv_with_fds(b.as_raw_fd(), &mut buf).unwrap().0, 0);
    }

    #[test]
    fn wait_statuses_are_decoded() {
        assert_eq!(describe_status(3 << 8), (Some(3), None));
        assert_eq!(describe_status(libc::SIGKILL), (None, Some(libc::SIGKILL)));
    }
}
