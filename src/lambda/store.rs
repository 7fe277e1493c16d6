//! The persistent store: functions, versions, aliases, layers and code blobs under `--data-dir`.
//!
//! Functions and layers are regional, as on AWS: one [`Store`] per region, found through
//! [`Regions`]. The default region (`--region`) keeps its records in `lambda/functions` and
//! `lambda/layers` (where every record lived before regions were kept apart); any other
//! region in `lambda/regions/<region>/`. Code blobs are shared by all regions.
//!
//! Metadata is one JSON file per function and per layer, always written to a temp file
//! and renamed into place, so a kill -9 never leaves half a record. Code blobs are
//! addressed by their sha256, unpacked once per digest when they are uploaded, and freed
//! with the last record that names them (see [`Blobs`]).
//!
//! Every method that writes (or frees, or unpacks) waits on the disk: callers run them on
//! the blocking pool (the Lambda API runs every operation but Get* and List* there, see
//! `api::route`), never on an async worker thread.
//!
//! The state sits behind a `parking_lot::RwLock`: sections are short, never held across
//! `.await`, and never wait on the disk. Writers take a second lock, `writing`, which
//! serializes them: each reads the record, persists the new one (temp file, fsync, rename),
//! and only then takes the state lock for the moment it needs to
//! make the new record visible. So the file on disk is never behind what readers see, a
//! kill -9 still leaves the old record or the new one, and an Invoke's read lock never
//! waits for an fsync.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use parking_lot::{Mutex, RwLock};

use super::code::{self, CodeDigest, CodeError, Limits};
use super::model::{CodeSigningConfig, FunctionConfig, FunctionRecord, LayerRecord, UrlConfig};
use crate::aws::AwsError;
use crate::aws::fs::write_atomic;

#[derive(Default)]
struct State {
    functions: HashMap<String, FunctionRecord>,
    layers: HashMap<String, LayerRecord>,
    /// Code signing configs by id.
    code_signing: HashMap<String, CodeSigningConfig>,
}

/// One region's functions and layers.
pub struct Store {
    /// Holds `functions/` and `layers/`.
    dir: PathBuf,
    blobs: Arc<Blobs>,
    state: RwLock<State>,
    /// Held by one writer at a time, across its disk write (see the module doc).
    writing: Mutex<()>,
    /// Told after every change of a function record (a Pending function becoming Active…).
    changed: tokio::sync::Notify,
}

/// Code blobs by digest and their unpacked trees, shared by every region.
///
/// Storage is reference-counted by recomputing, never by a counter that a crash could
/// leave wrong: a blob (`blobs/<sha256>.zip`) and its tree (`code/<sha256>/`) are kept
/// while any function version (its code or a layer it uses) or layer version in any
/// region's in-memory records names the digest. Those records are made visible only
/// after they are durable on disk, so what [`Blobs::collect`] frees is unreferenced by the
/// persisted metadata too, and a kill -9 at any point leaves every referenced blob in
/// place (at worst an unreferenced one, which the sweep at the next start removes).
/// A pending Event invocation runs the code of the version it was queued for, so it counts
/// as a reference too (`extra_refs`, from the Event queue, whose files are durable before the
/// 202) until it has run or been dropped. An invoke between looking its code up and the
/// engine's pool having its environment on the books holds off freeing ([`CodeHold`]).
struct Blobs {
    /// Holds `blobs/` and `code/`.
    dir: PathBuf,
    /// One lock per digest being unpacked, so each digest is unpacked once while different
    /// digests unpack in parallel.
    extracting: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Every region's store: the references are read from their records. Weak, since a
    /// store owns its `Arc<Blobs>`.
    stores: RwLock<Vec<Weak<Store>>>,
    /// What is on disk, pinned or damaged. One short-held lock; [`Blobs::collect`] holds it
    /// across its deletions so that an upload of the digest being freed waits for it.
    books: Mutex<Books>,
    /// The code directories running environments use (set by the service: the engine's
    /// pool knows them). Such a directory is freed only once its environments are gone.
    in_use: RwLock<Option<InUse>>,
    /// Invocations between resolving their function (and so its code directory) and the
    /// engine's pool counting their environment's directories as in use hold a clone of
    /// this (see [`CodeHold`]). While any clone lives, nothing is freed: the next pass does it.
    holds: Arc<CodeHold>,
    /// Digests referenced by something other than the records (pending Event invocations,
    /// set by the service).
    extra_refs: RwLock<Option<ExtraRefs>>,
}

type ExtraRefs = Box<dyn Fn() -> HashSet<String> + Send + Sync>;

type InUse = Box<dyn Fn() -> HashSet<PathBuf> + Send + Sync>;

#[derive(Default)]
struct Books {
    /// Blob size on disk by digest.
    blobs: HashMap<String, u64>,
    /// Unpacked bytes by digest.
    code: HashMap<String, u64>,
    /// Uploads in flight (the blob is written but no record names it yet), by digest.
    pins: HashMap<String, usize>,
    /// Digests whose blob was missing or of the wrong size at start: (path, what is wrong).
    damaged: HashMap<String, String>,
    /// Unreferenced code directories kept because an environment still runs from them.
    deferred: usize,
    /// A record could not be read at start: its references are unknown, so nothing is freed.
    unknown_refs: bool,
    /// Running totals of `blobs` and `code`, so that health reads two numbers.
    blob_bytes: u64,
    code_bytes: u64,
}

