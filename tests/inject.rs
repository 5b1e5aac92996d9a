//! `smelt inject` on synthetic artifacts (a sparse disk with a slot index at
//! 24576 and a pristine slot built by smelt's own functions; a qcow2 of it;
//! a config initrd), checked with independent tools: fsck.fat, mtools,
//! blkid, qemu-img, cpio. Plus an inject killed at random points that must
//! never leave a half-valid slot.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use smelt::digest::Digest;
use smelt::formats::qcow2::{Qcow2Options, write_qcow2_with};
use smelt::slots::index::{INDEX_OFFSET, MIB, SlotEntry, SlotIndex};
use smelt::slots::nocloud::{self, SlotState};
use smelt::slots::{Config, initrd};

const SLOT_AT: u64 = 32 * MIB;

fn entry(slot_len: u64) -> SlotEntry {
    SlotEntry::nocloud(SLOT_AT, slot_len, 0xC1DA_7A01, 1_700_000_000)
}

/// A sparse disk of `len` bytes: noise at the start, the index, the
/// pristine slot at 32 MiB with marker bytes right before and after it,
/// and a tail.
fn make_disk(path: &Path, len: u64, slot_len: u64) {
    let e = entry(slot_len);
    let f = std::fs::File::create(path).unwrap();
    f.set_len(len).unwrap();
    use std::os::unix::fs::FileExt;
    let noise: Vec<u8> = (0..20_000u32).map(|i| (i * 31 % 251) as u8).collect();
    f.write_all_at(&noise, 0).unwrap();
    let index = SlotIndex {
        entries: vec![e.clone()],
    };
    f.write_all_at(&index.to_bytes().unwrap(), INDEX_OFFSET)
        .unwrap();
    f.write_all_at(b"before", SLOT_AT - 6).unwrap();
    let slot = nocloud::pristine(slot_len, e.volume_id, e.mtime).unwrap();
    f.write_all_at(&slot, SLOT_AT).unwrap();
    f.write_all_at(b"after", SLOT_AT + slot_len).unwrap();
    f.write_all_at(b"the end", len - 7).unwrap();
}

/// The qcow2 of `raw` with the index and slot kept allocated.
fn make_qcow2(raw: &Path, out: &Path, slot_len: u64) {
    let len = std::fs::metadata(raw).unwrap().len();
    let opts = Qcow2Options {
        keep_allocated: vec![
            INDEX_OFFSET..INDEX_OFFSET + 512,
            SLOT_AT..SLOT_AT + slot_len,
        ],
    };
    let mut r = std::fs::File::open(raw).unwrap();
    let mut w = std::fs::File::create(out).unwrap();
    write_qcow2_with(&mut r, len, &opts, &mut w).unwrap();
}

fn read_range(path: &Path, offset: u64, len: u64) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; len as usize];
    std::fs::File::open(path)
        .unwrap()
        .read_exact_at(&mut buf, offset)
        .unwrap();
    buf
}

/// sha256 of the bytes before and after the slot.
fn outside_slot(path: &Path, slot_len: u64) -> (Digest, Digest) {
    let len = std::fs::metadata(path).unwrap().len();
    let before = read_range(path, 0, SLOT_AT);
    let after = read_range(path, SLOT_AT + slot_len, len - SLOT_AT - slot_len);
    (Digest::of(&before), Digest::of(&after))
}

fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&p, data).unwrap();
    p
}

const USER_DATA: &str = "#cloud-config\nhostname: injected\nruncmd:\n  - echo hi\n";
const META_DATA: &str = "instance-id: i-0001\nlocal-hostname: injected\n";
const NET: &str = "version: 2\nethernets:\n  eth0:\n    dhcp4: true\n";

/// `smelt inject ARTIFACT` with the sample config, plus `extra` args.
fn inject_sample(artifact: &Path, src: &Path, extra: &[&str]) -> Command {
    let mut c = smelt();
    c.arg("inject")
        .arg(artifact)
        .arg("--user-data")
        .arg(write(src, "u", USER_DATA.as_bytes()))
        .arg("--meta-data")
        .arg(write(src, "m", META_DATA.as_bytes()))
        .arg("--network-config")
        .arg(write(src, "n", NET.as_bytes()))
        .arg("--file")
        .arg(format!(
            "scripts/setup.sh={}",
            write(src, "s", b"#!/bin/sh\necho setup\n").display()
        ))
        .args(extra);
    c
}

