//! Builds from a real registry (Debian's docker-registry on 127.0.0.1):
//! base images pushed with `smelt image push`, pulled with
//! `--pull always --mirror`, byte-identical to a build from the local store;
//! a corrupted blob fails the build with a digest error and writes nothing;
//! `--locked` notices a moved tag.

mod common;

use std::path::Path;

use common::*;
use smelt::oci::testregistry::TestRegistry;
use smelt::oci::{Reference, Store};

/// Every image examples/minimal.yml names.
const BASE: [&str; 5] = [
    "smelt/kernel:latest",
    "smelt/busybox:latest",
    "smelt/init:latest",
    "smelt/runc:latest",
    "smelt/poweroff:latest",
];

fn push_base(store: &Path, reg: &TestRegistry) {
    for img in BASE {
        run(smelt()
            .arg("--store")
            .arg(store)
            .args(["-q", "image", "push", img])
            .arg(format!("{}/{img}", reg.host())));
    }
}

fn build_from(
    reg: &TestRegistry,
    store: &Path,
    out: &Path,
    spec: &Path,
    extra: &[&str],
) -> std::process::Command {
    let mut c = smelt();
    c.arg("--store")
        .arg(store)
        .args(["build", "--pull", "always", "--mirror"])
        .arg(format!("docker.io={}", reg.url()))
        .args(extra)
        .arg("-o")
        .arg(out)
        .arg(spec);
    c
}

#[test]
fn registry_build_matches_local_build_and_lock_detects_moved_tag() {
    let base = base_store();
    let reg = TestRegistry::start();
    push_base(&base, &reg);

    let specs = tempfile::tempdir().unwrap();
    let yml = minimal_copy(specs.path());
    let empty_store = tempfile::tempdir().unwrap();
    let (from_reg, from_local) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    run(&mut build_from(
        &reg,
        empty_store.path(),
        from_reg.path(),
        &yml,
        &[],
    ));
    run(local_build(&base, from_local.path()).arg(&yml));
    let names = dir_names(from_reg.path());
    assert_eq!(names.len(), 5, "{names:?}");
    assert_eq!(
        dir_hashes(from_reg.path()),
        dir_hashes(from_local.path()),
        "registry build differs from local build"
    );
    // The pulled images are now in the fresh store under their docker.io names.
    let listing = String::from_utf8(
        run(smelt()
            .arg("--store")
            .arg(empty_store.path())
            .args(["image", "ls"]))
        .stdout,
    )
    .unwrap();
    for img in BASE {
        assert!(listing.contains(&format!("docker.io/{img}")), "{listing}");
    }

    // Move the busybox tag to another image; --locked must refuse.
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("hello"), b"not busybox\n").unwrap();
    let side_store = tempfile::tempdir().unwrap();
    let moved = format!("{}/smelt/busybox:latest", reg.host());
    run(smelt()
        .arg("--store")
        .arg(side_store.path())
        .args(["-q", "image", "pack"])
        .arg(other.path())
        .args(["--tag", &moved]));
    run(smelt()
        .arg("--store")
        .arg(side_store.path())
        .args(["-q", "image", "push", &moved, &moved]));
    let out = tempfile::tempdir().unwrap();
    let err = run_fail(&mut build_from(
        &reg,
        empty_store.path(),
        out.path(),
        &yml,
        &["--locked"],
    ));
    assert!(
        err.contains("docker.io/smelt/busybox:latest now resolves to")
            && err.contains("minimal.lock"),
        "{err}"
    );
    assert!(
        dir_names(out.path()).is_empty(),
        "{:?}",
        dir_names(out.path())
    );
}

#[test]
fn corrupted_registry_blob_fails_with_digest_error_and_no_output() {
    let base = base_store();
    let reg = TestRegistry::start();
    push_base(&base, &reg);
    // Flip one byte of busybox's layer in the registry's own storage.
    let store = Store::open(&base).unwrap();
    let r = Reference::parse("smelt/busybox:latest").unwrap();
    let image = store.image(&store.lookup(&r).unwrap().unwrap()).unwrap();
    let layer = &image.layers[0].digest;
    let data = reg.blob_data_path(layer);
    let mut bytes = std::fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&data, &bytes).unwrap();

    let specs = tempfile::tempdir().unwrap();
    let yml = minimal_copy(specs.path());
    let empty_store = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let err = run_fail(&mut build_from(
        &reg,
        empty_store.path(),
        out.path(),
        &yml,
        &[],
    ));
    assert!(
        err.contains(&format!("blob {layer}")) && err.contains("digest mismatch"),
        "{err}"
    );
    assert!(
        err.contains("minimal.yml:"),
        "error does not name the spec position: {err}"
    );
    assert!(
        dir_names(out.path()).is_empty(),
        "{:?}",
        dir_names(out.path())
    );
    assert!(!specs.path().join("minimal.lock").exists());
}