impl Books {
    fn add_blob(&mut self, sha: &str, size: u64) {
        if let Some(old) = self.blobs.insert(sha.to_string(), size) {
            self.blob_bytes -= old;
        }
        self.blob_bytes += size;
    }

    fn remove_blob(&mut self, sha: &str) {
        if let Some(old) = self.blobs.remove(sha) {
            self.blob_bytes -= old;
        }
    }

    fn add_code(&mut self, sha: &str, size: u64) {
        if let Some(old) = self.code.insert(sha.to_string(), size) {
            self.code_bytes -= old;
        }
        self.code_bytes += size;
    }

    fn remove_code(&mut self, sha: &str) {
        if let Some(old) = self.code.remove(sha) {
            self.code_bytes -= old;
        }
    }
}

/// Keeps an uploaded digest from being freed until the record that names it is stored.
pub struct Pin {
    blobs: Arc<Blobs>,
    sha: String,
}

impl Drop for Pin {
    fn drop(&mut self) {
        let mut books = self.blobs.books.lock();
        if let Some(n) = books.pins.get_mut(&self.sha) {
            *n -= 1;
            if *n == 0 {
                books.pins.remove(&self.sha);
            }
        }
    }
}

/// Keeps every code blob and directory from being freed while a clone of the store's one
/// `Arc<CodeHold>` lives (its strong count is the number of holds plus one): taken by an
/// invoke before it resolves its function, dropped once its environment is on the pool's
/// books (which [`Regions::set_in_use`] reports). Taking and dropping a hold are one atomic
/// operation each, with no lock and no allocation: it is on every invoke's path.
pub struct CodeHold {
    _private: (),
}

/// Bytes and counts of what the Lambda service keeps on disk (kept as counters: reading
/// them touches no disk).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Usage {
    pub blob_count: usize,
    pub blob_bytes: u64,
    pub code_count: usize,
    pub code_bytes: u64,
    /// Unreferenced code directories waiting for their environments to stop.
    pub deferred_code_dirs: usize,
    /// Digests found missing or damaged at start and not repaired since.
    pub damaged: Vec<String>,
}

/// Every region's [`Store`], opened on first use.
pub struct Regions {
    root: PathBuf,
    default: String,
    blobs: Arc<Blobs>,
    stores: RwLock<HashMap<String, Arc<Store>>>,
    /// One region opened at a time.
    opening: Mutex<()>,
}

/// Removes temp files a crash left in `dir`.
fn remove_leftovers(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().contains(".tmp-") {
                let _ = std::fs::remove_dir_all(e.path()).or_else(|_| std::fs::remove_file(e.path()));
            }
        }
    }
}