fn mtools(cmd: &str, img: &Path, args: &[&str]) -> String {
    let out = run(Command::new(cmd)
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-i")
        .arg(img)
        .args(args));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The slot bytes as a file, checked by fsck.fat, blkid and mtools.
fn check_slot_with_tools(slot: &[u8], dir: &Path) {
    let img = write(dir, "slot.img", slot);
    let fsck = run(Command::new("fsck.fat").arg("-n").arg(&img));
    let text = String::from_utf8_lossy(&fsck.stdout);
    assert!(!text.contains("differ"), "{text}");
    let blkid = run(Command::new("blkid").arg("-p").arg(&img));
    let blkid = String::from_utf8_lossy(&blkid.stdout);
    assert!(blkid.contains("LABEL=\"CIDATA\""), "{blkid}");
    assert!(blkid.contains("TYPE=\"vfat\""), "{blkid}");
    assert_eq!(mtools("mtype", &img, &["::/user-data"]), USER_DATA);
    assert_eq!(mtools("mtype", &img, &["::/meta-data"]), META_DATA);
    assert_eq!(mtools("mtype", &img, &["::/network-config"]), NET);
    assert_eq!(
        mtools("mtype", &img, &["::/scripts/setup.sh"]),
        "#!/bin/sh\necho setup\n"
    );
    let label = mtools("mlabel", &img, &["-s", "::"]);
    assert!(label.contains("CIDATA"), "{label}");
}

#[test]
fn raw_inject_show_clear_with_tools() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = tmp.path().join("disk.raw");
    make_disk(&disk, 64 * MIB, 4 * MIB);
    let pristine = sha256sum(&disk);
    let outside = outside_slot(&disk, 4 * MIB);
    let show = run(smelt().arg("inject").arg(&disk).arg("--show"));
    let show = String::from_utf8_lossy(&show.stdout);
    assert!(show.contains("state: pristine"), "{show}");

    run(&mut inject_sample(&disk, tmp.path(), &[]));
    assert_eq!(
        outside_slot(&disk, 4 * MIB),
        outside,
        "bytes outside the slot"
    );
    check_slot_with_tools(&read_range(&disk, SLOT_AT, 4 * MIB), tmp.path());
    // blkid on the whole disk at the slot's offset too.
    let blkid = run(Command::new("blkid")
        .args(["-p", "-O", &SLOT_AT.to_string()])
        .arg(&disk));
    let blkid = String::from_utf8_lossy(&blkid.stdout);
    assert!(
        blkid.contains("LABEL=\"CIDATA\"") && blkid.contains("TYPE=\"vfat\""),
        "{blkid}"
    );
    let show = run(smelt().arg("inject").arg(&disk).arg("--show"));
    let show = String::from_utf8_lossy(&show.stdout);
    assert!(show.contains("hostname: injected"), "{show}");
    assert!(
        show.contains("==> scripts/setup.sh (21 bytes) <=="),
        "{show}"
    );
    let json = run(smelt().args(["--json", "inject"]).arg(&disk).arg("--show"));
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json["state"], "config", "{json}");
    assert_eq!(json["files"]["user-data"], USER_DATA, "{json}");
    assert_eq!(json["slot"]["offset"], SLOT_AT, "{json}");

    run(smelt().arg("inject").arg(&disk).arg("--clear"));
    assert_eq!(
        sha256sum(&disk),
        pristine,
        "--clear restores the build's bytes"
    );
}

