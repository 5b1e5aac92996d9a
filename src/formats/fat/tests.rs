//! Differential tests against dosfstools (`fsck.fat`) and mtools.

use std::path::Path;
use std::process::Command;

use super::*;
use crate::digest::Digest;
use crate::tree::testutil::{bytes, dir, meta};

fn opts() -> FatOptions {
    FatOptions {
        label: "SMELT EFI".into(),
        volume_id: 0x1234_5678,
        mtime: 1_700_000_000,
        kind: None,
        size: None,
        hidden_sectors: 0,
    }
}

fn file(data: &[u8]) -> Node {
    Node::file(meta(0o644, 0), bytes(data))
}

/// Nested directories, exact 8.3 and long names, an empty file, a file over
/// many clusters and a directory needing several clusters of entries.
fn esp_tree() -> FsTree {
    let mut t = FsTree::new();
    let mut ins = |p: &str, n: Node| t.insert(Path::new(p), n).unwrap();
    ins("EFI/BOOT/BOOTX64.EFI", file(b"MZ not really a PE"));
    ins("loader/loader.conf", file(b"timeout 0\n"));
    ins(
        "loader/entries/smelt.conf",
        file(b"title smelt\nlinux /vmlinuz\n"),
    );
    ins("empty", file(b""));
    let big: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    ins("big.bin", file(&big));
    ins("Mixed Case Name.With.Dots.txt", file(b"mixed"));
    ins("subdir", dir(0o755));
    for i in 0..40 {
        ins(
            &format!("many/a rather long file name number {i:02}.data"),
            file(format!("{i}").as_bytes()),
        );
    }
    t
}

fn write_to(tree: &FsTree, o: &FatOptions, path: &Path) -> FatLayout {
    let mut f = std::fs::File::create(path).unwrap();
    let layout = write_fat(tree, o, &mut f).unwrap();
    assert_eq!(std::fs::metadata(path).unwrap().len(), layout.size);
    layout
}

/// `fsck.fat -n -v` must pass and find the FAT type we meant.
fn fsck(img: &Path, kind: FatType) -> String {
    let out = Command::new("fsck.fat")
        .arg("-n")
        .arg("-v")
        .arg(img)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "fsck.fat failed:\n{text}");
    let bits = kind.bits().to_string();
    assert!(text.contains(&format!("{bits} bit entries")), "{text}");
    text
}

