use super::*;

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
    let (f, d) = crate::config::system::options("ro,nosuid,uid=1000,nofail,_netdev,umask=022");
    assert_eq!(f, libc::MS_RDONLY | libc::MS_NOSUID);
    assert_eq!(d, "uid=1000,umask=022");
}
