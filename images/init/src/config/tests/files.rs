use super::*;

#[test]
fn write_files_permissions_owner_encodings() {
    let gz = b64(&gzip(b"zipped\n"));
    let ud = format!(
        r##"#cloud-config
write_files:
  - path: /etc/a.conf
    content: hello
    permissions: '0600'
    owner: root:root
  - path: /opt/x/run.sh
    content: "#!/bin/sh\n"
    permissions: 0755
    owner: "1000:50"
  - path: /etc/b64
    encoding: b64
    content: aGVsbG8=
  - path: /etc/gz
    encoding: gz+b64
    content: {gz}
  - path: /etc/bad
    encoding: rot13
    content: x
  - path: /etc/nobody
    owner: ghost
"##
    );
    let sys = FakeSys::new();
    let a = all(&sys, &seed(&ud));
    assert_eq!(text(&sys, "/etc/a.conf"), "hello");
    assert!(has(&sys, "chmod /etc/a.conf 600"));
    assert!(has(&sys, "chown /etc/a.conf 0:0"));
    assert!(has(&sys, "mkdir /opt/x 755"));
    assert!(has(&sys, "chmod /opt/x/run.sh 755"));
    assert!(has(&sys, "chown /opt/x/run.sh 1000:50"));
    assert_eq!(text(&sys, "/etc/b64"), "hello");
    assert!(has(&sys, "chmod /etc/b64 644"));
    assert_eq!(text(&sys, "/etc/gz"), "zipped\n");
    assert!(!sys.exists("/etc/bad") && !sys.exists("/etc/nobody"));
    assert_eq!(
        a.report.errors,
        [
            "write_files[4]: /etc/bad: unknown encoding \"rot13\"",
            "write_files /etc/nobody: no user \"ghost\""
        ]
    );
}

#[test]
fn write_files_append() {
    let sys = FakeSys::new().file("/etc/motd", "a\n");
    all(
        &sys,
        &seed(
            "#cloud-config\nwrite_files:\n  - path: /etc/motd\n    content: \"b\\n\"\n    append: true\n",
        ),
    );
    assert_eq!(text(&sys, "/etc/motd"), "a\nb\n");
    assert!(has(&sys, "append /etc/motd b\n"));
}

#[test]
fn deferred_write_files_only_in_the_late_step() {
    let ud = "#cloud-config
users: [erin]
write_files:
  - path: /home/erin/late
    content: L
    owner: erin
    defer: true
  - path: /etc/early
    content: E
";
    let sys = FakeSys::new();
    let mut a = apply_early(&sys, &seed(ud));
    apply_system(&sys, &mut a);
    assert!(sys.exists("/etc/early"));
    assert!(!sys.exists("/home/erin/late"));
    apply_late(&sys, &mut a);
    assert_eq!(text(&sys, "/home/erin/late"), "L");
    // The owner is the user made by the system step.
    assert!(has(&sys, "chown /home/erin/late 1000:1000"));
    assert!(a.report.errors.is_empty(), "{:?}", a.report.errors);
}

#[test]
fn permissions_forms() {
    let mode = |y: &str| -> Result<u32, Vec<String>> {
        let mut p = parse::Problems::default();
        let c = parse::parse_user_data(
            format!("#cloud-config\nwrite_files:\n  - path: /a\n    permissions: {y}\n").as_bytes(),
            &mut p,
        );
        c.write_files.first().map(|f| f.permissions).ok_or(p.errors)
    };
    assert_eq!(mode("0644"), Ok(0o644));
    assert_eq!(mode("420"), Ok(0o644));
    assert_eq!(mode("'0644'"), Ok(0o644));
    assert_eq!(mode("'0o600'"), Ok(0o600));
    assert_eq!(mode("'755'"), Ok(0o755));
    assert!(mode("'999'").is_err());
    assert!(mode("0o17777").is_err());
}

#[test]
fn binary_tag_content() {
    // As in cloud-init's docs: `!!binary` with an encoding.
    let gz = b64(&gzip(b"zipped\n"));
    let ud = format!(
        "#cloud-config\nwrite_files:\n  - path: /a\n    encoding: b64\n    content: !!binary aGVsbG8=\n  - path: /b\n    encoding: gzip\n    content: !!binary |\n      {gz}\n"
    );
    let sys = FakeSys::new();
    let a = all(&sys, &seed(&ud));
    assert_eq!(text(&sys, "/a"), "hello");
    assert_eq!(text(&sys, "/b"), "zipped\n");
    assert!(a.report.errors.is_empty(), "{:?}", a.report.errors);
}
