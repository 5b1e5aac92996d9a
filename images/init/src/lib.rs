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
//! Between the modules and the welcome line the machine is configured
//! from a NoCloud seed ([`config::sources`]: `ds=nocloud;s=URL`, the
//! artifact's slot, a `CIDATA` volume, the config initrd): hostname and
//! `bootcmd`, the network ([`net`]: the seed's network-config, else DHCP on
//! every ethernet link), files, users and keys ([`config`]); deferred files
//! and `runcmd` follow the onboot containers.
//!
//! Non-goals: stock cloud-init (its module list, per-instance state, shell
//! script user-data), udev, containerd, hotplug after boot (a power button
//! whose input device appears after the modules pass is not watched).

pub mod bundle;
pub mod config;
pub mod copy;
pub mod disk;
pub mod early;
pub mod gpt;
pub mod iso9660;
pub mod locate;
pub mod loopdev;
pub mod modalias;
pub mod modules;
pub mod net;
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
    let mut applied = configure(sys);
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
    if runc_ok {
        onboot::run_all(sys, "onboot", &onboot);
    } else if !(onboot.is_empty() && services.is_empty() && onshutdown.is_empty()) {
        sys.log(&format!("runc not found at {RUNC}: containers cannot run"));
    }
    // Deferred files and runcmd: after the onboot containers, before the
    // services.
    if let Some(a) = applied.as_mut() {
        config::apply_late(sys, a);
    }
    let mut sup = if runc_ok {
        Supervisor::new(sys, services)
    } else {
        Supervisor::default()
    };
    // Even without services: reap orphans and wait for a shutdown signal.
    let action = sup.run(sys);
    let err = shutdown::shutdown(sys, &mut sup, &onshutdown, runc_ok, action);
    format!("reboot(2) failed: {err}")
}

/// How long DHCP may take when nothing asked for it (no seed, or a seed
/// without network-config): a machine with no DHCP server on its links
/// boots this much later, never not at all.
pub const FALLBACK_DHCP: std::time::Duration = std::time::Duration::from_secs(6);
/// Where the extra files of a seed (`smelt inject --file`) are put.
pub const SEED_FILES: &str = "/run/config/slot";

/// Find the seed and apply what comes before the containers: hostname and
/// bootcmd, the network, files, users, keys. No seed: DHCP only.
fn configure(sys: &dyn Sys) -> Option<config::Applied> {
    let (seed, network) = config::sources::find(sys);
    let leases = match network {
        config::sources::Network::Dhcp(l) => Some(l),
        config::sources::Network::Untouched => None,
    };
    let dhcp_done = leases.is_some();
    let Some(seed) = seed else {
        if !dhcp_done {
            net::dhcp_all(sys, FALLBACK_DHCP);
        }
        return None;
    };
    let mut applied = config::apply_early(sys, &seed);
    let nc = applied.network_config.clone().filter(|n| !n.is_empty());
    match nc {
        Some(nc) => {
            // The seed's network-config replaces what DHCP set up to
            // fetch it.
            for l in leases.iter().flatten() {
                drop_lease(sys, l);
            }
            network_config(sys, &nc, &mut applied.report)
        }
        None if !dhcp_done => {
            net::dhcp_all(sys, FALLBACK_DHCP);
        }
        None => {}
    }
    for (rel, data) in &seed.files {
        let to = format!("{SEED_FILES}/{rel}");
        let dir = to.rsplit_once('/').map_or(SEED_FILES, |(d, _)| d);
        if let Err(e) = sys
            .mkdir_all(dir, 0o755)
            .and_then(|()| sys.write_file(&to, data))
        {
            sys.log(&format!("cloud-config: error: writing {to}: {e}"));
            applied.report.errors.push(format!("writing {to}: {e}"));
        }
    }
    config::apply_system(sys, &mut applied);
    Some(applied)
}

/// Remove the address a DHCP lease put on its link (and with it the
/// routes through it).
fn drop_lease(sys: &dyn Sys, l: &net::Lease) {
    let addr = net::config::Cidr {
        addr: std::net::IpAddr::V4(l.address),
        prefix: l.prefix,
    };
    match sys.addr_del(&l.ifname, &addr) {
        Ok(()) => sys.log(&format!(
            "smelt: {}: DHCP address {addr} dropped for the network-config",
            l.ifname
        )),
        Err(e) => sys.log(&format!(
            "smelt: {}: dropping DHCP address {addr}: {e}",
            l.ifname
        )),
    }
}

