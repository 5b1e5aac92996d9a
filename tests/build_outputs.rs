//! Artifacts of a real build (the base images from `make images`): the
//! independent tools read them, two builds are byte-identical, the manifest
//! tells the truth, and a failed build leaves earlier outputs untouched.

mod common;

use std::path::Path;

use common::*;

fn build(store: &Path, out: &Path, spec: &Path, extra: &[&str]) {
    run(local_build(store, out)
        .args(["-f", "kernel+initrd", "-f", "tar"])
        .args(extra)
        .arg(spec));
}

#[test]
fn two_builds_are_byte_identical_and_manifest_matches() {
    let store = base_store();
    let spec = tempfile::tempdir().unwrap();
    let yml = minimal_copy(spec.path());
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    build(&store, a.path(), &yml, &[]);
    build(&store, b.path(), &yml, &[]);
    let names = dir_names(a.path());
    assert_eq!(
        names,
        [
            "minimal-cmdline",
            "minimal-config.img",
            "minimal-initrd.img",
            "minimal-kernel",
            "minimal.manifest.json",
            "minimal.tar"
        ]
    );
    for n in &names {
        assert_eq!(
            sha256sum(&a.path().join(n)),
            sha256sum(&b.path().join(n)),
            "{n} differs between two builds"
        );
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.path().join("minimal.manifest.json")).unwrap())
            .unwrap();
    let outputs = manifest["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 5, "{manifest:#}");
    for o in outputs {
        let name = o["name"].as_str().unwrap();
        let path = a.path().join(name);
        assert_eq!(
            o["sha256"].as_str().unwrap(),
            format!("sha256:{}", sha256sum(&path)),
            "{name}"
        );
        assert_eq!(
            o["size"].as_u64().unwrap(),
            std::fs::metadata(&path).unwrap().len(),
            "{name}"
        );
    }
    let roles: Vec<&str> = manifest["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        [
            "kernel",
            "init",
            "init",
            "init",
            "onboot/000-hello",
            "onboot/001-poweroff"
        ]
    );
    // The lock file pins the same digests.
    let lock: serde_json::Value =
        serde_json::from_slice(&std::fs::read(spec.path().join("minimal.lock")).unwrap()).unwrap();
    for i in manifest["images"].as_array().unwrap() {
        assert_eq!(
            lock["images"][i["reference"].as_str().unwrap()],
            i["digest"],
            "{lock:#}"
        );
    }
}

#[test]
fn source_date_epoch_changes_the_bytes() {
    let store = base_store();
    let spec = tempfile::tempdir().unwrap();
    let yml = minimal_copy(spec.path());
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    build(&store, a.path(), &yml, &[]);
    run(smelt()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .arg("--store")
        .arg(&store)
        .args(["build", "--pull", "never", "-f", "tar", "-o"])
        .arg(b.path())
        .arg(&yml));
    assert_ne!(
        sha256sum(&a.path().join("minimal.tar")),
        sha256sum(&b.path().join("minimal.tar"))
    );
    let listing = sh(&format!(
        "tar -tvf {} bin/busybox",
        b.path().join("minimal.tar").display()
    ));
    assert!(listing.contains("2023-11-14"), "{listing}");
}

#[test]
fn independent_tools_read_the_initrd_and_tar() {
    let store = base_store();
    let spec = tempfile::tempdir().unwrap();
    let yml = minimal_copy(spec.path());
    let out = tempfile::tempdir().unwrap();
    build(&store, out.path(), &yml, &[]);
    let initrd = out.path().join("minimal-initrd.img");
    sh(&format!("gzip -t {}", initrd.display()));
    let cpio = sh(&format!("zcat {} | cpio -itv --quiet", initrd.display()));
    let line = |name: &str| {
        cpio.lines()
            .find(|l| l.ends_with(&format!(" {name}")) || l.contains(&format!(" {name} -> ")))
            .unwrap_or_else(|| panic!("{name} not in the initrd:\n{cpio}"))
            .to_string()
    };
    assert!(
        line("dev/console").starts_with("crw-------"),
        "{}",
        line("dev/console")
    );
    assert!(
        line("dev/console").contains("5,   1") || line("dev/console").contains("5, 1"),
        "{}",
        line("dev/console")
    );
    assert!(line("init").starts_with("-rwxr-xr-x"), "{}", line("init"));
    assert!(
        line("bin/sh").starts_with("lrwxrwxrwx"),
        "{}",
        line("bin/sh")
    );
    assert!(
        cpio.contains("lib/modules/"),
        "kernel modules missing from the initrd"
    );
    // Extract smelt's init and the first onboot bundle's config.
    let x = tempfile::tempdir().unwrap();
    sh(&format!(
        "cd {} && zcat {} | cpio -id --quiet --no-absolute-filenames init containers/onboot/000-hello/config.json",
        x.path().display(),
        initrd.display()
    ));
    let init = std::fs::read(x.path().join("init")).unwrap();
    assert!(
        init.starts_with(b"\x7fELF"),
        "/init is not smelt's init binary"
    );
    let config =
        std::fs::read_to_string(x.path().join("containers/onboot/000-hello/config.json")).unwrap();
    assert!(config.contains("SMELT_MINIMAL_OK"), "{config}");
    // The tar output: root tree plus boot/kernel, identical kernel bytes.
    let tar = out.path().join("minimal.tar");
    let listing = sh(&format!("tar -tvf {}", tar.display()));
    assert!(listing.contains(" boot/kernel"), "{listing}");
    sh(&format!(
        "cd {} && tar -xf {} boot/kernel",
        x.path().display(),
        tar.display()
    ));
    assert_eq!(
        sha256sum(&x.path().join("boot/kernel")),
        sha256sum(&out.path().join("minimal-kernel"))
    );
}

#[test]
fn failed_build_leaves_earlier_outputs_untouched() {
    let store = base_store();
    let spec = tempfile::tempdir().unwrap();
    let yml = minimal_copy(spec.path());
    let out = tempfile::tempdir().unwrap();
    build(&store, out.path(), &yml, &[]);
    let before = dir_hashes(out.path());
    // Same name, a spec that fails late (after the images are applied).
    let bad = spec.path().join("bad.yml");
    std::fs::write(
        &bad,
        "files:\n  - path: etc/missing\n    source: /nonexistent/smelt-test-file\n",
    )
    .unwrap();
    let err = run_fail(
        local_build(&store, out.path())
            .args(["-f", "kernel+initrd", "-f", "tar", "--name", "minimal"])
            .arg(&yml)
            .arg(&bad),
    );
    assert!(
        err.contains("bad.yml:2:") && err.contains("/nonexistent/smelt-test-file"),
        "{err}"
    );
    let after = dir_hashes(out.path());
    assert_eq!(before, after);
    // Two formats that write the same file names: refused, nothing written.
    let err = run_fail(
        local_build(&store, out.path())
            .args(["-f", "kernel+initrd", "-f", "kernel+squashfs"])
            .arg(&yml),
    );
    assert!(
        err.contains("both write NAME-kernel, NAME-initrd.img"),
        "{err}"
    );
    assert_eq!(dir_hashes(out.path()), before);
}
