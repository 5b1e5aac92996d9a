//! `FakeSys`: an in-memory, recording [`Sys`] for unit tests.
//!
//! Files live in a map; every mutating call is appended to `calls` as one
//! readable string, so tests assert on order and arguments.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use crate::net::config::Cidr;
use crate::net::dhcp::{self, MessageType, Transport};
use crate::sys::{Action, Sys};

/// Files to add: (path, contents).
pub type Files = Vec<(String, Vec<u8>)>;

#[derive(Default)]
pub struct FakeSys {
    pub calls: RefCell<Vec<String>>,
    pub logs: RefCell<Vec<String>>,
    pub files: RefCell<BTreeMap<String, Vec<u8>>>,
    pub dirs: RefCell<BTreeSet<String>>,
    /// Paths whose mount fails.
    pub failing_mounts: BTreeSet<String>,
    /// Exit code returned by `run` per container name (default 0).
    pub exit_codes: BTreeMap<String, i32>,
    /// Signals `wait_signal` returns, in order; then it times out.
    pub signals: RefCell<VecDeque<i32>>,
    /// Children `reap` returns, one batch per call.
    pub reaps: RefCell<VecDeque<Vec<(u32, i32)>>>,
    pub next_pid: Cell<u32>,
    pub clock: Cell<Duration>,
    pub release: String,
    pub root_magic: i64,
    pub env: BTreeMap<String, String>,
    /// Files that appear at each `sleep`, one batch per call (devices
    /// showing up while stage 1 polls).
    pub later: RefCell<VecDeque<Files>>,
    /// How long each `read_at` takes on the fake clock.
    pub read_delay: Cell<Duration>,
    /// Numbers `loop_get_free` returns, in order; then 0.
    pub free_loops: RefCell<VecDeque<u32>>,
    /// errno of `loop_configure`/`loop_set_fd` per loop device.
    pub loop_errors: BTreeMap<String, i32>,
    /// `loop_configure` fails with ENOTTY (a pre-5.8 kernel).
    pub no_loop_configure: bool,
    /// Per link: the address its fake DHCP server offers (no entry: no
    /// server answers).
    pub dhcp_offers: BTreeMap<String, Ipv4Addr>,
    /// errno of `addr_add`/`route_add` per link.
    pub net_errors: BTreeMap<String, i32>,
    // config
    /// File systems whose `mount` fails (EINVAL), e.g. to test `auto`.
    pub failing_fstypes: BTreeSet<String>,
    /// Symlinks made: link -> target.
    pub symlinks: RefCell<BTreeMap<String, String>>,
}

impl FakeSys {
    pub fn new() -> FakeSys {
        FakeSys {
            release: "6.1.0-test".into(),
            root_magic: 0xef53,
            next_pid: Cell::new(100),
            ..Default::default()
        }
    }

    pub fn file(self, path: &str, data: &str) -> FakeSys {
        self.files
            .borrow_mut()
            .insert(path.to_string(), data.as_bytes().to_vec());
        self
    }

    pub fn dir(self, path: &str) -> FakeSys {
        self.dirs.borrow_mut().insert(path.to_string());
        self
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.borrow().clone()
    }

    pub fn logs(&self) -> String {
        self.logs.borrow().join("\n")
    }

    fn call(&self, s: String) {
        self.calls.borrow_mut().push(s);
    }

    /// Attach: the loop device reads as its backing file from now on.
    fn attach(&self, dev: &str, backing: &str) -> io::Result<()> {
        if let Some(&e) = self.loop_errors.get(dev) {
            return Err(io::Error::from_raw_os_error(e));
        }
        let data = self.read_file(backing)?;
        self.files.borrow_mut().insert(dev.to_string(), data);
        Ok(())
    }
}

fn enoent(path: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{path}: not found"))
}

