//! Test helpers shared by the tree and format tests.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use super::{Content, Dir, FsTree, Inode, LeafKind, Meta, Node, WalkNode};

/// Metadata with `mode`, owner `uid`:`uid`, mtime 1000.
pub fn meta(mode: u32, uid: u32) -> Meta {
    Meta {
        mtime: 1000,
        uid,
        gid: uid,
        ..Meta::root(mode)
    }
}

pub fn bytes(b: &[u8]) -> Content {
    Content::Bytes(Arc::from(b))
}

pub fn dir(mode: u32) -> Node {
    Node::Dir(Dir::new(meta(mode, 0)))
}

/// One line per node: path, kind, mode, owner, mtime, xattrs, content bytes
/// and hardlink group, so two trees compare equal iff they hold the same
/// filesystem whatever their content references are.
pub fn summary(tree: &FsTree) -> Vec<String> {
    let mut groups: HashMap<*const Inode, String> = HashMap::new();
    let mut out = Vec::new();
    for (path, node) in tree.walk() {
        let m = node.meta();
        let what = match node {
            WalkNode::Root(_) | WalkNode::Node(Node::Dir(_)) => "dir".to_string(),
            WalkNode::Node(Node::Leaf(i)) => {
                let group = groups
                    .entry(Arc::as_ptr(i))
                    .or_insert_with(|| path.display().to_string())
                    .clone();
                let kind = match &i.kind {
                    LeafKind::File(c) => {
                        let mut data = Vec::new();
                        c.open()
                            .and_then(|mut r| r.read_to_end(&mut data))
                            .expect("content readable");
                        format!("file {:?}", String::from_utf8_lossy(&data))
                    }
                    k => format!("{k:?}"),
                };
                format!("{kind} link-group={group}")
            }
        };
        out.push(format!(
            "{} {what} {:o} {}:{} t={} x={:?}",
            path.display(),
            m.mode,
            m.uid,
            m.gid,
            m.mtime,
            m.xattrs
        ));
    }
    out
}

/// The regular-file bytes at `path`.
pub fn read(tree: &FsTree, path: &str) -> Vec<u8> {
    let Some(Node::Leaf(i)) = tree.lookup(Path::new(path)) else {
        panic!("{path} is not a leaf")
    };
    let LeafKind::File(c) = &i.kind else {
        panic!("{path} is not a file")
    };
    let mut data = Vec::new();
    c.open()
        .and_then(|mut r| r.read_to_end(&mut data))
        .expect("content readable");
    data
}

/// A tree exercising every node kind: dirs, a setuid file, a hardlink pair,
/// a symlink, a char device, a fifo, an xattr, a long name.
pub fn sample_tree() -> FsTree {
    let mut t = FsTree::new();
    let ins = |t: &mut FsTree, p: &str, n: Node| t.insert(Path::new(p), n).expect("insert");
    ins(&mut t, "bin", dir(0o755));
    ins(
        &mut t,
        "bin/su",
        Node::file(meta(0o4755, 0), bytes(b"#!/bin/sh\necho su\n")),
    );
    let shared = Node::file(meta(0o644, 1000), bytes(b"shared data"));
    ins(&mut t, "etc/a", shared.clone());
    ins(&mut t, "home/user/b", shared);
    ins(&mut t, "etc/empty", Node::file(meta(0o600, 0), bytes(b"")));
    ins(
        &mut t,
        "sbin",
        Node::leaf(meta(0o777, 0), LeafKind::Symlink("bin".into())),
    );
    ins(
        &mut t,
        "dev/null",
        Node::leaf(meta(0o666, 0), LeafKind::CharDev { major: 1, minor: 3 }),
    );
    ins(
        &mut t,
        "dev/sda",
        Node::leaf(meta(0o660, 6), LeafKind::BlockDev { major: 8, minor: 0 }),
    );
    ins(
        &mut t,
        "run/fifo",
        Node::leaf(meta(0o644, 0), LeafKind::Fifo),
    );
    let mut x = meta(0o755, 0);
    x.xattrs.insert(
        "security.capability".into(),
        vec![1, 0, 0, 2, 0x20, 0, 0, 0],
    );
    ins(&mut t, "usr/bin/ping", Node::file(x, bytes(b"ping")));
    let long = format!("usr/share/{}/{}", "d".repeat(80), "f".repeat(90));
    ins(&mut t, &long, Node::file(meta(0o644, 0), bytes(b"long")));
    t.set_mtime_all(1_700_000_000);
    t
}

/// Runs `cmd` and returns its stdout, failing the test with its stderr.
pub fn run(cmd: &mut std::process::Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
