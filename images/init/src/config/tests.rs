//! The three steps against `FakeSys`, one test per key or rule.

use std::io::Write;

use super::*;
use crate::testutil::FakeSys;

fn seed(user_data: &str) -> Seed {
    Seed {
        source: "initrd".into(),
        meta_data: Vec::new(),
        user_data: user_data.as_bytes().to_vec(),
        network_config: None,
    }
}

fn all(sys: &FakeSys, seed: &Seed) -> Applied {
    let mut a = apply_early(sys, seed);
    apply_system(sys, &mut a);
    apply_late(sys, &mut a);
    a
}

fn text(sys: &FakeSys, path: &str) -> String {
    String::from_utf8(sys.read_file(path).unwrap_or_default()).unwrap()
}

fn has(sys: &FakeSys, call: &str) -> bool {
    sys.calls().iter().any(|c| c == call)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn b64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[test]
fn hostname_fqdn_hosts() {
    let sys = FakeSys::new().file("/etc/hosts", "127.0.0.1 localhost\n127.0.1.1 old\n");
    let a = apply_early(
        &sys,
        &seed("#cloud-config\nhostname: web\nfqdn: web.example.com\n"),
    );
    assert!(has(&sys, "hostname web"), "{:?}", sys.calls());
    assert_eq!(text(&sys, "/etc/hostname"), "web\n");
    assert_eq!(
        text(&sys, "/etc/hosts"),
        "127.0.0.1 localhost\n127.0.1.1 web.example.com web\n"
    );
    assert_eq!(a.hostname.as_deref(), Some("web"));
    assert_eq!(a.report.applied, ["hostname"]);
}

#[test]
fn meta_data_hostname_fallback_and_instance_id() {
    let sys = FakeSys::new();
    let mut s = seed("");
    s.meta_data = br#"{"instance-id": "i-42", "local-hostname": "box.lan"}"#.to_vec();
    all(&sys, &s);
    assert!(has(&sys, "hostname box"));
    assert_eq!(
        text(&sys, "/etc/hosts"),
        "127.0.0.1 localhost\n::1 localhost ip6-localhost\n127.0.1.1 box.lan box\n"
    );
    let v: serde_json::Value = serde_json::from_str(&text(&sys, "/run/config/smelt.json")).unwrap();
    assert_eq!(v["instance_id"], "i-42");
    assert_eq!(text(&sys, "/run/config/hostname"), "box\n");
    // user-data wins over meta-data.
    let sys = FakeSys::new();
    s.user_data = b"#cloud-config\nhostname: web\n".to_vec();
    apply_early(&sys, &s);
    assert!(has(&sys, "hostname web"));
}

#[test]
fn invalid_hostname_is_an_error() {
    let sys = FakeSys::new();
    let a = apply_early(&sys, &seed("#cloud-config\nhostname: 'bad name'\n"));
    assert!(!sys.calls().iter().any(|c| c.starts_with("hostname")));
    assert_eq!(a.report.errors, ["hostname: invalid name \"bad name\""]);
}

#[test]
fn unknown_keys_listed_and_skipped() {
    let sys = FakeSys::new();
    let a = all(
        &sys,
        &seed("#cloud-config\npackages: [vim]\nhostname: a\nfoo: 1\n"),
    );
    assert!(has(&sys, "hostname a"));
    assert_eq!(
        a.report.skipped,
        ["unknown key foo", "unknown key packages"]
    );
    assert!(a.report.errors.is_empty());
    assert!(sys.logs().contains("cloud-config: skipped unknown key foo"));
}

#[test]
fn broken_yaml_reports_position_applies_nothing() {
    let sys = FakeSys::new().file("/bin/sh", "");
    let a = all(
        &sys,
        &seed("#cloud-config\nhostname: a\nruncmd:\n  - x\n bad: 1\n"),
    );
    assert_eq!(a.report.errors.len(), 1, "{:?}", a.report);
    let e = &a.report.errors[0];
    assert!(
        e.starts_with("user-data: YAML error at line 5, column 2:"),
        "{e}"
    );
    assert!(e.ends_with("; nothing applied"), "{e}");
    assert!(a.report.applied.is_empty());
    let calls = sys.calls();
    assert!(
        calls
            .iter()
            .all(|c| c.starts_with("mkdir /run/config") || c.starts_with("write /run/config/")),
        "{calls:?}"
    );
}

#[test]
fn non_cloud_config_ignored() {
    let sys = FakeSys::new().file("/bin/sh", "");
    let a = all(&sys, &seed("#!/bin/sh\necho hi\n"));
    assert_eq!(
        a.report.skipped,
        ["user-data: a shell script (unsupported), ignored"]
    );
    assert!(!sys.calls().iter().any(|c| c.starts_with("run ")));
    // LinuxKit's layout still has the raw user-data.
    assert_eq!(text(&sys, "/run/config/userdata"), "#!/bin/sh\necho hi\n");
}

#[test]
fn gzip_user_data_accepted() {
    let sys = FakeSys::new();
    let mut s = seed("");
    s.user_data = gzip(b"#cloud-config\nhostname: zipped\n");
    apply_early(&sys, &s);
    assert!(has(&sys, "hostname zipped"));
}

const USERS: &str = r#"#cloud-config
users:
  - default
  - name: bob
    gecos: Bob B
    groups: [wheel, docker]
    shell: /bin/bash
    lock_passwd: false
    passwd: "$6$salt$hash"
    sudo: ALL=(ALL) NOPASSWD:ALL
    ssh_authorized_keys: [ssh-ed25519 AAAAbob bob@x]
  - name: carol
    groups: "wheel, adm"
"#;

#[test]
fn users_appended_without_disturbing_other_lines() {
    let sys = FakeSys::new()
        .file(
            "/etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n",
        )
        .file("/etc/group", "root:x:0:\nalice:x:1000:\nwheel:x:10:root\n")
        .file("/etc/shadow", "root:*::0:::::\n")
        .dir("/home");
    let a = all(&sys, &seed(USERS));
    assert_eq!(
        text(&sys, "/etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n\
         bob:x:1001:1001:Bob B:/home/bob:/bin/bash\ncarol:x:1002:1003::/home/carol:/bin/sh\n"
    );
    // bob's gid 1001; docker takes 1002, so carol's group (wanting her
    // uid 1002) gets 1003; adm 1004.
    assert_eq!(
        text(&sys, "/etc/group"),
        "root:x:0:\nalice:x:1000:\nwheel:x:10:root,bob,carol\nbob:x:1001:\n\
         docker:x:1002:bob\ncarol:x:1003:\nadm:x:1004:carol\n"
    );
    assert_eq!(
        text(&sys, "/etc/shadow"),
        "root:*::0:::::\nbob:$6$salt$hash::0:99999:7:::\ncarol:!::0:99999:7:::\n"
    );
    // Existing files keep their mode.
    assert!(!sys.calls().iter().any(|c| c.starts_with("chmod /etc/")));
    for call in [
        "mkdir /home/bob 700",
        "chown /home/bob 1001:1001",
        "mkdir /home/bob/.ssh 700",
        "chown /home/bob/.ssh 1001:1001",
        "chmod /home/bob/.ssh/authorized_keys 600",
        "chown /home/bob/.ssh/authorized_keys 1001:1001",
        "chown /home/carol 1002:1003",
    ] {
        assert!(has(&sys, call), "{call}: {:?}", sys.calls());
    }
    assert_eq!(
        text(&sys, "/home/bob/.ssh/authorized_keys"),
        "ssh-ed25519 AAAAbob bob@x\n"
    );
    assert_eq!(
        a.report.skipped,
        [
            "users[0]: \"default\" (smelt images have no default user)",
            "users[1] bob: sudo (no sudo rules written)"
        ]
    );
    assert!(a.report.errors.is_empty(), "{:?}", a.report.errors);
    assert_eq!(
        text(&sys, "/run/config/ssh/authorized_keys"),
        "ssh-ed25519 AAAAbob bob@x\n"
    );
}

#[test]
fn users_files_created_when_absent() {
    let sys = FakeSys::new();
    all(&sys, &seed("#cloud-config\nusers: [dave]\n"));
    assert_eq!(
        text(&sys, "/etc/passwd"),
        "dave:x:1000:1000::/home/dave:/bin/sh\n"
    );
    assert_eq!(text(&sys, "/etc/group"), "dave:x:1000:\n");
    assert_eq!(text(&sys, "/etc/shadow"), "dave:!::0:99999:7:::\n");
    assert!(has(&sys, "chmod /etc/shadow 600"));
    assert!(has(&sys, "chmod /etc/passwd 644"));
    assert!(has(&sys, "mkdir /home 755"));
}

#[test]
fn existing_user_gets_keys_not_a_second_line() {
    let passwd = "bob:x:1500:1500::/home/bob:/bin/sh\n";
    let sys = FakeSys::new()
        .file("/etc/passwd", passwd)
        .file("/etc/group", "bob:x:1500:\n")
        .dir("/home/bob");
    let a = all(
        &sys,
        &seed("#cloud-config\nusers:\n  - name: bob\n    ssh_authorized_keys: [k1]\n"),
    );
    assert_eq!(text(&sys, "/etc/passwd"), passwd);
    assert_eq!(text(&sys, "/home/bob/.ssh/authorized_keys"), "k1\n");
    assert!(has(&sys, "chown /home/bob/.ssh/authorized_keys 1500:1500"));
    assert!(a.report.errors.is_empty());
}

#[test]
fn bad_user_is_an_error_others_still_made() {
    let sys = FakeSys::new();
    let a = all(
        &sys,
        &seed(
            "#cloud-config\nusers:\n  - name: 'x:0:0'\n  - name: ok\n    gecos: 'a:b'\n  - name: fine\n",
        ),
    );
    assert_eq!(
        a.report.errors,
        [
            "users[0]: invalid name \"x:0:0\"",
            "users[1]: ok gecos: gecos \"a:b\" contains ':' or a line break"
        ]
    );
    assert_eq!(
        text(&sys, "/etc/passwd"),
        "fine:x:1000:1000::/home/fine:/bin/sh\n"
    );
}

#[test]
fn root_keys_merged() {
    let sys = FakeSys::new().file("/root/.ssh/authorized_keys", "old-key\n");
    let a = all(
        &sys,
        &seed("#cloud-config\nssh_authorized_keys:\n  - new-key a@b\n  - old-key\n"),
    );
    assert_eq!(
        text(&sys, "/root/.ssh/authorized_keys"),
        "old-key\nnew-key a@b\n"
    );
    assert!(has(&sys, "chmod /root/.ssh 700"));
    assert!(has(&sys, "chmod /root/.ssh/authorized_keys 600"));
    assert!(has(&sys, "chown /root/.ssh/authorized_keys 0:0"));
    assert_eq!(
        text(&sys, "/run/config/ssh/authorized_keys"),
        "new-key a@b\nold-key\n"
    );
    assert!(
        a.report
            .applied
            .contains(&"ssh_authorized_keys".to_string())
    );
}

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
fn runcmd_without_sh_skipped_with_one_line() {
    let sys = FakeSys::new();
    let a = all(
        &sys,
        &seed("#cloud-config\nruncmd:\n  - echo hi\n  - [ls, /]\n"),
    );
    assert!(!sys.calls().iter().any(|c| c.starts_with("run ")));
    assert_eq!(
        a.report.skipped,
        ["runcmd: needs /bin/sh in the image, which has none; 2 commands not run"]
    );
    assert_eq!(sys.logs().matches("needs /bin/sh").count(), 1);
}

#[test]
fn bootcmd_early_runcmd_late_exit_codes() {
    let mut sys = FakeSys::new().file("/bin/sh", "");
    sys.exit_codes.insert("runcmd".into(), 3);
    let ud = "#cloud-config\nbootcmd: [echo boot]\nruncmd:\n  - echo late\n  - [touch, /x, 1]\n";
    let mut a = apply_early(&sys, &seed(ud));
    assert_eq!(sys.calls(), ["run /bin/sh -c echo boot"]);
    apply_system(&sys, &mut a);
    apply_late(&sys, &mut a);
    let runs: Vec<String> = sys
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("run "))
        .collect();
    assert_eq!(
        runs,
        [
            "run /bin/sh -c echo boot",
            "run /bin/sh -c echo late",
            "run touch /x 1"
        ]
    );
    assert!(sys.logs().contains("cloud-config: bootcmd[0] exit code 0"));
    assert_eq!(
        a.report.errors,
        ["runcmd[0] exit code 3", "runcmd[1] exit code 3"]
    );
    assert_eq!(a.report.applied, ["bootcmd", "runcmd"]);
}

#[test]
fn ntp_conf() {
    let sys = FakeSys::new();
    let a = all(
        &sys,
        &seed(
            "#cloud-config\nntp:\n  servers: [a.example, 10.0.0.1]\n  pools: [pool.ntp.org]\n  ntp_client: chrony\n",
        ),
    );
    assert_eq!(
        text(&sys, "/etc/ntp.conf"),
        "# written by smelt init from cloud-config\nserver a.example iburst\n\
         server 10.0.0.1 iburst\npool pool.ntp.org iburst\n"
    );
    assert_eq!(a.report.skipped, ["ntp: unknown key ntp_client"]);
    assert!(sys.logs().contains("no NTP client is started"));
}

#[test]
fn timezone_links_when_present_else_logs() {
    let sys = FakeSys::new().file("/usr/share/zoneinfo/Europe/Berlin", "TZif");
    all(&sys, &seed("#cloud-config\ntimezone: Europe/Berlin\n"));
    assert_eq!(
        sys.symlinks
            .borrow()
            .get("/etc/localtime")
            .map(String::as_str),
        Some("/usr/share/zoneinfo/Europe/Berlin")
    );
    assert_eq!(text(&sys, "/etc/timezone"), "Europe/Berlin\n");

    let sys = FakeSys::new();
    let a = all(&sys, &seed("#cloud-config\ntimezone: Europe/Berlin\n"));
    assert!(sys.symlinks.borrow().is_empty());
    assert!(
        sys.logs()
            .contains("/usr/share/zoneinfo/Europe/Berlin not in the image")
    );
    assert_eq!(text(&sys, "/etc/timezone"), "Europe/Berlin\n");
    assert!(a.report.errors.is_empty());

    let a = all(
        &FakeSys::new(),
        &seed("#cloud-config\ntimezone: ../../etc/x\n"),
    );
    assert_eq!(
        a.report.errors,
        ["timezone: invalid timezone \"../../etc/x\""]
    );
}

#[test]
fn mounts_auto_tries_types_and_options() {
    let mut sys = FakeSys::new().file("/dev/vdb", "").file("/dev/sdc", "");
    sys.failing_fstypes.insert("ext4".into());
    let ud = r#"#cloud-config
mounts:
  - [/dev/vdb, /data, auto, "defaults,noatime,nofail,x-systemd.requires=cloud-init.service"]
  - [sdc, /mnt/c, ext4]
  - [swap, none, swap, sw]
  - [/dev/vdz, /mnt/z]
"#;
    let a = all(&sys, &seed(ud));
    let mounts: Vec<String> = sys
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("mount "))
        .collect();
    assert_eq!(
        mounts,
        [
            "mount /dev/vdb /data ext4 0x400 ",
            "mount /dev/vdb /data xfs 0x400 ",
            "mount /dev/sdc /mnt/c ext4 0x0 ",
        ]
    );
    assert!(has(&sys, "mkdir /data 755"));
    assert_eq!(a.report.skipped, ["mounts[2]: swap swap (not supported)"]);
    assert_eq!(
        a.report.errors,
        [
            "mounts sdc on /mnt/c: ext4: Invalid argument (os error 22)",
            "mounts /dev/vdz on /mnt/z: no device /dev/vdz"
        ]
    );
    assert!(sys.logs().contains("mounted /dev/vdb on /data (xfs)"));
}

