//! Differential tests against xorriso (libisofs), isoinfo (genisoimage),
//! sgdisk and fdisk, and a structural comparison with the image xorriso
//! makes from the same files.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use super::*;
use crate::digest::Digest;
use crate::formats::fat::{FatOptions, write_fat};
use crate::tree::testutil::{bytes, meta, run, sample_tree};
use crate::tree::{Content, LeafKind, Node};

pub const ISOLINUX_BIN: &str = "/usr/lib/ISOLINUX/isolinux.bin";
pub const ISOHDPFX: &str = "/usr/lib/ISOLINUX/isohdpfx.bin";
pub const LDLINUX: &str = "/usr/lib/syslinux/modules/bios/ldlinux.c32";
pub const SYSTEMD_BOOT: &str = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi";
pub const ISOLINUX_MARKER: &str = "SMELT-ISOLINUX-OK";
/// systemd-boot shows its menu only when loader.conf sets a timeout, and
/// the countdown starts at that value: seeing it proves the firmware found
/// the EFI image, read our FAT, started BOOTX64.EFI, and systemd-boot read
/// loader.conf. When the countdown ends it picks its only entry, "Reboot
/// Into Firmware Interface", and `-no-reboot` ends QEMU, which flushes the
/// wrapper's line-buffered console (the countdown has no newline).
pub const EFI_MARKER: &str = "Boot in 3 s.";

fn host(path: &str) -> Content {
    let len = std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .len();
    Content::Host {
        path: Arc::new(PathBuf::from(path)),
        len,
    }
}

fn file(c: Content) -> Node {
    Node::file(meta(0o644, 0), c)
}

/// The FAT image for the EFI entry: systemd-boot as the removable-media
/// loader and a loader.conf whose timeout the boot test sees on the serial
/// console ([`EFI_MARKER`]).
pub fn efi_image(size: Option<u64>) -> Vec<u8> {
    let mut t = FsTree::new();
    let mut ins = |p: &str, n: Node| t.insert(Path::new(p), n).unwrap();
    ins("EFI/BOOT/BOOTX64.EFI", file(host(SYSTEMD_BOOT)));
    ins("loader/loader.conf", file(bytes(b"timeout 3\n")));
    let opts = FatOptions {
        label: "SMELT_EFI".into(),
        volume_id: 0x5E17_0001,
        mtime: 1_700_000_000,
        kind: None,
        size,
        hidden_sectors: 0,
    };
    let mut out = Vec::new();
    write_fat(&t, &opts, &mut out).unwrap();
    out
}

/// isolinux (with a config printing the marker on the serial port) and an
/// EFI image, plus a few ordinary files.
pub fn boot_tree() -> FsTree {
    let mut t = FsTree::new();
    let mut ins = |p: &str, n: Node| t.insert(Path::new(p), n).unwrap();
    ins("isolinux/isolinux.bin", file(host(ISOLINUX_BIN)));
    ins("isolinux/ldlinux.c32", file(host(LDLINUX)));
    let cfg = format!("SERIAL 0 115200\nSAY {ISOLINUX_MARKER}\nPROMPT 0\n");
    ins("isolinux/isolinux.cfg", file(bytes(cfg.as_bytes())));
    ins("boot/efi.img", file(bytes(&efi_image(None))));
    ins("boot/vmlinuz", file(bytes(b"not a kernel")));
    ins("README.txt", file(bytes(b"smelt test image\n")));
    t.set_mtime_all(1_700_000_000);
    t
}

pub fn boot_opts(hybrid: bool, gpt: bool) -> IsoOptions {
    IsoOptions {
        volume_id: "SMELT_TEST".into(),
        mtime: 1_700_000_000,
        bios: Some(BiosBoot {
            image: "isolinux/isolinux.bin".into(),
            catalog: "isolinux/boot.cat".into(),
            load_sectors: 4,
            boot_info_table: true,
        }),
        efi: Some(EfiBoot {
            image: "boot/efi.img".into(),
        }),
        hybrid: hybrid.then(|| Hybrid {
            mbr: std::fs::read(ISOHDPFX).unwrap(),
            gpt,
            partitions: Vec::new(),
            system_area: Vec::new(),
        }),
        uuid_seed: [0x42; 32],
    }
}

