//! smelt's init as PID 1, booted under QEMU: onboot containers in order, a
//! service restarted after it exits, onshutdown before poweroff; the
//! httpd example; bad bundles and a missing runc reported by name while the
//! system keeps going; the getty example's shell, and `poweroff` typed into
//! it; the ACPI power button.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use smelt::run::qemu::{BootConfig, BootResult, RunningVm};

const BOOT_TIMEOUT: Duration = Duration::from_secs(300);

/// Build `spec` (text, or an example file) as kernel+initrd into `out`.
fn build_spec(out: &Path, name: &str, spec: &str) -> PathBuf {
    let store = base_store();
    let yml = out.join(format!("{name}.yml"));
    std::fs::write(&yml, spec).unwrap();
    run(local_build(&store, out).arg(&yml));
    out.join(format!("{name}-kernel"))
}

fn vm(kernel: &Path, forwards: Vec<(u16, u16)>) -> RunningVm {
    vm_with(kernel, forwards, None)
}

fn vm_with(kernel: &Path, forwards: Vec<(u16, u16)>, monitor: Option<PathBuf>) -> RunningVm {
    let k = smelt::run::find_kernel_initrd(kernel, None).unwrap();
    BootConfig {
        monitor,
        kernel: Some(k.kernel),
        initrd: Some(k.initrd),
        cmdline: Some(k.cmdline),
        echo: true,
        forwards,
        ..BootConfig::default()
    }
    .spawn()
    .expect("qemu starts")
}

/// Positions of `needles` in `console`, asserting each is present.
fn positions(console: &str, needles: &[&str]) -> Vec<usize> {
    needles
        .iter()
        .map(|n| {
            console
                .find(n)
                .unwrap_or_else(|| panic!("{n:?} not on the console:\n{console}"))
        })
        .collect()
}

fn assert_in_order(r: &BootResult, needles: &[&str]) {
    let p = positions(&r.console, needles);
    assert!(
        p.windows(2).all(|w| w[0] < w[1]),
        "{needles:?} out of order: {p:?}\n{}",
        r.console
    );
}

const LIFECYCLE: &str = r#"kernel:
  image: smelt/kernel:latest
  cmdline: "console=ttyS0"
init:
  - smelt/init:latest
  - smelt/runc:latest
onboot:
  - name: first
    image: smelt/busybox:latest
    command: ["/bin/sh", "-c", "echo ONBOOT-ONE-RAN"]
  - name: second
    image: smelt/busybox:latest
    command: ["/bin/sh", "-c", "echo ONBOOT-TWO-RAN"]
services:
  - name: flaky
    image: smelt/busybox:latest
    command: ["/bin/sh", "-c", "echo SERVICE-FLAKY-STARTED; sleep 1; exit 3"]
  - name: stopper
    image: smelt/poweroff:latest
    command: ["/usr/bin/poweroff-after", "12"]
onshutdown:
  - name: goodbye
    image: smelt/busybox:latest
    command: ["/bin/sh", "-c", "echo ONSHUTDOWN-RAN"]
"#;

#[test]
fn lifecycle_onboot_services_restart_onshutdown_poweroff() {
    let out = tempfile::tempdir().unwrap();
    let kernel = build_spec(out.path(), "life", LIFECYCLE);
    let r = vm(&kernel, vec![]).wait(BOOT_TIMEOUT).unwrap();
    assert!(
        r.powered_off(),
        "no clean poweroff: {:?}\n{}",
        r.outcome,
        r.stderr_tail
    );
    assert_in_order(
        &r,
        &[
            "Welcome to smelt",
            "ONBOOT-ONE-RAN",
            "ONBOOT-TWO-RAN",
            "SERVICE-FLAKY-STARTED",
            "ONSHUTDOWN-RAN",
        ],
    );
    // The service ran again after it exited.
    assert!(
        r.console.matches("SERVICE-FLAKY-STARTED").count() >= 2,
        "flaky was not restarted:\n{}",
        r.console
    );
    assert!(
        r.console.contains("[flaky] SERVICE-FLAKY-STARTED"),
        "no name prefix:\n{}",
        r.console
    );
    // The stopper exited before shutdown: it is reaped, not sent a kill
    // that runc answers with an error on the console.
    assert!(
        !r.console.contains("container does not exist"),
        "{}",
        r.console
    );
}