/// A region name safe to use as a directory name (the SigV4 scope allows more).
fn usable_region(region: &str) -> bool {
    !region.is_empty()
        && region.len() <= 32
        && region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl Regions {
    pub fn open(data_dir: &Path, default_region: &str) -> std::io::Result<Regions> {
        Regions::open_with(data_dir, default_region, None::<fn() -> HashSet<String>>)
    }

    /// [`Regions::open`], with digests that something besides the records keeps (the pending
    /// Event invocations), already for the sweep at start.
    pub fn open_with(
        data_dir: &Path,
        default_region: &str,
        extra_refs: Option<impl Fn() -> HashSet<String> + Send + Sync + 'static>,
    ) -> std::io::Result<Regions> {
        let root = data_dir.join("lambda");
        for sub in ["blobs", "code", "regions"] {
            std::fs::create_dir_all(root.join(sub))?;
            remove_leftovers(&root.join(sub));
        }
        let blobs = Arc::new(Blobs {
            dir: root.clone(),
            extracting: Mutex::new(HashMap::new()),
            stores: RwLock::new(Vec::new()),
            books: Mutex::new(Books::default()),
            in_use: RwLock::new(None),
            holds: Arc::new(CodeHold { _private: () }),
            extra_refs: RwLock::new(extra_refs.map(|f| Box::new(f) as ExtraRefs)),
        });
        let default = if usable_region(default_region) { default_region.to_string() } else { "us-east-1".to_string() };
        let regions = Regions { root, default, blobs, stores: RwLock::new(HashMap::new()), opening: Mutex::new(()) };
        regions.open_region(&regions.default.clone())?;
        for e in std::fs::read_dir(regions.root.join("regions"))?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if usable_region(&name) && name != regions.default && e.path().is_dir() {
                regions.open_region(&name)?;
            }
        }
        // What is on disk, whether every record's code is there, and the sweep of what a
        // crash (or an older version that never freed anything) left unreferenced.
        regions.blobs.scan();
        regions.blobs.check_integrity();
        regions.blobs.collect();
        Ok(regions)
    }

    /// Frees every blob and code directory no record references any more.
    pub fn collect(&self) {
        self.blobs.collect();
    }

    /// Holds off every freeing until the returned clone is dropped (see [`CodeHold`]).
    pub fn hold_code(&self) -> Arc<CodeHold> {
        self.blobs.holds.clone()
    }

    /// Tells the store which code directories running environments use.
    pub fn set_in_use(&self, f: impl Fn() -> HashSet<PathBuf> + Send + Sync + 'static) {
        *self.blobs.in_use.write() = Some(Box::new(f));
    }

    /// Bytes and counts of blobs and unpacked code.
    pub fn usage(&self) -> Usage {
        let b = self.blobs.books.lock();
        let mut damaged: Vec<String> = b.damaged.keys().cloned().collect();
        damaged.sort();
        Usage {
            blob_count: b.blobs.len(),
            blob_bytes: b.blob_bytes,
            code_count: b.code.len(),
            code_bytes: b.code_bytes,
            deferred_code_dirs: b.deferred,
            damaged,
        }
    }

    /// Why the stored code of this digest cannot be used, if it was found missing or
    /// damaged at start (and not uploaded again since).
    pub fn damaged(&self, sha_hex: &str) -> Option<String> {
        self.blobs.books.lock().damaged.get(sha_hex).cloned()
    }

    /// Where the blob of a digest lives.
    pub fn blob_path(&self, sha_hex: &str) -> PathBuf {
        self.blobs.blob_path(sha_hex)
    }

    fn region_dir(&self, region: &str) -> PathBuf {
        if region == self.default { self.root.clone() } else { self.root.join("regions").join(region) }
    }

    /// Opens a region's records (at start).
    fn open_region(&self, region: &str) -> std::io::Result<Arc<Store>> {
        let store = Arc::new(Store::open_at(self.region_dir(region), self.blobs.clone())?);
        Ok(self.add_region(region, store))
    }

    fn add_region(&self, region: &str, store: Arc<Store>) -> Arc<Store> {
        self.blobs.stores.write().push(Arc::downgrade(&store));
        self.stores.write().insert(region.to_string(), store.clone());
        store
    }

    /// The store of `region` (the default region's for a name that cannot be one).
    pub fn get(&self, region: &str) -> Arc<Store> {
        let region = if usable_region(region) { region } else { self.default.as_str() };
        if let Some(s) = self.stores.read().get(region) {
            return s.clone();
        }
        let _guard = self.opening.lock();
        if let Some(s) = self.stores.read().get(region) {
            return s.clone();
        }
        // Every region with records on disk was opened at start, so one first named now has
        // none: its store starts empty, and its directories are made by its first write
        // (`write_atomic`, on the blocking pool). A read or an invoke naming it touches no disk.
        self.add_region(region, Arc::new(Store::empty(self.region_dir(region), self.blobs.clone())))
    }

    /// Every region's store opened so far.
    pub fn all(&self) -> Vec<(String, Arc<Store>)> {
        self.stores.read().iter().map(|(r, s)| (r.clone(), s.clone())).collect()
    }

    pub fn default_store(&self) -> Arc<Store> {
        // `open` inserts the default region before it returns `Regions`, and none is ever removed.
        #[allow(clippy::expect_used)]
        let store = self.stores.read().get(&self.default).cloned().expect("the default region is opened first");
        store
    }

    pub fn read_blob(&self, sha_hex: &str) -> std::io::Result<Vec<u8>> {
        self.blobs.read(sha_hex)
    }

    pub fn code_dir(&self, sha_hex: &str) -> Result<PathBuf, CodeError> {
        self.blobs.code_dir(sha_hex)
    }

    /// The function URL with this id, in any region: (region, function, qualifier key, config).
    pub fn find_url(&self, url_id: &str) -> Option<(String, String, String, UrlConfig)> {
        let stores: Vec<(String, Arc<Store>)> =
            self.stores.read().iter().map(|(r, s)| (r.clone(), s.clone())).collect();
        stores.into_iter().find_map(|(region, store)| {
            let st = store.state.read();
            st.functions.values().find_map(|rec| {
                rec.urls
                    .iter()
                    .find(|(_, u)| u.url_id == url_id)
                    .map(|(key, u)| (region.clone(), rec.latest.name.clone(), key.clone(), u.clone()))
            })
        })
    }
}

/// Every readable record in `dir`, and whether some record could not be read.
fn load_dir<T: serde::de::DeserializeOwned>(dir: &Path) -> (Vec<T>, bool) {
    let mut out = Vec::new();
    let mut failed = false;
    let Ok(entries) = std::fs::read_dir(dir) else { return (out, true) };
    for e in entries.flatten() {
        let p = e.path();
        if p.extension().and_then(|x| x.to_str()) != Some("json") {
            continue;
        }
        match std::fs::read(&p)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        {
            Ok(v) => out.push(v),
            Err(e) => {
                failed = true;
                tracing::warn!(path = %p.display(), error = %e, "skipping unreadable record");
            }
        }
    }
    (out, failed)
}

fn io_err(e: std::io::Error) -> AwsError {
    AwsError::service(format!("store write failed: {e}"))
}

impl Store {
    fn open_at(dir: PathBuf, blobs: Arc<Blobs>) -> std::io::Result<Store> {
        for sub in ["functions", "layers", "code-signing"] {
            std::fs::create_dir_all(dir.join(sub))?;
            // Leftover temp files from a crash are garbage.
            remove_leftovers(&dir.join(sub));
        }
        let mut state = State::default();
        let (functions, bad_functions) = load_dir::<FunctionRecord>(&dir.join("functions"));
        for rec in functions {
            state.functions.insert(rec.latest.name.clone(), rec);
        }
        for csc in load_dir::<CodeSigningConfig>(&dir.join("code-signing")).0 {
            state.code_signing.insert(csc.id.clone(), csc);
        }
        let (layers, bad_layers) = load_dir::<LayerRecord>(&dir.join("layers"));
        for rec in layers {
            state.layers.insert(rec.name.clone(), rec);
        }
        if bad_functions || bad_layers {
            tracing::error!(dir = %dir.display(), "a record could not be read: no code is freed until it is fixed or removed");
            blobs.books.lock().unknown_refs = true;
        }
        Ok(Store {
            dir,
            blobs,
            state: RwLock::new(state),
            writing: Mutex::new(()),
            changed: tokio::sync::Notify::new(),
        })
    }

