//! Directory entries: 8.3 short entries (fatgen103 §6), VFAT long-name
//! entries (§7) and the short names generated for long names.

use std::collections::HashSet;

use super::geometry::DIR_ENTRY;

/// `DIR_Attr` bits (fatgen103 §6).
pub const ATTR_DIRECTORY: u8 = 0x10;
pub const ATTR_ARCHIVE: u8 = 0x20;
pub const ATTR_VOLUME_ID: u8 = 0x08;
/// `ATTR_READ_ONLY | ATTR_HIDDEN | ATTR_SYSTEM | ATTR_VOLUME_ID`: marks a
/// long-name entry (§7).
const ATTR_LONG_NAME: u8 = 0x0F;
/// `LDIR_Ord` flag on the last (first stored) long-name entry (§7).
const LAST_LONG_ENTRY: u8 = 0x40;
/// UTF-16 code units per long-name entry: 5 + 6 + 2 (§7).
const LFN_CHARS: usize = 13;
/// Longest long name in UTF-16 code units (§7: "up to 255 characters").
pub const MAX_LONG_NAME: usize = 255;

/// A DOS date and time (fatgen103 §6 "Date and Time Formats").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DosTime {
    /// Bits 15-9 year since 1980, 8-5 month, 4-0 day.
    pub date: u16,
    /// Bits 15-11 hours, 10-5 minutes, 4-0 seconds / 2.
    pub time: u16,
}

impl DosTime {
    /// The DOS time of a Unix time, UTC. FAT dates run from 1980-01-01 to
    /// 2107-12-31: earlier times are clamped to 1980-01-01 00:00:00, later
    /// ones to 2107-12-31 23:59:58. Seconds are rounded down to even.
    pub fn from_unix(t: i64) -> DosTime {
        let (y, mo, d, h, mi, s) = civil_utc(t);
        let (y, mo, d, h, mi, s) = match y {
            ..1980 => (1980, 1, 1, 0, 0, 0),
            2108.. => (2107, 12, 31, 23, 59, 58),
            _ => (y, mo, d, h, mi, s),
        };
        DosTime {
            date: (((y - 1980) as u16) << 9) | ((mo as u16) << 5) | d as u16,
            time: ((h as u16) << 11) | ((mi as u16) << 5) | (s as u16 / 2),
        }
    }
}

/// (year, month 1-12, day 1-31, hour, minute, second) of a Unix time in UTC,
/// proleptic Gregorian: the civil-from-days algorithm of H. Hinnant's
/// "chrono-Compatible Low-Level Date Algorithms".
pub(crate) fn civil_utc(t: i64) -> (i64, u32, u32, u32, u32, u32) {
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    let secs = secs as u32;
    (y, m, d, secs / 3600, secs / 60 % 60, secs % 60)
}

/// One name in a directory: its short entry and, when the name is not an
/// uppercase 8.3 name, the long-name entries before it.
#[derive(Clone, Debug)]
pub struct DirEntry {
    /// `DIR_Name`: 8 + 3 bytes, space padded, no dot.
    pub short: [u8; 11],
    /// The long name in UTF-16, when one is stored.
    pub long: Option<Vec<u16>>,
    pub attr: u8,
    pub first_cluster: u32,
    pub size: u32,
}

impl DirEntry {
    /// 32-byte slots taken: the long-name entries plus the short entry.
    pub fn slots(&self) -> u32 {
        let long = self
            .long
            .as_ref()
            .map_or(0, |l| l.len().div_ceil(LFN_CHARS));
        long as u32 + 1
    }

    /// Appends the entry's slots, long-name entries first, last part first
    /// (fatgen103 §7: the entry with `LAST_LONG_ENTRY` is stored first).
    pub fn encode(&self, stamp: DosTime, out: &mut Vec<u8>) {
        if let Some(long) = &self.long {
            let sum = checksum(&self.short);
            let parts = long.len().div_ceil(LFN_CHARS);
            for i in (0..parts).rev() {
                let mut ord = i as u8 + 1;
                if i + 1 == parts {
                    ord |= LAST_LONG_ENTRY;
                }
                encode_long(ord, sum, &long[i * LFN_CHARS..], out);
            }
        }
        let mut e = [0u8; DIR_ENTRY as usize];
        e[0..11].copy_from_slice(&self.short);
        e[11] = self.attr;
        // 12 DIR_NTRes, 13 DIR_CrtTimeTenth: 0.
        e[14..16].copy_from_slice(&stamp.time.to_le_bytes()); // DIR_CrtTime
        e[16..18].copy_from_slice(&stamp.date.to_le_bytes()); // DIR_CrtDate
        e[18..20].copy_from_slice(&stamp.date.to_le_bytes()); // DIR_LstAccDate
        e[20..22].copy_from_slice(&((self.first_cluster >> 16) as u16).to_le_bytes()); // DIR_FstClusHI
        e[22..24].copy_from_slice(&stamp.time.to_le_bytes()); // DIR_WrtTime
        e[24..26].copy_from_slice(&stamp.date.to_le_bytes()); // DIR_WrtDate
        e[26..28].copy_from_slice(&(self.first_cluster as u16).to_le_bytes()); // DIR_FstClusLO
        e[28..32].copy_from_slice(&self.size.to_le_bytes()); // DIR_FileSize
        out.extend_from_slice(&e);
    }
}

