//! Boot proofs with real firmware under QEMU (TCG, so no KVM is needed,
//! through [`crate::run::qemu`], the project's one QEMU wrapper): SeaBIOS
//! from a CD, a USB disk and an IDE (AHCI on q35) disk, OVMF from a CD and
//! a USB disk. Each cell writes one image and waits (at most [`BOOT_TIMEOUT`])
//! for a marker on the serial console: isolinux's `SAY` line for BIOS,
//! systemd-boot's countdown from our loader.conf for UEFI. QEMU runs are
//! serialised: the machine has two cores and TCG is CPU-bound.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use super::tests::{EFI_MARKER, ISOLINUX_MARKER, boot_opts, boot_tree, write_to};
use crate::run::qemu::{Accel, BootConfig};

const BOOT_TIMEOUT: Duration = Duration::from_secs(60);
static QEMU: Mutex<()> = Mutex::new(());

/// Boots with the project's QEMU wrapper until `marker` appears on the
/// serial console or the timeout passes; QEMU is killed either way, and a
/// miss panics with the console's and QEMU's stderr tails. `-nographic`
/// makes SeaBIOS mirror the screen to the serial port (its "sercon"), which
/// is where isolinux's `SAY` text goes before its own serial output starts.
fn boot_until(uefi: bool, args: Vec<String>, marker: &str) {
    let _one_at_a_time = QEMU.lock().unwrap_or_else(|e| e.into_inner());
    let mut extra_args = vec!["-nographic".to_string()];
    extra_args.extend(args);
    let config = BootConfig {
        mem_mib: 512,
        timeout: BOOT_TIMEOUT,
        accel: Accel::Tcg,
        uefi,
        extra_args,
        ..BootConfig::default()
    };
    let mut vm = config.spawn().unwrap_or_else(|e| panic!("{e}"));
    let seen = vm.wait_for_console(marker, BOOT_TIMEOUT);
    let result = vm.kill();
    if !seen {
        let tail: String = result
            .console
            .chars()
            .rev()
            .take(1500)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        panic!(
            "{marker:?} not seen within {BOOT_TIMEOUT:?}\nargs: {:?}\nconsole tail:\n{tail}\nstderr: {}",
            config.args(),
            result.stderr_tail
        );
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

#[test]
fn seabios_boots_isolinux_from_cdrom() {
    let tmp = tempfile::tempdir().unwrap();
    let iso = image(tmp.path(), true);
    boot_until(false, vec!["-cdrom".into(), iso], ISOLINUX_MARKER);
}

#[test]
fn seabios_boots_isolinux_from_usb_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let iso = image(tmp.path(), true);
    boot_until(false, usb(&iso), ISOLINUX_MARKER);
}

#[test]
fn seabios_boots_isolinux_from_ide_disk_mbr_only() {
    let tmp = tempfile::tempdir().unwrap();
    let iso = image(tmp.path(), false);
    let drive = format!("if=ide,format=raw,snapshot=on,file={iso}");
    boot_until(false, vec!["-drive".into(), drive], ISOLINUX_MARKER);
}

#[test]
fn ovmf_boots_efi_image_from_cdrom() {
    let tmp = tempfile::tempdir().unwrap();
    let iso = image(tmp.path(), true);
    boot_until(true, vec!["-cdrom".into(), iso], EFI_MARKER);
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
    boot_until(true, usb(&iso), EFI_MARKER);
}
