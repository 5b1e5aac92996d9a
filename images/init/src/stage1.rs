//! Stage 1: boot from a squashfs root found on a device, when the
//! initramfs is only a loader (it carries [`config::PATH`]).
//!
//! In order: mount /proc, /sys, /dev and put stdio on the console; load
//! the config's modules and the modalias drivers ([`crate::modules`]);
//! find the root image ([`crate::locate`]); check its SHA-256
//! ([`verify`]); mount it read-only at [`RO`] under a tmpfs upper layer at
//! [`RW`] as an overlay on [`SYSROOT`]; then switch:
//!
//! - [`RO`], [`RW`] and the ISO ([`MEDIA`]) are moved to the same paths
//!   inside the new root, so they stay visible as `/.smelt/…` (not under
//!   `/run`, where the main init mounts a fresh tmpfs) and the overlay's
//!   `lowerdir=/.smelt/ro,…` in `/proc/mounts` names real paths;
//! - /dev is moved into the new root (the console fds are on it; the main
//!   init's devtmpfs mount then gets EBUSY, which [`crate::early`] takes
//!   as done); /proc and /sys are unmounted for the main init to mount
//!   afresh (proc is one superblock per mount since Linux 5.8, so a moved
//!   one would end up underneath a second);
//! - the initramfs is emptied ([`crate::wipe`]), the new root moved onto
//!   `/`, chrooted into, and its `/init` (else `/sbin/init`) exec'd with
//!   [`switchroot::MARKER`] set, so it neither copies the root again nor
//!   re-enters stage 1.
//!
//! Any failure prints one `smelt stage1: …` line and halts: PID 1 never
//! exits, and a wrong root never boots. `smelt.debug` on the kernel
//! command line logs each block device and each unusable one.
//! Non-goals: a writable persistent upper layer, dm-verity, network or
//! URL roots, an emergency shell.

pub mod config;
pub mod verify;

use std::io;

use crate::early;
use crate::locate::{self, Found, MEDIA};
use crate::modules::Loader;
use crate::switchroot;
use crate::sys::Sys;
use config::Config;

/// The squashfs, read-only; the same path in the booted system.
pub const RO: &str = "/.smelt/ro";
/// The tmpfs holding the overlay's `upper` and `work`; the same path in
/// the booted system.
pub const RW: &str = "/.smelt/rw";
/// Where the overlay is assembled.
pub const SYSROOT: &str = "/sysroot";

/// Whether this init is stage 1: PID 1 on an initramfs with a stage-1
/// config (after the switch the root is an overlay and the marker is set).
pub fn active(sys: &dyn Sys) -> bool {
    sys.exists(config::PATH) && switchroot::needed(sys)
}

/// Run stage 1. On the real system this never returns: it execs the root's
/// init or prints why not and halts. Returns the line printed (tests).
pub fn run(sys: &dyn Sys) -> String {
    let line = match try_boot(sys) {
        Ok(e) => format!("smelt stage1: exec of the root's init failed: {e}"),
        Err(line) => line,
    };
    sys.log(&line);
    sys.halt();
    line
}

/// Prefix a step's error with what it was doing.
fn step<T>(what: &str, r: io::Result<T>) -> Result<T, String> {
    r.map_err(|e| format!("smelt stage1: {what}: {e}"))
}

fn try_boot(sys: &dyn Sys) -> Result<io::Error, String> {
    mount_api(sys)?;
    let bytes = step(
        &format!("reading {}", config::PATH),
        sys.read_file(config::PATH),
    )?;
    let cfg = config::parse(&bytes).map_err(|e| format!("smelt stage1: {e}"))?;
    let debug = sys
        .read_file("/proc/cmdline")
        .map(|c| {
            String::from_utf8_lossy(&c)
                .split_whitespace()
                .any(|w| w == "smelt.debug" || w == "smelt.debug=1")
        })
        .unwrap_or(false);
    let short = cfg.root.sha256.get(..12).unwrap_or("");
    sys.log(&format!("smelt stage1: looking for root (sha256 {short}…)"));
    let mut loader = load_modules(sys, &cfg, debug);
    let found = locate::find(sys, &cfg, loader.as_mut(), debug)?;
    sys.log(&format!("smelt stage1: found root: {}", found.what));
    let got = verify::sha256_prefix(sys, &found.device, cfg.root.size)
        .map_err(|e| format!("smelt stage1: verifying the root image: {e}"))?;
    if got != cfg.root.sha256 {
        return Err(format!(
            "smelt stage1: root image sha256 mismatch on {}: expected {}, got {got} — refusing to boot",
            found.device, cfg.root.sha256
        ));
    }
    mount_root(sys, &cfg, &found)?;
    crate::config::sources::carry_initrd_seed(sys, SYSROOT);
    switch(sys)
}

