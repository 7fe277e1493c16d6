//! Checks, digests and safely unpacks deployment packages (zip archives) for functions and layers.
//!
//! Two entry points share one walk over the central directory ([`plan`]):
//! [`validate_zip`] is the cheap check run when code is uploaded, and
//! [`extract_zip`] unpacks into a fresh directory and renames it into place.
//!
//! Safety rules, applied to every entry before anything touches the disk:
//! * paths must be relative: no `..`, no leading `/`, no drive letter, no
//!   backslash, no NUL; `.` and empty components are dropped;
//! * no entry may sit under a file or a link of the same archive, and no
//!   path may appear twice (directories excepted);
//! * a link must be relative and, resolved from its own directory, stay in
//!   the root; its target may only climb (`..`) before it descends, so a
//!   chain of links can never climb out through another link;
//! * entry count, declared sizes and the bytes actually written are capped.
//!
//! While writing, files are opened with `create_new` (which never follows a
//! link) inside directories this module created and checked, and the output
//! is counted as it is copied, so a header that understates a size cannot
//! get past the unzipped-size limit.

use std::collections::HashMap;
use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::io::{self, Cursor, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use zip::{CompressionMethod, System, ZipArchive};

/// The text AWS uses when it cannot read an uploaded package.
const UNZIP_FAILED: &str = "Could not unzip uploaded file. Please check your file, then try to upload again.";
/// Longest link target read from an archive.
const MAX_LINK_TARGET: u64 = 4096;
/// Longest single path component most filesystems accept.
const MAX_COMPONENT_LEN: usize = 255;
/// Longest relative path accepted for an entry.
const MAX_PATH_LEN: usize = 4000;

const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFLNK: u32 = 0o120_000;

/// Size and count limits for one package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Cap on the unpacked size, checked against declared sizes and again
    /// against the bytes actually written.
    pub max_unzipped_bytes: u64,
    pub max_entries: usize,
    /// Cap on the zip file itself.
    pub max_zip_bytes: usize,
}

impl Default for Limits {
    /// 250 MiB unzipped (AWS's limit), 20,000 entries, 70 MiB zipped.
    fn default() -> Self {
        Limits { max_unzipped_bytes: 262_144_000, max_entries: 20_000, max_zip_bytes: 70 * 1024 * 1024 }
    }
}

/// Why a package was refused or could not be unpacked.
#[derive(Debug)]
pub enum CodeError {
    /// The bytes are not a readable zip archive (garbage, truncated, corrupt
    /// entry data, encryption or an unsupported compression method). Holds
    /// the detail.
    NotAZip(String),
    /// The package or its unpacked contents exceed a limit. Holds the full message.
    TooLarge(String),
    /// The archive holds more entries than allowed. Holds the count found.
    TooManyEntries(usize),
    /// An entry would land outside the package root, or is not a plain file,
    /// directory or contained link. Holds the entry's name as stored.
    UnsafePath(String),
    /// The local filesystem failed while unpacking: a server-side problem.
    Io(io::Error),
}

impl fmt::Display for CodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodeError::NotAZip(detail) => write!(f, "{UNZIP_FAILED} ({detail})"),
            CodeError::TooLarge(message) => f.write_str(message),
            CodeError::TooManyEntries(count) => {
                write!(f, "{UNZIP_FAILED} (the archive has {count} entries, more than are allowed)")
            }
            CodeError::UnsafePath(name) => write!(
                f,
                "{UNZIP_FAILED} (entry '{name}' is not allowed: entries must be files, \
                 directories or links with relative paths that stay inside the package, \
                 with no '..', absolute paths, drive letters, backslashes or duplicates, \
                 and links must point inside the package)"
            ),
            CodeError::Io(e) => write!(f, "Could not store the deployment package: {e}"),
        }
    }
}

impl std::error::Error for CodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CodeError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for CodeError {
    fn from(e: io::Error) -> Self {
        CodeError::Io(e)
    }
}

/// SHA-256 of a package, in the forms the API needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeDigest {
    /// Lowercase hex: the content address for stored blobs and unpacked trees.
    pub sha256_hex: String,
    /// Standard base64 of the 32 digest bytes, as AWS reports `CodeSha256`.
    pub sha256_b64: String,
    pub size: u64,
}

/// What a package holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ZipSummary {
    /// Entries in the archive, directories and links included.
    pub entries: usize,
    /// Declared total for [`validate_zip`]; bytes actually written for [`extract_zip`].
    pub unzipped_bytes: u64,
    /// Normalised relative paths (`/`-separated) of the regular files, in archive order.
    pub files: Vec<String>,
}

impl ZipSummary {
    /// Whether the package holds a regular file at this relative path
    /// (for example `lambda_function.py` or `bootstrap`).
    pub fn has_file(&self, path: &str) -> bool {
        self.files.iter().any(|f| f == path)
    }
}

