//! Finding the root image: poll the block devices until one of the
//! config's `locate` methods matches, or the timeout passes.
//!
//! Every [`POLL`] the devices in `/sys/class/block` are listed (`dev` gives
//! major:minor, `size` 512-byte sectors, `partition` the number of a
//! partition) and a node is made under `/dev` for any devtmpfs has not
//! made yet; then each method is tried in config order, over every
//! device in name order:
//!
//! - `iso`: a device (disk or partition) whose sector 16 is an ISO 9660
//!   primary volume descriptor with the volume id is mounted read-only at
//!   [`MEDIA`]; the file at `path` must be exactly the image's size; it is
//!   attached to a read-only loop device, the root device.
//! - `partition`: each disk with partitions has its GPT read (the backup
//!   header when the primary is damaged). A partition whose unique GUID is
//!   `partuuid` is the root device; only when no disk has such a partition
//!   is one named `partlabel` taken (the first in device-name order). A
//!   stale partition with the same label is then found as well: the hash
//!   check refuses it.
//!
//! A device that matched but cannot be used (mount fails, wrong size) is
//! reported once and not tried again. Loop and RAM disks are never
//! candidates. Between polls the caller's modalias pass may load drivers
//! for late devices (USB, SCSI). Non-goals: MBR partitions, filesystem
//! labels/UUIDs (blkid), LVM/RAID, network roots.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::gpt::{self, Entry, Lba};
use crate::iso9660;
use crate::loopdev;
use crate::modules::Loader;
use crate::stage1::config::{Config, Method};
use crate::sys::Sys;

pub const SYS_BLOCK: &str = "/sys/class/block";
/// Where a matching ISO is mounted.
pub const MEDIA: &str = "/.smelt/media";
/// Time between polls.
pub const POLL: Duration = Duration::from_millis(200);
/// sysfs `size` is always in 512-byte sectors (block/genhd.c).
const SYSFS_SECTOR: u64 = 512;

/// One entry of `/sys/class/block`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockDev {
    pub name: String,
    pub major: u32,
    pub minor: u32,
    /// Partition number; None for a whole disk.
    pub partition: Option<u32>,
    /// Size in bytes (0: no medium).
    pub bytes: u64,
}

impl BlockDev {
    pub fn node(&self) -> String {
        format!("/dev/{}", self.name)
    }
}

/// The root device and how it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// `/dev/loopN` or the partition's node.
    pub device: String,
    /// For the console: `iso volume X on /dev/sr0, /p on /dev/loop0`.
    pub what: String,
    /// An ISO is mounted at [`MEDIA`].
    pub media: bool,
}

fn read_str(sys: &dyn Sys, path: &str) -> Option<String> {
    let b = sys.read_file(path).ok()?;
    Some(String::from_utf8_lossy(&b).trim().to_string())
}

/// Loop and RAM disks are ours or empty: never where the root is.
fn candidate(name: &str) -> bool {
    !(name.starts_with("loop") || name.starts_with("ram"))
}

/// The block devices present now, in name order.
pub fn scan(sys: &dyn Sys) -> Vec<BlockDev> {
    let mut out = Vec::new();
    for name in sys.list_dir(SYS_BLOCK).unwrap_or_default() {
        if !candidate(&name) {
            continue;
        }
        let dir = format!("{SYS_BLOCK}/{name}");
        let Some((major, minor)) = read_str(sys, &format!("{dir}/dev")).and_then(|d| {
            let (a, b) = d.split_once(':')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        }) else {
            continue;
        };
        let sectors: u64 = read_str(sys, &format!("{dir}/size"))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        out.push(BlockDev {
            name,
            major,
            minor,
            partition: read_str(sys, &format!("{dir}/partition")).and_then(|p| p.parse().ok()),
            bytes: sectors.saturating_mul(SYSFS_SECTOR),
        });
    }
    out
}