/// /proc, /sys and /dev as the main init mounts them, then the console.
fn mount_api(sys: &dyn Sys) -> Result<(), String> {
    for am in early::MOUNTS.iter().filter(|m| m.required) {
        step(
            &format!("mounting {} ({})", am.target, am.fstype),
            early::mount_api(sys, am),
        )?;
    }
    // Without /dev/console there is nowhere to print: go on regardless.
    let _ = sys.console_stdio();
    Ok(())
}

/// The config's modules and deps, then one modalias pass per new driver
/// generation (as the main init); None without `modules.dep`.
fn load_modules(sys: &dyn Sys, cfg: &Config, debug: bool) -> Option<Loader> {
    let release = sys.kernel_release().unwrap_or_default();
    let Some(mut loader) = Loader::new(sys, &release) else {
        if !cfg.modules.is_empty() {
            sys.log(&format!(
                "smelt stage1: no /lib/modules/{release}/modules.dep: loading no modules"
            ));
        }
        return None;
    };
    let (n, missing) = loader.load(sys, &cfg.modules);
    if !missing.is_empty() {
        sys.log(&format!(
            "smelt stage1: modules not in this initramfs, skipped: {}",
            missing.join(" ")
        ));
    }
    let mut total = n;
    while let Some(n) = loader.autoload(sys) {
        total += n;
    }
    if debug {
        sys.log(&format!("smelt stage1: {total} modules loaded"));
    }
    Some(loader)
}

/// squashfs at RO, tmpfs at RW, the overlay at SYSROOT, then RO, RW and
/// the ISO moved to the same paths under SYSROOT.
fn mount_root(sys: &dyn Sys, cfg: &Config, found: &Found) -> Result<(), String> {
    let fs = &cfg.root.fstype;
    step(&format!("creating {RO}"), sys.mkdir_all(RO, 0o755))?;
    step(
        &format!("mounting {} ({fs}) on {RO}", found.device),
        sys.mount(&found.device, RO, fs, libc::MS_RDONLY, ""),
    )?;
    step(&format!("creating {RW}"), sys.mkdir_all(RW, 0o755))?;
    step(
        &format!("mounting tmpfs on {RW}"),
        sys.mount("tmpfs", RW, "tmpfs", 0, "mode=0755"),
    )?;
    for d in ["upper", "work"] {
        step(
            &format!("creating {RW}/{d}"),
            sys.mkdir_all(&format!("{RW}/{d}"), 0o755),
        )?;
    }
    step(
        &format!("creating {SYSROOT}"),
        sys.mkdir_all(SYSROOT, 0o755),
    )?;
    let opts = format!("lowerdir={RO},upperdir={RW}/upper,workdir={RW}/work");
    step(
        &format!("mounting overlay ({opts}) on {SYSROOT}"),
        sys.mount("overlay", SYSROOT, "overlay", 0, &opts),
    )?;
    let mut keep = vec![RO, RW];
    if found.media {
        keep.push(MEDIA);
    }
    for from in keep {
        let to = format!("{SYSROOT}{from}");
        step(&format!("creating {to}"), sys.mkdir_all(&to, 0o755))?;
        step(
            &format!("moving {from} to {to}"),
            sys.mount(from, &to, "", libc::MS_MOVE, ""),
        )?;
    }
    Ok(())
}