pub fn plain_opts() -> IsoOptions {
    IsoOptions {
        volume_id: "PLAIN".into(),
        mtime: 1_700_000_000,
        bios: None,
        efi: None,
        hybrid: None,
        uuid_seed: [0; 32],
    }
}

/// `sample_tree` plus names and targets long enough to need continuation
/// areas, primary-name collisions, a directory spanning sectors, depth.
pub fn rich_tree() -> FsTree {
    let mut t = sample_tree();
    let mut ins = |p: &str, n: Node| t.insert(Path::new(p), n).unwrap();
    let long_name = "n".repeat(240);
    ins(&format!("long/{long_name}"), file(bytes(b"long name")));
    let target = format!("/{}", ["component"; 60].join("/"));
    ins(
        "long/link",
        Node::leaf(meta(0o777, 0), LeafKind::Symlink(target.into())),
    );
    ins("collide/Read.me", file(bytes(b"1")));
    ins("collide/read.me", file(bytes(b"2")));
    ins("collide/READ.ME", file(bytes(b"3")));
    for i in 0..80 {
        ins(
            &format!("many/file with a long name {i:03}.txt"),
            file(bytes(format!("{i}").as_bytes())),
        );
    }
    ins("a/b/c/d/e/f/g/h/i/j/deep.txt", file(bytes(b"deep")));
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    ins("big.bin", file(bytes(&big)));
    t.set_mtime_all(1_700_000_000);
    t
}

pub fn write_to(tree: &FsTree, opts: &IsoOptions, path: &Path) -> IsoLayout {
    let mut f = std::fs::File::create(path).unwrap();
    let l = write_iso(tree, opts, &mut f).unwrap();
    assert_eq!(std::fs::metadata(path).unwrap().len(), l.size);
    assert_eq!(
        layout(tree, opts).unwrap(),
        l,
        "layout() agrees with write_iso()"
    );
    if let Some(dir) = std::env::var_os("SMELT_KEEP_ISO") {
        std::fs::copy(path, Path::new(&dir).join(path.file_name().unwrap())).unwrap();
    }
    l
}

/// Extracts with xorriso and compares every regular file and symlink.
fn extract_and_compare(tree: &FsTree, iso: &Path, dir: &Path) {
    run(Command::new("xorriso")
        .args(["-osirrox", "on", "-indev"])
        .arg(iso)
        .args(["-extract", "/"])
        .arg(dir));
    for (path, node) in tree.walk() {
        let Some(Node::Leaf(i)) = node.node() else {
            continue;
        };
        let got = dir.join(&path);
        match &i.kind {
            LeafKind::File(_) => {
                let want = crate::tree::testutil::read(tree, &path.to_string_lossy());
                let have = std::fs::read(&got).unwrap_or_else(|e| panic!("{got:?}: {e}"));
                assert_eq!(Digest::of(&have), Digest::of(&want), "{path:?}");
            }
            LeafKind::Symlink(t) => assert_eq!(&std::fs::read_link(&got).unwrap(), t, "{path:?}"),
            _ => {}
        }
    }
}

