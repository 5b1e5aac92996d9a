//! Spec parsing tests: a LinuxKit-style example with every field kind, the
//! exact positions of errors, merging, and `files` validation.

use super::*;

/// Modelled on LinuxKit's examples/minimal.yml and examples/sshd.yml, with
/// every per-image key LinuxKit accepts somewhere.
const FULL: &str = r#"kernel:
  image: linuxkit/kernel:6.6.13
  cmdline: "console=tty0 console=ttyS0"
  binary: bzImage
  tar: none
  ucode: intel-ucode.cpio
init:
  - linuxkit/init:v1.0.0
  - linuxkit/runc:v1.0.0
  - linuxkit/containerd:v1.0.0
onboot:
  - name: sysctl
    image: linuxkit/sysctl:v1.0.0
  - name: dhcpcd
    image: linuxkit/dhcpcd:v1.0.0
    command: ["/sbin/dhcpcd", "--nobackground", "-f", "/dhcpcd.conf", "-1"]
onshutdown:
  - name: shutdown
    image: busybox:latest
    command: ["/bin/echo", "so long and thanks for all the fish"]
services:
  - name: getty
    image: linuxkit/getty:v1.0.0
    env:
      - INSECURE=true
  - name: sshd
    image: linuxkit/sshd:v1.0.0
    capabilities: [all]
    capabilities.add: [CAP_SYS_ADMIN]
    ambient: [CAP_NET_BIND_SERVICE]
    mounts:
      - type: cgroup
        options: ["rw", "nosuid"]
      - destination: /dev/mqueue
        source: mqueue
        uidmappings:
          - {containerID: 0, hostID: 1000, size: 1}
    binds:
      - /etc/resolv.conf:/etc/resolv.conf
    binds.add:
      - /root/.ssh:/root/.ssh:ro
    devices:
      - path: all
        type: b
      - path: /dev/console
        type: c
        major: 5
        minor: 1
        mode: "0666"
    tmpfs: ["/tmp:size=64m"]
    cwd: /root
    net: host
    pid: host
    ipc: new
    uts: /proc/1/ns/uts
    userns: host
    hostname: sshd
    readonly: true
    maskedPaths: [/proc/kcore]
    readonlyPaths: [/proc/sys]
    uid: 0
    gid: root
    additionalGids: [1, wheel]
    noNewPrivileges: true
    oomScoreAdj: -500
    rootfsPropagation: shared
    cgroupsPath: /sshd
    resources:
      memory: {limit: 536870912, disableOOMKiller: false, kernelTCP: 1}
      cpu: {shares: 512, cpus: "0-1", realtimeRuntime: 1}
      pids: {limit: 100}
      blockio:
        weight: 10
        throttleReadIOPSDevice: [{major: 8, minor: 0, rate: 100}]
      devices: [{allow: false, access: rwm}]
      hugepageLimits: [{pageSize: 2MB, limit: 0}]
      network: {classID: 1, priorities: [{name: eth0, priority: 1}]}
    sysctl:
      net.ipv4.ip_forward: "1"
    rlimits: ["nofile,1024,unlimited"]
    uidMappings: [{containerID: 0, hostID: 100000, size: 65536}]
    gidMappings: [{containerID: 0, hostID: 100000, size: 65536}]
    annotations:
      org.example/role: ssh
    runtime:
      cgroups: [sshd]
      mkdir: [/var/lib/sshd]
      mounts:
        - {type: bind, source: /var/lib/sshd, destination: /var/lib/sshd, options: [rbind]}
      interfaces:
        - {name: eth1, add: veth, peer: veth1, createInRoot: true}
      bindNS: {net: /run/netns/sshd, cgroup: /run/cg}
      namespace: sshd
files:
  - path: etc/linuxkit-config
    metadata: yaml
  - path: /root/.ssh/authorized_keys
    source: ~/.ssh/id_rsa.pub
    mode: "0600"
    optional: true
  - path: etc/motd
    contents: "hello\n"
    uid: 0
    gid: wheel
  - path: var/empty
    directory: true
  - path: etc/localtime
    symlink: /usr/share/zoneinfo/UTC
