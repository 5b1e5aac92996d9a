//! Shutdown: stop services, run `onshutdown`, kill the rest, sync,
//! unmount, `reboot(2)`.
//!
//! Services get `runc kill NAME TERM` and up to [`STOP_GRACE`] to exit,
//! then `KILL`; every service is `runc delete -f`d. Then the onshutdown
//! containers run as onboot ones do, every remaining process gets SIGTERM
//! and then SIGKILL (busybox init's order), filesystems are synced and
//! unmounted in reverse mount order (failures ignored: `/` and busy ones
//! stay), and the kernel is asked to power off, reboot or halt.

use std::time::Duration;

use crate::bundle::{self, Bundle};
use crate::onboot;
use crate::services::Supervisor;
use crate::sys::{Action, Sys};

/// How long services get to exit after SIGTERM.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long other processes get after the final SIGTERM.
pub const KILL_GRACE: Duration = Duration::from_secs(2);

pub fn announce(action: Action) -> &'static str {
    match action {
        Action::Poweroff => "smelt: powering off",
        Action::Reboot => "smelt: rebooting",
        Action::Halt => "smelt: halting",
    }
}

/// Wait up to `limit` until no service is running, reaping as we go.
fn wait_services(sys: &dyn Sys, sup: &mut Supervisor, limit: Duration) {
    let deadline = sys.now() + limit;
    while sup.running().next().is_some() {
        for (pid, code) in sys.reap() {
            sup.exited(sys, pid, code, false);
        }
        let now = sys.now();
        if now >= deadline || sup.running().next().is_none() {
            break;
        }
        let _ = sys.wait_signal((deadline - now).min(Duration::from_millis(200)));
    }
}

fn stop_services(sys: &dyn Sys, sup: &mut Supervisor, runc_ok: bool) {
    if !runc_ok {
        return;
    }
    let names = |sup: &Supervisor| -> Vec<String> {
        sup.running().map(|s| s.bundle.name.clone()).collect()
    };
    // A service that exited just before the shutdown signal (poweroff's own
    // container, typically) is reaped first, not sent a kill runc would
    // answer with "container does not exist".
    for (pid, code) in sys.reap() {
        sup.exited(sys, pid, code, false);
    }
    for n in names(sup) {
        let _ = sys.run_quiet(&bundle::runc_kill(&n, "TERM"));
    }
    wait_services(sys, sup, STOP_GRACE);
    let left = names(sup);
    for n in &left {
        sys.log(&format!(
            "service {n} did not stop in {}s, killing it",
            STOP_GRACE.as_secs()
        ));
        let _ = sys.run_quiet(&bundle::runc_kill(n, "KILL"));
    }
    if !left.is_empty() {
        wait_services(sys, sup, KILL_GRACE);
    }
    for s in &sup.services {
        let _ = sys.run_quiet(&bundle::runc(&["delete", "-f"], &s.bundle.name));
    }
}

/// Mount points from `/proc/mounts`, last mounted first, `/` left out.
pub fn unmount_order(proc_mounts: &str) -> Vec<String> {
    let mut v: Vec<String> = proc_mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        // /proc/mounts escapes spaces as \040 (proc(5)).
        .map(|p| p.replace("\\040", " "))
        .filter(|p| p != "/")
        .collect();
    v.reverse();
    v
}

