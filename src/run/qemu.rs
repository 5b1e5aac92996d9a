//! The one wrapper around `qemu-system-x86_64`: builds the command line,
//! captures the serial console, enforces a timeout and reports how the guest
//! ended.
//!
//! Acceleration: TCG unless KVM is asked for. On the machines this project
//! is developed on, `/dev/kvm` exists but a Linux guest under KVM hangs
//! after the real-mode stub (measured: SeaBIOS prints, the kernel never
//! does), so "is /dev/kvm there" is not a usable probe. `Accel::Auto` boots
//! with KVM only when `SMELT_KVM=1` says the host is known good.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The QEMU binary used for every boot.
pub const QEMU: &str = "qemu-system-x86_64";
/// Debian's OVMF build (package `ovmf`): UEFI firmware for `-bios`.
pub const OVMF: &str = "/usr/share/ovmf/OVMF.fd";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    /// KVM when `SMELT_KVM=1`, TCG otherwise.
    Auto,
    Kvm,
    Tcg,
}

impl Accel {
    fn resolve(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
            Accel::Auto if std::env::var("SMELT_KVM").as_deref() == Ok("1") => "kvm",
            Accel::Auto => "tcg",
        }
    }
}

/// What to boot and how.
#[derive(Clone, Debug)]
pub struct BootConfig {
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    pub cmdline: Option<String>,
    /// Guest memory in MiB.
    pub mem_mib: u32,
    pub timeout: Duration,
    pub accel: Accel,
    /// Echo the console to this process's stderr as it arrives.
    pub echo: bool,
    /// Give the guest's serial console this process's own stdin and stdout
    /// (a shell you can type into); the console is then not captured.
    pub interactive: bool,
    /// Boot with UEFI firmware (OVMF) instead of SeaBIOS.
    pub uefi: bool,
    /// Extra drives, as virtio disks (format from the file name: `.qcow2`
    /// or raw).
    pub disks: Vec<PathBuf>,
    /// User-net TCP forwards from 127.0.0.1:HOST to the guest's GUEST port.
    pub forwards: Vec<(u16, u16)>,
    /// Extra arguments appended verbatim (drives, firmware, network).
    pub extra_args: Vec<String>,
    /// A UNIX socket for QEMU's human monitor, so a caller can press the
    /// ACPI power button ([`RunningVm::monitor`]); none by default.
    pub monitor: Option<PathBuf>,
    /// QEMU machine type: `q35` (default) or `pc` (i440fx: IDE CD and
    /// disks, for kernels without AHCI such as Debian's cloud kernel).
    pub machine: &'static str,
    /// A CD-ROM image (an ISO), on the machine's own CD controller.
    pub cdrom: Option<PathBuf>,
}

impl Default for BootConfig {
    fn default() -> Self {
        BootConfig {
            kernel: None,
            initrd: None,
            cmdline: None,
            mem_mib: 1024,
            timeout: Duration::from_secs(120),
            accel: Accel::Auto,
            echo: false,
            interactive: false,
            uefi: false,
            disks: Vec::new(),
            forwards: Vec::new(),
            extra_args: Vec::new(),
            monitor: None,
            machine: "q35",
            cdrom: None,
        }
    }
}

/// How a boot ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// QEMU exited by itself (guest powered off, or `-no-reboot` on reboot).
    Exited(i32),
    /// The timeout passed and QEMU was killed.
    TimedOut,
}

#[derive(Debug)]
pub struct BootResult {
    pub outcome: Outcome,
    /// Everything the guest wrote to its serial console.
    pub console: String,
    /// The tail of QEMU's own stderr.
    pub stderr_tail: String,
}