volumes:
  - name: data
    image: alpine:3.19
    readonly: true
    format: oci
    platforms: [linux/amd64]
trust:
  org:
    - linuxkit
initrd:
  compression: zstd
  level: 12
"#;

fn err_lines(file: &str, text: &str) -> Vec<String> {
    match parse_str(file, text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string().lines().map(str::to_string).collect(),
    }
}

#[test]
fn every_field_kind_parses() {
    let spec = parse_str("full.yml", FULL).expect("full spec parses");
    let kernel = spec.kernel.as_ref().expect("kernel");
    assert_eq!(
        kernel.image.as_ref().map(|i| i.text.as_str()),
        Some("linuxkit/kernel:6.6.13")
    );
    assert_eq!(kernel.tar.as_deref(), Some("none"));
    assert_eq!(spec.init.len(), 3);
    assert_eq!(
        spec.init[1].reference.to_string(),
        "docker.io/linuxkit/runc:v1.0.0"
    );
    assert_eq!(spec.onboot.len(), 2);
    assert_eq!(spec.onshutdown[0].name, "shutdown");
    let sshd = &spec.services[1];
    assert_eq!(sshd.capabilities.as_deref(), Some(&["all".to_string()][..]));
    assert_eq!(sshd.binds_add.as_ref().map(Vec::len), Some(1));
    assert_eq!(sshd.uid, Some(Id::Number(0)));
    assert_eq!(sshd.gid, Some(Id::Name("root".into())));
    assert_eq!(
        sshd.additional_gids,
        Some(vec![Id::Number(1), Id::Name("wheel".into())])
    );
    assert_eq!(sshd.oom_score_adj, Some(-500));
    assert_eq!(sshd.devices.as_ref().map(Vec::len), Some(2));
    let mounts = sshd.mounts.as_ref().expect("mounts");
    assert_eq!(mounts[0].kind.as_deref(), Some("cgroup"));
    assert_eq!(
        mounts[1].uidmappings.as_ref().map(|m| m[0].host_id),
        Some(1000)
    );
    let res = sshd.resources.as_ref().expect("resources");
    assert_eq!(res.memory.as_ref().and_then(|m| m.kernel_tcp), Some(1));
    assert_eq!(res.block_io.as_ref().and_then(|b| b.weight), Some(10));
    assert_eq!(
        sshd.sysctl
            .as_ref()
            .map(|s| s["net.ipv4.ip_forward"].as_str()),
        Some("1")
    );
    let rt = sshd.runtime.as_ref().expect("runtime");
    assert_eq!(
        rt.bind_ns.as_ref().and_then(|b| b.net.as_deref()),
        Some("/run/netns/sshd")
    );
    assert_eq!(
        rt.interfaces.as_ref().map(|i| i[0].create_in_root),
        Some(true)
    );
    assert_eq!(spec.files.len(), 5);
    assert_eq!(
        spec.files[1].path, "root/.ssh/authorized_keys",
        "leading / stripped"
    );
    assert_eq!(spec.files[2].gid, Some(Id::Name("wheel".into())));
    assert_eq!(spec.volumes[0].name, "data");
    assert_eq!(spec.initrd_options().compression, Compression::Zstd);
    assert_eq!(spec.initrd_options().effective_level(), 12);
    assert_eq!(spec.image_refs().len(), 1 + 3 + 2 + 1 + 2 + 1);
}

#[test]
fn images_remember_their_origin() {
    let spec = parse_str("full.yml", FULL).expect("parses");
    assert_eq!(spec.services[1].origin().to_string(), "full.yml:27:12");
    assert_eq!(spec.init[0].origin().to_string(), "full.yml:8:5");
    let kernel_image = spec
        .kernel
        .as_ref()
        .and_then(|k| k.image.as_ref())
        .expect("image");
    assert_eq!(kernel_image.origin().to_string(), "full.yml:2:10");
    assert_eq!(spec.files[0].origin().to_string(), "full.yml:95:5");
    assert_eq!(spec.volumes[0].origin().line, 110);
}

