//! The spec's `files:` entries, applied last onto the root tree.
//!
//! Defaults as LinuxKit's: files 0600, directories 0755, owner 0:0. Names
//! for `uid`/`gid` are looked up in the root's own `/etc/passwd` and
//! `/etc/group` (as LinuxKit does), never the build host's. `source` paths
//! are read from the host (`~/` expands to `$HOME`); with `optional: true`
//! a missing source is skipped.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};

use crate::spec::{File, Id, Spec};
use crate::tree::{Content, FsTree, LeafKind, Meta, Node};

pub fn apply(tree: &mut FsTree, files: &[File], spec: &Spec) -> anyhow::Result<()> {
    for f in files {
        apply_one(tree, f, spec)
            .with_context(|| format!("{}: files entry {:?}", f.origin(), f.path))?;
    }
    Ok(())
}

fn apply_one(tree: &mut FsTree, f: &File, spec: &Spec) -> anyhow::Result<()> {
    let path = Path::new(f.path.trim_start_matches('/'));
    let is_dir = f.directory.unwrap_or(false);
    let default_mode = if is_dir {
        0o755
    } else if f.symlink.is_some() {
        0o777
    } else {
        0o600
    };
    let mode = match &f.mode {
        Some(m) => crate::spec::parse_mode(m).with_context(|| format!("invalid mode {m:?}"))?,
        None => default_mode,
    };
    let meta = Meta {
        mode,
        uid: resolve_id(tree, f.uid.as_ref(), "etc/passwd")?,
        gid: resolve_id(tree, f.gid.as_ref(), "etc/group")?,
        ..Meta::root(mode)
    };
    if let Some(target) = &f.symlink {
        tree.insert(
            path,
            Node::leaf(meta, LeafKind::Symlink(PathBuf::from(target))),
        )?;
    } else if let Some(text) = &f.contents {
        if is_dir {
            bail!("a directory cannot have contents");
        }
        tree.insert(
            path,
            Node::file(meta, Content::Bytes(text.as_bytes().into())),
        )?;
    } else if let Some(src) = &f.source {
        let host = expand_home(src);
        match std::fs::metadata(&host) {
            Ok(m) if m.is_file() => {
                let content = Content::Host {
                    path: Arc::new(host),
                    len: m.len(),
                };
                tree.insert(path, Node::file(meta, content))?;
            }
            Ok(_) => bail!("source {} is not a regular file", host.display()),
            Err(_) if f.optional.unwrap_or(false) => {}
            Err(e) => bail!("source {}: {e}", host.display()),
        }
    } else if let Some(kind) = &f.metadata {
        if kind != "yaml" {
            bail!("unsupported metadata kind {kind:?} (only \"yaml\")");
        }
        let text = spec.to_yaml();
        tree.insert(
            path,
            Node::file(meta, Content::Bytes(text.into_bytes().into())),
        )?;
    } else if is_dir {
        tree.mkdir_p(path, meta.clone())?;
        tree.modify_meta(path, &mut |m| *m = meta.clone())?;
    } else {
        // An entry with only a path is an empty file, as in LinuxKit.
        tree.insert(path, Node::file(meta, Content::Bytes(Arc::from(&b""[..]))))?;
    }
    Ok(())
}

fn expand_home(p: &str) -> PathBuf {
    match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest),
        _ => PathBuf::from(p),
    }
}

/// A numeric id, or a name looked up in the root's passwd/group file.
fn resolve_id(tree: &FsTree, id: Option<&Id>, db: &str) -> anyhow::Result<u32> {
    match id {
        None => Ok(0),
        Some(Id::Number(n)) => Ok(*n),
        Some(Id::Name(n)) => {
            lookup_id(tree, n, db).with_context(|| format!("{n:?} is not in the root's /{db}"))
        }
    }
}

/// The id of `name` in `db` (`etc/passwd` or `etc/group`) inside `tree`.
pub(crate) fn lookup_id(tree: &FsTree, name: &str, db: &str) -> Option<u32> {
    if name == "root" {
        return Some(0);
    }
    let Some(Node::Leaf(inode)) = tree.lookup_follow(Path::new(db)) else {
        return None;
    };
    let LeafKind::File(content) = &inode.kind else {
        return None;
    };
    let mut text = String::new();
    content
        .open()
        .ok()?
        .take(1 << 20)
        .read_to_string(&mut text)
        .ok()?;
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next() == Some(name)).then(|| fields.nth(1)?.parse().ok())?
    })
}
