//! Rock Ridge (RRIP 1.10, IEEE P1282 draft) entries in the System Use
//! Sharing Protocol (SUSP 1.10, IEEE P1281) area of directory records.
//!
//! Written: `SP` and `ER` (root `.` only: SUSP §5.3, §5.5), `RR` (the RRIP
//! 1.09 "which entries are present" flags, still read by genisoimage's
//! isoinfo), `PX` (§4.1.1, the 36-byte RRIP 1.10 form without an inode
//! number), `PN` (§4.1.2), `SL` (§4.1.3), `NM` (§4.1.4), `TF` (§4.1.6) and
//! `CE` (SUSP §5.1) for entries that do not fit in the record. Not written:
//! `CL`/`PL`/`RE` (deep directory relocation: the tree is stored as deep as
//! it is, which Linux, libisofs and genisoimage read), `SF`, `ST`.

/// SUSP entry header: signature (2), length (1), version (1).
const HEADER: usize = 4;
/// Bytes of a `CE` entry: header + location, offset, length, each both-endian.
pub const CE_LEN: usize = HEADER + 24;
/// Longest SUSP entry: its length field is one byte.
const MAX_ENTRY: usize = 255;
/// Bytes of an `NM` or `SL` entry before its payload (header + flags).
const NM_SL_HEADER: usize = HEADER + 1;
/// `NM`/`SL` flag: the name or component area continues in the next entry.
const CONTINUE: u8 = 0x01;
/// `SL` component flags (RRIP §4.1.3.1).
const SL_CURRENT: u8 = 0x02;
const SL_PARENT: u8 = 0x04;
const SL_ROOT: u8 = 0x08;

/// RRIP 1.10's registered extension identifier, description and source,
/// as `ER` carries them (RRIP §5.1, the text mkisofs and libisofs write).
const ER_ID: &[u8] = b"RRIP_1991A";
const ER_DES: &[u8] =
    b"THE ROCK RIDGE INTERCHANGE PROTOCOL PROVIDES SUPPORT FOR POSIX FILE SYSTEM SEMANTICS";
const ER_SRC: &[u8] = b"PLEASE CONTACT DISC PUBLISHER FOR SPECIFICATION SOURCE.  SEE PUBLISHER IDENTIFIER IN PRIMARY VOLUME DESCRIPTOR FOR CONTACT INFORMATION.";

/// POSIX file type bits for `PX` (RRIP §4.1.1 uses `st_mode` values).
pub const S_IFDIR: u32 = 0o040000;
pub const S_IFREG: u32 = 0o100000;
pub const S_IFLNK: u32 = 0o120000;
pub const S_IFCHR: u32 = 0o020000;
pub const S_IFBLK: u32 = 0o060000;
pub const S_IFIFO: u32 = 0o010000;
pub const S_IFSOCK: u32 = 0o140000;

fn entry(sig: &[u8; 2], body: &[u8]) -> Vec<u8> {
    debug_assert!(HEADER + body.len() <= MAX_ENTRY);
    let mut e = Vec::with_capacity(HEADER + body.len());
    e.extend_from_slice(sig);
    e.push((HEADER + body.len()) as u8);
    e.push(1); // version
    e.extend_from_slice(body);
    e
}

/// A both-endian 32-bit field (ECMA-119 §7.3.3), as SUSP uses.
pub fn both32(v: u32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&v.to_le_bytes());
    b[4..].copy_from_slice(&v.to_be_bytes());
    b
}

/// `SP`: SUSP is in use; check bytes 0xBE 0xEF, no bytes skipped (SUSP §5.3).
pub fn sp() -> Vec<u8> {
    entry(b"SP", &[0xBE, 0xEF, 0])
}

/// `ER`: the extension is RRIP 1.10 (SUSP §5.5).
pub fn er() -> Vec<u8> {
    let mut body = vec![ER_ID.len() as u8, ER_DES.len() as u8, ER_SRC.len() as u8, 1];
    body.extend_from_slice(ER_ID);
    body.extend_from_slice(ER_DES);
    body.extend_from_slice(ER_SRC);
    entry(b"ER", &body)
}

