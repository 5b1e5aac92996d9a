//! A DHCPv4 client: packets (RFC 2131 §2, options RFC 2132) as pure
//! functions, and a sans-I/O state machine ([`Client`]) driven over a
//! [`Transport`] by [`drive`].
//!
//! The client sets the broadcast flag (RFC 2131 §4.1) so servers broadcast
//! their replies: a plain UDP socket bound to port 68 of an interface with
//! no address yet then receives them, no raw socket needed.
//!
//! Non-goals: renewing or releasing the lease (the init configures the
//! address once; the kernel keeps it after the lease time), INIT-REBOOT,
//! option overload (52), relays, DHCPv6.

use std::io;
use std::net::Ipv4Addr;
use std::time::Duration;

/// BOOTP op codes.
const BOOTREQUEST: u8 = 1;
const BOOTREPLY: u8 = 2;
/// RFC 2131 §3: 99.130.83.99 after the fixed header.
const MAGIC: [u8; 4] = [99, 130, 83, 99];
// Fixed header (RFC 2131 §2, figure 1): byte offsets.
const OFF_OP: usize = 0;
const OFF_HTYPE: usize = 1;
const OFF_HLEN: usize = 2;
/// Transaction id, u32 big-endian.
const OFF_XID: usize = 4;
/// Seconds since the client began, u16.
const OFF_SECS: usize = 8;
const OFF_FLAGS: usize = 10;
/// "Your" address: the one offered.
const OFF_YIADDR: usize = 16;
/// Client hardware address, 16 bytes of which Ethernet uses 6.
const OFF_CHADDR: usize = 28;
/// Bytes before the options: op .. file.
const HEADER_LEN: usize = 236;
/// `htype` for Ethernet (RFC 1700 "Hardware Type").
const HTYPE_ETHER: u8 = 1;
/// Smallest BOOTP message (RFC 1542 §2.1); some servers drop shorter ones.
const MIN_LEN: usize = 300;
const FLAG_BROADCAST: u16 = 0x8000;

// RFC 2132 option codes.
const OPT_PAD: u8 = 0;
const OPT_SUBNET: u8 = 1;
const OPT_ROUTER: u8 = 3;
const OPT_DNS: u8 = 6;
const OPT_DOMAIN: u8 = 15;
const OPT_REQUESTED_IP: u8 = 50;
const OPT_LEASE_TIME: u8 = 51;
const OPT_MSG_TYPE: u8 = 53;
const OPT_SERVER_ID: u8 = 54;
const OPT_PARAMS: u8 = 55;
const OPT_CLIENT_ID: u8 = 61;
const OPT_END: u8 = 255;

/// Option 53 values (RFC 2132 §9.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    Discover = 1,
    Offer = 2,
    Request = 3,
    Decline = 4,
    Ack = 5,
    Nak = 6,
    Release = 7,
    Inform = 8,
}

impl MessageType {
    fn from_u8(b: u8) -> Option<MessageType> {
        use MessageType::*;
        [Discover, Offer, Request, Decline, Ack, Nak, Release, Inform]
            .into_iter()
            .find(|t| *t as u8 == b)
    }
}

/// A client message to encode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub kind: MessageType,
    pub xid: u32,
    pub mac: [u8; 6],
    /// Seconds since the client began (RFC 2131 `secs`).
    pub secs: u16,
    /// Option 50 (REQUEST in SELECTING state).
    pub requested: Option<Ipv4Addr>,
    /// Option 54 (REQUEST in SELECTING state).
    pub server: Option<Ipv4Addr>,
}

