//! Spec + images → one root tree, LinuxKit's way.
//!
//! Order (LinuxKit's `moby build`): the kernel image's modules tarball is
//! unpacked into the root; `init` images are layered onto `/` in order;
//! each onboot/onshutdown/service image becomes an OCI bundle under
//! `/containers/...` with a generated `config.json`; volumes go to
//! `/containers/volumes/NAME`; `files` come last. Nothing is extracted onto
//! the host: every image is applied layer by layer into an [`FsTree`].

pub mod bundle;
mod files;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};

use crate::digest::Digest;
use crate::oci::{self, Reference, Resolver};
use crate::spec::{Image, ImageRef, Kernel, Spec};
use crate::tree::{Content, FsTree, Meta, Node};

/// An input image and the digest it resolved to.
#[derive(Clone, Debug)]
pub struct PinnedImage {
    /// Where the image went: `kernel`, `init`, `onboot/000-NAME`, …
    pub role: String,
    pub reference: Reference,
    pub digest: Digest,
}

/// The kernel pieces that are artifacts of their own, not part of the root.
#[derive(Clone, Debug)]
pub struct KernelParts {
    /// The kernel image's own tree (`/kernel`, `/kernel.tar`, its config),
    /// metadata only, kept for `smelt kernel check`'s warning.
    pub image: FsTree,
    pub kernel: Content,
    pub cmdline: String,
    /// CPU microcode cpio, prepended uncompressed to the initrd.
    pub ucode: Option<Content>,
}

/// The assembled root and what went into it.
#[derive(Debug)]
pub struct Assembled {
    pub tree: FsTree,
    pub kernel: Option<KernelParts>,
    pub images: Vec<PinnedImage>,
}

pub fn assemble(spec: &Spec, resolver: &Resolver, epoch: i64) -> anyhow::Result<Assembled> {
    let mut a = Assembled {
        tree: FsTree::new(),
        kernel: None,
        images: Vec::new(),
    };
    if let Some(k) = &spec.kernel
        && let Some(img) = &k.image
    {
        a.kernel = Some(add_kernel(&mut a, resolver, k, img)?);
    }
    for r in &spec.init {
        let image = pull(&mut a, resolver, r, "init".to_string())?;
        apply_image(&mut a.tree, resolver, &image, r)?;
    }
    let mut bundles = Vec::new();
    for (i, c) in spec.onboot.iter().enumerate() {
        bundles.push(add_container(
            &mut a,
            resolver,
            c,
            &format!("onboot/{i:03}-{}", c.name),
        )?);
    }
    for (i, c) in spec.onshutdown.iter().enumerate() {
        let place = format!("onshutdown/{i:03}-{}", c.name);
        bundles.push(add_container(&mut a, resolver, c, &place)?);
    }
    for c in &spec.services {
        bundles.push(add_container(
            &mut a,
            resolver,
            c,
            &format!("services/{}", c.name),
        )?);
    }
    for v in &spec.volumes {
        let dir = PathBuf::from(format!("containers/volumes/{}", v.name));
        match &v.image {
            Some(r) => {
                let image = pull(&mut a, resolver, r, format!("volume/{}", v.name))?;
                let mut t = FsTree::new();
                apply_image(&mut t, resolver, &image, r)?;
                a.tree.graft(&dir, t)?;
            }
            None => a.tree.mkdir_p(&dir, Meta::root(0o755))?,
        }
    }
    files::apply(&mut a.tree, &spec.files, spec)?;
    // After `files`: a bind's source may be a file the spec writes.
    for b in &bundles {
        create_mount_points(&mut a.tree, b)?;
    }
    a.tree.set_mtime_all(epoch);
    Ok(a)
}

/// Resolve `r` (pulling as the policy says) and record its digest.
fn pull(
    a: &mut Assembled,
    resolver: &Resolver,
    r: &ImageRef,
    role: String,
) -> anyhow::Result<oci::Image> {
    let image = resolver
        .resolve(&r.reference)
        .with_context(|| format!("{}: image {}", r.origin(), r.text))?;
    a.images.push(PinnedImage {
        role,
        reference: r.reference.clone(),
        digest: image.manifest_digest.clone(),
    });
    Ok(image)
}