fn mtools(cmd: &str, img: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new(cmd)
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-i")
        .arg(img)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn check_with_tools(kind: Option<FatType>, size: Option<u64>, expect: FatType) {
    let tree = esp_tree();
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("esp.img");
    let layout = write_to(
        &tree,
        &FatOptions {
            kind,
            size,
            ..opts()
        },
        &img,
    );
    if std::env::var_os("SMELT_KEEP_FAT").is_some() {
        std::fs::copy(&img, format!("/tmp/fat-{expect:?}.img")).unwrap();
    }
    assert_eq!(layout.kind, expect);
    let report = fsck(&img, expect);
    assert!(!report.contains("differ"), "{report}");
    let listing = String::from_utf8(mtools("mdir", &img, &["-/", "-a", "::"])).unwrap();
    for name in [
        "BOOTX64  EFI",
        "loader.conf",
        "smelt.conf",
        "Mixed Case Name.With.Dots.txt",
        "big.bin",
    ] {
        assert!(listing.contains(name), "{name} missing from\n{listing}");
    }
    assert!(listing.contains("SMELT EFI"), "label in\n{listing}");
    for (path, ext) in &layout.files {
        let got = mtools("mtype", &img, &[&format!("::/{}", path.display())]);
        let want = crate::tree::testutil::read(&tree, &path.to_string_lossy());
        assert_eq!(got, want, "{path:?}");
        assert_eq!(ext.len, want.len() as u64);
        let raw = std::fs::read(&img).unwrap();
        assert_eq!(
            &raw[ext.offset as usize..][..want.len()],
            &want[..],
            "extent of {path:?}"
        );
    }
    let info = String::from_utf8(mtools("minfo", &img, &["::"])).unwrap();
    assert!(info.contains("media descriptor byte: 0xf8"), "{info}");
}

#[test]
fn fat12_auto_passes_fsck_and_mtools() {
    check_with_tools(None, None, FatType::Fat12);
}

#[test]
fn fat16_fixed_size_passes_fsck_and_mtools() {
    check_with_tools(Some(FatType::Fat16), Some(16 << 20), FatType::Fat16);
}

#[test]
fn fat32_passes_fsck_and_mtools() {
    check_with_tools(Some(FatType::Fat32), None, FatType::Fat32);
}

#[test]
fn fat32_structures() {
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("esp.img");
    let o = FatOptions {
        kind: None,
        size: Some(600 << 20),
        hidden_sectors: 2048,
        ..opts()
    };
    let layout = write_to(&esp_tree(), &o, &img);
    assert_eq!(layout.kind, FatType::Fat32);
    let raw = std::fs::read(&img).unwrap();
    assert_eq!(&raw[0..512], &raw[6 * 512..7 * 512], "backup boot sector");
    assert_eq!(&raw[512..1024], &raw[7 * 512..8 * 512], "backup FSInfo");
    assert_eq!(&raw[512..516], b"RRaA");
    let free = u32::from_le_bytes(raw[512 + 488..512 + 492].try_into().unwrap());
    assert_eq!(free, layout.free_clusters);
    assert_eq!(
        u32::from_le_bytes(raw[28..32].try_into().unwrap()),
        2048,
        "BPB_HiddSec"
    );
    assert_eq!(&raw[82..90], b"FAT32   ");
    fsck(&img, FatType::Fat32);
}

#[test]
fn dotdot_of_first_level_dir_is_cluster_0() {
    let mut t = FsTree::new();
    t.insert(Path::new("a/b/f"), file(b"x")).unwrap();
    let mut out = Vec::new();
    let layout = write_fat(
        &t,
        &FatOptions {
            kind: Some(FatType::Fat32),
            ..opts()
        },
        &mut out,
    )
    .unwrap();
    let g = Geometry::choose(Some(FatType::Fat32), (layout.size / 512) as u32, 0).unwrap();
    // Clusters in walk order: root 2, a 3, b 4, f 5.
    let a = &out[g.cluster_offset(3) as usize..];
    assert_eq!(&a[0..11], b".          ");
    assert_eq!(u16::from_le_bytes([a[26], a[27]]), 3);
    assert_eq!(&a[32..43], b"..         ");
    assert_eq!(
        u16::from_le_bytes([a[58], a[59]]),
        0,
        "`..` of a/ is cluster 0"
    );
    let b = &out[g.cluster_offset(4) as usize..];
    assert_eq!(u16::from_le_bytes([b[58], b[59]]), 3, "`..` of a/b is a/");
}

#[test]
fn deterministic_with_golden_hash() {
    let mut a = Vec::new();
    let mut b = Vec::new();
    write_fat(&esp_tree(), &opts(), &mut a).unwrap();
    write_fat(&esp_tree().clone(), &opts(), &mut b).unwrap();
    assert_eq!(a, b);
    assert_eq!(
        Digest::of(&a).hex(),
        "3d49112f9b8bee16bb6a81e26d1b67cc56f0f5a6a7f54ee6e87f48793a43a5da",
        "golden hash changed: the FAT output is not what it was"
    );
}

#[test]
fn unrepresentable_nodes_are_errors() {
    let mut t = FsTree::new();
    t.insert(
        Path::new("d/link"),
        Node::leaf(meta(0o777, 0), LeafKind::Symlink("x".into())),
    )
    .unwrap();
    let e = write_fat(&t, &opts(), &mut std::io::sink())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("\"d/link\"") && e.contains("not a directory or regular file"),
        "{e}"
    );

    let mut t = FsTree::new();
    t.insert(Path::new("Foo"), file(b"1")).unwrap();
    t.insert(Path::new("foo"), file(b"2")).unwrap();
    let e = write_fat(&t, &opts(), &mut std::io::sink())
        .unwrap_err()
        .to_string();
    assert!(e.contains("only in case"), "{e}");

    let mut t = FsTree::new();
    t.insert(Path::new("a:b"), file(b"1")).unwrap();
    let e = write_fat(&t, &opts(), &mut std::io::sink())
        .unwrap_err()
        .to_string();
    assert!(e.contains("forbids"), "{e}");
}

#[test]
fn size_and_label_errors() {
    let big = FatOptions {
        size: Some(1 << 20),
        ..opts()
    };
    let mut t = FsTree::new();
    t.insert(Path::new("big"), file(&vec![1u8; 2 << 20]))
        .unwrap();
    let e = write_fat(&t, &big, &mut std::io::sink()).unwrap_err();
    assert!(matches!(e, FatError::DoesNotFit { .. }), "{e}");
    let e = layout(
        &t,
        &FatOptions {
            size: Some(1000),
            ..opts()
        },
    )
    .unwrap_err();
    assert!(matches!(e, FatError::BadSize(1000)), "{e}");
    let e = layout(
        &t,
        &FatOptions {
            label: "lower".into(),
            ..opts()
        },
    )
    .unwrap_err();
    assert!(matches!(e, FatError::Label { .. }), "{e}");
    let e = layout(
        &t,
        &FatOptions {
            kind: Some(FatType::Fat32),
            size: Some(8 << 20),
            ..opts()
        },
    )
    .unwrap_err();
    assert!(matches!(e, FatError::NoGeometry { .. }), "{e}");
}

#[test]
fn empty_tree_and_no_label() {
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("e.img");
    let layout = write_to(
        &FsTree::new(),
        &FatOptions {
            label: String::new(),
            ..opts()
        },
        &img,
    );
    assert_eq!(layout.size % 65_536, 0);
    fsck(&img, FatType::Fat12);
}

