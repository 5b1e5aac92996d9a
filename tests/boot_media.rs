//! The squashfs-root boot media from examples/minimal.yml: `kernel+squashfs`,
//! `uki` and `iso`, checked by independent tools (unsquashfs, xorriso,
//! sgdisk, objdump, fsck.fat, cpio), byte-identical across builds, and
//! booted under real firmware, one test per cell of the boot matrix: the ISO
//! as a CD and as a USB stick, the raw disk, under SeaBIOS and OVMF; qcow2
//! under OVMF; and corrupted roots that stage 1 refuses.

mod common;

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use common::*;

const BOOT_TIMEOUT: Duration = Duration::from_secs(300);

const FORMATS: [&str; 10] = [
    "-f",
    "iso",
    "-f",
    "raw",
    "-f",
    "qcow2",
    "-f",
    "kernel+squashfs",
    "-f",
    "uki",
];

fn build_media(out: &Path, specs: &Path) {
    let store = base_store();
    let yml = minimal_copy(specs);
    run(local_build(&store, out).args(FORMATS).arg(&yml));
}

/// One build shared by the boot cells (they boot with `snapshot=on` or
/// from copies, so nobody changes it).
fn media() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let (out, specs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        build_media(out.path(), specs.path());
        out
    })
    .path()
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
            "minimal-config.img",
            "minimal-initrd.img",
            "minimal-kernel",
            "minimal-squashfs.img",
            "minimal.efi",
            "minimal.iso",
            "minimal.manifest.json",
            "minimal.qcow2",
            "minimal.raw"
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
    // The raw disk: a valid GPT with the four partitions, the ESP passes
    // fsck.fat, partition A starts with the root squashfs's bytes, the
    // BIOS volume is ISO 9660 with isolinux; qcow2 holds the same disk.
    let raw = p("minimal.raw");
    let v = sh(&format!("sgdisk -v {raw} 2>&1"));
    assert!(v.contains("No problems found"), "{v}");
    let parts: serde_json::Value = serde_json::from_str(&sh(&format!("sfdisk -J {raw}"))).unwrap();
    let parts = parts["partitiontable"]["partitions"]
        .as_array()
        .unwrap()
        .clone();
    let names: Vec<&str> = parts.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "smelt-bios",
            "ESP",
            "smelt-root-a",
            "smelt-root-b",
            "CIDATA"
        ]
    );
    let sector = |i: usize, k: &str| parts[i][k].as_u64().unwrap();
    let esp_img = x.path().join("esp.img");
    sh(&format!(
        "dd if={raw} of={} bs=512 skip={} count={} status=none",
        esp_img.display(),
        sector(1, "start"),
        sector(1, "size")
    ));
    sh(&format!("fsck.fat -n {}", esp_img.display()));
    let sq_len = std::fs::metadata(a.path().join("minimal-squashfs.img"))
        .unwrap()
        .len();
    let root_a = sh(&format!(
        "dd if={raw} bs=512 skip={} count={} status=none | sha256sum",
        sector(2, "start"),
        sq_len / 512
    ));
    assert!(
        root_a.starts_with(&sq_sha),
        "partition A is not the root squashfs"
    );
    assert!(
        cfg.contains(&parts[2]["uuid"].as_str().unwrap().to_lowercase()),
        "stage 1 does not name partition A's PARTUUID:\n{cfg}"
    );
    let bios = sh(&format!(
        "xorriso -indev {raw} -find /isolinux -name isolinux.bin 2>/dev/null"
    ));
    assert!(bios.contains("/isolinux/isolinux.bin"), "{bios}");
    let cmp = sh(&format!(
        "qemu-img compare -f raw -F qcow2 {raw} {} 2>&1",
        p("minimal.qcow2")
    ));
    assert!(cmp.contains("Images are identical"), "{cmp}");
    let check = sh(&format!("qemu-img check {} 2>&1", p("minimal.qcow2")));
    assert!(check.contains("No errors"), "{check}");
}

fn cell(file: &str, medium: Medium, uefi: bool, found: &str) {
    let vars = tempfile::tempdir().unwrap();
    let r = vm(
        &media().join(file),
        medium,
        uefi,
        &vars.path().join("vars.fd"),
        BOOT_TIMEOUT,
    )
    .boot()
    .unwrap();
    let c = &r.console;
    for want in [
        found,
        "Welcome to smelt",
        "[hello] SMELT_MINIMAL_OK",
        "smelt: powering off",
    ] {
        assert!(c.contains(want), "{want:?} not on the console:\n{c}");
    }
    assert!(r.powered_off(), "{:?}\n{c}", r.outcome);
}

const ON_ISO: &str = "smelt stage1: found root: iso volume SMELT_";
const ON_PARTITION: &str = "smelt stage1: found root: partition /dev/vda3";

