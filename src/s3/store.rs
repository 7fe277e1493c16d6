//! The S3 store: one in-memory index of buckets, object versions and
//! multipart uploads, each entry backed by files under the store's directory.
//!
//! On disk (`root` is `<data-dir>/s3`):
//! ```text
//! buckets/<bucket>/bucket.json                 name, creation time, versioning state
//! buckets/<bucket>/objects/<ab>/<file>.json    one object version's metadata (key, version id, etag, ...)
//! buckets/<bucket>/objects/<ab>/<file>.data    its bytes (absent for delete markers)
//! uploads/<upload-id>/upload.json              a multipart upload in progress
//! uploads/<upload-id>/part-<n>.data|.json      its parts
//! tmp/                                         files being written; emptied on open
//! ```
//! Every file is written in `tmp/` and renamed into place. A version becomes
//! visible when its `.json` lands, which happens after its `.data`; removal
//! goes the other way. So a crash (kill -9) never leaves half an object:
//! `open` drops `.data` files that no `.json` names, and of two "null"
//! versions of a key (a crash mid-overwrite) keeps the newer.
//!
//! The index sits behind one sync mutex. Sections under it are short: map
//! updates, renames and small JSON writes. Bodies are written to `tmp/`
//! before the lock is taken and read from an opened `File` after it is released.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::checksum::Checksum;
use super::error::ApiError;
use super::wire::now_ms;

/// A bucket's versioning state. Once enabled it can only be suspended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum Versioning {
    #[default]
    Unversioned,
    Enabled,
    Suspended,
}

/// What a client set on an object besides its bytes.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(super) struct ObjectAttrs {
    /// Standard headers echoed on GET, by lowercase name (`content-type`, `cache-control`, ...).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// User metadata by lowercase name, without the `x-amz-meta-` prefix.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub checksum: Option<Checksum>,
}

/// One version of an object, or a delete marker. This is also its `.json` file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Version {
    pub key: String,
    /// "null" for versions written while versioning was off or suspended.
    pub version_id: String,
    /// Orders the versions of a key, newest highest; unique in the store.
    pub seq: u64,
    /// Names this version's files: `objects/<file[..2]>/<file>.{json,data}`.
    pub file: String,
    #[serde(default)]
    pub delete_marker: bool,
    #[serde(default)]
    pub size: u64,
    /// Quoted, as sent in the `ETag` header.
    #[serde(default)]
    pub etag: String,
    pub last_modified_ms: i64,
    #[serde(default)]
    pub attrs: ObjectAttrs,
}

pub(super) struct Bucket {
    pub created_ms: i64,
    pub versioning: Versioning,
    /// Every version of every key, oldest first. A key with no versions is removed.
    pub objects: BTreeMap<String, Vec<Version>>,
}

impl Bucket {
    /// The newest version of `key` unless it is a delete marker.
    pub fn current(&self, key: &str) -> Option<&Version> {
        self.objects.get(key)?.last().filter(|v| !v.delete_marker)
    }
}

#[derive(Serialize, Deserialize)]
struct BucketFile {
    name: String,
    created_ms: i64,
    #[serde(default)]
    versioning: Versioning,
}

/// A multipart upload in progress. This (without parts) is its `upload.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Upload {
    pub upload_id: String,
    pub bucket: String,
    pub key: String,
    pub initiated_ms: i64,
    pub attrs: ObjectAttrs,
    #[serde(skip)]
    pub parts: BTreeMap<u32, Part>,
}

/// One uploaded part: its `part-<n>.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Part {
    pub number: u32,
    /// Quoted hex MD5 of the part.
    pub etag: String,
    pub size: u64,
    pub last_modified_ms: i64,
}

/// A body written to `tmp/`, waiting to be renamed into place. Dropping it
/// removes the file if it was never committed.
pub(super) struct Staged {
    path: PathBuf,
    pub size: u64,
}

impl Drop for Staged {
    fn drop(&mut self) {
        // After a commit the file has moved and this fails harmlessly.
        let _ = fs::remove_file(&self.path);
    }
}

/// What DeleteObject did.
pub(super) struct Deleted {
    pub version_id: Option<String>,
    pub delete_marker: bool,
}

struct State {
    buckets: BTreeMap<String, Bucket>,
    uploads: HashMap<String, Upload>,
    next_seq: u64,
}