/// Search state kept across polls.
struct Search<'a> {
    cfg: &'a Config,
    debug: bool,
    /// Device names in the order first seen.
    seen: Vec<String>,
    /// "method-index device" pairs already reported unusable.
    rejected: BTreeSet<String>,
}

/// Poll until the root is found or `cfg.timeout` passes; the error is the
/// one line to print. `loader` runs a modalias pass before each poll.
pub fn find(
    sys: &dyn Sys,
    cfg: &Config,
    mut loader: Option<&mut Loader>,
    debug: bool,
) -> Result<Found, String> {
    let start = sys.now();
    let mut s = Search {
        cfg,
        debug,
        seen: Vec::new(),
        rejected: BTreeSet::new(),
    };
    loop {
        if let Some(l) = loader.as_deref_mut() {
            l.autoload(sys);
        }
        if let Some(f) = s.poll(sys) {
            return Ok(f);
        }
        if sys.now().saturating_sub(start) >= cfg.timeout {
            return Err(s.not_found());
        }
        sys.sleep(POLL);
    }
}

impl Search<'_> {
    fn poll(&mut self, sys: &dyn Sys) -> Option<Found> {
        let devs = scan(sys);
        for d in &devs {
            self.note(sys, d);
        }
        for (i, m) in self.cfg.locate.iter().enumerate() {
            let found = match m {
                Method::Iso { volume_id, path } => self.try_iso(sys, i, volume_id, path, &devs),
                Method::Partition {
                    partuuid,
                    partlabel,
                } => self.try_partition(sys, i, partuuid.as_deref(), partlabel.as_deref(), &devs),
            };
            if found.is_some() {
                return found;
            }
        }
        None
    }

    /// Remember a device and make its node if devtmpfs has not.
    fn note(&mut self, sys: &dyn Sys, d: &BlockDev) {
        if !self.seen.contains(&d.name) {
            self.seen.push(d.name.clone());
            if self.debug {
                sys.log(&format!(
                    "smelt stage1: block device {} ({}:{}, {} bytes)",
                    d.name, d.major, d.minor, d.bytes
                ));
            }
        }
        let node = d.node();
        if !sys.exists(&node)
            && let Err(e) = sys.mknod_block(&node, d.major, d.minor)
        {
            self.reject(
                sys,
                format!("node {}", d.name),
                format!("creating {node}: {e}"),
            );
        }
    }

    /// Report `msg` once per `key`.
    fn reject(&mut self, sys: &dyn Sys, key: String, msg: String) {
        if self.rejected.insert(key) {
            sys.log(&format!("smelt stage1: {msg}"));
        }
    }

    fn not_found(&self) -> String {
        let tried: Vec<String> = self.cfg.locate.iter().map(Method::to_string).collect();
        let seen = if self.seen.is_empty() {
            "none".to_string()
        } else {
            self.seen.join(" ")
        };
        format!(
            "smelt stage1: root not found after {}s: tried {} ; block devices seen: {seen}",
            self.cfg.timeout.as_secs(),
            tried.join(", ")
        )
    }

    fn try_iso(
        &mut self,
        sys: &dyn Sys,
        i: usize,
        volume_id: &str,
        path: &str,
        devs: &[BlockDev],
    ) -> Option<Found> {
        for d in devs.iter().filter(|d| d.bytes > 0) {
            let key = format!("{i} {}", d.name);
            if self.rejected.contains(&key) {
                continue;
            }
            let node = d.node();
            let sector = sys
                .read_at(&node, iso9660::PVD_OFFSET, iso9660::SECTOR as usize)
                .unwrap_or_default();
            if iso9660::volume_id(&sector).as_deref() != Some(volume_id) {
                continue;
            }
            match open_iso(sys, &node, path, self.cfg.root.size) {
                Ok(dev) => {
                    return Some(Found {
                        what: format!("iso volume {volume_id} on {node}, {path} on {dev}"),
                        device: dev,
                        media: true,
                    });
                }
                Err(msg) => self.reject(sys, key, format!("not using {node}: {msg}")),
            }
        }
        None
    }

    fn try_partition(
        &mut self,
        sys: &dyn Sys,
        i: usize,
        partuuid: Option<&str>,
        partlabel: Option<&str>,
        devs: &[BlockDev],
    ) -> Option<Found> {
        let tables = self.tables(sys, devs);
        let pick = |want: &dyn Fn(&Entry) -> bool| -> Vec<&BlockDev> {
            let mut v = Vec::new();
            for (kids, entries) in &tables {
                for e in entries.iter().filter(|e| want(e)) {
                    v.extend(kids.iter().filter(|k| k.partition == Some(e.number)));
                }
            }
            v
        };
        let mut cands = Vec::new();
        let mut by = String::new();
        if let Some(u) = partuuid {
            cands = pick(&|e| e.unique_guid.to_string() == u);
            by = format!("partuuid {u}");
        }
        if let (true, Some(l)) = (cands.is_empty(), partlabel) {
            cands = pick(&|e| e.name == l);
            by = format!("partlabel {l}");
        }
        for p in cands {
            let key = format!("{i} {}", p.name);
            if self.rejected.contains(&key) {
                continue;
            }
            let size = self.cfg.root.size;
            if p.bytes < size {
                let msg = format!(
                    "not using {}: the partition is {} bytes, the root image {size}",
                    p.node(),
                    p.bytes
                );
                self.reject(sys, key, msg);
                continue;
            }
            return Some(Found {
                device: p.node(),
                what: format!("partition {} (GPT {by})", p.node()),
                media: false,
            });
        }
        None
    }

    /// (partitions, GPT entries) of every disk that has partitions and a
    /// readable GPT.
    fn tables<'d>(
        &mut self,
        sys: &dyn Sys,
        devs: &'d [BlockDev],
    ) -> Vec<(Vec<&'d BlockDev>, Vec<Entry>)> {
        let mut out = Vec::new();
        for disk in devs.iter().filter(|d| d.partition.is_none() && d.bytes > 0) {
            let names = sys
                .list_dir(&format!("{SYS_BLOCK}/{}", disk.name))
                .unwrap_or_default();
            let kids: Vec<&BlockDev> = devs
                .iter()
                .filter(|d| d.partition.is_some() && names.contains(&d.name))
                .collect();
            if kids.is_empty() {
                continue;
            }
            match read_gpt(sys, disk) {
                Ok(entries) => out.push((kids, entries)),
                Err(e) if self.debug => self.reject(sys, format!("gpt {}", disk.name), e),
                Err(_) => {}
            }
        }
        out
    }
}