/// Apply a seed's network-config; its outcome joins the config report.
fn network_config(sys: &dyn Sys, text: &[u8], report: &mut config::Report) {
    match net::config::parse(&String::from_utf8_lossy(text)) {
        Ok(cfg) => {
            let r = net::apply(sys, &cfg);
            for w in &r.skipped {
                sys.log(&format!("network-config: skipped {w}"));
            }
            for e in &r.errors {
                sys.log(&format!("network-config: error: {e}"));
            }
            report.applied.push("network-config".into());
            report.skipped.extend(
                r.skipped
                    .into_iter()
                    .map(|s| format!("network-config: {s}")),
            );
            report
                .errors
                .extend(r.errors.into_iter().map(|e| format!("network-config: {e}")));
        }
        Err(e) => {
            sys.log(&format!("network-config: error: {e}; not applied"));
            report.errors.push(format!("network-config: {e}"));
        }
    }
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

    /// One onboot container `a` and one service `s`.
    fn with_containers(sys: FakeSys) -> FakeSys {
        sys.dir("/containers/onboot/000-a/rootfs")
            .file(
                "/containers/onboot/000-a/config.json",
                r#"{"process":{"args":["a"]}}"#,
            )
            .dir("/containers/services/s/rootfs")
            .file(
                "/containers/services/s/config.json",
                r#"{"process":{"args":["s"]}}"#,
            )
    }

    #[test]
    fn runc_missing_skips_containers_once() {
        let sys = with_containers(FakeSys::new()).file("/proc/uptime", "1.50 2.00\n");
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
        let sys = with_containers(FakeSys::new()).file("/usr/bin/runc", "");
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

    /// A config initrd with user-data and a static network-config: the
    /// hostname, the address and the files come before the welcome line and
    /// the containers; runcmd after the onboot containers, before services.
    #[test]
    fn config_is_applied_around_the_containers() {
        let sys = with_containers(FakeSys::new())
            .file("/usr/bin/runc", "")
            .file("/bin/sh", "")
            .dir("/smelt/nocloud")
            .file(
                "/smelt/nocloud/user-data",
                "#cloud-config\nhostname: box\nwrite_files:\n  - path: /etc/x\n    content: hi\nruncmd:\n  - echo RUN\n",
            )
            .file(
                "/smelt/nocloud/network-config",
                "version: 2\nethernets:\n  n:\n    match: {macaddress: '52:54:00:12:34:56'}\n    addresses: [10.0.2.77/24]\n",
            )
            .file("/smelt/nocloud/extra/motd", "hello\n")
            .file("/sys/class/net/eth0/type", "1\n")
            .file("/sys/class/net/eth0/address", "52:54:00:12:34:56\n");
        sys.signals.borrow_mut().push_back(libc::SIGTERM);
        run(&sys);
        let calls = sys.calls();
        let pos = |p: &str| {
            calls
                .iter()
                .position(|c| c.starts_with(p))
                .unwrap_or_else(|| panic!("{p:?} not in {calls:#?}"))
        };
        assert!(pos("hostname box") < pos("addr add eth0 10.0.2.77/24"));
        assert!(pos("addr add eth0 10.0.2.77/24") < pos("write /etc/x hi"));
        assert!(
            pos("write /etc/x hi")
                < pos("run /usr/bin/runc --root /run/runc run --bundle /containers/onboot/000-a a")
        );
        assert!(
            pos("run /usr/bin/runc --root /run/runc run --bundle") < pos("run /bin/sh -c echo RUN")
        );
        assert!(
            pos("run /bin/sh -c echo RUN")
                < pos("spawn /usr/bin/runc --root /run/runc run --bundle /containers/services/s s")
        );
        assert!(
            !calls.iter().any(|c| c.starts_with("dhcp socket")),
            "no DHCP with a network-config: {calls:#?}"
        );
        assert_eq!(
            sys.read_file("/run/config/slot/extra/motd").unwrap(),
            b"hello\n"
        );
        let logs = sys.logs();
        assert!(
            logs.find("cloud-config: seed from initrd") < logs.find("Welcome to smelt"),
            "{logs}"
        );
    }

    /// `ds=nocloud;s=URL`: DHCP to reach the server, the seed fetched, and
    /// its static network-config replacing the DHCP address.
    #[test]
    fn a_url_seed_with_network_config_replaces_the_dhcp_address() {
        use std::io::{BufRead, BufReader, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/s/", l.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            for body in [
                "instance-id: u\n",
                "#cloud-config\nhostname: web\n",
                "version: 2\nethernets:\n  n:\n    match: {name: eth0}\n    addresses: [10.0.2.77/24]\n",
            ] {
                let (mut s, _) = l.accept().unwrap();
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                while r.read_line(&mut line).unwrap() > 2 {
                    line.clear();
                }
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                s.write_all(head.as_bytes()).unwrap();
                s.write_all(body.as_bytes()).unwrap();
            }
        });
        let mut sys = FakeSys::new()
            .file(
                "/proc/cmdline",
                &format!("console=ttyS0 ds=nocloud;s={url}\n"),
            )
            .file("/sys/class/net/eth0/type", "1\n")
            .file("/sys/class/net/eth0/carrier", "1\n")
            .file("/sys/class/net/eth0/address", "52:54:00:12:34:56\n");
        sys.dhcp_offers
            .insert("eth0".into(), std::net::Ipv4Addr::new(10, 0, 2, 15));
        sys.signals.borrow_mut().push_back(libc::SIGTERM);
        run(&sys);
        server.join().unwrap();
        let calls = sys.calls();
        let pos = |p: &str| {
            calls
                .iter()
                .position(|c| c.starts_with(p))
                .unwrap_or_else(|| panic!("{p:?} not in {calls:#?}"))
        };
        assert!(pos("addr add eth0 10.0.2.15/24") < pos("hostname web"));
        assert!(pos("hostname web") < pos("addr del eth0 10.0.2.15/24"));
        assert!(pos("addr del eth0 10.0.2.15/24") < pos("addr add eth0 10.0.2.77/24"));
        assert!(
            sys.logs()
                .contains(&format!("cloud-config: seed from {url}")),
            "{}",
            sys.logs()
        );
    }

    #[test]
    fn no_seed_means_dhcp_on_every_link() {
        let sys = FakeSys::new()
            .file("/sys/class/net/eth0/type", "1\n")
            .file("/sys/class/net/eth0/address", "52:54:00:12:34:56\n");
        sys.signals.borrow_mut().push_back(libc::SIGTERM);
        run(&sys);
        assert!(
            sys.calls().iter().any(|c| c == "dhcp socket eth0"),
            "{:#?}",
            sys.calls()
        );
        assert!(!sys.logs().contains("cloud-config"), "{}", sys.logs());
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