    /// A region with nothing on disk yet (see [`Regions::get`]).
    fn empty(dir: PathBuf, blobs: Arc<Blobs>) -> Store {
        Store {
            dir,
            blobs,
            state: RwLock::new(State::default()),
            writing: Mutex::new(()),
            changed: tokio::sync::Notify::new(),
        }
    }

    fn function_path(&self, name: &str) -> PathBuf {
        self.dir.join("functions").join(format!("{name}.json"))
    }

    fn layer_path(&self, name: &str) -> PathBuf {
        self.dir.join("layers").join(format!("{name}.json"))
    }

    fn persist_function(&self, rec: &FunctionRecord) -> Result<(), AwsError> {
        let bytes = serde_json::to_vec_pretty(rec).map_err(|e| AwsError::service(e.to_string()))?;
        let path = self.function_path(&rec.latest.name);
        write_atomic(&path, &bytes).map_err(io_err)
    }

    // ---- functions ----

    pub fn get_function(&self, name: &str) -> Option<FunctionRecord> {
        self.state.read().functions.get(name).cloned()
    }

    /// The configuration of `$LATEST` without cloning the record (the invoke hot path).
    pub fn latest(&self, name: &str) -> Option<Arc<FunctionConfig>> {
        self.state.read().functions.get(name).map(|r| r.latest.clone())
    }

    /// Runs `f` on the record read-only, under the lock.
    pub fn with_function<R>(&self, name: &str, f: impl FnOnce(&FunctionRecord) -> R) -> Option<R> {
        self.state.read().functions.get(name).map(f)
    }

    pub fn create_function(&self, rec: FunctionRecord) -> Result<(), AwsError> {
        let _writing = self.writing.lock();
        let name = rec.latest.name.clone();
        if self.state.read().functions.contains_key(&name) {
            return Err(AwsError::conflict(format!("Function already exist: {name}")));
        }
        self.persist_function(&rec)?;
        self.state.write().functions.insert(name, rec);
        self.changed.notify_waiters();
        Ok(())
    }

    /// Applies `f` to a copy of the record, persists it, then makes it visible.
    /// `Ok(None)` when there is no such function: the caller words the error, since only
    /// it knows the region the ARN in the message must name.
    pub fn update_function<R>(
        &self,
        name: &str,
        f: impl FnOnce(&mut FunctionRecord) -> Result<R, AwsError>,
    ) -> Result<Option<(FunctionRecord, R)>, AwsError> {
        let _writing = self.writing.lock();
        let Some(mut rec) = self.state.read().functions.get(name).cloned() else {
            return Ok(None);
        };
        let old = rec.clone();
        let out = f(&mut rec)?;
        self.persist_function(&rec)?;
        self.state.write().functions.insert(name.to_string(), rec.clone());
        self.changed.notify_waiters();
        self.collect_after(&old, Some(&rec));
        Ok(Some((rec, out)))
    }

