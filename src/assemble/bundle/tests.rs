//! Bundle config tests: LinuxKit's defaults, the three precedence layers,
//! binds, mounts, capabilities, namespaces, IDs and label errors.

use super::*;
use crate::spec::parse_str;

/// The one service of a spec snippet (indented as a `services:` item).
fn service(fields: &str) -> Image {
    let text = format!("services:\n  - name: svc\n    image: example/svc:1\n{fields}");
    let spec = parse_str("t.yml", &text).expect("test spec parses");
    spec.services.into_iter().next().expect("one service")
}

fn image_config(config: Value) -> ImageConfiguration {
    let doc = json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": []},
        "config": config,
    });
    serde_json::from_value(doc).expect("image config parses")
}

fn build_ok(image: &Image, cfg: &ImageConfiguration, label: Option<&str>) -> BundleConfig {
    bundle_config(image, cfg, label).expect("bundle config builds")
}

fn problem(image: &Image, label: Option<&str>) -> BundleProblem {
    let cfg = image_config(json!({}));
    *bundle_config(image, &cfg, label)
        .expect_err("should fail")
        .problem
}

#[test]
fn minimal_service_matches_linuxkit_defaults() {
    let b = build_ok(&service(""), &image_config(json!({})), None);
    let expected = json!({
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "cwd": "/",
            "capabilities": {},
        },
        "root": {"path": "rootfs"},
        "mounts": [
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/proc", "type": "proc", "source": "proc",
             "options": ["nosuid", "nodev", "noexec", "relatime"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
        ],
        "linux": {
            "resources": {},
            "namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "cgroup"}],
        },
    });
    assert_eq!(b.config, expected);
    assert!(!b.readonly);
    // Field order is part of the output: serde_json keeps insertion order.
    let text = String::from_utf8(b.config_json()).expect("utf-8");
    let pos = |k: &str| text.find(k).expect(k);
    assert!(pos("\"ociVersion\"") < pos("\"process\""));
    assert!(pos("\"root\"") < pos("\"mounts\""));
    assert!(text.ends_with("}\n"));
    let again = build_ok(&service(""), &image_config(json!({})), None);
    assert_eq!(b.config_json(), again.config_json(), "deterministic");
}

#[test]
fn image_config_is_the_lowest_layer() {
    let cfg = image_config(json!({
        "Entrypoint": ["/bin/sh", "-c"],
        "Cmd": ["echo hi"],
        "Env": ["PATH=/bin"],
        "WorkingDir": "/srv",
        "User": "7:8",
    }));
    let b = build_ok(&service(""), &cfg, None);
    let p = &b.config["process"];
    assert_eq!(p["args"], json!(["/bin/sh", "-c", "echo hi"]));
    assert_eq!(p["env"], json!(["PATH=/bin"]));
    assert_eq!(p["cwd"], json!("/srv"));
    assert_eq!(p["user"], json!({"uid": 7, "gid": 8}));
}

#[test]
fn label_overrides_image_config() {
    let cfg = image_config(json!({"Cmd": ["a"], "Env": ["A=1"], "WorkingDir": "/srv"}));
    let label = r#"{"command": ["b"], "env": ["B=2"], "cwd": "/label", "uid": 5,
                    "readonly": true, "hostname": "lbl", "net": "new"}"#;
    let b = build_ok(&service(""), &cfg, Some(label));
    let p = &b.config["process"];
    assert_eq!(p["args"], json!(["b"]));
    assert_eq!(p["env"], json!(["B=2"]));
    assert_eq!(p["cwd"], json!("/label"));
    assert_eq!(p["user"]["uid"], json!(5));
    assert_eq!(b.config["hostname"], json!("lbl"));
    assert_eq!(
        b.config["root"],
        json!({"path": "rootfs", "readonly": true})
    );
    assert!(b.readonly);
    let dev = &b.config["mounts"][0];
    assert_eq!(dev["destination"], json!("/dev"));
    assert!(
        dev["options"]
            .as_array()
            .expect("options")
            .contains(&json!("ro"))
    );
    assert_eq!(
        b.config["linux"]["namespaces"][0],
        json!({"type": "network"})
    );
}

#[test]
fn yaml_overrides_label() {
    let cfg = image_config(json!({"Cmd": ["a"], "Env": ["A=1"]}));
    let label = r#"{"command": ["b"], "env": ["B=2"], "cwd": "/label", "readonly": true}"#;
    let yaml = "    command: [c]\n    env: [C=3]\n    cwd: /yaml\n    readonly: false\n";
    let b = build_ok(&service(yaml), &cfg, Some(label));
    let p = &b.config["process"];
    assert_eq!(p["args"], json!(["c"]));
    assert_eq!(p["env"], json!(["C=3"]));
    assert_eq!(p["cwd"], json!("/yaml"));
    assert!(!b.readonly);
    assert_eq!(b.config["root"], json!({"path": "rootfs"}));
}

