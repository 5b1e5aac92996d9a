//! Boot proofs with real firmware under QEMU (TCG, so no KVM is needed):
//! SeaBIOS from a CD, a USB disk and an IDE disk, OVMF from a CD and a USB
//! disk. Each cell writes one image and waits (at most [`BOOT_TIMEOUT`])
//! for a marker on the serial console: isolinux's `SAY` line for BIOS,
//! systemd-boot's countdown from our loader.conf for UEFI. QEMU runs are
//! serialised: the machine has two cores and TCG is CPU-bound.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::tests::{EFI_MARKER, ISOLINUX_MARKER, boot_opts, boot_tree, write_to};

const BOOT_TIMEOUT: Duration = Duration::from_secs(60);
const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS.fd";
static QEMU: Mutex<()> = Mutex::new(());

/// Kills QEMU however the test ends.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `qemu-system-x86_64` with `args` until `marker` appears on the
/// serial console (stdout) or the timeout; panics with the console's tail.
fn boot_until(args: &[String], marker: &str) {
    let _one_at_a_time = QEMU.lock().unwrap_or_else(|e| e.into_inner());
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args([
        "-accel",
        "tcg",
        "-m",
        "512",
        "-nographic",
        "-monitor",
        "none",
        "-no-reboot",
    ])
    .args(args)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = Guard(
        cmd.spawn()
            .unwrap_or_else(|e| panic!("running {cmd:?}: {e}")),
    );
    let console = Arc::new(Mutex::new(Vec::<u8>::new()));
    let mut stdout = child.0.stdout.take().expect("piped stdout");
    let sink = Arc::clone(&console);
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = stdout.read(&mut buf) {
            sink.lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(&buf[..n]);
        }
    });
    let start = Instant::now();
    let text =
        || String::from_utf8_lossy(&console.lock().unwrap_or_else(|e| e.into_inner())).into_owned();
    loop {
        if text().contains(marker) {
            return;
        }
        let exited = child.0.try_wait().ok().flatten();
        if exited.is_some() || start.elapsed() > BOOT_TIMEOUT {
            let mut err = String::new();
            if let Some(mut e) = child.0.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            let all = text();
            let tail: String = all
                .chars()
                .rev()
                .take(1500)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            panic!(
                "{marker:?} not seen ({exited:?}, {:?})\nargs: {args:?}\nconsole tail:\n{tail}\nstderr: {err}",
                start.elapsed()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn image(dir: &Path, gpt: bool) -> String {
    let iso = dir.join(if gpt { "gpt.iso" } else { "mbr.iso" });
    write_to(&boot_tree(), &boot_opts(true, gpt), &iso);
    iso.display().to_string()
}

fn usb(iso: &str) -> Vec<String> {
    [
        "-drive",
        &format!("if=none,id=stick,format=raw,snapshot=on,file={iso}"),
        "-device",
        "qemu-xhci",
        "-device",
        "usb-storage,drive=stick",
    ]
    .map(String::from)
    .to_vec()
}

fn ovmf(dir: &Path) -> Vec<String> {
    let vars = dir.join("OVMF_VARS.fd");
    std::fs::copy(OVMF_VARS, &vars).unwrap();
    vec![
        "-drive".into(),
        format!("if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"),
        "-drive".into(),
        format!("if=pflash,format=raw,unit=1,file={}", vars.display()),
    ]
}

#[test]
fn seabios_boots_isolinux_from_cdrom() {
    let tmp = tempfile::tempdir().unwrap();
    let iso = image(tmp.path(), true);
    boot_until(&["-cdrom".into(), iso], ISOLINUX_MARKER);
}

#[test]
fn seabios_boots_isolinux_from_usb_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let iso = image(tmp.path(), true);
    boot_until(&usb(&iso), ISOLINUX_MARKER);
}

#[test]
fn seabios_boots_isolinux_from_ide_disk_mbr_only() {
    let tmp = tempfile::tempdir().unwrap();
    let iso = image(tmp.path(), false);
    let drive = format!("if=ide,format=raw,snapshot=on,file={iso}");
    boot_until(&["-drive".into(), drive], ISOLINUX_MARKER);
}

#[test]
fn ovmf_boots_efi_image_from_cdrom() {
    let tmp = tempfile::tempdir().unwrap();
    let iso = image(tmp.path(), true);
    let mut args = ovmf(tmp.path());
    args.extend(["-cdrom".into(), iso]);
    boot_until(&args, EFI_MARKER);
}

/// With the catalog's EFI entry made non-bootable, OVMF can only find the
/// loader through the hybrid partition tables' ESP (EDK2 may also read El
/// Torito from a 512-byte-sector disk, which would hide a broken GPT).
#[test]
fn ovmf_boots_esp_from_usb_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let iso = image(tmp.path(), true);
    let layout = super::layout(&boot_tree(), &boot_opts(true, true)).unwrap();
    let catalog = layout.files[Path::new("isolinux/boot.cat")].lba.offset() as usize;
    let mut raw = std::fs::read(&iso).unwrap();
    // Section entry after validation, default and section header (32 each).
    assert_eq!(raw[catalog + 96], 0x88);
    raw[catalog + 96] = 0;
    std::fs::write(&iso, raw).unwrap();
    let mut args = ovmf(tmp.path());
    args.extend(usb(&iso));
    boot_until(&args, EFI_MARKER);
}