    /// Resolves at the next change of a function record. Enable it (or poll it once)
    /// before reading what it guards, so that a change in between is not missed.
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }

    /// Removes a function and its metadata file. `Ok(None)` when there is no such function.
    pub fn delete_function(&self, name: &str) -> Result<Option<FunctionRecord>, AwsError> {
        let _writing = self.writing.lock();
        if !self.state.read().functions.contains_key(name) {
            return Ok(None);
        }
        let path = self.function_path(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(e)),
        }
        let gone = self.state.write().functions.remove(name);
        self.changed.notify_waiters();
        if let Some(g) = &gone {
            self.collect_after(g, None);
        }
        Ok(gone)
    }

    /// All `$LATEST` configurations, sorted by name.
    pub fn list_functions(&self) -> Vec<FunctionRecord> {
        let st = self.state.read();
        let mut v: Vec<FunctionRecord> = st.functions.values().cloned().collect();
        v.sort_by(|a, b| a.latest.name.cmp(&b.latest.name));
        v
    }

    /// Reserved concurrency summed over every function except `except`.
    pub fn reserved_concurrency_total(&self, except: Option<&str>) -> u64 {
        let st = self.state.read();
        st.functions
            .iter()
            .filter(|(name, _)| Some(name.as_str()) != except)
            .filter_map(|(_, r)| r.reserved_concurrency)
            .map(u64::from)
            .sum()
    }

    pub fn function_count(&self) -> usize {
        self.state.read().functions.len()
    }

    pub fn total_code_size(&self) -> u64 {
        let st = self.state.read();
        st.functions
            .values()
            .map(|r| r.latest.code_size + r.versions.values().map(|v| v.code_size).sum::<u64>())
            .sum::<u64>()
            + st.layers.values().flat_map(|l| l.versions.values()).map(|v| v.code_size).sum::<u64>()
    }

    // ---- layers ----

    pub fn get_layer(&self, name: &str) -> Option<LayerRecord> {
        self.state.read().layers.get(name).cloned()
    }

    pub fn list_layers(&self) -> Vec<LayerRecord> {
        let st = self.state.read();
        let mut v: Vec<LayerRecord> = st.layers.values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Applies `f` to the layer (created empty if missing) and persists it.
    pub fn update_layer<R>(
        &self,
        name: &str,
        f: impl FnOnce(&mut LayerRecord) -> Result<R, AwsError>,
    ) -> Result<R, AwsError> {
        let _writing = self.writing.lock();
        let mut rec = self.state.read().layers.get(name).cloned().unwrap_or_else(|| LayerRecord {
            name: name.to_string(),
            next_version: 1,
            ..Default::default()
        });
        let old: Vec<String> = rec.versions.values().map(|v| v.sha_hex.clone()).collect();
        let out = f(&mut rec)?;
        let path = self.layer_path(name);
        if rec.versions.is_empty() {
            // Keep the record for its version counter (AWS never reuses numbers).
        }
        let bytes = serde_json::to_vec_pretty(&rec).map_err(|e| AwsError::service(e.to_string()))?;
        write_atomic(&path, &bytes).map_err(io_err)?;
        let dropped = old.iter().any(|sha| !rec.versions.values().any(|v| &v.sha_hex == sha));
        self.state.write().layers.insert(name.to_string(), rec);
        if dropped {
            self.blobs.collect();
        }
        Ok(out)
    }

    // ---- code signing configs ----

    fn code_signing_path(&self, id: &str) -> PathBuf {
        self.dir.join("code-signing").join(format!("{id}.json"))
    }

    pub fn get_code_signing(&self, id: &str) -> Option<CodeSigningConfig> {
        self.state.read().code_signing.get(id).cloned()
    }

    /// All code signing configs, sorted by id.
    pub fn list_code_signing(&self) -> Vec<CodeSigningConfig> {
        let mut v: Vec<CodeSigningConfig> = self.state.read().code_signing.values().cloned().collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    fn persist_code_signing(&self, csc: &CodeSigningConfig) -> Result<(), AwsError> {
        let bytes = serde_json::to_vec_pretty(csc).map_err(|e| AwsError::service(e.to_string()))?;
        let path = self.code_signing_path(&csc.id);
        write_atomic(&path, &bytes).map_err(io_err)
    }

    /// Stores a new code signing config (persisted first, like every writer: see the module doc).
    pub fn create_code_signing(&self, csc: CodeSigningConfig) -> Result<(), AwsError> {
        let _writing = self.writing.lock();
        self.persist_code_signing(&csc)?;
        self.state.write().code_signing.insert(csc.id.clone(), csc);
        Ok(())
    }

    /// Applies `f` to a copy of the config, persists it, then makes it visible.
    /// `Ok(None)` when there is no such config.
    pub fn update_code_signing<R>(
        &self,
        id: &str,
        f: impl FnOnce(&mut CodeSigningConfig) -> Result<R, AwsError>,
    ) -> Result<Option<(CodeSigningConfig, R)>, AwsError> {
        let _writing = self.writing.lock();
        let Some(mut csc) = self.state.read().code_signing.get(id).cloned() else {
            return Ok(None);
        };
        let out = f(&mut csc)?;
        self.persist_code_signing(&csc)?;
        self.state.write().code_signing.insert(id.to_string(), csc.clone());
        Ok(Some((csc, out)))
    }

    /// Removes a code signing config unless a function uses it: `Ok(false)` when there is no
    /// such config, `Err` with the names of the functions that use it. Function writers hold
    /// `writing` too, so no function can start using it between the check and the removal.
    pub fn delete_code_signing(&self, id: &str, arn: &str) -> Result<Result<bool, Vec<String>>, AwsError> {
        let _writing = self.writing.lock();
        let mut users: Vec<String> = {
            let st = self.state.read();
            if !st.code_signing.contains_key(id) {
                return Ok(Ok(false));
            }
            st.functions
                .values()
                .filter(|r| r.code_signing_config.as_deref() == Some(arn))
                .map(|r| r.latest.name.clone())
                .collect()
        };
        if !users.is_empty() {
            users.sort();
            return Ok(Err(users));
        }
        let path = self.code_signing_path(id);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(e)),
        }
        self.state.write().code_signing.remove(id);
        Ok(Ok(true))
    }

    // ---- code blobs (shared by every region) ----

    /// Validates a zip, stores it by digest and unpacks it, all before the caller answers,
    /// so code that is accepted can run. Bad zips are an InvalidParameterValueException; a
    /// disk that cannot hold the code a ServiceException naming the data directory, with
    /// nothing of this upload left on disk. The pin keeps the digest from being freed until
    /// the caller's record names it.
    pub fn put_zip(&self, bytes: &[u8]) -> Result<(CodeDigest, Pin), AwsError> {
        self.blobs.put_zip(bytes)
    }

    /// Pins a digest that a record already names (a layer version a function is about to
    /// use). Check afterwards that the record still names it.
    pub fn pin(&self, sha_hex: &str) -> Pin {
        self.blobs.pin(sha_hex)
    }

    pub fn read_blob(&self, sha_hex: &str) -> std::io::Result<Vec<u8>> {
        self.blobs.read(sha_hex)
    }

    /// The unpacked code for a digest, extracting it on first use.
    pub fn code_dir(&self, sha_hex: &str) -> Result<PathBuf, CodeError> {
        self.blobs.code_dir(sha_hex)
    }

    /// The digests this store's records reference.
    fn references(&self, out: &mut HashSet<String>) {
        let st = self.state.read();
        for rec in st.functions.values() {
            digests_of(rec, out);
        }
        for l in st.layers.values() {
            out.extend(l.versions.values().map(|v| v.sha_hex.clone()));
        }
    }

    /// Frees code that a change of this record stopped referencing (`old` → `new`).
    fn collect_after(&self, old: &FunctionRecord, new: Option<&FunctionRecord>) {
        let mut before = HashSet::new();
        digests_of(old, &mut before);
        let mut after = HashSet::new();
        if let Some(new) = new {
            digests_of(new, &mut after);
        }
        if !before.is_subset(&after) {
            self.blobs.collect();
        }
    }
}

