//! The switch-root copy: the initramfs tree into a fresh tmpfs.
//!
//! Preserves regular files, directories, symlinks, device nodes and fifos,
//! with mode (setuid/setgid/sticky included), owner, and file/directory
//! mtime; hardlinked files stay hardlinked. Like busybox `switch_root`, the
//! source is deleted as it is copied, so the RAM holding the initramfs is
//! freed and the peak is about one copy plus the largest file. Entries on
//! another filesystem (the destination tmpfs itself, any mount) are not
//! entered. Non-goals: xattrs (the initramfs has none: newc cpio carries
//! none), sockets, atime.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use crate::sys;

/// (dev, ino) → (first copy, links of it still to come).
type Links = HashMap<(u64, u64), (std::path::PathBuf, u64)>;

fn ctx(path: &Path, what: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// Copy the tree under `src` into the existing directory `dst`.
pub fn copy_tree(src: &Path, dst: &Path, delete: bool) -> io::Result<()> {
    let dev = fs::symlink_metadata(src)
        .map_err(|e| ctx(src, "stat", e))?
        .dev();
    let mut links = HashMap::new();
    copy_dir(src, dst, dev, delete, &mut links)?;
    let meta = fs::symlink_metadata(src).map_err(|e| ctx(src, "stat", e))?;
    set_attrs(dst, &meta)
}

fn copy_dir(src: &Path, dst: &Path, dev: u64, delete: bool, links: &mut Links) -> io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(src)
        .map_err(|e| ctx(src, "reading directory", e))?
        .collect::<Result<_, _>>()
        .map_err(|e| ctx(src, "reading directory", e))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let (from, to) = (e.path(), dst.join(e.file_name()));
        let meta = fs::symlink_metadata(&from).map_err(|e| ctx(&from, "stat", e))?;
        if meta.dev() != dev {
            continue; // a mount point (our destination, /proc, …)
        }
        copy_entry(&from, &to, &meta, dev, delete, links)?;
    }
    Ok(())
}

fn copy_entry(
    from: &Path,
    to: &Path,
    meta: &fs::Metadata,
    dev: u64,
    delete: bool,
    links: &mut Links,
) -> io::Result<()> {
    let ft = meta.file_type();
    if ft.is_dir() {
        match fs::create_dir(to) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                return Err(ctx(to, "creating directory", e));
            }
            _ => {}
        }
        copy_dir(from, to, dev, delete, links)?;
        set_attrs(to, meta)?;
        if delete {
            let _ = fs::remove_dir(from); // non-empty if it held a mount point
        }
        return Ok(());
    }
    if ft.is_symlink() {
        let target = fs::read_link(from).map_err(|e| ctx(from, "reading link", e))?;
        std::os::unix::fs::symlink(&target, to).map_err(|e| ctx(to, "creating symlink", e))?;
        std::os::unix::fs::lchown(to, Some(meta.uid()), Some(meta.gid()))
            .map_err(|e| ctx(to, "chown", e))?;
    } else if ft.is_file() {
        let key = (meta.dev(), meta.ino());
        // With `delete` the source's link count drops as we go, so the
        // count of links still to come is kept here, and the entry dropped
        // at zero: the inode number may then be reused.
        if let Some((first, left)) = links.get_mut(&key) {
            fs::hard_link(&*first, to).map_err(|e| ctx(to, "hardlinking", e))?;
            *left -= 1;
            if *left == 0 {
                links.remove(&key);
            }
        } else {
            fs::copy(from, to).map_err(|e| ctx(from, "copying", e))?;
            set_attrs(to, meta)?;
            if meta.nlink() > 1 {
                links.insert(key, (to.to_path_buf(), meta.nlink() - 1));
            }
        }
    } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
        sys::mknod(to, meta.mode(), meta.rdev()).map_err(|e| ctx(to, "mknod", e))?;
        set_attrs(to, meta)?;
    } else {
        return Ok(()); // sockets: meaningless in an image
    }
    if delete {
        fs::remove_file(from).map_err(|e| ctx(from, "removing", e))?;
    }
    Ok(())
}

