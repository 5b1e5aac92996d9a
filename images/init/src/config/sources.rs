//! Where a NoCloud seed comes from at boot, after the command line's
//! `ds=nocloud;s=URL` (which needs the network, see [`crate::net`]):
//!
//! 1. the artifact's own slot: a whole disk (a raw disk, a USB stick, a CD)
//!    with smelt's slot index at byte [`INDEX_OFFSET`] whose `nocloud-fat`
//!    slot holds a FAT file system with a valid boot sector;
//! 2. any disk or partition with a FAT or ISO 9660 file system labelled
//!    `CIDATA`/`cidata` (a second disk made by `cloud-localds`, the raw
//!    disk's CIDATA partition seen by another OS image);
//! 3. the config initrd: `/smelt/nocloud/` in the initramfs, which stage 1
//!    carries into the new root as [`CARRIED`].
//!
//! The slot index (docs/slots.md) is 512 bytes: magic `SMELTSLT`, version
//! 1, a count of 64-byte entries (kind, offset, length, FAT volume id,
//! mtime), and a CRC-32 of bytes 0..508 at 508. It is checked whole
//! before any entry is used. A source whose `meta-data`, `user-data` and
//! `network-config` are all empty (a slot nothing was injected into) does
//! not count: the next source is tried.
//!
//! FAT slots and partitions are read with [`crate::disk::fat`], not
//! mounted: no vfat module, loop device or mount point is needed, and a
//! slot whose boot sector an interrupted `smelt inject` cleared is not a
//! file system at all. ISO 9660 `cidata` volumes are mounted read-only.

use std::collections::BTreeMap;

use crate::disk::fat::Fat;
use crate::iso9660;
use crate::locate::{self, BlockDev};
use crate::net;
use crate::sys::Sys;

use super::Seed;

/// Byte offset of the slot index in a disk or ISO image.
pub const INDEX_OFFSET: u64 = 24576;
const INDEX_SIZE: usize = 512;
const INDEX_MAGIC: &[u8; 8] = b"SMELTSLT";
const INDEX_VERSION: u32 = 1;
const MAX_ENTRIES: usize = 4;
const ENTRY_SIZE: usize = 64;
const KIND_NOCLOUD_FAT: &[u8] = b"nocloud-fat";
/// Where the config initrd's files are in the initramfs.
pub const INITRD: &str = "/smelt/nocloud";
/// Where stage 1 leaves them in the new root.
pub const CARRIED: &str = "/.smelt/nocloud";
/// The config initrd's marker file, not a seed file.
const MARKER: &str = ".smelt-slot";
/// Where an ISO 9660 `cidata` volume is mounted while it is read.
const ISO_MOUNT: &str = "/run/smelt/cidata";

/// One `nocloud-fat` slot of an index: byte offset and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub offset: u64,
    pub length: u64,
}

/// CRC-32 (IEEE 802.3, reflected, as GPT and zlib).
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

/// The `nocloud-fat` slots of an index sector; the error names the field.
pub fn parse_index(b: &[u8]) -> Result<Vec<Slot>, String> {
    if b.len() < INDEX_SIZE {
        return Err(format!("slot index: {} bytes, want {INDEX_SIZE}", b.len()));
    }
    if &b[..8] != INDEX_MAGIC {
        return Err("slot index: no SMELTSLT magic at byte 0".into());
    }
    let word = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    let long = |o: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[o..o + 8]);
        u64::from_le_bytes(a)
    };
    if word(508) != crc32(&b[..508]) {
        return Err("slot index: CRC-32 at byte 508 does not match".into());
    }
    if word(8) != INDEX_VERSION {
        return Err(format!("slot index: version {} at byte 8, want 1", word(8)));
    }
    let count = word(12) as usize;
    if count == 0 || count > MAX_ENTRIES {
        return Err(format!("slot index: {count} entries at byte 12 (1..=4)"));
    }
    let mut out = Vec::new();
    for i in 0..count {
        let e = 16 + i * ENTRY_SIZE;
        let kind = &b[e..e + 16];
        let end = kind.iter().position(|&c| c == 0).unwrap_or(16);
        if &kind[..end] == KIND_NOCLOUD_FAT {
            out.push(Slot {
                offset: long(e + 16),
                length: long(e + 24),
            });
        }
    }
    Ok(out)
}

