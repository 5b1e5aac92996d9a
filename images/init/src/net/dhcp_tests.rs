use std::cell::Cell;

use super::*;
use crate::testutil::{FakeDhcp, server_reply};

const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

/// An OFFER as QEMU's user-mode network (slirp) sends it, written out by
/// hand from RFC 2131 figure 1: 10.0.2.15/24, router 10.0.2.2, DNS
/// 10.0.2.3, one day.
fn slirp_offer() -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&[2, 1, 6, 0]); // op, htype, hlen, hops
    p.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]); // xid
    p.extend_from_slice(&[0, 0, 0x80, 0]); // secs, flags (broadcast)
    p.extend_from_slice(&[0, 0, 0, 0]); // ciaddr
    p.extend_from_slice(&[10, 0, 2, 15]); // yiaddr
    p.extend_from_slice(&[10, 0, 2, 2]); // siaddr
    p.extend_from_slice(&[0, 0, 0, 0]); // giaddr
    p.extend_from_slice(&MAC);
    p.extend_from_slice(&[0; 10]); // chaddr padding
    p.extend_from_slice(&[0; 64]); // sname
    p.extend_from_slice(&[0; 128]); // file
    p.extend_from_slice(&[99, 130, 83, 99]);
    p.extend_from_slice(&[53, 1, 2]); // OFFER
    p.extend_from_slice(&[54, 4, 10, 0, 2, 2]);
    p.extend_from_slice(&[1, 4, 255, 255, 255, 0]);
    p.extend_from_slice(&[3, 4, 10, 0, 2, 2]);
    p.extend_from_slice(&[6, 8, 10, 0, 2, 3, 1, 1, 1, 1]);
    p.extend_from_slice(&[0, 0]); // pads
    p.extend_from_slice(&[15, 5, b'l', b'o', b'c', b'a', 0]);
    p.extend_from_slice(&[51, 4, 0, 1, 0x51, 0x80]);
    p.extend_from_slice(&[66, 0]); // empty option, skipped
    p.push(255);
    p.extend_from_slice(&[0; 20]);
    p
}

#[test]
fn decodes_hand_made_offer() {
    let r = decode(&slirp_offer()).unwrap();
    assert_eq!(r.kind, MessageType::Offer);
    assert_eq!(r.xid, 0xdeadbeef);
    assert_eq!(r.chaddr, MAC);
    assert_eq!(r.yiaddr, Ipv4Addr::new(10, 0, 2, 15));
    assert_eq!(r.subnet, Some(Ipv4Addr::new(255, 255, 255, 0)));
    assert_eq!(r.routers, [Ipv4Addr::new(10, 0, 2, 2)]);
    assert_eq!(
        r.dns,
        [Ipv4Addr::new(10, 0, 2, 3), Ipv4Addr::new(1, 1, 1, 1)]
    );
    assert_eq!(r.domain.as_deref(), Some("loca"));
    assert_eq!(r.lease_secs, Some(86400));
    assert_eq!(r.server, Some(Ipv4Addr::new(10, 0, 2, 2)));
}

#[test]
fn decode_errors_name_the_problem() {
    let good = slirp_offer();
    assert!(decode(&good[..100]).unwrap_err().contains("too short"));
    let mut b = good.clone();
    b[0] = 1;
    assert!(decode(&b).unwrap_err().contains("not BOOTREPLY"));
    let mut b = good.clone();
    b[236] = 0;
    assert!(decode(&b).unwrap_err().contains("magic cookie"));
    // An option whose length runs past the end.
    let b = [&good[..240], &[6, 200, 1, 2]].concat();
    assert!(
        decode(&b).unwrap_err().contains("runs past the end"),
        "{:?}",
        decode(&b)
    );
    // No option 53.
    let b = [&good[..240], &[255]].concat();
    assert!(decode(&b).unwrap_err().contains("option 53"));
}

#[test]
fn encodes_discover_and_request() {
    let d = encode(&Request {
        kind: MessageType::Discover,
        xid: 0x01020304,
        mac: MAC,
        secs: 3,
        requested: None,
        server: None,
    });
    assert_eq!(d.len(), 300);
    assert_eq!(&d[0..4], &[1, 1, 6, 0]);
    assert_eq!(&d[4..8], &[1, 2, 3, 4]);
    assert_eq!(&d[8..12], &[0, 3, 0x80, 0]);
    assert_eq!(&d[28..34], &MAC);
    assert_eq!(&d[236..240], &[99, 130, 83, 99]);
    assert_eq!(&d[240..243], &[53, 1, 1]);
    assert_eq!(
        &d[243..252],
        &[61, 7, 1, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56]
    );
    assert_eq!(&d[252..260], &[55, 6, 1, 3, 6, 15, 51, 54]);
    assert_eq!(d[260], 255);
    let r = encode(&Request {
        kind: MessageType::Request,
        xid: 1,
        mac: MAC,
        secs: 0,
        requested: Some(Ipv4Addr::new(10, 0, 2, 15)),
        server: Some(Ipv4Addr::new(10, 0, 2, 2)),
    });
    assert_eq!(&r[240..243], &[53, 1, 3]);
    assert_eq!(&r[252..258], &[50, 4, 10, 0, 2, 15]);
    assert_eq!(&r[258..264], &[54, 4, 10, 0, 2, 2]);
}