impl Sys for FakeSys {
    fn log(&self, msg: &str) {
        self.logs.borrow_mut().push(msg.to_string());
    }
    fn mount(
        &self,
        source: &str,
        target: &str,
        fstype: &str,
        flags: u64,
        data: &str,
    ) -> io::Result<()> {
        self.call(format!(
            "mount {source} {target} {fstype} {flags:#x} {data}"
        ));
        if self.failing_mounts.contains(target) {
            return Err(io::Error::from_raw_os_error(libc::EPERM));
        }
        if self.failing_fstypes.contains(fstype) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        Ok(())
    }
    fn umount(&self, target: &str) -> io::Result<()> {
        self.call(format!("umount {target}"));
        Ok(())
    }
    fn mkdir_all(&self, path: &str, mode: u32) -> io::Result<()> {
        self.call(format!("mkdir {path} {mode:o}"));
        self.dirs.borrow_mut().insert(path.to_string());
        Ok(())
    }
    fn write_file(&self, path: &str, data: &[u8]) -> io::Result<()> {
        self.call(format!("write {path} {}", String::from_utf8_lossy(data)));
        self.files
            .borrow_mut()
            .insert(path.to_string(), data.to_vec());
        Ok(())
    }
    fn read_file(&self, path: &str) -> io::Result<Vec<u8>> {
        self.files
            .borrow()
            .get(path)
            .cloned()
            .ok_or_else(|| enoent(path))
    }
    fn exists(&self, path: &str) -> bool {
        self.files.borrow().contains_key(path) || self.dirs.borrow().contains(path)
    }
    fn list_dir(&self, path: &str) -> io::Result<Vec<String>> {
        let prefix = format!("{}/", path.trim_end_matches('/'));
        let mut names = BTreeSet::new();
        let files = self.files.borrow();
        let dirs = self.dirs.borrow();
        for p in files.keys().chain(dirs.iter()) {
            let first = p.strip_prefix(&prefix).and_then(|r| r.split('/').next());
            if let Some(first) = first.filter(|s| !s.is_empty()) {
                names.insert(first.to_string());
            }
        }
        if names.is_empty() && !dirs.contains(path) {
            return Err(enoent(path));
        }
        Ok(names.into_iter().collect())
    }
    fn set_hostname(&self, name: &str) -> io::Result<()> {
        self.call(format!("hostname {name}"));
        Ok(())
    }
    fn loopback_up(&self) -> io::Result<()> {
        self.call("lo up".into());
        Ok(())
    }
    fn finit_module(&self, path: &str, compressed: bool) -> io::Result<()> {
        self.call(format!("finit_module {path} {compressed}"));
        if self.files.borrow().contains_key(path) {
            Ok(())
        } else {
            Err(enoent(path))
        }
    }
    fn kernel_release(&self) -> io::Result<String> {
        Ok(self.release.clone())
    }
    fn root_fs_magic(&self) -> io::Result<i64> {
        Ok(self.root_magic)
    }
    fn console_stdio(&self) -> io::Result<()> {
        self.call("console".into());
        Ok(())
    }
    fn disable_cad(&self) -> io::Result<()> {
        self.call("cad off".into());
        Ok(())
    }
    fn copy_root(&self, from: &str, to: &str) -> io::Result<()> {
        self.call(format!("copy {from} {to}"));
        Ok(())
    }
    fn chdir(&self, path: &str) -> io::Result<()> {
        self.call(format!("chdir {path}"));
        Ok(())
    }
    fn chroot(&self, path: &str) -> io::Result<()> {
        self.call(format!("chroot {path}"));
        Ok(())
    }
    fn exec(&self, path: &str, env: (&str, &str)) -> io::Error {
        self.call(format!("exec {path} {}={}", env.0, env.1));
        io::Error::other("fake exec")
    }
    fn env_var(&self, key: &str) -> Option<String> {
        self.env.get(key).cloned()
    }
    fn spawn(&self, argv: &[String], _name: &str) -> io::Result<u32> {
        self.call(format!("spawn {}", argv.join(" ")));
        let pid = self.next_pid.get();
        self.next_pid.set(pid + 1);
        Ok(pid)
    }
    fn run(&self, argv: &[String], name: &str) -> io::Result<i32> {
        self.call(format!("run {}", argv.join(" ")));
        Ok(self.exit_codes.get(name).copied().unwrap_or(0))
    }
    fn run_quiet(&self, argv: &[String]) -> io::Result<i32> {
        self.call(format!("run {}", argv.join(" ")));
        Ok(0)
    }
    fn reap(&self) -> Vec<(u32, i32)> {
        self.reaps.borrow_mut().pop_front().unwrap_or_default()
    }
    fn wait_signal(&self, timeout: Duration) -> Option<i32> {
        let s = self.signals.borrow_mut().pop_front();
        if s.is_none() {
            self.clock.set(self.clock.get() + timeout);
        }
        s
    }
    fn now(&self) -> Duration {
        self.clock.get()
    }
    fn sync(&self) {
        self.call("sync".into());
    }
    fn kill_all(&self, sig: i32) {
        self.call(format!("kill_all {sig}"));
    }
    fn watch_power_button(&self) -> usize {
        self.call("watch power button".into());
        0
    }
    fn reboot(&self, action: Action) -> io::Error {
        self.call(format!("reboot {action:?}"));
        io::Error::other("fake reboot")
    }
    fn read_at(&self, path: &str, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        self.clock.set(self.clock.get() + self.read_delay.get());
        let files = self.files.borrow();
        let data = files.get(path).ok_or_else(|| enoent(path))?;
        let start = (offset as usize).min(data.len());
        let end = start.saturating_add(len).min(data.len());
        Ok(data[start..end].to_vec())
    }
    fn file_size(&self, path: &str) -> io::Result<u64> {
        Ok(self.read_file(path)?.len() as u64)
    }
    fn mknod_block(&self, path: &str, major: u32, minor: u32) -> io::Result<()> {
        self.call(format!("mknod {path} b {major}:{minor}"));
        self.files.borrow_mut().insert(path.to_string(), Vec::new());
        Ok(())
    }
    fn loop_get_free(&self) -> io::Result<u32> {
        self.call("loop_get_free".into());
        Ok(self.free_loops.borrow_mut().pop_front().unwrap_or(0))
    }
    fn loop_configure(&self, dev: &str, backing: &str) -> io::Result<()> {
        self.call(format!("loop_configure {dev} {backing}"));
        if self.no_loop_configure {
            return Err(io::Error::from_raw_os_error(libc::ENOTTY));
        }
        self.attach(dev, backing)
    }
    fn loop_set_fd(&self, dev: &str, backing: &str) -> io::Result<()> {
        self.call(format!("loop_set_fd {dev} {backing}"));
        self.attach(dev, backing)
    }
    fn delete_same_fs(&self, root: &str) -> io::Result<()> {
        self.call(format!("delete_same_fs {root}"));
        Ok(())
    }
    fn sleep(&self, d: Duration) {
        self.clock.set(self.clock.get() + d);
        if let Some(batch) = self.later.borrow_mut().pop_front() {
            self.files.borrow_mut().extend(batch);
        }
    }
    fn halt(&self) {
        self.call("halt".into());
    }

