//! The stage-1 initramfs of the squashfs-root boot media (ISO, raw disk):
//! smelt's init, `/etc/smelt/stage1.json` naming the root image's sha256
//! and where to find it, and the few kernel modules needed to reach it.
//!
//! The init crate's `stage1` module reads exactly this layout (contract
//! `smelt.stage1/v1`, see images/init/src/stage1/config.rs). One stage 1
//! serves every medium of a build: it lists both the ISO file and the GPT
//! partition, tried in that order, so the UKI that embeds it is built once.
//!
//! Modules: [`MODULES`] and their `modules.dep` closure, taken from the
//! root's `/lib/modules/RELEASE`; `modules.dep` and `modules.alias` are cut
//! down to the modules included, so the init's modalias pass only tries
//! drivers that are there. Non-goals: firmware files, module options.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};

use crate::digest::Digest;
use crate::formats::cpio;
use crate::tree::{Content, FsTree, LeafKind, Meta, Node};

pub const SCHEMA: &str = "smelt.stage1/v1";
/// The root image's path inside the ISO.
pub const ISO_ROOT_PATH: &str = "/smelt/root.squashfs";
/// The GPT name of the first root partition of a raw disk.
pub const PARTLABEL_A: &str = "smelt-root-a";
/// Seconds stage 1 waits for the root device before it gives up.
pub const LOCATE_TIMEOUT_SECS: u32 = 30;

/// Drivers stage 1 may need to reach the root: the filesystems and loop
/// device, CD (IDE/SATA), USB storage, virtio and NVMe disks. Modules the
/// kernel lacks or has built in are skipped.
pub const MODULES: &[&str] = &[
    "squashfs",
    "overlay",
    "isofs",
    "loop",
    "sr_mod",
    "cdrom",
    "ata_piix",
    "ahci",
    "sd_mod",
    "usb_storage",
    "uas",
    "xhci_pci",
    "ehci_pci",
    "virtio_pci",
    "virtio_blk",
    "virtio_scsi",
    "nvme",
];

/// Where stage 1 finds the root, and what it must hash to.
#[derive(Clone, Debug)]
pub struct RootImage {
    pub sha256: Digest,
    pub size: u64,
    /// The ISO's volume id.
    pub volume_id: String,
    /// Unique GUID of root partition A, canonical text form.
    pub partuuid: String,
}

/// `stage1.json`, as the init's config parser reads it.
pub fn config_json(root: &RootImage, modules: &[String]) -> String {
    let v = serde_json::json!({
        "schema": SCHEMA,
        "root": { "sha256": root.sha256.hex(), "size": root.size, "fstype": "squashfs" },
        "locate": [
            { "iso": { "volume_id": root.volume_id, "path": ISO_ROOT_PATH } },
            { "partition": { "partuuid": root.partuuid, "partlabel": PARTLABEL_A } },
        ],
        "modules": modules,
        "timeout_secs": LOCATE_TIMEOUT_SECS,
    });
    format!("{v:#}\n")
}

/// The stage-1 tree: `/init` from `root`, the config, `/dev/console`, the
/// module subset.
pub fn tree(root: &FsTree, image: &RootImage) -> anyhow::Result<FsTree> {
    let init = file(root, "init").context(
        "the squashfs-root boot media need smelt's init at /init: add smelt/init to `init:`",
    )?;
    let mut t = FsTree::new();
    for d in ["proc", "sys", "dev", "run", "sysroot", "etc/smelt"] {
        t.mkdir_p(Path::new(d), Meta::root(0o755))?;
    }
    t.insert(Path::new("init"), Node::file(Meta::root(0o755), init))?;
    t.insert(
        Path::new("dev/console"),
        Node::leaf(Meta::root(0o600), LeafKind::CharDev { major: 5, minor: 1 }),
    )?;
    let included = add_modules(root, &mut t)?;
    let json = config_json(image, &included);
    t.insert(
        Path::new("etc/smelt/stage1.json"),
        Node::file(Meta::root(0o644), bytes(json.into_bytes())),
    )?;
    Ok(t)
}

