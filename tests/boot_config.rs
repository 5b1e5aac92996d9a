//! Config slots end to end: examples/cloud-init.yml built once as ISO, raw,
//! qcow2 and kernel+initrd; the same user-data and network-config
//! (tests/data/) injected into each with `smelt inject`, or served over
//! HTTP for `ds=nocloud;s=URL`; each booted under QEMU TCG, where the
//! user-data's runcmd prints what the init applied (hostname, a
//! write_files entry with its mode, a user and its SSH key, the static
//! addresses and route of the network-config matched by MAC, the source)
//! and powers off.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::*;

const BOOT_TIMEOUT: Duration = Duration::from_secs(300);

fn data(name: &str) -> PathBuf {
    repo().join("tests/data").join(name)
}

/// One build of examples/cloud-init.yml in every format the tests boot.
fn built() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let (out, specs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let yml = specs.path().join("cloud-init.yml");
        std::fs::copy(repo().join("examples/cloud-init.yml"), &yml).unwrap();
        run(local_build(&base_store(), out.path())
            .args([
                "-f",
                "iso",
                "-f",
                "raw",
                "-f",
                "qcow2",
                "-f",
                "kernel+initrd",
            ])
            .arg(&yml));
        out
    })
    .path()
}

/// A copy of the built `file` in `dir` with tests/data's config injected.
fn injected(file: &str, dir: &Path) -> PathBuf {
    let copy = dir.join(file);
    std::fs::copy(built().join(file), &copy).unwrap();
    run(smelt()
        .arg("inject")
        .arg(&copy)
        .arg("--user-data")
        .arg(data("user-data"))
        .arg("--network-config")
        .arg(data("network-config")));
    copy
}

/// Everything the user-data asks for, seen on the console, from `source`.
fn assert_applied(console: &str, source: &str) {
    for want in [
        "Welcome to smelt",
        "[hello] SMELT_ONBOOT_OK",
        "RUNCMD-MARKER host=cfg-test",
        "FILE=written-by-cloud-config MODE=600",
        "alice:x:1000:1000:",
        "KEY=ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJvb3QtdGVzdC1rZXktbm90LXJlYWw alice@test",
        "inet 10.0.2.77/24",
        "inet6 fd00:10::77/64",
        "default via 10.0.2.2",
        "no_such_module",
        &format!("CONFIG-SOURCE={source}"),
        "smelt: powering off",
    ] {
        assert!(
            console.contains(want),
            "{want:?} not on the console:\n{console}"
        );
    }
}

fn boot_cell(file: &str, medium: Medium, uefi: bool, source: &str) {
    let dir = tempfile::tempdir().unwrap();
    let image = injected(file, dir.path());
    let r = vm(
        &image,
        medium,
        uefi,
        &dir.path().join("vars.fd"),
        BOOT_TIMEOUT,
    )
    .boot()
    .unwrap();
    assert_applied(&r.console, source);
    assert!(r.powered_off(), "{:?}\n{}", r.outcome, r.console);
}

#[test]
fn iso_as_cd_under_seabios_applies_its_slot() {
    boot_cell("cloud-init.iso", Medium::Cd, false, "slot /dev/sr0@");
}

#[test]
fn iso_as_usb_stick_under_ovmf_applies_its_slot() {
    boot_cell("cloud-init.iso", Medium::Usb, true, "slot /dev/sda@");
}

#[test]
fn raw_disk_under_ovmf_applies_its_slot() {
    boot_cell("cloud-init.raw", Medium::Disk, true, "slot /dev/vda@");
}

#[test]
fn qcow2_under_seabios_applies_its_slot() {
    boot_cell("cloud-init.qcow2", Medium::Disk, false, "slot /dev/vda@");
}