/// Apply every layer of `image` onto `tree`, bottom to top.
fn apply_image(
    tree: &mut FsTree,
    resolver: &Resolver,
    image: &oci::Image,
    r: &ImageRef,
) -> anyhow::Result<()> {
    apply_layers(tree, resolver, image, &r.reference)
}

fn apply_layers(
    tree: &mut FsTree,
    resolver: &Resolver,
    image: &oci::Image,
    reference: &Reference,
) -> anyhow::Result<()> {
    for layer in &image.layers {
        let path = resolver
            .store
            .layer_tar(layer)
            .with_context(|| format!("image {reference}: layer {}", layer.digest))?;
        let file = std::fs::File::open(&path)
            .with_context(|| format!("image {reference}: opening layer {}", path.display()))?;
        tree.apply_layer(std::io::BufReader::new(file), Arc::new(path))
            .with_context(|| format!("image {reference}: layer {}", layer.digest))?;
    }
    Ok(())
}

/// Resolve `reference` and apply its layers into a tree of its own.
pub fn image_tree(
    resolver: &Resolver,
    reference: &Reference,
) -> anyhow::Result<(oci::Image, FsTree)> {
    let image = resolver
        .resolve(reference)
        .with_context(|| format!("image {reference}"))?;
    let mut t = FsTree::new();
    apply_layers(&mut t, resolver, &image, reference)?;
    Ok((image, t))
}

fn add_kernel(
    a: &mut Assembled,
    resolver: &Resolver,
    k: &Kernel,
    r: &ImageRef,
) -> anyhow::Result<KernelParts> {
    let image = pull(a, resolver, r, "kernel".to_string())?;
    let mut kt = FsTree::new();
    apply_image(&mut kt, resolver, &image, r)?;
    let binary = k.binary.as_deref().unwrap_or("kernel");
    let kernel = file_content(&kt, binary).with_context(|| {
        format!(
            "{}: kernel image {} has no file /{binary}",
            r.origin(),
            r.reference
        )
    })?;
    let tar = k.tar.as_deref().unwrap_or("kernel.tar");
    if tar != "none" {
        let content = file_content(&kt, tar).with_context(|| {
            format!(
                "{}: kernel image {} has no /{tar} (set `tar: none` to build without kernel modules)",
                r.origin(),
                r.reference
            )
        })?;
        apply_nested_tar(&mut a.tree, &content)
            .with_context(|| format!("kernel image {}: unpacking /{tar}", r.reference))?;
    }
    let ucode = match &k.ucode {
        Some(u) => Some(file_content(&kt, u).with_context(|| {
            format!(
                "{}: kernel image {} has no ucode file /{u}",
                r.origin(),
                r.reference
            )
        })?),
        None => None,
    };
    Ok(KernelParts {
        image: kt,
        kernel,
        cmdline: k.cmdline.clone().unwrap_or_default(),
        ucode,
    })
}

/// A regular file's content in `tree`, following symlinks.
fn file_content(tree: &FsTree, path: &str) -> Option<Content> {
    tree.file_content(Path::new(path))
}

/// Apply a tar that is itself a file inside a layer (the kernel's modules).
/// Apply a tarball that is itself a file inside a layer (a kernel image's
/// `kernel.tar`), reading it where it lies.
pub fn apply_nested_tar(tree: &mut FsTree, content: &Content) -> anyhow::Result<()> {
    match content {
        Content::Slice { file, offset, .. } => {
            tree.apply_layer_at(content.open()?, Arc::clone(file), *offset)?;
        }
        Content::Host { path, .. } => {
            tree.apply_layer(content.open()?, Arc::clone(path))?;
        }
        Content::Bytes(_) => bail!("in-memory tarballs are not supported here"),
    }
    Ok(())
}

/// A bundle written into the root, with its mounts for
/// [`create_mount_points`].
struct BundleMounts {
    rootfs: PathBuf,
    mounts: Vec<serde_json::Value>,
    /// `file:line:col: container NAME (REF)`, for errors.
    what: String,
}