/// The stage-1 initramfs bytes (gzip newc cpio; the kernels we boot all
/// have gzip, and stage 1 is small).
pub fn initramfs(root: &FsTree, image: &RootImage, epoch: i64) -> anyhow::Result<Vec<u8>> {
    let mut t = tree(root, image)?;
    t.set_mtime_all(epoch);
    let mut out = Vec::new();
    let mut w = crate::compress::writer(crate::compress::Compression::Gzip { level: 9 }, &mut out)?;
    cpio::write_newc(&t, &mut w, &cpio::CpioOptions::default())?;
    w.finish()?;
    Ok(out)
}

fn bytes(b: Vec<u8>) -> Content {
    Content::Bytes(Arc::from(b.into_boxed_slice()))
}

fn file(tree: &FsTree, path: &str) -> Option<Content> {
    tree.file_content(Path::new(path))
}

fn read_text(c: &Content) -> anyhow::Result<String> {
    let bytes = c
        .read_all()
        .with_context(|| format!("reading {}", c.origin()))?;
    String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8", c.origin()))
}

/// The one kernel release under `/lib/modules` of `root`, if any.
pub fn kernel_release(root: &FsTree) -> anyhow::Result<Option<String>> {
    let Some(Node::Dir(d)) = root.lookup_follow(Path::new("lib/modules")) else {
        return Ok(None);
    };
    let releases: Vec<String> = d
        .entries
        .iter()
        .filter(|(_, n)| matches!(n, Node::Dir(_)))
        .map(|(k, _)| k.to_string_lossy().into_owned())
        .collect();
    match releases.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one.clone())),
        many => bail!("the root has modules for several kernels ({many:?}) under /lib/modules"),
    }
}

/// Copy [`MODULES`] and their dependencies into `t`; returns the names
/// of the wanted modules present (as the config's `modules` list).
fn add_modules(root: &FsTree, t: &mut FsTree) -> anyhow::Result<Vec<String>> {
    let Some(release) = kernel_release(root)? else {
        return Ok(Vec::new());
    };
    let dir = format!("lib/modules/{release}");
    let Some(dep) = file(root, &format!("{dir}/modules.dep")) else {
        bail!(
            "/{dir} has no modules.dep: stage 1 cannot load drivers (run depmod in the kernel image)"
        );
    };
    let dep = read_text(&dep)?;
    // name → (path, deps)
    let mut map: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    for line in dep.lines() {
        let Some((path, deps)) = line.split_once(':') else {
            continue;
        };
        let deps = deps.split_whitespace().map(module_name).collect();
        map.insert(module_name(path), (path.trim().to_string(), deps));
    }
    let mut keep = BTreeSet::new();
    let mut wanted_present = Vec::new();
    for m in MODULES {
        if map.contains_key(*m) {
            wanted_present.push(m.to_string());
            closure(&map, m, &mut keep);
        }
    }
    let mut dep_out = String::new();
    for name in &keep {
        let (path, deps) = &map[name];
        let content = file(root, &format!("{dir}/{path}")).with_context(|| {
            format!("module {name}: /{dir}/{path} listed in modules.dep is missing")
        })?;
        t.mkdir_p(
            Path::new(&format!("{dir}/{path}"))
                .parent()
                .unwrap_or(Path::new(&dir)),
            Meta::root(0o755),
        )?;
        t.insert(
            Path::new(&format!("{dir}/{path}")),
            Node::file(Meta::root(0o644), content),
        )?;
        let dep_paths: Vec<&str> = deps
            .iter()
            .filter_map(|d| map.get(d))
            .map(|(p, _)| p.as_str())
            .collect();
        dep_out.push_str(&format!("{path}: {}\n", dep_paths.join(" ")));
    }
    let mut alias_out = String::new();
    if let Some(a) = file(root, &format!("{dir}/modules.alias")) {
        for line in read_text(&a)?.lines() {
            if line
                .split_whitespace()
                .nth(2)
                .is_some_and(|m| keep.contains(&module_name(m)))
            {
                alias_out.push_str(line);
                alias_out.push('\n');
            }
        }
    }
    let mut meta_files = vec![("modules.dep", dep_out), ("modules.alias", alias_out)];
    if let Some(b) = file(root, &format!("{dir}/modules.builtin")) {
        meta_files.push(("modules.builtin", read_text(&b)?));
    }
    for (name, text) in meta_files {
        t.insert(
            &PathBuf::from(format!("{dir}/{name}")),
            Node::file(Meta::root(0o644), bytes(text.into_bytes())),
        )?;
    }
    Ok(wanted_present)
}