fn run_one(
    server: FakeDhcp<'_>,
    clock: &Cell<Duration>,
    timing: Timing,
) -> (Client, Vec<MessageType>) {
    let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    struct Spy<'a> {
        inner: FakeDhcp<'a>,
        seen: std::rc::Rc<std::cell::RefCell<Vec<MessageType>>>,
    }
    impl Transport for Spy<'_> {
        fn send(&mut self, pkt: &[u8]) -> io::Result<()> {
            self.inner.send(pkt)?;
            *self.seen.borrow_mut() = self.inner.seen.clone();
            Ok(())
        }
        fn recv(&mut self, t: Duration) -> io::Result<Option<Vec<u8>>> {
            self.inner.recv(t)
        }
    }
    let spy = Spy {
        inner: server,
        seen: seen.clone(),
    };
    let mut links: Vec<(Client, Box<dyn Transport>)> =
        vec![(Client::new("eth0", MAC, 7, timing), Box::new(spy))];
    drive(&mut links, &|| clock.get());
    let (c, _) = links.remove(0);
    let seen = seen.borrow().clone();
    (c, seen)
}

#[test]
fn discover_offer_request_ack() {
    let clock = Cell::new(Duration::ZERO);
    let server = FakeDhcp::new(&clock, Some(Ipv4Addr::new(10, 0, 2, 15)));
    let (c, seen) = run_one(server, &clock, Timing::new(Duration::from_secs(12)));
    let lease = c.result().unwrap().unwrap().clone();
    assert_eq!(seen, [MessageType::Discover, MessageType::Request]);
    assert_eq!(lease.address, Ipv4Addr::new(10, 0, 2, 15));
    assert_eq!(lease.prefix, 24);
    assert_eq!(lease.routers, [Ipv4Addr::new(10, 0, 2, 2)]);
    assert_eq!(lease.dns, [Ipv4Addr::new(10, 0, 2, 3)]);
    assert_eq!(lease.domain.as_deref(), Some("example.test"));
    assert_eq!(lease.lease_secs, Some(3600));
    assert_eq!(lease.mac, "52:54:00:12:34:56");
    assert_eq!(clock.get(), Duration::ZERO);
}

#[test]
fn lost_packets_are_retransmitted_every_try() {
    let clock = Cell::new(Duration::ZERO);
    let mut server = FakeDhcp::new(&clock, Some(Ipv4Addr::new(10, 0, 2, 15)));
    server.drop = 2;
    let (c, seen) = run_one(server, &clock, Timing::new(Duration::from_secs(12)));
    assert!(c.result().unwrap().is_ok());
    use MessageType::*;
    assert_eq!(seen, [Discover, Discover, Discover, Request]);
    assert_eq!(clock.get(), Duration::from_secs(8));
}

#[test]
fn silence_times_out() {
    let clock = Cell::new(Duration::ZERO);
    let server = FakeDhcp::new(&clock, None);
    let (c, seen) = run_one(server, &clock, Timing::new(Duration::from_secs(10)));
    assert_eq!(
        c.result().unwrap().unwrap_err(),
        "eth0: no DHCPOFFER in 10s"
    );
    // Sends at 0, 4 and 8 s; the last try is cut to the 10 s budget.
    assert_eq!(seen.len(), 3);
    assert_eq!(clock.get(), Duration::from_secs(10));
}

#[test]
fn nak_restarts_and_foreign_replies_are_ignored() {
    let clock = Cell::new(Duration::ZERO);
    let mut server = FakeDhcp::new(&clock, Some(Ipv4Addr::new(10, 0, 2, 15)));
    server.naks = 1;
    // Another client's offer, and garbage, arrive first.
    let mut other = MAC;
    other[5] = 0x57;
    server.queue.push_back(server_reply(
        MessageType::Offer,
        7,
        other,
        Ipv4Addr::new(10, 0, 2, 99),
    ));
    server.queue.push_back(vec![1, 2, 3]);
    let (c, seen) = run_one(server, &clock, Timing::new(Duration::from_secs(12)));
    use MessageType::*;
    assert_eq!(seen, [Discover, Request, Discover, Request]);
    assert_eq!(
        c.result().unwrap().unwrap().address,
        Ipv4Addr::new(10, 0, 2, 15)
    );
}

#[test]
fn macs() {
    assert_eq!(parse_mac("52:54:00:12:34:56"), Some(MAC));
    assert_eq!(parse_mac("52:54:00:12:34"), None);
    assert_eq!(parse_mac("52:54:00:12:34:56:78"), None);
    assert_eq!(parse_mac("zz:54:00:12:34:56"), None);
    assert_eq!(format_mac(&MAC), "52:54:00:12:34:56");
}

#[test]
fn classful_prefix_without_subnet_option() {
    assert_eq!(prefix_of(None, Ipv4Addr::new(10, 1, 2, 3)), 8);
    assert_eq!(prefix_of(None, Ipv4Addr::new(172, 16, 0, 1)), 16);
    assert_eq!(prefix_of(None, Ipv4Addr::new(192, 168, 0, 1)), 24);
    assert_eq!(
        prefix_of(
            Some(Ipv4Addr::new(255, 255, 0, 0)),
            Ipv4Addr::new(192, 168, 0, 1)
        ),
        16
    );
}

#[test]
fn decode_never_panics_on_cut_or_flipped_bytes() {
    let good = slirp_offer();
    for n in 0..good.len() {
        let _ = decode(&good[..n]);
    }
    for i in 236..good.len() {
        for v in [0u8, 1, 0x7f, 0xff] {
            let mut b = good.clone();
            b[i] = v;
            let _ = decode(&b);
        }
    }
}
