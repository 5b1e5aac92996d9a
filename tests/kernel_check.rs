//! `smelt kernel check`: the base kernel image, `--config` files, kernel
//! images without a config and in LinuxKit's layouts, and the exit codes
//! (0 all present, 1 missing, 2 error).

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;

/// A `.config` with every option of every fragment built in, then `extra`
/// (later lines win, as in Kconfig).
fn full_config(extra: &str) -> String {
    let mut text = String::from("#\n# Linux/x86 6.1.99 Kernel Configuration\n#\n");
    for f in smelt::kernel::Feature::ALL {
        for r in f.requirements() {
            text.push_str(&format!("{}=y\n", r.option));
        }
    }
    text + extra
}

fn output(cmd: &mut Command) -> (Option<i32>, String, String) {
    let out: Output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `smelt kernel check --config FILE` with `text` as the file, and `args`.
fn check_config(text: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config-test");
    std::fs::write(&path, text).unwrap();
    output(
        smelt()
            .args(["kernel", "check", "--config"])
            .arg(&path)
            .args(args),
    )
}

#[test]
fn the_base_kernel_image_has_what_kernel_initrd_needs() {
    let store = base_store();
    let (code, stdout, stderr) = output(
        smelt()
            .arg("--store")
            .arg(&store)
            .args(["kernel", "check", "smelt/kernel:latest", "--pull", "never"])
            .args(["--for", "kernel+initrd"]),
    );
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let line = stdout.trim();
    assert!(
        line.starts_with("kernel ") && line.ends_with(" options for kernel+initrd present"),
        "{stdout}"
    );
    let (code, json, _) = output(
        smelt()
            .arg("--store")
            .arg(&store)
            .args(["--json", "kernel", "check", "smelt/kernel:latest"])
            .args(["--pull", "never"]),
    );
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        v["config"], "docker.io/smelt/kernel:latest:/kernel.config",
        "{json}"
    );
    assert_eq!(v["outputs"], serde_json::json!(["kernel+initrd"]));
    assert_eq!(v["missing"], serde_json::json!([]));
    // The release comes from the bzImage header, as `uname -r` says it.
    let kernel = v["kernel"].as_str().unwrap();
    assert!(kernel.chars().next().unwrap().is_ascii_digit(), "{kernel}");
}

#[test]
fn usb_storage_unset_is_missing_for_iso() {
    let text = full_config("# CONFIG_USB_STORAGE is not set\n");
    let (code, stdout, stderr) = check_config(&text, &["--for", "iso"]);
    assert_eq!(code, Some(1), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(
        stdout,
        "MISSING CONFIG_USB_STORAGE (needed =y or =m for iso: USB sticks: the USB mass storage driver), kernel has: not set\n\
         kernel 6.1.99: 1 option missing for iso\n"
    );
    // kernel+initrd does not need it.
    let (code, stdout, _) = check_config(&text, &[]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        stdout.ends_with("options for kernel+initrd present\n"),
        "{stdout}"
    );
}

#[test]
fn a_module_where_built_in_is_needed_is_missing() {
    let text = full_config("CONFIG_UNIX=m\nCONFIG_SQUASHFS=m\n");
    let (code, stdout, _) = check_config(&text, &["--for", "kernel+squashfs"]);
    assert_eq!(code, Some(1), "{stdout}");
    assert_eq!(
        stdout,
        "MISSING CONFIG_UNIX (needed =y for base: runc talks to its init process over AF_UNIX sockets), kernel has: module\n\
         kernel 6.1.99: 1 option missing for kernel+squashfs\n"
    );
}

#[test]
fn the_root_compressor_decides_the_squashfs_option() {
    let text = full_config("# CONFIG_SQUASHFS_XZ is not set\n");
    let (code, _, _) = check_config(&text, &["--for", "uki"]);
    assert_eq!(
        code,
        Some(0),
        "zstd (the default) does not need SQUASHFS_XZ"
    );
    let (code, stdout, _) = check_config(&text, &["--for", "uki", "--root-compression", "xz"]);
    assert_eq!(code, Some(1));
    assert!(
        stdout.starts_with("MISSING CONFIG_SQUASHFS_XZ (needed =y for squashfs-xz: "),
        "{stdout}"
    );
}

#[test]
fn json_lists_what_is_missing() {
    let text = full_config("# CONFIG_EFI_STUB is not set\nCONFIG_EFI_PARTITION=m\n");
    let (code, stdout, _) = check_config(&text, &["--json", "--for", "raw,qcow2"]);
    assert_eq!(code, Some(1));
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let missing: Vec<(&str, &str, &str, &str)> = v["missing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["option"].as_str().unwrap(),
                m["needed"].as_str().unwrap(),
                m["has"].as_str().unwrap(),
                m["feature"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        missing,
        [
            ("CONFIG_EFI_PARTITION", "y", "module", "raw"),
            ("CONFIG_EFI_STUB", "y", "not set", "uefi"),
        ]
    );
    assert_eq!(v["outputs"], serde_json::json!(["raw", "qcow2"]));
}

#[test]
fn an_unknown_output_is_an_error_listing_the_valid_ones() {
    let (code, stdout, stderr) = check_config(&full_config(""), &["--for", "iso,floppy"]);
    assert_eq!(code, Some(2), "{stdout}");
    assert_eq!(
        stderr.trim(),
        "smelt: error: unknown output \"floppy\" (valid: kernel+initrd, tar, kernel+squashfs, uki, iso, raw, qcow2; LinuxKit's iso-bios, iso-efi, raw-bios, raw-efi, qcow2-bios, qcow2-efi)"
    );
}

#[test]
fn a_malformed_config_is_an_error_naming_its_line() {
    let text = full_config("CONFIG_BROKEN\n");
    let lines = text.lines().count();
    let (code, stdout, stderr) = check_config(&text, &[]);
    assert_eq!(code, Some(2), "{stdout}");
    assert!(
        stderr.contains(&format!(
            "config-test:{lines}: expected CONFIG_NAME=VALUE or a # comment, found \"CONFIG_BROKEN\""
        )),
        "{stderr}"
    );
}

/// A one-layer image of `dir` in the store `store`.
fn pack(store: &Path, dir: &Path, tag: &str) {
    run(smelt()
        .arg("--store")
        .arg(store)
        .args(["image", "pack"])
        .arg(dir)
        .args(["--tag", tag]));
}

fn check_image(store: &Path, tag: &str, args: &[&str]) -> (Option<i32>, String, String) {
    output(
        smelt()
            .arg("--store")
            .arg(store)
            .args(["kernel", "check", tag, "--pull", "never"])
            .args(args),
    )
}

#[test]
fn an_image_without_a_config_cannot_be_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, store) = (tmp.path().join("img"), tmp.path().join("store"));
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("kernel"), b"not really a bzImage").unwrap();
    pack(&store, &dir, "example.com/bare-kernel:1");
    let (code, stdout, stderr) = check_image(&store, "example.com/bare-kernel:1", &[]);
    assert_eq!(code, Some(2), "a missing config must not pass: {stdout}");
    assert_eq!(stdout, "");
    assert_eq!(
        stderr.trim(),
        "smelt: error: kernel image example.com/bare-kernel:1 carries no kernel config \
         (looked for /kernel.config, /kernel_config, boot/config-* in /kernel.tar, \
         usr/src/linux-headers-*/.config in /kernel-dev.tar): the check cannot run; \
         check the kernel's .config with --config FILE"
    );
}

