//! Hot reload: a function (or layer) whose code is a local directory, run in place and
//! reloaded when it changes.
//!
//! `Code={"S3Bucket": "hot-reload", "S3Key": "/abs/dir"}` (the bucket is
//! `--hot-reload-bucket`, LocalStack's convention) in CreateFunction, UpdateFunctionCode or
//! PublishLayerVersion's `Content` names the directory. Nothing is copied: the sandboxes run
//! the directory itself (docker bind-mounts it read-only at `/var/task`, or `/opt` for a
//! layer), and storage never touches it (it is no blob and no `code/<digest>` tree).
//!
//! The [`watch`](super::watch) thread reports each burst of changes to a directory once; the
//! function versions that run from it (by region and name: the same name in another region
//! is another function) have their environments retired through the engine's pool
//! ([`crate::engine::Engine::retire`]: idle ones at once, a busy one when its invocation
//! ends, provisioned ones too), and replacements start at once, so the next invoke finds
//! the new code ready or starting. Other functions are not touched. The first invocation on
//! a replacement says in its log what changed.
//!
//! GetFunction reports the directory as `Code.Location` (`file:///abs/dir`), with
//! LocalStack's placeholders: `CodeSha256` [`CODE_SHA256`], `CodeSize` 0.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, Weak};

use parking_lot::Mutex;

use super::Lambda;
use super::model::FunctionConfig;
use super::watch::{Change, DirWatcher, Filter};
use crate::aws::AwsError;
use crate::engine::{Engine, FunctionId};

/// `CodeSha256` of hot-reload code and layers: LocalStack's placeholder (there is no
/// archive to hash, and the directory changes under it).
pub const CODE_SHA256: &str = "hot-reloading-hash-not-available";

/// `Code.Location` / `Content.Location` of a hot-reload directory, as LocalStack renders it.
pub fn location(dir: &str) -> String {
    format!("file://{dir}")
}

/// Who runs from a directory: (region, function, version) triples.
type Users = HashMap<PathBuf, BTreeSet<(String, String, String)>>;

/// What the watcher thread and the invoke path share.
#[derive(Default)]
pub struct Shared {
    users: Mutex<Users>,
    /// A line for the log of a function's next cold start: which change restarted it.
    notes: Mutex<HashMap<(String, String), String>>,
}

impl Shared {
    /// The note about the change that retired this function's environments, if one is
    /// waiting for its next cold start.
    pub fn take_note(&self, region: &str, function: &str) -> Option<String> {
        let mut notes = self.notes.lock();
        if notes.is_empty() {
            return None;
        }
        notes.remove(&(region.to_string(), function.to_string()))
    }
}

/// The Lambda service's hot-reload state.
pub struct HotReload {
    /// `--hot-reload-bucket`.
    bucket: String,
    /// The account the functions belong to.
    account: String,
    filter: Filter,
    engine: Weak<Engine>,
    shared: Arc<Shared>,
    /// Started at the first hot-reload directory (`None` when it cannot start).
    watcher: OnceLock<Option<DirWatcher>>,
    /// One `sync` at a time, so that the last one's set of directories wins.
    syncing: Mutex<()>,
}

impl HotReload {
    pub fn new(cfg: &crate::config::Config, engine: &Arc<Engine>) -> HotReload {
        let filter = Filter::new(&cfg.hot_reload_patterns).unwrap_or_else(|e| {
            tracing::warn!("{e}: every change counts");
            Filter::default()
        });
        HotReload {
            bucket: cfg.hot_reload_bucket.clone(),
            account: cfg.account_id.clone(),
            filter,
            engine: Arc::downgrade(engine),
            shared: Arc::default(),
            watcher: OnceLock::new(),
            syncing: Mutex::new(()),
        }
    }

    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// The hot-reload directory a `Code` / `Content` object names, checked: `None` when it
    /// names none (a zip, or another bucket). The directory must be given by an absolute
    /// path and exist.
    pub fn dir_of(
        &self,
        zip_file: bool,
        s3_bucket: Option<&str>,
        s3_key: Option<&str>,
    ) -> Result<Option<String>, AwsError> {
        let Some(bucket) = s3_bucket else { return Ok(None) };
        // A ZipFile wins over S3Bucket, as everywhere else.
        if bucket != self.bucket || zip_file {
            return Ok(None);
        }
        let key = s3_key.unwrap_or_default().to_string();
        let path = Path::new(&key);
        if !path.is_absolute() {
            return Err(AwsError::invalid_param(format!(
                "When using hot reloading, the archive key has to be an absolute path! Your archive key: {key}"
            )));
        }
        // `/a/b/` and `/a/./b` are `/a/b`: one directory, one watch.
        let dir: PathBuf = path.components().collect();
        if dir == Path::new("/") {
            return Err(AwsError::invalid_param(
                "When using hot reloading, the archive key must name a code directory, not the root directory /",
            ));
        }
        // Called by CreateFunction, UpdateFunctionCode and PublishLayerVersion, on the blocking pool.
        match std::fs::metadata(&dir) {
            Ok(meta) if meta.is_dir() => Ok(Some(dir.display().to_string())),
            Ok(_) => Err(AwsError::invalid_param(format!(
                "When using hot reloading, the archive key must name a directory: {key} is not a directory"
            ))),
            Err(e) => Err(AwsError::invalid_param(format!(
                "When using hot reloading, the archive key must name an existing directory: {key} cannot be used ({e})"
            ))),
        }
    }