#[test]
fn defaults_when_optional_sections_absent() {
    let spec = parse_str("min.yml", "init:\n  - linuxkit/init:v1.0.0\n").expect("parses");
    assert!(spec.kernel.is_none());
    assert!(spec.services.is_empty());
    assert_eq!(spec.initrd, None);
    assert_eq!(spec.initrd_options().compression, Compression::Gzip);
    assert_eq!(spec.initrd_options().effective_level(), 6);
    let z = InitrdOptions {
        compression: Compression::Zstd,
        level: None,
    };
    assert_eq!(z.effective_level(), 3);
}

#[test]
fn unknown_key_names_position_and_path() {
    let text = "services:\n  - name: a\n    image: busybox\n  - name: b\n    imagee: busybox\n";
    assert_eq!(
        err_lines("spec.yml", text),
        ["spec.yml:5:5: unknown field \"imagee\" in services[1]"]
    );
    assert_eq!(
        err_lines("spec.yml", "kernel:\n  image: k\n  cmdlin: x\n"),
        ["spec.yml:3:3: unknown field \"cmdlin\" in kernel"]
    );
    assert_eq!(
        err_lines("top.yml", "kernel: {}\nservice: []\n"),
        ["top.yml:2:1: unknown field \"service\""]
    );
}

#[test]
fn wrong_type_names_position_and_path() {
    let text = "onboot:\n  - name: a\n    image: busybox\n    readonly: maybe\n";
    assert_eq!(
        err_lines("spec.yml", text),
        ["spec.yml:4:15: onboot[0].readonly: invalid boolean"]
    );
    let lines = err_lines("spec.yml", "init: linuxkit/init\n");
    assert!(lines[0].starts_with("spec.yml:1:7: init: "), "{lines:?}");
}

#[test]
fn bad_reference_names_position() {
    let text = "kernel:\n  image: linuxkit/kernel:6.6\ninit:\n  - Foo\n";
    let lines = err_lines("spec.yml", text);
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].starts_with("spec.yml:4:5: init[0]: invalid image reference \"Foo\": "),
        "{lines:?}"
    );
}

#[test]
fn missing_name_is_an_error() {
    assert_eq!(
        err_lines("spec.yml", "services:\n  - image: busybox\n"),
        ["spec.yml:2:5: missing field \"name\" in services[0]"]
    );
}

#[test]
fn duplicate_service_names_rejected() {
    let text = "services:\n  - name: a\n    image: busybox\n  - name: a\n    image: alpine\n";
    assert_eq!(
        err_lines("spec.yml", text),
        ["spec.yml:5:12: duplicate service name \"a\" (first defined at spec.yml:3:12)"]
    );
}

#[test]
fn files_validation_reports_every_problem() {
    let text = r#"files:
  - path: ../etc/passwd
    contents: x
  - path: etc/a
  - path: etc/b
    contents: x
    source: /etc/hosts
  - path: etc/c
    metadata: json
  - path: etc/d
    contents: x
    mode: "0999"
  - path: /
    directory: true
"#;
    assert_eq!(
        err_lines("f.yml", text),
        [
            "f.yml:2:5: file path \"../etc/passwd\" must not contain \"..\" (it would escape the root)",
            "f.yml:4:5: file \"etc/a\" needs one of contents, source, directory, symlink or metadata",
            "f.yml:5:5: file \"etc/b\" sets contents and source together; use exactly one",
            "f.yml:8:5: file \"etc/c\": unsupported metadata \"json\" (only \"yaml\")",
            "f.yml:10:5: file \"etc/d\": mode \"0999\" is not an octal mode",
            "f.yml:13:5: file path \"/\" must name something below the root",
        ]
    );
}

#[test]
fn directory_false_does_not_count_as_content() {
    let text = "files:\n  - path: etc/x\n    directory: false\n    contents: hi\n";
    assert!(parse_str("f.yml", text).is_ok());
}

