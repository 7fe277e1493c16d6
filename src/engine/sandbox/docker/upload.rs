//! `--lambda-code-transfer upload`: a function's code and merged layers as one tar archive
//! (`var/task/...`, `opt/...`) that the engine unpacks into a created container before it
//! starts, for engines that cannot see this machine's files.
//!
//! The archive is built once per (code, layers) pair and kept under the data dir. Entries
//! are owned by `nobody` and carry no write bits, so the function (root without
//! capabilities, like every container here) can read and run them but not change them:
//! `/var/task` and `/opt` stay as read-only as the bind mounts they replace.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::Digest;

/// Owner of every entry: `nobody`, so a capability-less root cannot chmod them writable.
const OWNER: u64 = 65534;

/// The archive for `code` (unpacked at /var/task), `opt` (at /opt) and the stdio `helper`
/// (at [`super::output::HELPER_TARGET`]), built under `root` unless it exists already.
/// Blocking: run it on the blocking pool.
pub fn archive(
    root: &Path,
    code: Option<&Path>,
    opt: Option<&Path>,
    helper: Option<&[u8]>,
) -> std::io::Result<PathBuf> {
    let mut h = sha2::Sha256::new();
    for p in [code, opt] {
        h.update(p.map(|p| p.as_os_str().as_encoded_bytes()).unwrap_or(b"-"));
        h.update(b"\n");
    }
    h.update(if helper.is_some() { &b"stdio"[..] } else { b"-" });
    let hash: String = h.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect();
    let dest = root.join(format!("{hash}.tar"));
    if dest.is_file() {
        return Ok(dest);
    }
    std::fs::create_dir_all(root)?;
    let tmp = root.join(format!(".{hash}.{}", uuid::Uuid::new_v4().simple()));
    let built = (|| {
        let file = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        let mut tar = tar::Builder::new(file);
        if let Some(code) = code {
            add_tree(&mut tar, code, Path::new("var/task"))?;
        }
        if let Some(opt) = opt {
            add_tree(&mut tar, opt, Path::new("opt"))?;
        }
        if let Some(bytes) = helper {
            let at = Path::new(super::output::HELPER_TARGET.trim_start_matches('/'));
            if let Some(dir) = at.parent() {
                tar.append_data(&mut header(tar::EntryType::Directory, 0o555, 0), dir, std::io::empty())?;
            }
            let mut h = header(tar::EntryType::Regular, 0o555, bytes.len() as u64);
            tar.append_data(&mut h, at, bytes)?;
        }
        let mut file = tar.into_inner()?;
        file.flush()?;
        file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, &dest)
    })();
    if let Err(e) = built {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(dest)
}

/// Adds the directory `src` as `at` (the directory itself, then its tree), symlinks as
/// symlinks (safe extraction already refused any that escape).
fn add_tree<W: Write>(tar: &mut tar::Builder<W>, src: &Path, at: &Path) -> std::io::Result<()> {
    tar.append_data(&mut header(tar::EntryType::Directory, 0o555, 0), at, std::io::empty())?;
    let mut entries: Vec<_> = std::fs::read_dir(src)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let from = entry.path();
        let to = at.join(entry.file_name());
        let ty = entry.file_type()?;
        if ty.is_dir() {
            add_tree(tar, &from, &to)?;
        } else if ty.is_symlink() {
            let target = std::fs::read_link(&from)?;
            tar.append_link(&mut header(tar::EntryType::Symlink, 0o777, 0), &to, &target)?;
        } else if ty.is_file() {
            use std::os::unix::fs::PermissionsExt;
            let meta = entry.metadata()?;
            let mode = if meta.permissions().mode() & 0o111 != 0 { 0o555 } else { 0o444 };
            let file = std::fs::File::open(&from)?;
            tar.append_data(&mut header(tar::EntryType::Regular, mode, meta.len()), &to, file)?;
        }
        // Sockets, FIFOs and devices have no place in a deployment package.
    }
    Ok(())
}

fn header(ty: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(ty);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(OWNER);
    h.set_gid(OWNER);
    h.set_mtime(0);
    h
}

#[cfg(test)]
mod tests {
    #[test]
    fn archive_has_code_and_layers_read_only() {
        let base = std::env::temp_dir().join(format!("ruststack-upload-{}", uuid::Uuid::new_v4().simple()));
        let code = base.join("code");
        let opt = base.join("opt");
        std::fs::create_dir_all(code.join("pkg")).unwrap();
        std::fs::create_dir_all(opt.join("bin")).unwrap();
        std::fs::write(code.join("app.py"), "x = 1\n").unwrap();
        std::fs::write(code.join("pkg/m.py"), "").unwrap();
        std::fs::write(opt.join("bin/tool"), "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(opt.join("bin/tool"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink("app.py", code.join("link.py")).unwrap();
        let tar_path = super::archive(&base.join("up"), Some(&code), Some(&opt), Some(b"\x7fELF")).unwrap();
        assert_eq!(super::archive(&base.join("up"), Some(&code), Some(&opt), Some(b"\x7fELF")).unwrap(), tar_path);
        let without = super::archive(&base.join("up"), Some(&code), Some(&opt), None).unwrap();
        assert_ne!(without, tar_path);
        let mut seen = std::collections::BTreeMap::new();
        let mut ar = tar::Archive::new(std::fs::File::open(&tar_path).unwrap());
        for e in ar.entries().unwrap() {
            let e = e.unwrap();
            let h = e.header();
            assert_eq!(h.uid().unwrap(), super::OWNER);
            let path = e.path().unwrap().display().to_string();
            seen.insert(path, (h.entry_type(), h.mode().unwrap()));
        }
        assert_eq!(seen["var/task"].1, 0o555);
        assert_eq!(seen["var/task/app.py"], (tar::EntryType::Regular, 0o444));
        assert_eq!(seen["var/task/pkg/m.py"].1, 0o444);
        assert_eq!(seen["var/task/link.py"].0, tar::EntryType::Symlink);
        assert_eq!(seen["opt/bin/tool"], (tar::EntryType::Regular, 0o555));
        assert_eq!(seen["var/ruststack"], (tar::EntryType::Directory, 0o555));
        assert_eq!(seen["var/ruststack/stdio"], (tar::EntryType::Regular, 0o555));
        assert!(!seen.keys().any(|k| k == "var" || k.starts_with('/')));
        std::fs::remove_dir_all(&base).unwrap();
    }
}