#[test]
fn iso_as_cd_boots_under_seabios() {
    cell("minimal.iso", Medium::Cd, false, ON_ISO);
}

#[test]
fn iso_as_cd_boots_under_ovmf() {
    cell("minimal.iso", Medium::Cd, true, ON_ISO);
}

#[test]
fn iso_as_usb_stick_boots_under_seabios() {
    cell("minimal.iso", Medium::Usb, false, ON_ISO);
}

#[test]
fn iso_as_usb_stick_boots_under_ovmf() {
    cell("minimal.iso", Medium::Usb, true, ON_ISO);
}

#[test]
fn raw_disk_boots_under_seabios() {
    cell("minimal.raw", Medium::Disk, false, ON_PARTITION);
}

#[test]
fn raw_disk_boots_under_ovmf() {
    cell("minimal.raw", Medium::Disk, true, ON_PARTITION);
}

#[test]
fn qcow2_boots_under_ovmf() {
    cell("minimal.qcow2", Medium::Disk, true, ON_PARTITION);
}

/// Flip one byte at `at` of a copy of `file`, boot it, expect stage 1's
/// refusal naming `device`.
fn refuses(file: &str, at: u64, medium: Medium, device: &str) {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join(file);
    let mut bytes = std::fs::read(media().join(file)).unwrap();
    bytes[at as usize] ^= 0xff;
    std::fs::write(&copy, bytes).unwrap();
    let mut vm = vm(
        &copy,
        medium,
        false,
        &dir.path().join("vars.fd"),
        BOOT_TIMEOUT,
    )
    .spawn()
    .unwrap();
    let refused = vm.wait_for_console("refusing to boot", BOOT_TIMEOUT);
    let console = vm.console();
    assert!(refused, "no refusal on the console:\n{console}");
    assert!(
        console.contains(&format!("root image sha256 mismatch on {device}")),
        "{console}"
    );
    assert!(!console.contains("Welcome to smelt"), "{console}");
}

fn squashfs_len() -> u64 {
    std::fs::metadata(media().join("minimal-squashfs.img"))
        .unwrap()
        .len()
}

#[test]
fn iso_with_a_corrupted_root_refuses_to_boot() {
    let iso = media().join("minimal.iso");
    // The middle of /smelt/root.squashfs, located by xorriso.
    let lba: u64 = sh(&format!(
        "xorriso -indev {} -find /smelt/root.squashfs -exec report_lba -- 2>/dev/null | awk '/File data lba/ {{print $6}}' | tr -d ,",
        iso.display()
    ))
    .trim()
    .parse()
    .expect("xorriso reports the root's LBA");
    refuses(
        "minimal.iso",
        lba * 2048 + squashfs_len() / 2,
        Medium::Cd,
        "/dev/loop",
    );
}

#[test]
fn raw_disk_with_a_corrupted_root_partition_refuses_to_boot() {
    let raw = media().join("minimal.raw");
    let parts: serde_json::Value =
        serde_json::from_str(&sh(&format!("sfdisk -J {}", raw.display()))).unwrap();
    let start = parts["partitiontable"]["partitions"][2]["start"]
        .as_u64()
        .unwrap();
    refuses(
        "minimal.raw",
        start * 512 + squashfs_len() / 2,
        Medium::Disk,
        "/dev/vda3",
    );
}

#[test]
fn raw_size_override_grows_the_disk_and_too_small_is_refused() {
    let (out, specs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let store = base_store();
    let yml = minimal_copy(specs.path());
    let small = run_fail(
        local_build(&store, out.path())
            .args(["-f", "raw", "--size", "64M"])
            .arg(&yml),
    );
    assert!(
        small.contains("--size 67108864: the disk needs at least"),
        "{small}"
    );
    assert!(
        dir_names(out.path()).is_empty(),
        "a refused build left files"
    );
    run(local_build(&store, out.path())
        .args(["-f", "raw", "--size", "1G"])
        .arg(&yml));
    let raw = out.path().join("minimal.raw");
    assert_eq!(std::fs::metadata(&raw).unwrap().len(), 1 << 30);
    let v = sh(&format!("sgdisk -v {} 2>&1", raw.display()));
    assert!(v.contains("No problems found"), "{v}");
    // The partitions are where the computed layout puts them: the extra
    // space is free at the end.
    let parts: serde_json::Value =
        serde_json::from_str(&sh(&format!("sfdisk -J {}", raw.display()))).unwrap();
    let b = &parts["partitiontable"]["partitions"][3];
    let end = (b["start"].as_u64().unwrap() + b["size"].as_u64().unwrap()) * 512;
    assert!(end < (1 << 30) - (16 << 20), "partition B ends at {end}");
}
