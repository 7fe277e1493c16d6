//! Watches directories for changes (inotify, through the `notify` crate) and reports each
//! burst of changes to a directory once, after it has been quiet for [`QUIET`].
//!
//! Everything runs on threads of its own, never on the async workers: `notify`'s event
//! thread reads inotify and hands each event to a channel; one watcher thread owns the
//! `notify` watcher, filters the events, debounces them per directory and calls the
//! callback. The callback runs on that thread.
//!
//! The directories are the user's own: this module only reads them (inotify watches and
//! `stat`), never writes, moves or deletes anything in them.
//!
//! A watched directory that is deleted, or replaced by another one (`rm -rf dist && mkdir
//! dist`, a rename over it), is noticed by its device and inode, checked every [`TICK`]: the
//! watch is set again on whatever now has the path, and the change is reported.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use notify::{EventKind, RecursiveMode, Watcher as _};

/// How long a directory must be quiet before its changes are reported: a build that writes
/// 500 files is one change.
pub const QUIET: Duration = Duration::from_millis(100);
/// How often each directory's identity (device, inode) is checked.
const TICK: Duration = Duration::from_millis(500);

/// Path components whose changes never count: caches and version control.
const IGNORED_DIRS: &[&str] = &["__pycache__", ".git"];

/// Which changed paths count.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// `--hot-reload-patterns`: when set, only paths (relative to the watched directory)
    /// matching one of them count.
    patterns: Option<GlobSet>,
}

impl Filter {
    /// A filter that counts every change except the ignored ones, or (with patterns) only
    /// changes to paths that match one of `patterns`. `*` and `?` stay within one path
    /// component; `**` spans any number of them (`**/dist/**/*.js`).
    pub fn new(patterns: &[String]) -> Result<Filter, String> {
        let patterns: Vec<&str> = patterns.iter().map(|p| p.trim()).filter(|p| !p.is_empty()).collect();
        if patterns.is_empty() {
            return Ok(Filter { patterns: None });
        }
        let mut set = GlobSetBuilder::new();
        for p in patterns {
            let glob = GlobBuilder::new(p)
                .literal_separator(true)
                .build()
                .map_err(|e| format!("--hot-reload-patterns: '{p}' is not a valid glob: {e}"))?;
            set.add(glob);
        }
        let set = set.build().map_err(|e| format!("--hot-reload-patterns: {e}"))?;
        Ok(Filter { patterns: Some(set) })
    }

    /// Whether a change of `path`, under the watched directory `root`, counts: never for
    /// `__pycache__`, `.git`, `node_modules/.cache` or an editor's swap and backup files
    /// (`*.swp`, `*~`, `.#*`, vim's `4913` probe); with patterns, only for a matching path.
    /// A change of the root itself (deleted, replaced) always counts.
    pub fn counts(&self, root: &Path, path: &Path) -> bool {
        let Ok(rel) = path.strip_prefix(root) else { return false };
        let parts: Vec<&str> = rel.components().filter_map(|c| c.as_os_str().to_str()).collect();
        let Some(name) = parts.last() else { return true };
        if parts.iter().any(|p| IGNORED_DIRS.contains(p)) {
            return false;
        }
        if parts.windows(2).any(|w| w[0] == "node_modules" && w[1] == ".cache") {
            return false;
        }
        if is_editor_file(name) {
            return false;
        }
        match &self.patterns {
            None => true,
            Some(set) => set.is_match(parts.join("/")) || set.is_match(path),
        }
    }
}

/// Swap, backup and lock files editors write next to the file being edited.
fn is_editor_file(name: &str) -> bool {
    name == "4913"
        || name.ends_with('~')
        || name.starts_with(".#")
        || [".swp", ".swo", ".swx", ".swpx"].iter().any(|ext| name.ends_with(ext))
}

/// One burst of changes to a watched directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub root: PathBuf,
    /// The first path that changed, relative to the root (empty: the root itself).
    pub first: PathBuf,
    /// Distinct paths that changed in the burst.
    pub count: usize,
    /// The directory no longer exists.
    pub missing: bool,
}

enum Msg {
    Event(notify::Result<notify::Event>),
    /// The directories to watch from now on.
    Set(Vec<PathBuf>),
}

/// The watcher thread's handle. Dropping it stops the thread (and the watches).
pub struct DirWatcher {
    tx: mpsc::Sender<Msg>,
}