#[test]
fn xorriso_and_isoinfo_read_rock_ridge() {
    let tree = rich_tree();
    let tmp = tempfile::tempdir().unwrap();
    let iso = tmp.path().join("rich.iso");
    let l = write_to(&tree, &plain_opts(), &iso);
    assert!(
        l.regions
            .iter()
            .any(|r| r.name == "rock ridge continuation areas")
    );
    let d = run(Command::new("isoinfo").arg("-d").arg("-i").arg(&iso));
    assert!(d.contains("Volume id: PLAIN"), "{d}");
    assert!(d.contains("Rock Ridge signatures version 1 found"), "{d}");
    assert!(
        d.contains(&format!("Volume size is: {}", l.size / 2048)),
        "{d}"
    );
    let listing = run(Command::new("isoinfo").args(["-R", "-l", "-i"]).arg(&iso));
    for name in [
        "su",
        "file with a long name 079.txt",
        "Read.me",
        "read.me",
        "READ.ME",
        "deep.txt",
    ] {
        assert!(
            listing.contains(name),
            "{name} not in isoinfo -R -l:\n{listing}"
        );
    }
    assert!(listing.contains(&"n".repeat(240)), "long NM through CE");
    let primary = run(Command::new("isoinfo").args(["-l", "-i"]).arg(&iso));
    assert!(
        primary.contains("READ.ME;1") && primary.contains("READ00.ME;1"),
        "{primary}"
    );
    let lsdl = run(Command::new("xorriso")
        .arg("-indev")
        .arg(&iso)
        .args(["-find", "/", "-exec", "lsdl"]));
    let line = |name: &str| {
        lsdl.lines()
            .find(|l| l.ends_with(&format!("'/{name}'")) || l.contains(&format!("'/{name}' ->")))
            .unwrap_or_else(|| panic!("{name} not in\n{lsdl}"))
            .to_string()
    };
    assert!(
        line("bin/su").starts_with("-rwsr-xr-x    1 0        0"),
        "{}",
        line("bin/su")
    );
    // xorriso counts links itself; isoinfo shows PX's count (and ids in octal).
    assert!(
        line("etc/a").starts_with("-rw-r--r--    1 1000     1000"),
        "{}",
        line("etc/a")
    );
    assert!(
        listing.contains("-rw-r--r--   2 1750 1750              11"),
        "PX nlink 2:\n{listing}"
    );
    assert!(
        line("dev/null").starts_with("crw-rw-rw-    1 0        0             1,3 "),
        "{}",
        line("dev/null")
    );
    assert!(
        line("dev/sda").starts_with("brw-rw----    1 6        6             8,0 "),
        "{}",
        line("dev/sda")
    );
    assert!(
        line("run/fifo").starts_with("prw-r--r--"),
        "{}",
        line("run/fifo")
    );
    assert!(
        line("sbin").contains("'/sbin' -> 'bin'"),
        "{}",
        line("sbin")
    );
    assert!(
        line("long/link").contains("/component/component"),
        "long SL through CE"
    );
    extract_and_compare(&tree, &iso, &tmp.path().join("x"));
    let ext = l.files[Path::new("big.bin")];
    let raw = std::fs::read(&iso).unwrap();
    assert_eq!(
        raw[ext.lba.offset() as usize + 1000],
        (1000 % 253) as u8,
        "extent of big.bin"
    );
    assert_eq!(
        l.files[Path::new("etc/a")],
        l.files[Path::new("home/user/b")],
        "hardlinks share data"
    );
}

/// (platform, load size, LBA) per El Torito image in `-report_el_torito plain`.
fn el_torito(iso: &Path) -> (Vec<(String, String, u64)>, String) {
    let r = run(Command::new("xorriso").arg("-indev").arg(iso).args([
        "-report_el_torito",
        "plain",
        "-report_system_area",
        "plain",
    ]));
    let imgs = r
        .lines()
        .filter(|l| l.starts_with("El Torito boot img :"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // "El Torito boot img : N Pltf B Emul Ld_seg Hdpt Ldsiz LBA"
            (f[6].to_string(), f[11].to_string(), f[12].parse().unwrap())
        })
        .collect();
    (imgs, r)
}