/// Hashes a package.
pub fn digest(bytes: &[u8]) -> CodeDigest {
    let hash = Sha256::digest(bytes);
    let mut hex = String::with_capacity(64);
    for b in hash.iter() {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        hex.push(char::from(HEX[usize::from(b >> 4)]));
        hex.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    CodeDigest {
        sha256_hex: hex,
        sha256_b64: base64::engine::general_purpose::STANDARD.encode(hash.as_slice()),
        size: bytes.len() as u64,
    }
}

/// Checks a package without unpacking it: opens the archive, walks the
/// central directory, and checks the entry count, the declared unzipped
/// size, every path and every link target.
pub fn validate_zip(bytes: &[u8], limits: &Limits) -> Result<ZipSummary, CodeError> {
    let mut archive = open(bytes, limits)?;
    let plan = plan(&mut archive, limits)?;
    Ok(ZipSummary { entries: plan.entries.len(), unzipped_bytes: plan.declared_bytes, files: plan.files() })
}

/// Unpacks a package into `dest`, which must not exist yet.
///
/// The archive is unpacked into a fresh sibling directory and renamed onto
/// `dest`. If another writer created `dest` first, theirs is kept (it holds
/// the same code when `dest` is named by the digest) and this copy is
/// removed. On any error nothing is left behind.
pub fn extract_zip(bytes: &[u8], dest: &Path, limits: &Limits) -> Result<ZipSummary, CodeError> {
    let mut archive = open(bytes, limits)?;
    let plan = plan(&mut archive, limits)?;

    let tmp = temp_sibling(dest)?;
    if let Some(parent) = tmp.parent() {
        fs::create_dir_all(parent)?;
    }
    make_dir(&tmp)?;
    let written = match write_entries(&mut archive, &plan, &tmp, limits) {
        Ok(written) => written,
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    let summary = ZipSummary { entries: plan.entries.len(), unzipped_bytes: written, files: plan.files() };
    match fs::rename(&tmp, dest) {
        Ok(()) => Ok(summary),
        Err(rename_err) => {
            let _ = fs::remove_dir_all(&tmp);
            match fs::symlink_metadata(dest) {
                // Lost the race to another writer: keep theirs.
                Ok(meta) if meta.file_type().is_dir() => Ok(summary),
                _ => Err(CodeError::Io(rename_err)),
            }
        }
    }
}

fn open<'a>(bytes: &'a [u8], limits: &Limits) -> Result<ZipArchive<Cursor<&'a [u8]>>, CodeError> {
    if bytes.len() > limits.max_zip_bytes {
        return Err(CodeError::TooLarge(format!("Zipped size must be smaller than {} bytes", limits.max_zip_bytes)));
    }
    ZipArchive::new(Cursor::new(bytes)).map_err(|e| CodeError::NotAZip(e.to_string()))
}

fn too_large(limits: &Limits) -> CodeError {
    CodeError::TooLarge(format!("Unzipped size must be smaller than {} bytes", limits.max_unzipped_bytes))
}

/// What one entry becomes on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Dir,
    File { mode: u32 },
    Link { target: String },
}

#[derive(Debug)]
struct Entry {
    /// Position in the archive.
    index: usize,
    /// The name as stored, for error messages.
    name: String,
    /// Normalised path components; empty for the root itself (`./`).
    parts: Vec<String>,
    kind: Kind,
}

#[derive(Debug)]
struct Plan {
    entries: Vec<Entry>,
    declared_bytes: u64,
}

impl Plan {
    fn files(&self) -> Vec<String> {
        self.entries.iter().filter(|e| matches!(e.kind, Kind::File { .. })).map(|e| e.parts.join("/")).collect()
    }
}

/// What a path already is, for conflict checks between entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    Dir,
    Leaf,
}

