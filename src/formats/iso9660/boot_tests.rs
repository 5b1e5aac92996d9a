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

/// An EFI image over 32 MiB: its El Torito Sector Count overflows 16 bits
/// and is written as 0, which OVMF reads as "to the end of the medium".
#[test]
fn ovmf_boots_large_efi_image_from_cdrom() {
    let tmp = tempfile::tempdir().unwrap();
    let mut tree = boot_tree();
    let big = super::tests::efi_image(Some(40 << 20));
    let node = crate::tree::Node::file(
        crate::tree::testutil::meta(0o644, 0),
        crate::tree::testutil::bytes(&big),
    );
    tree.insert(Path::new("boot/efi.img"), node).unwrap();
    let iso = tmp.path().join("big-efi.iso");
    let layout = write_to(&tree, &boot_opts(false, false), &iso);
    let catalog = layout.files[Path::new("isolinux/boot.cat")].lba.offset() as usize;
    let raw = std::fs::read(&iso).unwrap();
    assert_eq!(
        &raw[catalog + 96 + 6..catalog + 96 + 8],
        &[0, 0],
        "Sector Count 0"
    );
    drop(raw);
    let iso = iso.display().to_string();
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

/// Modules the read check loads, in dependency order (Debian 6.1 kernels
/// build all of them as modules).
const LINUX_MODULES: &[&str] = &[
    "virtio_ring",
    "virtio",
    "virtio_pci_legacy_dev",
    "virtio_pci_modern_dev",
    "virtio_pci",
    "virtio_blk",
    "cdrom",
    "isofs",
    "fat",
    "vfat",
    "nls_cp437",
    "nls_ascii",
    "nls_utf8",
];

/// The guest's script: mount the ISO (virtio disk `vda`) and the hybrid
/// image's ESP (`vdb1`, found through the GPT), and print what Linux sees.
const LINUX_INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in $MODULES; do insmod /m/$m.ko; done
sleep 1
mount -t iso9660 -o ro /dev/vda /mnt
for p in bin/su etc/a home/user/b etc/empty dev/null dev/sda run/fifo sbin collide/READ.ME collide/Read.me collide/read.me long/link; do
  stat -c 'STAT %n %A %h %u:%g %s %t:%T' /mnt/$p
done
echo "LINK $(readlink /mnt/long/link | wc -c)"
echo "DEEP $(cat /mnt/a/b/c/d/e/f/g/h/i/j/deep.txt)"
echo "MANY $(ls /mnt/many | wc -l)"
echo "BIG $(md5sum /mnt/big.bin)"
mount -t vfat -o ro /dev/vdb1 /esp
echo "ESP $(cat /esp/loader/loader.conf) $(stat -c %s /esp/EFI/BOOT/BOOTX64.EFI)"
dmesg | grep 'ISO 9660 Extensions'
echo LINUX-CHECK-DONE
poweroff -f
"#;

/// Linux's own isofs and vfat read both writers' output: Rock Ridge names,
/// modes, owners, link counts, devices, long symlinks through `CE`, and the
/// ESP found through the GPT. Needs a Debian-style kernel tree (`boot/vmlinuz-*`
/// and `lib/modules/*/kernel/...`), e.g. one unpacked from linux-image-cloud-amd64:
/// `SMELT_TEST_KERNEL_DIR=DIR cargo test --lib linux_reads -- --ignored`.
#[test]
#[ignore = "needs SMELT_TEST_KERNEL_DIR (an unpacked Debian kernel package)"]
fn linux_reads_rock_ridge_and_the_esp() {
    let dir = std::env::var_os("SMELT_TEST_KERNEL_DIR").expect("SMELT_TEST_KERNEL_DIR");
    let dir = Path::new(&dir);
    let find = |pred: &dyn Fn(&Path) -> bool| {
        walk_files(dir)
            .into_iter()
            .find(|p| pred(p))
            .unwrap_or_else(|| panic!("not found under {dir:?}"))
    };
    let kernel = find(&|p| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz"))
    });
    let mut initrd = crate::tree::FsTree::new();
    let host = |p: &Path| {
        let len = std::fs::metadata(p).unwrap().len();
        let content = crate::tree::Content::Host {
            path: std::sync::Arc::new(p.into()),
            len,
        };
        crate::tree::Node::file(crate::tree::testutil::meta(0o755, 0), content)
    };
    initrd
        .insert(
            Path::new("bin/busybox"),
            host(Path::new("/usr/bin/busybox")),
        )
        .unwrap();
    for m in LINUX_MODULES {
        let ko = find(&|p| {
            p.file_name()
                .is_some_and(|n| n == format!("{m}.ko").as_str())
        });
        initrd
            .insert(&Path::new("m").join(format!("{m}.ko")), host(&ko))
            .unwrap();
    }
    let init = LINUX_INIT.replace("$MODULES", &LINUX_MODULES.join(" "));
    let init = crate::tree::Node::file(
        crate::tree::testutil::meta(0o755, 0),
        crate::tree::testutil::bytes(init.as_bytes()),
    );
    initrd.insert(Path::new("init"), init).unwrap();
    for d in ["proc", "sys", "dev", "mnt", "esp"] {
        initrd
            .insert(Path::new(d), crate::tree::testutil::dir(0o755))
            .unwrap();
    }
    let tmp = tempfile::tempdir().unwrap();
    let initrd_path = tmp.path().join("initrd.cpio");
    let f = std::fs::File::create(&initrd_path).unwrap();
    crate::formats::cpio::write_newc(&initrd, f, &Default::default()).unwrap();
    let rich = tmp.path().join("rich.iso");
    write_to(
        &super::tests::rich_tree(),
        &super::tests::plain_opts(),
        &rich,
    );
    let hybrid = tmp.path().join("gpt.iso");
    write_to(&boot_tree(), &boot_opts(true, true), &hybrid);
    let config = BootConfig {
        kernel: Some(kernel),
        initrd: Some(initrd_path),
        cmdline: Some("console=ttyS0 quiet".into()),
        mem_mib: 512,
        timeout: Duration::from_secs(120),
        accel: Accel::Tcg,
        disks: vec![rich, hybrid],
        ..BootConfig::default()
    };
    let _one_at_a_time = QEMU.lock().unwrap_or_else(|e| e.into_inner());
    let result = config.boot().unwrap();
    let c = &result.console;
    assert!(
        c.contains("LINUX-CHECK-DONE"),
        "{c}\n{}",
        result.stderr_tail
    );
    for want in [
        "STAT /mnt/bin/su -rwsr-xr-x 1 0:0 18 0:0",
        "STAT /mnt/etc/a -rw-r--r-- 2 1000:1000 11 0:0",
        "STAT /mnt/home/user/b -rw-r--r-- 2 1000:1000 11 0:0",
        "STAT /mnt/etc/empty -rw------- 1 0:0 0 0:0",
        "STAT /mnt/dev/null crw-rw-rw- 1 0:0 0 1:3",
        "STAT /mnt/dev/sda brw-rw---- 1 6:6 0 8:0",
        "STAT /mnt/run/fifo prw-r--r-- 1 0:0 0 0:0",
        "STAT /mnt/sbin lrwxrwxrwx 1 0:0 3 0:0",
        "STAT /mnt/collide/READ.ME -rw-r--r-- 1 0:0 1 0:0",
        "STAT /mnt/collide/Read.me -rw-r--r-- 1 0:0 1 0:0",
        "STAT /mnt/collide/read.me -rw-r--r-- 1 0:0 1 0:0",
        "STAT /mnt/long/link lrwxrwxrwx 1 0:0 600 0:0",
        "LINK 601",
        "DEEP deep",
        "MANY 80",
        "BIG b0e7398c642d2ebe39fc87fa66a1ed65",
        "ESP timeout 3 140891",
        "ISO 9660 Extensions: RRIP_1991A",
    ] {
        assert!(c.contains(want), "{want:?} not in\n{c}");
    }
}

fn walk_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}