#[test]
fn initrd_level_checked() {
    let text = "initrd:\n  compression: gzip\n  level: 12\n";
    assert_eq!(
        err_lines("i.yml", text),
        ["i.yml:2:3: initrd level 12 out of range 1..=9 for gzip compression"]
    );
    let lines = err_lines("i.yml", "initrd:\n  compression: lz4\n");
    assert!(
        lines[0].starts_with("i.yml:2:16: initrd.compression: "),
        "{lines:?}"
    );
}

#[test]
fn root_key_shorthand_mapping_and_checks() {
    let s = parse_str("r.yml", "root: squashfs\n").unwrap();
    assert_eq!(s.root_options(), RootOptions::default());
    assert_eq!(s.root_options().effective_level(), 15);
    let s = parse_str("r.yml", "root:\n  compression: xz\n  level: 9\n").unwrap();
    assert_eq!(s.root_options().compression, RootCompression::Xz);
    assert_eq!(s.root_options().effective_level(), 9);
    assert_eq!(
        err_lines(
            "r.yml",
            "root:\n  compression: gzip\n  level: 12\n  block_size: 1000\n"
        ),
        [
            "r.yml:2:3: root level 12 out of range 1..=9 for gzip compression",
            "r.yml:2:3: root block_size 1000 must be a power of two from 4096 to 1048576"
        ]
    );
    assert!(parse_str("r.yml", "root: ext4\n").is_err());
    assert!(parse_str("r.yml", "root:\n  compresion: xz\n").is_err());
}

#[test]
fn merge_overrides_kernel_and_appends_lists() {
    let base = parse_str(
        "a.yml",
        "kernel:\n  image: linuxkit/kernel:6.6\n  cmdline: console=ttyS0\ninit: [linuxkit/init:v1]\nservices:\n  - {name: getty, image: linuxkit/getty:v1}\n",
    )
    .expect("a parses");
    let extra = parse_str(
        "b.yml",
        "kernel:\n  cmdline: quiet\ninit: [linuxkit/runc:v1]\nservices:\n  - {name: sshd, image: linuxkit/sshd:v1}\ninitrd: {compression: none}\n",
    )
    .expect("b parses");
    let mut spec = base;
    spec.merge(extra);
    let k = spec.kernel.as_ref().expect("kernel");
    assert_eq!(
        k.image.as_ref().map(|i| i.text.as_str()),
        Some("linuxkit/kernel:6.6")
    );
    assert_eq!(k.cmdline.as_deref(), Some("quiet"));
    let init: Vec<&str> = spec.init.iter().map(|i| i.text.as_str()).collect();
    assert_eq!(init, ["linuxkit/init:v1", "linuxkit/runc:v1"]);
    assert_eq!(spec.services.len(), 2);
    assert_eq!(spec.services[1].origin().file.as_ref(), "b.yml");
    assert_eq!(spec.initrd_options().compression, Compression::None);
}

#[test]
fn load_reads_merges_and_checks_duplicates_across_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = dir.path().join("a.yml");
    let b = dir.path().join("b.yml");
    std::fs::write(&a, "services:\n  - name: x\n    image: busybox\n").expect("write a");
    std::fs::write(&b, "services:\n  - name: x\n    image: alpine\n").expect("write b");
    let err = load(&[a.clone(), b.clone()]).expect_err("duplicate across files");
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "{}:3:12: duplicate service name \"x\"",
            b.display()
        )),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("first defined at {}:3:12", a.display())),
        "{msg}"
    );
    let spec = load(std::slice::from_ref(&a)).expect("single file loads");
    assert_eq!(spec.services.len(), 1);
    let missing = dir.path().join("nope.yml");
    let err = load(&[missing]).expect_err("missing file");
    assert!(err.to_string().starts_with("reading spec "), "{err}");
    assert!(err.to_string().contains("nope.yml"), "{err}");
}

