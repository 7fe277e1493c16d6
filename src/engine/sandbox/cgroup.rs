//! Memory limits for host-process environments: one memory cgroup per environment, with
//! `MemorySize` as its limit and no swap, so a runtime over its limit is OOM-killed as on AWS.
//!
//! The tree lives under the server's own memory cgroup (read from `/proc/self/cgroup`):
//! `<own>/ruststack-<server pid>/<environment>`. cgroup v1 (`memory.limit_in_bytes`,
//! `memory.memsw.limit_in_bytes`, `memory.oom_control`) and v2 (`memory.max`,
//! `memory.swap.max`, `memory.events`) are both handled. A runtime joins its cgroup in the
//! forked child, before it execs, by writing `0` to an already-open `cgroup.procs`.
//!
//! The kernel's count of OOM kills in an environment's cgroup ([`OomCount`]) tells an
//! invocation that failed because a process of it (the runtime, or only a child of the
//! handler's) was killed for memory.
//!
//! Where neither is usable (no memory controller, not writable, cgroup v2 that does not
//! delegate the controller to the server's cgroup), [`MemoryCgroups::detect`] says why and
//! environments run without a limit.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

/// How cgroup directories are made and removed: the kernel's cgroupfs fills a new directory
/// with its control files and removes it only empty of processes. Unit tests swap in a fake.
#[derive(Copy, Clone, Debug)]
struct Fs {
    mkdir: fn(&Path, Version) -> std::io::Result<()>,
    rmdir: fn(&Path) -> std::io::Result<()>,
}

const KERNEL: Fs = Fs { mkdir: |dir, _| std::fs::create_dir(dir), rmdir: |dir| std::fs::remove_dir(dir) };

/// The server's sub-tree of memory cgroups, one child per environment.
#[derive(Debug)]
pub struct MemoryCgroups {
    version: Version,
    /// `<own cgroup>/ruststack-<pid>`.
    base: PathBuf,
    next: AtomicU64,
    fs: Fs,
}

/// One environment's memory cgroup; removed (its processes killed first) by [`Self::remove`].
#[derive(Debug)]
pub struct EnvCgroup {
    version: Version,
    dir: PathBuf,
    /// `cgroup.procs`, open for the forked child to write `0` into (close-on-exec).
    procs: File,
    fs: Fs,
}

/// The `oom_kill` counter of one cgroup (v2 `memory.events`, v1 `memory.oom_control`), its
/// file kept open: a re-read is one read of kernel memory, as for `/proc/<pid>/status`.
#[derive(Debug)]
pub struct OomCount {
    file: File,
    /// The count already accounted for by [`OomCount::new_kills`].
    seen: AtomicU64,
}

impl MemoryCgroups {
    /// Finds the server's memory cgroup and makes `ruststack-<pid>` under it. Err says why
    /// memory limits are not available on this host.
    pub fn detect() -> Result<MemoryCgroups, String> {
        let (version, dir) = Self::find()?;
        Self::open_in(version, &dir, KERNEL)
    }