/// A tar of the directory `src` at `dest`, as LinuxKit builds its tarballs
/// (`tar cf X.tar .`).
fn tar_dir(src: &Path, dest: &Path) {
    run(Command::new("tar")
        .arg("-C")
        .arg(src)
        .arg("-cf")
        .arg(dest)
        .arg("."));
}

#[test]
fn linuxkit_layouts_carry_the_config_in_a_tarball() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let config = full_config("# CONFIG_ISO9660_FS is not set\n");
    // (tarball, path of the config in it, release it names)
    let cases = [
        (
            "kernel.tar",
            "boot/config-6.6.13-linuxkit",
            "6.6.13-linuxkit",
        ),
        (
            "kernel-dev.tar",
            "usr/src/linux-headers-6.6.14-linuxkit/.config",
            "6.6.14-linuxkit",
        ),
    ];
    for (i, (tarball, member, release)) in cases.iter().enumerate() {
        let stage = tmp.path().join(format!("stage{i}"));
        let img = tmp.path().join(format!("img{i}"));
        let path = stage.join(member);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::create_dir_all(stage.join("lib/modules").join(release)).unwrap();
        std::fs::write(&path, &config).unwrap();
        std::fs::create_dir(&img).unwrap();
        std::fs::write(img.join("kernel"), b"not really a bzImage").unwrap();
        tar_dir(&stage, &img.join(tarball));
        let tag = format!("example.com/linuxkit-kernel:{i}");
        pack(&store, &img, &tag);
        let (code, stdout, stderr) = check_image(&store, &tag, &[]);
        assert_eq!(code, Some(0), "{tarball}: {stdout}{stderr}");
        assert!(
            stdout.starts_with(&format!("kernel {release}: all ")),
            "{tarball}: {stdout}"
        );
        let (code, stdout, _) = check_image(&store, &tag, &["--for", "iso"]);
        assert_eq!(code, Some(1), "{tarball}: {stdout}");
        assert!(
            stdout.starts_with("MISSING CONFIG_ISO9660_FS (needed =y or =m for iso: "),
            "{stdout}"
        );
    }
}

#[test]
fn build_warns_before_writing_what_the_kernel_cannot_boot() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, store, out) = (
        tmp.path().join("img"),
        tmp.path().join("store"),
        tmp.path().join("out"),
    );
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("kernel"), b"not really a bzImage").unwrap();
    std::fs::write(
        dir.join("kernel.config"),
        full_config("# CONFIG_USB_STORAGE is not set\n"),
    )
    .unwrap();
    pack(&store, &dir, "example.com/kernel:1");
    let spec = tmp.path().join("k.yml");
    std::fs::write(
        &spec,
        "kernel:\n  image: example.com/kernel:1\n  tar: none\n",
    )
    .unwrap();
    let (code, _, stderr) = output(
        smelt()
            .arg("--store")
            .arg(&store)
            .args(["build", "--pull", "never", "-f", "kernel+initrd", "-o"])
            .arg(&out)
            .arg(&spec),
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        !stderr.contains("MISSING"),
        "kernel+initrd needs no USB: {stderr}"
    );
    // The ISO is refused later (no boot firmware image in this store), but
    // the warning comes first.
    let (_, _, stderr) = output(
        smelt()
            .arg("--store")
            .arg(&store)
            .args(["build", "--pull", "never", "-f", "iso", "-o"])
            .arg(&out)
            .arg(&spec),
    );
    assert!(
        stderr.contains("MISSING CONFIG_USB_STORAGE"),
        "no warning for the ISO: {stderr}"
    );
    assert!(
        stderr.contains("boot firmware image smelt/boot:latest"),
        "{stderr}"
    );
    assert!(!out.join("k.iso").exists());
}