/// Walks the central directory and decides what every entry becomes,
/// rejecting the whole archive on the first problem.
fn plan(archive: &mut ZipArchive<Cursor<&[u8]>>, limits: &Limits) -> Result<Plan, CodeError> {
    let count = archive.len();
    if count > limits.max_entries {
        return Err(CodeError::TooManyEntries(count));
    }
    // The reader keeps only one of several same-named entries; other unzip
    // tools may pick another, so refuse rather than guess.
    if archive.has_duplicate_names() {
        return Err(CodeError::NotAZip("the archive lists the same entry name more than once".into()));
    }
    let mut entries = Vec::with_capacity(count);
    let mut declared: u64 = 0;
    let mut nodes: HashMap<String, Node> = HashMap::new();
    // Link targets are read in a second pass: reading needs `&mut archive`.
    let mut links = Vec::new();

    for index in 0..count {
        let entry = archive.by_index_data(index).map_err(|e| CodeError::NotAZip(e.to_string()))?;
        let name = entry.name().map_err(|e| CodeError::NotAZip(e.to_string()))?.into_owned();
        if entry.encrypted() {
            return Err(CodeError::NotAZip(format!("entry '{name}' is encrypted")));
        }
        let method = entry.compression();
        if method != CompressionMethod::Stored && method != CompressionMethod::Deflated {
            return Err(CodeError::NotAZip(format!("entry '{name}' uses unsupported compression {method}")));
        }
        // A real Unix mode only when the archive was made on Unix and set one.
        let unix_mode =
            (entry.system() == System::Unix).then_some(entry.external_attributes() >> 16).filter(|mode| *mode != 0);
        let size = entry.size();
        drop(entry);

        let parts = normalise(&name).ok_or_else(|| CodeError::UnsafePath(name.clone()))?;
        let kind = classify(&name, &parts, unix_mode)?;
        if parts.is_empty() && kind != Kind::Dir {
            return Err(CodeError::UnsafePath(name));
        }
        claim(&mut nodes, &parts, &kind, &name)?;

        match kind {
            Kind::File { .. } => {
                declared = declared.saturating_add(size);
                if declared > limits.max_unzipped_bytes {
                    return Err(too_large(limits));
                }
            }
            Kind::Link { .. } => {
                if size > MAX_LINK_TARGET {
                    return Err(CodeError::UnsafePath(name));
                }
                declared = declared.saturating_add(size);
                links.push(entries.len());
            }
            Kind::Dir => {}
        }
        entries.push(Entry { index, name, parts, kind });
    }
    if declared > limits.max_unzipped_bytes {
        return Err(too_large(limits));
    }

    for i in links {
        let Some(entry) = entries.get_mut(i) else {
            continue;
        };
        let target = read_link_target(archive, entry)?;
        if !link_stays_inside(&entry.parts, &target) {
            return Err(CodeError::UnsafePath(entry.name.clone()));
        }
        entry.kind = Kind::Link { target };
    }
    Ok(Plan { entries, declared_bytes: declared })
}

/// Splits an entry name into safe relative components, or `None` if the
/// name is absolute, climbs with `..`, uses a drive letter, a backslash or
/// NUL, or is too long.
fn normalise(name: &str) -> Option<Vec<String>> {
    if name.is_empty()
        || name.len() > MAX_PATH_LEN
        || name.starts_with('/')
        || name.contains('\\')
        || name.contains('\0')
    {
        return None;
    }
    let mut parts = Vec::new();
    for (i, part) in name.split('/').enumerate() {
        match part {
            "" | "." => {}
            ".." => return None,
            _ if i == 0 && has_drive_prefix(part) => return None,
            _ if part.len() > MAX_COMPONENT_LEN => return None,
            _ => parts.push(part.to_owned()),
        }
    }
    Some(parts)
}

/// `C:` or `C:foo`: a Windows drive prefix.
fn has_drive_prefix(part: &str) -> bool {
    let b = part.as_bytes();
    b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':'
}

/// Decides whether an entry is a directory, a file (and with which mode) or a link.
fn classify(name: &str, parts: &[String], unix_mode: Option<u32>) -> Result<Kind, CodeError> {
    if name.ends_with('/') {
        return Ok(Kind::Dir);
    }
    let Some(mode) = unix_mode else {
        // No Unix mode: 0644, except a custom runtime's `bootstrap`, which must run.
        let is_bootstrap = parts.last().is_some_and(|p| p == "bootstrap");
        return Ok(Kind::File { mode: if is_bootstrap { 0o755 } else { 0o644 } });
    };
    match mode & S_IFMT {
        S_IFDIR => Ok(Kind::Dir),
        S_IFLNK => Ok(Kind::Link { target: String::new() }),
        // Keep the executable bit; otherwise normalise so every reader can read.
        S_IFREG | 0 => Ok(Kind::File { mode: if mode & 0o111 != 0 { 0o755 } else { 0o644 } }),
        // FIFOs, devices, sockets.
        _ => Err(CodeError::UnsafePath(name.to_owned())),
    }
}

/// Records an entry's path and its parents, refusing duplicates and
/// anything placed under a file or a link.
fn claim(nodes: &mut HashMap<String, Node>, parts: &[String], kind: &Kind, name: &str) -> Result<(), CodeError> {
    let unsafe_path = || CodeError::UnsafePath(name.to_owned());
    let mut path = String::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            path.push('/');
        }
        path.push_str(part);
        let wanted = if i + 1 == parts.len() && *kind != Kind::Dir { Node::Leaf } else { Node::Dir };
        match nodes.get(&path) {
            None => {
                nodes.insert(path.clone(), wanted);
            }
            Some(Node::Dir) if wanted == Node::Dir => {}
            Some(_) => return Err(unsafe_path()),
        }
    }
    Ok(())
}