impl DirWatcher {
    /// Starts the watcher thread; `on_change` is called on it for every burst of changes.
    pub fn start(filter: Filter, on_change: impl FnMut(Change) + Send + 'static) -> Result<DirWatcher, String> {
        let (tx, rx) = mpsc::channel();
        let events = tx.clone();
        let watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            let _ = events.send(Msg::Event(ev));
        })
        .map_err(|e| format!("cannot start the file watcher: {e}"))?;
        let state = State { watcher, filter, roots: HashMap::new(), on_change: Box::new(on_change) };
        std::thread::Builder::new()
            .name("hot-reload-watch".into())
            .spawn(move || state.run(rx))
            .map_err(|e| format!("cannot start the file watcher thread: {e}"))?;
        Ok(DirWatcher { tx })
    }

    /// Watches exactly these directories from now on (recursively); the others are let go.
    pub fn set(&self, dirs: Vec<PathBuf>) {
        let _ = self.tx.send(Msg::Set(dirs));
    }
}

/// The files (and links) under a directory just created, at most [`MAX_WALK`] of them, in
/// name order (the order a build most likely wrote them in: the burst's first file is
/// reported, and a directory's own order is its hash order).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = files_walked(dir);
    out.sort();
    out
}

fn files_walked(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(_) => out.push(e.path()),
                Err(_) => {}
            }
            if out.len() >= MAX_WALK {
                return out;
            }
        }
    }
    out
}

/// Most files one new directory's walk reports.
const MAX_WALK: usize = 10_000;

/// A directory's identity: another inode at the same path is another directory.
fn identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().filter(|m| m.is_dir()).map(|m| (m.dev(), m.ino()))
}

struct Root {
    /// What was watched at this path (None: nothing was there).
    ident: Option<(u64, u64)>,
    pending: Option<Pending>,
    /// Directories created under it since the last change was reported, and when the last
    /// one was: walked again once the burst is quiet (see [`State::fire`]).
    new_dirs: Vec<PathBuf>,
    dirs_at: Option<Instant>,
}

struct Pending {
    first: PathBuf,
    /// Every path that changed (relative), up to [`MAX_PATHS`]; beyond, only counted.
    paths: HashSet<PathBuf>,
    more: usize,
    last: Instant,
}

/// Most distinct paths one burst remembers.
const MAX_PATHS: usize = 100_000;

impl Root {
    /// When this root's burst is quiet: its last change, or its last new directory, and
    /// [`QUIET`] after.
    fn due(&self) -> Option<Instant> {
        let last = match (self.pending.as_ref().map(|p| p.last), self.dirs_at) {
            (Some(a), Some(b)) => a.max(b),
            (a, b) => a.or(b)?,
        };
        Some(last + QUIET)
    }
}

impl Pending {
    fn new(first: PathBuf, now: Instant) -> Pending {
        Pending { first, paths: HashSet::new(), more: 0, last: now }
    }

    fn add(&mut self, rel: PathBuf, now: Instant) {
        if self.paths.len() < MAX_PATHS {
            self.paths.insert(rel);
        } else if !self.paths.contains(&rel) {
            self.more += 1;
        }
        self.last = now;
    }

    fn count(&self) -> usize {
        self.paths.len() + self.more
    }
}

struct State {
    watcher: notify::RecommendedWatcher,
    filter: Filter,
    roots: HashMap<PathBuf, Root>,
    on_change: Box<dyn FnMut(Change) + Send>,
}