/// Owner, then mode (chown clears setuid), then mtime for files and dirs.
fn set_attrs(path: &Path, meta: &fs::Metadata) -> io::Result<()> {
    std::os::unix::fs::lchown(path, Some(meta.uid()), Some(meta.gid()))
        .map_err(|e| ctx(path, "chown", e))?;
    fs::set_permissions(path, fs::Permissions::from_mode(meta.mode() & 0o7777))
        .map_err(|e| ctx(path, "chmod", e))?;
    let ft = meta.file_type();
    if ft.is_file() || ft.is_dir() {
        let t = UNIX_EPOCH
            + Duration::new(
                meta.mtime().max(0) as u64,
                meta.mtime_nsec().clamp(0, 999_999_999) as u32,
            );
        if let Ok(f) = fs::File::open(path) {
            let _ = f.set_modified(t);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn is_root() -> bool {
        // Our own uid via a file we create: no libc call needed.
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x");
        fs::write(&p, "").unwrap();
        fs::metadata(&p).unwrap().uid() == 0
    }

    #[test]
    fn copies_everything_and_deletes_source() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        let s = src.path();
        fs::create_dir_all(s.join("etc/ssh")).unwrap();
        fs::write(s.join("etc/hostname"), "box\n").unwrap();
        fs::write(s.join("etc/ssh/key"), "secret").unwrap();
        fs::set_permissions(s.join("etc/ssh/key"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::create_dir(s.join("tmp")).unwrap();
        fs::set_permissions(s.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
        fs::write(s.join("bin"), "binary").unwrap();
        fs::set_permissions(s.join("bin"), fs::Permissions::from_mode(0o4755)).unwrap();
        fs::hard_link(s.join("bin"), s.join("bin2")).unwrap();
        symlink("etc/hostname", s.join("link")).unwrap();
        let root = is_root();
        if root {
            sys::mknod(&s.join("null"), libc::S_IFCHR | 0o666, libc::makedev(1, 3)).unwrap();
            std::os::unix::fs::lchown(s.join("etc/ssh/key"), Some(1000), Some(1001)).unwrap();
        }
        sys::mknod(&s.join("fifo"), libc::S_IFIFO | 0o644, 0).unwrap();

        copy_tree(s, dst.path(), true).unwrap();

        let d = dst.path();
        assert_eq!(fs::read_to_string(d.join("etc/hostname")).unwrap(), "box\n");
        let key = fs::metadata(d.join("etc/ssh/key")).unwrap();
        assert_eq!(key.mode() & 0o7777, 0o600);
        assert_eq!(fs::metadata(d.join("tmp")).unwrap().mode() & 0o7777, 0o1777);
        let bin = fs::metadata(d.join("bin")).unwrap();
        assert_eq!(bin.mode() & 0o7777, 0o4755);
        assert_eq!(bin.ino(), fs::metadata(d.join("bin2")).unwrap().ino());
        assert_eq!(
            fs::read_link(d.join("link")).unwrap(),
            Path::new("etc/hostname")
        );
        assert!(
            fs::symlink_metadata(d.join("fifo"))
                .unwrap()
                .file_type()
                .is_fifo()
        );
        if root {
            let null = fs::symlink_metadata(d.join("null")).unwrap();
            assert!(null.file_type().is_char_device());
            assert_eq!(null.rdev(), libc::makedev(1, 3));
            assert_eq!((key.uid(), key.gid()), (1000, 1001));
        }
        // The source is emptied as it is copied.
        assert_eq!(fs::read_dir(s).unwrap().count(), 0);
    }

    #[test]
    fn missing_source_names_the_path() {
        let dst = tempfile::tempdir().unwrap();
        let e = copy_tree(Path::new("/nonexistent/smelt-src"), dst.path(), false).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/smelt-src"), "{e}");
    }
}