/// The whole sequence; returns only if `reboot(2)` failed.
pub fn shutdown(
    sys: &dyn Sys,
    sup: &mut Supervisor,
    onshutdown: &[Bundle],
    runc_ok: bool,
    action: Action,
) -> std::io::Error {
    sys.log(announce(action));
    stop_services(sys, sup, runc_ok);
    if runc_ok {
        onboot::run_all(sys, "onshutdown", onshutdown);
    }
    sys.kill_all(libc::SIGTERM);
    let deadline = sys.now() + KILL_GRACE;
    while sys.now() < deadline {
        let _ = sys.wait_signal(Duration::from_millis(200));
        sys.reap();
    }
    sys.kill_all(libc::SIGKILL);
    sys.reap();
    sys.sync();
    let mounts = sys.read_file("/proc/mounts").unwrap_or_default();
    for m in unmount_order(&String::from_utf8_lossy(&mounts)) {
        let _ = sys.umount(&m);
    }
    sys.sync();
    sys.reboot(action)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::FakeSys;

    #[test]
    fn sequence_order() {
        let sys = FakeSys::new()
            .dir("/s/getty/rootfs")
            .file("/s/getty/config.json", r#"{"process":{"args":["getty"]}}"#)
            .dir("/d/000-bye/rootfs")
            .file("/d/000-bye/config.json", r#"{"process":{"args":["bye"]}}"#)
            .file(
                "/proc/mounts",
                "rootfs / rootfs rw 0 0\nproc /proc proc rw 0 0\ntmpfs /run tmpfs rw 0 0\n",
            );
        let mut sup = Supervisor::new(&sys, bundle::discover(&sys, "/s"));
        sup.start_due(&sys);
        // Nothing has exited when shutdown starts; getty exits on TERM.
        sys.reaps.borrow_mut().push_back(vec![]);
        sys.reaps.borrow_mut().push_back(vec![(100, 143)]);
        let down = bundle::discover(&sys, "/d");
        let err = shutdown(&sys, &mut sup, &down, true, Action::Poweroff);
        assert_eq!(err.to_string(), "fake reboot");
        assert_eq!(sys.logs.borrow()[0], "smelt: powering off");
        let calls: Vec<String> = sys
            .calls()
            .into_iter()
            .filter(|c| !c.starts_with("spawn"))
            .collect();
        assert_eq!(
            calls,
            [
                "run /usr/bin/runc --root /run/runc kill getty TERM",
                "run /usr/bin/runc --root /run/runc delete -f getty",
                "run /usr/bin/runc --root /run/runc run --bundle /d/000-bye bye",
                "kill_all 15",
                "kill_all 9",
                "sync",
                "umount /run",
                "umount /proc",
                "sync",
                "reboot Poweroff",
            ]
        );
    }

    #[test]
    fn stubborn_service_gets_killed_after_grace() {
        let sys = FakeSys::new()
            .dir("/s/x/rootfs")
            .file("/s/x/config.json", r#"{"process":{"args":["x"]}}"#);
        let mut sup = Supervisor::new(&sys, bundle::discover(&sys, "/s"));
        sup.start_due(&sys);
        let t0 = sys.now();
        let _ = shutdown(&sys, &mut sup, &[], true, Action::Reboot);
        let calls = sys.calls();
        let pos = |s: &str| calls.iter().position(|c| c == s).unwrap_or(usize::MAX);
        assert!(
            pos("run /usr/bin/runc --root /run/runc kill x TERM")
                < pos("run /usr/bin/runc --root /run/runc kill x KILL")
        );
        assert!(pos("run /usr/bin/runc --root /run/runc kill x KILL") < pos("reboot Reboot"));
        assert!(sys.now() - t0 >= STOP_GRACE);
        assert!(
            sys.logs()
                .contains("service x did not stop in 10s, killing it")
        );
    }

    #[test]
    fn a_service_that_already_exited_is_not_killed() {
        let sys = FakeSys::new()
            .dir("/s/off/rootfs")
            .file("/s/off/config.json", r#"{"process":{"args":["off"]}}"#);
        let mut sup = Supervisor::new(&sys, bundle::discover(&sys, "/s"));
        sup.start_due(&sys);
        // It exited (after asking for the poweroff) but was not reaped yet.
        sys.reaps.borrow_mut().push_back(vec![(100, 0)]);
        let _ = shutdown(&sys, &mut sup, &[], true, Action::Poweroff);
        let calls = sys.calls();
        assert!(!calls.iter().any(|c| c.contains(" kill off ")), "{calls:?}");
        assert!(calls.contains(&"run /usr/bin/runc --root /run/runc delete -f off".to_string()));
    }
}