#[test]
fn mount_options_split_into_flags_and_data() {
    let (f, d) = system::options("ro,nosuid,uid=1000,nofail,_netdev,umask=022");
    assert_eq!(f, libc::MS_RDONLY | libc::MS_NOSUID);
    assert_eq!(d, "uid=1000,umask=022");
}

#[test]
fn smelt_json_report() {
    let mut sys = FakeSys::new().file("/bin/sh", "");
    sys.exit_codes.insert("runcmd".into(), 1);
    let mut s = seed("#cloud-config\nhostname: h\nbogus: 1\nruncmd: [false]\n");
    s.meta_data = b"instance-id: iid-1\n".to_vec();
    s.source = "CIDATA /dev/vda5".into();
    let mut a = apply_early(&sys, &s);
    apply_system(&sys, &mut a);
    let first: serde_json::Value =
        serde_json::from_str(&text(&sys, "/run/config/smelt.json")).unwrap();
    assert_eq!(first["applied"], serde_json::json!(["hostname"]));
    apply_late(&sys, &mut a);
    let v: serde_json::Value = serde_json::from_str(&text(&sys, "/run/config/smelt.json")).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "source": "CIDATA /dev/vda5",
            "instance_id": "iid-1",
            "applied": ["hostname", "runcmd"],
            "skipped": ["unknown key bogus"],
            "errors": ["runcmd[0] exit code 1"],
        })
    );
    assert_eq!(text(&sys, "/run/config/hostname"), "h\n");
    assert!(
        sys.logs()
            .contains("cloud-config: 2 applied, 1 skipped, 1 errors")
    );
}

#[test]
fn network_config_kept_for_the_caller() {
    let mut s = seed("");
    s.network_config = Some(b"version: 2\n".to_vec());
    let a = apply_early(&FakeSys::new(), &s);
    assert_eq!(a.network_config.as_deref(), Some(&b"version: 2\n"[..]));
}

#[test]
fn wrong_shapes_are_errors_not_panics() {
    let ud = "#cloud-config
hostname: [a]
users: {name: x}
write_files: [1, {content: x}]
runcmd: [{a: b}]
mounts: [x]
ntp: [1]
timezone: {}
ssh_authorized_keys: 5
";
    let sys = FakeSys::new();
    let a = all(&sys, &seed(ud));
    assert_eq!(a.report.errors.len(), 9, "{:#?}", a.report.errors);
    assert!(a.report.applied.is_empty(), "{:?}", a.report.applied);
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
