//! The GPT writer and reader against sgdisk and sfdisk, byte flips, and
//! a golden hash.

use std::io::{Cursor, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::Command;

use super::*;
use crate::digest::Digest;
use crate::tree::testutil::run;

const MIB: u64 = 1 << 20;

fn sample() -> GptDisk {
    let seed = b"sha256:test-image";
    GptDisk {
        disk_guid: Guid::derive(seed, "disk"),
        size_bytes: 64 * MIB,
        partitions: vec![
            Partition {
                type_guid: Guid::EFI_SYSTEM,
                guid: Guid::derive(seed, "esp"),
                first_lba: Lba(2048),
                last_lba: Lba(2048 + 16 * 2048 - 1),
                attributes: attr::REQUIRED | attr::LEGACY_BIOS_BOOTABLE,
                name: "EFI System".into(),
            },
            Partition {
                type_guid: Guid::LINUX_ROOT_X86_64,
                guid: Guid::derive(seed, "root"),
                first_lba: Lba(34816),
                last_lba: Lba(100_000),
                attributes: attr::READ_ONLY | attr::NO_AUTO,
                name: "root-x86-64 ünïcode".into(),
            },
            Partition {
                type_guid: Guid::BIOS_BOOT,
                guid: Guid::derive(seed, "bios"),
                first_lba: Lba(34),
                last_lba: Lba(2047),
                attributes: 0,
                name: "x".repeat(NAME_UNITS),
            },
        ],
    }
}

/// A sparse disk file: primary at 0, backup at the end.
fn write_disk(disk: &GptDisk, mbr: &MbrOptions<'_>, path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    f.set_len(disk.size_bytes).unwrap();
    f.write_all(&disk.primary_with(mbr).unwrap()).unwrap();
    f.seek(SeekFrom::Start(disk.backup_offset())).unwrap();
    f.write_all(&disk.backup().unwrap()).unwrap();
}

fn image(disk: &GptDisk) -> Vec<u8> {
    let mut img = vec![0u8; disk.size_bytes as usize];
    let primary = disk.primary(None).unwrap();
    img[..primary.len()].copy_from_slice(&primary);
    let off = disk.backup_offset() as usize;
    img[off..].copy_from_slice(&disk.backup().unwrap());
    img
}

#[test]
fn crc32_check_value() {
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
}

#[test]
fn sgdisk_and_sfdisk_read_what_we_wrote() {
    let disk = sample();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("disk.img");
    write_disk(&disk, &MbrOptions::default(), &path);
    let verify = run(Command::new("sgdisk").arg("-v").arg(&path));
    assert!(verify.contains("No problems found"), "{verify}");
    let print = run(Command::new("sgdisk").arg("-p").arg(&path));
    assert!(print.contains(&format!(
        "Disk identifier (GUID): {}",
        upper(disk.disk_guid)
    )));
    assert!(print.contains("First usable sector is 34, last usable sector is 131038"));
    let json = run(Command::new("sfdisk").arg("-J").arg(&path));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let t = &v["partitiontable"];
    assert_eq!(t["label"], "gpt");
    assert_eq!(t["id"], upper(disk.disk_guid));
    assert_eq!(
        (t["firstlba"].as_u64(), t["lastlba"].as_u64()),
        (Some(34), Some(131038))
    );
    let parts = t["partitions"].as_array().unwrap();
    let attrs = ["RequiredPartition LegacyBIOSBootable", "GUID:60,63", ""];
    for ((p, j), attrs) in disk.partitions.iter().zip(parts).zip(attrs) {
        assert_eq!(j["start"].as_u64(), Some(p.first_lba.0));
        assert_eq!(j["size"].as_u64(), Some(p.sectors()));
        assert_eq!(j["type"], upper(p.type_guid));
        assert_eq!(j["uuid"], upper(p.guid));
        assert_eq!(j["name"].as_str().unwrap_or(""), p.name);
        assert_eq!(j["attrs"].as_str().unwrap_or(""), attrs);
    }
    let info = run(Command::new("sgdisk").arg("-i2").arg(&path));
    assert!(info.contains("Attribute flags: 9000000000000000"), "{info}");
    assert!(
        info.contains("Partition name: 'root-x86-64 ünïcode'"),
        "{info}"
    );
}

fn upper(g: Guid) -> String {
    g.to_string().to_uppercase()
}

#[test]
fn read_round_trips_and_reads_sgdisk_tables() {
    let disk = sample();
    assert_eq!(read(&mut Cursor::new(image(&disk))).unwrap(), disk);
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("sg.img");
    std::fs::File::create(&path)
        .unwrap()
        .set_len(8 * MIB)
        .unwrap();
    run(Command::new("sgdisk")
        .args([
            "-U",
            "11111111-2222-3333-4444-555555555555",
            "-n1:2048:+1M",
            "-t1:ef00",
        ])
        .args([
            "-u1:aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
            "-c1:ESP",
            "-A1:set:2",
        ])
        .args(["-n2:0:0", "-t2:8304", "-c2:root"])
        .arg(&path));
    let theirs = read(&mut std::fs::File::open(&path).unwrap()).unwrap();
    assert_eq!(
        theirs.disk_guid.to_string(),
        "11111111-2222-3333-4444-555555555555"
    );
    assert_eq!(theirs.size_bytes, 8 * MIB);
    let esp = &theirs.partitions[0];
    assert_eq!(
        (esp.type_guid, esp.name.as_str()),
        (Guid::EFI_SYSTEM, "ESP")
    );
    assert_eq!(esp.guid.to_string(), "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee");
    assert_eq!(
        (esp.first_lba, esp.last_lba, esp.attributes),
        (Lba(2048), Lba(4095), 4)
    );
    let root = &theirs.partitions[1];
    assert_eq!(
        (root.type_guid, root.first_lba, root.last_lba),
        (Guid::LINUX_ROOT_X86_64, Lba(4096), Lba(16350))
    );
}

#[test]
fn corrupt_header_is_a_crc_error_naming_the_offset() {
    let disk = sample();
    let mut img = image(&disk);
    img[512 + 60] ^= 1; // inside DiskGUID
    let err = read(&mut Cursor::new(&img)).unwrap_err();
    assert!(
        matches!(
            err,
            GptError::HeaderCrc {
                which: "primary",
                offset: 512,
                field: 528,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("byte 528"), "{err}");
    let mut img = image(&disk);
    img[1024 + 130] ^= 1; // entry 1's type GUID
    let err = read(&mut Cursor::new(&img)).unwrap_err();
    assert!(
        matches!(
            err,
            GptError::EntriesCrc {
                which: "primary",
                offset: 1024,
                ..
            }
        ),
        "{err}"
    );
    let mut img = image(&disk);
    let last = img.len() - 512;
    img[last + 40] ^= 1;
    let err = read(&mut Cursor::new(&img)).unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("GPT backup header at byte {last}")),
        "{err}"
    );
    let mut img = image(&disk);
    img[510] = 0;
    assert!(
        read(&mut Cursor::new(&img))
            .unwrap_err()
            .to_string()
            .contains("byte 510")
    );
    let err = read(&mut Cursor::new(&img[..4096])).unwrap_err();
    assert!(matches!(err, GptError::TooSmall { sectors: 8 }), "{err}");
}

#[test]
fn no_panic_on_truncated_or_flipped_tables() {
    let img = image(&sample());
    let head = &img[..34 * 512];
    for len in [0, 511, 512, 1023, 1024, 17407, 34 * 512] {
        let mut short = head[..len].to_vec();
        short.resize(100 * 512, 0);
        assert!(read(&mut Cursor::new(&short)).is_err(), "{len}");
    }
    let tiny = GptDisk {
        size_bytes: 128 * 512,
        partitions: vec![Partition {
            first_lba: Lba(34),
            last_lba: Lba(94),
            ..sample().partitions[0].clone()
        }],
        ..sample()
    };
    let small = image(&tiny);
    assert_eq!(read(&mut Cursor::new(&small)).unwrap(), tiny);
    // Every byte of the MBR and both headers, a sample of the arrays.
    let headers = (0..1024).chain(small.len() - 512..small.len());
    for at in headers.chain((1024..small.len()).step_by(61)) {
        let mut b = small.clone();
        b[at] ^= 0x41;
        let _ = read(&mut Cursor::new(&b));
    }
}

#[test]
fn validate_rejects_bad_tables() {
    let check = |edit: &dyn Fn(&mut GptDisk), want: &str| {
        let mut d = sample();
        edit(&mut d);
        let err = d.validate().unwrap_err().to_string();
        assert!(err.contains(want), "{err} lacks {want}");
        assert!(d.primary(None).is_err() && d.backup().is_err());
    };
    check(&|d| d.size_bytes += 1, "not a whole number");
    check(&|d| d.size_bytes = 512 * 60, "too small");
    check(
        &|d| d.partitions[1].first_lba = Lba(30000),
        "overlaps partition 0",
    );
    check(
        &|d| d.partitions[2].first_lba = Lba(33),
        "outside the usable 34..=131038",
    );
    check(
        &|d| d.partitions[1].last_lba = Lba(131039),
        "outside the usable",
    );
    check(&|d| d.partitions[1].last_lba = Lba(10), "before it starts");
    check(&|d| d.partitions[0].name = "y".repeat(37), "longer than 36");
    check(&|d| d.partitions[0].type_guid = Guid::NIL, "nil");
    check(
        &|d| d.partitions = vec![d.partitions[2].clone(); 129],
        "at most 128",
    );
    let long = [0u8; 441];
    assert!(matches!(
        sample().primary(Some(&long)),
        Err(GptError::BootCodeTooLong(441))
    ));
}

#[test]
fn layout_and_protective_mbr() {
    let disk = sample();
    let code = [0xEBu8, 0x3C, 0x90];
    let p = disk.primary(Some(&code)).unwrap();
    assert_eq!(p.len(), 34 * 512);
    assert_eq!(disk.backup().unwrap().len(), 33 * 512);
    assert_eq!(disk.backup_offset(), disk.size_bytes - 33 * 512);
    assert_eq!(&p[..3], &code);
    assert_eq!(&p[440..444], &disk.disk_guid.0[..4]);
    // 0xEE from LBA 1 over the whole disk; CHS 0x000200 start (§5.2.3).
    let ee = &p[446..462];
    assert_eq!(&ee[..5], &[0, 0, 2, 0, 0xEE]);
    assert_eq!(ee[5..8], Geometry::Lba255x63.chs(disk.sectors() - 1));
    assert_eq!(le32(&ee[8..12]), 1);
    assert_eq!(u64::from(le32(&ee[12..16])), disk.sectors() - 1);
    assert!(p[462..510].iter().all(|&b| b == 0));
    assert_eq!(&p[510..512], &[0x55, 0xAA]);
    assert_eq!(&p[512..520], b"EFI PART");
}

#[test]
fn hybrid_mbr_entries_and_active_flag() {
    let disk = sample();
    let mbr = MbrOptions {
        hybrid: vec![MbrPartition {
            bootable: true,
            os_type: MBR_TYPE_EFI,
            first_lba: Lba(2048),
            last_lba: Lba(34815),
        }],
        ..MbrOptions::default()
    };
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("hybrid.img");
    write_disk(&disk, &mbr, &path);
    let p = std::fs::read(&path).unwrap();
    let ee = MbrRecord {
        bootable: false,
        os_type: 0xEE,
        first_lba: Lba(1),
        sectors: 2047,
        chs: true,
    };
    let want = Mbr {
        records: vec![ee],
        ..Mbr::default()
    }
    .encode()
    .unwrap();
    assert_eq!(&p[446..462], &want[446..462]);
    assert_eq!(p[462], 0x80);
    assert_eq!(p[466], 0xEF);
    assert_eq!((le32(&p[470..474]), le32(&p[474..478])), (2048, 32768));
    let verify = run(Command::new("sgdisk").arg("-v").arg(&path));
    assert!(verify.contains("No problems found"), "{verify}");
    // util-linux reads the MBR view of a hybrid disk with -t dos.
    let dos = run(Command::new("sfdisk")
        .args(["-J", "--label-nested", "dos"])
        .arg(&path));
    let v: serde_json::Value = serde_json::from_str(&dos).unwrap();
    let parts = &v["partitiontable"]["partitions"];
    assert_eq!(parts[1]["type"], "ef");
    assert_eq!(parts[1]["bootable"], true);
    assert_eq!(
        read(&mut std::fs::File::open(&path).unwrap()).unwrap(),
        disk
    );
    let active = MbrOptions {
        protective_bootable: true,
        ..MbrOptions::default()
    };
    assert_eq!(disk.primary_with(&active).unwrap()[446], 0x80);
    let overlapping = MbrOptions {
        hybrid: vec![mbr.hybrid[0].clone(), mbr.hybrid[0].clone()],
        ..MbrOptions::default()
    };
    let err = disk.primary_with(&overlapping).unwrap_err();
    assert!(err.to_string().contains("overlaps hybrid entry 0"), "{err}");
}

#[test]
fn output_is_deterministic() {
    let a = image(&sample());
    assert_eq!(a, image(&sample()));
    assert_eq!(
        Digest::of(&a).to_string(),
        "sha256:00c2e6b3d58e0ba1a644ae535e98acf2d621e358e71b9a7fe947056afb92b8c1"
    );
}