    /// Whether a function (of any region) runs from a watched directory.
    pub fn uses(&self, function: &str) -> bool {
        self.shared.users.lock().values().any(|u| u.iter().any(|(_, f, _)| f == function))
    }

    /// Watches exactly the hot-reload directories the stored functions and layers name
    /// (call after a change of them).
    pub fn sync(&self, lambda: &Lambda) {
        let _one = self.syncing.lock();
        let mut users: Users = HashMap::new();
        for (region, store) in lambda.stores.all() {
            for rec in store.list_functions() {
                for c in std::iter::once(&rec.latest).chain(rec.versions.values()) {
                    let dirs = c.hot_reload_dir.iter().chain(c.layers.iter().filter_map(|l| l.hot_reload_dir.as_ref()));
                    for d in dirs {
                        let user = (region.clone(), c.name.clone(), c.version.clone());
                        users.entry(PathBuf::from(d)).or_default().insert(user);
                    }
                }
            }
            for layer in store.list_layers() {
                for d in layer.versions.values().filter_map(|v| v.hot_reload_dir.as_ref()) {
                    users.entry(PathBuf::from(d)).or_default();
                }
            }
        }
        let dirs: Vec<PathBuf> = users.keys().cloned().collect();
        *self.shared.users.lock() = users;
        if dirs.is_empty() && self.watcher.get().is_none() {
            return;
        }
        if let Some(w) = self.watcher.get_or_init(|| self.start_watcher()) {
            w.set(dirs);
        }
    }

    fn start_watcher(&self) -> Option<DirWatcher> {
        // The callback retires environments, which spawns their stops on the runtime.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("hot reload: no runtime to retire environments on: changes are not watched");
            return None;
        };
        let shared = self.shared.clone();
        let engine = self.engine.clone();
        let account = self.account.clone();
        let started = DirWatcher::start(self.filter.clone(), move |change| {
            let _in_runtime = runtime.enter();
            on_change(&shared, &engine, &account, &change);
        });
        match started {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!("hot reload: {e}: changes are not watched");
                None
            }
        }
    }
}

/// A burst of changes to `change.root`: every function version that runs from it gets a
/// note for its next cold start, and its environments are retired (and replaced).
fn on_change(shared: &Shared, engine: &Weak<Engine>, account: &str, change: &Change) {
    let users = shared.users.lock().get(&change.root).cloned().unwrap_or_default();
    let dir = change.root.display().to_string();
    let file = change.first.display().to_string();
    let mut versions: BTreeMap<(&str, &str), Vec<String>> = BTreeMap::new();
    for (region, f, v) in &users {
        versions.entry((region.as_str(), f.as_str())).or_default().push(v.clone());
    }
    let functions: BTreeSet<&str> = versions.keys().map(|(_, f)| *f).collect();
    if change.missing {
        tracing::warn!(dir, ?functions, "hot reload: the directory is gone: invocations fail until it is back");
    } else {
        tracing::info!(
            dir,
            file,
            changes = change.count,
            ?functions,
            "hot reload: code changed: retiring environments"
        );
    }
    let what = if file.is_empty() {
        format!("{dir} was replaced")
    } else if change.count > 1 {
        format!("{file} changed in {dir} (and {} more files)", change.count - 1)
    } else {
        format!("{file} changed in {dir}")
    };
    let note = format!("[hot-reload] {what}: this environment was started for the new code\n");
    {
        let mut notes = shared.notes.lock();
        for (region, f) in versions.keys() {
            notes.insert((region.to_string(), f.to_string()), note.clone());
        }
    }
    if let Some(engine) = engine.upgrade() {
        for ((region, name), versions) in &versions {
            let id = FunctionId { account: account.to_string(), region: region.to_string(), name: name.to_string() };
            // A directory that is gone has nothing to start: invokes get its init error.
            engine.retire(&id, versions, !change.missing);
        }
    }
}

/// The first hot-reload directory of `c` (its code, then its layers) that no longer exists,
/// looked for on the blocking pool (nothing is looked at for a function without one).
pub async fn missing_dir(c: &FunctionConfig) -> Option<String> {
    let dirs: Vec<String> =
        c.hot_reload_dir.iter().chain(c.layers.iter().filter_map(|l| l.hot_reload_dir.as_ref())).cloned().collect();
    if dirs.is_empty() {
        return None;
    }
    tokio::task::spawn_blocking(move || dirs.into_iter().find(|d| !Path::new(d.as_str()).is_dir())).await.ok().flatten()
}

/// The init error an invoke gets when the directory its code runs from is gone.
pub fn missing_error(c: &FunctionConfig, dir: &str) -> (String, String) {
    let what = if c.hot_reload_dir.as_deref() == Some(dir) { "code" } else { "layer" };
    (
        "Runtime.InitError".into(),
        format!(
            "Hot reload: the {what} directory {dir} of function {} no longer exists. Create it again, \
             or point the function elsewhere (UpdateFunctionCode).",
            c.name
        ),
    )
}
