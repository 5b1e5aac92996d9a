//! The squashfs-root boot media from examples/minimal.yml: `kernel+squashfs`,
//! `uki` and `iso`, checked by independent tools (unsquashfs, xorriso,
//! sgdisk, objdump, fsck.fat, cpio), byte-identical across builds, and
//! booted under real firmware: the ISO as a CD under SeaBIOS and under OVMF
//! (machine `pc`: Debian's cloud kernel has no AHCI or USB drivers), and a
//! corrupted root that stage 1 refuses.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use smelt::run::qemu::BootConfig;

const BOOT_TIMEOUT: Duration = Duration::from_secs(300);
const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS.fd";

fn build_media(out: &Path, specs: &Path) {
    let store = base_store();
    let yml = minimal_copy(specs);
    run(local_build(&store, out)
        .args(["-f", "iso", "-f", "kernel+squashfs", "-f", "uki"])
        .arg(&yml));
}

#[test]
fn media_are_read_by_independent_tools_and_reproducible() {
    let (a, b, specs) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    build_media(a.path(), specs.path());
    build_media(b.path(), specs.path());
    assert_eq!(
        dir_names(a.path()),
        [
            "minimal-cmdline",
            "minimal-initrd.img",
            "minimal-kernel",
            "minimal-squashfs.img",
            "minimal.efi",
            "minimal.iso",
            "minimal.manifest.json"
        ]
    );
    assert_eq!(
        dir_hashes(a.path()),
        dir_hashes(b.path()),
        "two builds differ"
    );
    let p = |n: &str| a.path().join(n).display().to_string();
    // The root squashfs: smelt's init and the onboot bundles.
    let listing = sh(&format!("unsquashfs -lln {}", p("minimal-squashfs.img")));
    for want in [
        "squashfs-root/init",
        "squashfs-root/containers/onboot/000-hello/config.json",
    ] {
        assert!(
            listing.contains(want),
            "{want} not in the squashfs:\n{listing}"
        );
    }
    // Stage 1: the init, its config naming the squashfs's sha256.
    let cpio = sh(&format!(
        "zcat {} | cpio -it --quiet",
        p("minimal-initrd.img")
    ));
    assert!(
        cpio.contains("etc/smelt/stage1.json") && cpio.lines().any(|l| l == "init"),
        "{cpio}"
    );
    let sq_sha = sha256sum(&a.path().join("minimal-squashfs.img"));
    let x = tempfile::tempdir().unwrap();
    sh(&format!(
        "cd {} && zcat {} | cpio -id --quiet etc/smelt/stage1.json",
        x.path().display(),
        p("minimal-initrd.img")
    ));
    let cfg = std::fs::read_to_string(x.path().join("etc/smelt/stage1.json")).unwrap();
    assert!(
        cfg.contains(&sq_sha),
        "stage1.json does not pin {sq_sha}:\n{cfg}"
    );
    // The UKI: systemd-stub with the kernel, stage 1 and cmdline sections.
    let sections = sh(&format!("objdump -h {}", p("minimal.efi")));
    for s in [".osrel", ".cmdline", ".uname", ".initrd", ".linux"] {
        assert!(sections.contains(s), "{s} missing:\n{sections}");
    }
    // The ISO: El Torito BIOS + UEFI, a valid GPT, the ESP passes fsck.fat,
    // the squashfs on it is the same bytes.
    let et = sh(&format!(
        "xorriso -indev {} -report_el_torito plain 2>&1",
        p("minimal.iso")
    ));
    assert!(
        et.contains("BIOS  y   none") && et.contains("UEFI  y   none"),
        "{et}"
    );
    assert!(
        et.contains("/isolinux/isolinux.bin") && et.contains("/boot/efi.img"),
        "{et}"
    );
    let gpt = sh(&format!("sgdisk -v {} 2>&1", p("minimal.iso")));
    assert!(gpt.contains("No problems found"), "{gpt}");
    sh(&format!(
        "xorriso -osirrox on -indev {} -extract /boot/efi.img {x}/efi.img -extract /smelt/root.squashfs {x}/root.squashfs 2>/dev/null",
        p("minimal.iso"),
        x = x.path().display()
    ));
    sh(&format!("fsck.fat -n {}/efi.img", x.path().display()));
    let mdir = sh(&format!(
        "mdir -i {}/efi.img ::/EFI/BOOT",
        x.path().display()
    ));
    assert!(mdir.contains("BOOTX64  EFI"), "{mdir}");
    assert_eq!(sha256sum(&x.path().join("root.squashfs")), sq_sha);
}

fn iso_vm(iso: PathBuf, uefi: bool, vars: &Path) -> BootConfig {
    let mut extra = Vec::new();
    if uefi {
        std::fs::copy(OVMF_VARS, vars).unwrap();
        extra = vec![
            "-drive".into(),
            format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"),
            "-drive".into(),
            format!("if=pflash,format=raw,file={}", vars.display()),
        ];
    }
    BootConfig {
        machine: "pc",
        cdrom: Some(iso),
        timeout: BOOT_TIMEOUT,
        extra_args: extra,
        ..Default::default()
    }
}

fn boot_iso_cell(uefi: bool) {
    let (out, specs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    build_media(out.path(), specs.path());
    let vars = out.path().join("vars.fd");
    let r = iso_vm(out.path().join("minimal.iso"), uefi, &vars)
        .boot()
        .unwrap();
    let c = &r.console;
    for want in [
        "smelt stage1: found root: iso volume SMELT_",
        "Welcome to smelt",
        "[hello] SMELT_MINIMAL_OK",
        "smelt: powering off",
    ] {
        assert!(c.contains(want), "{want:?} not on the console:\n{c}");
    }
    assert!(r.powered_off(), "{:?}\n{c}", r.outcome);
}

#[test]
fn iso_as_cd_boots_under_seabios() {
    boot_iso_cell(false);
}

#[test]
fn iso_as_cd_boots_under_ovmf() {
    boot_iso_cell(true);
}

#[test]
fn iso_with_a_corrupted_root_refuses_to_boot() {
    let (out, specs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    build_media(out.path(), specs.path());
    let iso = out.path().join("minimal.iso");
    // One byte in the middle of /smelt/root.squashfs, found by xorriso.
    let lba: u64 = sh(&format!(
        "xorriso -indev {} -find /smelt/root.squashfs -exec report_lba -- 2>/dev/null | awk '/File data lba/ {{print $6}}' | tr -d ,",
        iso.display()
    ))
    .trim()
    .parse()
    .expect("xorriso reports the root's LBA");
    let size = std::fs::metadata(out.path().join("minimal-squashfs.img"))
        .unwrap()
        .len();
    let at = lba * 2048 + size / 2;
    let mut bytes = std::fs::read(&iso).unwrap();
    bytes[at as usize] ^= 0xff;
    std::fs::write(&iso, bytes).unwrap();
    let mut vm = iso_vm(iso, false, &out.path().join("vars.fd"))
        .spawn()
        .unwrap();
    let refused = vm.wait_for_console("refusing to boot", BOOT_TIMEOUT);
    let console = vm.console();
    assert!(refused, "no refusal on the console:\n{console}");
    assert!(
        console.contains("root image sha256 mismatch on /dev/loop"),
        "{console}"
    );
    assert!(!console.contains("Welcome to smelt"), "{console}");
}