impl BootResult {
    /// True when the guest powered off cleanly (QEMU exit status 0).
    pub fn powered_off(&self) -> bool {
        self.outcome == Outcome::Exited(0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    #[error("cannot start {QEMU} (is qemu-system-x86 installed?): {0}")]
    Spawn(std::io::Error),
    #[error("waiting for {QEMU}: {0}")]
    Wait(std::io::Error),
}

impl BootConfig {
    /// The full argument list, without the program name.
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "-machine".into(),
            format!("{},accel={}", self.machine, self.accel.resolve()),
            "-m".into(),
            self.mem_mib.to_string(),
            "-display".into(),
            "none".into(),
            "-serial".into(),
            "stdio".into(),
            "-monitor".into(),
            match &self.monitor {
                Some(p) => format!("unix:{},server=on,wait=off", p.display()),
                None => "none".into(),
            },
            "-no-reboot".into(),
        ];
        if self.accel.resolve() == "tcg" {
            a.extend(["-cpu".into(), "max".into()]);
        }
        if let Some(k) = &self.kernel {
            a.extend(["-kernel".into(), k.display().to_string()]);
        }
        if let Some(i) = &self.initrd {
            a.extend(["-initrd".into(), i.display().to_string()]);
        }
        if let Some(c) = &self.cmdline {
            a.extend(["-append".into(), c.clone()]);
        }
        if self.uefi {
            a.extend(["-bios".into(), OVMF.into()]);
        }
        if let Some(iso) = &self.cdrom {
            a.extend(["-cdrom".into(), iso.display().to_string()]);
        }
        for d in &self.disks {
            let format = if d.extension().is_some_and(|e| e == "qcow2") {
                "qcow2"
            } else {
                "raw"
            };
            a.extend([
                "-drive".into(),
                format!("file={},format={format},if=virtio", d.display()),
            ]);
        }
        let mut nic = "user,model=virtio-net-pci".to_string();
        for (host, guest) in &self.forwards {
            nic.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}"));
        }
        a.extend(["-nic".into(), nic]);
        a.extend(self.extra_args.iter().cloned());
        a
    }

    /// Boot and wait for poweroff or the timeout.
    pub fn boot(&self) -> Result<BootResult, QemuError> {
        self.spawn()?.wait(self.timeout)
    }

    /// Start the guest and return at once; the console is collected in the
    /// background (unless interactive).
    pub fn spawn(&self) -> Result<RunningVm, QemuError> {
        let args = self.args();
        tracing::info!("running {QEMU} {}", args.join(" "));
        let (stdin, stdout) = if self.interactive {
            (Stdio::inherit(), Stdio::inherit())
        } else {
            // stdin stays open so a test can type into the console.
            (Stdio::piped(), Stdio::piped())
        };
        let mut child = Command::new(QEMU)
            .args(&args)
            .stdin(stdin)
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .map_err(QemuError::Spawn)?;
        let console = Arc::new(Mutex::new(String::new()));
        let out_thread = child.stdout.take().map(|out| {
            let console = Arc::clone(&console);
            let echo = self.echo;
            thread::spawn(move || pump_lines(out, &console, echo))
        });
        let err_thread = child.stderr.take().map(|mut err| {
            thread::spawn(move || {
                let mut s = Vec::new();
                let _ = err.read_to_end(&mut s);
                String::from_utf8_lossy(&s).into_owned()
            })
        });
        Ok(RunningVm {
            monitor: self.monitor.clone(),
            child,
            console,
            out_thread,
            err_thread,
        })
    }
}

/// `text` without ANSI escape sequences: CSI (`ESC [` parameters, then a
/// final byte in `@`..`~`) and two-byte `ESC x` sequences (ECMA-48 5.4).
pub fn strip_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        // `ESC x` drops x; `ESC [` runs to the final byte.
        if chars.next() == Some('[') {
            for p in chars.by_ref() {
                if ('@'..='~').contains(&p) {
                    break;
                }
            }
        }
    }
    out
}

/// A guest that is running. Dropping it kills QEMU.
pub struct RunningVm {
    monitor: Option<PathBuf>,
    child: Child,
    console: Arc<Mutex<String>>,
    out_thread: Option<thread::JoinHandle<()>>,
    err_thread: Option<thread::JoinHandle<String>>,
}

