//! The output formats `smelt build -f` writes and `smelt kernel check --for`
//! checks: one type for both, owned here because the artifacts are what the
//! names stand for.

use std::fmt;
use std::str::FromStr;

/// An artifact format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Format {
    /// `NAME-kernel`, `NAME-initrd.img`, `NAME-cmdline`.
    KernelInitrd,
    /// `NAME.tar`: the root tree, kernel at `boot/kernel`.
    Tar,
    /// `NAME-kernel`, `NAME-initrd.img` (stage 1), `NAME-cmdline`,
    /// `NAME-squashfs.img`.
    KernelSquashfs,
    /// `NAME.efi`: the unified kernel image.
    Uki,
    /// `NAME.iso`: hybrid ISO, BIOS and UEFI, CD and USB stick.
    Iso,
    /// `NAME.raw`: GPT disk, BIOS and UEFI.
    Raw,
    /// `NAME.qcow2`: the raw disk as sparse qcow2.
    Qcow2,
}

impl Format {
    /// Refuse formats that would write the same file names:
    /// `kernel+initrd` and `kernel+squashfs` both write `NAME-kernel`,
    /// `NAME-initrd.img` (the whole root, or stage 1) and `NAME-cmdline`.
    pub fn check_together(formats: &[Format]) -> anyhow::Result<()> {
        if formats.contains(&Format::KernelInitrd) && formats.contains(&Format::KernelSquashfs) {
            anyhow::bail!(
                "-f kernel+initrd and -f kernel+squashfs both write NAME-kernel, NAME-initrd.img and NAME-cmdline: build them in two runs, or with different --name"
            );
        }
        Ok(())
    }

    /// Every format, in the order a build writes them.
    pub const ALL: [Format; 7] = [
        Format::KernelInitrd,
        Format::Tar,
        Format::KernelSquashfs,
        Format::Uki,
        Format::Iso,
        Format::Raw,
        Format::Qcow2,
    ];

    /// Whether the format boots from a squashfs root (and needs the boot
    /// firmware image).
    pub fn needs_boot_media(self) -> bool {
        !matches!(self, Format::KernelInitrd | Format::Tar)
    }

    /// The name `-f` / `--for` take and the manifest records.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::KernelInitrd => "kernel+initrd",
            Format::Tar => "tar",
            Format::KernelSquashfs => "kernel+squashfs",
            Format::Uki => "uki",
            Format::Iso => "iso",
            Format::Raw => "raw",
            Format::Qcow2 => "qcow2",
        }
    }
}

impl FromStr for Format {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Format> {
        // LinuxKit's BIOS/EFI-only names map to the hybrid outputs, so
        // LinuxKit build scripts keep working.
        match s {
            "iso-bios" | "iso-efi" | "iso-efi-initrd" => return Ok(Format::Iso),
            "raw-bios" | "raw-efi" => return Ok(Format::Raw),
            "qcow2-bios" | "qcow2-efi" => return Ok(Format::Qcow2),
            _ => {}
        }
        Format::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Format::ALL.iter().map(|f| f.as_str()).collect();
                anyhow::anyhow!(
                    "unknown output {s:?} (valid: {}; LinuxKit's iso-bios, iso-efi, raw-bios, raw-efi, qcow2-bios, qcow2-efi)",
                    names.join(", ")
                )
            })
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Format {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_initrd_and_kernel_squashfs_are_refused_together() {
        let e =
            Format::check_together(&[Format::KernelInitrd, Format::Iso, Format::KernelSquashfs])
                .unwrap_err()
                .to_string();
        assert!(e.contains("both write NAME-kernel"), "{e}");
        assert!(Format::check_together(&[Format::KernelInitrd, Format::Iso]).is_ok());
        assert!(Format::check_together(&Format::ALL[1..]).is_ok());
    }

    #[test]
    fn names_round_trip_and_linuxkit_names_map_to_the_hybrid_outputs() {
        for f in Format::ALL {
            assert_eq!(f.as_str().parse::<Format>().unwrap(), f);
            assert_eq!(f.to_string(), f.as_str());
        }
        for (name, f) in [
            ("iso-bios", Format::Iso),
            ("iso-efi", Format::Iso),
            ("iso-efi-initrd", Format::Iso),
            ("raw-bios", Format::Raw),
            ("raw-efi", Format::Raw),
            ("qcow2-bios", Format::Qcow2),
            ("qcow2-efi", Format::Qcow2),
        ] {
            assert_eq!(name.parse::<Format>().unwrap(), f, "{name}");
        }
        let e = "floppy".parse::<Format>().unwrap_err().to_string();
        assert_eq!(
            e,
            "unknown output \"floppy\" (valid: kernel+initrd, tar, kernel+squashfs, uki, iso, raw, qcow2; LinuxKit's iso-bios, iso-efi, raw-bios, raw-efi, qcow2-bios, qcow2-efi)"
        );
    }

    #[test]
    fn serializes_as_its_name() {
        let json = serde_json::to_string(&[Format::KernelInitrd, Format::Qcow2]).unwrap();
        assert_eq!(json, r#"["kernel+initrd","qcow2"]"#);
    }
}