fn read_link_target(archive: &mut ZipArchive<Cursor<&[u8]>>, entry: &Entry) -> Result<String, CodeError> {
    let corrupt = |e: &dyn fmt::Display| CodeError::NotAZip(format!("entry '{}': {e}", entry.name));
    let file = archive.by_index(entry.index).map_err(|e| corrupt(&e))?;
    let mut raw = Vec::new();
    file.take(MAX_LINK_TARGET + 1).read_to_end(&mut raw).map_err(|e| corrupt(&e))?;
    if raw.len() as u64 > MAX_LINK_TARGET {
        return Err(CodeError::UnsafePath(entry.name.clone()));
    }
    String::from_utf8(raw).map_err(|_| CodeError::UnsafePath(entry.name.clone()))
}

/// Whether a link at `link_parts` with this target resolves inside the root.
///
/// The target must be relative, free of backslashes and NUL, and of the form
/// `../../a/b`: every `..` before any named component. The leading `..`s are
/// resolved against the link's own directory, which is always a real
/// directory (entries never sit under links), so the lexical result is the
/// real one; the named components then only descend, through directories
/// or through other links that obey the same rule.
fn link_stays_inside(link_parts: &[String], target: &str) -> bool {
    if target.is_empty() || target.starts_with('/') || target.contains('\\') || target.contains('\0') {
        return false;
    }
    let depth = link_parts.len().saturating_sub(1);
    let mut ups = 0usize;
    let mut descended = false;
    for (i, part) in target.split('/').enumerate() {
        match part {
            "" | "." => {}
            ".." if descended => return false,
            ".." => ups += 1,
            _ if i == 0 && has_drive_prefix(part) => return false,
            _ => descended = true,
        }
    }
    ups <= depth
}

/// A fresh, unused name next to `dest`: `<dest>.tmp-<pid>-<counter>-<nanos>`.
fn temp_sibling(dest: &Path) -> Result<PathBuf, CodeError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let Some(file_name) = dest.file_name() else {
        return Err(CodeError::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("extraction target {} has no file name", dest.display()),
        )));
    };
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut tmp_name = file_name.to_os_string();
    tmp_name.push(format!(".tmp-{}-{n}-{nanos}", std::process::id()));
    Ok(dest.with_file_name(tmp_name))
}

/// Creates one directory (it must not exist) with mode 0755.
fn make_dir(path: &Path) -> io::Result<()> {
    fs::DirBuilder::new().mode(0o755).create(path)?;
    // The umask may have narrowed the mode.
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
}

/// Writes every planned entry under `root`; returns the bytes written.
fn write_entries(
    archive: &mut ZipArchive<Cursor<&[u8]>>,
    plan: &Plan,
    root: &Path,
    limits: &Limits,
) -> Result<u64, CodeError> {
    let mut dirs: HashSet<PathBuf> = HashSet::new();
    let mut written: u64 = 0;
    for entry in &plan.entries {
        let Some((last, parents)) = entry.parts.split_last() else {
            continue; // `./`: the root itself.
        };
        let parent = ensure_dirs(root, parents, &mut dirs, &entry.name)?;
        let path = parent.join(last);
        match &entry.kind {
            Kind::Dir => {
                ensure_dirs(root, &entry.parts, &mut dirs, &entry.name)?;
            }
            Kind::Link { target } => {
                written = written.saturating_add(target.len() as u64);
                if written > limits.max_unzipped_bytes {
                    return Err(too_large(limits));
                }
                std::os::unix::fs::symlink(target, &path).map_err(|e| exists_is_unsafe(e, &entry.name))?;
            }
            Kind::File { mode } => {
                let mut out = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(*mode)
                    .open(&path)
                    .map_err(|e| exists_is_unsafe(e, &entry.name))?;
                // fchmod on the open file: the umask may have narrowed the mode.
                out.set_permissions(fs::Permissions::from_mode(*mode))?;
                let reader = archive
                    .by_index(entry.index)
                    .map_err(|e| CodeError::NotAZip(format!("entry '{}': {e}", entry.name)))?;
                let budget = limits.max_unzipped_bytes.saturating_sub(written);
                let n = copy_limited(reader, &mut out, budget, &entry.name, limits)?;
                written = written.saturating_add(n);
            }
        }
    }
    Ok(written)
}

fn exists_is_unsafe(e: io::Error, name: &str) -> CodeError {
    if e.kind() == io::ErrorKind::AlreadyExists { CodeError::UnsafePath(name.to_owned()) } else { CodeError::Io(e) }
}

/// Makes sure `root/parts...` is a chain of real directories, creating the
/// missing ones; refuses to pass through anything else (a link above all).
fn ensure_dirs(root: &Path, parts: &[String], known: &mut HashSet<PathBuf>, name: &str) -> Result<PathBuf, CodeError> {
    let mut path = root.to_path_buf();
    for part in parts {
        path.push(part);
        if known.contains(&path) {
            continue;
        }
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_dir() => {}
            Ok(_) => return Err(CodeError::UnsafePath(name.to_owned())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => make_dir(&path)?,
            Err(e) => return Err(CodeError::Io(e)),
        }
        known.insert(path.clone());
    }
    Ok(path)
}

