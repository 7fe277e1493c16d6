//! The persistent store: functions, versions, aliases, layers and code blobs under `--data-dir`.
//!
//! Functions and layers are regional, as on AWS: one [`Store`] per region, found through
//! [`Regions`]. The default region (`--region`) keeps its records in `lambda/functions` and
//! `lambda/layers` (where every record lived before regions were kept apart); any other
//! region in `lambda/regions/<region>/`. Code blobs are shared by all regions.
//!
//! Metadata is one JSON file per function and per layer, always written to a temp file
//! and renamed into place, so a kill -9 never leaves half a record. Code blobs are
//! addressed by their sha256 and unpacked once per digest.
//!
//! The state sits behind a `parking_lot::RwLock`: sections are short, never held across
//! `.await`, and never wait on the disk. Writers take a second lock, `writing`, which
//! serializes them: each reads the record, persists the new one (temp file, fsync, rename,
//! on the blocking pool), and only then takes the state lock for the moment it needs to
//! make the new record visible. So the file on disk is never behind what readers see, a
//! kill -9 still leaves the old record or the new one, and an Invoke's read lock never
//! waits for an fsync.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
struct Blobs {
    /// Holds `blobs/` and `code/`.
    dir: PathBuf,
    /// One lock per digest being unpacked, so each digest is unpacked once while different
    /// digests unpack in parallel.
    extracting: Mutex<HashMap<String, Arc<Mutex<()>>>>,
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
        let root = data_dir.join("lambda");
        for sub in ["blobs", "code", "regions"] {
            std::fs::create_dir_all(root.join(sub))?;
            remove_leftovers(&root.join(sub));
        }
        let blobs = Arc::new(Blobs { dir: root.clone(), extracting: Mutex::new(HashMap::new()) });
        let default = if usable_region(default_region) { default_region.to_string() } else { "us-east-1".to_string() };
        let regions = Regions { root, default, blobs, stores: RwLock::new(HashMap::new()), opening: Mutex::new(()) };
        regions.open_region(&regions.default.clone())?;
        for e in std::fs::read_dir(regions.root.join("regions"))?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if usable_region(&name) && name != regions.default && e.path().is_dir() {
                regions.open_region(&name)?;
            }
        }
        Ok(regions)
    }

    fn open_region(&self, region: &str) -> std::io::Result<Arc<Store>> {
        let dir = if region == self.default { self.root.clone() } else { self.root.join("regions").join(region) };
        let store = Arc::new(Store::open_at(dir, self.blobs.clone())?);
        self.stores.write().insert(region.to_string(), store.clone());
        Ok(store)
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
        match self.open_region(region) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(region, error = %e, "cannot open the region's store: using the default region's");
                self.default_store()
            }
        }
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

/// Runs blocking file work so that it does not hold up a Tokio worker's other tasks: on a
/// multi-threaded runtime through `block_in_place` (the worker's tasks move to another
/// thread meanwhile), elsewhere (tests, start-up) as it is.
fn off_worker<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

fn load_dir<T: serde::de::DeserializeOwned>(dir: &Path) -> Vec<T> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
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
            Err(e) => tracing::warn!(path = %p.display(), error = %e, "skipping unreadable record"),
        }
    }
    out
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
        for rec in load_dir::<FunctionRecord>(&dir.join("functions")) {
            state.functions.insert(rec.latest.name.clone(), rec);
        }
        for csc in load_dir::<CodeSigningConfig>(&dir.join("code-signing")) {
            state.code_signing.insert(csc.id.clone(), csc);
        }
        for rec in load_dir::<LayerRecord>(&dir.join("layers")) {
            state.layers.insert(rec.name.clone(), rec);
        }
        Ok(Store { dir, blobs, state: RwLock::new(state), writing: Mutex::new(()), changed: tokio::sync::Notify::new() })
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
        off_worker(|| write_atomic(&path, &bytes)).map_err(io_err)
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
        let out = f(&mut rec)?;
        self.persist_function(&rec)?;
        self.state.write().functions.insert(name.to_string(), rec.clone());
        self.changed.notify_waiters();
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
        match off_worker(|| std::fs::remove_file(&path)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(e)),
        }
        let gone = self.state.write().functions.remove(name);
        self.changed.notify_waiters();
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
        let out = f(&mut rec)?;
        let path = self.layer_path(name);
        if rec.versions.is_empty() {
            // Keep the record for its version counter (AWS never reuses numbers).
        }
        let bytes = serde_json::to_vec_pretty(&rec).map_err(|e| AwsError::service(e.to_string()))?;
        off_worker(|| write_atomic(&path, &bytes)).map_err(io_err)?;
        self.state.write().layers.insert(name.to_string(), rec);
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
        off_worker(|| write_atomic(&path, &bytes)).map_err(io_err)
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
        match off_worker(|| std::fs::remove_file(&path)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(e)),
        }
        self.state.write().code_signing.remove(id);
        Ok(Ok(true))
    }

    // ---- code blobs (shared by every region) ----

    /// Validates a zip and stores it by digest. Bad zips are an InvalidParameterValueException.
    pub fn put_zip(&self, bytes: &[u8]) -> Result<CodeDigest, AwsError> {
        self.blobs.put_zip(bytes)
    }

    pub fn read_blob(&self, sha_hex: &str) -> std::io::Result<Vec<u8>> {
        self.blobs.read(sha_hex)
    }

    /// The unpacked code for a digest, extracting it on first use.
    pub fn code_dir(&self, sha_hex: &str) -> Result<PathBuf, CodeError> {
        self.blobs.code_dir(sha_hex)
    }
}

impl Blobs {
    fn blob_path(&self, sha_hex: &str) -> PathBuf {
        self.dir.join("blobs").join(format!("{sha_hex}.zip"))
    }

    fn put_zip(&self, bytes: &[u8]) -> Result<CodeDigest, AwsError> {
        code::validate_zip(bytes, &Limits::default()).map_err(|e| match e {
            CodeError::Io(e) => io_err(e),
            e => AwsError::invalid_param(e.to_string()),
        })?;
        let d = code::digest(bytes);
        let path = self.blob_path(&d.sha256_hex);
        if !path.exists() {
            off_worker(|| write_atomic(&path, bytes)).map_err(io_err)?;
        }
        Ok(d)
    }

    fn read(&self, sha_hex: &str) -> std::io::Result<Vec<u8>> {
        if !sha_hex.chars().all(|c| c.is_ascii_hexdigit()) || sha_hex.is_empty() {
            return Err(std::io::Error::new(std::io::ErrorKind::NotFound, "bad digest"));
        }
        std::fs::read(self.blob_path(sha_hex))
    }

    fn code_dir(&self, sha_hex: &str) -> Result<PathBuf, CodeError> {
        let dest = self.dir.join("code").join(sha_hex);
        if dest.is_dir() {
            return Ok(dest);
        }
        let lock = self.extracting.lock().entry(sha_hex.to_string()).or_default().clone();
        let result = {
            let _guard = lock.lock();
            if dest.is_dir() {
                Ok(())
            } else {
                self.read(sha_hex)
                    .map_err(CodeError::Io)
                    .and_then(|bytes| code::extract_zip(&bytes, &dest, &Limits::default()).map(|_| ()))
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
}