impl State {
    fn run(mut self, rx: mpsc::Receiver<Msg>) {
        let mut next_tick = Instant::now() + TICK;
        loop {
            let now = Instant::now();
            let due = self.roots.values().filter_map(Root::due).min();
            let wake = due.map_or(next_tick, |d| d.min(next_tick));
            match rx.recv_timeout(wake.saturating_duration_since(now)) {
                Ok(Msg::Event(Ok(ev))) => self.note(ev),
                Ok(Msg::Event(Err(e))) => tracing::warn!(error = %e, "hot reload: file watcher error"),
                Ok(Msg::Set(dirs)) => self.set(dirs),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
            let now = Instant::now();
            if now >= next_tick {
                next_tick = now + TICK;
                self.check_identities(now);
            }
            let ready: Vec<PathBuf> =
                self.roots.iter().filter(|(_, r)| r.due().is_some_and(|d| now >= d)).map(|(k, _)| k.clone()).collect();
            for root in ready {
                self.fire(&root);
            }
        }
    }

    fn note(&mut self, ev: notify::Event) {
        let counts = match ev.kind {
            // Opening and closing (reads by the runtime itself) change nothing.
            EventKind::Access(_) => false,
            EventKind::Any | EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) => true,
            EventKind::Other => ev.need_rescan(),
        };
        if !counts {
            return;
        }
        let now = Instant::now();
        // A new directory is no change by itself, but files written into it before its own
        // watch was set are reported by no event: they are found by walking it.
        let paths = if matches!(ev.kind, EventKind::Create(notify::event::CreateKind::Folder)) {
            ev.paths.iter().flat_map(|d| files_under(d)).collect()
        } else {
            ev.paths.clone()
        };
        if paths.is_empty()
            && !ev.need_rescan()
            && !matches!(ev.kind, EventKind::Create(notify::event::CreateKind::Folder))
        {
            return;
        }
        let filter = &self.filter;
        for (root, r) in self.roots.iter_mut() {
            if matches!(ev.kind, EventKind::Create(notify::event::CreateKind::Folder)) {
                r.new_dirs.extend(ev.paths.iter().filter(|d| d.starts_with(root)).cloned());
                r.dirs_at = Some(now);
            }
            // A lost event queue (overflow) may have held a change of any directory.
            let hits: Vec<PathBuf> = if ev.need_rescan() {
                vec![PathBuf::new()]
            } else {
                paths
                    .iter()
                    .filter(|p| filter.counts(root, p))
                    .map(|p| p.strip_prefix(root).map(Path::to_path_buf).unwrap_or_default())
                    .collect()
            };
            for rel in hits {
                r.pending.get_or_insert_with(|| Pending::new(rel.clone(), now)).add(rel, now);
            }
        }
    }

    fn set(&mut self, dirs: Vec<PathBuf>) {
        let gone: Vec<PathBuf> = self.roots.keys().filter(|k| !dirs.contains(k)).cloned().collect();
        for root in gone {
            let _ = self.watcher.unwatch(&root);
            self.roots.remove(&root);
        }
        for dir in dirs {
            if self.roots.contains_key(&dir) {
                continue;
            }
            let ident = identity(&dir);
            if ident.is_some()
                && let Err(e) = self.watcher.watch(&dir, RecursiveMode::Recursive)
            {
                tracing::warn!(dir = %dir.display(), error = %e, "hot reload: cannot watch the directory");
            }
            tracing::info!(dir = %dir.display(), exists = ident.is_some(), "hot reload: watching");
            self.roots.insert(dir, Root { ident, pending: None, new_dirs: Vec::new(), dirs_at: None });
        }
    }

    /// A directory deleted, re-created or replaced since it was watched is a change.
    fn check_identities(&mut self, now: Instant) {
        for (root, r) in self.roots.iter_mut() {
            if r.pending.is_none() && identity(root) != r.ident {
                let mut p = Pending::new(PathBuf::new(), now);
                p.add(PathBuf::new(), now.checked_sub(QUIET).unwrap_or(now));
                r.pending = Some(p);
            }
        }
    }