#[test]
fn httpd_example_answers_through_port_forwarding() {
    let out = tempfile::tempdir().unwrap();
    let spec = std::fs::read_to_string(repo().join("examples/httpd.yml")).unwrap();
    let kernel = build_spec(out.path(), "httpd", &spec);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut vm = vm(&kernel, vec![(port, 80)]);
    assert!(
        vm.wait_for_console("Welcome to smelt", BOOT_TIMEOUT),
        "{}",
        vm.console()
    );
    let start = Instant::now();
    let body = loop {
        if let Some(b) = http_get(port) {
            break b;
        }
        assert!(
            start.elapsed() < BOOT_TIMEOUT,
            "httpd never answered:\n{}",
            vm.console()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let r = vm.kill();
    assert!(body.contains("hello from smelt"), "{body}\n{}", r.console);
}

fn http_get(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    body.starts_with("HTTP/1.").then_some(body)
}

const BAD_BUNDLES: &str = r#"kernel:
  image: smelt/kernel:latest
  cmdline: "console=ttyS0"
init:
  - smelt/init:latest
  - smelt/runc:latest
onboot:
  - name: broken
    image: smelt/busybox:latest
    command: ["/bin/true"]
  - name: fails
    image: smelt/busybox:latest
    command: ["/bin/sh", "-c", "exit 7"]
  - name: after
    image: smelt/busybox:latest
    command: ["/bin/sh", "-c", "echo STILL-BOOTING"]
services:
  - name: stopper
    image: smelt/poweroff:latest
    command: ["/usr/bin/poweroff-after", "2"]
files:
  - path: containers/onboot/000-broken/config.json
    contents: "{ not json"
  - path: containers/onboot/001-ghost/config.json
    contents: '{"process": {"args": ["/bin/true"]}}'
"#;

#[test]
fn bad_bundles_are_named_and_the_system_keeps_going() {
    let out = tempfile::tempdir().unwrap();
    let kernel = build_spec(out.path(), "bad", BAD_BUNDLES);
    let r = vm(&kernel, vec![]).wait(BOOT_TIMEOUT).unwrap();
    assert!(r.powered_off(), "{:?}\n{}", r.outcome, r.console);
    positions(
        &r.console,
        &[
            "000-broken",
            "config.json",
            "001-ghost",
            "rootfs",
            "fails",
            "exit code 7",
            "STILL-BOOTING",
        ],
    );
}

#[test]
fn missing_runc_is_reported_and_boot_continues_to_shutdown() {
    let out = tempfile::tempdir().unwrap();
    let spec = BAD_BUNDLES.replace("  - smelt/runc:latest\n", "");
    let kernel = build_spec(out.path(), "norunc", &spec);
    let mut vm = vm(&kernel, vec![]);
    assert!(
        vm.wait_for_console("runc not found", BOOT_TIMEOUT),
        "no runc message:\n{}",
        vm.console()
    );
    assert!(
        vm.wait_for_console("Welcome to smelt", Duration::from_secs(1))
            || vm.console().contains("Welcome to smelt")
    );
    let r = vm.kill();
    assert!(!r.console.contains("Kernel panic"), "{}", r.console);
}

/// Type `line` into the console every few seconds until `needle` shows up
/// (the shell may not be reading yet when the first copy arrives).
fn type_until(vm: &mut RunningVm, line: &str, needle: &str, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        vm.send(line).unwrap();
        if vm.wait_for_console(needle, Duration::from_secs(5)) {
            return true;
        }
    }
    false
}

#[test]
fn getty_example_gives_a_shell_and_poweroff_in_it_shuts_down() {
    let out = tempfile::tempdir().unwrap();
    let spec = std::fs::read_to_string(repo().join("examples/getty.yml")).unwrap();
    let kernel = build_spec(out.path(), "getty", &spec);
    let mut vm = vm(&kernel, vec![]);
    assert!(
        vm.wait_for_console("Welcome to smelt", BOOT_TIMEOUT),
        "{}",
        vm.console()
    );
    // The arithmetic proves a shell ran the line: the echoed input has
    // `$((40+2))`, only the shell's output has 42.
    assert!(
        type_until(
            &mut vm,
            "echo GETTY-$((40+2)) $(hostname)\n",
            "GETTY-42 smelt-getty",
            BOOT_TIMEOUT
        ),
        "the shell never answered:\n{}",
        vm.console()
    );
    vm.send("poweroff\n").unwrap();
    let r = vm.wait(BOOT_TIMEOUT).unwrap();
    assert!(r.powered_off(), "{:?}\n{}", r.outcome, r.console);
    assert!(!r.console.contains("[getty] exited"), "{}", r.console);
    positions(&r.console, &["GETTY-42", "smelt: powering off"]);
}

const POWER_BUTTON: &str = r#"kernel:
  image: smelt/kernel:latest
  cmdline: "console=ttyS0"
init:
  - smelt/init:latest
  - smelt/runc:latest
services:
  - name: idle
    image: smelt/busybox:latest
    command: ["/bin/sh", "-c", "echo IDLE-UP; exec sleep 1000"]
onshutdown:
  - name: goodbye
    image: smelt/busybox:latest
    command: ["/bin/sh", "-c", "echo ONSHUTDOWN-RAN"]
"#;

#[test]
fn acpi_power_button_runs_onshutdown_and_powers_off() {
    let out = tempfile::tempdir().unwrap();
    let kernel = build_spec(out.path(), "button", POWER_BUTTON);
    let sock = out.path().join("monitor.sock");
    let mut vm = vm_with(&kernel, vec![], Some(sock));
    assert!(
        vm.wait_for_console("IDLE-UP", BOOT_TIMEOUT),
        "{}",
        vm.console()
    );
    vm.monitor("system_powerdown").unwrap();
    let r = vm.wait(BOOT_TIMEOUT).unwrap();
    assert!(r.powered_off(), "{:?}\n{}", r.outcome, r.console);
    assert_in_order(
        &r,
        &[
            "IDLE-UP",
            "smelt: powering off",
            "ONSHUTDOWN-RAN",
            "reboot: Power down",
        ],
    );
}
