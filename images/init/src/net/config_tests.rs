use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn cidr(s: &str) -> Cidr {
    Cidr::parse(s).unwrap()
}

// cloud-init docs, "Networking config Version 1": physical + static
// subnet with DNS, a route entry and a nameserver entry.
const V1: &str = r#"
network:
  version: 1
  config:
    - type: physical
      name: interface0
      mac_address: "00:11:22:33:44:55"
      mtu: 1500
      subnets:
        - type: static
          address: 192.168.23.14/27
          gateway: 192.168.23.1
          dns_nameservers:
            - 192.168.23.2
            - 8.8.8.8
          dns_search:
            - exemplary.maas
        - type: static
          address: 192.168.14.2
          netmask: 255.255.255.0
        - type: static6
          address: 2001:1::1/64
    - type: physical
      name: eth1
      subnets:
        - type: dhcp
    - type: bond
      name: bond0
    - type: route
      destination: 10.0.0.0/8
      gateway: 11.0.0.1
      metric: 3
    - type: nameserver
      address: [192.168.23.2, 8.8.8.8]
      search: [exemplary]
"#;

#[test]
fn v1_doc_sample() {
    let c = parse(V1).unwrap();
    assert_eq!(c.interfaces.len(), 2);
    let i = &c.interfaces[0];
    assert_eq!(i.id, "interface0");
    assert_eq!(i.matches.mac.as_deref(), Some("00:11:22:33:44:55"));
    assert_eq!(i.matches.name, None);
    assert!(!i.dhcp4);
    assert_eq!(
        i.addresses,
        [
            cidr("192.168.23.14/27"),
            cidr("192.168.14.2/24"),
            cidr("2001:1::1/64")
        ]
    );
    assert_eq!(
        i.routes,
        [Route {
            to: cidr("0.0.0.0/0"),
            via: ip("192.168.23.1")
        }]
    );
    assert_eq!(i.dns.nameservers, [ip("192.168.23.2"), ip("8.8.8.8")]);
    assert_eq!(i.dns.search, ["exemplary.maas"]);
    let e = &c.interfaces[1];
    assert!(e.dhcp4);
    assert_eq!(e.matches.name.as_deref(), Some("eth1"));
    assert_eq!(
        c.routes,
        [Route {
            to: cidr("10.0.0.0/8"),
            via: ip("11.0.0.1")
        }]
    );
    assert_eq!(c.dns.search, ["exemplary"]);
    assert_eq!(c.dns.nameservers.len(), 2);
    let w = c.warnings.join("\n");
    assert!(w.contains("config[0]: mtu not supported"), "{w}");
    assert!(w.contains("config[2]: type \"bond\" not supported"), "{w}");
    assert_eq!(c.warnings.len(), 2, "{w}");
}

// cloud-init docs, "Networking config Version 2" / netplan examples.
const V2: &str = r#"
version: 2
renderer: networkd
ethernets:
  id0:
    match:
      macaddress: 00:11:22:33:44:55
    set-name: eth0
    dhcp4: true
  lan:
    match:
      name: "en*"
    addresses:
      - 192.168.14.2/24
      - "2001:1::1/64"
    gateway4: 192.168.14.1
    gateway6: "2001:1::2"
    routes:
      - to: 10.10.0.0/16
        via: 192.168.14.3
      - to: default
        via: 192.168.14.254
    nameservers:
      search: [foo.local, bar.local]
      addresses: [8.8.8.8]
    wakeonlan: true
  eth9:
    dhcp4: yes
bridges:
  br0:
    interfaces: [lan]
"#;