impl Seed {
    /// Nothing was put in: all three NoCloud files empty or absent.
    pub fn is_empty(&self) -> bool {
        self.meta_data.is_empty()
            && self.user_data.is_empty()
            && self.network_config.as_ref().is_none_or(|n| n.is_empty())
    }

    /// A seed from a source's files (`meta-data`, `user-data`,
    /// `network-config`; the rest are extra files).
    pub fn from_files(source: String, mut files: BTreeMap<String, Vec<u8>>) -> Seed {
        files.remove(MARKER);
        Seed {
            source,
            meta_data: files.remove("meta-data").unwrap_or_default(),
            user_data: files.remove("user-data").unwrap_or_default(),
            network_config: files.remove("network-config"),
            files,
        }
    }
}

/// Whether the network was brought up while looking for the seed, and
/// the leases it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Network {
    Untouched,
    Dhcp(Vec<net::Lease>),
}

/// The seed this boot uses, first found wins: `ds=nocloud;s=URL` on the
/// command line (DHCP on every ethernet link first, then an HTTP fetch),
/// then [`find_local`]. A failed fetch is one log line and the local
/// sources are tried.
pub fn find(sys: &dyn Sys) -> (Option<Seed>, Network) {
    let cmdline = sys.read_file("/proc/cmdline").unwrap_or_default();
    let Some(url) = net::http::nocloud_url(&String::from_utf8_lossy(&cmdline)) else {
        return (find_local(sys), Network::Untouched);
    };
    let leases = net::dhcp_all(sys, net::apply::DHCP_TIMEOUT);
    if leases.is_empty() {
        sys.log(&format!("smelt: config {url}: no DHCP lease on any link"));
    }
    match net::http::nocloud_fetch(&url) {
        Ok((meta_data, user_data, network_config)) => {
            let seed = Seed {
                source: url,
                meta_data,
                user_data,
                network_config,
                files: BTreeMap::new(),
            };
            (Some(seed), Network::Dhcp(leases))
        }
        Err(e) => {
            sys.log(&format!("smelt: config {url}: {e}"));
            (find_local(sys), Network::Dhcp(leases))
        }
    }
}

/// The first non-empty seed of the block-device and initrd sources; every
/// source that was tried and failed is one log line.
pub fn find_local(sys: &dyn Sys) -> Option<Seed> {
    let devs = locate::scan(sys);
    let found = own_slot(sys, &devs)
        .or_else(|| cidata_volume(sys, &devs))
        .or_else(|| initrd(sys, INITRD))
        .or_else(|| initrd(sys, CARRIED));
    found.filter(|s| !s.is_empty())
}

/// Use `seed` unless it is empty; otherwise say why it was passed over.
fn non_empty(sys: &dyn Sys, seed: Seed) -> Option<Seed> {
    if seed.is_empty() {
        sys.log(&format!(
            "smelt: config {}: empty, looking further",
            seed.source
        ));
        None
    } else {
        Some(seed)
    }
}

fn own_slot(sys: &dyn Sys, devs: &[BlockDev]) -> Option<Seed> {
    for d in devs.iter().filter(|d| d.partition.is_none() && d.bytes > 0) {
        let node = d.node();
        let Ok(b) = sys.read_at(&node, INDEX_OFFSET, INDEX_SIZE) else {
            continue;
        };
        if b.get(..8) != Some(INDEX_MAGIC.as_slice()) {
            continue;
        }
        let slots = match parse_index(&b) {
            Ok(s) => s,
            Err(e) => {
                sys.log(&format!("smelt: config slot on {node}: {e}"));
                continue;
            }
        };
        for s in slots {
            let source = format!("slot {node}@{}", s.offset);
            let read = Fat::open(sys, &node, s.offset, s.length).and_then(|f| f.read_all(sys));
            match read {
                Ok(files) => {
                    if let Some(seed) = non_empty(sys, Seed::from_files(source, files)) {
                        return Some(seed);
                    }
                }
                Err(e) => sys.log(&format!("smelt: config {source}: not used: {e}")),
            }
        }
    }
    None
}