fn add_container(
    a: &mut Assembled,
    resolver: &Resolver,
    c: &Image,
    place: &str,
) -> anyhow::Result<BundleMounts> {
    let r = &c.image;
    let image = pull(a, resolver, r, place.to_string())?;
    let mut rootfs = FsTree::new();
    apply_image(&mut rootfs, resolver, &image, r)?;
    let ids = |name: &str| {
        files::lookup_id(&rootfs, name, "etc/passwd")
            .or_else(|| files::lookup_id(&rootfs, name, "etc/group"))
    };
    let cfg =
        bundle::bundle_config_with_ids(c, &image.config, bundle::label_of(&image.config), &ids)?;
    let dir = PathBuf::from(format!("containers/{place}"));
    a.tree.graft(&dir.join("rootfs"), rootfs)?;
    let json = |bytes: Vec<u8>| Node::file(Meta::root(0o644), Content::Bytes(bytes.into()));
    a.tree
        .insert(&dir.join("config.json"), json(cfg.config_json()))?;
    a.tree
        .insert(&dir.join("runtime.json"), json(cfg.runtime_json()))?;
    let mounts = cfg.config.get("mounts").and_then(|m| m.as_array());
    Ok(BundleMounts {
        rootfs: dir.join("rootfs"),
        mounts: mounts.cloned().unwrap_or_default(),
        what: format!("{}: container {} ({})", c.origin(), c.name, r.reference),
    })
}

/// The container's rootfs is mounted read-only, so every mount destination
/// must exist in it beforehand, as LinuxKit adds them to the bundle: an
/// empty file where a bind's source in the root is a file (runc cannot bind
/// a file onto a directory), a 0755 directory otherwise.
fn create_mount_points(root: &mut FsTree, b: &BundleMounts) -> anyhow::Result<()> {
    for m in &b.mounts {
        let Some(dest) = m.get("destination").and_then(|d| d.as_str()) else {
            continue;
        };
        let target = b.rootfs.join(dest.trim_start_matches('/'));
        if root.lookup(&target).is_some() {
            continue;
        }
        let is_bind = m.get("type").and_then(|t| t.as_str()) == Some("bind")
            || m.get("options")
                .and_then(|o| o.as_array())
                .is_some_and(|o| o.iter().any(|x| x == "bind" || x == "rbind"));
        let source_is_file = is_bind
            && m.get("source")
                .and_then(|s| s.as_str())
                .and_then(|s| root.lookup_follow(Path::new(s)))
                .is_some_and(|n| !matches!(n, Node::Dir(_)));
        let made = if source_is_file {
            let empty = Content::Bytes(Arc::from(&b""[..]));
            root.insert(&target, Node::file(Meta::root(0o644), empty))
        } else {
            root.mkdir_p(&target, Meta::root(0o755))
        };
        made.with_context(|| format!("{}: creating mount point {dest}", b.what))?;
    }
    Ok(())
}

/// The boot firmware image (`smelt/boot`: isolinux, its MBR, systemd-stub)
/// as a tree of its own, pinned in the manifest as role `boot`; never part
/// of the root.
pub fn boot_firmware(
    a: &mut Assembled,
    resolver: &Resolver,
    reference: &str,
) -> anyhow::Result<FsTree> {
    let parsed = Reference::parse(reference)
        .with_context(|| format!("boot firmware image reference {reference:?}"))?;
    let (image, t) = image_tree(resolver, &parsed).with_context(|| {
        format!(
            "boot firmware image {reference} (the squashfs-root outputs take isolinux and systemd-stub from it; `make images` builds it)"
        )
    })?;
    a.images.push(PinnedImage {
        role: "boot".to_string(),
        reference: parsed,
        digest: image.manifest_digest.clone(),
    });
    Ok(t)
}

/// The bytes of a regular file in `tree`, for the few small boot files
/// (isolinux.bin, the stub, the kernel) that writers need in memory.
pub fn read_file(tree: &FsTree, path: &str) -> anyhow::Result<Vec<u8>> {
    let content = file_content(tree, path).with_context(|| format!("no file /{path}"))?;
    content
        .read_all()
        .with_context(|| format!("reading /{path}"))
}