/// One long-name entry (fatgen103 §7 `LDIR_*`) holding up to 13 units of
/// `chars`; a final partial part is ended by 0x0000 and padded with 0xFFFF.
fn encode_long(ord: u8, sum: u8, chars: &[u16], out: &mut Vec<u8>) {
    let mut units = [0xFFFFu16; LFN_CHARS];
    let n = chars.len().min(LFN_CHARS);
    units[..n].copy_from_slice(&chars[..n]);
    if n < LFN_CHARS {
        units[n] = 0;
    }
    let mut e = [0u8; DIR_ENTRY as usize];
    e[0] = ord; // LDIR_Ord
    e[11] = ATTR_LONG_NAME; // LDIR_Attr
    e[13] = sum; // LDIR_Chksum; 12 LDIR_Type and 26 LDIR_FstClusLO stay 0
    let offsets = (1..11)
        .step_by(2)
        .chain((14..26).step_by(2))
        .chain((28..32).step_by(2));
    for (u, off) in units.iter().zip(offsets) {
        e[off..off + 2].copy_from_slice(&u.to_le_bytes());
    }
    out.extend_from_slice(&e);
}

/// The short-name checksum stored in every long-name entry (fatgen103 §7
/// `ChkSum`): rotate right one bit, add the next byte.
pub fn checksum(short: &[u8; 11]) -> u8 {
    short
        .iter()
        .fold(0u8, |sum, &c| sum.rotate_right(1).wrapping_add(c))
}

/// The `.` and `..` entries that start every subdirectory (fatgen103 §6.7).
pub fn dot_entries(own: u32, parent: u32) -> [DirEntry; 2] {
    let dot = |name: &[u8], cluster| {
        let mut short = [b' '; 11];
        short[..name.len()].copy_from_slice(name);
        DirEntry {
            short,
            long: None,
            attr: ATTR_DIRECTORY,
            first_cluster: cluster,
            size: 0,
        }
    };
    [dot(b".", own), dot(b"..", parent)]
}

/// Characters allowed in short names besides A-Z and 0-9 (fatgen103 §6.1);
/// bytes >= 0x80 are too, but depend on an OEM code page, so none are made.
const SHORT_SPECIALS: &[u8] = b"$%'-_@~`!(){}^#&";

pub fn short_char_ok(c: u8) -> bool {
    c.is_ascii_uppercase() || c.is_ascii_digit() || SHORT_SPECIALS.contains(&c)
}

/// Characters a long name may not hold (fatgen103 §7 adds `+,;=[]` to the
/// short-name set, and forbids these as in any Windows name).
pub fn long_name_ok(name: &str) -> bool {
    name.chars()
        .all(|c| c >= ' ' && !matches!(c, '"' | '*' | '/' | ':' | '<' | '>' | '?' | '\\' | '|'))
        && name != "."
        && name != ".."
}

/// `name` as an 11-byte short name if it is already an uppercase 8.3 name.
fn exact_short(name: &str) -> Option<[u8; 11]> {
    let (base, ext) = name.split_once('.').unwrap_or((name, ""));
    let ok = |s: &str, max| s.len() <= max && s.bytes().all(short_char_ok);
    if base.is_empty() || !ok(base, 8) || !ok(ext, 3) || (ext.is_empty() && name.ends_with('.')) {
        return None;
    }
    let mut short = [b' '; 11];
    short[..base.len()].copy_from_slice(base.as_bytes());
    short[8..8 + ext.len()].copy_from_slice(ext.as_bytes());
    Some(short)
}

/// Hands out unique short names within one directory.
#[derive(Default)]
pub struct ShortNames {
    used: HashSet<[u8; 11]>,
}

