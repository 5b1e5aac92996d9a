//! Where a kernel's `.config` comes from: a local file, or a kernel image
//! in LinuxKit's layout, pulled like `smelt build` pulls it.
//!
//! In a kernel image, in this order ([`CONFIG_PLACES`]):
//! `/kernel.config` (smelt's images, images/kernel/build.sh),
//! `/kernel_config` (LinuxKit's repackaged distribution kernels),
//! `boot/config-RELEASE` inside `/kernel.tar`, and
//! `usr/src/linux-headers-RELEASE/.config` inside `/kernel-dev.tar`
//! (LinuxKit's own kernels, kernel/Dockerfile). No config anywhere is
//! `Ok(None)`: the caller must say the check could not run, never pass.
//!
//! The release (`uname -r`) is read from the bzImage's `kernel_version`
//! string (Documentation/arch/x86/boot.rst, "The Real-Mode Kernel Header"),
//! else from the config's file name.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, bail};

use super::config::{KernelConfig, MAX_CONFIG_BYTES, ParseError};
use crate::oci::{PullPolicy, Reference, Resolver, Store};
use crate::tree::{Content, FsTree, Node};

/// The places a kernel image's config is looked for, for messages.
pub const CONFIG_PLACES: &str = "/kernel.config, /kernel_config, boot/config-* in /kernel.tar, usr/src/linux-headers-*/.config in /kernel-dev.tar";

/// A kernel's `.config` text and what it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelSource {
    pub text: String,
    /// Where the text came from: a file path, or `IMAGE:/PATH` (with
    /// `:MEMBER` for a file inside a tarball in the image).
    pub origin: String,
    /// The kernel release, when the image tells it.
    pub release: Option<String>,
}

impl KernelSource {
    /// A `.config` file on the host.
    pub fn from_file(path: &Path) -> anyhow::Result<KernelSource> {
        let file = std::fs::File::open(path)
            .with_context(|| format!("opening kernel config {}", path.display()))?;
        let text = read_limited(file, &path.display().to_string())?;
        Ok(KernelSource {
            text,
            origin: path.display().to_string(),
            release: None,
        })
    }

    pub fn parse(&self) -> Result<KernelConfig, ParseError> {
        KernelConfig::parse(&self.text, &self.origin)
    }

    /// The kernel's name for reports: the release, else the version in
    /// the config's header, else `unknown`.
    pub fn name(&self, config: &KernelConfig) -> String {
        self.release
            .clone()
            .or_else(|| config.version.clone())
            .unwrap_or_else(|| "unknown".to_string())
    }
}

/// The config of the kernel image `reference`, resolved through the store
/// and registry as `smelt build` resolves it; an error when the image has
/// none (the message says where it looked).
pub fn load_from_image(
    store: &Path,
    reference: &Reference,
    pull: PullPolicy,
    mirrors: &[(String, String)],
    progress: bool,
) -> anyhow::Result<KernelSource> {
    let store =
        Store::open(store).with_context(|| format!("opening image store {}", store.display()))?;
    let client = crate::oci::registry_client(mirrors)?;
    let reporter = crate::progress::Reporter::new(progress);
    let mut resolver = Resolver::new(&store, &client, pull);
    resolver.progress = &reporter;
    match kernel_config(&resolver, reference)? {
        Some(s) => Ok(s),
        None => bail!(
            "kernel image {reference} carries no kernel config (looked for {CONFIG_PLACES}): \
             the check cannot run; check the kernel's .config with --config FILE"
        ),
    }
}

/// The `.config` inside the kernel image `reference`, `None` when the image
/// has none in any of the [`CONFIG_PLACES`].
pub fn kernel_config(
    resolver: &Resolver,
    reference: &Reference,
) -> anyhow::Result<Option<KernelSource>> {
    let (_, tree) = crate::assemble::image_tree(resolver, reference)
        .with_context(|| format!("kernel image {reference}"))?;
    config_in_tree(&tree, reference)
}