pub(super) struct Store {
    root: PathBuf,
    state: Mutex<State>,
}

/// S3's bucket naming rules (the current ones, without legacy names). Also
/// what makes a name safe as a directory name.
pub(super) fn valid_bucket_name(name: &str) -> bool {
    let b = name.as_bytes();
    (3..=63).contains(&b.len())
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'.' || *c == b'-')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && !name.contains("..")
        && !name.contains(".-")
        && !name.contains("-.")
        && name.parse::<std::net::Ipv4Addr>().is_err()
        && !name.starts_with("xn--")
        && !name.starts_with("sthree-")
        && !name.ends_with("-s3alias")
        && !name.ends_with("--ol-s3")
}

fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn is_not_found(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}

impl Store {
    pub fn open(root: PathBuf) -> io::Result<Store> {
        fs::create_dir_all(root.join("buckets"))?;
        fs::create_dir_all(root.join("uploads"))?;
        let tmp = root.join("tmp");
        if tmp.exists() {
            fs::remove_dir_all(&tmp)?;
        }
        fs::create_dir_all(&tmp)?;
        let mut state = State { buckets: BTreeMap::new(), uploads: HashMap::new(), next_seq: 1 };
        for entry in fs::read_dir(root.join("buckets"))? {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if !valid_bucket_name(&name) {
                tracing::warn!(dir = %entry.path().display(), "s3: skipping directory that is not a bucket");
                continue;
            }
            match load_bucket(&entry.path(), &mut state.next_seq) {
                Ok(Some(bucket)) => {
                    state.buckets.insert(name, bucket);
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(bucket = %name, error = %e, "s3: could not load bucket"),
            }
        }
        for entry in fs::read_dir(root.join("uploads"))? {
            let dir = entry?.path();
            match load_upload(&dir) {
                Ok(Some(upload)) if state.buckets.contains_key(&upload.bucket) => {
                    state.uploads.insert(upload.upload_id.clone(), upload);
                }
                Ok(_) => {
                    // Completed or aborted before its directory was removed, or its bucket is gone.
                    let _ = fs::remove_dir_all(&dir);
                }
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "s3: could not load upload")
                }
            }
        }
        let objects: usize = state.buckets.values().map(|b| b.objects.len()).sum();
        tracing::info!(root = %root.display(), buckets = state.buckets.len(), keys = objects, "s3 store opened");
        Ok(Store { root, state: Mutex::new(state) })
    }

    fn bucket_dir(&self, bucket: &str) -> PathBuf {
        self.root.join("buckets").join(bucket)
    }

    fn version_path(&self, bucket: &str, file: &str, ext: &str) -> PathBuf {
        let shard = file.get(..2).unwrap_or("00");
        self.bucket_dir(bucket).join("objects").join(shard).join(format!("{file}.{ext}"))
    }

    fn upload_dir(&self, upload_id: &str) -> PathBuf {
        self.root.join("uploads").join(upload_id)
    }

    pub fn part_path(&self, upload_id: &str, number: u32) -> PathBuf {
        self.upload_dir(upload_id).join(format!("part-{number}.data"))
    }

    fn tmp_path(&self) -> PathBuf {
        self.root.join("tmp").join(new_id())
    }

    /// Writes `value` as JSON to `path` through a temp file and a rename.
    fn write_json(&self, path: &Path, value: &impl Serialize) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
        let tmp = self.tmp_path();
        fs::write(&tmp, bytes)?;
        fs::rename(&tmp, path).inspect_err(|_| {
            let _ = fs::remove_file(&tmp);
        })
    }

    // ---- buckets ----

    /// Creates `name`; creating a bucket that exists is a no-op (us-east-1 behaviour).
    /// (object versions, their bytes) over every bucket, from memory (no disk walk).
    pub fn stored_bytes(&self) -> (usize, u64) {
        let st = self.state.lock();
        st.buckets
            .values()
            .flat_map(|b| b.objects.values().flatten())
            .fold((0, 0), |(n, bytes), v| (n + 1, bytes + v.size))
    }

    pub fn create_bucket(&self, name: &str) -> Result<(), ApiError> {
        let mut st = self.state.lock();
        if st.buckets.contains_key(name) {
            return Ok(());
        }
        let dir = self.bucket_dir(name);
        fs::create_dir_all(dir.join("objects"))?;
        let created_ms = now_ms();
        let file = BucketFile { name: name.to_string(), created_ms, versioning: Versioning::Unversioned };
        self.write_json(&dir.join("bucket.json"), &file)?;
        st.buckets.insert(
            name.to_string(),
            Bucket { created_ms, versioning: Versioning::Unversioned, objects: BTreeMap::new() },
        );
        Ok(())
    }

    /// Deletes an empty bucket (no versions, no delete markers) and its unfinished uploads.
    pub fn delete_bucket(&self, name: &str) -> Result<(), ApiError> {
        let mut st = self.state.lock();
        let bucket = st.buckets.get(name).ok_or_else(|| ApiError::NoSuchBucket(name.to_string()))?;
        if !bucket.objects.is_empty() {
            return Err(ApiError::BucketNotEmpty(name.to_string()));
        }
        let dir = self.bucket_dir(name);
        fs::remove_file(dir.join("bucket.json")).or_else(|e| if is_not_found(&e) { Ok(()) } else { Err(e) })?;
        st.buckets.remove(name);
        let uploads: Vec<String> =
            st.uploads.values().filter(|u| u.bucket == name).map(|u| u.upload_id.clone()).collect();
        for id in &uploads {
            st.uploads.remove(id);
            let _ = fs::remove_file(self.upload_dir(id).join("upload.json"));
        }
        // Move the directory out of the way under the lock, so a new bucket of
        // the same name starts empty; delete its contents after.
        let trash = self.tmp_path();
        let moved = fs::rename(&dir, &trash).is_ok();
        drop(st);
        if moved {
            let _ = fs::remove_dir_all(&trash);
        }
        for id in uploads {
            let _ = fs::remove_dir_all(self.upload_dir(&id));
        }
        Ok(())
    }

    /// Every bucket's name and creation time, by name.
    pub fn buckets(&self) -> Vec<(String, i64)> {
        self.state.lock().buckets.iter().map(|(n, b)| (n.clone(), b.created_ms)).collect()
    }

    pub fn set_versioning(&self, name: &str, versioning: Versioning) -> Result<(), ApiError> {
        let mut st = self.state.lock();
        let bucket = st.buckets.get_mut(name).ok_or_else(|| ApiError::NoSuchBucket(name.to_string()))?;
        let file = BucketFile { name: name.to_string(), created_ms: bucket.created_ms, versioning };
        self.write_json(&self.bucket_dir(name).join("bucket.json"), &file)?;
        bucket.versioning = versioning;
        Ok(())
    }

    /// Runs `f` on the bucket's index under the lock. Keep `f` short and free of I/O.
    pub fn read<R>(&self, bucket: &str, f: impl FnOnce(&Bucket) -> R) -> Result<R, ApiError> {
        let st = self.state.lock();
        let b = st.buckets.get(bucket).ok_or_else(|| ApiError::NoSuchBucket(bucket.to_string()))?;
        Ok(f(b))
    }

    // ---- staging bodies ----

    pub fn stage_bytes(&self, data: &[u8]) -> io::Result<Staged> {
        let staged = Staged { path: self.tmp_path(), size: data.len() as u64 };
        fs::write(&staged.path, data)?;
        Ok(staged)
    }

    pub fn stage_reader(&self, mut from: impl io::Read) -> io::Result<Staged> {
        let mut staged = Staged { path: self.tmp_path(), size: 0 };
        let mut out = File::create(&staged.path)?;
        staged.size = io::copy(&mut from, &mut out)?;
        out.flush()?;
        Ok(staged)
    }

    // ---- objects ----

    /// Makes `staged` the newest version of `key` (`None` writes a delete
    /// marker). Replaces the "null" version unless versioning is enabled.
    fn commit(
        &self,
        st: &mut State,
        bucket: &str,
        key: &str,
        staged: Option<Staged>,
        etag: String,
        attrs: ObjectAttrs,
    ) -> Result<(Version, Versioning), ApiError> {
        let seq = st.next_seq;
        let b = st.buckets.get_mut(bucket).ok_or_else(|| ApiError::NoSuchBucket(bucket.to_string()))?;
        let versioning = b.versioning;
        let version = Version {
            key: key.to_string(),
            version_id: if versioning == Versioning::Enabled { new_id() } else { "null".to_string() },
            seq,
            file: new_id(),
            delete_marker: staged.is_none(),
            size: staged.as_ref().map_or(0, |s| s.size),
            etag,
            last_modified_ms: now_ms(),
            attrs,
        };
        let meta = self.version_path(bucket, &version.file, "json");
        if let Some(dir) = meta.parent() {
            fs::create_dir_all(dir)?;
        }
        let data = self.version_path(bucket, &version.file, "data");
        if let Some(staged) = &staged {
            fs::rename(&staged.path, &data)?;
        }
        if let Err(e) = self.write_json(&meta, &version) {
            let _ = fs::remove_file(&data);
            return Err(e.into());
        }
        st.next_seq += 1;
        let versions = b.objects.entry(key.to_string()).or_default();
        if version.version_id == "null" {
            let (replaced, kept): (Vec<Version>, Vec<Version>) =
                std::mem::take(versions).into_iter().partition(|v| v.version_id == "null");
            *versions = kept;
            for old in replaced {
                self.remove_version_files(bucket, &old);
            }
        }
        versions.push(version.clone());
        Ok((version, versioning))
    }

    fn remove_version_files(&self, bucket: &str, version: &Version) {
        // Metadata first: once it is gone the version cannot come back.
        let _ = fs::remove_file(self.version_path(bucket, &version.file, "json"));
        let _ = fs::remove_file(self.version_path(bucket, &version.file, "data"));
    }

    pub fn put(
        &self,
        bucket: &str,
        key: &str,
        staged: Staged,
        etag: String,
        attrs: ObjectAttrs,
        guard: impl FnOnce(Option<&Version>) -> Result<(), ApiError>,
    ) -> Result<(Version, Versioning), ApiError> {
        let mut st = self.state.lock();
        let b = st.buckets.get(bucket).ok_or_else(|| ApiError::NoSuchBucket(bucket.to_string()))?;
        // Conditional writes see the current version under the same lock as the write.
        guard(b.current(key))?;
        self.commit(&mut st, bucket, key, Some(staged), etag, attrs)
    }

    /// The addressed version (newest if `version_id` is None) and its opened
    /// bytes. Missing keys, versions and delete markers are errors.
    pub fn open_object(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<(Version, Versioning, File), ApiError> {
        let st = self.state.lock();
        let b = st.buckets.get(bucket).ok_or_else(|| ApiError::NoSuchBucket(bucket.to_string()))?;
        let versions = b.objects.get(key);
        let version = match version_id {
            None => {
                let v = versions
                    .and_then(|vs| vs.last())
                    .ok_or_else(|| ApiError::NoSuchKey { key: key.to_string(), delete_marker: None })?;
                if v.delete_marker {
                    return Err(ApiError::NoSuchKey {
                        key: key.to_string(),
                        delete_marker: Some(v.version_id.clone()),
                    });
                }
                v
            }
            Some(id) => {
                let v = versions
                    .and_then(|vs| vs.iter().find(|v| v.version_id == id))
                    .ok_or_else(|| ApiError::NoSuchVersion { key: key.to_string(), version_id: id.to_string() })?;
                if v.delete_marker {
                    return Err(ApiError::MethodNotAllowed { delete_marker: Some(v.version_id.clone()) });
                }
                v
            }
        };
        let file = File::open(self.version_path(bucket, &version.file, "data")).map_err(|e| {
            if is_not_found(&e) {
                tracing::warn!(bucket, key, file = %version.file, "s3: object data file is missing");
                ApiError::NoSuchKey { key: key.to_string(), delete_marker: None }
            } else {
                ApiError::Internal(e)
            }
        })?;
        Ok((version.clone(), b.versioning, file))
    }

    pub fn delete_object(&self, bucket: &str, key: &str, version_id: Option<&str>) -> Result<Deleted, ApiError> {
        let mut st = self.state.lock();
        let b = st.buckets.get_mut(bucket).ok_or_else(|| ApiError::NoSuchBucket(bucket.to_string()))?;
        if let Some(id) = version_id {
            let mut deleted = Deleted { version_id: Some(id.to_string()), delete_marker: false };
            if let Some(versions) = b.objects.get_mut(key)
                && let Some(i) = versions.iter().position(|v| v.version_id == id)
            {
                let removed = versions.remove(i);
                if versions.is_empty() {
                    b.objects.remove(key);
                }
                deleted.delete_marker = removed.delete_marker;
                self.remove_version_files(bucket, &removed);
            }
            return Ok(deleted);
        }
        match b.versioning {
            Versioning::Unversioned => {
                if let Some(versions) = b.objects.remove(key) {
                    for v in versions {
                        self.remove_version_files(bucket, &v);
                    }
                }
                Ok(Deleted { version_id: None, delete_marker: false })
            }
            Versioning::Enabled | Versioning::Suspended => {
                let (marker, _) = self.commit(&mut st, bucket, key, None, String::new(), ObjectAttrs::default())?;
                Ok(Deleted { version_id: Some(marker.version_id), delete_marker: true })
            }
        }
    }

    // ---- multipart uploads ----

    pub fn create_upload(&self, bucket: &str, key: &str, attrs: ObjectAttrs) -> Result<String, ApiError> {
        let mut st = self.state.lock();
        if !st.buckets.contains_key(bucket) {
            return Err(ApiError::NoSuchBucket(bucket.to_string()));
        }
        let upload = Upload {
            upload_id: new_id(),
            bucket: bucket.to_string(),
            key: key.to_string(),
            initiated_ms: now_ms(),
            attrs,
            parts: BTreeMap::new(),
        };
        let dir = self.upload_dir(&upload.upload_id);
        fs::create_dir_all(&dir)?;
        self.write_json(&dir.join("upload.json"), &upload)?;
        let id = upload.upload_id.clone();
        st.uploads.insert(id.clone(), upload);
        Ok(id)
    }

    fn upload_mut<'a>(st: &'a mut State, bucket: &str, key: &str, upload_id: &str) -> Result<&'a mut Upload, ApiError> {
        if !st.buckets.contains_key(bucket) {
            return Err(ApiError::NoSuchBucket(bucket.to_string()));
        }
        st.uploads
            .get_mut(upload_id)
            .filter(|u| u.bucket == bucket && u.key == key)
            .ok_or_else(|| ApiError::NoSuchUpload(upload_id.to_string()))
    }

    pub fn put_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        number: u32,
        staged: Staged,
        etag: String,
    ) -> Result<Part, ApiError> {
        let mut st = self.state.lock();
        let upload = Self::upload_mut(&mut st, bucket, key, upload_id)?;
        let part = Part { number, etag, size: staged.size, last_modified_ms: now_ms() };
        fs::rename(&staged.path, self.part_path(upload_id, number))?;
        self.write_json(&self.upload_dir(upload_id).join(format!("part-{number}.json")), &part)?;
        upload.parts.insert(number, part.clone());
        Ok(part)
    }

    /// A copy of the upload with its parts, for CompleteMultipartUpload.
    pub fn upload(&self, bucket: &str, key: &str, upload_id: &str) -> Result<Upload, ApiError> {
        let mut st = self.state.lock();
        Self::upload_mut(&mut st, bucket, key, upload_id).map(|u| u.clone())
    }

    /// Commits the assembled object and forgets the upload.
    pub fn complete_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        staged: Staged,
        etag: String,
    ) -> Result<(Version, Versioning), ApiError> {
        let mut st = self.state.lock();
        let attrs = Self::upload_mut(&mut st, bucket, key, upload_id)?.attrs.clone();
        let committed = self.commit(&mut st, bucket, key, Some(staged), etag, attrs)?;
        self.forget_upload(st, upload_id);
        Ok(committed)
    }

    pub fn abort_upload(&self, bucket: &str, key: &str, upload_id: &str) -> Result<(), ApiError> {
        let mut st = self.state.lock();
        Self::upload_mut(&mut st, bucket, key, upload_id)?;
        self.forget_upload(st, upload_id);
        Ok(())
    }

    fn forget_upload(&self, mut st: parking_lot::MutexGuard<'_, State>, upload_id: &str) {
        st.uploads.remove(upload_id);
        let dir = self.upload_dir(upload_id);
        let _ = fs::remove_file(dir.join("upload.json"));
        drop(st);
        let _ = fs::remove_dir_all(dir);
    }
}

