//! The init's network code against the real kernel and a real DHCP server,
//! inside two network namespaces of its own joined by a veth pair:
//!
//!     smelt-srv-PID: veth0 10.77.0.1/24, dnsmasq (DHCP only), python3 http.server
//!     smelt-cli-PID: eth0, configured by this crate's code
//!
//! The test re-runs its own binary inside the client namespace (`ip netns
//! exec`, with `SMELT_NETNS_CHILD` saying what to do), so the code under
//! test configures that namespace only. `ip netns exec` also bind-mounts
//! `/etc/netns/NS/resolv.conf` over `/etc/resolv.conf` in a private mount
//! namespace; the child checks it sees that file before writing it.
//!
//! Needs root, iproute2, dnsmasq and python3 (`apt-get install -y iproute2
//! dnsmasq python3`); fails saying so otherwise. Everything it creates is
//! removed on every path (a guard's Drop).

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use smelt_init::net;
use smelt_init::sys::RealSys;

const CHILD: &str = "SMELT_NETNS_CHILD";
/// The parent's `/proc/self/ns/net`, which the child must not be in.
const PARENT_NS: &str = "SMELT_NETNS_PARENT";
const MARKER: &str = "# smelt net_ns test placeholder\n";
const MAC: &str = "52:54:00:77:00:10";

const STATIC_V2: &str = r#"
network:
  version: 2
  ethernets:
    lan:
      match:
        macaddress: "52:54:00:77:00:10"
      addresses: [10.88.0.5/24, "2001:db8:88::5/64"]
      gateway6: "2001:db8:88::1"
      routes:
        - to: 10.200.0.0/16
          via: 10.88.0.1
      nameservers:
        addresses: [10.88.0.53]
        search: [static.test]
      wakeonlan: true
"#;

fn main() {
    match std::env::var(CHILD).as_deref() {
        Ok("dhcp") => child_dhcp(),
        Ok("static") => child_static(),
        Ok(other) => panic!("unknown {CHILD}={other}"),
        Err(_) => {
            parent();
            println!("test net_ns::dhcp_static_and_fetch ... ok");
        }
    }
}