/// Mount the ISO on `node`, check the image file, attach it to a loop
/// device; unmounts again on failure.
fn open_iso(sys: &dyn Sys, node: &str, path: &str, size: u64) -> Result<String, String> {
    sys.mkdir_all(MEDIA, 0o755)
        .map_err(|e| format!("creating {MEDIA}: {e}"))?;
    sys.mount(node, MEDIA, "iso9660", libc::MS_RDONLY, "")
        .map_err(|e| format!("mounting it (iso9660) on {MEDIA}: {e}"))?;
    let file = format!("{MEDIA}{path}");
    let r = sys
        .file_size(&file)
        .map_err(|e| format!("{path} on it: {e}"))
        .and_then(|len| match len == size {
            true => Ok(()),
            false => Err(format!("{path} is {len} bytes, the root image {size}")),
        })
        .and_then(|()| loopdev::attach_ro(sys, &file).map_err(|e| e.to_string()));
    if r.is_err() {
        let _ = sys.umount(MEDIA);
    }
    r
}

/// The used entries of `disk`'s GPT: the primary table, else the backup.
pub fn read_gpt(sys: &dyn Sys, disk: &BlockDev) -> Result<Vec<Entry>, String> {
    let lbs = read_str(
        sys,
        &format!("{SYS_BLOCK}/{}/queue/logical_block_size", disk.name),
    )
    .and_then(|s| s.parse::<u64>().ok())
    .filter(|n| n.is_power_of_two() && (512..=65536).contains(n))
    .unwrap_or(512);
    let node = disk.node();
    read_table(sys, &node, lbs, Lba(1)).or_else(|primary| {
        let last = (disk.bytes / lbs).checked_sub(1).filter(|&l| l > 1);
        match last {
            Some(l) => read_table(sys, &node, lbs, Lba(l)).map_err(|_| primary),
            None => Err(primary),
        }
    })
}