    fn fire(&mut self, root: &Path) {
        let Some(r) = self.roots.get_mut(root) else { return };
        // A new directory's walk can run before the watcher has set its watch: what is
        // written in between has no event. Once the burst is quiet the watch is set, and a
        // second walk finds such files.
        r.dirs_at = None;
        let now = Instant::now();
        for dir in std::mem::take(&mut r.new_dirs) {
            for f in files_under(&dir) {
                if self.filter.counts(root, &f) {
                    let rel = f.strip_prefix(root).map(Path::to_path_buf).unwrap_or_default();
                    r.pending.get_or_insert_with(|| Pending::new(rel.clone(), now)).add(rel, now);
                }
            }
        }
        let Some(p) = r.pending.take() else { return };
        let ident = identity(root);
        if ident != r.ident {
            // Whatever the path names now gets the watch.
            let _ = self.watcher.unwatch(root);
            if ident.is_some()
                && let Err(e) = self.watcher.watch(root, RecursiveMode::Recursive)
            {
                tracing::warn!(dir = %root.display(), error = %e, "hot reload: cannot watch the directory");
            }
            r.ident = ident;
        }
        let count = p.count();
        (self.on_change)(Change { root: root.to_path_buf(), first: p.first, count, missing: ident.is_none() });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(f: &Filter, rel: &str) -> bool {
        f.counts(Path::new("/w"), &Path::new("/w").join(rel))
    }

    #[test]
    fn ignores_caches_vcs_and_editor_files() {
        let f = Filter::new(&[]).unwrap();
        for rel in ["app.py", "src/handler.js", "bootstrap", "node_modules/x/index.js", "a.swap"] {
            assert!(counts(&f, rel), "{rel}");
        }
        for rel in [
            "__pycache__/app.cpython-311.pyc",
            "pkg/__pycache__/x.pyc",
            ".git/index",
            ".git/objects/ab/cd",
            "node_modules/.cache/babel/x.json",
            ".app.py.swp",
            "src/.x.js.swx",
            "app.py~",
            ".#app.py",
            "4913",
            "src/4913",
        ] {
            assert!(!counts(&f, rel), "{rel}");
        }
        // The root itself (deleted or replaced) always counts; other trees never.
        assert!(f.counts(Path::new("/w"), Path::new("/w")));
        assert!(!f.counts(Path::new("/w"), Path::new("/other/app.py")));
    }

    #[test]
    fn patterns_limit_what_counts() {
        let f = Filter::new(&["**/dist/**/*.js".into(), " *.py ".into()]).unwrap();
        assert!(counts(&f, "dist/app.js"));
        assert!(counts(&f, "web/dist/js/app.js"));
        assert!(counts(&f, "app.py"));
        assert!(!counts(&f, "src/app.py"), "* stays within one component");
        assert!(!counts(&f, "src/app.js"));
        assert!(!counts(&f, "dist/app.js.map"));
        assert!(!counts(&f, "dist/__pycache__/x.js"), "ignored paths stay ignored");
        assert!(Filter::new(&["a[".into()]).unwrap_err().contains("not a valid glob"));
        assert!(Filter::new(&["".into()]).unwrap().patterns.is_none());
    }

    /// A real inotify watch on a temp dir: one burst of writes is one change; ignored paths
    /// are none; a deleted directory is reported missing.
    #[test]
    fn debounces_and_reports_missing() {
        let dir = std::env::temp_dir().join(format!("ruststack-watch-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(dir.join("__pycache__")).unwrap();
        let (tx, rx) = mpsc::channel();
        let w = DirWatcher::start(Filter::new(&[]).unwrap(), move |c| {
            let _ = tx.send(c);
        })
        .unwrap();
        w.set(vec![dir.clone()]);
        // Wait until the watch is set: a file written before it would be missed.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            std::fs::write(dir.join("probe.txt"), b"x").unwrap();
            if let Ok(c) = rx.recv_timeout(Duration::from_millis(300)) {
                assert_eq!(c.first, PathBuf::from("probe.txt"));
                break;
            }
            assert!(Instant::now() < deadline, "the watch never reported a change");
        }
        // Drain what the probe loop may have left.
        while rx.recv_timeout(QUIET * 3).is_ok() {}
        std::fs::write(dir.join("__pycache__/x.pyc"), b"x").unwrap();
        std::fs::write(dir.join(".x.swp"), b"x").unwrap();
        // The burst is one change only if no gap between two writes reached the quiet period:
        // on a loaded machine a writer can stall that long, and then two changes are right.
        let mut gap = Duration::ZERO;
        let mut last = Instant::now();
        for i in 0..200 {
            std::fs::write(dir.join(format!("f{i}.txt")), b"x").unwrap();
            gap = gap.max(last.elapsed());
            last = Instant::now();
        }
        let c = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(c.first, PathBuf::from("f0.txt"), "{c:?}");
        assert!(!c.missing);
        if gap < QUIET / 2 {
            assert_eq!(c.count, 200, "{c:?}");
            assert!(rx.recv_timeout(QUIET * 4).is_err(), "one burst is one change");
        } else {
            let mut total = c.count;
            while let Ok(c) = rx.recv_timeout(QUIET * 4) {
                assert!(!c.missing, "{c:?}");
                total += c.count;
            }
            assert!(total >= 200, "a writer stalled {gap:?}; the changes held {total} paths");
        }
        // Removing the files and then the directory: if the removal stalls past the quiet
        // period, the files' removal is reported first; the directory's loss comes after.
        std::fs::remove_dir_all(&dir).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let c =
                rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).expect("no change said missing");
            if c.missing {
                break;
            }
        }
    }
}