    /// The cgroup version and the directory of the server's own memory cgroup.
    fn find() -> Result<(Version, PathBuf), String> {
        let own =
            std::fs::read_to_string("/proc/self/cgroup").map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
        let mounts = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
        // cgroup v1 with a memory hierarchy wins: the memory controller then cannot be on v2.
        let v1 = own.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            controllers.split(',').any(|c| c == "memory").then(|| path.to_string())
        });
        let (version, dir) = if let Some(path) = v1 {
            let (root, mount) =
                mount_of(&mounts, |fstype, opts| fstype == "cgroup" && opts.split(',').any(|o| o == "memory"))
                    .ok_or("no cgroup v1 memory hierarchy is mounted")?;
            (Version::V1, join_cgroup(&mount, &root, &path))
        } else {
            let path = own
                .lines()
                .find_map(|l| l.strip_prefix("0::"))
                .ok_or("this process is in no memory cgroup (neither v1 nor v2)")?;
            let (root, mount) =
                mount_of(&mounts, |fstype, _| fstype == "cgroup2").ok_or("no cgroup v2 hierarchy is mounted")?;
            (Version::V2, join_cgroup(&mount, &root, path))
        };
        Ok((version, dir))
    }

    /// Makes the server's tree `ruststack-<pid>` under `dir`, its own memory cgroup.
    fn open_in(version: Version, dir: &Path, fs: Fs) -> Result<MemoryCgroups, String> {
        if version == Version::V2 {
            let controllers = std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
            if !controllers.split_whitespace().any(|c| c == "memory") {
                return Err(format!("cgroup v2: the memory controller is not available in {}", dir.display()));
            }
            enable_memory(dir)?;
        }
        let base = dir.join(format!("ruststack-{}", std::process::id()));
        remove_stale(dir, fs);
        match (fs.mkdir)(&base, version) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("cannot create {}: {e}", base.display())),
        }
        if version == Version::V2 {
            enable_memory(&base)?;
        }
        Ok(MemoryCgroups { version, base, next: AtomicU64::new(1), fs })
    }

    /// `v1` or `v2`, and where the tree is: for the log.
    pub fn describe(&self) -> String {
        let v = if self.version == Version::V1 { "v1" } else { "v2" };
        format!("cgroup {v} at {}", self.base.display())
    }

    /// A new cgroup limited to `limit_bytes` of memory and no swap.
    pub fn create(&self, limit_bytes: u64) -> std::io::Result<EnvCgroup> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let dir = self.base.join(format!("env-{n}"));
        (self.fs.mkdir)(&dir, self.version)?;
        let set = || -> std::io::Result<File> {
            let limit = limit_bytes.to_string();
            match self.version {
                Version::V1 => {
                    write(&dir, "memory.limit_in_bytes", &limit)?;
                    // Present only with swap accounting; it must be at least the limit above.
                    let _ = write(&dir, "memory.memsw.limit_in_bytes", &limit);
                    let _ = write(&dir, "memory.swappiness", "0");
                }
                Version::V2 => {
                    write(&dir, "memory.max", &limit)?;
                    let _ = write(&dir, "memory.swap.max", "0");
                    // The whole environment goes, as on AWS, not just its largest process.
                    let _ = write(&dir, "memory.oom.group", "1");
                }
            }
            // std opens files close-on-exec.
            std::fs::OpenOptions::new().write(true).open(dir.join("cgroup.procs"))
        };
        match set() {
            Ok(procs) => Ok(EnvCgroup { version: self.version, dir, procs, fs: self.fs }),
            Err(e) => {
                let _ = (self.fs.rmdir)(&dir);
                Err(e)
            }
        }
    }
}

impl Drop for MemoryCgroups {
    fn drop(&mut self) {
        let _ = (self.fs.rmdir)(&self.base);
    }
}

impl EnvCgroup {
    /// The open `cgroup.procs`: a forked child joins by writing `0` to it.
    pub fn procs_fd(&self) -> RawFd {
        self.procs.as_raw_fd()
    }

    /// The cgroup's OOM-kill counter, open (None where the kernel does not have the file).
    pub fn oom_count(&self) -> Option<OomCount> {
        let file = match self.version {
            Version::V1 => "memory.oom_control",
            Version::V2 => "memory.events",
        };
        OomCount::open(&self.dir.join(file))
    }

    /// The cgroup's memory high-water mark, in bytes.
    pub fn peak_bytes(&self) -> Option<u64> {
        let file = match self.version {
            Version::V1 => "memory.max_usage_in_bytes",
            Version::V2 => "memory.peak",
        };
        std::fs::read_to_string(self.dir.join(file)).ok()?.trim().parse().ok()
    }

    /// Kills whatever still runs in the cgroup, then removes it (a bounded wait for the
    /// killed processes to leave it). Blocking: call it from the blocking pool.
    pub fn remove(self) {
        for _ in 0..100 {
            kill_all(&self.dir, self.version);
            match (self.fs.rmdir)(&self.dir) {
                Ok(()) => return,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
                Err(e) => {
                    tracing::debug!(cgroup = %self.dir.display(), error = %e, "cannot remove an environment's cgroup");
                    return;
                }
            }
        }
        tracing::debug!(cgroup = %self.dir.display(), "an environment's cgroup stayed busy; left behind");
    }
}

impl OomCount {
    /// Opens a `memory.events` or `memory.oom_control` file; None if it cannot be read or
    /// has no `oom_kill` count.
    pub fn open(path: &Path) -> Option<OomCount> {
        let count = OomCount { file: File::open(path).ok()?, seen: AtomicU64::new(0) };
        count.read()?;
        Some(count)
    }

    /// How many processes of the cgroup the kernel's OOM killer has killed so far (None where
    /// the file has no `oom_kill` line: cgroup v1 before Linux 4.13).
    pub fn read(&self) -> Option<u64> {
        let mut buf = [0u8; 1024];
        let n = self.file.read_at(&mut buf, 0).ok()?;
        oom_kills_in(buf.get(..n)?)
    }