/// The digests one function references: every version's code and layers.
fn digests_of(rec: &FunctionRecord, out: &mut HashSet<String>) {
    for c in std::iter::once(&rec.latest).chain(rec.versions.values()) {
        if !c.code_sha_hex.is_empty() {
            out.insert(c.code_sha_hex.clone());
        }
        out.extend(c.layers.iter().map(|l| l.sha_hex.clone()));
    }
}

/// A valid digest: 64 lowercase hex digits (also a safe file name).
fn is_digest(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Bytes of the regular files under `dir` (links and directories count nothing).
fn tree_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => total += e.metadata().map(|m| m.len()).unwrap_or(0),
                _ => {}
            }
        }
    }
    total
}

/// The service error for a disk that cannot take a deployment package.
fn disk_error(dir: &Path, e: &std::io::Error) -> AwsError {
    if e.raw_os_error() == Some(28) || e.kind() == std::io::ErrorKind::StorageFull {
        AwsError::service(format!(
            "Could not store the deployment package: the disk holding the data directory {} is full ({e})",
            dir.display()
        ))
    } else {
        AwsError::service(format!(
            "Could not store the deployment package in the data directory {}: {e}",
            dir.display()
        ))
    }
}

impl Blobs {
    fn blob_path(&self, sha_hex: &str) -> PathBuf {
        self.dir.join("blobs").join(format!("{sha_hex}.zip"))
    }

    fn code_path(&self, sha_hex: &str) -> PathBuf {
        self.dir.join("code").join(sha_hex)
    }

    fn pin(self: &Arc<Self>, sha_hex: &str) -> Pin {
        *self.books.lock().pins.entry(sha_hex.to_string()).or_default() += 1;
        Pin { blobs: self.clone(), sha: sha_hex.to_string() }
    }

    fn put_zip(self: &Arc<Self>, bytes: &[u8]) -> Result<(CodeDigest, Pin), AwsError> {
        code::validate_zip(bytes, &Limits::default()).map_err(|e| match e {
            CodeError::Io(e) => disk_error(&self.dir, &e),
            e => AwsError::invalid_param(e.to_string()),
        })?;
        let d = code::digest(bytes);
        let sha = d.sha256_hex.clone();
        // Pinned before the blob is looked at: a collection running now finishes first
        // (it holds the books), one after it sees the pin.
        let pin = self.pin(&sha);
        let path = self.blob_path(&sha);
        let repair = self.books.lock().damaged.contains_key(&sha);
        let present = std::fs::metadata(&path).is_ok_and(|m| m.len() == d.size);
        let mut wrote = false;
        if !present {
            write_atomic(&path, bytes).map_err(|e| disk_error(&self.dir, &e))?;
            self.books.lock().add_blob(&sha, d.size);
            wrote = true;
        }
        if repair {
            // The tree of a damaged blob cannot be trusted: unpack it again from the new one.
            self.remove_code_dir(&sha);
        }
        match self.unpack(&sha) {
            Ok(_) => {
                if repair {
                    self.books.lock().damaged.remove(&sha);
                    tracing::info!(digest = %sha, "stored code repaired by a new upload");
                }
                Ok((d, pin))
            }
            Err(e) => {
                // Nothing of this upload stays: the blob goes unless another upload of the
                // same digest is under way or a record already named it.
                if wrote {
                    let books = self.books.lock();
                    if books.pins.get(&sha).copied() == Some(1) && !self.references().contains(&sha) {
                        drop(books);
                        self.remove_blob(&sha);
                    }
                }
                Err(match e {
                    CodeError::Io(e) => disk_error(&self.dir, &e),
                    e => AwsError::invalid_param(e.to_string()),
                })
            }
        }
    }

    fn read(&self, sha_hex: &str) -> std::io::Result<Vec<u8>> {
        if !sha_hex.chars().all(|c| c.is_ascii_hexdigit()) || sha_hex.is_empty() {
            return Err(std::io::Error::new(std::io::ErrorKind::NotFound, "bad digest"));
        }
        std::fs::read(self.blob_path(sha_hex))
    }

    /// The unpacked tree of a digest; refused for code found missing or damaged at start.
    fn code_dir(&self, sha_hex: &str) -> Result<PathBuf, CodeError> {
        if let Some(why) = self.books.lock().damaged.get(sha_hex) {
            return Err(CodeError::Io(std::io::Error::new(std::io::ErrorKind::NotFound, why.clone())));
        }
        self.unpack(sha_hex)
    }

