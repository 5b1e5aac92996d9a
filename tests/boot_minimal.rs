//! examples/minimal.yml builds as kernel+initrd from the base images and
//! boots under QEMU (TCG) to its marker, then powers off by itself.

mod common;

use std::time::Duration;

use common::*;
use smelt::run::qemu::{Accel, BootConfig};

#[test]
fn minimal_example_builds_boots_and_powers_off() {
    let store = base_store();
    let out = tempfile::tempdir().unwrap();
    let spec = tempfile::tempdir().unwrap();
    let yml = minimal_copy(spec.path());
    run(local_build(&store, out.path()).arg(&yml));
    assert_eq!(
        dir_names(out.path()),
        [
            "minimal-cmdline",
            "minimal-initrd.img",
            "minimal-kernel",
            "minimal.manifest.json"
        ]
    );
    let cmdline = std::fs::read_to_string(out.path().join("minimal-cmdline")).unwrap();
    let result = BootConfig {
        kernel: Some(out.path().join("minimal-kernel")),
        initrd: Some(out.path().join("minimal-initrd.img")),
        cmdline: Some(cmdline),
        mem_mib: 1024,
        timeout: Duration::from_secs(180),
        accel: Accel::Auto,
        echo: true,
        ..BootConfig::default()
    }
    .boot()
    .expect("qemu runs");
    assert!(
        result.console.contains("SMELT_MINIMAL_OK"),
        "marker not on the console; outcome {:?}\n{}\n{}",
        result.outcome,
        result.console,
        result.stderr_tail
    );
    assert!(
        result.powered_off(),
        "guest did not power off cleanly: {:?}",
        result.outcome
    );
}