/// The same files as `boot_tree`, on the host, for xorriso.
fn host_copy(tree: &FsTree, dir: &Path) {
    for (path, node) in tree.walk() {
        if let Some(Node::Leaf(_)) = node.node() {
            let p = dir.join(&path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(
                &p,
                crate::tree::testutil::read(tree, &path.to_string_lossy()),
            )
            .unwrap();
        }
    }
}

#[test]
fn el_torito_and_hybrid_match_xorriso() {
    let tree = boot_tree();
    let tmp = tempfile::tempdir().unwrap();
    let ours = tmp.path().join("ours.iso");
    let l = write_to(&tree, &boot_opts(true, false), &ours);
    let src = tmp.path().join("src");
    host_copy(&tree, &src);
    let theirs = tmp.path().join("xorriso.iso");
    run(Command::new("xorriso")
        .args(["-as", "mkisofs", "-quiet", "-R", "-V", "SMELT_TEST", "-o"])
        .arg(&theirs)
        .args(["-b", "isolinux/isolinux.bin", "-c", "isolinux/boot.cat"])
        .args(["-no-emul-boot", "-boot-load-size", "4", "-boot-info-table"])
        .args([
            "-isohybrid-mbr",
            ISOHDPFX,
            "-eltorito-alt-boot",
            "-e",
            "boot/efi.img",
        ])
        .args(["-no-emul-boot", "-isohybrid-gpt-basdat"])
        .arg(&src));
    let (mine, report) = el_torito(&ours);
    let (ref_imgs, ref_report) = el_torito(&theirs);
    let shape = |v: &[(String, String, u64)]| {
        v.iter()
            .map(|(p, s, _)| (p.clone(), s.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        shape(&mine),
        shape(&ref_imgs),
        "ours:\n{report}\nxorriso:\n{ref_report}"
    );
    assert_eq!(
        mine[0].2,
        l.files[Path::new("isolinux/isolinux.bin")].lba.0 as u64
    );
    assert_eq!(mine[1].2, l.files[Path::new("boot/efi.img")].lba.0 as u64);
    for line in [
        "El Torito cat path : /isolinux/boot.cat",
        "El Torito img path :   1  /isolinux/isolinux.bin",
        "El Torito img opts :   1  boot-info-table isohybrid-suitable",
        "El Torito img path :   2  /boot/efi.img",
        "MBR heads per cyl  : 64",
        "MBR partition path :   2  /boot/efi.img",
    ] {
        assert!(
            report.contains(line) && ref_report.contains(line),
            "{line}:\n{report}\n{ref_report}"
        );
    }
    let mbr_rows = |r: &str| -> Vec<String> {
        r.lines()
            .filter(|l| l.starts_with("MBR partition      :"))
            .map(|l| l.split_whitespace().take(6).collect::<Vec<_>>().join(" "))
            .collect()
    };
    assert_eq!(
        mbr_rows(&report),
        mbr_rows(&ref_report),
        "partition 1 status/type/start, 2 status/type"
    );
    assert_eq!(l.size % (1 << 20), 0, "whole cylinders");
    // The same bytes again: the boot info table and MBR patch happen in
    // the stream, and xorriso's own checks above accept them.
    let mut again = Vec::new();
    write_iso(&tree, &boot_opts(true, false), &mut again).unwrap();
    assert_eq!(Digest::of(&again), Digest::of_file(&ours).unwrap());
}

#[test]
fn hybrid_gpt_passes_sgdisk_and_fdisk() {
    let tree = boot_tree();
    let tmp = tempfile::tempdir().unwrap();
    let iso = tmp.path().join("h.iso");
    let l = write_to(&tree, &boot_opts(true, true), &iso);
    let v = run(Command::new("sgdisk").arg("-v").arg(&iso));
    assert!(v.contains("No problems found"), "{v}");
    let p = run(Command::new("sgdisk").arg("-p").arg(&iso));
    let efi = l.files[Path::new("boot/efi.img")];
    let start = efi.lba.sector512();
    let end = start + efi.len.div_ceil(512) - 1;
    assert!(
        p.contains(&format!("   1         {start:>5}         {end:>5}"))
            || p.contains(&format!(" {start} ")),
        "{p}"
    );
    assert!(p.contains("EF00"), "{p}");
    let f = run(Command::new("fdisk").arg("-l").arg(&iso));
    assert!(
        f.contains(&format!("{start}")) && f.contains("EFI System"),
        "{f}"
    );
    let (_, report) = el_torito(&iso);
    assert!(
        report.contains("GPT partition path :   1  /boot/efi.img"),
        "{report}"
    );
    assert!(
        report.contains("GPT type GUID      :   1  28732ac11ff8d211ba4b00a0c93ec93b"),
        "ESP type:\n{report}"
    );
    assert!(
        report.contains("MBR partition      :   1   0x00  0xee            1"),
        "{report}"
    );
    // The ESP is a working FAT through the partition offset.
    let img = format!("{}@@{}", iso.display(), start * 512);
    let out = Command::new("mtype")
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["-i", &img, "::/loader/loader.conf"])
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"timeout 3\n", "{out:?}");
    let raw = std::fs::read(&iso).unwrap();
    let bios = l.files[Path::new("isolinux/isolinux.bin")].lba.sector512() as u32;
    assert_eq!(
        &raw[432..436],
        &bios.to_le_bytes(),
        "isolinux LBA x4 at 432"
    );
    assert_eq!(&raw[..432], &std::fs::read(ISOHDPFX).unwrap()[..]);
}

/// Extra hybrid GPT partitions: one over a file of the tree, one over a
/// byte range, checked by sgdisk and read back; misuse names the partition.
#[test]
fn hybrid_gpt_extra_partitions() {
    let mut tree = boot_tree();
    tree.insert(
        Path::new("CIDATA.IMG"),
        file(bytes(&efi_image(Some(1 << 20)))),
    )
    .unwrap();
    let mut opts = boot_opts(true, true);
    let plain = layout(&tree, &opts).unwrap();
    let readme = plain.files[Path::new("README.txt")];
    let extra = |name: &str, span| HybridPartition {
        type_guid: Guid::MICROSOFT_BASIC_DATA,
        name: name.into(),
        span,
    };
    opts.hybrid.as_mut().unwrap().partitions = vec![
        extra("CIDATA", PartitionSpan::File("CIDATA.IMG".into())),
        extra(
            "README",
            PartitionSpan::Bytes {
                offset: readme.lba.offset(),
                length: 2048,
            },
        ),
    ];
    let tmp = tempfile::tempdir().unwrap();
    let iso = tmp.path().join("x.iso");
    let l = write_to(&tree, &opts, &iso);
    assert_eq!(l, plain, "extra partitions do not move anything");
    let v = run(Command::new("sgdisk").arg("-v").arg(&iso));
    assert!(v.contains("No problems found"), "{v}");
    let gpt = crate::formats::gpt::read(&mut std::fs::File::open(&iso).unwrap()).unwrap();
    let names: Vec<&str> = gpt.partitions.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["EFI System", "CIDATA", "README"]);
    let cidata = l.files[Path::new("CIDATA.IMG")];
    let p = &gpt.partitions[1];
    assert_eq!(p.type_guid, Guid::MICROSOFT_BASIC_DATA);
    assert_eq!(p.first_lba.0, cidata.lba.sector512());
    assert_eq!(p.sectors(), (1 << 20) / 512);
    assert_eq!(gpt.partitions[2].first_lba.0, readme.lba.sector512());
    assert_eq!(gpt.partitions[2].sectors(), 4);
    // The FAT in the CIDATA partition is readable through its offset.
    let img = format!("{}@@{}", iso.display(), p.first_lba.byte_offset());
    let out = Command::new("mtype")
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["-i", &img, "::/loader/loader.conf"])
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"timeout 3\n", "{out:?}");

    let fails = |edit: &dyn Fn(&mut IsoOptions), want: &str| {
        let mut o = opts.clone();
        edit(&mut o);
        let e = write_iso(&tree, &o, &mut Vec::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{e} lacks {want}");
    };
    let set = |o: &mut IsoOptions, span| o.hybrid.as_mut().unwrap().partitions[1].span = span;
    fails(
        &|o| set(o, PartitionSpan::File("nope".into())),
        "\"README\": nope is not a file of the tree",
    );
    fails(
        &|o| {
            set(
                o,
                PartitionSpan::Bytes {
                    offset: 513,
                    length: 512,
                },
            )
        },
        "not whole 512-byte sectors",
    );
    fails(
        &|o| {
            set(
                o,
                PartitionSpan::Bytes {
                    offset: 512,
                    length: 512,
                },
            )
        },
        "outside the usable",
    );
    fails(
        &|o| set(o, PartitionSpan::File("boot/efi.img".into())),
        "overlaps partition 0",
    );
    fails(
        &|o| o.hybrid.as_mut().unwrap().gpt = false,
        "extra partitions need the hybrid GPT",
    );
}