/// Copies at most `budget` bytes; one byte more is [`CodeError::TooLarge`].
/// Read errors mean corrupt entry data, write errors are local I/O failures.
fn copy_limited<R: Read, W: Write>(
    mut reader: R,
    writer: &mut W,
    budget: u64,
    name: &str,
    limits: &Limits,
) -> Result<u64, CodeError> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut copied: u64 = 0;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(copied),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CodeError::NotAZip(format!("entry '{name}': {e}"))),
        };
        copied = copied.saturating_add(n as u64);
        if copied > budget {
            return Err(too_large(limits));
        }
        let chunk =
            buf.get(..n).ok_or_else(|| CodeError::NotAZip(format!("entry '{name}': reader overran its buffer")))?;
        writer.write_all(chunk)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;
    use zip::write::SimpleFileOptions;

    /// A scratch directory removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            static N: AtomicU64 = AtomicU64::new(0);
            let path = std::env::temp_dir().join(format!(
                "code-rs-test-{}-{tag}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).unwrap();
            TempDir(path)
        }

        /// Names in the directory, sorted.
        fn listing(&self) -> Vec<String> {
            let mut names: Vec<String> =
                fs::read_dir(&self.0).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
            names.sort();
            names
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    enum Item<'a> {
        File(&'a str, &'a [u8], Option<u32>),
        Dir(&'a str),
        Link(&'a str, &'a str),
    }

    fn build(items: &[Item<'_>]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let base = SimpleFileOptions::default().compression_method(CompressionMethod::Deflated);
        for item in items {
            match item {
                Item::File(name, data, mode) => {
                    let opts = match mode {
                        Some(m) => base.unix_permissions(*m),
                        None => base,
                    };
                    w.start_file(*name, opts).unwrap();
                    w.write_all(data).unwrap();
                }
                Item::Dir(name) => w.add_directory(*name, base).unwrap(),
                Item::Link(name, target) => w.add_symlink(*name, *target, base).unwrap(),
            }
        }
        w.finish().unwrap().into_inner()
    }

    /// Offsets of every central directory header.
    fn central_headers(zip: &[u8]) -> Vec<usize> {
        zip.windows(4).enumerate().filter(|(_, w)| *w == [0x50, 0x4b, 0x01, 0x02]).map(|(i, _)| i).collect()
    }

    /// Rewrites an entry's name in both headers (same length), since the
    /// writer may refuse or clean up hostile names.
    fn rename_entry(zip: &mut [u8], from: &str, to: &str) {
        assert_eq!(from.len(), to.len());
        let mut hits = 0;
        let mut i = 0;
        while i + from.len() <= zip.len() {
            if &zip[i..i + from.len()] == from.as_bytes() {
                zip[i..i + from.len()].copy_from_slice(to.as_bytes());
                hits += 1;
            }
            i += 1;
        }
        assert_eq!(hits, 2, "name should appear in the local and central header");
    }

    fn small_limits() -> Limits {
        Limits { max_unzipped_bytes: 64 * 1024, max_entries: 10, max_zip_bytes: 1024 * 1024 }
    }

    fn mode_of(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().mode() & 0o777
    }

    #[test]
    fn digest_of_hello() {
        let d = digest(b"hello");
        assert_eq!(d.sha256_b64, "LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=");
        assert_eq!(d.sha256_hex, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
        assert_eq!(d.size, 5);
        assert_eq!(d.sha256_b64.len(), 44);
    }

    #[test]
    fn extracts_files_and_keeps_exec_bit() {
        let zip = build(&[
            Item::File("bootstrap", b"#!/bin/sh\necho hi\n", Some(0o755)),
            Item::Dir("lib/"),
            Item::File("lib/handler.py", b"def h(e, c): return 1\n", Some(0o600)),
            Item::File("./nested//deep/x.txt", b"x", Some(0o644)),
        ]);
        let tmp = TempDir::new("normal");
        let dest = tmp.0.join("code");
        let summary = extract_zip(&zip, &dest, &Limits::default()).unwrap();
        assert_eq!(summary.entries, 4);
        assert_eq!(summary.files, vec!["bootstrap", "lib/handler.py", "nested/deep/x.txt"]);
        assert!(summary.has_file("lib/handler.py"));
        assert!(!summary.has_file("lib"));
        assert_eq!(summary.unzipped_bytes, 18 + 22 + 1);
        assert_eq!(fs::read(dest.join("bootstrap")).unwrap(), b"#!/bin/sh\necho hi\n");
        assert_eq!(fs::read(dest.join("nested/deep/x.txt")).unwrap(), b"x");
        assert_eq!(mode_of(&dest.join("bootstrap")), 0o755);
        assert_eq!(mode_of(&dest.join("lib/handler.py")), 0o644);
        assert_eq!(mode_of(&dest.join("lib")), 0o755);
        assert_eq!(mode_of(&dest), 0o755);
        // Only `code` remains: the temp directory was renamed away.
        assert_eq!(tmp.listing(), vec!["code"]);

        let checked = validate_zip(&zip, &Limits::default()).unwrap();
        assert_eq!(checked.files, summary.files);
        assert_eq!(checked.unzipped_bytes, summary.unzipped_bytes);
    }

    #[test]
    fn files_without_unix_mode_get_defaults() {
        let mut zip =
            build(&[Item::File("bootstrap", b"#!/bin/sh\n", Some(0o644)), Item::File("app.js", b"x", Some(0o755))]);
        // Turn both entries into DOS entries with no attributes.
        for at in central_headers(&zip) {
            zip[at + 5] = 0; // version made by: high byte = system
            zip[at + 38..at + 42].copy_from_slice(&[0, 0, 0, 0]);
        }
        let tmp = TempDir::new("nomode");
        let dest = tmp.0.join("code");
        extract_zip(&zip, &dest, &Limits::default()).unwrap();
        assert_eq!(mode_of(&dest.join("bootstrap")), 0o755);
        assert_eq!(mode_of(&dest.join("app.js")), 0o644);
    }

    #[test]
    fn rejects_parent_dir_entry() {
        let mut zip = build(&[Item::File("ok.txt", b"fine", None), Item::File("xx/evil", b"pwned", None)]);
        rename_entry(&mut zip, "xx/evil", "../evil");
        let tmp = TempDir::new("dotdot");
        let dest = tmp.0.join("inner").join("code");
        fs::create_dir_all(tmp.0.join("inner")).unwrap();
        match extract_zip(&zip, &dest, &Limits::default()) {
            Err(CodeError::UnsafePath(name)) => assert_eq!(name, "../evil"),
            other => panic!("expected UnsafePath, got {other:?}"),
        }
        assert!(!tmp.0.join("evil").exists());
        assert_eq!(tmp.listing(), vec!["inner"]);
        assert!(fs::read_dir(tmp.0.join("inner")).unwrap().next().is_none());
        assert!(matches!(validate_zip(&zip, &Limits::default()), Err(CodeError::UnsafePath(_))));
    }

    #[test]
    fn rejects_absolute_and_windows_paths() {
        for hostile in ["/tmp/x", "C:\\x__", "a\\..\\b", "C:/win/x", "ok/\0/x"] {
            let placeholder: String = "p".repeat(hostile.len());
            let mut zip = build(&[Item::File(&placeholder, b"x", None)]);
            rename_entry(&mut zip, &placeholder, hostile);
            match validate_zip(&zip, &Limits::default()) {
                Err(CodeError::UnsafePath(name)) => assert_eq!(name, hostile),
                other => panic!("{hostile:?}: expected UnsafePath, got {other:?}"),
            }
            let tmp = TempDir::new("abs");
            let dest = tmp.0.join("code");
            assert!(matches!(extract_zip(&zip, &dest, &Limits::default()), Err(CodeError::UnsafePath(_))));
            assert!(tmp.listing().is_empty());
        }
    }

    #[test]
    fn rejects_escaping_symlinks() {
        for target in ["../../etc/passwd", "/etc/passwd", "a/../../x", "../..", "C:/x", ""] {
            let zip = build(&[Item::Link("dir/link", target)]);
            let tmp = TempDir::new("escape");
            let dest = tmp.0.join("code");
            match extract_zip(&zip, &dest, &Limits::default()) {
                Err(CodeError::UnsafePath(name)) => assert_eq!(name, "dir/link"),
                other => panic!("{target:?}: expected UnsafePath, got {other:?}"),
            }
            assert!(tmp.listing().is_empty(), "{target:?}");
        }
    }

    #[test]
    fn allows_symlinks_inside() {
        let zip = build(&[
            Item::File("b", b"target", None),
            Item::Link("a", "b"),
            Item::Dir("sub/"),
            Item::Link("sub/up", "../b"),
            Item::Link("sub/root", ".."),
        ]);
        let tmp = TempDir::new("inside");
        let dest = tmp.0.join("code");
        let summary = extract_zip(&zip, &dest, &Limits::default()).unwrap();
        assert_eq!(summary.files, vec!["b"]);
        assert_eq!(fs::read_link(dest.join("a")).unwrap(), Path::new("b"));
        assert_eq!(fs::read(dest.join("a")).unwrap(), b"target");
        assert_eq!(fs::read(dest.join("sub/up")).unwrap(), b"target");
        assert_eq!(fs::read(dest.join("sub/root/b")).unwrap(), b"target");
    }

    #[test]
    fn rejects_writing_through_a_symlink() {
        // `link -> sub` is contained, but a later entry under `link/` must not follow it.
        let zip = build(&[Item::Dir("sub/"), Item::Link("link", "sub"), Item::File("link/file", b"x", None)]);
        let tmp = TempDir::new("through");
        match extract_zip(&zip, &tmp.0.join("code"), &Limits::default()) {
            Err(CodeError::UnsafePath(name)) => assert_eq!(name, "link/file"),
            other => panic!("expected UnsafePath, got {other:?}"),
        }
        assert!(tmp.listing().is_empty());
    }

    #[test]
    fn rejects_link_chains_that_climb() {
        // Lexically `d/a/..` is `d`, but `d/a` is a link to the root, so the
        // kernel would resolve `b` to the root's parent.
        let zip = build(&[Item::Link("d/a", ".."), Item::Link("b", "d/a/..")]);
        assert!(matches!(
            validate_zip(&zip, &Limits::default()),
            Err(CodeError::UnsafePath(name)) if name == "b"
        ));
    }

    #[test]
    fn rejects_duplicates() {
        let zip = build(&[Item::File("x", b"1", None), Item::File("y", b"2", None)]);
        let mut zip = zip;
        rename_entry(&mut zip, "y", "x");
        assert!(matches!(validate_zip(&zip, &Limits::default()), Err(CodeError::NotAZip(_))));
        // Two spellings of one path.
        let aliased = build(&[Item::File("x", b"1", None), Item::File("./x", b"2", None)]);
        assert!(matches!(
            validate_zip(&aliased, &Limits::default()),
            Err(CodeError::UnsafePath(name)) if name == "./x"
        ));
        let under_file = build(&[Item::File("x", b"1", None), Item::File("x/y", b"2", None)]);
        assert!(matches!(
            validate_zip(&under_file, &Limits::default()),
            Err(CodeError::UnsafePath(name)) if name == "x/y"
        ));
        // A directory named twice is fine.
        let dirs = build(&[Item::File("d/f", b"1", None), Item::Dir("d/")]);
        assert!(validate_zip(&dirs, &Limits::default()).is_ok());
    }

    #[test]
    fn zip_bomb_is_too_large_and_leaves_nothing() {
        let zeros = vec![0u8; 1024 * 1024];
        let zip = build(&[Item::File("ok", b"x", None), Item::File("zeros", &zeros, None)]);
        assert!(zip.len() < 16 * 1024, "1 MiB of zeros compresses well");
        assert!(matches!(validate_zip(&zip, &small_limits()), Err(CodeError::TooLarge(_))));
        let tmp = TempDir::new("bomb");
        match extract_zip(&zip, &tmp.0.join("code"), &small_limits()) {
            Err(e @ CodeError::TooLarge(_)) => {
                assert_eq!(e.to_string(), "Unzipped size must be smaller than 65536 bytes");
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        assert!(tmp.listing().is_empty());
    }

    #[test]
    fn real_zip_bomb_with_default_limits() {
        // 300 MB of zeros, streamed into the archive 1 MiB at a time.
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts = SimpleFileOptions::default().compression_method(CompressionMethod::Deflated).large_file(true);
        w.start_file("zeros", opts).unwrap();
        let chunk = vec![0u8; 1024 * 1024];
        for _ in 0..300 {
            w.write_all(&chunk).unwrap();
        }
        let zip = w.finish().unwrap().into_inner();
        assert!(zip.len() < 1024 * 1024, "bomb is {} bytes", zip.len());
        assert!(matches!(validate_zip(&zip, &Limits::default()), Err(CodeError::TooLarge(_))));
        let tmp = TempDir::new("bigbomb");
        assert!(matches!(extract_zip(&zip, &tmp.0.join("code"), &Limits::default()), Err(CodeError::TooLarge(_))));
        assert!(tmp.listing().is_empty());
    }

    #[test]
    fn zipped_size_limit() {
        let zip = build(&[Item::File("a", b"a", None)]);
        let limits = Limits { max_zip_bytes: zip.len() - 1, ..Limits::default() };
        assert!(matches!(validate_zip(&zip, &limits), Err(CodeError::TooLarge(_))));
    }

    #[test]
    fn entry_count_limit() {
        let names: Vec<String> = (0..11).map(|i| format!("f{i}")).collect();
        let items: Vec<Item<'_>> = names.iter().map(|n| Item::File(n, b"", None)).collect();
        let zip = build(&items);
        assert!(matches!(validate_zip(&zip, &small_limits()), Err(CodeError::TooManyEntries(11))));
        let tmp = TempDir::new("count");
        assert!(matches!(extract_zip(&zip, &tmp.0.join("code"), &small_limits()), Err(CodeError::TooManyEntries(11))));
        assert!(tmp.listing().is_empty());
        assert!(validate_zip(&build(&items[..10]), &small_limits()).is_ok());
    }

    #[test]
    fn copy_counts_actual_bytes() {
        let limits = small_limits();
        let data = vec![7u8; 1000];
        let mut out = Vec::new();
        assert!(matches!(copy_limited(&data[..], &mut out, 999, "f", &limits), Err(CodeError::TooLarge(_))));
        let mut out = Vec::new();
        assert_eq!(copy_limited(&data[..], &mut out, 1000, "f", &limits).unwrap(), 1000);
        assert_eq!(out, data);
    }

    #[test]
    fn lying_declared_size_is_still_capped() {
        // Declares 10 bytes but holds 100,000: the declared-size check passes,
        // the bytes written must not.
        let data = vec![b'A'; 100_000];
        let mut zip = build(&[Item::File("ok", b"fine", None), Item::File("liar", &data, None)]);
        let at = *central_headers(&zip).last().unwrap();
        zip[at + 24..at + 28].copy_from_slice(&10u32.to_le_bytes());
        let local = zip
            .windows(4)
            .enumerate()
            .filter(|(_, w)| *w == [0x50, 0x4b, 0x03, 0x04])
            .map(|(i, _)| i)
            .next_back()
            .unwrap();
        zip[local + 22..local + 26].copy_from_slice(&10u32.to_le_bytes());

        let checked = validate_zip(&zip, &small_limits()).unwrap();
        assert_eq!(checked.unzipped_bytes, 14);
        let tmp = TempDir::new("liar");
        let err = extract_zip(&zip, &tmp.0.join("code"), &small_limits()).unwrap_err();
        assert!(matches!(err, CodeError::TooLarge(_) | CodeError::NotAZip(_)), "{err:?}");
        // The half-written temp directory is gone.
        assert!(tmp.listing().is_empty());
    }

    #[test]
    fn corrupt_entry_data_is_not_a_zip_and_cleans_up() {
        let mut zip = build(&[Item::File("a", b"first entry", None), Item::File("b", &[b'z'; 5000], None)]);
        let at = *central_headers(&zip).last().unwrap();
        zip[at + 16] ^= 0xff; // wrong CRC for `b`
        let tmp = TempDir::new("crc");
        assert!(matches!(extract_zip(&zip, &tmp.0.join("code"), &Limits::default()), Err(CodeError::NotAZip(_))));
        assert!(tmp.listing().is_empty());
    }

    #[test]
    fn garbage_and_empty_are_not_zips() {
        for bytes in [&b""[..], b"hello world", b"PK\x03\x04 truncated", &[0u8; 100]] {
            match validate_zip(bytes, &Limits::default()) {
                Err(e @ CodeError::NotAZip(_)) => {
                    assert!(e.to_string().starts_with(UNZIP_FAILED));
                }
                other => panic!("{bytes:?}: expected NotAZip, got {other:?}"),
            }
            let tmp = TempDir::new("garbage");
            assert!(matches!(extract_zip(bytes, &tmp.0.join("code"), &Limits::default()), Err(CodeError::NotAZip(_))));
            assert!(tmp.listing().is_empty());
        }
    }

    #[test]
    fn truncated_and_mangled_zips_never_panic() {
        let zip = build(&[
            Item::File("bootstrap", &[b'q'; 3000], Some(0o755)),
            Item::Link("l", "bootstrap"),
            Item::Dir("d/"),
        ]);
        let tmp = TempDir::new("fuzz");
        for cut in 0..zip.len() {
            let _ = validate_zip(&zip[..cut], &Limits::default());
        }
        // Flip each byte in turn; a cheap deterministic fuzz.
        for i in 0..zip.len() {
            let mut bad = zip.clone();
            bad[i] = bad[i].wrapping_add(0x41);
            let dest = tmp.0.join(format!("c{i}"));
            let _ = extract_zip(&bad, &dest, &Limits::default());
            let _ = fs::remove_dir_all(&dest);
        }
        let leftovers: Vec<String> = tmp.listing().into_iter().filter(|n| n.contains(".tmp-")).collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn existing_destination_is_kept() {
        let zip = build(&[Item::File("new.txt", b"new", None)]);
        let tmp = TempDir::new("race");
        let dest = tmp.0.join("code");
        fs::create_dir(&dest).unwrap();
        fs::write(dest.join("old.txt"), b"old").unwrap();
        let summary = extract_zip(&zip, &dest, &Limits::default()).unwrap();
        assert_eq!(summary.files, vec!["new.txt"]);
        assert!(dest.join("old.txt").exists());
        assert!(!dest.join("new.txt").exists());
        assert_eq!(tmp.listing(), vec!["code"]);
    }

    #[test]
    fn error_messages_read_well() {
        assert_eq!(CodeError::NotAZip("bad".into()).to_string(), format!("{UNZIP_FAILED} (bad)"));
        assert!(CodeError::UnsafePath("../x".into()).to_string().contains("entry '../x' is not allowed"));
        assert!(CodeError::TooManyEntries(5).to_string().contains("5 entries"));
        let io = CodeError::from(io::Error::other("disk full"));
        assert!(std::error::Error::source(&io).is_some());
    }
}
