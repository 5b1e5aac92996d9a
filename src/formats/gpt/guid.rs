//! GPT GUIDs (UEFI 2.10 Appendix A): the on-disk byte order, the text form,
//! the partition type GUIDs smelt uses, and [`Guid::derive`], the one way
//! smelt makes a disk, partition or other GUID from content.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

use super::GptError;

/// A GUID in its on-disk byte order (§Appendix A): the first three fields
/// little-endian, the last eight bytes as written. [`Display`](fmt::Display)
/// and [`FromStr`] use the canonical text form, which prints those fields
/// big-endian ("mixed-endian" relative to the bytes).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// The all-zero GUID, which marks an unused partition entry.
    pub const NIL: Guid = Guid([0; 16]);
    /// EFI System Partition (§5.3.3, table 5.7).
    pub const EFI_SYSTEM: Guid = Guid::from_u128(0xC12A7328_F81F_11D2_BA4B_00A0C93EC93B);
    /// Generic Linux filesystem data (Discoverable Partitions Specification).
    pub const LINUX_FILESYSTEM: Guid = Guid::from_u128(0x0FC63DAF_8483_4772_8E79_3D69D8477DE4);
    /// Linux root partition for x86-64 (Discoverable Partitions Specification).
    pub const LINUX_ROOT_X86_64: Guid = Guid::from_u128(0x4F68BCE3_E8CD_4DB1_96E7_FBCAF984B709);
    /// BIOS boot partition (GRUB's core.img on GPT disks booted by BIOS).
    pub const BIOS_BOOT: Guid = Guid::from_u128(0x21686148_6449_6E6F_744E_656564454649);
    /// Microsoft basic data (FAT/NTFS data partitions).
    pub const MICROSOFT_BASIC_DATA: Guid = Guid::from_u128(0xEBD0A0A2_B9E5_4433_87C0_68B6B72699C7);

    /// The GUID whose canonical text is the 32 hex digits of `v` in order.
    pub const fn from_u128(v: u128) -> Guid {
        Guid::from_text_order(v.to_be_bytes())
    }

    /// Converts the 16 bytes in text order (RFC 4122 network order) to the
    /// on-disk order: byte-swaps the 4-, 2- and 2-byte leading fields.
    const fn from_text_order(b: [u8; 16]) -> Guid {
        Guid([
            b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13],
            b[14], b[15],
        ])
    }

    /// The bytes in text order (the inverse of the on-disk swap).
    fn text_order(&self) -> [u8; 16] {
        // The swap is its own inverse.
        Guid::from_text_order(self.0).0
    }

    /// A deterministic GUID for `label` within `seed` (e.g. the image digest):
    /// sha256 over a domain tag, the seed's length, the seed and the label,
    /// truncated to 16 bytes and stamped as an RFC 9562 version-8 (custom)
    /// GUID with the RFC 4122 variant, so it never collides with a random
    /// (version 4) one.
    pub fn derive(seed: &[u8], label: &str) -> Guid {
        let mut h = Sha256::new();
        h.update(b"smelt gpt guid v1\0");
        h.update((seed.len() as u64).to_le_bytes());
        h.update(seed);
        h.update(label.as_bytes());
        let digest = h.finalize();
        let mut b = [0u8; 16];
        b.copy_from_slice(&digest[..16]);
        b[6] = (b[6] & 0x0F) | 0x80;
        b[8] = (b[8] & 0x3F) | 0x80;
        Guid::from_text_order(b)
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.text_order();
        for (i, byte) in b.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({self})")
    }
}

impl FromStr for Guid {
    type Err = GptError;
    /// Parses `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, either case.
    fn from_str(s: &str) -> Result<Guid, GptError> {
        let bad = || GptError::BadGuid(s.to_string());
        let groups: Vec<&str> = s.split('-').collect();
        let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
        if lens != [8, 4, 4, 4, 12] {
            return Err(bad());
        }
        let hex: String = groups.concat();
        if !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let v = u128::from_str_radix(&hex, 16).map_err(|_| bad())?;
        Ok(Guid::from_u128(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_text_form_and_constants() {
        let g: Guid = "4f68bce3-e8cd-4db1-96e7-fbcaf984b709".parse().unwrap();
        assert_eq!(g, Guid::LINUX_ROOT_X86_64);
        assert_eq!(g.to_string(), "4f68bce3-e8cd-4db1-96e7-fbcaf984b709");
        // On disk the first three fields are little-endian.
        assert_eq!(&g.0[..8], &[0xE3, 0xBC, 0x68, 0x4F, 0xCD, 0xE8, 0xB1, 0x4D]);
        assert_eq!(&g.0[8..], &[0x96, 0xE7, 0xFB, 0xCA, 0xF9, 0x84, 0xB7, 0x09]);
        let esp = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
        assert_eq!(esp.parse::<Guid>().unwrap(), Guid::EFI_SYSTEM);
        for bad in [
            "",
            "c12a7328f81f11d2ba4b00a0c93ec93b",
            "c12a7328-f81f-11d2-ba4b-00a0c93ec93g",
        ] {
            assert!(
                matches!(bad.parse::<Guid>(), Err(GptError::BadGuid(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn derived_guids_are_stable_versioned_and_distinct() {
        let a = Guid::derive(b"seed", "esp");
        assert_eq!(a, Guid::derive(b"seed", "esp"));
        assert_ne!(a, Guid::derive(b"seed", "root"));
        assert_ne!(a, Guid::derive(b"seed2", "esp"));
        // Length-prefixed seed: ("se", "edesp") is not ("seed", "esp").
        assert_ne!(a, Guid::derive(b"se", "edesp"));
        let text = a.to_string();
        assert_eq!(&text[14..15], "8", "version 8: {text}");
        assert!(
            matches!(&text[19..20], "8" | "9" | "a" | "b"),
            "variant: {text}"
        );
        assert_eq!(text, "13f1c6bc-d371-8df6-a1d0-108cf70f533b");
    }
}
