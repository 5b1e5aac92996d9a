//! Kernel modules: load those named in `/etc/modules` and their
//! dependencies from `modules.dep`, with `finit_module(2)`.
//!
//! As `modprobe`: dependencies first, each module once; modules already in
//! `/proc/modules` or listed in `modules.builtin` are skipped. Names compare
//! with `-` and `_` equal (kmod's `underscores()`). `.ko.zst`/`.ko.xz`/
//! `.ko.gz` are handed to the kernel with MODULE_INIT_COMPRESSED_FILE
//! (needs CONFIG_MODULE_DECOMPRESS). A missing or failing module is logged,
//! never fatal. Then devices' modaliases pull in their drivers (see
//! [`crate::modalias`]). Non-goals: module parameters, blacklists, `softdep`.

use std::collections::{BTreeMap, BTreeSet};

use crate::modalias::{Aliases, device_aliases};
use crate::sys::Sys;

/// Loaded on every boot when the kernel has them as modules, quietly:
/// `evdev` gives the ACPI power button (found by modalias) its
/// `/dev/input/event*` node, so pressing it powers off as on any distro.
pub const DEFAULT_MODULES: &[&str] = &["evdev"];

/// `modules.dep`: module name → (path relative to the modules dir, deps).
#[derive(Debug, Default)]
pub struct DepMap {
    entries: BTreeMap<String, (String, Vec<String>)>,
}

/// `virtio-net`, `kernel/drivers/net/virtio_net.ko.zst` → `virtio_net`.
pub fn module_name(s: &str) -> String {
    let base = s.rsplit('/').next().unwrap_or(s);
    let base = [".ko.zst", ".ko.xz", ".ko.gz", ".ko"]
        .iter()
        .find_map(|ext| base.strip_suffix(ext))
        .unwrap_or(base);
    base.replace('-', "_")
}

impl DepMap {
    /// Parse `path: dep dep …` lines (depmod(8)); malformed lines are skipped.
    pub fn parse(text: &str) -> DepMap {
        let mut entries = BTreeMap::new();
        for line in text.lines() {
            let Some((path, deps)) = line.split_once(':') else {
                continue;
            };
            let path = path.trim();
            if path.is_empty() {
                continue;
            }
            let deps = deps.split_whitespace().map(module_name).collect();
            entries.insert(module_name(path), (path.to_string(), deps));
        }
        DepMap { entries }
    }

    pub fn path(&self, name: &str) -> Option<&str> {
        self.entries.get(name).map(|(p, _)| p.as_str())
    }

    /// Load order for `wanted`: deps before dependants, each once, `skip`ped
    /// ones left out. Unknown names are returned in `missing`.
    pub fn order(&self, wanted: &[String], skip: &BTreeSet<String>) -> (Vec<String>, Vec<String>) {
        let mut out = Vec::new();
        let mut missing = Vec::new();
        let mut seen = BTreeSet::new();
        for w in wanted {
            let w = module_name(w);
            if skip.contains(&w) {
                continue;
            }
            if !self.entries.contains_key(&w) {
                if seen.insert(w.clone()) {
                    missing.push(w);
                }
                continue;
            }
            self.visit(&w, skip, &mut seen, &mut out);
        }
        (out, missing)
    }

    // modules.dep lists a module's whole dependency closure with the ones
    // loaded last first; visiting each dep's own deps first gives the same
    // order as modprobe, and `seen` breaks cycles.
    fn visit(
        &self,
        name: &str,
        skip: &BTreeSet<String>,
        seen: &mut BTreeSet<String>,
        out: &mut Vec<String>,
    ) {
        if skip.contains(name) || !seen.insert(name.to_string()) {
            return;
        }
        if let Some((_, deps)) = self.entries.get(name) {
            for d in deps.iter().rev() {
                self.visit(d, skip, seen, out);
            }
        }
        out.push(name.to_string());
    }
}

/// Names in `/etc/modules`: one per line, `#` starts a comment.
pub fn parse_etc_modules(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(|l| l.split_whitespace().next().unwrap_or(l).to_string())
        .collect()
}

/// Modules already present: `/proc/modules` names plus `modules.builtin`.
pub fn present(proc_modules: &str, builtin: &str) -> BTreeSet<String> {
    let loaded = proc_modules
        .lines()
        .filter_map(|l| l.split_whitespace().next());
    let built = builtin.lines().map(str::trim).filter(|l| !l.is_empty());
    loaded.chain(built).map(module_name).collect()
}

