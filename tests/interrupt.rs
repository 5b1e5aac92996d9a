//! A build killed while it writes artifacts (SIGKILL or Ctrl-C) leaves no
//! file in the output directory, and earlier outputs stay as they were.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

/// True once process `pid` holds an open file inside `dir` (an artifact
/// being written: an anonymous O_TMPFILE shows as `DIR/#NNN (deleted)`).
fn writing_into(pid: u32, dir: &Path) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path())
            .map(|t| t.starts_with(dir))
            .unwrap_or(false)
    })
}

fn kill_while_writing(signal: &str) {
    let store = base_store();
    let spec = tempfile::tempdir().unwrap();
    let yml = minimal_copy(spec.path());
    let out = tempfile::tempdir().unwrap();
    std::fs::write(out.path().join("minimal-kernel"), b"earlier output").unwrap();
    let mut child = local_build(&store, out.path())
        .args(["-q", "-f", "kernel+initrd", "-f", "tar"])
        .arg(&yml)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let dir = out.path().canonicalize().unwrap();
    while !writing_into(child.id(), &dir) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "build finished before it was seen writing"
        );
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "build never started writing"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    run(std::process::Command::new("kill").args([signal, &child.id().to_string()]));
    let status = child.wait().unwrap();
    assert!(!status.success(), "{status}");
    assert_eq!(dir_names(out.path()), ["minimal-kernel"]);
    assert_eq!(
        std::fs::read(out.path().join("minimal-kernel")).unwrap(),
        b"earlier output"
    );
}

#[test]
fn sigkill_during_write_leaves_nothing() {
    kill_while_writing("-KILL");
}

#[test]
fn sigint_during_write_leaves_nothing() {
    kill_while_writing("-INT");
}