/// `RR` flags: PX 0x01, PN 0x02, SL 0x04, NM 0x08, TF 0x80 (RRIP 1.09 §4.1.8).
pub fn rr(pn: bool, sl: bool, nm: bool) -> Vec<u8> {
    let flags = 0x01
        | 0x80
        | if pn { 0x02 } else { 0 }
        | if sl { 0x04 } else { 0 }
        | if nm { 0x08 } else { 0 };
    entry(b"RR", &[flags])
}

/// `PX`: mode (type and permission bits), links, owner, group.
pub fn px(mode: u32, nlink: u32, uid: u32, gid: u32) -> Vec<u8> {
    let mut body = Vec::with_capacity(32);
    for v in [mode, nlink, uid, gid] {
        body.extend_from_slice(&both32(v));
    }
    entry(b"PX", &body)
}

/// `PN`: the device number as the high and low words of a 64-bit `dev_t`
/// in glibc's `makedev` encoding, as libisofs writes it (rrip.c). Linux's
/// fs/isofs/rock.c reads that back exactly for majors < 4096 and minors <
/// 256 (its "high == 0, low > 0xff" case); genisoimage's major/minor form
/// would lose the device in libisofs instead.
pub fn pn(major: u32, minor: u32) -> Vec<u8> {
    let (major, minor) = (u64::from(major), u64::from(minor));
    let dev = ((major & 0xfff) << 8)
        | ((major & 0xffff_f000) << 32)
        | (minor & 0xff)
        | ((minor & 0xffff_ff00) << 12);
    let mut body = Vec::with_capacity(16);
    body.extend_from_slice(&both32((dev >> 32) as u32));
    body.extend_from_slice(&both32(dev as u32));
    entry(b"PN", &body)
}

/// `TF` with modify, access and attribute-change times, 7-byte form
/// (RRIP §4.1.6 flags 0x02 | 0x04 | 0x08), all the same `stamp`.
pub fn tf(stamp: [u8; 7]) -> Vec<u8> {
    let mut body = vec![0x0E];
    for _ in 0..3 {
        body.extend_from_slice(&stamp);
    }
    entry(b"TF", &body)
}

/// `NM` entries holding `name`, split where one entry is full.
pub fn nm(name: &[u8]) -> Vec<Vec<u8>> {
    let room = MAX_ENTRY - NM_SL_HEADER;
    let parts: Vec<&[u8]> = name.chunks(room).collect();
    parts
        .iter()
        .enumerate()
        .map(|(i, part)| {
            let flags = if i + 1 < parts.len() { CONTINUE } else { 0 };
            let mut body = vec![flags];
            body.extend_from_slice(part);
            entry(b"NM", &body)
        })
        .collect()
}

/// `SL` entries for a symlink target: one component record per path
/// component (`/` as ROOT, `.` CURRENT, `..` PARENT), a long component split
/// with its CONTINUE flag, and new `SL` entries (CONTINUE on the previous
/// one) when an entry fills up.
pub fn sl(target: &[u8]) -> Vec<Vec<u8>> {
    let mut comps: Vec<(u8, &[u8])> = Vec::new();
    if target.starts_with(b"/") {
        comps.push((SL_ROOT, b""));
    }
    for part in target.split(|&c| c == b'/').filter(|p| !p.is_empty()) {
        match part {
            b"." => comps.push((SL_CURRENT, b"")),
            b".." => comps.push((SL_PARENT, b"")),
            _ => {
                let chunks: Vec<&[u8]> = part.chunks(MAX_ENTRY - NM_SL_HEADER - 2).collect();
                for (i, c) in chunks.iter().enumerate() {
                    comps.push((if i + 1 < chunks.len() { CONTINUE } else { 0 }, c));
                }
            }
        }
    }
    let mut bodies: Vec<Vec<u8>> = vec![vec![0]];
    for (flags, content) in comps {
        let rec_len = 2 + content.len();
        if HEADER + bodies.last().map_or(0, Vec::len) + rec_len > MAX_ENTRY {
            if let Some(prev) = bodies.last_mut() {
                prev[0] = CONTINUE;
            }
            bodies.push(vec![0]);
        }
        if let Some(body) = bodies.last_mut() {
            body.extend_from_slice(&[flags, content.len() as u8]);
            body.extend_from_slice(content);
        }
    }
    bodies.iter().map(|b| entry(b"SL", b)).collect()
}

