//! Leaving the initramfs: copy `/` into a tmpfs, move it onto `/`, chroot,
//! and re-exec `/init` (the path the kernel started us as: `/sbin/init` may
//! belong to another image layered later, such as busybox).
//!
//! Container runtimes cannot `pivot_root(2)` off the initramfs (rootfs is
//! not a mount they can detach, see pivot_root(2) and runc's
//! `--no-pivot`), so the root must become a real tmpfs first; busybox
//! `switch_root` does the same MS_MOVE + chroot dance. The re-executed
//! init finds [`MARKER`] in its environment and does not switch again (its
//! new root is a tmpfs too, so the filesystem type alone cannot tell).

use std::io;

use crate::sys::Sys;

/// `statfs` f_type of ramfs/rootfs (include/uapi/linux/magic.h).
pub const RAMFS_MAGIC: i64 = 0x8584_58f6;
/// `statfs` f_type of tmpfs (rootfs is a tmpfs when the kernel has it).
pub const TMPFS_MAGIC: i64 = 0x0102_1994;
/// Set in the environment of the re-executed init.
pub const MARKER: &str = "SMELT_SWITCHED_ROOT";
/// Where the new tmpfs is built before it is moved onto `/`.
pub const NEW_ROOT: &str = "/.smelt-root";

/// Whether this init runs from the initramfs and must switch.
pub fn needed(sys: &dyn Sys) -> bool {
    if sys.env_var(MARKER).is_some() {
        return false;
    }
    matches!(sys.root_fs_magic(), Ok(RAMFS_MAGIC | TMPFS_MAGIC))
}

/// Do the switch; returns only on failure (the error says which step).
pub fn switch(sys: &dyn Sys) -> io::Error {
    match try_switch(sys) {
        Ok(e) => io::Error::new(e.kind(), format!("exec /init in the new root: {e}")),
        Err(e) => e,
    }
}

fn step<T>(what: &str, r: io::Result<T>) -> io::Result<T> {
    r.map_err(|e| io::Error::new(e.kind(), format!("{what}: {e}")))
}

fn try_switch(sys: &dyn Sys) -> io::Result<io::Error> {
    step(
        &format!("creating {NEW_ROOT}"),
        sys.mkdir_all(NEW_ROOT, 0o755),
    )?;
    step(
        &format!("mounting tmpfs on {NEW_ROOT}"),
        sys.mount("tmpfs", NEW_ROOT, "tmpfs", 0, "mode=0755"),
    )?;
    step(
        &format!("copying / to {NEW_ROOT}"),
        sys.copy_root("/", NEW_ROOT),
    )?;
    step(&format!("chdir {NEW_ROOT}"), sys.chdir(NEW_ROOT))?;
    step(
        &format!("moving {NEW_ROOT} onto /"),
        sys.mount(".", "/", "", libc::MS_MOVE, ""),
    )?;
    step("chroot .", sys.chroot("."))?;
    step("chdir /", sys.chdir("/"))?;
    Ok(sys.exec("/init", (MARKER, "1")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::FakeSys;

    #[test]
    fn needed_only_on_initramfs_and_once() {
        let mut sys = FakeSys::new();
        assert!(!needed(&sys)); // ext4
        sys.root_magic = RAMFS_MAGIC;
        assert!(needed(&sys));
        sys.root_magic = TMPFS_MAGIC;
        assert!(needed(&sys));
        sys.env.insert(MARKER.into(), "1".into());
        assert!(!needed(&sys));
    }

    #[test]
    fn switch_sequence() {
        let sys = FakeSys::new();
        let e = switch(&sys);
        assert_eq!(e.to_string(), "exec /init in the new root: fake exec");
        assert_eq!(
            sys.calls(),
            [
                "mkdir /.smelt-root 755".to_string(),
                "mount tmpfs /.smelt-root tmpfs 0x0 mode=0755".to_string(),
                "copy / /.smelt-root".to_string(),
                "chdir /.smelt-root".to_string(),
                format!("mount . /  {:#x} ", libc::MS_MOVE),
                "chroot .".to_string(),
                "chdir /".to_string(),
                "exec /init SMELT_SWITCHED_ROOT=1".to_string(),
            ]
        );
    }
}
