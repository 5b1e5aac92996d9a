//! Helpers shared by the integration tests: the smelt binary, the store with
//! the base images `make images` built, and wrappers for external tools that
//! keep their stderr in the failure message.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The smelt binary cargo built for these tests.
pub fn smelt() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_smelt"));
    c.env_remove("SMELT_STORE").env_remove("SOURCE_DATE_EPOCH");
    c
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The store `make images` filled (smelt's default). Fails loudly, never
/// skips, when the base images are missing.
pub fn base_store() -> PathBuf {
    let root = match std::env::var_os("SMELT_STORE") {
        Some(s) => PathBuf::from(s),
        None => match std::env::var_os("XDG_CACHE_HOME") {
            Some(x) => PathBuf::from(x).join("smelt"),
            None => {
                PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/smelt")
            }
        },
    };
    let out = run(smelt().arg("--store").arg(&root).args(["image", "ls"]));
    let listing = String::from_utf8_lossy(&out.stdout);
    for img in [
        "docker.io/smelt/kernel:latest",
        "docker.io/smelt/busybox:latest",
    ] {
        assert!(
            listing.contains(img),
            "base image {img} is not in {}: run `make images` first\n{listing}",
            root.display()
        );
    }
    root
}

/// Run a command; panic with its stdout/stderr unless it succeeds.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Run a command that must fail; returns its stderr.
pub fn run_fail(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        !out.status.success(),
        "{cmd:?} succeeded but should have failed:\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Run a shell pipeline (for independent tools like `zcat | cpio -itv`).
pub fn sh(script: &str) -> String {
    let out = run(Command::new("bash").args(["-o", "pipefail", "-c", script]));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// sha256 of a file, via the independent `sha256sum`.
pub fn sha256sum(path: &Path) -> String {
    let out = run(Command::new("sha256sum").arg(path));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Names of the files in a directory, sorted.
pub fn dir_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Store a multi-layer image under `tag` in the store at `root`: `layers`
/// are uncompressed tars (stored gzip-compressed), `config` the image
/// config's `config` object (Env, Cmd, Labels, ...).
pub fn store_image(root: &Path, tag: &str, layers: &[Vec<u8>], config: serde_json::Value) {
    use smelt::digest::Digest;
    use smelt::oci::manifest::{Descriptor, Manifest, OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST};
    use std::io::Write;
    let store = smelt::oci::Store::open(root).unwrap();
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for tar in layers {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        gz.write_all(tar).unwrap();
        let gz = gz.finish().unwrap();
        let d = store.write_blob(&gz[..], None).unwrap();
        descs.push(Descriptor::new(OCI_LAYER_GZIP, d, gz.len() as u64));
        diff_ids.push(Digest::of(tar).to_string());
    }
    let cfg = serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": config,
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    });
    let cfg = serde_json::to_vec(&cfg).unwrap();
    let cd = store.write_blob(&cfg[..], None).unwrap();
    let m = Manifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.to_string()),
        config: Descriptor::new(OCI_CONFIG, cd, cfg.len() as u64),
        layers: descs,
        annotations: Default::default(),
    };
    let mb = serde_json::to_vec(&m).unwrap();
    let md = store.write_blob(&mb[..], None).unwrap();
    let r = smelt::oci::Reference::parse(tag).unwrap();
    store.tag(&r, &md, OCI_MANIFEST).unwrap();
}

/// Builds an uncompressed layer tar entry by entry.
pub struct LayerBuilder {
    b: tar::Builder<Vec<u8>>,
}

impl Default for LayerBuilder {
    fn default() -> Self {
        LayerBuilder {
            b: tar::Builder::new(Vec::new()),
        }
    }
}