#[test]
fn big_fat16_root_grows_past_512_entries() {
    let mut t = FsTree::new();
    for i in 0..300 {
        let name = format!("root file with a long name {i:03}.txt");
        t.insert(Path::new(&name), file(b"r")).unwrap();
    }
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("r.img");
    let o = FatOptions {
        kind: Some(FatType::Fat16),
        size: Some(8 << 20),
        ..opts()
    };
    write_to(&t, &o, &img);
    let raw = std::fs::read(&img).unwrap();
    let root_entries = u16::from_le_bytes([raw[17], raw[18]]);
    // 300 names x (3 long + 1 short) + the label.
    assert_eq!(root_entries, 1216, "BPB_RootEntCnt rounded to a sector");
    fsck(&img, FatType::Fat16);
    let listing = String::from_utf8(mtools("mdir", &img, &["-b", "::"])).unwrap();
    assert_eq!(listing.lines().count(), 300, "{listing}");
}

/// The reader gives back every file of what the writer wrote, FAT12 and 16.
#[test]
fn reader_round_trips_the_writer() {
    for (kind, size) in [(FatType::Fat12, None), (FatType::Fat16, Some(16 << 20))] {
        let tree = esp_tree();
        let mut img = Vec::new();
        let o = FatOptions {
            kind: Some(kind),
            size,
            ..opts()
        };
        write_fat(&tree, &o, &mut img).unwrap();
        let vol = read::FatVolume::parse(&img).unwrap();
        assert_eq!(vol.kind, kind);
        assert_eq!(vol.volume_id, Some(0x1234_5678));
        assert_eq!(vol.label.as_ref(), Some(b"SMELT EFI  "));
        let got = vol.files().unwrap();
        assert_eq!(got.root_label.as_ref(), Some(b"SMELT EFI  "));
        let want: Vec<_> = tree
            .walk()
            .filter_map(|(p, n)| match n {
                crate::tree::WalkNode::Node(Node::Leaf(_)) => Some(p),
                _ => None,
            })
            .collect();
        assert_eq!(got.files.keys().cloned().collect::<Vec<_>>(), want);
        for p in &want {
            let data = crate::tree::testutil::read(&tree, &p.to_string_lossy());
            assert_eq!(got.files[p], data, "{p:?}");
        }
    }
}

/// Byte flips in the boot sector and FATs give errors naming the byte.
#[test]
fn reader_byte_flips_name_the_offset() {
    let mut t = FsTree::new();
    t.insert(Path::new("user-data"), file(&[b'x'; 3000]))
        .unwrap();
    let mut img = Vec::new();
    write_fat(&t, &opts(), &mut img).unwrap();
    read::FatVolume::parse(&img).unwrap().files().unwrap();
    let err = |img: &[u8]| match read::FatVolume::parse(img).and_then(|v| v.files()) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    };
    let flip = |at: usize, v: u8| {
        let mut b = img.clone();
        b[at] = v;
        b
    };
    assert_eq!(
        err(&flip(510, 0)),
        "bad FAT volume at byte 510: boot signature [00, aa], not 55 aa"
    );
    assert!(err(&flip(11, 1)).starts_with("bad FAT volume at byte 11: "));
    assert!(err(&flip(13, 3)).starts_with("bad FAT volume at byte 13: "));
    assert!(err(&flip(16, 0)).starts_with("bad FAT volume at byte 16: "));
    // The first FAT: entry 2 (user-data's first cluster) marked free in
    // FAT 1 only: the copies differ; in both: a chain through a free entry.
    let fat1 = 512;
    let fat_bytes = u16::from_le_bytes([img[22], img[23]]) as usize * 512;
    let e = err(&flip(fat1 + 3, 0));
    assert_eq!(
        e,
        format!(
            "bad FAT volume at byte {}: FAT copy 1 differs from the first FAT",
            fat1 + fat_bytes + 3
        )
    );
    let mut b = flip(fat1 + 3, 0);
    b[fat1 + fat_bytes + 3] = 0;
    assert!(
        err(&b).contains("marked free inside a chain"),
        "{}",
        err(&b)
    );
    assert!(matches!(
        read::FatVolume::parse(&img[..300]),
        Err(read::FatReadError::Truncated { offset: 510, .. })
    ));
}

/// Random byte changes anywhere in the metadata never make the reader
/// panic or loop: it returns files or an error (a stand-in for a fuzz
/// target; the slot a machine boots from is untrusted input to the init).
#[test]
fn reader_survives_random_damage() {
    let mut t = FsTree::new();
    t.insert(Path::new("user-data"), file(&[b'x'; 3000]))
        .unwrap();
    t.insert(Path::new("a/b/c/long name.txt"), file(b"nested"))
        .unwrap();
    let mut img = Vec::new();
    write_fat(
        &t,
        &FatOptions {
            size: Some(1 << 20),
            ..opts()
        },
        &mut img,
    )
    .unwrap();
    let meta_end = 512 * 48; // boot sector, both FATs, the root directory
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut ok, mut err) = (0, 0);
    for _ in 0..3000 {
        let mut b = img.clone();
        for _ in 0..1 + next() % 4 {
            let at = (next() % meta_end) as usize;
            b[at] = next() as u8;
        }
        match read::FatVolume::parse(&b).and_then(|v| v.files()) {
            Ok(_) => ok += 1,
            Err(_) => err += 1,
        }
    }
    assert!(ok > 0 && err > 0, "ok {ok}, err {err}");
}
