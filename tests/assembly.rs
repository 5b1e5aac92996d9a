//! Assembly through the whole `smelt build`, from synthetic multi-layer
//! images in a scratch store, checked with GNU tar and cpio: whiteouts and
//! opaque directories across layers, hardlinks, device nodes, modes and
//! owners, the kernel image's nested modules tarball, container bundles
//! (config.json from image config vs label vs YAML), `files` with owner
//! names, and path-escape rejection.

mod common;

use std::path::Path;

use common::*;
use serde_json::{Value, json};

fn fixture_store(root: &Path) {
    let modules = LayerBuilder::default()
        .dir("lib/modules/6.0-test/kernel")
        .file(
            "lib/modules/6.0-test/kernel/foo.ko",
            0o644,
            b"FOOMODULE-BYTES",
        )
        .file(
            "lib/modules/6.0-test/modules.dep",
            0o644,
            b"kernel/foo.ko:\n",
        )
        .build();
    let kernel = LayerBuilder::default()
        .file("kernel", 0o644, b"NOT-A-REAL-BZIMAGE")
        .file("kernel.tar", 0o644, &modules)
        .build();
    store_image(root, "test/kernel:1", &[kernel], json!({}));

    let lower = LayerBuilder::default()
        .dir("a")
        .file("a/keep", 0o644, b"keep")
        .file("a/gone", 0o644, b"gone")
        .dir("o")
        .file("o/old", 0o644, b"old")
        .file("h1", 0o644, b"linked")
        .dir("etc")
        .file(
            "etc/passwd",
            0o644,
            b"root:x:0:0::/root:/bin/sh\nsvc:x:1000:1001::/:/bin/sh\n",
        )
        .file("etc/group", 0o644, b"root:x:0:\nsvc:x:1001:\n")
        .build();
    let upper = LayerBuilder::default()
        .file("a/.wh.gone", 0o644, b"")
        .file("o/.wh..wh..opq", 0o644, b"")
        .file("o/new", 0o644, b"new")
        .hardlink("h2", "h1")
        .dir("dev")
        .chardev("dev/zero", 1, 5)
        .dir("sbin")
        .file("sbin/su", 0o4755, b"setuid")
        .owned_file("srv-data", 1000, 1001, b"owned")
        .symlink("bin", "usr/bin")
        .build();
    store_image(root, "test/base:1", &[lower, upper], json!({}));

    let svc = LayerBuilder::default()
        .dir("bin")
        .file("bin/server", 0o755, b"#!/bin/sh\n")
        .build();
    let label =
        json!({ "capabilities": ["CAP_NET_ADMIN"], "binds": ["/var/log:/var/log"] }).to_string();
    store_image(
        root,
        "test/svc:1",
        &[svc],
        json!({
            "Env": ["PATH=/bin", "FROM_IMAGE=1"],
            "Cmd": ["/bin/server", "--image"],
            "WorkingDir": "/srv",
            "Labels": { "org.mobyproject.config": label },
        }),
    );
}

const GOLDEN_TAR: &str = "3907b8ba2312041e03c40cb7ac2906884b98693b5bb732d6841856a09065e750";
const GOLDEN_INITRD: &str = "51b530fafe47a6c81c012ad2261985e5b80c537819c5ed5839c2ecccdf0c5ce1";
const GOLDEN_MANIFEST: &str = "cedf4b1f4e183453294e524756a410755bc3d9e763d14bc98871559364c92e23";

const SPEC: &str = r#"kernel:
  image: test/kernel:1
  cmdline: "console=ttyS0"
init:
  - test/base:1
onboot:
  - name: setup
    image: test/svc:1
    command: ["/bin/server", "--yaml"]
services:
  - name: web
    image: test/svc:1
    binds.add:
      - /etc/resolv.conf:/etc/resolv.conf
files:
  - path: etc/motd
    contents: "hello\n"
    mode: "0644"
  - path: etc/owned
    contents: "x"
    uid: svc
    gid: svc
  - path: etc/resolv.conf
    contents: "nameserver 10.0.2.3\n"
    mode: "0644"
"#;