fn bind_dests(b: &BundleConfig) -> Vec<(String, Value)> {
    let mounts = b.config["mounts"].as_array().expect("mounts");
    mounts
        .iter()
        .filter(|m| m["type"] == "bind")
        .map(|m| {
            (
                m["destination"].as_str().unwrap_or("").to_string(),
                m["options"].clone(),
            )
        })
        .collect()
}

#[test]
fn binds_add_appends_to_label_and_binds_replaces() {
    let cfg = image_config(json!({}));
    let label = r#"{"binds": ["/var:/var", "/etc/ssl:/etc/ssl:ro"]}"#;
    let b = build_ok(&service("    binds.add: [/run:/run]\n"), &cfg, Some(label));
    let dests = bind_dests(&b);
    let names: Vec<&str> = dests.iter().map(|(d, _)| d.as_str()).collect();
    assert_eq!(names, ["/etc/ssl", "/run", "/var"], "sorted by destination");
    assert_eq!(dests[0].1, json!(["ro", "rbind"]));
    assert_eq!(dests[1].1, json!(["rw", "rbind", "rshared"]));

    let yaml = "    binds: [/home:/home]\n    binds.add: [/run:/run]\n";
    let b = build_ok(&service(yaml), &cfg, Some(label));
    let names: Vec<String> = bind_dests(&b).into_iter().map(|(d, _)| d).collect();
    assert_eq!(names, ["/home"], "binds replaces label binds and binds.add");

    assert_eq!(
        problem(&service("    binds: [/only]\n"), None),
        BundleProblem::Bind("/only".into(), "missing ':'")
    );
    assert_eq!(
        problem(&service("    binds: [\"a:b:c:d\"]\n"), None),
        BundleProblem::Bind("a:b:c:d".into(), "too many ':'")
    );
}

#[test]
fn mounts_and_tmpfs_fill_defaults_and_replace_by_destination() {
    let yaml = "    tmpfs: [\"/tmp:size=1m,mode=1777\", /run]\n    mounts:\n      - {source: mqueue}\n      - {destination: /dev, options: [rw]}\n";
    let b = build_ok(&service(yaml), &image_config(json!({})), None);
    let mounts = b.config["mounts"].as_array().expect("mounts");
    let find = |d: &str| mounts.iter().find(|m| m["destination"] == d).cloned();
    assert_eq!(
        find("/dev/mqueue"),
        Some(json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue"}))
    );
    assert_eq!(
        find("/dev"),
        Some(json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["rw"]}))
    );
    assert_eq!(
        find("/tmp").map(|m| m["options"].clone()),
        Some(json!(["size=1m", "mode=1777"]))
    );
    assert_eq!(find("/run").map(|m| m.get("options").is_none()), Some(true));
    assert_eq!(
        problem(&service("    mounts: [{destination: /x}]\n"), None),
        BundleProblem::MountType("/x".into())
    );
    assert_eq!(
        problem(&service("    mounts: [{type: bind}]\n"), None),
        BundleProblem::MountDestination("bind".into())
    );
    assert_eq!(
        problem(&service("    tmpfs: [\"/a:b:c\"]\n"), None),
        BundleProblem::Tmpfs("/a:b:c".into())
    );
}

#[test]
fn capabilities_all_add_and_names() {
    let cfg = image_config(json!({}));
    let b = build_ok(&service("    capabilities: [all]\n"), &cfg, None);
    let caps = &b.config["process"]["capabilities"];
    assert_eq!(caps["effective"].as_array().map(Vec::len), Some(41));
    assert_eq!(caps["effective"][0], json!("CAP_CHOWN"), "number order");
    let bounding = caps["bounding"].as_array().expect("bounding");
    assert_eq!(bounding.len(), 41);
    assert_eq!(bounding[0], json!("CAP_AUDIT_CONTROL"), "sorted");
    assert_eq!(caps["permitted"], caps["bounding"]);
    assert_eq!(caps["inheritable"], caps["bounding"]);

    let label = r#"{"capabilities": ["CAP_NET_ADMIN"]}"#;
    let yaml = "    capabilities.add: [sys_admin, CAP_NET_ADMIN]\n    ambient: [CAP_NET_RAW]\n";
    let b = build_ok(&service(yaml), &cfg, Some(label));
    let caps = &b.config["process"]["capabilities"];
    assert_eq!(caps["effective"], json!(["CAP_NET_ADMIN", "CAP_SYS_ADMIN"]));
    assert_eq!(caps["ambient"], json!(["CAP_NET_RAW"]));
    assert_eq!(
        caps["bounding"],
        json!(["CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_SYS_ADMIN"])
    );

    let b = build_ok(&service("    capabilities: [none]\n"), &cfg, Some(label));
    assert_eq!(b.config["process"]["capabilities"], json!({}));
    assert_eq!(
        problem(&service("    capabilities: [CAP_FLY, CAP_KILL]\n"), None),
        BundleProblem::Capability("CAP_FLY".into())
    );
}

