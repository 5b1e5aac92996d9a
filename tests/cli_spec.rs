//! `smelt validate`: exit codes, and errors that name file:line:column.

mod common;

use common::*;

fn validate(files: &[(&str, &str)]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = smelt();
    cmd.arg("validate");
    for (name, text) in files {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        cmd.arg(p);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn valid_example_specs_exit_zero() {
    let out = smelt()
        .arg("validate")
        .arg(repo().join("examples/minimal.yml"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn unknown_key_is_reported_with_position() {
    let (code, _, err) = validate(&[(
        "bad.yml",
        "kernel:\n  image: smelt/kernel\nservices:\n  - name: x\n    imagee: smelt/busybox\n",
    )]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("bad.yml:5:5:") && err.contains("imagee"),
        "{err}"
    );
}

#[test]
fn wrong_type_and_bad_reference_are_reported_with_position() {
    let (code, _, err) = validate(&[(
        "t.yml",
        "onboot:\n  - name: x\n    image: smelt/busybox\n    readonly: maybe\n",
    )]);
    assert_eq!(code, 1);
    assert!(
        err.contains("t.yml:4:15:") && err.contains("readonly"),
        "{err}"
    );
    let (code, _, err) = validate(&[("r.yml", "init:\n  - Not/Valid:ref\n")]);
    assert_eq!(code, 1);
    assert!(
        err.contains("r.yml:2:5:") && err.contains("invalid image reference"),
        "{err}"
    );
}

#[test]
fn multi_file_merge_checks_names_across_files() {
    let svc = "services:\n  - name: web\n    image: smelt/busybox\n";
    let (code, _, err) = validate(&[("a.yml", svc), ("b.yml", svc)]);
    assert_eq!(code, 1);
    assert!(err.contains("b.yml:") && err.contains("web"), "{err}");
    let (code, _, err) = validate(&[
        ("a.yml", "kernel:\n  image: smelt/kernel\n"),
        ("b.yml", svc),
    ]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn json_output_lists_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("j.yml");
    std::fs::write(&p, "bogus: 1\n").unwrap();
    let out = smelt()
        .args(["--json", "validate"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert!(
        v["errors"][0].as_str().unwrap().contains("j.yml:1:1"),
        "{v}"
    );
}

/// `smelt validate --json spec | head -c0`: the reader is gone before smelt
/// writes; smelt stops quietly (exit 0) instead of panicking on EPIPE.
#[test]
fn a_closed_stdout_pipe_is_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("ok.yml");
    std::fs::write(&spec, "init: [smelt/init:latest]\n").unwrap();
    let fifo = dir.path().join("out");
    // The writer's open of the FIFO waits for the reader; the reader opens
    // and closes it at once, long before smelt has parsed the spec.
    let script = format!(
        "mkfifo {f}; {smelt} validate --json {spec} > {f} 2> {err} & exec 3< {f}; exec 3<&-; wait $!; echo rc=$?",
        f = fifo.display(),
        smelt = env!("CARGO_BIN_EXE_smelt"),
        spec = spec.display(),
        err = dir.path().join("err").display()
    );
    let out = sh(&script);
    let err = std::fs::read_to_string(dir.path().join("err")).unwrap();
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.trim(), "rc=0", "{err}");
}