/// The root's init: `/init` (what smelt images have), else `/sbin/init`.
/// Looked up as directory entries, not by following them: an absolute
/// symlink (`/sbin/init -> /bin/busybox`) means a path in the new root,
/// which is not `/` yet.
fn root_init(sys: &dyn Sys) -> Result<&'static str, String> {
    let has = |dir: &str, name: &str| {
        sys.list_dir(&format!("{SYSROOT}{dir}"))
            .is_ok_and(|names| names.iter().any(|n| n == name))
    };
    if has("", "init") {
        Ok("/init")
    } else if has("/sbin", "init") {
        Ok("/sbin/init")
    } else {
        Err("smelt stage1: the root image has no /init or /sbin/init".to_string())
    }
}

/// Move /dev into the new root, unmount /proc and /sys, free the
/// initramfs, make the new root `/` and exec its init; returns exec's
/// error.
fn switch(sys: &dyn Sys) -> Result<io::Error, String> {
    let init = root_init(sys)?;
    let to = format!("{SYSROOT}/dev");
    let r = sys
        .mkdir_all(&to, 0o755)
        .and_then(|()| sys.mount("/dev", &to, "", libc::MS_MOVE, ""));
    if let Err(e) = r {
        // The main init mounts its own; only stage 1's nodes are lost.
        sys.log(&format!("smelt stage1: moving /dev to {to}: {e}"));
    }
    for d in ["/proc", "/sys"] {
        if let Err(e) = sys.umount(d) {
            sys.log(&format!("smelt stage1: unmounting {d}: {e}"));
        }
    }
    if let Err(e) = sys.delete_same_fs("/") {
        sys.log(&format!("smelt stage1: emptying the initramfs: {e}"));
    }
    step(&format!("chdir {SYSROOT}"), sys.chdir(SYSROOT))?;
    step(
        &format!("moving {SYSROOT} onto /"),
        sys.mount(".", "/", "", libc::MS_MOVE, ""),
    )?;
    step("chroot .", sys.chroot("."))?;
    step("chdir /", sys.chdir("/"))?;
    Ok(sys.exec(init, (switchroot::MARKER, "1")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::locate::tests::{G, ISO_FILE, UUID, add, block, gpt_disk, iso};
    use crate::testutil::FakeSys;

    /// A well-formed hash of nothing these tests hold.
    const SQSH: &str = "a7e7d4a8ecc5aedb0fd8bdb7bc5e1e45d7d2d5e3c4e0eb1e8a3f81e12fa61c0b";

    fn sha(data: &[u8]) -> String {
        use sha2::{Digest, Sha256};
        verify::hex(&Sha256::digest(data))
    }

    fn config(sha256: &str) -> String {
        format!(
            r#"{{"schema":"smelt.stage1/v1","root":{{"sha256":"{sha256}","size":4,"fstype":"squashfs"}},
            "locate":[{{"iso":{{"volume_id":"SMELT_TEST","path":"/smelt/root.squashfs"}}}},
                      {{"partition":{{"partuuid":"{UUID}"}}}}],
            "modules":["loop","isofs","squashfs"],"timeout_secs":2}}"#
        )
    }

    /// A stage-1 initramfs: config, a module tree where isofs is built in
    /// and squashfs missing, and the root's init in the overlay.
    fn initramfs(sha256: &str) -> FakeSys {
        let m = "/lib/modules/6.1.0-test";
        let mut sys = FakeSys::new()
            .file(config::PATH, &config(sha256))
            .file("/proc/cmdline", "console=ttyS0\n")
            .file(
                &format!("{m}/modules.dep"),
                "kernel/drivers/block/loop.ko:\nkernel/drivers/ata/ata_piix.ko:\n",
            )
            .file(
                &format!("{m}/modules.builtin"),
                "kernel/fs/isofs/isofs.ko\n",
            )
            .file(
                &format!("{m}/modules.alias"),
                "alias pci:v00008086d00007010sv*sd*bc*sc*i* ata_piix\n",
            )
            .file(&format!("{m}/kernel/drivers/block/loop.ko"), "")
            .file(&format!("{m}/kernel/drivers/ata/ata_piix.ko"), "")
            .file(
                "/sys/bus/pci/devices/0000:00:01.1/modalias",
                "pci:v00008086d00007010sv00001AF4sd00001100bc01sc01i80\n",
            )
            .file("/sysroot/init", "");
        sys.root_magic = switchroot::RAMFS_MAGIC;
        sys
    }

    fn with_iso(sys: &FakeSys, image: &str) {
        add(sys, block("sr0", "11:0", 64 << 10, None));
        add(
            sys,
            vec![
                ("/dev/sr0".into(), iso("SMELT_TEST")),
                ("/dev/loop-control".into(), vec![]),
                (ISO_FILE.into(), image.as_bytes().to_vec()),
            ],
        );
    }

    #[test]
    fn active_only_on_a_stage1_initramfs() {
        let sys = initramfs(SQSH);
        assert!(active(&sys));
        let mut other = FakeSys::new().file(config::PATH, "{}");
        assert!(!active(&other), "root is not an initramfs");
        other.root_magic = switchroot::TMPFS_MAGIC;
        assert!(active(&other));
        other.env.insert(switchroot::MARKER.into(), "1".into());
        assert!(!active(&other), "already switched");
        let mut plain = FakeSys::new();
        plain.root_magic = switchroot::RAMFS_MAGIC;
        assert!(!active(&plain));
    }

    #[test]
    fn iso_boot_sequence() {
        let sys = initramfs(&sha(b"sqsh"));
        with_iso(&sys, "sqsh");
        let line = crate::run(&sys);
        assert_eq!(
            line,
            "smelt stage1: exec of the root's init failed: fake exec"
        );
        let ms_move = libc::MS_MOVE;
        let calls = sys.calls();
        assert_eq!(
            calls,
            [
                "mkdir /proc 755".to_string(),
                "mount proc /proc proc 0x20000e ".into(),
                "mkdir /sys 755".into(),
                "mount sysfs /sys sysfs 0x20000e ".into(),
                "mkdir /dev 755".into(),
                "mount devtmpfs /dev devtmpfs 0x200002 mode=0755".into(),
                "console".into(),
                "finit_module /lib/modules/6.1.0-test/kernel/drivers/block/loop.ko false".into(),
                "finit_module /lib/modules/6.1.0-test/kernel/drivers/ata/ata_piix.ko false".into(),
                "mkdir /.smelt/media 755".into(),
                "mount /dev/sr0 /.smelt/media iso9660 0x1 ".into(),
                "loop_get_free".into(),
                "mknod /dev/loop0 b 7:0".into(),
                format!("loop_configure /dev/loop0 {ISO_FILE}"),
                "mkdir /.smelt/ro 755".into(),
                "mount /dev/loop0 /.smelt/ro squashfs 0x1 ".into(),
                "mkdir /.smelt/rw 755".into(),
                "mount tmpfs /.smelt/rw tmpfs 0x0 mode=0755".into(),
                "mkdir /.smelt/rw/upper 755".into(),
                "mkdir /.smelt/rw/work 755".into(),
                "mkdir /sysroot 755".into(),
                "mount overlay /sysroot overlay 0x0 lowerdir=/.smelt/ro,upperdir=/.smelt/rw/upper,workdir=/.smelt/rw/work".into(),
                "mkdir /sysroot/.smelt/ro 755".into(),
                format!("mount /.smelt/ro /sysroot/.smelt/ro  {ms_move:#x} "),
                "mkdir /sysroot/.smelt/rw 755".into(),
                format!("mount /.smelt/rw /sysroot/.smelt/rw  {ms_move:#x} "),
                "mkdir /sysroot/.smelt/media 755".into(),
                format!("mount /.smelt/media /sysroot/.smelt/media  {ms_move:#x} "),
                "mkdir /sysroot/dev 755".into(),
                format!("mount /dev /sysroot/dev  {ms_move:#x} "),
                "umount /proc".into(),
                "umount /sys".into(),
                "delete_same_fs /".into(),
                "chdir /sysroot".into(),
                format!("mount . /  {ms_move:#x} "),
                "chroot .".into(),
                "chdir /".into(),
                "exec /init SMELT_SWITCHED_ROOT=1".into(),
                "halt".into(),
            ]
        );
        let logs = sys.logs();
        let short = &sha(b"sqsh")[..12];
        assert!(
            logs.starts_with(&format!(
                "smelt stage1: looking for root (sha256 {short}…)\n"
            )),
            "{logs}"
        );
        assert!(
            logs.contains("smelt stage1: modules not in this initramfs, skipped: squashfs\n"),
            "{logs}"
        );
        assert!(logs.contains("smelt stage1: found root: iso volume SMELT_TEST on /dev/sr0, /smelt/root.squashfs on /dev/loop0\n"), "{logs}");
        assert!(
            !logs.contains("isofs"),
            "built-in modules are skipped silently: {logs}"
        );
    }

    #[test]
    fn partition_root_keeps_no_media_and_falls_back_to_sbin_init() {
        let sys = initramfs(&sha(b"sqsh"));
        sys.files.borrow_mut().remove("/sysroot/init");
        add(&sys, vec![("/sysroot/sbin/init".into(), vec![])]);
        gpt_disk(&sys, "vda", [0x22; 16], "x", G, b"sqsh");
        crate::run(&sys);
        let calls = sys.calls();
        assert!(calls.contains(&"mount /dev/vda2 /.smelt/ro squashfs 0x1 ".to_string()));
        assert!(!calls.iter().any(|c| c.contains("media")), "{calls:?}");
        assert_eq!(
            calls[calls.len() - 2],
            "exec /sbin/init SMELT_SWITCHED_ROOT=1"
        );
    }

    #[test]
    fn sha256_mismatch_refuses_to_boot() {
        let want = sha(b"sqsh");
        let sys = initramfs(&want);
        gpt_disk(&sys, "vda", [0x22; 16], "x", G, b"sqsH");
        let line = crate::run(&sys);
        let exact = format!(
            "smelt stage1: root image sha256 mismatch on /dev/vda2: expected {want}, got {} — refusing to boot",
            sha(b"sqsH")
        );
        assert_eq!(line, exact);
        assert!(sys.logs().ends_with(&exact), "{}", sys.logs());
        assert_eq!(sys.logs().matches("mismatch").count(), 1);
        let calls = sys.calls();
        assert_eq!(calls.last().map(String::as_str), Some("halt"));
        assert!(
            !calls
                .iter()
                .any(|c| c.contains("/.smelt/ro") || c.starts_with("exec")),
            "{calls:?}"
        );
    }

    #[test]
    fn not_found_and_bad_config_halt_with_one_line() {
        let sys = initramfs(SQSH);
        let line = crate::run(&sys);
        assert!(
            line.starts_with("smelt stage1: root not found after 2s: tried iso volume SMELT_TEST"),
            "{line}"
        );
        assert!(line.ends_with("; block devices seen: none"), "{line}");
        assert_eq!(sys.calls().last().map(String::as_str), Some("halt"));

        let sys = initramfs(SQSH);
        add(
            &sys,
            vec![(
                config::PATH.into(),
                br#"{"schema":"smelt.stage1/v9"}"#.to_vec(),
            )],
        );
        let line = crate::run(&sys);
        assert_eq!(
            line,
            "smelt stage1: /etc/smelt/stage1.json: schema is \"smelt.stage1/v9\", this init reads only smelt.stage1/v1"
        );
        assert_eq!(sys.logs(), line);
        assert_eq!(sys.calls().last().map(String::as_str), Some("halt"));
    }

    #[test]
    fn missing_init_is_caught_before_the_initramfs_is_emptied() {
        let sys = initramfs(&sha(b"sqsh"));
        sys.files.borrow_mut().remove("/sysroot/init");
        gpt_disk(&sys, "vda", [0x22; 16], "x", G, b"sqsh");
        let line = crate::run(&sys);
        assert_eq!(
            line,
            "smelt stage1: the root image has no /init or /sbin/init"
        );
        assert!(!sys.calls().iter().any(|c| c.starts_with("delete_same_fs")));
    }

    #[test]
    fn failed_mount_names_the_step() {
        let mut sys = initramfs(&sha(b"sqsh"));
        sys.failing_mounts.insert(SYSROOT.into());
        gpt_disk(&sys, "vda", [0x22; 16], "x", G, b"sqsh");
        let line = crate::run(&sys);
        assert!(
            line.starts_with("smelt stage1: mounting overlay (lowerdir=/.smelt/ro,upperdir=/.smelt/rw/upper,workdir=/.smelt/rw/work) on /sysroot: "),
            "{line}"
        );
    }
}