#[test]
fn namespaces_host_new_and_paths() {
    let yaml =
        "    net: host\n    ipc: new\n    uts: /proc/1/ns/uts\n    pid: host\n    userns: new\n";
    let b = build_ok(&service(yaml), &image_config(json!({})), None);
    assert_eq!(
        b.config["linux"]["namespaces"],
        json!([
            {"type": "ipc"},
            {"type": "uts", "path": "/proc/1/ns/uts"},
            {"type": "user"},
            {"type": "mount"},
            {"type": "cgroup"},
        ])
    );
    let b = build_ok(
        &service("    net: none\n"),
        &image_config(json!({})),
        Some(r#"{"pid": "host"}"#),
    );
    assert_eq!(
        b.config["linux"]["namespaces"],
        json!([{"type": "network"}, {"type": "mount"}, {"type": "cgroup"}])
    );
}

#[test]
fn bad_label_names_the_image() {
    let image = service("");
    let cfg = image_config(json!({}));
    let err = bundle_config(&image, &cfg, Some("{\"command\": ")).expect_err("bad JSON");
    let msg = err.to_string();
    assert!(
        msg.starts_with("t.yml:3:12: svc (example/svc:1): invalid org.mobyproject.config label: "),
        "{msg}"
    );
    let err = bundle_config(&image, &cfg, Some(r#"{"name": "x"}"#)).expect_err("name in label");
    assert!(err.to_string().contains("unknown field `name`"), "{err}");
    let err = bundle_config(&image, &cfg, Some(r#"{"env": "A=1"}"#)).expect_err("wrong type");
    assert!(matches!(*err.problem, BundleProblem::Label(_)), "{err}");
}

#[test]
fn label_is_found_in_image_config() {
    let cfg = image_config(json!({"Labels": {LABEL: "{\"net\": \"new\"}"}}));
    assert_eq!(label_of(&cfg), Some("{\"net\": \"new\"}"));
    assert_eq!(label_of(&image_config(json!({}))), None);
}

#[test]
fn ids_resolve_through_lookup() {
    let yaml = "    uid: sshd\n    gid: root\n    additionalGids: [wheel, 12]\n";
    let image = service(yaml);
    let cfg = image_config(json!({}));
    let lookup = |n: &str| match n {
        "sshd" => Some(22),
        "wheel" => Some(10),
        _ => None,
    };
    let b = bundle_config_with_ids(&image, &cfg, None, &lookup).expect("resolves");
    assert_eq!(
        b.config["process"]["user"],
        json!({"uid": 22, "gid": 0, "additionalGids": [10, 12]})
    );
    let err = bundle_config(&image, &cfg, None).expect_err("no lookup");
    assert_eq!(*err.problem, BundleProblem::UnknownId("sshd".into()));
}

#[test]
fn devices_rlimits_sysctl_and_resources() {
    let yaml = r#"    devices:
      - {path: all, type: b}
      - {path: /dev/fuse, type: c, major: 10, minor: 229, mode: "0666"}
    rlimits: ["nofile,1024,unlimited", "RLIMIT_CORE, 0, 0"]
    sysctl: {net.core.somaxconn: "1024"}
    resources: {pids: {limit: 10}}
    oomScoreAdj: -100
    noNewPrivileges: true
    maskedPaths: [/proc/kcore]
"#;
    let b = build_ok(&service(yaml), &image_config(json!({})), None);
    let linux = &b.config["linux"];
    assert_eq!(
        linux["devices"],
        json!([{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o666}])
    );
    assert_eq!(
        linux["resources"],
        json!({
            "devices": [
                {"allow": true, "type": "b", "access": "rwm"},
                {"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
            ],
            "pids": {"limit": 10},
        })
    );
    assert_eq!(linux["sysctl"], json!({"net.core.somaxconn": "1024"}));
    assert_eq!(linux["maskedPaths"], json!(["/proc/kcore"]));
    let p = &b.config["process"];
    assert_eq!(
        p["rlimits"],
        json!([
            {"type": "RLIMIT_NOFILE", "hard": u64::MAX, "soft": 1024},
            {"type": "RLIMIT_CORE", "hard": 0, "soft": 0},
        ])
    );
    assert_eq!(p["oomScoreAdj"], json!(-100));
    assert_eq!(p["noNewPrivileges"], json!(true));
    assert!(matches!(
        problem(&service("    rlimits: [\"nofile,1\"]\n"), None),
        BundleProblem::Rlimit(..)
    ));
    assert!(matches!(
        problem(&service("    rlimits: [\"flying,1,1\"]\n"), None),
        BundleProblem::Rlimit(..)
    ));
    assert_eq!(
        problem(
            &service("    devices: [{path: /dev/x, type: c, mode: \"9\"}]\n"),
            None
        ),
        BundleProblem::DeviceMode("/dev/x".into(), "9".into())
    );
}

#[test]
fn runtime_json_is_complete_and_yaml_wins_per_field() {
    let label = r#"{"runtime": {"mkdir": ["/var/lib/x"], "cgroups": ["a"], "bindNS": {"net": "/run/netns/l"}}}"#;
    let yaml = "    runtime:\n      cgroups: [b]\n      namespace: ns\n";
    let b = build_ok(&service(yaml), &image_config(json!({})), Some(label));
    assert_eq!(
        b.runtime,
        json!({
            "cgroups": ["b"],
            "mounts": [],
            "mkdir": ["/var/lib/x"],
            "interfaces": [],
            "bindNS": {"cgroup": "", "ipc": "", "mnt": "", "net": "/run/netns/l",
                       "pid": "", "user": "", "uts": ""},
            "namespace": "ns",
        })
    );
    assert!(b.runtime_json().ends_with(b"}\n"));
}

#[test]
fn runtime_mounts_use_oci_field_names() {
    let yaml = "    runtime:\n      mounts:\n        - {type: bind, source: /a, destination: /b, uidmappings: [{containerID: 0, hostID: 1, size: 2}]}\n";
    let b = build_ok(&service(yaml), &image_config(json!({})), None);
    assert_eq!(
        b.runtime["mounts"],
        json!([{"destination": "/b", "type": "bind", "source": "/a",
                "uidMappings": [{"containerID": 0, "hostID": 1, "size": 2}]}])
    );
}

/// An independent reader: oci-spec's runtime types must accept every
/// config we write, with all fields set.
#[test]
fn output_is_a_valid_oci_runtime_spec() {
    let yaml = r#"    capabilities: [all]
    ambient: [CAP_NET_RAW]
    binds: [/a:/a:ro]
    tmpfs: [/tmp]
    mounts: [{type: cgroup}]
    devices: [{path: /dev/fuse, type: c, major: 10, minor: 229, mode: "0666"}, {path: all, type: b}]
    net: new
    uts: /proc/1/ns/uts
    hostname: h
    readonly: true
    maskedPaths: [/proc/kcore]
    readonlyPaths: [/proc/sys]
    uid: 1
    gid: 2
    additionalGids: [3]
    noNewPrivileges: true
    oomScoreAdj: 10
    rootfsPropagation: shared
    cgroupsPath: /x
    resources:
      memory: {limit: 1048576, swappiness: 0}
      cpu: {shares: 2, cpus: "0"}
      pids: {limit: 5}
      blockio: {weight: 10, throttleReadBpsDevice: [{major: 8, minor: 0, rate: 1}]}
      hugepageLimits: [{pageSize: 2MB, limit: 0}]
      network: {classID: 1, priorities: [{name: eth0, priority: 1}]}
    sysctl: {net.ipv4.ip_forward: "1"}
    rlimits: ["nofile,1,2"]
    uidMappings: [{containerID: 0, hostID: 1000, size: 10}]
    gidMappings: [{containerID: 0, hostID: 1000, size: 10}]
    annotations: {a: b}
"#;
    let cfg = image_config(json!({"Cmd": ["/bin/true"], "Env": ["A=1"]}));
    let b = build_ok(&service(yaml), &cfg, None);
    let spec: oci_spec::runtime::Spec =
        serde_json::from_value(b.config.clone()).expect("valid OCI runtime spec");
    let process = spec.process().as_ref().expect("process");
    assert_eq!(
        process.args().as_deref(),
        Some(&["/bin/true".to_string()][..])
    );
    assert_eq!(process.user().uid(), 1);
    let caps = process.capabilities().as_ref().expect("capabilities");
    assert_eq!(caps.bounding().as_ref().map(|c| c.len()), Some(41));
    let linux = spec.linux().as_ref().expect("linux");
    assert_eq!(linux.devices().as_ref().map(Vec::len), Some(1));
    assert_eq!(
        linux.cgroups_path().as_deref(),
        Some(std::path::Path::new("/x"))
    );
    let res = linux.resources().as_ref().expect("resources");
    assert_eq!(res.pids().as_ref().map(|p| p.limit()), Some(5));
    assert!(res.block_io().is_some());
    assert_eq!(spec.hostname().as_deref(), Some("h"));
}