#[test]
fn mbr_only_hybrid() {
    let tree = boot_tree();
    let tmp = tempfile::tempdir().unwrap();
    let iso = tmp.path().join("m.iso");
    let l = write_to(&tree, &boot_opts(true, false), &iso);
    let f = run(Command::new("fdisk").arg("-l").arg(&iso));
    assert!(
        f.contains(&format!("{}", l.size / 512)) && f.contains("EFI (FAT-12/16/32)"),
        "{f}"
    );
    let raw = std::fs::read(&iso).unwrap();
    assert_eq!(&raw[512..520], &[0; 8], "no GPT");
}

#[test]
fn deterministic_with_golden_hash() {
    let tree = rich_tree();
    let mut a = Vec::new();
    let mut b = Vec::new();
    write_iso(&tree, &plain_opts(), &mut a).unwrap();
    write_iso(&tree.clone(), &plain_opts(), &mut b).unwrap();
    assert_eq!(a, b);
    let mut small = Vec::new();
    write_iso(&sample_tree(), &plain_opts(), &mut small).unwrap();
    assert_eq!(
        Digest::of(&small).hex(),
        "837e8e896a73253d1ba8453930440be9e45f00dab58f17fb7039b0a9bbc796aa",
        "golden hash changed: the ISO output is not what it was"
    );
}

