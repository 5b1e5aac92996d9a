//! Long-running services: one foreground `runc run` child each, restarted
//! with exponential backoff when it exits, plus reaping of every zombie
//! (PID 1 inherits orphans).
//!
//! Backoff: 1 s after the first exit, doubling to 30 s; a service that ran
//! at least 30 s before exiting starts over at 1 s. Non-goals: dependencies
//! between services, health checks, a `noRestart` policy.

use std::time::Duration;

use crate::bundle::{self, Bundle};
use crate::sys::{Action, Sys};

pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Running this long counts as healthy: the backoff resets.
pub const HEALTHY_AFTER: Duration = Duration::from_secs(30);

/// The delay before the next restart, given the last one and how long the
/// service ran this time.
pub fn next_backoff(last: Option<Duration>, ran: Duration) -> Duration {
    match last {
        Some(d) if ran < HEALTHY_AFTER => (d * 2).min(BACKOFF_MAX),
        _ => BACKOFF_MIN,
    }
}

/// Signal → shutdown action, busybox init's conventions so busybox's
/// `poweroff`/`reboot`/`halt` work: USR2 and PWR power off, TERM reboots,
/// INT (ctrl-alt-del, see `reboot(2)` CAD_OFF) reboots, USR1 halts.
pub fn signal_action(sig: i32) -> Option<Action> {
    match sig {
        libc::SIGUSR2 | libc::SIGPWR => Some(Action::Poweroff),
        libc::SIGTERM | libc::SIGINT => Some(Action::Reboot),
        libc::SIGUSR1 => Some(Action::Halt),
        _ => None,
    }
}

#[derive(Debug)]
pub struct Service {
    pub bundle: Bundle,
    pub pid: Option<u32>,
    started: Duration,
    backoff: Option<Duration>,
    restart_at: Duration,
}

/// All services and their state.
#[derive(Debug, Default)]
pub struct Supervisor {
    pub services: Vec<Service>,
}

impl Supervisor {
    /// Validate and prepare (runtime.json) each bundle once; invalid ones
    /// are logged and left out.
    pub fn new(sys: &dyn Sys, bundles: Vec<Bundle>) -> Supervisor {
        let mut services = Vec::new();
        for b in bundles {
            if let Err(msg) = bundle::validate(sys, &b).and_then(|()| bundle::prepare(sys, &b)) {
                sys.log(&format!("service {} not started: {msg}", b.name));
                continue;
            }
            services.push(Service {
                bundle: b,
                pid: None,
                started: Duration::ZERO,
                backoff: None,
                restart_at: Duration::ZERO,
            });
        }
        Supervisor { services }
    }

    /// Start every service that is down and due.
    pub fn start_due(&mut self, sys: &dyn Sys) {
        let now = sys.now();
        for s in self
            .services
            .iter_mut()
            .filter(|s| s.pid.is_none() && s.restart_at <= now)
        {
            match sys.spawn(&bundle::runc_run(&s.bundle), &s.bundle.name) {
                Ok(pid) => {
                    s.pid = Some(pid);
                    s.started = now;
                }
                Err(e) => {
                    let d = next_backoff(s.backoff, Duration::ZERO);
                    s.backoff = Some(d);
                    s.restart_at = now + d;
                    sys.log(&format!(
                        "service {} failed to start ({}: {e}), retrying in {}s",
                        s.bundle.name,
                        bundle::RUNC,
                        d.as_secs()
                    ));
                }
            }
        }
    }

    /// Record that `pid` exited; schedule its restart if it is a service.
    /// With `restart` false (shutting down) it is only marked down.
    pub fn exited(&mut self, sys: &dyn Sys, pid: u32, code: i32, restart: bool) {
        let now = sys.now();
        let Some(s) = self.services.iter_mut().find(|s| s.pid == Some(pid)) else {
            return; // an orphan reaped
        };
        s.pid = None;
        if !restart {
            return;
        }
        let d = next_backoff(s.backoff, now.saturating_sub(s.started));
        s.backoff = Some(d);
        s.restart_at = now + d;
        sys.log(&format!(
            "service {} exited (code {code}), restarting in {}s",
            s.bundle.name,
            d.as_secs()
        ));
    }

    /// How long to sleep before the next restart is due (at most 1 s).
    fn timeout(&self, now: Duration) -> Duration {
        self.services
            .iter()
            .filter(|s| s.pid.is_none())
            .map(|s| s.restart_at.saturating_sub(now))
            .min()
            .unwrap_or(BACKOFF_MIN)
            .clamp(Duration::from_millis(10), BACKOFF_MIN)
    }

