//! `ntp`, `timezone` and `mounts`.
//!
//! `ntp` only writes `/etc/ntp.conf`: the init starts no NTP client; an
//! image that ships one (a service container) reads it. `timezone` points
//! `/etc/localtime` at the image's zoneinfo when it has one. `mounts`
//! mounts each entry now (there is no fstab to write: nothing reads it).

use super::Report;
use super::parse::{MountEntry, Ntp};
use crate::sys::Sys;

pub const NTP_CONF: &str = "/etc/ntp.conf";
pub const ZONEINFO: &str = "/usr/share/zoneinfo";

/// File systems `auto` tries, in order.
pub const AUTO_FSTYPES: [&str; 3] = ["ext4", "xfs", "vfat"];

pub fn ntp(sys: &dyn Sys, ntp: Option<&Ntp>, report: &mut Report) {
    let Some(n) = ntp else { return };
    if !n.enabled {
        report.skip(sys, "ntp: enabled is false".into());
        return;
    }
    if n.servers.is_empty() && n.pools.is_empty() {
        report.skip(sys, "ntp: no servers or pools".into());
        return;
    }
    let mut text = String::from("# written by smelt init from cloud-config\n");
    for s in &n.servers {
        text.push_str(&format!("server {s} iburst\n"));
    }
    for p in &n.pools {
        text.push_str(&format!("pool {p} iburst\n"));
    }
    match sys.write_file(NTP_CONF, text.as_bytes()) {
        Ok(()) => {
            sys.log(&format!(
                "cloud-config: ntp: {NTP_CONF} with {} servers, {} pools (no NTP client is started by the init)",
                n.servers.len(),
                n.pools.len()
            ));
            report.applied("ntp");
        }
        Err(e) => report.error(sys, format!("ntp: writing {NTP_CONF}: {e}")),
    }
}

pub fn timezone(sys: &dyn Sys, tz: Option<&str>, report: &mut Report) {
    let Some(tz) = tz else { return };
    let zone = format!("{ZONEINFO}/{tz}");
    if sys.exists(&zone) {
        if let Err(e) = sys.symlink(&zone, "/etc/localtime") {
            report.error(sys, format!("timezone: /etc/localtime -> {zone}: {e}"));
            return;
        }
    } else {
        sys.log(&format!(
            "cloud-config: timezone: {zone} not in the image, /etc/localtime left alone"
        ));
    }
    if let Err(e) = sys.write_file("/etc/timezone", format!("{tz}\n").as_bytes()) {
        report.error(sys, format!("timezone: writing /etc/timezone: {e}"));
        return;
    }
    sys.log(&format!("cloud-config: timezone {tz}"));
    report.applied("timezone");
}

pub fn mounts(sys: &dyn Sys, entries: &[MountEntry], report: &mut Report) {
    for m in entries {
        match mount_one(sys, m) {
            Ok(fstype) => {
                sys.log(&format!(
                    "cloud-config: mounted {} on {} ({fstype})",
                    m.device, m.mountpoint
                ));
                report.applied("mounts");
            }
            Err(e) => report.error(sys, format!("mounts {} on {}: {e}", m.device, m.mountpoint)),
        }
    }
}

/// cloud-init's device names: `sdb` means `/dev/sdb`; labels and UUIDs
/// need udev's `/dev/disk/by-*` links, which only some images have.
fn device(dev: &str) -> String {
    if let Some(l) = dev.strip_prefix("LABEL=") {
        format!("/dev/disk/by-label/{l}")
    } else if let Some(u) = dev.strip_prefix("UUID=") {
        format!("/dev/disk/by-uuid/{u}")
    } else if dev.starts_with('/') {
        dev.to_string()
    } else {
        format!("/dev/{dev}")
    }
}

/// Mount one entry; the file system type that worked.
fn mount_one(sys: &dyn Sys, m: &MountEntry) -> Result<String, String> {
    let dev = device(&m.device);
    if !sys.exists(&dev) {
        return Err(format!("no device {dev}"));
    }
    let (flags, data) = options(&m.options);
    sys.mkdir_all(&m.mountpoint, 0o755)
        .map_err(|e| format!("creating {}: {e}", m.mountpoint))?;
    let types: Vec<&str> = if m.fstype == "auto" {
        AUTO_FSTYPES.to_vec()
    } else {
        vec![m.fstype.as_str()]
    };
    let mut last = String::new();
    for t in types {
        match sys.mount(&dev, &m.mountpoint, t, flags, &data) {
            Ok(()) => return Ok(t.to_string()),
            Err(e) => last = format!("{t}: {e}"),
        }
    }
    Err(last)
}

/// fstab options into `mount(2)` flags and the file system's data string;
/// options for fstab readers (`nofail`, `x-systemd.*`, `_netdev`, …) drop.
pub fn options(opts: &str) -> (u64, String) {
    let mut flags = 0u64;
    let mut data = Vec::new();
    for o in opts.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        let f = match o {
            "ro" => libc::MS_RDONLY,
            "nosuid" => libc::MS_NOSUID,
            "nodev" => libc::MS_NODEV,
            "noexec" => libc::MS_NOEXEC,
            "sync" => libc::MS_SYNCHRONOUS,
            "noatime" => libc::MS_NOATIME,
            "nodiratime" => libc::MS_NODIRATIME,
            "relatime" => libc::MS_RELATIME,
            "defaults" | "rw" | "auto" | "noauto" | "nofail" | "_netdev" | "user" | "nouser"
            | "suid" | "dev" | "exec" | "async" | "atime" => 0,
            o if o.starts_with("x-") || o.starts_with("comment=") => 0,
            o => {
                data.push(o);
                0
            }
        };
        flags |= f;
    }
    (flags, data.join(","))
}
