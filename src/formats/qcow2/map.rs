//! Reading one thing back from a qcow2 file: where a guest byte is stored
//! (section "Cluster mapping" of qemu's docs/interop/qcow2.txt), so
//! `smelt inject` can rewrite clusters the writer kept allocated
//! ([`super::Qcow2Options::keep_allocated`]) in place.
//!
//! Read: the v2/v3 header (refused: encryption, a backing file, any
//! incompatible feature bit), the L1 table, L2 entries on demand. Only
//! stored, uncompressed, unshared (COPIED) clusters map; unallocated,
//! zero-flagged, compressed and shared clusters are errors naming the
//! guest byte.

use std::io::{Read, Seek, SeekFrom};

use super::{MAGIC, OFLAG_COPIED, Qcow2Error};

/// A stretch of guest bytes stored contiguously in the qcow2 file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostExtent {
    pub guest: u64,
    pub host: u64,
    pub len: u64,
}

/// The guest-to-host mapping of a qcow2 file (section "Cluster mapping"):
/// its header and L1 table; L2 entries are read as needed. Only stored,
/// uncompressed clusters map; anything else is an error naming the guest
/// byte, since the caller means to write in place.
#[derive(Clone, Debug)]
pub struct Qcow2Map {
    cluster_bits: u32,
    size: u64,
    file_len: u64,
    l1: Vec<u64>,
}

/// L1/L2 entry bits 9-55: a host offset (section "Cluster mapping").
const OFFSET_MASK: u64 = 0x00FF_FFFF_FFFF_FE00;
/// L2 entry bit 62: compressed cluster.
const OFLAG_COMPRESSED: u64 = 1 << 62;
/// L2 entry bit 0 (v3): the cluster reads as zeros.
const OFLAG_ZERO: u64 = 1;
/// L1 tables larger than this are refused (32 MiB: 2^22 entries, 2 PiB of
/// guest with 64 KiB clusters).
const MAX_L1_BYTES: u64 = 32 << 20;

fn read_exact_at<R: Read + Seek>(f: &mut R, offset: u64, buf: &mut [u8]) -> Result<(), Qcow2Error> {
    f.seek(SeekFrom::Start(offset))
        .and_then(|_| f.read_exact(buf))
        .map_err(|source| Qcow2Error::Read { offset, source })
}

