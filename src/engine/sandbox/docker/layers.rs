//! A function's layers merged into the one directory mounted at `/opt`, in the function's
//! order (later layers overwrite earlier ones), built once per distinct list of layers.

use std::path::{Path, PathBuf};

use sha2::Digest;

/// Merges `layers` under `root/<hash of the list>`, or returns the merge made earlier.
/// Files are hard-linked where possible. Safe against concurrent merges of the same list.
pub fn merge(root: &Path, layers: &[PathBuf]) -> std::io::Result<PathBuf> {
    let mut h = sha2::Sha256::new();
    for l in layers {
        h.update(l.as_os_str().as_encoded_bytes());
        h.update(b"\n");
    }
    let hash: String = h.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect();
    let dest = root.join(&hash);
    if dest.is_dir() {
        return Ok(dest);
    }
    std::fs::create_dir_all(root)?;
    let tmp = root.join(format!(".{hash}.{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir(&tmp)?;
    let result = layers.iter().try_for_each(|l| overlay(l, &tmp)).and_then(|()| std::fs::rename(&tmp, &dest));
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
        // Another start merged the same layers first: theirs is the same.
        if dest.is_dir() {
            return Ok(dest);
        }
    }
    result.map(|()| dest)
}

/// Merges `layers` into `dest`, a new directory of its own (layers that change in place,
/// merged for one container). Files are hard-linked where possible.
pub fn merge_into(dest: &Path, layers: &[PathBuf]) -> std::io::Result<()> {
    std::fs::create_dir_all(dest)?;
    let result = layers.iter().try_for_each(|l| overlay(l, dest));
    if result.is_err() {
        let _ = std::fs::remove_dir_all(dest);
    }
    result
}

/// A merge made for one container: removed (on a thread of its own) when dropped. Only
/// links and copies are removed, never what they point at.
pub struct Scratch(pub PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let dir = std::mem::take(&mut self.0);
        let _ = std::thread::Builder::new().name("opt-sweep".into()).spawn(move || {
            let _ = std::fs::remove_dir_all(dir);
        });
    }
}

/// Copies the tree `src` onto `dst`, replacing whatever is in the way.
fn overlay(src: &Path, dst: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let ty = entry.file_type()?;
        let existing = std::fs::symlink_metadata(&to).ok();
        if ty.is_dir() {
            match existing {
                Some(m) if m.is_dir() => {}
                Some(_) => {
                    std::fs::remove_file(&to)?;
                    std::fs::create_dir(&to)?;
                }
                None => std::fs::create_dir(&to)?,
            }
            std::fs::set_permissions(&to, entry.metadata()?.permissions())?;
            overlay(&from, &to)?;
            continue;
        }
        match existing {
            Some(m) if m.is_dir() => std::fs::remove_dir_all(&to)?,
            Some(_) => std::fs::remove_file(&to)?,
            None => {}
        }
        if ty.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&from)?, &to)?;
        } else if std::fs::hard_link(&from, &to).is_err() {
            std::fs::copy(&from, &to)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn later_layers_win() {
        let base = std::env::temp_dir().join(format!("ruststack-merge-{}", uuid::Uuid::new_v4().simple()));
        let a = base.join("a");
        let b = base.join("b");
        std::fs::create_dir_all(a.join("python/pkg")).unwrap();
        std::fs::create_dir_all(b.join("python")).unwrap();
        std::fs::write(a.join("python/x.py"), "a").unwrap();
        std::fs::write(a.join("python/only_a.py"), "a").unwrap();
        std::fs::write(a.join("python/pkg/m.py"), "a").unwrap();
        std::fs::write(b.join("python/x.py"), "b").unwrap();
        std::fs::write(b.join("python/pkg"), "now a file").unwrap();
        let m = super::merge(&base.join("merged"), &[a.clone(), b.clone()]).unwrap();
        assert_eq!(std::fs::read_to_string(m.join("python/x.py")).unwrap(), "b");
        assert_eq!(std::fs::read_to_string(m.join("python/only_a.py")).unwrap(), "a");
        assert_eq!(std::fs::read_to_string(m.join("python/pkg")).unwrap(), "now a file");
        // The source layers are untouched.
        assert_eq!(std::fs::read_to_string(a.join("python/x.py")).unwrap(), "a");
        assert_eq!(super::merge(&base.join("merged"), &[a, b]).unwrap(), m);
        std::fs::remove_dir_all(&base).unwrap();
    }
}
