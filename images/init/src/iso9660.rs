//! Just enough ISO 9660 to recognise smelt's boot medium: the primary
//! volume descriptor and its volume identifier.
//!
//! ECMA-119 §8.4: the volume descriptor set starts at logical sector 16
//! (2048-byte sectors), and the primary volume descriptor is type 1,
//! standard identifier `CD001`, version 1; the volume identifier is bytes
//! 40..72, d-characters padded with spaces. Only the descriptor in sector
//! 16 is read (xorriso and every mastering tool put the PVD there). Files
//! on the medium are read through the kernel's `isofs` after mounting.
//! Non-goals: walking the descriptor set, Joliet/Rock Ridge names,
//! directory records.

/// Byte offset of the first volume descriptor: sector 16 of 2048 bytes.
pub const PVD_OFFSET: u64 = 16 * SECTOR;
/// 2048-byte ISO sectors.
pub const SECTOR: u64 = 2048;
/// Bytes 0..7 of a primary volume descriptor: type 1, `CD001`, version 1.
const PVD_MAGIC: &[u8; 7] = b"\x01CD001\x01";
/// The volume identifier field, bytes 40..72.
const VOLUME_ID: std::ops::Range<usize> = 40..72;

/// The volume identifier (trailing spaces and NULs removed) if `sector`
/// holds a primary volume descriptor; None otherwise or when short.
pub fn volume_id(sector: &[u8]) -> Option<String> {
    if sector.get(..PVD_MAGIC.len())? != PVD_MAGIC {
        return None;
    }
    let raw = sector.get(VOLUME_ID)?;
    let s = String::from_utf8_lossy(raw);
    Some(s.trim_end_matches([' ', '\0']).to_string())
}

#[cfg(test)]
pub(crate) fn pvd(volume_id: &str) -> Vec<u8> {
    let mut s = vec![0u8; SECTOR as usize];
    s[..7].copy_from_slice(PVD_MAGIC);
    s[8..40].fill(b' ');
    s[VOLUME_ID].fill(b' ');
    s[40..40 + volume_id.len()].copy_from_slice(volume_id.as_bytes());
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_padded_volume_id() {
        assert_eq!(
            volume_id(&pvd("SMELT_1A2B3C4D")).as_deref(),
            Some("SMELT_1A2B3C4D")
        );
        let full = "A".repeat(32);
        assert_eq!(volume_id(&pvd(&full)), Some(full));
    }

    #[test]
    fn rejects_other_descriptors_and_short_buffers() {
        let mut boot = pvd("SMELT_X");
        boot[0] = 0; // boot record
        assert_eq!(volume_id(&boot), None);
        let mut v2 = pvd("SMELT_X");
        v2[6] = 2;
        assert_eq!(volume_id(&v2), None);
        let mut bad = pvd("SMELT_X");
        bad[1..6].copy_from_slice(b"BEA01");
        assert_eq!(volume_id(&bad), None);
        assert_eq!(volume_id(&pvd("SMELT_X")[..50]), None);
        assert_eq!(volume_id(&[]), None);
        assert_eq!(volume_id(&vec![0u8; 2048]), None);
    }

    #[test]
    fn xorriso_layout() {
        // What `xorriso -as mkisofs -V SMELT_TEST` writes at sector 16
        // (first 72 bytes): system id is 32 spaces.
        let mut s = b"\x01CD001\x01\x00".to_vec();
        s.extend([b' '; 32]);
        s.extend(b"SMELT_TEST");
        s.extend([b' '; 22]);
        assert_eq!(volume_id(&s).as_deref(), Some("SMELT_TEST"));
    }
}
