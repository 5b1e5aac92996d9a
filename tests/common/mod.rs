//! Helpers shared by the integration tests: the smelt binary, the store with
//! the base images `make images` built, and wrappers for external tools that
//! keep their stderr in the failure message.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The smelt binary cargo built for these tests.
pub fn smelt() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_smelt"));
    c.env_remove("SMELT_STORE").env_remove("SOURCE_DATE_EPOCH");
    c
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The store `make images` filled (smelt's default). Fails loudly, never
/// skips, when the base images are missing.
pub fn base_store() -> PathBuf {
    let root = match std::env::var_os("SMELT_STORE") {
        Some(s) => PathBuf::from(s),
        None => match std::env::var_os("XDG_CACHE_HOME") {
            Some(x) => PathBuf::from(x).join("smelt"),
            None => {
                PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/smelt")
            }
        },
    };
    let out = run(smelt().arg("--store").arg(&root).args(["image", "ls"]));
    let listing = String::from_utf8_lossy(&out.stdout);
    for img in [
        "docker.io/smelt/kernel:latest",
        "docker.io/smelt/busybox:latest",
    ] {
        assert!(
            listing.contains(img),
            "base image {img} is not in {}: run `make images` first\n{listing}",
            root.display()
        );
    }
    root
}

/// Run a command; panic with its stdout/stderr unless it succeeds.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Run a command that must fail; returns its stderr.
pub fn run_fail(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        !out.status.success(),
        "{cmd:?} succeeded but should have failed:\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Run a shell pipeline (for independent tools like `zcat | cpio -itv`).
pub fn sh(script: &str) -> String {
    let out = run(Command::new("bash").args(["-o", "pipefail", "-c", script]));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// sha256 of a file, via the independent `sha256sum`.
pub fn sha256sum(path: &Path) -> String {
    let out = run(Command::new("sha256sum").arg(path));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Names of the files in a directory, sorted.
pub fn dir_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}