impl RunningVm {
    /// The console so far.
    pub fn console(&self) -> String {
        self.console.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Type `text` into the guest's serial console (not when interactive).
    pub fn send(&mut self, text: &str) -> std::io::Result<()> {
        use std::io::Write;
        match self.child.stdin.as_mut() {
            Some(stdin) => {
                stdin.write_all(text.as_bytes())?;
                stdin.flush()
            }
            None => Err(std::io::Error::other("the console is interactive")),
        }
    }

    /// Send one command to QEMU's monitor (e.g. `system_powerdown`, the
    /// ACPI power button). Needs [`BootConfig::monitor`].
    pub fn monitor(&self, command: &str) -> std::io::Result<()> {
        use std::io::Write;
        let path = self
            .monitor
            .as_ref()
            .ok_or_else(|| std::io::Error::other("the guest has no monitor socket"))?;
        let mut s = std::os::unix::net::UnixStream::connect(path)?;
        s.write_all(format!("{command}\n").as_bytes())?;
        // Read the banner and echo so QEMU has taken the line before the
        // socket closes.
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut buf = [0u8; 4096];
        let mut seen = Vec::new();
        while !String::from_utf8_lossy(&seen).contains(command) {
            match std::io::Read::read(&mut s, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
        Ok(())
    }

    /// Wait until the console contains `needle`, ignoring terminal escape
    /// sequences (a firmware mirroring its screen to the serial line, as
    /// SeaBIOS does with `-nographic`, moves the cursor in mid-text); false
    /// if the guest ended or `timeout` passed first.
    pub fn wait_for_console(&mut self, needle: &str, timeout: Duration) -> bool {
        let start = Instant::now();
        loop {
            if strip_escapes(&self.console()).contains(needle) {
                return true;
            }
            let exited = matches!(self.child.try_wait(), Ok(Some(_)));
            if exited || start.elapsed() >= timeout {
                // The reader may still hold the last lines.
                return strip_escapes(&self.console()).contains(needle);
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait for QEMU to exit (killing it after `timeout`) and collect all.
    pub fn wait(mut self, timeout: Duration) -> Result<BootResult, QemuError> {
        let outcome = wait_with_timeout(&mut self.child, timeout)?;
        Ok(self.finish(outcome))
    }

    /// Kill QEMU now and collect what the guest printed.
    pub fn kill(mut self) -> BootResult {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.finish(Outcome::TimedOut)
    }

    fn finish(&mut self, outcome: Outcome) -> BootResult {
        if let Some(t) = self.out_thread.take() {
            let _ = t.join();
        }
        let stderr = self
            .err_thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default();
        BootResult {
            outcome,
            console: self.console(),
            stderr_tail: tail(&stderr, 2000),
        }
    }
}

impl Drop for RunningVm {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn pump_lines(out: impl Read, console: &Mutex<String>, echo: bool) {
    let mut reader = BufReader::new(out);
    let mut buf = Vec::new();
    while let Ok(n) = reader.read_until(b'\n', &mut buf) {
        if n == 0 {
            break;
        }
        let line = String::from_utf8_lossy(&buf);
        if echo {
            eprint!("{line}");
        }
        if let Ok(mut c) = console.lock() {
            c.push_str(&line);
        }
        buf.clear();
    }
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Result<Outcome, QemuError> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().map_err(QemuError::Wait)? {
            return Ok(Outcome::Exited(status.code().unwrap_or(-1)));
        }
        if start.elapsed() >= timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(Outcome::TimedOut);
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn tail(s: &str, max: usize) -> String {
    let start = s.len().saturating_sub(max);
    let start = (start..=s.len())
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(s.len());
    s[start..].to_string()
}

#[cfg(test)]
mod tests {

    #[test]
    fn escapes_are_stripped_for_matching() {
        // SeaBIOS's screen mirror, as seen in a real boot log.
        let seen = "SMELT-ISOLINU\u{1b}[11;13H\u{1b}[11;14HX-OK\u{1b}[0m\u{1b}c done";
        assert_eq!(strip_escapes(seen), "SMELT-ISOLINUX-OK done");
        assert_eq!(strip_escapes("plain [x]"), "plain [x]");
        assert_eq!(strip_escapes("cut \u{1b}[1"), "cut ");
    }

    use super::*;

    #[test]
    fn args_name_accel_and_payload() {
        let cfg = BootConfig {
            kernel: Some("/k".into()),
            initrd: Some("/i".into()),
            cmdline: Some("console=ttyS0".into()),
            accel: Accel::Tcg,
            ..BootConfig::default()
        };
        let a = cfg.args().join(" ");
        assert!(a.contains("accel=tcg"), "{a}");
        assert!(
            a.contains("-kernel /k -initrd /i -append console=ttyS0"),
            "{a}"
        );
        assert!(a.contains("-no-reboot"));
        assert!(a.contains("-nic user,model=virtio-net-pci"), "{a}");
        assert!(!a.contains("-bios"), "{a}");
    }

    #[test]
    fn args_for_uefi_disks_and_forwards() {
        let cfg = BootConfig {
            uefi: true,
            disks: vec!["/d/x.qcow2".into(), "/d/y.raw".into()],
            forwards: vec![(8080, 80)],
            ..BootConfig::default()
        };
        let a = cfg.args().join(" ");
        assert!(a.contains(&format!("-bios {OVMF}")), "{a}");
        assert!(a.contains("file=/d/x.qcow2,format=qcow2,if=virtio"), "{a}");
        assert!(a.contains("file=/d/y.raw,format=raw,if=virtio"), "{a}");
        assert!(a.contains("hostfwd=tcp:127.0.0.1:8080-:80"), "{a}");
    }

    #[test]
    fn tail_keeps_end_on_char_boundary() {
        assert_eq!(tail("abcdef", 3), "def");
        assert_eq!(tail("é", 1), "");
    }
}
