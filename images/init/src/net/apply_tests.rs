use std::net::Ipv4Addr;

use super::*;
use crate::net::config;
use crate::testutil::FakeSys;

fn with_links(mut sys: FakeSys, links: &[(&str, &str)]) -> FakeSys {
    for (name, mac) in links {
        sys = sys
            .file(&format!("/sys/class/net/{name}/type"), "1\n")
            .file(
                &format!("/sys/class/net/{name}/address"),
                &format!("{mac}\n"),
            )
            .file(&format!("/sys/class/net/{name}/carrier"), "1\n");
    }
    sys.file("/sys/class/net/lo/type", "772\n")
}

#[test]
fn dhcp_all_configures_each_answering_link() {
    let mut sys = FakeSys::new();
    sys.dhcp_offers
        .insert("eth0".into(), Ipv4Addr::new(10, 0, 2, 15));
    let sys = with_links(
        sys,
        &[("eth0", "52:54:00:12:34:56"), ("eth1", "52:54:00:12:34:57")],
    );
    let leases = dhcp_all(&sys, Duration::from_secs(8));
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].ifname, "eth0");
    let calls = sys.calls();
    for want in [
        "link eth0 up",
        "link eth1 up",
        "dhcp socket eth0",
        "dhcp socket eth1",
        "addr add eth0 10.0.2.15/24",
        "route add eth0 0.0.0.0/0 via 10.0.2.2",
        "write /etc/resolv.conf # written by smelt init from network-config or DHCP\nnameserver 10.0.2.3\nsearch example.test\n",
    ] {
        assert!(calls.contains(&want.to_string()), "{want}: {calls:#?}");
    }
    assert!(!calls.iter().any(|c| c.starts_with("addr add eth1")));
    let logs = sys.logs();
    assert!(
        logs.contains("smelt: eth0 52:54:00:12:34:56 10.0.2.15/24 via 10.0.2.2 (dhcp)"),
        "{logs}"
    );
    assert!(
        logs.contains("smelt: dhcp: eth1: no DHCPOFFER in 8s"),
        "{logs}"
    );
    // Interleaved: eth1's silence did not cost eth0 its timeout.
    let discovers = calls
        .iter()
        .filter(|c| c.as_str() == "dhcp eth1 Discover")
        .count();
    assert_eq!(discovers, 2, "{calls:#?}");
}

#[test]
fn static_v2_config() {
    let sys = with_links(FakeSys::new(), &[("ens3", "52:54:00:aa:bb:cc")]);
    let cfg = config::parse(
        r#"
network:
  version: 2
  ethernets:
    lan:
      match: {macaddress: "52:54:00:AA:BB:CC"}
      addresses: [192.168.14.2/24, "2001:db8::5/64"]
      gateway4: 192.168.14.1
      routes: [{to: 10.10.0.0/16, via: 192.168.14.3}]
      nameservers: {addresses: [192.168.14.1, "2001:db8::1"], search: [lan]}
    other:
      match: {name: wlan0}
      dhcp4: true
"#,
    )
    .unwrap();
    let rep = apply(&sys, &cfg);
    assert_eq!(
        rep.applied,
        ["smelt: ens3 52:54:00:aa:bb:cc 192.168.14.2/24 2001:db8::5/64 via 192.168.14.1 (static)"]
    );
    assert_eq!(rep.skipped, ["network-config other: no link matches"]);
    assert!(rep.errors.is_empty(), "{:?}", rep.errors);
    assert_eq!(
        sys.calls(),
        [
            "link ens3 up",
            "addr add ens3 192.168.14.2/24",
            "addr add ens3 2001:db8::5/64",
            "route add ens3 0.0.0.0/0 via 192.168.14.1",
            "route add ens3 10.10.0.0/16 via 192.168.14.3",
            "write /etc/resolv.conf # written by smelt init from network-config or DHCP\nnameserver 192.168.14.1\nnameserver 2001:db8::1\nsearch lan\n",
        ]
    );
}