fn read_table(sys: &dyn Sys, node: &str, lbs: u64, lba: Lba) -> Result<Vec<Entry>, String> {
    let at = |e: String| format!("{node}: GPT at LBA {}: {e}", lba.0);
    let off = lba
        .offset(lbs)
        .ok_or_else(|| at("offset overflows".into()))?;
    let block = sys
        .read_at(node, off, lbs as usize)
        .map_err(|e| at(e.to_string()))?;
    let h = gpt::parse_header(&block, lba).map_err(|e| at(e.to_string()))?;
    let eoff = h
        .entries_lba
        .offset(lbs)
        .ok_or_else(|| at("entry array offset overflows".into()))?;
    let bytes = sys
        .read_at(node, eoff, h.entries_len() as usize)
        .map_err(|e| at(e.to_string()))?;
    gpt::parse_entries(&bytes, &h).map_err(|e| at(e.to_string()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::gpt::build;
    use crate::iso9660;
    use crate::stage1::config::Root;
    use crate::testutil::{FakeSys, Files};

    pub const UUID: &str = "0f0e0d0c-0b0a-0908-0706-050403020100";
    /// [`UUID`] as stored on disk.
    pub const G: [u8; 16] = [
        0x0c, 0x0d, 0x0e, 0x0f, 0x0a, 0x0b, 0x08, 0x09, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,
        0x00,
    ];
    pub const ISO_FILE: &str = "/.smelt/media/smelt/root.squashfs";

    pub fn cfg(size: u64, timeout_secs: u64) -> Config {
        Config {
            root: Root {
                sha256: "00".repeat(32),
                size,
                fstype: "squashfs".into(),
            },
            locate: vec![
                Method::Iso {
                    volume_id: "SMELT_TEST".into(),
                    path: "/smelt/root.squashfs".into(),
                },
                Method::Partition {
                    partuuid: Some(UUID.into()),
                    partlabel: Some("smelt-root-a".into()),
                },
            ],
            modules: vec![],
            timeout: Duration::from_secs(timeout_secs),
        }
    }

    /// sysfs files of one block device; `part` is (disk, number).
    pub fn block(name: &str, dev: &str, bytes: u64, part: Option<(&str, u32)>) -> Files {
        let d = format!("{SYS_BLOCK}/{name}");
        let mut v = vec![
            (format!("{d}/dev"), format!("{dev}\n").into_bytes()),
            (
                format!("{d}/size"),
                format!("{}\n", bytes / 512).into_bytes(),
            ),
        ];
        if let Some((disk, n)) = part {
            v.push((format!("{d}/partition"), format!("{n}\n").into_bytes()));
            v.push((
                format!("{SYS_BLOCK}/{disk}/{name}/dev"),
                format!("{dev}\n").into_bytes(),
            ));
        }
        v
    }

    /// An ISO's first 34 KiB with volume `vid`.
    pub fn iso(vid: &str) -> Vec<u8> {
        let mut v = vec![0u8; iso9660::PVD_OFFSET as usize];
        v.extend(iso9660::pvd(vid));
        v
    }

    pub fn add(sys: &FakeSys, files: Files) {
        sys.files.borrow_mut().extend(files);
    }

    /// A 1 MiB virtio disk with GPT partitions vda1 (`label1`, GUID
    /// `g1`) and vda2 (the root, [`G`]), vda2 holding `image`.
    pub fn gpt_disk(
        sys: &FakeSys,
        name: &str,
        g1: [u8; 16],
        label1: &str,
        g2: [u8; 16],
        image: &[u8],
    ) {
        let disk = build::disk(&[(g1, label1, 34, 1023), (g2, "smelt-root-b", 1024, 2047)]);
        add(sys, block(name, "254:0", 1 << 20, None));
        add(
            sys,
            block(&format!("{name}1"), "254:1", 1000 * 512, Some((name, 1))),
        );
        add(
            sys,
            block(&format!("{name}2"), "254:2", 1024 * 512, Some((name, 2))),
        );
        add(
            sys,
            vec![
                (format!("/dev/{name}"), disk),
                (format!("/dev/{name}2"), image.to_vec()),
                (format!("/dev/{name}1"), vec![]),
            ],
        );
    }

    #[test]
    fn iso_appearing_on_the_third_poll_is_mounted_and_looped() {
        let sys = FakeSys::new()
            .file("/dev/loop-control", "")
            .file(ISO_FILE, "sqsh")
            .dir(SYS_BLOCK);
        let mut sr0 = block("sr0", "11:0", 64 << 10, None);
        sr0.push(("/dev/sr0".into(), iso("SMELT_TEST")));
        sys.later.borrow_mut().extend([vec![], sr0]);
        let f = find(&sys, &cfg(4, 30), None, false).unwrap();
        assert_eq!(
            f,
            Found {
                device: "/dev/loop0".into(),
                what: "iso volume SMELT_TEST on /dev/sr0, /smelt/root.squashfs on /dev/loop0"
                    .into(),
                media: true,
            }
        );
        assert_eq!(sys.clock.get(), 2 * POLL, "found on the third poll");
        assert_eq!(
            sys.calls(),
            [
                "mkdir /.smelt/media 755".to_string(),
                "mount /dev/sr0 /.smelt/media iso9660 0x1 ".to_string(),
                "loop_get_free".to_string(),
                "mknod /dev/loop0 b 7:0".to_string(),
                format!("loop_configure /dev/loop0 {ISO_FILE}"),
            ]
        );
    }

    #[test]
    fn timeout_lists_what_was_tried_and_the_devices_seen() {
        let sys = FakeSys::new();
        add(&sys, block("sr0", "11:0", 0, None));
        add(&sys, block("sda", "8:0", 1 << 20, None));
        add(&sys, block("loop0", "7:0", 0, None));
        add(&sys, vec![("/dev/sr0".into(), vec![])]);
        sys.later
            .borrow_mut()
            .extend([vec![], vec![], block("vda", "254:0", 0, None)]);
        let e = find(&sys, &cfg(4, 1), None, false).unwrap_err();
        assert_eq!(
            e,
            format!(
                "smelt stage1: root not found after 1s: tried iso volume SMELT_TEST (path /smelt/root.squashfs), partition partuuid {UUID} partlabel smelt-root-a ; block devices seen: sda sr0 vda"
            )
        );
        assert_eq!(sys.clock.get(), Duration::from_secs(1));
        // Nodes devtmpfs did not make are made, once; loop devices ignored.
        let calls = sys.calls();
        assert_eq!(calls, ["mknod /dev/sda b 8:0", "mknod /dev/vda b 254:0"]);
        assert!(sys.logs().is_empty(), "{}", sys.logs());
    }

    #[test]
    fn partuuid_wins_over_partlabel_which_is_the_fallback() {
        let sys = FakeSys::new();
        // vda: a stale install labelled smelt-root-a; vdb: the real root.
        gpt_disk(&sys, "vda", [0x22; 16], "smelt-root-a", [0x33; 16], b"old!");
        gpt_disk(&sys, "vdb", [0x44; 16], "other", G, b"sqsh");
        let f = find(&sys, &cfg(4, 1), None, false).unwrap();
        assert_eq!(f.device, "/dev/vdb2");
        assert!(!f.media);
        assert_eq!(f.what, format!("partition /dev/vdb2 (GPT partuuid {UUID})"));
        let sys = FakeSys::new();
        gpt_disk(&sys, "vda", [0x22; 16], "smelt-root-a", [0x33; 16], b"old!");
        let f = find(&sys, &cfg(4, 1), None, false).unwrap();
        assert_eq!(f.what, "partition /dev/vda1 (GPT partlabel smelt-root-a)");
    }

    #[test]
    fn damaged_primary_gpt_falls_back_to_the_backup() {
        let sys = FakeSys::new();
        gpt_disk(&sys, "vda", [0x22; 16], "x", G, b"sqsh");
        {
            let mut files = sys.files.borrow_mut();
            let d = files.get_mut("/dev/vda").unwrap();
            let entries = d[1024..1024 + 128 * 128].to_vec();
            d[512 + 20] ^= 0xff; // primary header CRC broken
            d.resize(1 << 20, 0);
            let last = (1u64 << 20) / 512 - 1;
            let b = build::header_at(&entries, 128, last, 2);
            d[(last * 512) as usize..].copy_from_slice(&b);
        }
        let disk = scan(&sys).into_iter().find(|d| d.name == "vda").unwrap();
        assert_eq!(
            read_gpt(&sys, &disk).unwrap()[1].unique_guid.to_string(),
            UUID
        );
        assert_eq!(
            find(&sys, &cfg(4, 1), None, false).unwrap().device,
            "/dev/vda2"
        );
        // Both copies broken: the primary's error is reported.
        sys.files
            .borrow_mut()
            .get_mut("/dev/vda")
            .unwrap()
            .truncate(4096);
        let e = read_gpt(&sys, &disk).unwrap_err();
        assert!(e.starts_with("/dev/vda: GPT at LBA 1: header CRC32"), "{e}");
    }

    #[test]
    fn unusable_matches_are_reported_once_and_skipped() {
        let sys = FakeSys::new()
            .file("/dev/loop-control", "")
            .file(ISO_FILE, "too long");
        add(&sys, block("sr0", "11:0", 64 << 10, None));
        add(&sys, vec![("/dev/sr0".into(), iso("SMELT_TEST"))]);
        // A partition by partuuid, smaller than the image.
        gpt_disk(&sys, "vda", [0x22; 16], "x", G, b"");
        let big = cfg(1 << 20, 1);
        let e = find(&sys, &big, None, false).unwrap_err();
        assert!(e.contains("block devices seen: sr0 vda vda1 vda2"), "{e}");
        assert_eq!(
            sys.logs(),
            "smelt stage1: not using /dev/sr0: /smelt/root.squashfs is 8 bytes, the root image 1048576\n\
             smelt stage1: not using /dev/vda2: the partition is 524288 bytes, the root image 1048576"
        );
        let mounts = sys
            .calls()
            .iter()
            .filter(|c| c.starts_with("mount "))
            .count();
        let umounts = sys
            .calls()
            .iter()
            .filter(|c| c.starts_with("umount "))
            .count();
        assert_eq!((mounts, umounts), (1, 1));
    }

    #[test]
    fn wrong_volume_id_is_not_a_match() {
        let sys = FakeSys::new().file(ISO_FILE, "sqsh");
        add(&sys, block("sr0", "11:0", 64 << 10, None));
        add(&sys, vec![("/dev/sr0".into(), iso("SMELT_OTHER"))]);
        assert!(find(&sys, &cfg(4, 1), None, false).is_err());
        assert!(sys.calls().is_empty(), "{:?}", sys.calls());
    }
}