/// Loads one bucket directory. `None` when it has no `bucket.json` (a
/// creation cut short), which leaves nothing worth keeping.
fn load_bucket(dir: &Path, next_seq: &mut u64) -> io::Result<Option<Bucket>> {
    let meta: BucketFile = match fs::read(dir.join("bucket.json")) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(io::Error::other)?,
        Err(e) if is_not_found(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut versions: Vec<(PathBuf, Version)> = Vec::new();
    let mut described: HashSet<String> = HashSet::new();
    let mut data_files: Vec<(String, PathBuf)> = Vec::new();
    let objects = dir.join("objects");
    let shards = match fs::read_dir(&objects) {
        Ok(shards) => shards,
        Err(e) if is_not_found(&e) => {
            fs::create_dir_all(&objects)?;
            fs::read_dir(&objects)?
        }
        Err(e) => return Err(e),
    };
    for shard in shards {
        let shard = shard?.path();
        if !shard.is_dir() {
            continue;
        }
        for file in fs::read_dir(&shard)? {
            let path = file?.path();
            let (Some(stem), Some(ext)) = (
                path.file_stem().and_then(|s| s.to_str()).map(str::to_string),
                path.extension().and_then(|s| s.to_str()),
            ) else {
                continue;
            };
            match ext {
                "json" => {
                    described.insert(stem.clone());
                    match fs::read(&path)
                        .map_err(io::Error::other)
                        .and_then(|b| serde_json::from_slice::<Version>(&b).map_err(io::Error::other))
                    {
                        Ok(v) if v.file == stem => versions.push((path, v)),
                        Ok(_) => {
                            tracing::warn!(file = %path.display(), "s3: version file names another file; skipped")
                        }
                        Err(e) => {
                            tracing::warn!(file = %path.display(), error = %e, "s3: unreadable version file; skipped")
                        }
                    }
                }
                "data" => data_files.push((stem, path)),
                _ => {}
            }
        }
    }
    // Bytes whose metadata never landed (or was removed first) are not objects.
    let data_stems: HashSet<String> = data_files.iter().map(|(s, _)| s.clone()).collect();
    for (stem, path) in &data_files {
        if !described.contains(stem) {
            let _ = fs::remove_file(path);
        }
    }
    let mut objects: BTreeMap<String, Vec<Version>> = BTreeMap::new();
    for (path, v) in versions {
        if !v.delete_marker && !data_stems.contains(&v.file) {
            tracing::warn!(file = %path.display(), "s3: version without its data file; skipped");
            continue;
        }
        *next_seq = (*next_seq).max(v.seq + 1);
        objects.entry(v.key.clone()).or_default().push(v);
    }
    for versions in objects.values_mut() {
        versions.sort_by_key(|v| v.seq);
        // A crash between writing a new "null" version and removing the old
        // one leaves two; the newer wins.
        let newest_null = versions.iter().rev().find(|v| v.version_id == "null").map(|v| v.seq);
        versions.retain(|v| {
            let stale = v.version_id == "null" && Some(v.seq) != newest_null;
            if stale {
                let shard = v.file.get(..2).unwrap_or("00");
                let _ = fs::remove_file(dir.join("objects").join(shard).join(format!("{}.json", v.file)));
                let _ = fs::remove_file(dir.join("objects").join(shard).join(format!("{}.data", v.file)));
            }
            !stale
        });
    }
    Ok(Some(Bucket { created_ms: meta.created_ms, versioning: meta.versioning, objects }))
}

/// Loads one upload directory; `None` when it has no `upload.json`.
fn load_upload(dir: &Path) -> io::Result<Option<Upload>> {
    let mut upload: Upload = match fs::read(dir.join("upload.json")) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(io::Error::other)?,
        Err(e) if is_not_found(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    if dir.file_name().and_then(|n| n.to_str()) != Some(upload.upload_id.as_str()) {
        return Err(io::Error::other("upload.json names another upload"));
    }
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !(name.starts_with("part-") && name.ends_with(".json")) {
            continue;
        }
        let part: Part = match fs::read(&path)
            .map_err(io::Error::other)
            .and_then(|b| serde_json::from_slice(&b).map_err(io::Error::other))
        {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "s3: unreadable part file; skipped");
                continue;
            }
        };
        if dir.join(format!("part-{}.data", part.number)).exists() {
            upload.parts.insert(part.number, part);
        }
    }
    Ok(Some(upload))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("s3-store-test-{}", new_id()));
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn bucket_names() {
        for ok in ["abc", "my-bucket", "my.bucket.1", "a1b", &"a".repeat(63)] {
            assert!(valid_bucket_name(ok), "{ok}");
        }
        for bad in [
            "ab",
            "ABC",
            "-abc",
            "abc-",
            "a..b",
            "a.-b",
            "192.168.1.1",
            "a_b",
            "xn--abc",
            &"a".repeat(64),
            "../x",
            "a b",
        ] {
            assert!(!valid_bucket_name(bad), "{bad}");
        }
    }

    #[test]
    fn survives_reopen_and_cleans_up_crash_leftovers() {
        let root = tempdir();
        {
            let s = Store::open(root.clone()).unwrap();
            s.create_bucket("bkt").unwrap();
            let staged = s.stage_bytes(b"one").unwrap();
            s.put("bkt", "k", staged, "\"e1\"".into(), ObjectAttrs::default(), |_| Ok(())).unwrap();
            let staged = s.stage_bytes(b"two").unwrap();
            s.put("bkt", "k", staged, "\"e2\"".into(), ObjectAttrs::default(), |_| Ok(())).unwrap();
            s.set_versioning("bkt", Versioning::Enabled).unwrap();
            let staged = s.stage_bytes(b"three").unwrap();
            s.put("bkt", "v", staged, "\"e3\"".into(), ObjectAttrs::default(), |_| Ok(())).unwrap();
        }
        // Simulate crash leftovers: an orphan data file and a stale null version.
        let shard = root.join("buckets/bkt/objects/zz");
        fs::create_dir_all(&shard).unwrap();
        fs::write(shard.join("zzorphan.data"), b"x").unwrap();
        let stale = Version {
            key: "k".into(),
            version_id: "null".into(),
            seq: 0,
            file: "zzstale".into(),
            delete_marker: false,
            size: 5,
            etag: "\"old\"".into(),
            last_modified_ms: 0,
            attrs: ObjectAttrs::default(),
        };
        fs::write(shard.join("zzstale.json"), serde_json::to_vec(&stale).unwrap()).unwrap();
        fs::write(shard.join("zzstale.data"), b"stale").unwrap();
        fs::write(root.join("tmp/half-written"), b"x").unwrap();

        let s = Store::open(root.clone()).unwrap();
        let (v, versioning, _) = s.open_object("bkt", "k", None).unwrap();
        assert_eq!(v.etag, "\"e2\"");
        assert_eq!(versioning, Versioning::Enabled);
        assert_eq!(s.read("bkt", |b| b.objects["k"].len()).unwrap(), 1);
        assert!(!shard.join("zzorphan.data").exists());
        assert!(!shard.join("zzstale.json").exists());
        assert!(!root.join("tmp/half-written").exists());
        let (v, _, _) = s.open_object("bkt", "v", None).unwrap();
        assert_ne!(v.version_id, "null");
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn versioned_delete_leaves_marker() {
        let root = tempdir();
        let s = Store::open(root.clone()).unwrap();
        s.create_bucket("bkt").unwrap();
        s.set_versioning("bkt", Versioning::Enabled).unwrap();
        let staged = s.stage_bytes(b"one").unwrap();
        let (v1, _) = s.put("bkt", "k", staged, "\"e1\"".into(), ObjectAttrs::default(), |_| Ok(())).unwrap();
        let d = s.delete_object("bkt", "k", None).unwrap();
        assert!(d.delete_marker);
        assert!(matches!(s.open_object("bkt", "k", None), Err(ApiError::NoSuchKey { delete_marker: Some(_), .. })));
        assert!(s.open_object("bkt", "k", Some(&v1.version_id)).is_ok());
        assert!(matches!(s.delete_bucket("bkt"), Err(ApiError::BucketNotEmpty(_))));
        s.delete_object("bkt", "k", d.version_id.as_deref()).unwrap();
        assert!(s.open_object("bkt", "k", None).is_ok());
        s.delete_object("bkt", "k", Some(&v1.version_id)).unwrap();
        s.delete_bucket("bkt").unwrap();
        drop(s);
        let s = Store::open(root.clone()).unwrap();
        assert!(s.buckets().is_empty());
        fs::remove_dir_all(root).unwrap();
    }
}