#[test]
fn v1_global_route_finds_its_link_and_errors_are_reported() {
    let mut sys = with_links(
        FakeSys::new(),
        &[("eth0", "00:11:22:33:44:55"), ("eth1", "00:11:22:33:44:66")],
    );
    sys.net_errors.insert("eth1".into(), libc::EADDRNOTAVAIL);
    let cfg = config::parse(
        r#"
version: 1
config:
  - {type: physical, name: eth0, subnets: [{type: static, address: 10.1.0.5/16}]}
  - {type: physical, name: eth1, subnets: [{type: static, address: 10.2.0.5/16}]}
  - {type: route, destination: 10.50.0.0/16, gateway: 10.1.0.1}
  - {type: route, destination: 10.60.0.0/16, gateway: 172.16.0.1}
"#,
    )
    .unwrap();
    let rep = apply(&sys, &cfg);
    assert!(
        sys.calls()
            .contains(&"route add eth0 10.50.0.0/16 via 10.1.0.1".to_string())
    );
    assert_eq!(rep.errors.len(), 2, "{:?}", rep.errors);
    assert!(
        rep.errors[0].starts_with("eth1: address 10.2.0.5/16: "),
        "{:?}",
        rep.errors
    );
    assert_eq!(
        rep.errors[1],
        "route 10.60.0.0/16 via 172.16.0.1: no link reaches the gateway"
    );
    // No DNS configured: resolv.conf left alone.
    assert!(!sys.calls().iter().any(|c| c.contains("resolv.conf")));
}

#[test]
fn dhcp_from_config_merges_dns() {
    let mut sys = FakeSys::new();
    sys.dhcp_offers
        .insert("eth0".into(), Ipv4Addr::new(10, 0, 2, 15));
    let sys = with_links(sys, &[("eth0", "52:54:00:12:34:56")]);
    let cfg = config::parse(
        "version: 1\nconfig:\n  - {type: physical, name: eth0, subnets: [{type: dhcp}]}\n  - {type: nameserver, address: [9.9.9.9]}\n",
    )
    .unwrap();
    let rep = apply(&sys, &cfg);
    assert_eq!(rep.leases.len(), 1);
    assert_eq!(
        sys.files.borrow().get(RESOLV_CONF).map(|b| String::from_utf8_lossy(b).into_owned()),
        Some("# written by smelt init from network-config or DHCP\nnameserver 9.9.9.9\nnameserver 10.0.2.3\nsearch example.test\n".into())
    );
    assert_eq!(
        rep.applied,
        ["smelt: eth0 52:54:00:12:34:56 10.0.2.15/24 via 10.0.2.2 (dhcp)"]
    );
}

#[test]
fn prefix_containment() {
    let c = |s: &str| config::Cidr::parse(s).unwrap();
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert!(contains(&c("10.1.0.5/16"), &ip("10.1.255.1")));
    assert!(!contains(&c("10.1.0.5/16"), &ip("10.2.0.1")));
    assert!(contains(&c("0.0.0.0/0"), &ip("1.2.3.4")));
    assert!(!contains(&c("0.0.0.0/0"), &ip("::1")));
    assert!(contains(&c("2001:db8::5/64"), &ip("2001:db8::1")));
}

#[test]
fn dhcp_link_routes_wait_for_the_lease() {
    let mut sys = FakeSys::new();
    sys.dhcp_offers
        .insert("eth0".into(), Ipv4Addr::new(10, 0, 2, 15));
    let sys = with_links(sys, &[("eth0", "52:54:00:12:34:56")]);
    let cfg = config::parse(
        r#"
version: 2
ethernets:
  eth0:
    dhcp4: true
    routes: [{to: 10.9.0.0/16, via: 10.0.2.9}]
"#,
    )
    .unwrap();
    let rep = apply(&sys, &cfg);
    assert!(rep.errors.is_empty(), "{:?}", rep.errors);
    let calls = sys.calls();
    let pos = |c: &str| calls.iter().position(|x| x == c).unwrap();
    assert!(pos("addr add eth0 10.0.2.15/24") < pos("route add eth0 10.9.0.0/16 via 10.0.2.9"));
    assert!(rep.applied.len() == 1, "{:?}", rep.applied);
}

#[test]
fn global_route_through_a_lease() {
    let mut sys = FakeSys::new();
    sys.dhcp_offers
        .insert("eth0".into(), Ipv4Addr::new(10, 0, 2, 15));
    let sys = with_links(sys, &[("eth0", "52:54:00:12:34:56")]);
    let cfg = config::parse(
        "version: 1\nconfig:\n  - {type: physical, name: eth0, subnets: [{type: dhcp}]}\n  - {type: route, destination: 192.168.0.0/16, gateway: 10.0.2.1}\n",
    )
    .unwrap();
    let rep = apply(&sys, &cfg);
    assert!(rep.errors.is_empty(), "{:?}", rep.errors);
    assert!(
        sys.calls()
            .contains(&"route add eth0 192.168.0.0/16 via 10.0.2.1".to_string())
    );
}
