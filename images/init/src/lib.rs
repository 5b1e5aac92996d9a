//! smelt's PID 1: the init of every image smelt builds.
//!
//! On a stage-1 initramfs (one with `/etc/smelt/stage1.json`) find, check
//! and mount the squashfs root and exec its init instead ([`stage1`]).
//! Otherwise, in order: leave the initramfs for a tmpfs root ([`switchroot`]), mount
//! the API filesystems and set up console, hostname and loopback
//! ([`early`]), load `/etc/modules` and modalias drivers ([`modules`]),
//! watch the power button ([`power`]), print a welcome line,
//! run `/containers/onboot/*` ([`onboot`]), supervise
//! `/containers/services/*` ([`services`]) until a shutdown signal, then
//! shut down ([`shutdown`]). All host access goes through [`sys::Sys`] so
//! the logic is unit-tested with a fake.
//!
//! [`config`] parses and applies NoCloud user-data (a subset of
//! cloud-init's `#cloud-config`); its caller wires it into the sequence.
//!
//! Non-goals: stock cloud-init (its module list, per-instance state, shell
//! script user-data), networking beyond `lo`, udev, containerd, hotplug
//! after boot (a power button whose input device appears after the modules
//! pass is not watched).

pub mod bundle;
pub mod config;
pub mod copy;
pub mod early;
pub mod gpt;
pub mod iso9660;
pub mod locate;
pub mod loopdev;
pub mod modalias;
pub mod modules;
pub mod onboot;
pub mod output;
pub mod power;
pub mod services;
pub mod shutdown;
pub mod stage1;
pub mod switchroot;
pub mod sys;
#[cfg(test)]
mod testutil;
pub mod wipe;

use bundle::RUNC;
use services::Supervisor;
use sys::Sys;

pub const ONBOOT: &str = "/containers/onboot";
pub const SERVICES: &str = "/containers/services";
pub const ONSHUTDOWN: &str = "/containers/onshutdown";

/// The one-line boot summary printed after `Welcome to smelt`.
pub fn summary(
    release: &str,
    onboot: usize,
    services: usize,
    onshutdown: usize,
    uptime: &str,
) -> String {
    format!(
        "smelt: kernel {release}, {onboot} onboot, {services} services, {onshutdown} onshutdown, {uptime}s since boot"
    )
}

/// First field of `/proc/uptime`.
fn uptime(sys: &dyn Sys) -> String {
    sys.read_file("/proc/uptime")
        .ok()
        .and_then(|b| {
            String::from_utf8_lossy(&b)
                .split_whitespace()
                .next()
                .map(String::from)
        })
        .unwrap_or_else(|| "?".into())
}

/// Run the system. Returns only on a fatal error, as its message.
pub fn run(sys: &dyn Sys) -> String {
    if stage1::active(sys) {
        return stage1::run(sys);
    }
    if switchroot::needed(sys) {
        return format!("switching root: {}", switchroot::switch(sys));
    }
    if let Err(early::Fatal(msg)) = early::setup(sys) {
        return msg;
    }
    let release = sys.kernel_release().unwrap_or_else(|e| {
        sys.log(&format!("smelt init: uname: {e}"));
        String::new()
    });
    modules::load(sys, &release);
    sys.watch_power_button();
    let onboot = bundle::discover(sys, ONBOOT);
    let services = bundle::discover(sys, SERVICES);
    let onshutdown = bundle::discover(sys, ONSHUTDOWN);
    sys.log("Welcome to smelt");
    sys.log(&summary(
        &release,
        onboot.len(),
        services.len(),
        onshutdown.len(),
        &uptime(sys),
    ));
    let runc_ok = sys.exists(RUNC);
    let mut sup = if runc_ok {
        onboot::run_all(sys, "onboot", &onboot);
        Supervisor::new(sys, services)
    } else {
        if !(onboot.is_empty() && services.is_empty() && onshutdown.is_empty()) {
            sys.log(&format!("runc not found at {RUNC}: containers cannot run"));
        }
        Supervisor::default()
    };
    // Even without services: reap orphans and wait for a shutdown signal.
    let action = sup.run(sys);
    let err = shutdown::shutdown(sys, &mut sup, &onshutdown, runc_ok, action);
    format!("reboot(2) failed: {err}")
}

/// Print panics to the console and halt: PID 1 exiting panics the kernel,
/// and a halted system keeps the message on screen.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        eprintln!("smelt init: panic: {info}");
        sys::halt_forever();
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::FakeSys;

    #[test]
    fn runc_missing_skips_containers_once() {
        let sys = FakeSys::new()
            .dir("/containers/onboot/000-a/rootfs")
            .file(
                "/containers/onboot/000-a/config.json",
                r#"{"process":{"args":["a"]}}"#,
            )
            .dir("/containers/services/s/rootfs")
            .file(
                "/containers/services/s/config.json",
                r#"{"process":{"args":["s"]}}"#,
            )
            .file("/proc/uptime", "1.50 2.00\n");
        sys.signals.borrow_mut().push_back(libc::SIGUSR1);
        let msg = run(&sys);
        assert_eq!(msg, "reboot(2) failed: fake reboot");
        let logs = sys.logs();
        assert_eq!(
            logs.matches("runc not found at /usr/bin/runc: containers cannot run")
                .count(),
            1,
            "{logs}"
        );
        assert!(logs.contains("Welcome to smelt\nsmelt: kernel 6.1.0-test, 1 onboot, 1 services, 0 onshutdown, 1.50s since boot"), "{logs}");
        assert!(
            !sys.calls().iter().any(|c| c.contains("runc")),
            "{:?}",
            sys.calls()
        );
        assert!(
            sys.calls()
                .ends_with(&["sync".into(), "reboot Halt".into()])
        );
    }

    #[test]
    fn full_boot_runs_onboot_then_services() {
        let sys = FakeSys::new()
            .file("/usr/bin/runc", "")
            .dir("/containers/onboot/000-a/rootfs")
            .file(
                "/containers/onboot/000-a/config.json",
                r#"{"process":{"args":["a"]}}"#,
            )
            .dir("/containers/services/s/rootfs")
            .file(
                "/containers/services/s/config.json",
                r#"{"process":{"args":["s"]}}"#,
            );
        sys.signals.borrow_mut().push_back(libc::SIGTERM);
        run(&sys);
        let calls = sys.calls();
        let pos = |p: &str| calls.iter().position(|c| c.starts_with(p)).unwrap();
        assert!(
            pos("mount proc")
                < pos("run /usr/bin/runc --root /run/runc run --bundle /containers/onboot/000-a a")
        );
        assert!(
            pos("run /usr/bin/runc --root /run/runc run")
                < pos("spawn /usr/bin/runc --root /run/runc run --bundle /containers/services/s s")
        );
        assert!(calls.last().unwrap() == "reboot Reboot");
        assert!(sys.logs().contains("smelt: rebooting"));
    }

    #[test]
    fn initramfs_switches_first() {
        let mut sys = FakeSys::new();
        sys.root_magic = switchroot::RAMFS_MAGIC;
        let msg = run(&sys);
        assert!(msg.starts_with("switching root: exec /init"), "{msg}");
        assert!(!sys.calls().iter().any(|c| c.starts_with("mount proc")));
    }
}