/// A bootable hybrid image from in-memory stand-ins (not the host's
/// isolinux and systemd-boot, whose bytes change with their packages), so
/// the hash pins the catalog, boot info table, MBR and both GPTs.
#[test]
fn hybrid_golden_hash() {
    let mut isolinux = vec![0x90u8; 4096];
    isolinux[64..68].copy_from_slice(&ISOLINUX_HYBRID_MAGIC);
    let mut esp = FsTree::new();
    esp.insert(Path::new("EFI/BOOT/BOOTX64.EFI"), file(bytes(b"MZ")))
        .unwrap();
    let fat = FatOptions {
        label: "ESP".into(),
        volume_id: 1,
        mtime: 0,
        kind: None,
        size: None,
        hidden_sectors: 0,
    };
    let mut efi = Vec::new();
    write_fat(&esp, &fat, &mut efi).unwrap();
    let mut t = FsTree::new();
    t.insert(Path::new("isolinux/isolinux.bin"), file(bytes(&isolinux)))
        .unwrap();
    t.insert(Path::new("boot/efi.img"), file(bytes(&efi)))
        .unwrap();
    let mut o = boot_opts(true, true);
    o.hybrid.as_mut().unwrap().mbr = (0..432u32).map(|i| i as u8).collect();
    let mut a = Vec::new();
    let l = write_iso(&t, &o, &mut a).unwrap();
    assert_eq!(a.len() as u64, l.size);
    let bios = l.files[Path::new("isolinux/isolinux.bin")];
    let img = &a[bios.lba.offset() as usize..][..4096];
    assert_eq!(
        &img[8..16],
        &[16, 0, 0, 0, bios.lba.0 as u8, 0, 0, 0],
        "bi_pvd, bi_file"
    );
    assert_eq!(
        Digest::of(&a).hex(),
        "10d1a63dd43f414ede9d07493c4a57159b7fb3f8c11396a90a9ecbb7055b3af1",
        "golden hash changed: the hybrid ISO output is not what it was"
    );
}

