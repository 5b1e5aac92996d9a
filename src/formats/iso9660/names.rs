//! Identifiers of the primary (ECMA-119) directory hierarchy. Real names
//! live in Rock Ridge `NM`; these are what a reader without Rock Ridge sees.
//!
//! Interchange level 1 (ECMA-119 §10.1): a file identifier is up to 8
//! d-characters, `.`, up to 3 d-characters, `;1` (§7.5: both separators are
//! always present); a directory identifier is up to 8 d-characters.
//! d-characters are `A-Z`, `0-9` and `_` (§7.4.1): other bytes become `_`,
//! letters are uppercased. Names that collide within a directory get a
//! decimal tail replacing the end of the name part (`README00`, `README01`).

use std::collections::HashSet;

pub fn is_d_char(c: u8) -> bool {
    c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_'
}

fn d_chars(s: &[u8], max: usize) -> Vec<u8> {
    s.iter()
        .map(|c| c.to_ascii_uppercase())
        .map(|c| if is_d_char(c) { c } else { b'_' })
        .take(max)
        .collect()
}

/// Gives the entries of one directory unique level-1 identifiers.
#[derive(Default)]
pub struct Mangler {
    used: HashSet<Vec<u8>>,
}

impl Mangler {
    /// The identifier for `name` (a directory when `dir`). Call in a fixed
    /// order (the tree's sorted order) so the result is deterministic.
    pub fn assign(&mut self, name: &[u8], dir: bool) -> Vec<u8> {
        let (base, ext) = match name.iter().rposition(|&c| c == b'.') {
            Some(i) if !dir && i > 0 => (&name[..i], &name[i + 1..]),
            _ => (name, &b""[..]),
        };
        let mut base = d_chars(base, 8);
        if base.is_empty() {
            base.push(b'_');
        }
        let ext = d_chars(ext, 3);
        // Uniqueness is by name and extension, so a directory `ABC` and a
        // file `ABC.;1` (which readers show alike) do not coexist either.
        let make = |base: &[u8]| {
            let mut key = base.to_vec();
            key.push(b'.');
            key.extend_from_slice(&ext);
            let mut id = base.to_vec();
            if !dir {
                id.extend_from_slice(&key[base.len()..]);
                id.extend_from_slice(b";1");
            }
            (key, id)
        };
        let (key, id) = make(&base);
        if self.used.insert(key) {
            return id;
        }
        for n in 0u64.. {
            let tail = format!("{n:02}");
            let keep = base.len().min(8 - tail.len().min(8));
            let mut b = base[..keep].to_vec();
            b.extend_from_slice(tail.as_bytes());
            let (key, id) = make(&b);
            if self.used.insert(key) {
                return id;
            }
        }
        unreachable!("u64 tails exhausted")
    }
}

/// The sort key of an identifier (§9.3: by name, then extension, then
/// version, each compared as if padded with spaces, which for d-characters
/// is plain byte order of the parts).
pub fn sort_key(id: &[u8]) -> (&[u8], &[u8]) {
    let id = id.split(|&c| c == b';').next().unwrap_or(id);
    match id.iter().position(|&c| c == b'.') {
        Some(i) => (&id[..i], &id[i + 1..]),
        None => (id, &[][..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level1_names() {
        let mut m = Mangler::default();
        assert_eq!(m.assign(b"isolinux.bin", false), b"ISOLINUX.BIN;1");
        assert_eq!(m.assign(b"isolinux", true), b"ISOLINUX");
        assert_eq!(m.assign(b"vmlinuz", false), b"VMLINUZ.;1");
        assert_eq!(m.assign(b"initrd.img-6.1.0", false), b"INITRD_I.0;1");
        assert_eq!(m.assign(b"Initrd.img-7.1.0", false), b"INITRD00.0;1");
        assert_eq!(m.assign(b".hidden", false), b"_HIDDEN.;1");
        assert_eq!(m.assign(b"a.b.c", true), b"A_B_C");
        assert_eq!(
            m.assign(b"vmlinuz", true),
            b"VMLINU00",
            "a dir after file VMLINUZ.;1"
        );
        assert_eq!(sort_key(b"ABC.D;1"), (&b"ABC"[..], &b"D"[..]));
    }
}