impl ShortNames {
    /// Reserves the names that are already uppercase 8.3 (stored as is, with
    /// no long name) so that generated names never take them.
    pub fn reserve_exact<'a>(&mut self, names: impl Iterator<Item = &'a str>) {
        self.used.extend(names.filter_map(exact_short));
    }

    /// The short name for `name` and whether a long name must be stored.
    /// Generation follows fatgen103 §7's "basis-name" steps: uppercase, drop
    /// spaces and leading periods, replace other invalid characters with
    /// `_`, base from before the last period (8), extension after it (3);
    /// then a numeric tail `~N`, the smallest N that is free, unless the
    /// conversion only changed case and the basis is free.
    pub fn assign(&mut self, name: &str) -> ([u8; 11], bool) {
        if let Some(short) = exact_short(name) {
            return (short, false);
        }
        let upper: String = name.to_ascii_uppercase();
        let trimmed = upper.trim_start_matches('.');
        let (base, ext) = match trimmed.rfind('.') {
            Some(i) => (&trimmed[..i], &trimmed[i + 1..]),
            None => (trimmed, ""),
        };
        let clean = |s: &str| -> Vec<u8> {
            s.bytes()
                .filter(|&c| c != b' ' && c != b'.')
                .map(|c| if short_char_ok(c) { c } else { b'_' })
                .collect()
        };
        let (mut base, ext) = (clean(base), clean(ext));
        if base.is_empty() {
            base.push(b'_');
        }
        let mut short = [b' '; 11];
        let e = ext.len().min(3);
        short[8..8 + e].copy_from_slice(&ext[..e]);
        let lossless = exact_short(&upper).is_some();
        if lossless && self.used.insert(short_with(&short, &base, b"")) {
            return (short_with(&short, &base, b""), true);
        }
        for n in 1u32.. {
            let tail = format!("~{n}");
            let cand = short_with(&short, &base, tail.as_bytes());
            if self.used.insert(cand) {
                return (cand, true);
            }
        }
        unreachable!("u32 tails exhausted")
    }
}

/// `short` with its base set to `base` truncated to leave room for `tail`.
fn short_with(short: &[u8; 11], base: &[u8], tail: &[u8]) -> [u8; 11] {
    let mut out = *short;
    out[..8].fill(b' ');
    let keep = base.len().min(8 - tail.len());
    out[..keep].copy_from_slice(&base[..keep]);
    out[keep..keep + tail.len()].copy_from_slice(tail);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(b: &[u8; 11]) -> String {
        String::from_utf8_lossy(b).into_owned()
    }

    #[test]
    fn short_names_are_unique_and_deterministic() {
        let mut n = ShortNames::default();
        n.reserve_exact(["BOOTX64.EFI", "EFI"].into_iter());
        assert_eq!(n.assign("BOOTX64.EFI"), (*b"BOOTX64 EFI", false));
        assert_eq!(n.assign("EFI"), (*b"EFI        ", false));
        let (a, la) = n.assign("loader.conf");
        assert_eq!((s(&a), la), ("LOADER~1CON".into(), true));
        assert_eq!(s(&n.assign("loader.confx").0), "LOADER~2CON");
        assert_eq!(
            s(&n.assign("efi.img").0),
            "EFI     IMG",
            "case-only change keeps the basis"
        );
        assert_eq!(s(&n.assign("EFI.img").0), "EFI~1   IMG");
        assert_eq!(s(&n.assign(".bashrc").0), "BASHRC~1   ");
        assert_eq!(s(&n.assign("a b+c.tar.gz").0), "AB_CTA~1GZ ");
    }

    #[test]
    fn checksum_matches_fatgen103() {
        // Rotating sum over "FOO     BAR" computed by hand from §7's ChkSum.
        let mut sum = 0u8;
        for &c in b"FOO     BAR" {
            sum = (if sum & 1 == 1 { 0x80 } else { 0 }) + (sum >> 1);
            sum = sum.wrapping_add(c);
        }
        assert_eq!(checksum(b"FOO     BAR"), sum);
    }

    #[test]
    fn dos_time_clamps_to_1980() {
        assert_eq!(
            DosTime::from_unix(0),
            DosTime {
                date: 0x21,
                time: 0
            }
        );
        // 2023-11-14 22:13:20 UTC.
        let t = DosTime::from_unix(1_700_000_000);
        assert_eq!(t.date, (43 << 9) | (11 << 5) | 14);
        assert_eq!(t.time, (22 << 11) | (13 << 5) | 10);
        assert_eq!(civil_utc(951_782_400), (2000, 2, 29, 0, 0, 0));
    }
}