/// The Type M path table is the Type L one with big-endian numbers.
#[test]
fn path_tables_agree() {
    let mut a = Vec::new();
    write_iso(&rich_tree(), &plain_opts(), &mut a).unwrap();
    let pvd = &a[16 * 2048..17 * 2048];
    let size = u32::from_le_bytes(pvd[132..136].try_into().unwrap()) as usize;
    let l = u32::from_le_bytes(pvd[140..144].try_into().unwrap()) as usize * 2048;
    let m = u32::from_be_bytes(pvd[148..152].try_into().unwrap()) as usize * 2048;
    let (lt, mt) = (&a[l..l + size], &a[m..m + size]);
    let mut i = 0;
    let mut count = 0;
    while i < size {
        let n = lt[i] as usize;
        assert_eq!(lt[i], mt[i]);
        let le = |b: &[u8]| u32::from_le_bytes(b.try_into().unwrap());
        let be = |b: &[u8]| u32::from_be_bytes(b.try_into().unwrap());
        assert_eq!(le(&lt[i + 2..i + 6]), be(&mt[i + 2..i + 6]), "extent");
        assert_eq!(lt[i + 6..i + 8], [mt[i + 7], mt[i + 6]], "parent");
        assert_eq!(lt[i + 8..i + 8 + n], mt[i + 8..i + 8 + n]);
        i += 8 + n + n % 2;
        count += 1;
    }
    let dirs = rich_tree()
        .walk()
        .filter(|(_, n)| n.as_dir().is_some())
        .count();
    assert_eq!(count, dirs);
}

#[test]
fn errors_name_the_problem() {
    let tree = boot_tree();
    let bad_id = IsoOptions {
        volume_id: "lower-case".into(),
        ..plain_opts()
    };
    assert!(matches!(
        layout(&tree, &bad_id),
        Err(IsoError::VolumeId { .. })
    ));
    let long_id = IsoOptions {
        volume_id: "X".repeat(33),
        ..plain_opts()
    };
    assert!(matches!(
        layout(&tree, &long_id),
        Err(IsoError::VolumeId { .. })
    ));
    let mut o = boot_opts(false, false);
    o.bios.as_mut().unwrap().image = "isolinux/missing.bin".into();
    let e = layout(&tree, &o).unwrap_err().to_string();
    assert!(e.contains("missing.bin") && e.contains("not found"), "{e}");
    let mut o = boot_opts(false, false);
    o.bios.as_mut().unwrap().catalog = "README.txt".into();
    let e = layout(&tree, &o).unwrap_err().to_string();
    assert!(e.contains("already exists"), "{e}");
    let o = IsoOptions {
        efi: None,
        ..boot_opts(true, true)
    };
    assert!(matches!(layout(&tree, &o), Err(IsoError::GptWithoutEfi)));
    let mut o = boot_opts(true, false);
    o.hybrid.as_mut().unwrap().mbr.truncate(100);
    assert!(matches!(layout(&tree, &o), Err(IsoError::MbrTooShort(100))));
    let mut big = FsTree::new();
    let huge = Content::Slice {
        file: Arc::new("/nonexistent".into()),
        offset: 0,
        len: 1 << 32,
    };
    big.insert(Path::new("huge"), file(huge)).unwrap();
    let e = layout(&big, &plain_opts()).unwrap_err().to_string();
    assert!(e.contains("\"huge\"") && e.contains("4 GiB"), "{e}");
    // A hybrid image needs a hybrid-capable isolinux.bin.
    let mut t = boot_tree();
    t.insert(
        Path::new("isolinux/isolinux.bin"),
        file(bytes(&[0u8; 4096])),
    )
    .unwrap();
    let e = write_iso(&t, &boot_opts(true, false), &mut std::io::sink())
        .unwrap_err()
        .to_string();
    assert!(e.contains("hybrid signature"), "{e}");
}

#[test]
fn efi_only_catalog_is_hidden() {
    let tree = boot_tree();
    let o = IsoOptions {
        bios: None,
        ..boot_opts(false, false)
    };
    let tmp = tempfile::tempdir().unwrap();
    let iso = tmp.path().join("e.iso");
    let l = write_to(&tree, &o, &iso);
    assert!(l.regions.iter().any(|r| r.name == "boot catalog"));
    let (imgs, report) = el_torito(&iso);
    assert_eq!(imgs.len(), 1, "{report}");
    assert_eq!(imgs[0].0, "UEFI", "{report}");
    assert!(!l.files.contains_key(Path::new("isolinux/boot.cat")));
}