/// Run `argv`, panicking with its stderr unless it succeeds; its stdout.
fn sh(argv: &[&str]) -> String {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", argv.join(" ")));
    assert!(
        out.status.success(),
        "{}: {}\n{}",
        argv.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What the test made; removed when dropped, also on a panic.
struct Guard {
    netns: Vec<String>,
    children: Vec<Child>,
    etc_netns: Option<PathBuf>,
    /// `/etc/netns` was made by this test: remove it too.
    made_etc_netns: bool,
    tmp: tempfile::TempDir,
}

impl Drop for Guard {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in &self.netns {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        if let Some(d) = &self.etc_netns {
            let _ = fs::remove_dir_all(d);
        }
        if self.made_etc_netns {
            let _ = fs::remove_dir("/etc/netns");
        }
    }
}

fn require() {
    let uid = sh(&["id", "-u"]);
    assert_eq!(uid.trim(), "0", "net_ns needs root (network namespaces)");
    for tool in ["ip", "dnsmasq", "python3"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            found,
            "net_ns needs {tool}: apt-get install -y iproute2 dnsmasq python3"
        );
    }
}

fn parent() {
    require();
    let pid = std::process::id();
    let srv = format!("smelt-srv-{pid}");
    let cli = format!("smelt-cli-{pid}");
    let mut g = Guard {
        netns: Vec::new(),
        children: Vec::new(),
        etc_netns: None,
        made_etc_netns: !std::path::Path::new("/etc/netns").exists(),
        tmp: tempfile::tempdir().unwrap(),
    };
    for ns in [&srv, &cli] {
        sh(&["ip", "netns", "add", ns]);
        g.netns.push(ns.clone());
    }
    sh(&[
        "ip", "-n", &srv, "link", "add", "veth0", "type", "veth", "peer", "name", "eth0", "netns",
        &cli,
    ]);
    sh(&["ip", "-n", &cli, "link", "set", "eth0", "address", MAC]);
    sh(&[
        "ip",
        "-n",
        &srv,
        "addr",
        "add",
        "10.77.0.1/24",
        "dev",
        "veth0",
    ]);
    sh(&["ip", "-n", &srv, "link", "set", "veth0", "up"]);
    sh(&["ip", "-n", &srv, "link", "set", "lo", "up"]);
    // A second link on which no server answers: its DHCP must time out
    // without holding up eth0's, both sockets on port 68.
    sh(&[
        "ip", "-n", &srv, "link", "add", "veth1", "type", "veth", "peer", "name", "eth1", "netns",
        &cli,
    ]);
    sh(&["ip", "-n", &srv, "link", "set", "veth1", "up"]);

    let etc = PathBuf::from("/etc/netns").join(&cli);
    fs::create_dir_all(&etc).unwrap();
    g.etc_netns = Some(etc.clone());
    fs::write(etc.join("resolv.conf"), MARKER).unwrap();

    let tmp = g.tmp.path().to_path_buf();
    let seed = tmp.join("seed");
    fs::create_dir_all(&seed).unwrap();
    fs::write(seed.join("meta-data"), "instance-id: netns\n").unwrap();
    fs::write(seed.join("user-data"), "#cloud-config\nhostname: netns\n").unwrap();
    // No network-config: the server's 404 must be fine.

    let dnsmasq = Command::new("ip")
        .args([
            "netns",
            "exec",
            &srv,
            "dnsmasq",
            "--no-daemon",
            "--conf-file=/dev/null",
        ])
        .args([
            "--port=0",
            "--interface=veth0",
            "--bind-interfaces",
            "--user=root",
        ])
        .arg(format!("--pid-file={}", tmp.join("dnsmasq.pid").display()))
        .arg(format!("--dhcp-leasefile={}", tmp.join("leases").display()))
        .args(["--dhcp-range=10.77.0.50,10.77.0.60,255.255.255.0,1h"])
        .arg(format!("--dhcp-host={MAC},10.77.0.55"))
        .args(["--dhcp-option=option:router,10.77.0.1"])
        .args(["--dhcp-option=option:dns-server,10.77.0.53"])
        .args(["--dhcp-option=option:domain-name,smelt.test"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting dnsmasq");
    g.children.push(dnsmasq);
    let http = Command::new("ip")
        .args([
            "netns",
            "exec",
            &srv,
            "python3",
            "-m",
            "http.server",
            "8000",
        ])
        .args(["--bind", "10.77.0.1", "--directory"])
        .arg(&tmp)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting python3 http.server");
    g.children.push(http);
    wait_listening(&srv, ":8000");

    run_child(&cli, "dhcp");
    let addr = sh(&["ip", "-n", &cli, "addr", "show", "dev", "eth0"]);
    assert!(
        addr.contains("inet 10.77.0.55/24 brd 10.77.0.255"),
        "{addr}"
    );
    assert!(addr.contains(",UP,"), "{addr}");
    let addr1 = sh(&["ip", "-n", &cli, "-4", "addr", "show", "dev", "eth1"]);
    assert!(!addr1.contains("inet "), "{addr1}");
    let route = sh(&["ip", "-n", &cli, "route"]);
    assert!(route.contains("default via 10.77.0.1 dev eth0"), "{route}");
    let resolv = fs::read_to_string(etc.join("resolv.conf")).unwrap();
    assert!(
        resolv.contains("nameserver 10.77.0.53\nsearch smelt.test\n"),
        "{resolv}"
    );

    run_child(&cli, "static");
    let addr = sh(&["ip", "-n", &cli, "addr", "show", "dev", "eth0"]);
    assert!(addr.contains("inet 10.88.0.5/24"), "{addr}");
    assert!(addr.contains("inet6 2001:db8:88::5/64"), "{addr}");
    let route = sh(&["ip", "-n", &cli, "route"]);
    assert!(
        route.contains("10.200.0.0/16 via 10.88.0.1 dev eth0"),
        "{route}"
    );
    let route6 = sh(&["ip", "-n", &cli, "-6", "route"]);
    assert!(
        route6.contains("default via 2001:db8:88::1 dev eth0"),
        "{route6}"
    );
    let resolv = fs::read_to_string(etc.join("resolv.conf")).unwrap();
    assert!(
        resolv.contains("nameserver 10.88.0.53\nsearch static.test\n"),
        "{resolv}"
    );
    drop(g);
    let left = sh(&["ip", "netns", "list"]);
    assert!(!left.contains(&cli) && !left.contains(&srv), "{left}");
}

/// Wait until something in `ns` listens on `port` (e.g. ":8000").
fn wait_listening(ns: &str, port: &str) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if sh(&["ip", "netns", "exec", ns, "ss", "-ltn"]).contains(port) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("nothing listens on {port} in {ns}");
}

fn run_child(ns: &str, what: &str) {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(exe)
        .env(CHILD, what)
        .env(PARENT_NS, netns_id())
        .env("SMELT_NETNS_CONFIG", STATIC_V2)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("--- child {what} ---\n{stderr}");
    assert!(
        out.status.success(),
        "child {what}: {}\n{stderr}",
        out.status
    );
    if what == "dhcp" {
        assert!(
            stderr.contains("smelt: dhcp: eth1: no DHCPOFFER in 5s"),
            "{stderr}"
        );
    }
}

fn netns_id() -> String {
    let l = fs::read_link("/proc/self/ns/net").expect("reading /proc/self/ns/net");
    l.to_string_lossy().into_owned()
}

/// Refuse to touch anything unless this is the namespace the parent made.
fn check_isolated() {
    let parent = std::env::var(PARENT_NS).expect("parent's netns id");
    assert_ne!(netns_id(), parent, "child not in its own network namespace");
    let resolv = fs::read_to_string(net::apply::RESOLV_CONF).unwrap_or_default();
    assert!(
        resolv.starts_with(MARKER) || resolv.starts_with("# written by smelt init"),
        "/etc/resolv.conf is not the namespace's own: {resolv:?}"
    );
}

fn child_dhcp() {
    check_isolated();
    let sys = RealSys::new();
    let t = Instant::now();
    let leases = net::dhcp_all(&sys, Duration::from_secs(5));
    let took = t.elapsed();
    eprintln!("dhcp took {took:?}");
    assert_eq!(leases.len(), 1, "{leases:?}");
    assert_eq!(leases[0].ifname, "eth0");
    assert_eq!(leases[0].mac, MAC);
    // eth1 used its whole budget, in parallel with eth0's exchange.
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_secs(9),
        "{took:?}"
    );
    // Plain HTTP over the address just configured, as a `ds=nocloud`
    // boot does.
    let url = net::http::nocloud_url("console=ttyS0 ds=nocloud;s=http://10.77.0.1:8000/seed")
        .expect("cmdline");
    let (meta, user, netcfg) = net::http::nocloud_fetch(&url).unwrap();
    assert_eq!(meta, b"instance-id: netns\n");
    assert!(user.starts_with(b"#cloud-config\n"));
    assert_eq!(netcfg, None);
}

fn child_static() {
    check_isolated();
    let text = std::env::var("SMELT_NETNS_CONFIG").unwrap();
    let cfg = net::config::parse(&text).unwrap();
    let rep = net::apply(&RealSys::new(), &cfg);
    eprintln!("{rep:#?}");
    assert!(rep.errors.is_empty(), "{:?}", rep.errors);
    assert_eq!(
        rep.skipped,
        ["network-config ethernets.lan: unknown key wakeonlan"]
    );
    assert_eq!(rep.applied.len(), 1);
}