#[test]
fn errors_leave_the_artifact_byte_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = tmp.path().join("disk.raw");
    make_disk(&disk, 64 * MIB, 4 * MIB);
    run(&mut inject_sample(&disk, tmp.path(), &[]));
    let before = sha256sum(&disk);
    let big = write(tmp.path(), "big", &vec![1u8; (5 * MIB) as usize]);
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--file".into(), format!("big.bin={}", big.display())],
            "bytes larger than the 4194304-byte slot; build with `slots: {size: ",
        ),
        (
            vec![
                "--user-data".into(),
                write(tmp.path(), "u1", b"hostname: x\n")
                    .display()
                    .to_string(),
            ],
            "user-data does not start with \"#cloud-config\"",
        ),
        (
            vec![
                "--user-data".into(),
                write(tmp.path(), "u2", b"#!/bin/sh\necho\n")
                    .display()
                    .to_string(),
            ],
            "user-data is a shell script",
        ),
        (
            vec![
                "--user-data".into(),
                write(
                    tmp.path(),
                    "u3",
                    b"#cloud-config\nusers:\n  - name: a\n   shell: [\n",
                )
                .display()
                .to_string(),
            ],
            "user-data:4:",
        ),
        (
            vec!["--file".into(), format!("../escape={}", big.display())],
            "must be a relative path",
        ),
    ];
    for (args, want) in cases {
        let err = run_fail(smelt().arg("inject").arg(&disk).args(&args));
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(sha256sum(&disk), before, "{args:?} changed the artifact");
    }
    // Artifacts smelt did not write.
    let foreign = tmp.path().join("foreign.raw");
    std::fs::File::create(&foreign)
        .unwrap()
        .set_len(64 * MIB)
        .unwrap();
    let foreign_sum = sha256sum(&foreign);
    let err = run_fail(smelt().arg("inject").arg(&foreign).arg("--clear"));
    assert!(err.contains("not an artifact smelt wrote"), "{err}");
    assert!(err.contains("not \"SMELTSLT\""), "{err}");
    assert_eq!(sha256sum(&foreign), foreign_sum);
    // A damaged index: the error names the byte.
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(&disk).unwrap();
    f.write_all_at(&[9], INDEX_OFFSET + 8).unwrap();
    drop(f);
    let damaged = sha256sum(&disk);
    let err = run_fail(smelt().arg("inject").arg(&disk).arg("--clear"));
    assert!(err.contains("slot index byte 8: version 9"), "{err}");
    assert_eq!(sha256sum(&disk), damaged);
    let short = write(tmp.path(), "short", b"tiny");
    let err = run_fail(smelt().arg("inject").arg(&short).arg("--show"));
    assert!(err.contains("not an artifact smelt wrote"), "{err}");
    let err = run_fail(smelt().arg("inject").arg(&short));
    assert!(err.contains("nothing to inject"), "{err}");
}

#[test]
fn qcow2_rewritten_in_place_without_allocating() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("disk.raw");
    let qcow = tmp.path().join("disk.qcow2");
    make_disk(&raw, 64 * MIB, 4 * MIB);
    make_qcow2(&raw, &qcow, 4 * MIB);
    let pristine = sha256sum(&qcow);
    let size = std::fs::metadata(&qcow).unwrap().len();

    run(&mut inject_sample(&qcow, tmp.path(), &[]));
    run(&mut inject_sample(&raw, tmp.path(), &[]));
    assert_eq!(
        std::fs::metadata(&qcow).unwrap().len(),
        size,
        "nothing allocated"
    );
    let check = run(Command::new("qemu-img").arg("check").arg(&qcow));
    assert!(String::from_utf8_lossy(&check.stdout).contains("No errors"));
    let back = tmp.path().join("back.raw");
    run(Command::new("qemu-img")
        .args(["convert", "-O", "raw"])
        .arg(&qcow)
        .arg(&back));
    assert_eq!(
        sha256sum(&back),
        sha256sum(&raw),
        "qcow2 guest == injected raw"
    );
    let show = run(smelt().arg("inject").arg(&qcow).arg("--show"));
    assert!(String::from_utf8_lossy(&show.stdout).contains("artifact: qcow2 image"));

    run(smelt().arg("inject").arg(&qcow).arg("--clear"));
    assert_eq!(sha256sum(&qcow), pristine);
    // An internal snapshot shares every cluster: refused, unchanged.
    run(Command::new("qemu-img")
        .args(["snapshot", "-c", "snap"])
        .arg(&qcow));
    let snap = sha256sum(&qcow);
    let err = run_fail(&mut inject_sample(&qcow, tmp.path(), &[]));
    assert!(err.contains("cluster is shared"), "{err}");
    assert_eq!(sha256sum(&qcow), snap);
    // A qcow2 whose slot was not kept allocated is refused, unchanged.
    let plain = tmp.path().join("plain.qcow2");
    run(Command::new("qemu-img")
        .args(["convert", "-O", "qcow2"])
        .arg(&back)
        .arg(&plain));
    run(smelt().arg("inject").arg(&raw).arg("--clear"));
    run(Command::new("qemu-img")
        .args(["convert", "-O", "qcow2"])
        .arg(&raw)
        .arg(&plain));
    let sum = sha256sum(&plain);
    let err = run_fail(&mut inject_sample(&plain, tmp.path(), &[]));
    assert!(err.contains("not allocated"), "{err}");
    assert_eq!(sha256sum(&plain), sum);
}