    /// Whether the OOM killer has killed a process of the cgroup since the last call (or
    /// since the cgroup was made): each kill is reported once.
    pub fn new_kills(&self) -> bool {
        let Some(now) = self.read() else { return false };
        self.seen.fetch_max(now, Ordering::SeqCst) < now
    }
}

/// The `oom_kill N` count in `memory.events` (v2) or `memory.oom_control` (v1).
fn oom_kills_in(text: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(text).ok()?;
    text.lines().find_map(|l| l.strip_prefix("oom_kill ")).and_then(|n| n.trim().parse().ok())
}

fn write(dir: &Path, file: &str, value: &str) -> std::io::Result<()> {
    std::fs::OpenOptions::new().write(true).open(dir.join(file))?.write_all(value.as_bytes())
}

/// Makes sure `dir` hands the memory controller to its children (cgroup v2).
fn enable_memory(dir: &Path) -> Result<(), String> {
    let now = std::fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
    if now.split_whitespace().any(|c| c == "memory") {
        return Ok(());
    }
    write(dir, "cgroup.subtree_control", "+memory").map_err(|e| {
        if e.raw_os_error() == Some(libc::EBUSY) {
            format!(
                "cgroup v2: {} holds processes, so it cannot give the memory controller to children; \
                 start ruststack in a cgroup of its own with the memory controller delegated",
                dir.display()
            )
        } else {
            format!("cgroup v2: cannot enable the memory controller in {}: {e}", dir.display())
        }
    })
}

/// SIGKILLs every process in a cgroup (`cgroup.kill` on v2 kernels that have it).
fn kill_all(dir: &Path, version: Version) {
    if version == Version::V2 && write(dir, "cgroup.kill", "1").is_ok() {
        return;
    }
    let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) else { return };
    for pid in procs.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
        // SAFETY: plain syscall on a pid listed in our own environment's cgroup.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

/// Removes the (empty) trees of earlier servers whose process is gone.
fn remove_stale(dir: &Path, fs: Fs) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("ruststack-")).and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        // SAFETY: signal 0 only checks that the process exists.
        let alive =
            unsafe { libc::kill(pid, 0) } == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
        if pid as u32 == std::process::id() || alive {
            continue;
        }
        if let Ok(envs) = std::fs::read_dir(e.path()) {
            for env in envs.flatten().filter(|x| x.path().is_dir()) {
                let _ = (fs.rmdir)(&env.path());
            }
        }
        let _ = (fs.rmdir)(&e.path());
    }
}

/// The mount (root inside the hierarchy, mount point) of the first cgroup filesystem that
/// `want(fstype, super options)` accepts, from `/proc/self/mountinfo`.
fn mount_of(mountinfo: &str, want: impl Fn(&str, &str) -> bool) -> Option<(String, PathBuf)> {
    mountinfo.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let f: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        let (root, mount) = (f.get(3)?, f.get(4)?);
        let (fstype, opts) = (r.first()?, r.get(2).copied().unwrap_or(""));
        want(fstype, opts).then(|| (root.to_string(), PathBuf::from(mount)))
    })
}

/// The directory of cgroup `path` under a hierarchy mounted at `mount` from `root`.
fn join_cgroup(mount: &Path, root: &str, path: &str) -> PathBuf {
    let rel = if root != "/" { path.strip_prefix(root).unwrap_or(path) } else { path };
    mount.join(rel.trim_start_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_memory_mount() {
        let info = "30 25 0:26 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
                    33 25 0:29 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
                    40 25 0:35 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        let m = mount_of(info, |t, o| t == "cgroup" && o.split(',').any(|x| x == "memory"));
        assert_eq!(m, Some(("/".to_string(), PathBuf::from("/sys/fs/cgroup/memory"))));
        let v2 = mount_of(info, |t, _| t == "cgroup2");
        assert_eq!(v2, Some(("/".to_string(), PathBuf::from("/sys/fs/cgroup/unified"))));
    }

    #[test]
    fn joins_paths_under_a_namespaced_root() {
        let m = Path::new("/sys/fs/cgroup");
        assert_eq!(join_cgroup(m, "/", "/a/b"), PathBuf::from("/sys/fs/cgroup/a/b"));
        assert_eq!(join_cgroup(m, "/docker/x", "/docker/x/a"), PathBuf::from("/sys/fs/cgroup/a"));
        assert_eq!(join_cgroup(m, "/", "/"), PathBuf::from("/sys/fs/cgroup"));
    }
}