    /// Unpacks a digest once (a no-op when its tree is there).
    fn unpack(&self, sha_hex: &str) -> Result<PathBuf, CodeError> {
        let dest = self.code_path(sha_hex);
        if dest.is_dir() {
            return Ok(dest);
        }
        let lock = self.extracting.lock().entry(sha_hex.to_string()).or_default().clone();
        let result = {
            let _guard = lock.lock();
            if dest.is_dir() {
                Ok(())
            } else {
                self.read(sha_hex).map_err(CodeError::Io).and_then(|bytes| {
                    let summary = code::extract_zip(&bytes, &dest, &Limits::default())?;
                    self.books.lock().add_code(sha_hex, summary.unzipped_bytes);
                    Ok(())
                })
            }
        };
        // The last one out forgets the digest's lock (one held by the map, one by us).
        let mut map = self.extracting.lock();
        if Arc::strong_count(&lock) == 2 {
            map.remove(sha_hex);
        }
        drop(map);
        result.map(|()| dest)
    }

    /// Every digest any region's records (or a pending Event) reference.
    fn references(&self) -> HashSet<String> {
        let mut out = self.extra_refs.read().as_ref().map(|f| f()).unwrap_or_default();
        for store in self.stores.read().iter().filter_map(Weak::upgrade) {
            store.references(&mut out);
        }
        out
    }

