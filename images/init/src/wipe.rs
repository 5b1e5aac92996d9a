//! Emptying the initramfs before stage 1 leaves it, so the RAM it holds is
//! freed (rootfs cannot be unmounted): busybox `switch_root`'s
//! `delete_contents`.
//!
//! Everything under the root that is on the root's filesystem goes; other
//! filesystems (the new root at `/sysroot`, anything still mounted) are
//! not entered, and symlinks are removed, never followed. Best effort: an
//! entry that cannot be removed is left and the walk goes on, as busybox
//! does. Non-goals: reporting what was left.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Delete the contents of `root` (not `root` itself) on its filesystem.
pub fn delete_same_fs(root: &Path) -> io::Result<()> {
    let dev = fs::symlink_metadata(root)
        .map_err(|e| io::Error::new(e.kind(), format!("stat {}: {e}", root.display())))?
        .dev();
    delete_contents(root, dev);
    Ok(())
}

fn delete_contents(dir: &Path, dev: u64) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.dev() != dev {
            continue; // a mount point
        }
        if meta.is_dir() {
            delete_contents(&path, dev);
            let _ = fs::remove_dir(&path);
        } else {
            let _ = fs::remove_file(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deletes_tree_keeps_root_and_link_targets() {
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("keep"), "x").unwrap();
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        fs::create_dir_all(r.join("etc/smelt")).unwrap();
        fs::write(r.join("etc/smelt/stage1.json"), "{}").unwrap();
        fs::write(r.join("init"), "bin").unwrap();
        std::os::unix::fs::symlink(outside.path(), r.join("link")).unwrap();
        delete_same_fs(r).unwrap();
        assert!(r.exists());
        assert_eq!(fs::read_dir(r).unwrap().count(), 0);
        assert!(outside.path().join("keep").exists());
    }

    #[test]
    fn missing_root_names_it() {
        let e = delete_same_fs(Path::new("/nonexistent/smelt-wipe")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/smelt-wipe"), "{e}");
    }
}
