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
    /// The memory limit last set, in bytes.
    limit: u64,
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
        self.create_named("env", limit_bytes)
    }

    /// [`Self::create`] for a spare runtime: `spare-N` until [`EnvCgroup::become_env`] makes
    /// it `env-N`, so that only live environments have an `env-` cgroup.
    pub fn create_spare(&self, limit_bytes: u64) -> std::io::Result<EnvCgroup> {
        self.create_named("spare", limit_bytes)
    }

    fn create_named(&self, prefix: &str, limit_bytes: u64) -> std::io::Result<EnvCgroup> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let dir = self.base.join(format!("{prefix}-{n}"));
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
            Ok(procs) => Ok(EnvCgroup { version: self.version, dir, procs, fs: self.fs, limit: limit_bytes }),
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

    /// Renames a spare's `spare-N` to `env-N` (a rename in the same parent keeps its
    /// processes, limits and counters). Blocking.
    pub fn become_env(&mut self) -> std::io::Result<()> {
        let name = self.dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let Some(n) = name.strip_prefix("spare-") else { return Ok(()) };
        let to = self.dir.with_file_name(format!("env-{n}"));
        std::fs::rename(&self.dir, &to)?;
        self.dir = to;
        Ok(())
    }

    /// Changes the memory limit (of a cgroup made ahead, with a pre-forked runtime in it).
    /// Blocking (small cgroupfs writes). Fails when the processes in it already use more.
    pub fn set_limit(&mut self, limit_bytes: u64) -> std::io::Result<()> {
        if limit_bytes == self.limit {
            return Ok(());
        }
        let limit = limit_bytes.to_string();
        match self.version {
            Version::V1 => {
                // v1 keeps memsw.limit ≥ limit: the one that makes room goes first. memsw is
                // there only with swap accounting.
                let memsw = self.dir.join("memory.memsw.limit_in_bytes").exists();
                if limit_bytes > self.limit {
                    if memsw {
                        write(&self.dir, "memory.memsw.limit_in_bytes", &limit)?;
                    }
                    write(&self.dir, "memory.limit_in_bytes", &limit)?;
                } else {
                    write(&self.dir, "memory.limit_in_bytes", &limit)?;
                    if memsw {
                        write(&self.dir, "memory.memsw.limit_in_bytes", &limit)?;
                    }
                }
            }
            Version::V2 => write(&self.dir, "memory.max", &limit)?,
        }
        self.limit = limit_bytes;
        Ok(())
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

    /// A fake cgroupfs: a new directory gets (empty) control files as the kernel's would, and
    /// removal fails with EBUSY while a listed process still runs, unless `cgroup.kill` was
    /// written (v2 kills the lot itself).
    const FAKE: Fs = Fs { mkdir: fake_mkdir, rmdir: fake_rmdir };

    fn fake_mkdir(dir: &Path, version: Version) -> std::io::Result<()> {
        std::fs::create_dir(dir)?;
        let files: &[(&str, &str)] = match version {
            Version::V1 => &[
                ("memory.limit_in_bytes", ""),
                ("memory.memsw.limit_in_bytes", ""),
                ("memory.swappiness", ""),
                ("memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n"),
                ("memory.max_usage_in_bytes", "0\n"),
            ],
            Version::V2 => &[
                ("memory.max", ""),
                ("memory.swap.max", ""),
                ("memory.oom.group", ""),
                ("memory.events", "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n"),
                ("memory.peak", "0\n"),
                ("cgroup.kill", ""),
                ("cgroup.subtree_control", ""),
            ],
        };
        std::fs::write(dir.join("cgroup.procs"), "")?;
        for (name, text) in files {
            std::fs::write(dir.join(name), text)?;
        }
        Ok(())
    }

    fn fake_rmdir(dir: &Path) -> std::io::Result<()> {
        let killed = std::fs::read_to_string(dir.join("cgroup.kill")).is_ok_and(|k| k == "1");
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        if !killed && procs.split_whitespace().any(running) {
            return Err(std::io::Error::from_raw_os_error(libc::EBUSY));
        }
        std::fs::remove_dir_all(dir)
    }

    /// Whether a process runs (a zombie has left its cgroup).
    fn running(pid: &str) -> bool {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with(['Z', 'X']))
    }

    /// A scratch directory, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new() -> Scratch {
            let dir = std::env::temp_dir().join(format!("ruststack-cgroup-test-{}", uuid::Uuid::new_v4().simple()));
            std::fs::create_dir(&dir).unwrap();
            Scratch(dir)
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn read(dir: &Path, file: &str) -> String {
        std::fs::read_to_string(dir.join(file)).unwrap()
    }

    /// Joins `child` to the cgroup as the runtime's fork does: a write to the open cgroup.procs.
    fn add(cg: &EnvCgroup, child: &std::process::Child) {
        let pid = child.id().to_string();
        // SAFETY: writes `pid`'s bytes to an fd the cgroup keeps open.
        let n = unsafe { libc::write(cg.procs_fd(), pid.as_ptr().cast(), pid.len()) };
        assert_eq!(n, pid.len() as isize);
    }

    fn sleeper() -> std::process::Child {
        std::process::Command::new("sleep").arg("30").spawn().unwrap()
    }

    /// A server tree left by a process that is gone, with an environment in it.
    fn stale_tree(root: &Path) -> PathBuf {
        let stale = root.join("ruststack-999999999");
        std::fs::create_dir_all(stale.join("env-1")).unwrap();
        stale
    }

    #[test]
    fn v2_against_a_fake_tree() {
        let root = Scratch::new();
        let root = root.path();
        std::fs::write(root.join("cgroup.controllers"), "cpu io memory pids\n").unwrap();
        std::fs::write(root.join("cgroup.subtree_control"), "").unwrap();
        let stale = stale_tree(root);
        let cgroups = MemoryCgroups::open_in(Version::V2, root, FAKE).unwrap();
        let base = root.join(format!("ruststack-{}", std::process::id()));
        assert_eq!(cgroups.base, base);
        assert!(base.is_dir() && !stale.exists(), "the tree is made, a dead server's removed");
        // The memory controller is handed down to the server's tree and on to its environments.
        assert_eq!(read(root, "cgroup.subtree_control"), "+memory");
        assert_eq!(read(&base, "cgroup.subtree_control"), "+memory");
        assert!(cgroups.describe().starts_with("cgroup v2 at "));

        let cg = cgroups.create(128 << 20).unwrap();
        let dir = base.join("env-1");
        assert_eq!(cg.dir, dir);
        assert_eq!(read(&dir, "memory.max"), "134217728");
        assert_eq!(read(&dir, "memory.swap.max"), "0");
        assert_eq!(read(&dir, "memory.oom.group"), "1");
        assert_eq!(cgroups.create(1 << 20).unwrap().dir, base.join("env-2"));

        let mut child = sleeper();
        add(&cg, &child);
        assert_eq!(read(&dir, "cgroup.procs"), child.id().to_string());

        std::fs::write(dir.join("memory.peak"), "98765432\n").unwrap();
        assert_eq!(cg.peak_bytes(), Some(98_765_432));

        let oom = cg.oom_count().unwrap();
        assert_eq!(oom.read(), Some(0));
        assert!(!oom.new_kills());
        std::fs::write(dir.join("memory.events"), "low 0\nhigh 0\nmax 9\noom 2\noom_kill 2\noom_group_kill 1\n")
            .unwrap();
        assert_eq!(oom.read(), Some(2));
        assert!(oom.new_kills(), "two kills since the last look");
        assert!(!oom.new_kills(), "each kill is told once");
        std::fs::write(dir.join("memory.events"), "oom_kill 3\n").unwrap();
        assert!(oom.new_kills());

        // Removal kills through cgroup.kill (the fake refuses an rmdir before it), then rmdirs.
        cg.remove();
        assert!(!dir.exists());
        child.kill().unwrap();
        child.wait().unwrap();
        drop(cgroups);
        assert!(!base.join("env-1").exists());
    }

    #[test]
    fn v2_without_the_memory_controller_says_why() {
        let root = Scratch::new();
        std::fs::write(root.path().join("cgroup.controllers"), "cpu pids\n").unwrap();
        let err = MemoryCgroups::open_in(Version::V2, root.path(), FAKE).unwrap_err();
        assert!(err.contains("memory controller is not available"), "{err}");
    }

    #[test]
    fn v1_against_a_fake_tree() {
        use std::os::unix::process::ExitStatusExt;
        let root = Scratch::new();
        let root = root.path();
        let stale = stale_tree(root);
        let cgroups = MemoryCgroups::open_in(Version::V1, root, FAKE).unwrap();
        let base = root.join(format!("ruststack-{}", std::process::id()));
        assert!(base.is_dir() && !stale.exists());
        assert!(cgroups.describe().starts_with("cgroup v1 at "));

        let cg = cgroups.create(256 << 20).unwrap();
        let dir = base.join("env-1");
        assert_eq!(read(&dir, "memory.limit_in_bytes"), "268435456");
        assert_eq!(read(&dir, "memory.memsw.limit_in_bytes"), "268435456");
        assert_eq!(read(&dir, "memory.swappiness"), "0");

        let mut child = sleeper();
        add(&cg, &child);
        assert_eq!(read(&dir, "cgroup.procs"), child.id().to_string());

        std::fs::write(dir.join("memory.max_usage_in_bytes"), "4096\n").unwrap();
        assert_eq!(cg.peak_bytes(), Some(4096));

        let oom = cg.oom_count().unwrap();
        assert!(!oom.new_kills());
        std::fs::write(dir.join("memory.oom_control"), "oom_kill_disable 0\nunder_oom 1\noom_kill 1\n").unwrap();
        assert!(oom.new_kills());
        assert!(!oom.new_kills());

        // Removal SIGKILLs the listed processes (v1 has no cgroup.kill), then rmdirs once
        // they are gone.
        let waiter = std::thread::spawn(move || child.wait().unwrap());
        cg.remove();
        assert!(!dir.exists());
        assert_eq!(waiter.join().unwrap().signal(), Some(libc::SIGKILL));
    }

    #[test]
    fn a_spare_cgroup_gets_its_limit_and_name_when_taken() {
        for version in [Version::V1, Version::V2] {
            let root = Scratch::new();
            let root = root.path();
            if version == Version::V2 {
                std::fs::write(root.join("cgroup.controllers"), "memory\n").unwrap();
                std::fs::write(root.join("cgroup.subtree_control"), "").unwrap();
            }
            let cgroups = MemoryCgroups::open_in(version, root, FAKE).unwrap();
            let mut cg = cgroups.create_spare(128 << 20).unwrap();
            let spare = cgroups.base.join("spare-1");
            assert_eq!(cg.dir, spare);
            let (limit, swap) = match version {
                Version::V1 => ("memory.limit_in_bytes", Some("memory.memsw.limit_in_bytes")),
                Version::V2 => ("memory.max", None),
            };
            // Raised, then lowered: both limits follow (v1's memsw ordering is the kernel's to
            // check; the fake only records, writing over what was there: same lengths).
            cg.set_limit(512 << 20).unwrap();
            assert_eq!(read(&spare, limit), "536870912");
            cg.set_limit(256 << 20).unwrap();
            assert_eq!(read(&spare, limit), "268435456");
            if let Some(swap) = swap {
                assert_eq!(read(&spare, swap), "268435456");
            }
            cg.become_env().unwrap();
            let env = cgroups.base.join("env-1");
            assert_eq!(cg.dir, env);
            assert!(env.is_dir() && !spare.exists());
            assert_eq!(read(&env, limit), "268435456");
            // Only a spare is renamed.
            cg.become_env().unwrap();
            assert_eq!(cg.dir, env);
            cg.remove();
            assert!(!env.exists());
        }
    }

    #[test]
    fn a_file_without_an_oom_kill_count_is_no_counter() {
        let dir = Scratch::new();
        let old = dir.path().join("memory.oom_control");
        std::fs::write(&old, "oom_kill_disable 0\nunder_oom 0\n").unwrap();
        assert!(OomCount::open(&old).is_none(), "cgroup v1 before Linux 4.13");
        assert!(OomCount::open(&dir.path().join("missing")).is_none());
        assert_eq!(oom_kills_in(b"oom 1\noom_kill 7\n"), Some(7));
        assert_eq!(oom_kills_in(b"oom_kill_disable 0\n"), None);
    }
}
