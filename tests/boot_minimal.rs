//! examples/minimal.yml builds as kernel+initrd from the base images and
//! boots under QEMU (TCG) with `smelt run` to its marker, then powers off
//! by itself; `smelt run` reports a clean poweroff as exit 0 and a timeout
//! as exit 124.

mod common;

use std::path::Path;

use common::*;

fn build_minimal(out: &Path, specs: &Path) {
    let store = base_store();
    let yml = minimal_copy(specs);
    run(local_build(&store, out).arg(&yml));
    assert_eq!(
        dir_names(out),
        [
            "minimal-cmdline",
            "minimal-config.img",
            "minimal-initrd.img",
            "minimal-kernel",
            "minimal.manifest.json"
        ]
    );
}

#[test]
fn minimal_example_builds_boots_and_powers_off() {
    let (out, specs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    build_minimal(out.path(), specs.path());
    let boot = smelt()
        .args(["run", "--timeout", "300", "--name", "minimal"])
        .arg(out.path())
        .output()
        .unwrap();
    let console = String::from_utf8_lossy(&boot.stdout);
    assert!(
        console.contains("SMELT_MINIMAL_OK"),
        "marker not on the console ({}):\n{console}\n{}",
        boot.status,
        String::from_utf8_lossy(&boot.stderr)
    );
    assert_eq!(boot.status.code(), Some(0), "not a clean poweroff");
}

#[test]
fn run_timeout_exits_124() {
    let (out, specs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    build_minimal(out.path(), specs.path());
    // One second is far less than this kernel needs to reach /init.
    let boot = smelt()
        .args(["run", "--timeout", "1"])
        .arg(out.path().join("minimal-kernel"))
        .output()
        .unwrap();
    assert_eq!(
        boot.status.code(),
        Some(124),
        "{}",
        String::from_utf8_lossy(&boot.stderr)
    );
    assert!(!String::from_utf8_lossy(&boot.stdout).contains("SMELT_MINIMAL_OK"));
}