impl Qcow2Map {
    /// Reads and checks the header (v2 or v3, no encryption, backing file
    /// or incompatible features) and the L1 table.
    pub fn open<R: Read + Seek>(f: &mut R) -> Result<Qcow2Map, Qcow2Error> {
        let file_len = f
            .seek(SeekFrom::End(0))
            .map_err(|source| Qcow2Error::Read { offset: 0, source })?;
        let mut h = [0u8; 104];
        let n = (file_len.min(104)) as usize;
        read_exact_at(f, 0, &mut h[..n])?;
        if n < 72 || &h[..4] != MAGIC {
            return Err(Qcow2Error::NotQcow2(format!(
                "no \"QFI\\xfb\" header ({n} bytes)"
            )));
        }
        let be32 = |o: usize| u32::from_be_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]);
        let be64 = |o: usize| (u64::from(be32(o)) << 32) | u64::from(be32(o + 4));
        let unsupported = |offset, what: String| Qcow2Error::Unsupported { offset, what };
        let version = be32(4);
        if !(2..=3).contains(&version) {
            return Err(unsupported(4, format!("version {version}")));
        }
        if be64(8) != 0 {
            return Err(unsupported(8, "a backing file".into()));
        }
        let cluster_bits = be32(20);
        if !(9..=21).contains(&cluster_bits) {
            return Err(unsupported(20, format!("cluster_bits {cluster_bits}")));
        }
        if be32(32) != 0 {
            return Err(unsupported(32, "encryption".into()));
        }
        if version == 3 {
            if n < 104 {
                return Err(Qcow2Error::NotQcow2(
                    "v3 header shorter than 104 bytes".into(),
                ));
            }
            let features = be64(72);
            if features != 0 {
                return Err(unsupported(
                    72,
                    format!("incompatible features {features:#x}"),
                ));
            }
        }
        let (l1_size, l1_offset) = (u64::from(be32(36)), be64(40));
        let size = be64(24);
        let needed = size.div_ceil(1 << (2 * cluster_bits - 3));
        if l1_size < needed || l1_size * 8 > MAX_L1_BYTES {
            return Err(unsupported(
                36,
                format!("l1_size {l1_size} for a {size}-byte disk"),
            ));
        }
        let mut raw = vec![0u8; (l1_size * 8) as usize];
        if l1_size > 0 {
            read_exact_at(f, l1_offset, &mut raw)?;
        }
        let l1 = raw
            .chunks_exact(8)
            .map(|c| u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect();
        Ok(Qcow2Map {
            cluster_bits,
            size,
            file_len,
            l1,
        })
    }

    pub fn virtual_size(&self) -> u64 {
        self.size
    }

    pub fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }

    /// The host offset of guest byte `guest`, which must lie in a stored,
    /// uncompressed cluster.
    pub fn host_offset<R: Read + Seek>(&self, f: &mut R, guest: u64) -> Result<u64, Qcow2Error> {
        let unmapped = |what: &str| Qcow2Error::Unmapped {
            guest,
            what: what.into(),
        };
        if guest >= self.size {
            return Err(unmapped("past the end of the disk"));
        }
        let l2_bits = self.cluster_bits - 3;
        let l1_index = (guest >> (self.cluster_bits + l2_bits)) as usize;
        let l2_offset = self.l1.get(l1_index).copied().unwrap_or(0) & OFFSET_MASK;
        if l2_offset == 0 {
            return Err(unmapped("cluster not allocated (no L2 table)"));
        }
        let l2_index = (guest >> self.cluster_bits) & ((1 << l2_bits) - 1);
        let mut e = [0u8; 8];
        read_exact_at(f, l2_offset + l2_index * 8, &mut e)?;
        let entry = u64::from_be_bytes(e);
        if entry & OFLAG_COMPRESSED != 0 {
            return Err(unmapped(
                "cluster is compressed (rewrite the image without -c)",
            ));
        }
        if entry & OFLAG_ZERO != 0 {
            return Err(unmapped("cluster is a zero cluster, not stored"));
        }
        let host = entry & OFFSET_MASK;
        if host == 0 {
            return Err(unmapped("cluster not allocated"));
        }
        // COPIED: refcount exactly 1. Without it the cluster is shared (an
        // internal snapshot), and writing it would change the snapshot too.
        if entry & OFLAG_COPIED == 0 {
            return Err(unmapped(
                "cluster is shared (no COPIED flag: the image has snapshots)",
            ));
        }
        if host < self.cluster_size() {
            return Err(unmapped("cluster maps onto the qcow2 header"));
        }
        if host + self.cluster_size() > self.file_len.next_multiple_of(self.cluster_size()) {
            return Err(unmapped("cluster lies past the end of the file"));
        }
        Ok(host + (guest & (self.cluster_size() - 1)))
    }

    /// Host extents covering guest bytes `range`, split at clusters and
    /// merged where the clusters are adjacent in the file too.
    pub fn host_extents<R: Read + Seek>(
        &self,
        f: &mut R,
        range: std::ops::Range<u64>,
    ) -> Result<Vec<HostExtent>, Qcow2Error> {
        let mut out: Vec<HostExtent> = Vec::new();
        let mut g = range.start;
        while g < range.end {
            let next = ((g >> self.cluster_bits) + 1) << self.cluster_bits;
            let len = next.min(range.end) - g;
            let host = self.host_offset(f, g)?;
            match out.last_mut() {
                Some(l) if l.host + l.len == host => l.len += len,
                _ => out.push(HostExtent {
                    guest: g,
                    host,
                    len,
                }),
            }
            g += len;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;
    use std::process::Command;

    use super::super::tests::{MIB, mapped_bytes};
    use super::super::{CLUSTER_SIZE, Qcow2Options, write_qcow2_with};
    use super::*;
    use crate::tree::testutil::run;

    #[test]
    fn kept_ranges_are_stored_and_map_to_the_host() {
        let tmp = tempfile::tempdir().unwrap();
        let mut raw = vec![0u8; (8 * MIB) as usize];
        raw[100] = 1;
        let keep = vec![24_576..25_088, 4 * MIB + 10..5 * MIB];
        let path = tmp.path().join("k.qcow2");
        let mut out = std::fs::File::create(&path).unwrap();
        let opts = Qcow2Options {
            keep_allocated: keep.clone(),
        };
        let info = write_qcow2_with(&mut Cursor::new(&raw), 8 * MIB, &opts, &mut out).unwrap();
        drop(out);
        // Cluster 0 (data and index) and clusters 64..80 (the 1 MiB range).
        assert_eq!(info.data_clusters, 17);
        let check = run(Command::new("qemu-img").args(["check"]).arg(&path));
        assert!(check.contains("No errors"), "{check}");
        let map: serde_json::Value = serde_json::from_str(&run(Command::new("qemu-img")
            .args(["map", "--output=json"])
            .arg(&path)))
        .unwrap();
        assert_eq!(mapped_bytes(&map), 17 * CLUSTER_SIZE);
        let mut f = std::fs::File::open(&path).unwrap();
        let m = Qcow2Map::open(&mut f).unwrap();
        assert_eq!(m.virtual_size(), 8 * MIB);
        // Every extent agrees with qemu-img map's offsets.
        let ext = m.host_extents(&mut f, 4 * MIB + 10..5 * MIB).unwrap();
        assert_eq!(ext.len(), 1, "{ext:?}");
        let qemu = map
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["start"] == 4 * MIB)
            .unwrap();
        assert_eq!(ext[0].host, qemu["offset"].as_u64().unwrap() + 10);
        assert_eq!(ext[0].len, MIB - 10);
        let e = m.host_offset(&mut f, 2 * MIB).unwrap_err().to_string();
        assert_eq!(e, "qcow2 guest byte 2097152: cluster not allocated");
        let e = m.host_offset(&mut f, 9 * MIB).unwrap_err().to_string();
        assert!(e.contains("past the end"), "{e}");
        let bad = Qcow2Options {
            keep_allocated: vec![0..MIB, 0..9 * MIB],
        };
        let e = write_qcow2_with(&mut Cursor::new(&raw), 8 * MIB, &bad, &mut Vec::new());
        assert!(matches!(e, Err(Qcow2Error::KeepOutside { .. })));
    }

    #[test]
    fn reader_refuses_compressed_and_foreign_images() {
        let tmp = tempfile::tempdir().unwrap();
        let raw = tmp.path().join("r.raw");
        std::fs::write(&raw, vec![0x41u8; MIB as usize]).unwrap(); // compressible
        let c = tmp.path().join("c.qcow2");
        run(Command::new("qemu-img")
            .args(["convert", "-c", "-O", "qcow2"])
            .arg(&raw)
            .arg(&c));
        let mut f = std::fs::File::open(&c).unwrap();
        let m = Qcow2Map::open(&mut f).unwrap();
        let e = m.host_offset(&mut f, 0).unwrap_err().to_string();
        assert!(e.contains("compressed"), "{e}");
        let mut f = std::fs::File::open(&raw).unwrap();
        assert!(matches!(
            Qcow2Map::open(&mut f),
            Err(Qcow2Error::NotQcow2(_))
        ));
        let mut hdr = std::fs::read(&c).unwrap();
        hdr[8 * 9 + 7] = 1; // incompatible feature bit 0 (dirty)
        let e = Qcow2Map::open(&mut Cursor::new(hdr))
            .unwrap_err()
            .to_string();
        assert_eq!(e, "qcow2 header byte 72: incompatible features 0x1");
    }
}