/// The config in a kernel image's tree (see [`CONFIG_PLACES`]), with the
/// release from the bzImage header when there is one; `reference` names
/// the image in messages. `smelt build` passes the tree it already
/// assembled the kernel from.
pub fn config_in_tree(
    tree: &FsTree,
    reference: &Reference,
) -> anyhow::Result<Option<KernelSource>> {
    let bzimage_release = match file(tree, "kernel") {
        Some(k) => bzimage_release(&k)
            .with_context(|| format!("kernel image {reference}: reading /kernel"))?,
        None => None,
    };
    let found = find_config(tree, reference)?;
    Ok(found.map(|s| KernelSource {
        release: bzimage_release.or(s.release),
        ..s
    }))
}

/// A tarball in a kernel image that may hold the config.
struct Nested {
    tar: &'static str,
    /// The directory in the tarball whose entries name releases.
    dir: &'static str,
    /// What precedes the release in an entry's name.
    prefix: &'static str,
    /// The config's path below the entry (empty: the entry itself).
    below: &'static str,
}

const NESTED: [Nested; 2] = [
    Nested {
        tar: "kernel.tar",
        dir: "boot",
        prefix: "config-",
        below: "",
    },
    Nested {
        tar: "kernel-dev.tar",
        dir: "usr/src",
        prefix: "linux-headers-",
        below: "/.config",
    },
];