fn read(sys: &dyn Sys, path: &str) -> Option<String> {
    sys.read_file(path)
        .ok()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// How many times device aliases are rescanned: a bus driver loaded in
/// one pass (virtio_pci) creates the devices the next pass finds (virtio
/// net, block, …).
const ALIAS_PASSES: usize = 3;

/// Load `/etc/modules` and their dependencies, then the modules matching
/// devices' modaliases; returns how many were loaded.
pub fn load(sys: &dyn Sys, release: &str) -> usize {
    let wanted = read(sys, "/etc/modules")
        .map(|t| parse_etc_modules(&t))
        .unwrap_or_default();
    let Some(mut loader) = Loader::new(sys, release) else {
        if !wanted.is_empty() {
            sys.log(&format!(
                "smelt init: no /lib/modules/{release}/modules.dep: cannot load {}",
                wanted.join(" ")
            ));
        }
        return 0;
    };
    let (mut loaded, missing) = loader.load(sys, &wanted);
    for m in missing {
        sys.log(&format!(
            "smelt init: module {m} not found in {}/modules.dep",
            loader.dir
        ));
    }
    let defaults: Vec<String> = DEFAULT_MODULES.iter().map(|m| m.to_string()).collect();
    loaded += loader.load(sys, &defaults).0;
    for _ in 0..ALIAS_PASSES {
        match loader.autoload(sys) {
            None => break,
            Some(n) => loaded += n,
        }
    }
    loaded
}

/// The modules directory of one kernel, read once, and what was tried
/// from it; stage 1 keeps one across its polls so each module is tried
/// once however often the modalias pass runs.
#[derive(Debug)]
pub struct Loader {
    /// `/lib/modules/RELEASE`.
    pub dir: String,
    deps: DepMap,
    aliases: Aliases,
    /// Loaded, built in, or tried: never tried again.
    done: BTreeSet<String>,
}

impl Loader {
    /// Read `modules.dep`, `modules.alias`, `modules.builtin` and
    /// `/proc/modules`; None without `modules.dep`.
    pub fn new(sys: &dyn Sys, release: &str) -> Option<Loader> {
        let dir = format!("/lib/modules/{release}");
        let deps = DepMap::parse(&read(sys, &format!("{dir}/modules.dep"))?);
        let done = present(
            &read(sys, "/proc/modules").unwrap_or_default(),
            &read(sys, &format!("{dir}/modules.builtin")).unwrap_or_default(),
        );
        let aliases =
            Aliases::parse(&read(sys, &format!("{dir}/modules.alias")).unwrap_or_default());
        Some(Loader {
            dir,
            deps,
            aliases,
            done,
        })
    }

    /// Load `wanted` and their deps (built-in and loaded ones skipped):
    /// how many were loaded, and the names not in `modules.dep` (each
    /// returned once over the loader's life).
    pub fn load(&mut self, sys: &dyn Sys, wanted: &[String]) -> (usize, Vec<String>) {
        let (order, missing) = self.deps.order(wanted, &self.done);
        self.done.extend(missing.iter().cloned());
        let mut loaded = 0;
        for name in order {
            self.done.insert(name.clone());
            let Some(rel) = self.deps.path(&name) else {
                continue;
            };
            let path = format!("{}/{rel}", self.dir);
            let compressed = !rel.ends_with(".ko");
            match sys.finit_module(&path, compressed) {
                Ok(()) => loaded += 1,
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                // A driver that finds nothing it can drive (cpufreq drivers
                // matched by modalias under QEMU) says ENODEV; udev is quiet
                // about it too.
                Err(e) if e.raw_os_error() == Some(libc::ENODEV) => {}
                Err(e) => sys.log(&format!(
                    "smelt init: loading module {name} from {path}: {e}"
                )),
            }
        }
        (loaded, missing)
    }

    /// One modalias pass: load the drivers of devices present now that
    /// were not tried yet; how many were loaded, None if there was none
    /// to try.
    pub fn autoload(&mut self, sys: &dyn Sys) -> Option<usize> {
        let found = self.aliases.modules_for(&device_aliases(sys));
        let new: Vec<String> = found
            .into_iter()
            .filter(|m| !self.done.contains(m))
            .collect();
        if new.is_empty() {
            return None;
        }
        Some(self.load(sys, &new).0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::FakeSys;

    const DEP: &str = "kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/fs/overlayfs/overlay.ko.zst:
kernel/drivers/block/virtio-blk.ko: kernel/drivers/virtio/virtio_ring.ko
bogus line
";

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn names_normalise() {
        assert_eq!(module_name("kernel/a/virtio-blk.ko"), "virtio_blk");
        assert_eq!(module_name("overlay.ko.zst"), "overlay");
        assert_eq!(module_name("virtio-net"), "virtio_net");
    }

    #[test]
    fn deps_first_each_once_builtin_skipped() {
        let d = DepMap::parse(DEP);
        let (order, missing) = d.order(
            &s(&["virtio_net", "net_failover", "nope", "overlay"]),
            &BTreeSet::new(),
        );
        assert_eq!(
            order,
            s(&["failover", "net_failover", "virtio_net", "overlay"])
        );
        assert_eq!(missing, s(&["nope"]));
        let skip = present(
            "failover 16384 1 net_failover, Live 0x0\n",
            "kernel/drivers/virtio/virtio_ring.ko\n",
        );
        let (order, _) = d.order(&s(&["virtio-net", "virtio_blk"]), &skip);
        // virtio_ring is built in: not in modules.dep as a loadable module,
        // and skipped rather than reported missing.
        assert_eq!(order, s(&["net_failover", "virtio_net", "virtio_blk"]));
    }

    #[test]
    fn etc_modules_comments() {
        assert_eq!(
            parse_etc_modules("# x\nloop\n  overlay # fs\n\nvfat opt=1\n"),
            s(&["loop", "overlay", "vfat"])
        );
    }

    #[test]
    fn load_uses_finit_module_and_logs_missing() {
        let dir = "/lib/modules/6.1.0-test";
        let sys = FakeSys::new()
            .file("/etc/modules", "overlay\nvirtio_net\nmissing_mod\n")
            .file(&format!("{dir}/modules.dep"), DEP)
            .file(&format!("{dir}/modules.builtin"), "")
            .file("/proc/modules", "failover 1 0 - Live 0x0\n")
            .file(&format!("{dir}/kernel/fs/overlayfs/overlay.ko.zst"), "")
            .file(&format!("{dir}/kernel/drivers/net/net_failover.ko"), "");
        assert_eq!(load(&sys, "6.1.0-test"), 2);
        assert_eq!(
            sys.calls(),
            s(&[
                &format!("finit_module {dir}/kernel/fs/overlayfs/overlay.ko.zst true"),
                &format!("finit_module {dir}/kernel/drivers/net/net_failover.ko false"),
                &format!("finit_module {dir}/kernel/drivers/net/virtio_net.ko false"),
            ])
        );
        let logs = sys.logs();
        assert!(
            logs.contains("module missing_mod not found in /lib/modules/6.1.0-test/modules.dep"),
            "{logs}"
        );
        assert!(logs.contains("loading module virtio_net from /lib/modules/6.1.0-test/kernel/drivers/net/virtio_net.ko"), "{logs}");
    }

    #[test]
    fn modalias_autoload_after_etc_modules_each_once() {
        let dir = "/lib/modules/6.1.0-test";
        let sys = FakeSys::new()
            .file("/etc/modules", "virtio_net\n")
            .file(&format!("{dir}/modules.dep"), DEP)
            .file(
                &format!("{dir}/modules.alias"),
                "alias virtio:d00000001v* virtio_net\nalias virtio:d00000002v* virtio_blk\nalias fs-overlay overlay\n",
            )
            .file("/sys/bus/virtio/devices/virtio0/modalias", "virtio:d00000001v00001AF4\n")
            .file("/sys/bus/virtio/devices/virtio1/modalias", "virtio:d00000002v00001AF4\n");
        load(&sys, "6.1.0-test");
        let names: Vec<String> = sys
            .calls()
            .iter()
            .map(|c| module_name(c.split(' ').nth(1).unwrap_or("")))
            .collect();
        // virtio_blk's dep virtio_ring is not in modules.dep: only
        // virtio_blk itself is tried, once; virtio_net is not reloaded.
        assert_eq!(
            names,
            s(&["failover", "net_failover", "virtio_net", "virtio_blk"])
        );
    }

    #[test]
    fn evdev_is_loaded_without_etc_modules_and_quietly_skipped_when_absent() {
        let dir = "/lib/modules/6.1.0-test";
        let sys = FakeSys::new()
            .file(
                &format!("{dir}/modules.dep"),
                "kernel/drivers/input/evdev.ko:\n",
            )
            .file(&format!("{dir}/kernel/drivers/input/evdev.ko"), "");
        assert_eq!(load(&sys, "6.1.0-test"), 1);
        assert_eq!(
            sys.calls(),
            s(&[&format!(
                "finit_module {dir}/kernel/drivers/input/evdev.ko false"
            )])
        );
        let sys = FakeSys::new().file(&format!("{dir}/modules.dep"), DEP);
        assert_eq!(load(&sys, "6.1.0-test"), 0);
        assert_eq!(sys.logs(), "", "a kernel without evdev is not an error");
    }
}
