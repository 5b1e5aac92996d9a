use super::*;

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