/// The first config found in [`CONFIG_PLACES`] order; `release` is the one
/// its path names, if any.
fn find_config(tree: &FsTree, reference: &Reference) -> anyhow::Result<Option<KernelSource>> {
    for path in ["kernel.config", "kernel_config"] {
        if let Some(c) = file(tree, path) {
            let origin = format!("{reference}:/{path}");
            let text = read_content(&c, &origin)?;
            return Ok(Some(KernelSource {
                text,
                origin,
                release: None,
            }));
        }
    }
    for n in &NESTED {
        let Some(content) = file(tree, n.tar) else {
            continue;
        };
        let mut inner = FsTree::new();
        crate::assemble::apply_nested_tar(&mut inner, &content)
            .with_context(|| format!("kernel image {reference}: reading /{}", n.tar))?;
        if let Some(found) = find_nested(&inner, n, reference)? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

fn find_nested(
    inner: &FsTree,
    n: &Nested,
    reference: &Reference,
) -> anyhow::Result<Option<KernelSource>> {
    let Some(Node::Dir(d)) = inner.lookup_follow(Path::new(n.dir)) else {
        return Ok(None);
    };
    let found: Vec<(String, String, Content)> = d
        .entries
        .keys()
        .filter_map(|k| {
            let name = k.to_string_lossy();
            let release = name.strip_prefix(n.prefix)?.to_string();
            let member = format!("{}/{name}{}", n.dir, n.below);
            file(inner, &member).map(|c| (member, release, c))
        })
        .collect();
    match found.as_slice() {
        [] => Ok(None),
        [(member, release, c)] => {
            let origin = format!("{reference}:/{}:{member}", n.tar);
            Ok(Some(KernelSource {
                text: read_content(c, &origin)?,
                origin,
                release: Some(release.clone()),
            }))
        }
        many => {
            let names: Vec<&str> = many.iter().map(|(m, _, _)| m.as_str()).collect();
            bail!(
                "kernel image {reference}: /{} holds configs for several kernels ({})",
                n.tar,
                names.join(", ")
            )
        }
    }
}

/// A regular file's content in `tree`, following symlinks.
fn file(tree: &FsTree, path: &str) -> Option<Content> {
    tree.file_content(Path::new(path))
}

fn read_content(c: &Content, origin: &str) -> anyhow::Result<String> {
    if c.len() > MAX_CONFIG_BYTES {
        bail!(
            "{origin} is {} bytes, more than the {MAX_CONFIG_BYTES} a kernel config may have",
            c.len()
        );
    }
    read_limited(c.open()?, origin)
}

/// At most [`MAX_CONFIG_BYTES`] of text; invalid UTF-8 is replaced (and
/// then fails to parse at its line).
fn read_limited(r: impl Read, origin: &str) -> anyhow::Result<String> {
    let mut buf = Vec::new();
    r.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut buf)
        .with_context(|| format!("reading {origin}"))?;
    if buf.len() as u64 > MAX_CONFIG_BYTES {
        bail!("{origin} is larger than the {MAX_CONFIG_BYTES} bytes a kernel config may have");
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Offsets in the x86 real-mode kernel header (boot.rst).
mod bzimage {
    /// `boot_flag`, 0xAA55.
    pub const BOOT_FLAG: usize = 0x1FE;
    /// `header`, the magic "HdrS".
    pub const HEADER: usize = 0x202;
    /// `kernel_version`: offset of a NUL-terminated version string, less 0x200.
    pub const KERNEL_VERSION: usize = 0x20E;
    /// `kernel_version` is a u16 relative to 0x200, so the string starts
    /// before 0x200 + 0x10000; 256 bytes more hold any version string.
    pub const HEAD_BYTES: usize = 0x200 + 0x1_0000 + 256;
}

/// The release (first word of the `kernel_version` string) of a bzImage;
/// `None` when the file is not one or has no version string.
fn bzimage_release(kernel: &Content) -> anyhow::Result<Option<String>> {
    let mut head = Vec::with_capacity(bzimage::HEAD_BYTES);
    kernel
        .open()?
        .take(bzimage::HEAD_BYTES as u64)
        .read_to_end(&mut head)?;
    Ok(release_from_header(&head))
}

fn release_from_header(head: &[u8]) -> Option<String> {
    let u16_at = |o: usize| Some(u16::from_le_bytes(head.get(o..o + 2)?.try_into().ok()?));
    if u16_at(bzimage::BOOT_FLAG)? != 0xAA55
        || head.get(bzimage::HEADER..bzimage::HEADER + 4)? != b"HdrS"
    {
        return None;
    }
    let ptr = u16_at(bzimage::KERNEL_VERSION)?;
    if ptr == 0 {
        return None;
    }
    let start = 0x200 + ptr as usize;
    let rest = head.get(start..)?;
    let text = &rest[..rest.iter().position(|&b| b == 0)?];
    let word = std::str::from_utf8(text).ok()?.split_whitespace().next()?;
    Some(word.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(version: &[u8]) -> Vec<u8> {
        let mut h = vec![0u8; 0x4000];
        h[0x1FE..0x200].copy_from_slice(&0xAA55u16.to_le_bytes());
        h[0x202..0x206].copy_from_slice(b"HdrS");
        let at = 0x3000usize;
        h[0x20E..0x210].copy_from_slice(&((at - 0x200) as u16).to_le_bytes());
        h[at..at + version.len()].copy_from_slice(version);
        h
    }

    #[test]
    fn release_is_the_first_word_of_kernel_version() {
        let h = header(b"6.1.0-57-amd64 (debian-kernel@lists.debian.org) #1 SMP\0");
        assert_eq!(release_from_header(&h).as_deref(), Some("6.1.0-57-amd64"));
    }

    #[test]
    fn no_release_without_a_valid_header() {
        let mut h = header(b"6.1.0\0");
        h[0x202] = b'X';
        assert_eq!(release_from_header(&h), None);
        let mut h = header(b"6.1.0\0");
        h[0x20E..0x210].copy_from_slice(&[0, 0]);
        assert_eq!(release_from_header(&h), None);
        // No NUL before the end of what was read.
        let h = header(b"6.1.0");
        let cut = &h[..0x3005];
        assert_eq!(release_from_header(cut), None);
        assert_eq!(release_from_header(b"\x7fELF"), None);
    }

    #[test]
    fn a_host_file_is_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config");
        std::fs::write(&p, "# Linux/x86 6.6.1 Kernel Configuration\nCONFIG_A=y\n").unwrap();
        let s = KernelSource::from_file(&p).unwrap();
        let c = s.parse().unwrap();
        assert_eq!(s.name(&c), "6.6.1");
        assert_eq!(s.origin, p.display().to_string());
    }
}