impl LayerBuilder {
    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h
    }
    pub fn dir(mut self, path: &str) -> Self {
        let mut h = Self::header(tar::EntryType::Directory, 0o755, 0);
        self.b.append_data(&mut h, path, std::io::empty()).unwrap();
        self
    }
    pub fn file(mut self, path: &str, mode: u32, body: &[u8]) -> Self {
        let mut h = Self::header(tar::EntryType::Regular, mode, body.len() as u64);
        self.b.append_data(&mut h, path, body).unwrap();
        self
    }
    pub fn owned_file(mut self, path: &str, uid: u64, gid: u64, body: &[u8]) -> Self {
        let mut h = Self::header(tar::EntryType::Regular, 0o640, body.len() as u64);
        h.set_uid(uid);
        h.set_gid(gid);
        self.b.append_data(&mut h, path, body).unwrap();
        self
    }
    pub fn hardlink(mut self, path: &str, target: &str) -> Self {
        let mut h = Self::header(tar::EntryType::Link, 0o644, 0);
        self.b.append_link(&mut h, path, target).unwrap();
        self
    }
    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        let mut h = Self::header(tar::EntryType::Symlink, 0o777, 0);
        self.b.append_link(&mut h, path, target).unwrap();
        self
    }
    pub fn chardev(mut self, path: &str, major: u32, minor: u32) -> Self {
        let mut h = Self::header(tar::EntryType::Char, 0o666, 0);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.b.append_data(&mut h, path, std::io::empty()).unwrap();
        self
    }
    /// An entry whose name is written raw, bypassing the tar crate's checks
    /// (for path-escape tests).
    pub fn raw_name_file(mut self, name: &[u8], body: &[u8]) -> Self {
        let mut h = Self::header(tar::EntryType::Regular, 0o644, body.len() as u64);
        h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
        h.set_cksum();
        self.b.append(&h, body).unwrap();
        self
    }
    pub fn build(self) -> Vec<u8> {
        self.b.into_inner().unwrap()
    }
}

/// `smelt --store STORE build --pull never -o OUT` with the extra
/// arguments (formats, spec files) still to add.
pub fn local_build(store: &Path, out: &Path) -> Command {
    let mut c = smelt();
    c.arg("--store")
        .arg(store)
        .args(["build", "--pull", "never", "-o"])
        .arg(out);
    c
}

/// A copy of examples/minimal.yml in `dir`, so a build writes its lock
/// file there and not into the repository.
pub fn minimal_copy(dir: &Path) -> PathBuf {
    let yml = dir.join("minimal.yml");
    std::fs::copy(repo().join("examples/minimal.yml"), &yml).unwrap();
    yml
}

/// `(name, sha256)` of every file in `dir`, sorted by name.
pub fn dir_hashes(dir: &Path) -> Vec<(String, String)> {
    dir_names(dir)
        .into_iter()
        .map(|n| {
            let h = sha256sum(&dir.join(&n));
            (n, h)
        })
        .collect()
}

pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS.fd";

/// How a disk or CD image is attached to the guest.
pub enum Medium {
    Cd,
    Usb,
    Disk,
}

/// A QEMU boot of `image` as a CD (IDE/AHCI), a USB stick (xHCI +
/// usb-storage) or a virtio disk, under OVMF (`vars`: where the copy of the
/// variable store goes) or SeaBIOS, with `snapshot=on` so the image is
/// never changed.
pub fn vm(
    image: &Path,
    medium: Medium,
    uefi: bool,
    vars: &Path,
    timeout: std::time::Duration,
) -> smelt::run::qemu::BootConfig {
    let mut extra = Vec::new();
    if uefi {
        std::fs::copy(OVMF_VARS, vars).unwrap();
        extra.extend([
            "-drive".to_string(),
            format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"),
            "-drive".into(),
            format!("if=pflash,format=raw,file={}", vars.display()),
        ]);
    }
    let format = if image.extension().is_some_and(|e| e == "qcow2") {
        "qcow2"
    } else {
        "raw"
    };
    let drive = format!("file={},format={format},snapshot=on", image.display());
    match medium {
        Medium::Cd => extra.extend(["-drive".into(), format!("{drive},media=cdrom,if=ide")]),
        Medium::Usb => extra.extend([
            "-device".into(),
            "qemu-xhci".into(),
            "-drive".into(),
            format!("{drive},if=none,id=stick"),
            "-device".into(),
            "usb-storage,drive=stick".into(),
        ]),
        Medium::Disk => extra.extend(["-drive".into(), format!("{drive},if=virtio")]),
    }
    smelt::run::qemu::BootConfig {
        timeout,
        extra_args: extra,
        ..Default::default()
    }
}