    // net

    fn link_set_up(&self, ifname: &str, up: bool) -> io::Result<()> {
        self.call(format!("link {ifname} {}", if up { "up" } else { "down" }));
        Ok(())
    }
    fn addr_del(&self, ifname: &str, addr: &Cidr) -> io::Result<()> {
        self.call(format!("addr del {ifname} {addr}"));
        Ok(())
    }
    fn addr_add(&self, ifname: &str, addr: &Cidr) -> io::Result<()> {
        self.call(format!("addr add {ifname} {addr}"));
        match self.net_errors.get(ifname) {
            Some(&e) => Err(io::Error::from_raw_os_error(e)),
            None => Ok(()),
        }
    }
    fn route_add(&self, ifname: &str, to: &Cidr, via: Option<IpAddr>) -> io::Result<()> {
        let via = via.map(|v| format!(" via {v}")).unwrap_or_default();
        self.call(format!("route add {ifname} {to}{via}"));
        match self.net_errors.get(ifname) {
            Some(&e) => Err(io::Error::from_raw_os_error(e)),
            None => Ok(()),
        }
    }
    fn dhcp_transport(&self, ifname: &str) -> io::Result<Box<dyn Transport + '_>> {
        self.call(format!("dhcp socket {ifname}"));
        let mut server = FakeDhcp::new(&self.clock, self.dhcp_offers.get(ifname).copied());
        server.name = ifname.to_string();
        server.calls = Some(&self.calls);
        Ok(Box::new(server))
    }
    // config

    fn chmod(&self, path: &str, mode: u32) -> io::Result<()> {
        self.call(format!("chmod {path} {mode:o}"));
        if self.exists(path) {
            Ok(())
        } else {
            Err(enoent(path))
        }
    }
    fn chown(&self, path: &str, uid: u32, gid: u32) -> io::Result<()> {
        self.call(format!("chown {path} {uid}:{gid}"));
        if self.exists(path) {
            Ok(())
        } else {
            Err(enoent(path))
        }
    }
    fn symlink(&self, target: &str, link: &str) -> io::Result<()> {
        self.call(format!("symlink {target} {link}"));
        self.files.borrow_mut().remove(link);
        self.symlinks
            .borrow_mut()
            .insert(link.to_string(), target.to_string());
        Ok(())
    }
    fn append_file(&self, path: &str, data: &[u8]) -> io::Result<()> {
        self.call(format!("append {path} {}", String::from_utf8_lossy(data)));
        self.files
            .borrow_mut()
            .entry(path.to_string())
            .or_default()
            .extend_from_slice(data);
        Ok(())
    }
}

