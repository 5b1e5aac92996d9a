//! Booting artifacts under QEMU for local testing (`smelt run`, boot tests).
//!
//! Today: kernel+initrd artifacts (`NAME-kernel` + `NAME-initrd.img` +
//! `NAME-cmdline`). ISO, raw and PXE boots join as those formats land.

pub mod qemu;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The files of one kernel+initrd build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelInitrd {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// `NAME-config.img`, the config initrd, when the build wrote one.
    pub config: Option<PathBuf>,
    pub cmdline: String,
}

/// Find a kernel+initrd artifact: `artifact` is either the `NAME-kernel`
/// file, or an output directory together with `name`.
pub fn find_kernel_initrd(artifact: &Path, name: Option<&str>) -> anyhow::Result<KernelInitrd> {
    let (dir, name) = if artifact.is_dir() {
        let Some(name) = name else {
            bail!(
                "{} is a directory: say which artifact with --name",
                artifact.display()
            );
        };
        (artifact.to_path_buf(), name.to_string())
    } else {
        let file = artifact
            .file_name()
            .and_then(|f| f.to_str())
            .with_context(|| format!("{}: not an artifact path", artifact.display()))?;
        let Some(name) = file.strip_suffix("-kernel") else {
            bail!(
                "{}: expected a NAME-kernel file or an output directory",
                artifact.display()
            );
        };
        let dir = artifact.parent().unwrap_or(Path::new("."));
        (dir.to_path_buf(), name.to_string())
    };
    let kernel = dir.join(format!("{name}-kernel"));
    let initrd = dir.join(format!("{name}-initrd.img"));
    let cmdline_path = dir.join(format!("{name}-cmdline"));
    for p in [&kernel, &initrd, &cmdline_path] {
        if !p.is_file() {
            bail!("{} is missing (build with -f kernel+initrd)", p.display());
        }
    }
    let cmdline = std::fs::read_to_string(&cmdline_path)
        .with_context(|| format!("reading {}", cmdline_path.display()))?;
    let config = Some(dir.join(format!("{name}-config.img"))).filter(|p| p.is_file());
    Ok(KernelInitrd {
        kernel,
        initrd,
        config,
        cmdline: cmdline.trim_end().to_string(),
    })
}

/// Write `parts` one after another into `out`, each starting on a 4-byte
/// boundary: what a boot loader does with several initrds (GRUB's
/// `initrd a b`, iPXE's `initrd` twice). The kernel unpacks concatenated
/// archives, compressed or not, but looks for a cpio header only at
/// 4-byte-aligned offsets and skips the zero padding between them
/// (init/initramfs.c `unpack_to_rootfs`).
pub fn concat_initrds(parts: &[&Path], out: &Path) -> anyhow::Result<()> {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?,
    );
    let mut len = 0u64;
    for p in parts {
        let pad = (4 - len % 4) % 4;
        f.write_all(&[0u8; 3][..pad as usize])?;
        let mut r = std::fs::File::open(p).with_context(|| format!("reading {}", p.display()))?;
        len += pad + std::io::copy(&mut r, &mut f)?;
    }
    f.flush()
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

/// QEMU drive arguments that boot a disk or CD image artifact (`NAME.iso`
/// as a CD, `NAME.raw` / `NAME.qcow2` as a virtio disk), with
/// `snapshot=on` so a test boot never changes the artifact; `None` for
/// anything else (a kernel+initrd build).
pub fn media_drive(artifact: &Path) -> Option<Vec<String>> {
    let ext = artifact.extension()?.to_str()?;
    let file = artifact.display();
    let drive = match ext {
        "iso" => format!("file={file},format=raw,media=cdrom,if=ide,snapshot=on"),
        "raw" | "img" => format!("file={file},format=raw,if=virtio,snapshot=on"),
        "qcow2" => format!("file={file},format=qcow2,if=virtio,snapshot=on"),
        _ => return None,
    };
    Some(vec!["-drive".into(), drive])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_by_kernel_file_or_dir_and_name() {
        let d = tempfile::tempdir().unwrap();
        for (f, body) in [
            ("x-kernel", "k"),
            ("x-initrd.img", "i"),
            ("x-cmdline", "console=ttyS0\n"),
        ] {
            std::fs::write(d.path().join(f), body).unwrap();
        }
        let a = find_kernel_initrd(&d.path().join("x-kernel"), None).unwrap();
        let b = find_kernel_initrd(d.path(), Some("x")).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.cmdline, "console=ttyS0");
        let e = find_kernel_initrd(d.path(), None).unwrap_err().to_string();
        assert!(e.contains("--name"), "{e}");
        let e = find_kernel_initrd(d.path(), Some("y"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("y-kernel is missing"), "{e}");
        let e = find_kernel_initrd(&d.path().join("x-initrd.img"), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected a NAME-kernel file"), "{e}");
        assert_eq!(a.config, None);
        std::fs::write(d.path().join("x-config.img"), "c").unwrap();
        let c = find_kernel_initrd(d.path(), Some("x")).unwrap();
        assert_eq!(c.config, Some(d.path().join("x-config.img")));
    }

    #[test]
    fn initrds_are_joined_on_4_byte_boundaries() {
        let d = tempfile::tempdir().unwrap();
        let (a, b, c) = (d.path().join("a"), d.path().join("b"), d.path().join("c"));
        std::fs::write(&a, "12345").unwrap();
        std::fs::write(&b, "xy").unwrap();
        std::fs::write(&c, "z").unwrap();
        let out = d.path().join("out");
        concat_initrds(&[&a, &b, &c], &out).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"12345\0\0\0xy\0\0z");
    }

    #[test]
    fn media_drives_by_extension() {
        let d = |p: &str| media_drive(Path::new(p)).map(|v| v[1].clone());
        assert_eq!(
            d("out/x.iso").unwrap(),
            "file=out/x.iso,format=raw,media=cdrom,if=ide,snapshot=on"
        );
        assert!(d("x.qcow2").unwrap().contains("format=qcow2,if=virtio"));
        assert!(d("x.raw").unwrap().contains("format=raw,if=virtio"));
        assert_eq!(d("out/x-kernel"), None);
    }
}
