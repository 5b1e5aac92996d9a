//! The three steps against `FakeSys`, one test per key or rule: parsing,
//! hostname and the report here, the others by concern.

mod files;
mod system;
mod users;

use std::io::Write;

use super::*;
use crate::testutil::FakeSys;

pub(super) fn seed(user_data: &str) -> Seed {
    Seed {
        source: "initrd".into(),
        meta_data: Vec::new(),
        user_data: user_data.as_bytes().to_vec(),
        network_config: None,
        files: Default::default(),
    }
}

pub(super) fn all(sys: &FakeSys, seed: &Seed) -> Applied {
    let mut a = apply_early(sys, seed);
    apply_system(sys, &mut a);
    apply_late(sys, &mut a);
    a
}

pub(super) fn text(sys: &FakeSys, path: &str) -> String {
    String::from_utf8(sys.read_file(path).unwrap_or_default()).unwrap()
}

pub(super) fn has(sys: &FakeSys, call: &str) -> bool {
    sys.calls().iter().any(|c| c == call)
}

pub(super) fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub(super) fn b64(data: &[u8]) -> String {
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
        ["unknown key packages", "unknown key foo"]
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
fn meta_data_keeps_leading_zeros() {
    let mut p = parse::Problems::default();
    let m = parse::parse_meta_data(b"instance-id: 0123\nlocal-hostname: h\n", &mut p);
    assert_eq!(m.instance_id.as_deref(), Some("0123"));
    let m = parse::parse_meta_data(b"instance-id: [\n", &mut p);
    assert_eq!(m, MetaData::default());
    assert_eq!(p.errors.len(), 1, "{:?}", p.errors);
    assert!(
        p.errors[0].starts_with("meta-data: YAML error at line "),
        "{:?}",
        p.errors
    );
}