fn cidata_volume(sys: &dyn Sys, devs: &[BlockDev]) -> Option<Seed> {
    for d in devs.iter().filter(|d| d.bytes > 0) {
        let node = d.node();
        if let Ok(fat) = Fat::open(sys, &node, 0, d.bytes) {
            if !fat
                .label(sys)
                .is_ok_and(|l| l.eq_ignore_ascii_case("cidata"))
            {
                continue;
            }
            let source = format!("CIDATA {node}");
            match fat.read_all(sys) {
                Ok(files) => {
                    if let Some(seed) = non_empty(sys, Seed::from_files(source, files)) {
                        return Some(seed);
                    }
                }
                Err(e) => sys.log(&format!("smelt: config {source}: not used: {e}")),
            }
            continue;
        }
        let pvd = sys.read_at(&node, iso9660::PVD_OFFSET, iso9660::SECTOR as usize);
        let Some(id) = pvd.ok().and_then(|s| iso9660::volume_id(&s)) else {
            continue;
        };
        if !id.eq_ignore_ascii_case("cidata") {
            continue;
        }
        match iso_files(sys, &node) {
            Ok(files) => {
                if let Some(seed) =
                    non_empty(sys, Seed::from_files(format!("cidata {node}"), files))
                {
                    return Some(seed);
                }
            }
            Err(e) => sys.log(&format!("smelt: config cidata {node}: not used: {e}")),
        }
    }
    None
}

/// The top-level files of an ISO 9660 `cidata` volume (cloud-localds's
/// format), read through the kernel's isofs.
fn iso_files(sys: &dyn Sys, node: &str) -> Result<BTreeMap<String, Vec<u8>>, String> {
    sys.mkdir_all(ISO_MOUNT, 0o755)
        .map_err(|e| format!("creating {ISO_MOUNT}: {e}"))?;
    sys.mount(node, ISO_MOUNT, "iso9660", libc::MS_RDONLY, "")
        .map_err(|e| format!("mounting on {ISO_MOUNT}: {e}"))?;
    let files = read_dir_files(sys, ISO_MOUNT);
    if let Err(e) = sys.umount(ISO_MOUNT) {
        sys.log(&format!("smelt: unmounting {ISO_MOUNT}: {e}"));
    }
    Ok(files)
}

/// The regular files directly and below `dir`, by relative path.
fn read_dir_files(sys: &dyn Sys, dir: &str) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![(dir.to_string(), String::new(), 0)];
    while let Some((abs, rel, depth)) = todo.pop() {
        for name in sys.list_dir(&abs).unwrap_or_default() {
            let (a, r) = (format!("{abs}/{name}"), format!("{rel}{name}"));
            match sys.read_file(&a) {
                Ok(data) => {
                    out.insert(r, data);
                }
                Err(_) if depth < 8 => todo.push((a, format!("{r}/"), depth + 1)),
                Err(_) => {}
            }
        }
    }
    out
}

fn initrd(sys: &dyn Sys, dir: &str) -> Option<Seed> {
    if !sys.exists(dir) {
        return None;
    }
    let files = read_dir_files(sys, dir);
    non_empty(sys, Seed::from_files("initrd".into(), files))
}