    pub fn running(&self) -> impl Iterator<Item = &Service> {
        self.services.iter().filter(|s| s.pid.is_some())
    }

    /// Supervise until a shutdown signal arrives; returns its action.
    pub fn run(&mut self, sys: &dyn Sys) -> Action {
        loop {
            self.start_due(sys);
            let sig = sys.wait_signal(self.timeout(sys.now()));
            for (pid, code) in sys.reap() {
                self.exited(sys, pid, code, true);
            }
            if let Some(a) = sig.and_then(signal_action) {
                return a;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::FakeSys;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn backoff_doubles_caps_and_resets() {
        let mut last = None;
        let mut seq = Vec::new();
        for _ in 0..8 {
            let d = next_backoff(last, S);
            seq.push(d.as_secs());
            last = Some(d);
        }
        assert_eq!(seq, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(next_backoff(Some(BACKOFF_MAX), HEALTHY_AFTER), BACKOFF_MIN);
        assert_eq!(
            next_backoff(Some(BACKOFF_MAX), HEALTHY_AFTER - S),
            BACKOFF_MAX
        );
    }

    #[test]
    fn signals_map_to_busybox_actions() {
        assert_eq!(signal_action(libc::SIGUSR2), Some(Action::Poweroff));
        assert_eq!(signal_action(libc::SIGPWR), Some(Action::Poweroff));
        assert_eq!(signal_action(libc::SIGTERM), Some(Action::Reboot));
        assert_eq!(signal_action(libc::SIGINT), Some(Action::Reboot));
        assert_eq!(signal_action(libc::SIGUSR1), Some(Action::Halt));
        assert_eq!(signal_action(libc::SIGCHLD), None);
        assert_eq!(signal_action(libc::SIGHUP), None);
    }

    fn two_services() -> FakeSys {
        FakeSys::new()
            .dir("/s/getty/rootfs")
            .file("/s/getty/config.json", r#"{"process":{"args":["getty"]}}"#)
            .dir("/s/sshd/rootfs")
            .file("/s/sshd/config.json", r#"{"process":{"args":["sshd"]}}"#)
            .dir("/s/broken")
    }

    #[test]
    fn restarts_with_backoff_until_signal() {
        let sys = two_services();
        let mut sup = Supervisor::new(&sys, bundle::discover(&sys, "/s"));
        assert_eq!(sup.services.len(), 2);
        assert!(
            sys.logs().contains(
                "service broken not started: container broken: /s/broken/rootfs is missing"
            )
        );
        // getty (pid 100) dies at once, then an orphan 999 is reaped, then
        // getty (pid 102) dies again; then SIGUSR2.
        sys.reaps
            .borrow_mut()
            .extend([vec![(100, 1), (999, 0)], vec![], vec![], vec![(102, 2)]]);
        sys.signals
            .borrow_mut()
            .extend([libc::SIGCHLD, libc::SIGHUP]);
        let action = {
            // Deliver SIGUSR2 after the scripted events run out.
            let mut n = 0;
            loop {
                sup.start_due(&sys);
                let sig = sys.wait_signal(sup.timeout(sys.now()));
                for (pid, code) in sys.reap() {
                    sup.exited(&sys, pid, code, true);
                }
                n += 1;
                if n == 8 {
                    sys.signals.borrow_mut().push_back(libc::SIGUSR2);
                }
                if let Some(a) = sig.and_then(signal_action) {
                    break a;
                }
            }
        };
        assert_eq!(action, Action::Poweroff);
        let logs = sys.logs();
        assert!(
            logs.contains("service getty exited (code 1), restarting in 1s"),
            "{logs}"
        );
        assert!(
            logs.contains("service getty exited (code 2), restarting in 2s"),
            "{logs}"
        );
        let spawns = sys
            .calls()
            .iter()
            .filter(|c| c.starts_with("spawn") && c.ends_with(" getty"))
            .count();
        assert_eq!(spawns, 3);
    }

    #[test]
    fn run_returns_action_of_signal() {
        let sys = two_services();
        let mut sup = Supervisor::new(&sys, bundle::discover(&sys, "/s"));
        sys.signals
            .borrow_mut()
            .extend([libc::SIGCHLD, libc::SIGTERM]);
        assert_eq!(sup.run(&sys), Action::Reboot);
        assert_eq!(sup.running().count(), 2);
    }
}