/// kernel+initrd: the config initrd, joined after the initrd as a boot
/// loader loads it; `extra` is added to the kernel command line.
fn kernel_initrd_boot(config: Option<&Path>, extra: &str) -> smelt::run::qemu::BootResult {
    let dir = tempfile::tempdir().unwrap();
    let k = smelt::run::find_kernel_initrd(&built().join("cloud-init-kernel"), None).unwrap();
    let joined = dir.path().join("initrd");
    let mut parts = vec![k.initrd.as_path()];
    parts.extend(config);
    smelt::run::concat_initrds(&parts, &joined).unwrap();
    smelt::run::qemu::BootConfig {
        kernel: Some(k.kernel),
        initrd: Some(joined),
        cmdline: Some(format!("{} {extra}", k.cmdline)),
        timeout: BOOT_TIMEOUT,
        ..Default::default()
    }
    .boot()
    .unwrap()
}

#[test]
fn kernel_initrd_applies_the_config_initrd() {
    let dir = tempfile::tempdir().unwrap();
    let config = injected("cloud-init-config.img", dir.path());
    let r = kernel_initrd_boot(Some(&config), "");
    assert_applied(&r.console, "initrd");
    assert!(r.powered_off(), "{:?}\n{}", r.outcome, r.console);
}

/// A one-thread HTTP server on 127.0.0.1 serving `files`; records every
/// request line. Stops when dropped.
struct Seeder {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Seeder {
    fn start(files: Vec<(&'static str, Vec<u8>)>) -> Seeder {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (reqs, halt) = (requests.clone(), stop.clone());
        std::thread::spawn(move || {
            while !halt.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok((s, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                s.set_nonblocking(false).unwrap();
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                if r.read_line(&mut line).is_err() {
                    continue;
                }
                // Skip the headers.
                let mut h = String::new();
                while r.read_line(&mut h).is_ok_and(|n| n > 2) {
                    h.clear();
                }
                reqs.lock().unwrap().push(line.trim().to_string());
                let path = line.split_whitespace().nth(1).unwrap_or("");
                let body = files
                    .iter()
                    .find(|(n, _)| path == format!("/seed/{n}"))
                    .map(|(_, b)| b.clone());
                let mut s = s;
                let _ = match body {
                    Some(b) => s
                        .write_all(
                            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", b.len())
                                .as_bytes(),
                        )
                        .and_then(|()| s.write_all(&b)),
                    None => s.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    ),
                };
            }
        });
        Seeder {
            port,
            requests,
            stop,
        }
    }
}

impl Drop for Seeder {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

#[test]
fn kernel_initrd_fetches_its_seed_over_http() {
    let read = |n: &str| std::fs::read(data(n)).unwrap();
    let seeder = Seeder::start(vec![
        ("meta-data", b"instance-id: http-seed\n".to_vec()),
        ("user-data", read("user-data")),
        ("network-config", read("network-config")),
    ]);
    let url = format!("http://10.0.2.2:{}/seed/", seeder.port);
    // No config initrd: the machine boots with no config at all, brings up
    // DHCP, fetches the seed, then applies its static network-config.
    let r = kernel_initrd_boot(None, &format!("ds=nocloud;s={url}"));
    assert_applied(&r.console, &url);
    // The static network-config replaced the address DHCP gave to fetch it.
    assert!(
        r.console
            .contains("DHCP address 10.0.2.15/24 dropped for the network-config")
            && !r.console.contains("inet 10.0.2.15/"),
        "{}",
        r.console
    );
    assert!(r.powered_off(), "{:?}\n{}", r.outcome, r.console);
    let reqs = seeder.requests.lock().unwrap().clone();
    for f in ["meta-data", "user-data", "network-config"] {
        assert!(
            reqs.iter()
                .any(|l| l.starts_with(&format!("GET /seed/{f} "))),
            "{f} not fetched: {reqs:?}"
        );
    }
}

/// The injected raw disk as independent tools see it: util-linux finds
/// the CIDATA label on the slot partition, dosfstools finds no error,
/// mtools reads back the user-data.
#[test]
fn injected_raw_slot_is_read_by_blkid_fsck_and_mtools() {
    let dir = tempfile::tempdir().unwrap();
    let raw = injected("cloud-init.raw", dir.path());
    let parts: serde_json::Value =
        serde_json::from_str(&sh(&format!("sfdisk -J {}", raw.display()))).unwrap();
    let parts = parts["partitiontable"]["partitions"].as_array().unwrap();
    let slot = parts
        .iter()
        .find(|p| p["name"] == "CIDATA")
        .unwrap_or_else(|| panic!("no CIDATA partition: {parts:?}"));
    let (start, size) = (
        slot["start"].as_u64().unwrap() * 512,
        slot["size"].as_u64().unwrap() * 512,
    );
    let blkid = sh(&format!(
        "blkid -p -O {start} -S {size} {} || true",
        raw.display()
    ));
    assert!(blkid.contains("LABEL=\"CIDATA\""), "{blkid}");
    assert!(blkid.contains("TYPE=\"vfat\""), "{blkid}");
    let img = dir.path().join("slot.img");
    sh(&format!(
        "dd if={} of={} bs=512 skip={} count={} status=none",
        raw.display(),
        img.display(),
        start / 512,
        size / 512
    ));
    sh(&format!("fsck.fat -n {}", img.display()));
    let ud = sh(&format!("mtype -i {} ::user-data", img.display()));
    assert_eq!(ud, std::fs::read_to_string(data("user-data")).unwrap());
}

/// sha256 of `len` bytes of `path` from `offset`.
fn range_sha(path: &Path, offset: u64, len: u64) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut w = smelt::digest::HashingWriter::new(std::io::sink());
    let n = std::io::copy(&mut f.take(len), &mut w).unwrap();
    assert_eq!(n, len, "{} is short", path.display());
    w.digest().to_string()
}

/// On every real artifact, as the build wrote it: `smelt inject` changes
/// only the bytes the manifest names as the slot (qcow2: the image stays
/// the same size and `qemu-img check` passes; the config initrd is
/// rewritten whole), and `--clear` gives back
/// the exact bytes of the build (the manifest's sha256).
#[test]
fn inject_changes_only_the_slot_and_clear_restores_the_build() {
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(built().join("cloud-init.manifest.json")).unwrap(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut seen = Vec::new();
    for o in manifest["outputs"].as_array().unwrap() {
        let Some(slot) = o.get("slot") else { continue };
        let name = o["name"].as_str().unwrap();
        seen.push(name.to_string());
        let pristine = built().join(name);
        let size = o["size"].as_u64().unwrap();
        assert_eq!(
            format!("sha256:{}", sha256sum(&pristine)),
            o["sha256"].as_str().unwrap()
        );
        let copy = injected(name, dir.path());
        assert_ne!(
            sha256sum(&copy),
            sha256sum(&pristine),
            "{name}: inject changed nothing"
        );
        if slot["kind"] == "nocloud-fat" {
            assert_eq!(std::fs::metadata(&copy).unwrap().len(), size, "{name}");
        }
        if name.ends_with(".qcow2") {
            let check = sh(&format!("qemu-img check {} 2>&1", copy.display()));
            assert!(check.contains("No errors"), "{check}");
        } else if slot["kind"] == "nocloud-fat" {
            let (at, len) = (
                slot["offset"].as_u64().unwrap(),
                slot["length"].as_u64().unwrap(),
            );
            for (from, n) in [(0, at), (at + len, size - at - len)] {
                assert_eq!(
                    range_sha(&copy, from, n),
                    range_sha(&pristine, from, n),
                    "{name}: bytes {from}..{} changed",
                    from + n
                );
            }
        }
        run(smelt().arg("inject").arg(&copy).arg("--clear"));
        assert_eq!(sha256sum(&copy), sha256sum(&pristine), "{name}: --clear");
    }
    assert_eq!(
        seen,
        [
            "cloud-init-config.img",
            "cloud-init.iso",
            "cloud-init.qcow2",
            "cloud-init.raw"
        ]
    );
}