    fn remove_blob(&self, sha: &str) {
        match std::fs::remove_file(self.blob_path(sha)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(digest = sha, error = %e, "cannot remove a code blob");
                return;
            }
        }
        self.books.lock().remove_blob(sha);
    }

    /// Moves a code directory aside (a rename: quick, and atomic for anyone who looks the
    /// digest up) and takes it off the books. Returns where it went; the caller removes it,
    /// outside the books' lock. A crash before that leaves a temp name the next start removes.
    fn set_code_dir_aside(&self, books: &mut Books, sha: &str) -> Option<PathBuf> {
        let dest = self.code_path(sha);
        let aside = self.dir.join("code").join(format!("{sha}.tmp-gc-{}", uuid::Uuid::new_v4().simple()));
        match std::fs::rename(&dest, &aside) {
            Ok(()) => {
                books.remove_code(sha);
                Some(aside)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                books.remove_code(sha);
                None
            }
            Err(e) => {
                tracing::warn!(digest = sha, error = %e, "cannot remove a code directory");
                None
            }
        }
    }

    /// Removes a code directory (see [`Blobs::set_code_dir_aside`]).
    fn remove_code_dir(&self, sha: &str) {
        let aside = self.set_code_dir_aside(&mut self.books.lock(), sha);
        if let Some(aside) = aside {
            let _ = std::fs::remove_dir_all(&aside);
        }
    }

    /// Frees what no record references and no upload has pinned. A code directory that a
    /// running environment uses is left for a later pass (see [`Regions::collect`]).
    fn collect(&self) {
        // The books stay locked throughout, so an upload of a digest freed here waits and
        // then writes it again.
        let mut books = self.books.lock();
        if books.unknown_refs {
            return;
        }
        let refs = self.references();
        let free = |sha: &String| !refs.contains(sha) && !books.pins.contains_key(sha);
        // An invoke between resolving its code and the pool's books: free nothing now, and
        // count what would have gone as deferred, so the periodic pass comes back for it.
        if Arc::strong_count(&self.holds) > 1 {
            books.deferred = books.code.keys().chain(books.blobs.keys()).filter(|s| free(s)).count();
            return;
        }
        // Read after the records and the holds: an invoke whose hold is dropped by now has its
        // environment on the pool's books (the pool's lock orders the two), and one that takes
        // its hold after this resolves records at least as new as `refs`.
        let in_use = self.in_use.read().as_ref().map(|f| f()).unwrap_or_default();
        let blobs: Vec<String> = books.blobs.keys().filter(|s| free(s)).cloned().collect();
        let mut deferred = 0;
        let mut code = Vec::new();
        for sha in books.code.keys().filter(|s| free(s)) {
            if in_use.contains(&self.code_path(sha)) {
                deferred += 1;
            } else {
                code.push(sha.clone());
            }
        }
        books.deferred = deferred;
        // Damage matters only while a record names the digest.
        books.damaged.retain(|sha, _| refs.contains(sha));
        for sha in &blobs {
            match std::fs::remove_file(self.blob_path(sha)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(digest = %sha, error = %e, "cannot remove a code blob");
                    continue;
                }
            }
            books.remove_blob(sha);
        }
        // Moved aside under the lock, so that an upload of the same digest cannot find the
        // tree just before it goes; deleted after it.
        let aside: Vec<PathBuf> = code.iter().filter_map(|sha| self.set_code_dir_aside(&mut books, sha)).collect();
        drop(books);
        for dir in aside {
            let _ = std::fs::remove_dir_all(&dir);
        }
        if !blobs.is_empty() || !code.is_empty() {
            tracing::debug!(blobs = blobs.len(), code_dirs = code.len(), deferred, "freed unreferenced code");
        }
    }

    /// Fills the books from the disk (at start).
    fn scan(&self) {
        let mut books = self.books.lock();
        if let Ok(entries) = std::fs::read_dir(self.dir.join("blobs")) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(sha) = name.strip_suffix(".zip").filter(|s| is_digest(s))
                    && let Ok(m) = e.metadata()
                {
                    books.add_blob(sha, m.len());
                }
            }
        }
        if let Ok(entries) = std::fs::read_dir(self.dir.join("code")) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if is_digest(&name) && e.file_type().is_ok_and(|t| t.is_dir()) {
                    books.add_code(&name, tree_bytes(&e.path()));
                }
            }
        }
    }

    /// Checks that every function version's and layer version's blob is there with its
    /// stored size. Each missing or damaged one is logged once, and its digest refuses to
    /// run until it is uploaded again.
    fn check_integrity(&self) {
        let stores: Vec<Arc<Store>> = self.stores.read().iter().filter_map(Weak::upgrade).collect();
        let mut books = self.books.lock();
        let mut check = |what: &str, name: &str, version: &str, sha: &str, size: u64| {
            if sha.is_empty() {
                return;
            }
            let path = self.blob_path(sha);
            let problem = match books.blobs.get(sha) {
                None => format!("the stored code blob {} is missing", path.display()),
                Some(&have) if have != size => {
                    format!("the stored code blob {} is damaged ({have} bytes, expected {size})", path.display())
                }
                Some(_) => return,
            };
            tracing::error!(kind = what, function = name, version, digest = sha, path = %path.display(), "{problem}");
            books.damaged.entry(sha.to_string()).or_insert(problem);
        };
        for store in &stores {
            let st = store.state.read();
            for rec in st.functions.values() {
                for c in std::iter::once(&rec.latest).chain(rec.versions.values()) {
                    check("function", &c.name, &c.version, &c.code_sha_hex, c.code_size);
                    for l in &c.layers {
                        check("function layer", &c.name, &c.version, &l.sha_hex, l.code_size);
                    }
                }
            }
            for l in st.layers.values() {
                for (n, v) in &l.versions {
                    check("layer", &l.name, &n.to_string(), &v.sha_hex, v.code_size);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn zip_of(text: &str) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        w.start_file("app.py", zip::write::SimpleFileOptions::default()).unwrap();
        w.write_all(text.as_bytes()).unwrap();
        w.finish().unwrap().into_inner()
    }

    fn temp_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("ruststack-store-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn an_upload_is_unpacked_and_kept_while_pinned_then_freed() {
        let dir = temp_dir();
        let regions = Regions::open(&dir, "us-east-1").unwrap();
        let store = regions.default_store();
        let (d, pin) = store.put_zip(&zip_of("x = 1\n")).unwrap();
        let blob = dir.join("lambda/blobs").join(format!("{}.zip", d.sha256_hex));
        let tree = dir.join("lambda/code").join(&d.sha256_hex);
        assert!(blob.is_file() && tree.join("app.py").is_file(), "stored and unpacked before it returns");
        assert_eq!(regions.usage().blob_bytes, d.size);
        assert_eq!(regions.usage().code_bytes, 6);

        regions.collect();
        assert!(blob.is_file() && tree.is_dir(), "a pinned upload is not freed");
        drop(pin);
        regions.collect();
        assert!(!blob.exists() && !tree.exists(), "no record names it: freed");
        let u = regions.usage();
        assert_eq!((u.blob_count, u.blob_bytes, u.code_count, u.code_bytes), (0, 0, 0, 0));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_code_hold_defers_every_freeing_until_its_last_clone_is_dropped() {
        let dir = temp_dir();
        let regions = Regions::open(&dir, "us-east-1").unwrap();
        let store = regions.default_store();
        let (d, pin) = store.put_zip(&zip_of("x = 2\n")).unwrap();
        drop(pin);
        let blob = dir.join("lambda/blobs").join(format!("{}.zip", d.sha256_hex));
        let tree = dir.join("lambda/code").join(&d.sha256_hex);
        let (first, second) = (regions.hold_code(), regions.hold_code());
        regions.collect();
        assert!(blob.is_file() && tree.is_dir(), "held: nothing is freed");
        assert_eq!(regions.usage().deferred_code_dirs, 2, "the blob and the tree wait for the next pass");
        drop(first);
        regions.collect();
        assert!(blob.is_file() && tree.is_dir(), "one hold is still taken");
        drop(second);
        regions.collect();
        assert!(!blob.exists() && !tree.exists(), "no hold and no record: freed");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_start_sweeps_what_no_record_names_and_an_unreadable_record_stops_it() {
        let dir = temp_dir();
        {
            let regions = Regions::open(&dir, "us-east-1").unwrap();
            // An upload whose record never got written (a kill -9 in between).
            std::mem::forget(regions.default_store().put_zip(&zip_of("y = 2\n")).unwrap().1);
        }
        let blobs = || std::fs::read_dir(dir.join("lambda/blobs")).unwrap().count();
        assert_eq!(blobs(), 1);
        // A record that cannot be read might name it: nothing is freed.
        std::fs::write(dir.join("lambda/functions/broken.json"), b"{not json").unwrap();
        drop(Regions::open(&dir, "us-east-1").unwrap());
        assert_eq!(blobs(), 1);
        std::fs::remove_file(dir.join("lambda/functions/broken.json")).unwrap();
        drop(Regions::open(&dir, "us-east-1").unwrap());
        assert_eq!(blobs(), 0, "swept at start");
        assert_eq!(std::fs::read_dir(dir.join("lambda/code")).unwrap().count(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