/// A BOOTREQUEST with the broadcast flag, client id `01:MAC`, and a
/// parameter request for subnet, router, DNS, domain, lease time, server.
pub fn encode(r: &Request) -> Vec<u8> {
    let mut p = vec![0u8; HEADER_LEN];
    p[OFF_OP] = BOOTREQUEST;
    p[OFF_HTYPE] = HTYPE_ETHER;
    p[OFF_HLEN] = 6;
    p[OFF_XID..OFF_XID + 4].copy_from_slice(&r.xid.to_be_bytes());
    p[OFF_SECS..OFF_SECS + 2].copy_from_slice(&r.secs.to_be_bytes());
    p[OFF_FLAGS..OFF_FLAGS + 2].copy_from_slice(&FLAG_BROADCAST.to_be_bytes());
    p[OFF_CHADDR..OFF_CHADDR + 6].copy_from_slice(&r.mac);
    p.extend_from_slice(&MAGIC);
    p.extend_from_slice(&[OPT_MSG_TYPE, 1, r.kind as u8]);
    p.extend_from_slice(&[OPT_CLIENT_ID, 7, 1]);
    p.extend_from_slice(&r.mac);
    if let Some(ip) = r.requested {
        p.extend_from_slice(&[OPT_REQUESTED_IP, 4]);
        p.extend_from_slice(&ip.octets());
    }
    if let Some(ip) = r.server {
        p.extend_from_slice(&[OPT_SERVER_ID, 4]);
        p.extend_from_slice(&ip.octets());
    }
    let params = [
        OPT_SUBNET,
        OPT_ROUTER,
        OPT_DNS,
        OPT_DOMAIN,
        OPT_LEASE_TIME,
        OPT_SERVER_ID,
    ];
    p.extend_from_slice(&[OPT_PARAMS, params.len() as u8]);
    p.extend_from_slice(&params);
    p.push(OPT_END);
    if p.len() < MIN_LEN {
        p.resize(MIN_LEN, OPT_PAD);
    }
    p
}

/// A server message, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub kind: MessageType,
    pub xid: u32,
    pub chaddr: [u8; 6],
    /// `yiaddr`: the address offered or acknowledged.
    pub yiaddr: Ipv4Addr,
    pub subnet: Option<Ipv4Addr>,
    pub routers: Vec<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub domain: Option<String>,
    pub lease_secs: Option<u32>,
    pub server: Option<Ipv4Addr>,
}

fn ip_at(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

fn ips(v: &[u8]) -> Vec<Ipv4Addr> {
    v.chunks_exact(4).map(|c| ip_at(c, 0)).collect()
}

/// Decode a BOOTREPLY; errors say what is wrong and at which offset.
pub fn decode(b: &[u8]) -> Result<Reply, String> {
    if b.len() < HEADER_LEN + MAGIC.len() {
        return Err(format!("dhcp: {} bytes, too short", b.len()));
    }
    if b[OFF_OP] != BOOTREPLY {
        return Err(format!("dhcp: op {} is not BOOTREPLY", b[OFF_OP]));
    }
    if b[HEADER_LEN..HEADER_LEN + 4] != MAGIC {
        return Err(format!("dhcp: no magic cookie at {HEADER_LEN}"));
    }
    let mut kind = None;
    let mut r = Reply {
        kind: MessageType::Offer,
        xid: u32::from_be_bytes([b[OFF_XID], b[OFF_XID + 1], b[OFF_XID + 2], b[OFF_XID + 3]]),
        chaddr: {
            let mut m = [0u8; 6];
            m.copy_from_slice(&b[OFF_CHADDR..OFF_CHADDR + 6]);
            m
        },
        yiaddr: ip_at(b, OFF_YIADDR),
        subnet: None,
        routers: Vec::new(),
        dns: Vec::new(),
        domain: None,
        lease_secs: None,
        server: None,
    };
    let mut i = HEADER_LEN + 4;
    while i < b.len() {
        let code = b[i];
        match code {
            OPT_PAD => {
                i += 1;
                continue;
            }
            OPT_END => break,
            _ => {}
        }
        let len = *b
            .get(i + 1)
            .ok_or_else(|| format!("dhcp: option {code} at {i} has no length"))?
            as usize;
        let v = b
            .get(i + 2..i + 2 + len)
            .ok_or_else(|| format!("dhcp: option {code} at {i} runs past the end"))?;
        match (code, len) {
            (OPT_MSG_TYPE, 1) => kind = MessageType::from_u8(v[0]),
            (OPT_SUBNET, 4) => r.subnet = Some(ip_at(v, 0)),
            (OPT_ROUTER, _) => r.routers = ips(v),
            (OPT_DNS, _) => r.dns = ips(v),
            (OPT_DOMAIN, _) => {
                let s = String::from_utf8_lossy(v);
                let s = s.trim_end_matches('\0').trim();
                r.domain = (!s.is_empty()).then(|| s.to_string());
            }
            (OPT_LEASE_TIME, 4) => {
                r.lease_secs = Some(u32::from_be_bytes([v[0], v[1], v[2], v[3]]))
            }
            (OPT_SERVER_ID, 4) => r.server = Some(ip_at(v, 0)),
            _ => {}
        }
        i += 2 + len;
    }
    r.kind = kind.ok_or("dhcp: no message type (option 53)")?;
    Ok(r)
}

/// What a DHCP server gave one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub ifname: String,
    /// `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub routers: Vec<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub domain: Option<String>,
    pub lease_secs: Option<u32>,
    pub server: Option<Ipv4Addr>,
}