/// The DHCP server a fake transport talks to: it answers DISCOVER with an
/// OFFER of `offer` and REQUEST with an ACK, after ignoring `drop` client
/// packets; a receive with nothing queued waits out its timeout on `clock`.
pub struct FakeDhcp<'a> {
    pub clock: &'a Cell<Duration>,
    pub offer: Option<Ipv4Addr>,
    pub drop: usize,
    /// Answer REQUESTs with a NAK this many times.
    pub naks: usize,
    /// Extra replies delivered first (foreign or broken packets).
    pub queue: VecDeque<Vec<u8>>,
    /// Message types the client sent, in order.
    pub seen: Vec<MessageType>,
    pub name: String,
    pub calls: Option<&'a RefCell<Vec<String>>>,
}

impl<'a> FakeDhcp<'a> {
    pub fn new(clock: &'a Cell<Duration>, offer: Option<Ipv4Addr>) -> FakeDhcp<'a> {
        FakeDhcp {
            clock,
            offer,
            drop: 0,
            naks: 0,
            queue: VecDeque::new(),
            seen: Vec::new(),
            name: String::new(),
            calls: None,
        }
    }
}

/// A server reply as a real server lays it out: /24, router and server
/// 10.0.2.2, DNS 10.0.2.3, domain `example.test`, one hour.
pub fn server_reply(kind: MessageType, xid: u32, mac: [u8; 6], yiaddr: Ipv4Addr) -> Vec<u8> {
    let mut p = vec![0u8; 236];
    p[0] = 2;
    p[1] = 1;
    p[2] = 6;
    p[4..8].copy_from_slice(&xid.to_be_bytes());
    p[16..20].copy_from_slice(&yiaddr.octets());
    p[28..34].copy_from_slice(&mac);
    p.extend_from_slice(&[99, 130, 83, 99, 53, 1, kind as u8]);
    p.extend_from_slice(&[54, 4, 10, 0, 2, 2, 51, 4, 0, 0, 0x0e, 0x10]);
    p.extend_from_slice(&[1, 4, 255, 255, 255, 0, 3, 4, 10, 0, 2, 2]);
    p.extend_from_slice(&[6, 4, 10, 0, 2, 3, 15, 12]);
    p.extend_from_slice(b"example.test");
    p.push(255);
    p
}

impl Transport for FakeDhcp<'_> {
    fn send(&mut self, pkt: &[u8]) -> io::Result<()> {
        // The client's own encoding, read back with the reply decoder's
        // option walk: flip op to BOOTREPLY for it.
        let mut copy = pkt.to_vec();
        copy[0] = 2;
        let req = dhcp::decode(&copy).map_err(io::Error::other)?;
        self.seen.push(req.kind);
        if let Some(calls) = self.calls {
            calls
                .borrow_mut()
                .push(format!("dhcp {} {:?}", self.name, req.kind));
        }
        if self.drop > 0 {
            self.drop -= 1;
            return Ok(());
        }
        let Some(offer) = self.offer else {
            return Ok(());
        };
        let kind = match req.kind {
            MessageType::Discover => MessageType::Offer,
            MessageType::Request if self.naks > 0 => {
                self.naks -= 1;
                MessageType::Nak
            }
            MessageType::Request => MessageType::Ack,
            _ => return Ok(()),
        };
        self.queue
            .push_back(server_reply(kind, req.xid, req.chaddr, offer));
        Ok(())
    }

    fn recv(&mut self, timeout: Duration) -> io::Result<Option<Vec<u8>>> {
        if let Some(p) = self.queue.pop_front() {
            return Ok(Some(p));
        }
        self.clock.set(self.clock.get() + timeout);
        Ok(None)
    }
}