#[test]
fn v2_doc_sample() {
    let c = parse(V2).unwrap();
    assert_eq!(c.interfaces.len(), 3);
    let by = |id: &str| c.interfaces.iter().find(|i| i.id == id).unwrap();
    let id0 = by("id0");
    assert!(id0.dhcp4);
    assert_eq!(id0.matches.mac.as_deref(), Some("00:11:22:33:44:55"));
    assert!(id0.matches.matches("whatever", "00:11:22:33:44:55"));
    assert!(!id0.matches.matches("whatever", "00:11:22:33:44:56"));
    let lan = by("lan");
    assert!(!lan.dhcp4);
    assert_eq!(
        lan.addresses,
        [cidr("192.168.14.2/24"), cidr("2001:1::1/64")]
    );
    assert_eq!(
        lan.routes,
        [
            Route {
                to: cidr("0.0.0.0/0"),
                via: ip("192.168.14.1")
            },
            Route {
                to: cidr("::/0"),
                via: ip("2001:1::2")
            },
            Route {
                to: cidr("10.10.0.0/16"),
                via: ip("192.168.14.3")
            },
            Route {
                to: cidr("0.0.0.0/0"),
                via: ip("192.168.14.254")
            },
        ]
    );
    assert_eq!(lan.dns.search, ["foo.local", "bar.local"]);
    assert!(lan.matches.matches("ens3", "aa:bb:cc:dd:ee:ff"));
    assert!(!lan.matches.matches("eth0", "aa:bb:cc:dd:ee:ff"));
    // No match: the ID is the name.
    let eth9 = by("eth9");
    assert!(eth9.dhcp4);
    assert!(eth9.matches.matches("eth9", "x"));
    let w = c.warnings.join("\n");
    assert!(w.contains("ethernets.id0: set-name not supported"), "{w}");
    assert!(w.contains("ethernets.lan: unknown key wakeonlan"), "{w}");
    assert!(w.contains("v2: bridges not supported"), "{w}");
    assert_eq!(c.warnings.len(), 3, "{w}");
}

#[test]
fn v2_unwrapped_and_mac_case() {
    let c = parse(
        "network: {version: 2, ethernets: {e: {match: {macaddress: 'AA:BB:CC:DD:EE:FF'}, dhcp4: true}}}",
    )
    .unwrap();
    assert!(c.interfaces[0].matches.matches("eth0", "aa:bb:cc:dd:ee:ff"));
}

#[test]
fn bad_values_are_warnings() {
    let c = parse(
        "version: 2\nethernets:\n  eth0:\n    addresses: [10.0.0.1/40, nonsense, 10.0.0.2/24]\n    gateway4: 10.0.0\n",
    )
    .unwrap();
    assert_eq!(c.interfaces[0].addresses, [cidr("10.0.0.2/24")]);
    assert!(c.interfaces[0].routes.is_empty());
    assert_eq!(c.warnings.len(), 3, "{:?}", c.warnings);
}

#[test]
fn fatal_errors() {
    for (text, want) in [
        ("", "empty"),
        ("[1, 2]", "not a mapping"),
        ("version: 3", "version 3 not supported"),
        ("ethernets: {}", "no version"),
        ("version: [", "not YAML"),
    ] {
        let e = parse(text).unwrap_err();
        assert!(e.contains(want), "{text:?}: {e}");
    }
}

#[test]
fn cidr_forms() {
    assert_eq!(cidr("10.1.2.3").prefix, 32);
    assert_eq!(cidr("10.1.2.3/255.255.0.0").prefix, 16);
    assert_eq!(cidr("fe80::1").prefix, 128);
    assert!(Cidr::parse("10.1.2.3/255.0.255.0").is_err());
    assert!(Cidr::parse("::1/129").is_err());
    assert_eq!(netmask_prefix("0.0.0.0"), Some(0));
    assert_eq!(netmask_prefix("255.255.255.255"), Some(32));
    assert_eq!(cidr("2001:db8::5/64").to_string(), "2001:db8::5/64");
}

#[test]
fn globs() {
    assert!(glob("en*", "ens3"));
    assert!(glob("*", ""));
    assert!(glob("e*h*", "eth0"));
    assert!(!glob("en*", "eth0"));
    assert!(!glob("eth0", "eth01"));
}

#[test]
fn odd_shapes_are_warnings_not_panics() {
    for text in [
        "version: 2\nethernets: [1, 2]",
        "version: 2\nethernets: {eth0: 5}",
        "version: 2\nethernets: {eth0: {addresses: 5, routes: [1, {via: x}], nameservers: 3, match: 7}}",
        "version: 1\nconfig: {a: 1}",
        "version: 1\nconfig: [1, {type: physical}, {type: physical, name: e, subnets: [7, {type: static}]}]",
        "version: '2'\nethernets: {}",
        "network: {version: 1, config: [{type: route}]}",
    ] {
        let c = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert!(
            c.interfaces.iter().all(|i| i.addresses.is_empty()),
            "{text}"
        );
    }
}
