//! Early setup, before any module or container: the API filesystems, the
//! console, the kernel log level, the hostname and loopback.
//!
//! Mount failures other than the first three (/proc, /sys, /dev) are logged
//! and boot goes on: a kernel without cgroup2 or devpts can still run
//! something. `EBUSY` (already mounted, e.g. devtmpfs automounted by the
//! kernel) is not an error. Non-goals: udev, /etc/fstab.

use std::io;

use crate::sys::Sys;

const MS_NOSUID: u64 = libc::MS_NOSUID;
const MS_NODEV: u64 = libc::MS_NODEV;
const MS_NOEXEC: u64 = libc::MS_NOEXEC;
const MS_RELATIME: u64 = libc::MS_RELATIME;

/// One API filesystem to mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiMount {
    pub target: &'static str,
    pub fstype: &'static str,
    pub flags: u64,
    pub data: &'static str,
    /// Boot cannot go on without it.
    pub required: bool,
}

/// In order: parents before children (/dev before /dev/pts, /sys before
/// /sys/fs/cgroup). Flags as LinuxKit's init and systemd mount them.
pub const MOUNTS: [ApiMount; 8] = [
    m(
        "/proc",
        "proc",
        MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RELATIME,
        "",
        true,
    ),
    m(
        "/sys",
        "sysfs",
        MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RELATIME,
        "",
        true,
    ),
    m(
        "/dev",
        "devtmpfs",
        MS_NOSUID | MS_RELATIME,
        "mode=0755",
        true,
    ),
    m(
        "/dev/pts",
        "devpts",
        MS_NOSUID | MS_NOEXEC | MS_RELATIME,
        "gid=5,mode=0620,ptmxmode=0666",
        false,
    ),
    m(
        "/dev/shm",
        "tmpfs",
        MS_NOSUID | MS_NODEV | MS_RELATIME,
        "mode=1777",
        false,
    ),
    m(
        "/run",
        "tmpfs",
        MS_NOSUID | MS_NODEV | MS_RELATIME,
        "mode=0755",
        false,
    ),
    m(
        "/tmp",
        "tmpfs",
        MS_NOSUID | MS_NODEV | MS_RELATIME,
        "mode=1777",
        false,
    ),
    m(
        "/sys/fs/cgroup",
        "cgroup2",
        MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RELATIME,
        "",
        false,
    ),
];

const fn m(
    target: &'static str,
    fstype: &'static str,
    flags: u64,
    data: &'static str,
    required: bool,
) -> ApiMount {
    ApiMount {
        target,
        fstype,
        flags,
        data,
        required,
    }
}

/// The hostname used when `/etc/hostname` is missing or empty.
pub const DEFAULT_HOSTNAME: &str = "smelt";

/// A failure early setup cannot go on from.
#[derive(Debug)]
pub struct Fatal(pub String);

/// Mount the API filesystems, fix the console, set log level, hostname, lo.
pub fn setup(sys: &dyn Sys) -> Result<(), Fatal> {
    for am in MOUNTS {
        if let Err(e) = mount_api(sys, &am) {
            let msg = format!("mounting {} ({}): {e}", am.target, am.fstype);
            if am.required {
                return Err(Fatal(msg));
            }
            sys.log(&format!("smelt init: {msg}"));
        }
        if am.target == "/dev" {
            // stdio on the console once /dev exists; the kernel may have
            // started us without it when the initramfs lacks /dev/console.
            if let Err(e) = sys.console_stdio() {
                sys.log(&format!("smelt init: opening /dev/console: {e}"));
            }
        }
    }
    // Only warnings and worse on the console: container output must stay
    // readable (proc(5), /proc/sys/kernel/printk).
    if let Err(e) = sys.write_file("/proc/sys/kernel/printk", b"4") {
        sys.log(&format!("smelt init: writing /proc/sys/kernel/printk: {e}"));
    }
    if let Err(e) = sys.disable_cad() {
        sys.log(&format!("smelt init: disabling ctrl-alt-del reboot: {e}"));
    }
    let name = hostname(sys);
    if let Err(e) = sys.set_hostname(&name) {
        sys.log(&format!("smelt init: setting hostname {name}: {e}"));
    }
    if let Err(e) = sys.loopback_up() {
        sys.log(&format!("smelt init: bringing up lo: {e}"));
    }
    Ok(())
}

/// Create the mount point and mount; `EBUSY` (already mounted there, e.g.
/// moved in by stage 1) counts as done.
pub fn mount_api(sys: &dyn Sys, am: &ApiMount) -> io::Result<()> {
    sys.mkdir_all(am.target, 0o755)?;
    match sys.mount(am.fstype, am.target, am.fstype, am.flags, am.data) {
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Ok(()),
        r => r,
    }
}

/// First line of `/etc/hostname`, trimmed; else [`DEFAULT_HOSTNAME`].
pub fn hostname(sys: &dyn Sys) -> String {
    sys.read_file("/etc/hostname")
        .ok()
        .and_then(|b| {
            let s = String::from_utf8_lossy(&b);
            let first = s.lines().next().unwrap_or("").trim().to_string();
            (!first.is_empty()).then_some(first)
        })
        .unwrap_or_else(|| DEFAULT_HOSTNAME.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::FakeSys;

    #[test]
    fn mounts_in_order_with_flags() {
        let sys = FakeSys::new();
        setup(&sys).unwrap();
        let mounts: Vec<String> = sys
            .calls()
            .into_iter()
            .filter(|c| c.starts_with("mount"))
            .collect();
        assert_eq!(
            mounts,
            [
                "mount proc /proc proc 0x20000e ",
                "mount sysfs /sys sysfs 0x20000e ",
                "mount devtmpfs /dev devtmpfs 0x200002 mode=0755",
                "mount devpts /dev/pts devpts 0x20000a gid=5,mode=0620,ptmxmode=0666",
                "mount tmpfs /dev/shm tmpfs 0x200006 mode=1777",
                "mount tmpfs /run tmpfs 0x200006 mode=0755",
                "mount tmpfs /tmp tmpfs 0x200006 mode=1777",
                "mount cgroup2 /sys/fs/cgroup cgroup2 0x20000e ",
            ]
        );
        let calls = sys.calls();
        let pos = |s: &str| calls.iter().position(|c| c == s).unwrap();
        assert!(pos("console") > pos("mount devtmpfs /dev devtmpfs 0x200002 mode=0755"));
        assert!(calls.contains(&"write /proc/sys/kernel/printk 4".to_string()));
        assert!(calls.contains(&"lo up".to_string()));
        assert!(calls.contains(&"hostname smelt".to_string()));
    }

    #[test]
    fn required_mount_failure_is_fatal_optional_is_logged() {
        let mut sys = FakeSys::new();
        sys.failing_mounts.insert("/sys/fs/cgroup".into());
        setup(&sys).unwrap();
        assert!(
            sys.logs().contains("mounting /sys/fs/cgroup (cgroup2)"),
            "{}",
            sys.logs()
        );
        let mut sys = FakeSys::new();
        sys.failing_mounts.insert("/proc".into());
        let Fatal(msg) = setup(&sys).unwrap_err();
        assert!(msg.starts_with("mounting /proc (proc): "), "{msg}");
    }

    #[test]
    fn hostname_from_etc_hostname_else_default() {
        assert_eq!(hostname(&FakeSys::new()), "smelt");
        assert_eq!(
            hostname(&FakeSys::new().file("/etc/hostname", "\n")),
            "smelt"
        );
        assert_eq!(
            hostname(&FakeSys::new().file("/etc/hostname", "  box1 \nx\n")),
            "box1"
        );
    }
}