/// Stage 1: copy the config initrd's files into the new root at
/// [`CARRIED`], which is where the main init looks after the switch.
pub fn carry_initrd_seed(sys: &dyn Sys, new_root: &str) {
    if !sys.exists(INITRD) {
        return;
    }
    for (rel, data) in read_dir_files(sys, INITRD) {
        let to = format!("{new_root}{CARRIED}/{rel}");
        let dir = to.rsplit_once('/').map(|(d, _)| d).unwrap_or(&to);
        if let Err(e) = sys
            .mkdir_all(dir, 0o755)
            .and_then(|()| sys.write_file(&to, &data))
        {
            sys.log(&format!(
                "smelt stage1: carrying the config initrd: {to}: {e}"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::FakeSys;

    pub fn index(slots: &[(u64, u64)]) -> Vec<u8> {
        let mut b = vec![0u8; INDEX_SIZE];
        b[..8].copy_from_slice(INDEX_MAGIC);
        b[8..12].copy_from_slice(&1u32.to_le_bytes());
        b[12..16].copy_from_slice(&(slots.len() as u32).to_le_bytes());
        for (i, (off, len)) in slots.iter().enumerate() {
            let e = 16 + i * ENTRY_SIZE;
            b[e..e + 11].copy_from_slice(KIND_NOCLOUD_FAT);
            b[e + 16..e + 24].copy_from_slice(&off.to_le_bytes());
            b[e + 24..e + 32].copy_from_slice(&len.to_le_bytes());
        }
        let crc = crc32(&b[..508]);
        b[508..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// A FAT image from dosfstools + mtools holding `files`.
    fn fat_image(label: &str, files: &[(&str, &str)]) -> Vec<u8> {
        use std::process::Command;
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("f.img");
        let o = Command::new("mkfs.fat")
            .args(["-C", "-n", label])
            .arg(&img)
            .arg("1024")
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
        for (name, data) in files {
            let src = dir.path().join("src");
            std::fs::write(&src, data).unwrap();
            let o = Command::new("mcopy")
                .arg("-i")
                .arg(&img)
                .arg(&src)
                .arg(format!("::{name}"))
                .output()
                .unwrap();
            assert!(o.status.success(), "{o:?}");
        }
        std::fs::read(img).unwrap()
    }

    fn block(sys: &FakeSys, name: &str, part: Option<u32>, bytes: Vec<u8>) {
        let dir = format!("{}/{name}", locate::SYS_BLOCK);
        let mut f = sys.files.borrow_mut();
        f.insert(format!("{dir}/dev"), b"8:0".to_vec());
        f.insert(
            format!("{dir}/size"),
            format!("{}", bytes.len() / 512).into_bytes(),
        );
        if let Some(p) = part {
            f.insert(format!("{dir}/partition"), p.to_string().into_bytes());
        }
        f.insert(format!("/dev/{name}"), bytes);
        drop(f);
        sys.dirs.borrow_mut().insert(dir);
    }

    /// A disk with an index at 24 KiB and `slot` at 1 MiB.
    fn disk_with_slot(slot: Vec<u8>) -> Vec<u8> {
        let mut d = vec![0u8; 1 << 20];
        d[INDEX_OFFSET as usize..INDEX_OFFSET as usize + 512]
            .copy_from_slice(&index(&[(1 << 20, slot.len() as u64)]));
        d.extend(slot);
        d
    }

    #[test]
    fn the_index_is_checked_whole() {
        let good = index(&[(1 << 20, 4 << 20)]);
        assert_eq!(
            parse_index(&good).unwrap(),
            [Slot {
                offset: 1 << 20,
                length: 4 << 20
            }]
        );
        for (at, want) in [
            (0, "no SMELTSLT magic at byte 0"),
            (9, "CRC-32 at byte 508"),
            (40, "CRC-32 at byte 508"),
            (509, "CRC-32 at byte 508"),
        ] {
            let mut b = good.clone();
            b[at] ^= 0x40;
            let e = parse_index(&b).unwrap_err();
            assert!(e.contains(want), "byte {at}: {e}");
        }
        let mut b = good.clone();
        b[12] = 9;
        let crc = crc32(&b[..508]);
        b[508..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            parse_index(&b).unwrap_err(),
            "slot index: 9 entries at byte 12 (1..=4)"
        );
    }

    #[test]
    fn crc32_is_the_ieee_one() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn own_slot_wins_and_extra_files_are_kept() {
        let slot = fat_image(
            "CIDATA",
            &[
                ("meta-data", "instance-id: slot\n"),
                ("user-data", "#cloud-config\n"),
                ("motd", "hi\n"),
            ],
        );
        let other = fat_image("CIDATA", &[("user-data", "#cloud-config\nother\n")]);
        let sys = FakeSys::new();
        block(&sys, "vda", None, disk_with_slot(slot));
        block(&sys, "vdb", None, other);
        sys.files
            .borrow_mut()
            .insert(format!("{INITRD}/user-data"), b"#cloud-config\n".to_vec());
        let seed = find_local(&sys).unwrap();
        assert_eq!(seed.source, "slot /dev/vda@1048576");
        assert_eq!(seed.meta_data, b"instance-id: slot\n");
        // mtools stores a short all-lower-case name as 8.3 upper case.
        assert_eq!(seed.files["MOTD"], b"hi\n");
    }

    #[test]
    fn an_empty_slot_passes_to_a_cidata_disk_then_the_initrd() {
        let sys = FakeSys::new();
        let empty = fat_image("CIDATA", &[("meta-data", ""), ("user-data", "")]);
        block(&sys, "vda", None, disk_with_slot(empty));
        block(
            &sys,
            "vdb",
            Some(1),
            fat_image("cidata", &[("user-data", "#cloud-config\nfrom: disk\n")]),
        );
        let seed = find_local(&sys).unwrap();
        assert_eq!(seed.source, "CIDATA /dev/vdb");
        assert!(
            sys.logs().contains("config slot /dev/vda@1048576: empty"),
            "{}",
            sys.logs()
        );

        let sys = FakeSys::new();
        sys.files
            .borrow_mut()
            .insert(format!("{CARRIED}/user-data"), b"#cloud-config\n".to_vec());
        sys.files.borrow_mut().insert(
            format!("{CARRIED}/{MARKER}"),
            b"smelt-nocloud-initrd v1\n".to_vec(),
        );
        sys.dirs.borrow_mut().insert(CARRIED.into());
        let seed = find_local(&sys).unwrap();
        assert_eq!(seed.source, "initrd");
        assert!(seed.files.is_empty(), "the marker is no seed file");
    }

    #[test]
    fn a_slot_whose_boot_sector_was_cleared_is_not_read() {
        let mut slot = fat_image("CIDATA", &[("user-data", "#cloud-config\nhalf\n")]);
        slot[..512].fill(0);
        let sys = FakeSys::new();
        block(&sys, "vda", None, disk_with_slot(slot));
        assert!(find_local(&sys).is_none());
        assert!(
            sys.logs()
                .contains("config slot /dev/vda@1048576: not used: /dev/vda: no FAT boot sector signature at byte 1049086"),
            "{}",
            sys.logs()
        );
    }

    #[test]
    fn other_labels_are_not_config() {
        let sys = FakeSys::new();
        block(
            &sys,
            "vdb",
            None,
            fat_image("DATA", &[("user-data", "#cloud-config\n")]),
        );
        assert!(find_local(&sys).is_none());
    }

    #[test]
    fn stage1_carries_the_config_initrd() {
        let sys = FakeSys::new();
        sys.files
            .borrow_mut()
            .insert(format!("{INITRD}/user-data"), b"#cloud-config\n".to_vec());
        sys.dirs.borrow_mut().insert(INITRD.into());
        carry_initrd_seed(&sys, "/sysroot");
        assert_eq!(
            sys.read_file("/sysroot/.smelt/nocloud/user-data").unwrap(),
            b"#cloud-config\n"
        );
    }
}