#[test]
fn invalid_names_rejected() {
    let text = "onboot:\n  - name: ../x\n    image: busybox\nvolumes:\n  - name: Data\n";
    assert_eq!(
        err_lines("n.yml", text),
        [
            "n.yml:3:12: invalid name \"../x\" in onboot[0]: must be non-empty and a single path component",
            "n.yml:5:5: invalid volume name \"Data\"",
        ]
    );
}

#[test]
fn yaml_syntax_error_is_located() {
    let lines = err_lines("s.yml", "services:\n  - name: a\n   image: [\n");
    assert!(lines[0].starts_with("s.yml:"), "{lines:?}");
    assert!(!lines[0].starts_with("s.yml:0:0"), "{lines:?}");
}

#[test]
fn empty_and_null_sections_parse() {
    let without_sources = |s: Spec| Spec {
        sources: Vec::new(),
        ..s
    };
    assert_eq!(
        without_sources(parse_str("e.yml", "").expect("empty file")),
        Spec::default()
    );
    assert_eq!(
        without_sources(parse_str("e.yml", "# only a comment\n").expect("comment")),
        Spec::default()
    );
    let spec = parse_str("e.yml", "services:\nonboot: []\n").expect("null section");
    assert!(spec.services.is_empty());
}

#[test]
fn nested_unknown_key_names_full_path() {
    let text = "services:\n  - name: a\n    image: busybox\n    resources:\n      memory:\n        limt: 5\n";
    assert_eq!(
        err_lines("n.yml", text),
        ["n.yml:6:9: unknown field \"limt\" in services[0].resources.memory"]
    );
}

#[test]
fn bad_ids_are_located() {
    let text = "files:\n  - path: etc/x\n    contents: x\n    uid: -1\n";
    let lines = err_lines("u.yml", text);
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].starts_with("u.yml:4:5: files[0].uid: invalid value"),
        "{lines:?}"
    );
    let text = "services:\n  - name: a\n    image: busybox\n    additionalGids: [[1]]\n";
    let lines = err_lines("u.yml", text);
    assert!(
        lines[0].starts_with("u.yml:4:22: services[0].additionalGids[0]: "),
        "{lines:?}"
    );
}

#[test]
fn slots_size_parsed_checked_and_defaulted() {
    assert_eq!(
        parse_str("s.yml", "init: []\n").unwrap().slot_size(),
        4 << 20
    );
    let s = parse_str("s.yml", "slots:\n  size: 64M\n").unwrap();
    assert_eq!(s.slot_size(), 64 << 20);
    let s = parse_str("s.yml", "slots: {size: 1048576}\n").unwrap();
    assert_eq!(s.slot_size(), 1 << 20);
    assert_eq!(
        parse_str("s.yml", "slots: {size: 2MiB}\n")
            .unwrap()
            .slot_size(),
        2 << 20
    );
    for (text, want) in [
        (
            "slots:\n  size: 512K\n",
            "s.yml:2:3: slots size 524288 must be a whole number of MiB from 1M to 256M",
        ),
        (
            "slots:\n  size: 257M\n",
            "s.yml:2:3: slots size 269484032 must be a whole number of MiB from 1M to 256M",
        ),
        (
            "slots:\n  size: 1500000\n",
            "s.yml:2:3: slots size 1500000 must be a whole number of MiB from 1M to 256M",
        ),
    ] {
        assert_eq!(err_lines("s.yml", text), [want]);
    }
    let lines = err_lines("s.yml", "slots:\n  size: 4X\n");
    assert!(
        lines[0].starts_with("s.yml:2:9: slots.size: unknown size unit"),
        "{lines:?}"
    );
    let lines = err_lines("s.yml", "slots:\n  sise: 4M\n");
    assert!(
        lines[0].starts_with("s.yml:2:3: unknown field \"sise\""),
        "{lines:?}"
    );
    let mut a = parse_str("a.yml", "slots: {size: 8M}\n").unwrap();
    a.merge(parse_str("b.yml", "init: []\n").unwrap());
    assert_eq!(a.slot_size(), 8 << 20);
}