#[test]
fn output_copy_and_stream_match_in_place() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = tmp.path().join("disk.raw");
    make_disk(&disk, 64 * MIB, 4 * MIB);
    let original = sha256sum(&disk);
    let copy = tmp.path().join("copy.raw");
    run(&mut inject_sample(
        &disk,
        tmp.path(),
        &["-o", copy.to_str().unwrap()],
    ));
    assert_eq!(sha256sum(&disk), original, "-o leaves the input alone");
    let streamed = tmp.path().join("streamed.raw");
    let out = std::fs::File::create(&streamed).unwrap();
    let status = inject_sample(&disk, tmp.path(), &["-o", "-"])
        .stdout(out)
        .status()
        .unwrap();
    assert!(status.success());
    run(&mut inject_sample(&disk, tmp.path(), &[]));
    assert_eq!(sha256sum(&copy), sha256sum(&disk));
    assert_eq!(sha256sum(&streamed), sha256sum(&disk));
    // qcow2 streamed: the same guest bytes.
    let qcow = tmp.path().join("d.qcow2");
    make_disk(&disk, 64 * MIB, 4 * MIB);
    make_qcow2(&disk, &qcow, 4 * MIB);
    let qs = tmp.path().join("s.qcow2");
    let status = inject_sample(&qcow, tmp.path(), &["-o", "-"])
        .stdout(std::fs::File::create(&qs).unwrap())
        .status()
        .unwrap();
    assert!(status.success());
    run(&mut inject_sample(&qcow, tmp.path(), &[]));
    assert_eq!(sha256sum(&qs), sha256sum(&qcow));
    // A terminal is refused (script(1) gives the command a pty).
    let cmd = format!(
        "{} inject {} --clear -o -",
        env!("CARGO_BIN_EXE_smelt"),
        disk.display()
    );
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("refusing to write a binary image to a terminal"),
        "{text}"
    );
}

#[test]
fn config_initrd_inject_and_clear() {
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("x-config.img");
    std::fs::write(&img, initrd::pristine(1_700_000_000).unwrap()).unwrap();
    let pristine = sha256sum(&img);
    run(&mut inject_sample(&img, tmp.path(), &[]));
    let listing = sh(&format!("cpio -it --quiet < {}", img.display()));
    assert!(listing.contains("smelt/nocloud/user-data"), "{listing}");
    assert!(
        listing.contains("smelt/nocloud/scripts/setup.sh"),
        "{listing}"
    );
    let got = sh(&format!(
        "cpio -i --quiet --to-stdout smelt/nocloud/user-data < {}",
        img.display()
    ));
    assert_eq!(got, USER_DATA);
    let show = run(smelt().arg("inject").arg(&img).arg("--show"));
    assert!(String::from_utf8_lossy(&show.stdout).contains("hostname: injected"));
    run(smelt().arg("inject").arg(&img).arg("--clear"));
    assert_eq!(sha256sum(&img), pristine);
    let entries = smelt::formats::cpio::read_newc(&std::fs::read(&img).unwrap()).unwrap();
    assert!(entries.iter().all(|e| e.mtime == 1_700_000_000));
}