fn closure(map: &BTreeMap<String, (String, Vec<String>)>, m: &str, keep: &mut BTreeSet<String>) {
    if !keep.insert(m.to_string()) {
        return;
    }
    if let Some((_, deps)) = map.get(m) {
        for d in deps {
            closure(map, d, keep);
        }
    }
}

/// `kernel/fs/isofs/isofs.ko` → `isofs`; `-` and `_` are the same.
fn module_name(s: &str) -> String {
    let base = s.trim().rsplit('/').next().unwrap_or(s);
    let base = [".ko.zst", ".ko.xz", ".ko.gz", ".ko"]
        .iter()
        .find_map(|e| base.strip_suffix(e))
        .unwrap_or(base);
    base.replace('-', "_")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::testutil::bytes as tb;

    fn root() -> FsTree {
        let mut t = FsTree::new();
        let d = "lib/modules/6.1.0-t";
        t.mkdir_p(Path::new(&format!("{d}/kernel/fs")), Meta::root(0o755))
            .unwrap();
        for (p, body) in [
            ("init", "ELF"),
            (
                &format!("{d}/modules.dep") as &str,
                "kernel/fs/isofs.ko:\nkernel/fs/squashfs.ko: kernel/fs/zstd-dec.ko\nkernel/fs/zstd-dec.ko:\nkernel/fs/other.ko:\n",
            ),
            (
                &format!("{d}/modules.alias"),
                "alias fs-isofs isofs\nalias pci:v* other\n",
            ),
            (&format!("{d}/kernel/fs/isofs.ko"), "iso"),
            (&format!("{d}/kernel/fs/squashfs.ko"), "sq"),
            (&format!("{d}/kernel/fs/zstd-dec.ko"), "z"),
            (&format!("{d}/kernel/fs/other.ko"), "o"),
        ] {
            t.insert(
                Path::new(p),
                Node::file(Meta::root(0o644), tb(body.as_bytes())),
            )
            .unwrap();
        }
        t
    }

    fn image() -> RootImage {
        RootImage {
            sha256: Digest::of(b"root"),
            size: 4096,
            volume_id: "SMELT_ABCD".into(),
            partuuid: "0f0e0d0c-0b0a-0908-0706-050403020100".into(),
        }
    }

    #[test]
    fn takes_wanted_modules_with_deps_and_cuts_the_indexes() {
        let t = tree(&root(), &image()).unwrap();
        let d = "lib/modules/6.1.0-t";
        for m in ["isofs", "squashfs", "zstd-dec"] {
            assert!(
                t.lookup(Path::new(&format!("{d}/kernel/fs/{m}.ko")))
                    .is_some(),
                "{m}"
            );
        }
        assert!(
            t.lookup(Path::new(&format!("{d}/kernel/fs/other.ko")))
                .is_none()
        );
        let dep = read_text(&file(&t, &format!("{d}/modules.dep")).unwrap()).unwrap();
        assert_eq!(
            dep,
            "kernel/fs/isofs.ko: \nkernel/fs/squashfs.ko: kernel/fs/zstd-dec.ko\nkernel/fs/zstd-dec.ko: \n"
        );
        let alias = read_text(&file(&t, &format!("{d}/modules.alias")).unwrap()).unwrap();
        assert_eq!(alias, "alias fs-isofs isofs\n");
        let cfg: serde_json::Value =
            serde_json::from_str(&read_text(&file(&t, "etc/smelt/stage1.json").unwrap()).unwrap())
                .unwrap();
        assert_eq!(cfg["schema"], SCHEMA);
        assert_eq!(cfg["root"]["size"], 4096);
        assert_eq!(cfg["root"]["sha256"], Digest::of(b"root").hex());
        assert_eq!(cfg["modules"], serde_json::json!(["squashfs", "isofs"]));
        assert_eq!(cfg["locate"][0]["iso"]["volume_id"], "SMELT_ABCD");
        assert_eq!(cfg["locate"][1]["partition"]["partlabel"], PARTLABEL_A);
        assert!(matches!(
            t.lookup(Path::new("dev/console")),
            Some(Node::Leaf(_))
        ));
    }

    #[test]
    fn needs_smelts_init() {
        let mut r = root();
        r.remove(Path::new("init"));
        let e = tree(&r, &image()).unwrap_err().to_string();
        assert!(e.contains("smelt's init at /init"), "{e}");
    }
}