/// Prefix from option 1, else the address's historic class (RFC 2131
/// leaves the default to the client; classful is what dhclient does).
fn prefix_of(subnet: Option<Ipv4Addr>, addr: Ipv4Addr) -> u8 {
    if let Some(p) = subnet.and_then(|m| crate::net::config::netmask_prefix(&m.to_string())) {
        return p;
    }
    match addr.octets()[0] {
        0..=127 => 8,
        128..=191 => 16,
        _ => 24,
    }
}

/// Retransmission policy: `per_try` between sends, give up after `total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub per_try: Duration,
    pub total: Duration,
}

impl Timing {
    /// RFC 2131 §4.1 suggests 4 s before the first retransmission.
    pub fn new(total: Duration) -> Timing {
        Timing {
            per_try: total.min(Duration::from_secs(4)),
            total,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Init,
    /// DISCOVER sent, waiting for an OFFER.
    Selecting,
    /// REQUEST sent for this offer, waiting for ACK/NAK.
    Requesting(Reply),
    Bound(Lease),
    Failed(String),
}

/// One interface's DHCP exchange, without I/O: feed it packets and the
/// time, send what it returns.
#[derive(Debug)]
pub struct Client {
    ifname: String,
    mac: [u8; 6],
    xid: u32,
    timing: Timing,
    state: State,
    started: Duration,
    deadline: Duration,
    /// The message to retransmit on a timeout.
    last: Option<Request>,
}

pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.trim().split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

impl Client {
    pub fn new(ifname: &str, mac: [u8; 6], xid: u32, timing: Timing) -> Client {
        Client {
            ifname: ifname.to_string(),
            mac,
            xid,
            timing,
            state: State::Init,
            started: Duration::ZERO,
            deadline: Duration::ZERO,
            last: None,
        }
    }

    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// When [`Client::on_timeout`] should be called next.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// `Some` once bound or failed.
    pub fn result(&self) -> Option<Result<&Lease, &str>> {
        match &self.state {
            State::Bound(l) => Some(Ok(l)),
            State::Failed(e) => Some(Err(e)),
            _ => None,
        }
    }

    /// Begin: the DISCOVER to send.
    pub fn start(&mut self, now: Duration) -> Vec<u8> {
        self.started = now;
        self.discover(now)
    }

    fn discover(&mut self, now: Duration) -> Vec<u8> {
        self.state = State::Selecting;
        self.send(
            now,
            Request {
                kind: MessageType::Discover,
                xid: self.xid,
                mac: self.mac,
                secs: 0,
                requested: None,
                server: None,
            },
        )
    }

    fn send(&mut self, now: Duration, mut r: Request) -> Vec<u8> {
        r.secs = now
            .saturating_sub(self.started)
            .as_secs()
            .min(u16::MAX as u64) as u16;
        self.deadline = (now + self.timing.per_try).min(self.started + self.timing.total);
        let p = encode(&r);
        self.last = Some(r);
        p
    }

    /// A datagram arrived: maybe a packet to send back. Replies for
    /// another client (xid or hardware address) are ignored.
    pub fn on_packet(&mut self, pkt: &[u8], now: Duration) -> Option<Vec<u8>> {
        let r = decode(pkt).ok()?;
        if r.xid != self.xid || r.chaddr != self.mac {
            return None;
        }
        match (&self.state, r.kind) {
            (State::Selecting, MessageType::Offer) => {
                let req = Request {
                    kind: MessageType::Request,
                    xid: self.xid,
                    mac: self.mac,
                    secs: 0,
                    requested: Some(r.yiaddr),
                    server: r.server,
                };
                self.state = State::Requesting(r);
                Some(self.send(now, req))
            }
            (State::Requesting(offer), MessageType::Ack) if offer.server == r.server => {
                self.state = State::Bound(self.lease(&r));
                None
            }
            (State::Requesting(offer), MessageType::Nak) if offer.server == r.server => {
                Some(self.discover(now))
            }
            _ => None,
        }
    }

    fn lease(&self, r: &Reply) -> Lease {
        Lease {
            ifname: self.ifname.clone(),
            mac: format_mac(&self.mac),
            address: r.yiaddr,
            prefix: prefix_of(r.subnet, r.yiaddr),
            routers: r.routers.clone(),
            dns: r.dns.clone(),
            domain: r.domain.clone(),
            lease_secs: r.lease_secs,
            server: r.server,
        }
    }

    /// The deadline passed: retransmit, or give up after `timing.total`.
    pub fn on_timeout(&mut self, now: Duration) -> Option<Vec<u8>> {
        if self.result().is_some() || now < self.deadline {
            return None;
        }
        if now >= self.started + self.timing.total {
            let what = match self.state {
                State::Requesting(_) => "DHCPACK",
                _ => "DHCPOFFER",
            };
            self.state = State::Failed(format!(
                "{}: no {what} in {}s",
                self.ifname,
                self.timing.total.as_secs()
            ));
            return None;
        }
        let r = self.last.clone()?;
        Some(self.send(now, r))
    }
}

/// How DHCP packets reach one interface.
pub trait Transport {
    /// Broadcast `pkt` to the servers (255.255.255.255:67).
    fn send(&mut self, pkt: &[u8]) -> io::Result<()>;
    /// One datagram within `timeout`, or `None`.
    fn recv(&mut self, timeout: Duration) -> io::Result<Option<Vec<u8>>>;
}

/// Largest reply read: an Ethernet MTU's worth (RFC 2131 allows 576+).
const RECV_MAX: usize = 1500;

/// The real transport: a UDP socket bound to 0.0.0.0:68 on one device.
impl Transport for std::net::UdpSocket {
    fn send(&mut self, pkt: &[u8]) -> io::Result<()> {
        self.send_to(pkt, (Ipv4Addr::BROADCAST, 67)).map(|_| ())
    }

    fn recv(&mut self, timeout: Duration) -> io::Result<Option<Vec<u8>>> {
        self.set_read_timeout(Some(timeout.max(Duration::from_millis(1))))?;
        let mut buf = vec![0u8; RECV_MAX];
        match self.recv_from(&mut buf) {
            Ok((n, _)) => {
                buf.truncate(n);
                Ok(Some(buf))
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

/// While several clients run, each waits at most this long in turn.
const SLICE: Duration = Duration::from_millis(50);

/// Run every client to a result, interleaved; `now` is the clock. A send
/// or receive error fails that client only.
pub fn drive(links: &mut [(Client, Box<dyn Transport + '_>)], now: &dyn Fn() -> Duration) {
    for (c, t) in links.iter_mut() {
        let p = c.start(now());
        if let Err(e) = t.send(&p) {
            c.state = State::Failed(format!("{}: send: {e}", c.ifname));
        }
    }
    loop {
        let active = links.iter().filter(|(c, _)| c.result().is_none()).count();
        if active == 0 {
            return;
        }
        for (c, t) in links.iter_mut().filter(|(c, _)| c.result().is_none()) {
            let mut wait = c.deadline().saturating_sub(now());
            if active > 1 {
                wait = wait.min(SLICE);
            }
            let out = match t.recv(wait) {
                // A stream of foreign replies must not hold off the timeout.
                Ok(Some(pkt)) => c.on_packet(&pkt, now()).or_else(|| c.on_timeout(now())),
                Ok(None) => c.on_timeout(now()),
                Err(e) => {
                    c.state = State::Failed(format!("{}: receive: {e}", c.ifname));
                    None
                }
            };
            if let Some(p) = out
                && let Err(e) = t.send(&p)
            {
                c.state = State::Failed(format!("{}: send: {e}", c.ifname));
            }
        }
    }
}

#[cfg(test)]
#[path = "dhcp_tests.rs"]
mod tests;