/// An ISO 9660 image (xorriso) holding the slot as the contiguous file
/// CIDATA.IMG, with the index in its system area: inject changes only that
/// file's bytes, and the file xorriso extracts is the injected FAT.
#[test]
fn iso_file_slot() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let slot = nocloud::pristine(MIB, 0x150_0001, 1_700_000_000).unwrap();
    write(&root, "CIDATA.IMG", &slot);
    write(&root, "readme.txt", b"an ISO with a config slot\n");
    let iso = tmp.path().join("x.iso");
    run(Command::new("xorriso")
        .args(["-as", "mkisofs", "-quiet", "-V", "SMELTTEST", "-o"])
        .arg(&iso)
        .arg(&root));
    let bytes = std::fs::read(&iso).unwrap();
    let at = (0..bytes.len() - slot.len())
        .step_by(2048)
        .find(|&o| bytes[o..o + slot.len()] == slot[..])
        .expect("CIDATA.IMG stored contiguously") as u64;
    let index = SlotIndex {
        entries: vec![SlotEntry::nocloud(at, MIB, 0x150_0001, 1_700_000_000)],
    };
    use std::os::unix::fs::FileExt;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&iso)
        .unwrap()
        .write_all_at(&index.to_bytes().unwrap(), INDEX_OFFSET)
        .unwrap();
    let built = sha256sum(&iso);
    let before = Digest::of(&read_range(&iso, 0, at));
    run(&mut inject_sample(&iso, tmp.path(), &[]));
    assert_eq!(Digest::of(&read_range(&iso, 0, at)), before);
    let len = bytes.len() as u64;
    assert_eq!(
        Digest::of(&read_range(&iso, at + MIB, len - at - MIB)),
        Digest::of(&bytes[(at + MIB) as usize..])
    );
    let out = tmp.path().join("extracted.img");
    run(Command::new("xorriso")
        .args(["-osirrox", "on", "-indev"])
        .arg(&iso)
        .args(["-extract", "/CIDATA.IMG"])
        .arg(&out));
    check_slot_with_tools(&std::fs::read(&out).unwrap(), tmp.path());
    run(smelt().arg("inject").arg(&iso).arg("--clear"));
    assert_eq!(sha256sum(&iso), built);
}

/// xorshift64: reproducible kill points.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn inject_killed_at_random_points_is_never_half_valid() {
    const SLOT: u64 = 64 * MIB;
    let tmp = tempfile::tempdir().unwrap();
    let disk = tmp.path().join("disk.raw");
    make_disk(&disk, 128 * MIB, SLOT);
    let outside = outside_slot(&disk, SLOT);
    // Two seeds, each with a 40 MiB file, so a write takes a while.
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let mut configs = Vec::new();
    let mut args = Vec::new();
    for name in ["a", "b"] {
        let big: Vec<u8> = (0..40 * MIB / 8)
            .flat_map(|_| rng.next().to_le_bytes())
            .collect();
        let user = format!("#cloud-config\nhostname: {name}\n");
        let u = write(tmp.path(), &format!("{name}.user"), user.as_bytes());
        let b = write(tmp.path(), &format!("{name}.big"), &big);
        let mut c = Config {
            user_data: user.into_bytes(),
            ..Config::default()
        };
        c.files.insert("big.bin".into(), big);
        configs.push(c);
        args.push(vec![
            "--user-data".to_string(),
            u.display().to_string(),
            "--file".into(),
            format!("big.bin={}", b.display()),
        ]);
    }
    let state = || nocloud::slot_state(&read_range(&disk, SLOT_AT, SLOT));
    // One full inject to time it.
    let t0 = Instant::now();
    run(smelt().arg("inject").arg(&disk).args(&args[0]));
    let full = t0.elapsed();
    assert_eq!(state(), SlotState::Valid(configs[0].clone()));
    let mut known = Some(configs[0].clone());
    let mut seen = std::collections::BTreeMap::<&str, u32>::new();
    for i in 0..30 {
        let which = (i + 1) % 2;
        let delay = Duration::from_micros(rng.next() % (full.as_micros() as u64 * 6 / 5 + 1));
        let mut child = smelt()
            .arg("inject")
            .arg(&disk)
            .args(&args[which])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        let s = state();
        let what = match &s {
            SlotState::Unset => "unset",
            SlotState::Valid(c) if *c == configs[which] => "new",
            SlotState::Valid(c) if Some(c) == known.as_ref() => "old",
            other => panic!(
                "iteration {i} (killed after {delay:?}, {status}): slot is {}",
                match other {
                    SlotState::Invalid(why) => format!("INVALID: {why}"),
                    SlotState::Pristine => "pristine".into(),
                    _ => "a config that is neither old nor new".into(),
                }
            ),
        };
        *seen.entry(what).or_default() += 1;
        known = match what {
            "unset" => None,
            "new" => Some(configs[which].clone()),
            _ => known,
        };
        assert_eq!(outside_slot(&disk, SLOT), outside, "iteration {i}");
    }
    eprintln!("full inject {full:?}; states after kill: {seen:?}");
    // An unset slot is recovered by the next inject.
    run(smelt().arg("inject").arg(&disk).args(&args[1]));
    assert_eq!(state(), SlotState::Valid(configs[1].clone()));
}