fn build(store: &Path, spec: &Path, out: &Path) {
    run(local_build(store, out)
        .args(["-f", "tar", "-f", "kernel+initrd", "--name", "t"])
        .arg(spec));
}

fn find_line<'a>(listing: &'a str, suffix: &str) -> Option<&'a str> {
    listing.lines().find(|l| l.ends_with(suffix))
}

fn config_json(tar: &Path, member: &str) -> Value {
    let text = sh(&format!("tar -xOf {} {member}", tar.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{member}: {e}\n{text}"))
}

#[test]
fn layers_bundles_and_files_assemble_as_linuxkit_does() {
    let store = tempfile::tempdir().unwrap();
    fixture_store(store.path());
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("t.yml");
    std::fs::write(&spec, SPEC).unwrap();
    let out = tempfile::tempdir().unwrap();
    build(store.path(), &spec, out.path());

    let tar = out.path().join("t.tar");
    // Reproducible bytes, pinned: the same images and spec give these exact
    // artifacts on any machine, with any number of CPUs. A deliberate format
    // change updates these hashes in the same commit.
    let pinned = [
        ("t.tar", GOLDEN_TAR),
        ("t-initrd.img", GOLDEN_INITRD),
        ("t.manifest.json", GOLDEN_MANIFEST),
    ];
    let got: Vec<(&str, String)> = pinned
        .iter()
        .map(|(name, _)| (*name, sha256sum(&out.path().join(name))))
        .collect();
    let want: Vec<(&str, String)> = pinned.iter().map(|(n, h)| (*n, h.to_string())).collect();
    assert_eq!(got, want, "artifact bytes changed");
    let listing = sh(&format!("tar --numeric-owner -tvf {}", tar.display()));
    let has = |p: &str| {
        find_line(&listing, &format!(" {p}")).is_some() || listing.contains(&format!(" {p} "))
    };
    // Whiteouts and opaque directories across layers.
    assert!(has("a/keep") && !has("a/gone"), "{listing}");
    assert!(has("o/new") && !has("o/old"), "{listing}");
    assert!(!listing.contains(".wh."), "{listing}");
    // Hardlink, device node, setuid, owner, symlink.
    assert!(listing.contains(" h2 link to h1"), "{listing}");
    let zero = find_line(&listing, " dev/zero").expect("dev/zero");
    assert!(
        zero.starts_with("crw-rw-rw-") && zero.contains("1,5"),
        "{zero}"
    );
    assert!(
        find_line(&listing, " sbin/su")
            .unwrap()
            .starts_with("-rwsr-xr-x"),
        "{listing}"
    );
    assert!(
        find_line(&listing, " srv-data")
            .unwrap()
            .contains(" 1000/1001 "),
        "{listing}"
    );
    assert!(listing.contains(" bin -> usr/bin"), "{listing}");
    // files: mode, and names resolved in the root's own /etc/passwd.
    assert!(
        find_line(&listing, " etc/motd")
            .unwrap()
            .starts_with("-rw-r--r--"),
        "{listing}"
    );
    assert!(
        find_line(&listing, " etc/owned")
            .unwrap()
            .contains(" 1000/1001 "),
        "{listing}"
    );
    // The kernel image's kernel.tar (a tar inside a layer) is unpacked.
    assert_eq!(
        sh(&format!(
            "tar -xOf {} lib/modules/6.0-test/kernel/foo.ko",
            tar.display()
        )),
        "FOOMODULE-BYTES"
    );
    assert_eq!(
        sh(&format!("tar -xOf {} boot/kernel", tar.display())),
        "NOT-A-REAL-BZIMAGE"
    );
    assert_eq!(
        std::fs::read(out.path().join("t-kernel")).unwrap(),
        b"NOT-A-REAL-BZIMAGE"
    );
    assert_eq!(
        std::fs::read_to_string(out.path().join("t-cmdline")).unwrap(),
        "console=ttyS0"
    );

    // Bundles: onboot numbered, services by name, each with rootfs + config.json.
    assert!(
        has("containers/onboot/000-setup/rootfs/bin/server"),
        "{listing}"
    );
    assert!(
        has("containers/services/web/rootfs/bin/server"),
        "{listing}"
    );
    assert!(has("containers/services/web/runtime.json"), "{listing}");
    let setup = config_json(&tar, "containers/onboot/000-setup/config.json");
    let web = config_json(&tar, "containers/services/web/config.json");
    // YAML command beats the image's Cmd; without it the image's Cmd is used.
    assert_eq!(setup["process"]["args"], json!(["/bin/server", "--yaml"]));
    assert_eq!(web["process"]["args"], json!(["/bin/server", "--image"]));
    // Image config supplies env and cwd.
    assert!(
        web["process"]["env"]
            .as_array()
            .unwrap()
            .contains(&json!("FROM_IMAGE=1")),
        "{web:#}"
    );
    assert_eq!(web["process"]["cwd"], json!("/srv"));
    assert_eq!(web["root"]["path"], json!("rootfs"));
    // The label supplies capabilities and binds; YAML binds.add appends.
    let caps = &web["process"]["capabilities"]["bounding"];
    assert!(
        caps.as_array().unwrap().contains(&json!("CAP_NET_ADMIN")),
        "{web:#}"
    );
    let dests: Vec<&str> = web["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["destination"].as_str())
        .collect();
    assert!(
        dests.contains(&"/var/log") && dests.contains(&"/etc/resolv.conf"),
        "{dests:?}"
    );
    // Mount points missing from the read-only rootfs are created: a file
    // for a bind whose source is a file, a directory otherwise.
    let resolv = find_line(&listing, " containers/services/web/rootfs/etc/resolv.conf")
        .expect("resolv.conf mount point");
    assert!(resolv.starts_with("-rw-r--r--"), "{resolv}");
    assert!(
        has("containers/services/web/rootfs/var/log/")
            || has("containers/services/web/rootfs/var/log"),
        "{listing}"
    );

    // The initrd holds the same tree: hardlinks share an inode, devices survive.
    let cpio = sh(&format!(
        "zcat {} | cpio -itv --quiet",
        out.path().join("t-initrd.img").display()
    ));
    let h1 = find_line(&cpio, " h1").expect("h1 in cpio");
    assert!(
        h1.split_whitespace().nth(1) == Some("2"),
        "nlink of h1: {h1}"
    );
    assert!(
        find_line(&cpio, " dev/zero")
            .unwrap()
            .starts_with("crw-rw-rw-"),
        "{cpio}"
    );
}

#[test]
fn layer_entry_escaping_the_root_is_rejected_naming_image_and_entry() {
    for (i, name) in ["../../evil", "/etc/evil", "a/../../evil"]
        .iter()
        .enumerate()
    {
        rejects_layer_entry(i, name);
    }
}

fn rejects_layer_entry(i: usize, name: &str) {
    let store = tempfile::tempdir().unwrap();
    let evil = LayerBuilder::default()
        .file("ok", 0o644, b"ok")
        .raw_name_file(name.as_bytes(), b"pwned")
        .build();
    store_image(store.path(), &format!("test/evil:{i}"), &[evil], json!({}));
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("evil.yml");
    std::fs::write(&spec, format!("init:\n  - test/evil:{i}\n")).unwrap();
    let out = tempfile::tempdir().unwrap();
    let err = run_fail(
        local_build(store.path(), out.path())
            .args(["-f", "tar"])
            .arg(&spec),
    );
    let image = format!("docker.io/test/evil:{i}");
    assert!(err.contains(&image) && err.contains(name), "{err}");
    assert!(dir_names(out.path()).is_empty());
}

#[test]
fn missing_image_with_pull_never_names_reference_and_position() {
    let store = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("m.yml");
    std::fs::write(&spec, "init:\n  - test/absent:1\n").unwrap();
    let out = tempfile::tempdir().unwrap();
    let err = run_fail(
        local_build(store.path(), out.path())
            .args(["-f", "tar"])
            .arg(&spec),
    );
    assert!(
        err.contains("m.yml:2:5") && err.contains("docker.io/test/absent:1"),
        "{err}"
    );
    assert!(dir_names(out.path()).is_empty());
}