/// `CE`: the System Use area continues at `lba`, `offset`, for `len` bytes.
pub fn ce(lba: u32, offset: u32, len: u32) -> Vec<u8> {
    let mut body = Vec::with_capacity(24);
    for v in [lba, offset, len] {
        body.extend_from_slice(&both32(v));
    }
    entry(b"CE", &body)
}

/// A record's SUSP entries split into the part that stays in the directory
/// record and continuation areas (each < one sector), every part but the
/// last ending in a `CE` to the next.
#[derive(Clone, Debug, Default)]
pub struct Split {
    pub inline: Vec<Vec<u8>>,
    /// Continuation area contents (without their trailing `CE`).
    pub areas: Vec<Vec<Vec<u8>>>,
}

/// Splits `entries`: as many as fit in `room` bytes stay inline; the rest
/// go to continuation areas of at most `area` bytes, in order.
pub fn split(entries: Vec<Vec<u8>>, room: usize, area: usize) -> Split {
    let total: usize = entries.iter().map(Vec::len).sum();
    if total <= room {
        return Split {
            inline: entries,
            areas: Vec::new(),
        };
    }
    let mut parts: Vec<Vec<Vec<u8>>> = vec![Vec::new()];
    let mut cap = room;
    let mut used = 0;
    let mut left = total;
    for e in entries {
        // The part is final if everything left fits without a CE.
        let fits_final = used + left <= cap;
        if !fits_final && used + e.len() + CE_LEN > cap {
            parts.push(Vec::new());
            cap = area;
            used = 0;
        }
        used += e.len();
        left -= e.len();
        if let Some(p) = parts.last_mut() {
            p.push(e);
        }
    }
    let inline = parts.remove(0);
    Split {
        inline,
        areas: parts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sl_components() {
        let e = sl(b"/usr/../bin/./x");
        assert_eq!(e.len(), 1);
        assert_eq!(&e[0][..5], &[b'S', b'L', 5 + 2 + 5 + 2 + 5 + 2 + 3, 1, 0]);
        assert_eq!(
            &e[0][5..],
            b"\x08\x00\x00\x03usr\x04\x00\x00\x03bin\x02\x00\x00\x01x"
        );
        let long = vec![b'a'; 600];
        let e = sl(&long);
        assert!(e.len() >= 3 && e.iter().all(|x| x.len() <= 255));
        assert_eq!(e[0][4], CONTINUE, "first SL continues");
        assert_eq!(e.last().unwrap()[4], 0);
    }

    #[test]
    fn nm_splits_long_names() {
        let e = nm(&[b'n'; 300]);
        assert_eq!(e.len(), 2);
        assert_eq!((e[0][2], e[0][4]), (255, CONTINUE));
        assert_eq!(e[1].len(), 5 + 300 - 250);
    }

    #[test]
    fn split_keeps_room_for_ce() {
        let entries = vec![vec![0u8; 100], vec![1u8; 100], vec![2u8; 100]];
        let s = split(entries.clone(), 300, 2048);
        assert_eq!((s.inline.len(), s.areas.len()), (3, 0));
        let s = split(entries, 200, 2048);
        assert_eq!(s.inline.len(), 1, "100 + 28 fits, 200 + 28 does not");
        assert_eq!(s.areas, vec![vec![vec![1u8; 100], vec![2u8; 100]]]);
    }
}
