//! rtnetlink requests as bytes (rtnetlink(7), include/uapi/linux/
//! {netlink,rtnetlink,if_addr}.h): RTM_NEWADDR, RTM_DELADDR and
//! RTM_NEWROUTE, and the
//! kernel's NLMSG_ERROR acknowledgement. `sys.rs` sends them; building
//! them here keeps that module to the syscalls and makes the layout
//! testable. All integers are host byte order (x86_64: little-endian),
//! addresses network order.

use std::io;
use std::net::IpAddr;

use super::config::Cidr;

/// `struct nlmsghdr`: len u32, type u16, flags u16, seq u32, pid u32.
const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_NEWROUTE: u16 = 24;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;

const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;

const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RT_TABLE_MAIN: u8 = 254;
/// `RTPROT_BOOT`: "route installed during boot".
const RTPROT_BOOT: u8 = 3;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RT_SCOPE_LINK: u8 = 253;
const RTN_UNICAST: u8 = 1;

fn family(ip: &IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => libc::AF_INET as u8,
        IpAddr::V6(_) => libc::AF_INET6 as u8,
    }
}

fn octets(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// `struct rtattr` (len u16, type u16) + data, padded to 4 bytes.
fn attr(msg: &mut Vec<u8>, kind: u16, data: &[u8]) {
    let len = 4 + data.len();
    msg.extend_from_slice(&(len as u16).to_ne_bytes());
    msg.extend_from_slice(&kind.to_ne_bytes());
    msg.extend_from_slice(data);
    msg.resize(msg.len().next_multiple_of(4), 0);
}

fn header(kind: u16, flags: u16, seq: u32) -> Vec<u8> {
    let mut m = vec![0u8; NLMSG_HDRLEN];
    m[4..6].copy_from_slice(&kind.to_ne_bytes());
    m[6..8].copy_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    m[8..12].copy_from_slice(&seq.to_ne_bytes());
    m
}

fn finish(mut m: Vec<u8>) -> Vec<u8> {
    let len = m.len() as u32;
    m[0..4].copy_from_slice(&len.to_ne_bytes());
    m
}

/// RTM_NEWADDR: `addr` on link `ifindex` (replacing the same address).
pub fn new_addr(seq: u32, ifindex: u32, addr: &Cidr) -> Vec<u8> {
    addr_msg(
        RTM_NEWADDR,
        NLM_F_CREATE | NLM_F_REPLACE,
        seq,
        ifindex,
        addr,
    )
}

/// RTM_DELADDR: remove `addr` from link `ifindex` (EADDRNOTAVAIL when it is
/// not there); the kernel drops the routes that used it.
pub fn del_addr(seq: u32, ifindex: u32, addr: &Cidr) -> Vec<u8> {
    addr_msg(RTM_DELADDR, 0, seq, ifindex, addr)
}

fn addr_msg(kind: u16, flags: u16, seq: u32, ifindex: u32, addr: &Cidr) -> Vec<u8> {
    let mut m = header(kind, flags, seq);
    // struct ifaddrmsg: family, prefixlen, flags, scope, index u32.
    m.extend_from_slice(&[family(&addr.addr), addr.prefix, 0, RT_SCOPE_UNIVERSE]);
    m.extend_from_slice(&ifindex.to_ne_bytes());
    let a = octets(&addr.addr);
    attr(&mut m, IFA_LOCAL, &a);
    attr(&mut m, IFA_ADDRESS, &a);
    if let IpAddr::V4(v4) = addr.addr
        && addr.prefix < 31
    {
        let host = u32::MAX.checked_shr(addr.prefix as u32).unwrap_or(0);
        attr(&mut m, IFA_BROADCAST, &(u32::from(v4) | host).to_be_bytes());
    }
    finish(m)
}

/// RTM_NEWROUTE in the main table: `to` via `via` (or on-link without a
/// gateway) out of `ifindex`; fails with EEXIST if the route is there.
pub fn new_route(seq: u32, ifindex: u32, to: &Cidr, via: Option<&IpAddr>) -> Vec<u8> {
    let mut m = header(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, seq);
    let scope = if via.is_some() {
        RT_SCOPE_UNIVERSE
    } else {
        RT_SCOPE_LINK
    };
    // struct rtmsg: family, dst_len, src_len, tos, table, protocol,
    // scope, type, flags u32.
    m.extend_from_slice(&[
        family(&to.addr),
        to.prefix,
        0,
        0,
        RT_TABLE_MAIN,
        RTPROT_BOOT,
        scope,
        RTN_UNICAST,
    ]);
    m.extend_from_slice(&0u32.to_ne_bytes());
    if to.prefix > 0 {
        attr(&mut m, RTA_DST, &octets(&to.addr));
    }
    if let Some(gw) = via {
        attr(&mut m, RTA_GATEWAY, &octets(gw));
    }
    attr(&mut m, RTA_OIF, &ifindex.to_ne_bytes());
    finish(m)
}

/// The kernel's answer to request `seq`: `Ok(true)` for the ACK (an
/// NLMSG_ERROR with error 0), an error for a negative errno, `Ok(false)`
/// if `buf` holds no answer to `seq`.
pub fn parse_ack(buf: &[u8], seq: u32) -> io::Result<bool> {
    let mut at = 0;
    while at + NLMSG_HDRLEN <= buf.len() {
        let h = &buf[at..];
        let len = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]) as usize;
        if len < NLMSG_HDRLEN || at + len > buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "netlink: truncated message",
            ));
        }
        let kind = u16::from_ne_bytes([h[4], h[5]]);
        let mseq = u32::from_ne_bytes([h[8], h[9], h[10], h[11]]);
        if kind == NLMSG_ERROR && mseq == seq && len >= NLMSG_HDRLEN + 4 {
            let e = i32::from_ne_bytes([h[16], h[17], h[18], h[19]]);
            return if e == 0 {
                Ok(true)
            } else {
                Err(io::Error::from_raw_os_error(-e))
            };
        }
        at += len.next_multiple_of(4);
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addr_v4_layout() {
        let m = new_addr(7, 3, &Cidr::parse("10.0.2.15/24").unwrap());
        // header 16 + ifaddrmsg 8 + 3 attrs of 8.
        assert_eq!(m.len(), 48);
        assert_eq!(&m[0..4], &48u32.to_ne_bytes());
        assert_eq!(&m[4..6], &RTM_NEWADDR.to_ne_bytes());
        assert_eq!(&m[6..8], &0x505u16.to_ne_bytes());
        assert_eq!(&m[8..12], &7u32.to_ne_bytes());
        assert_eq!(&m[16..20], &[2, 24, 0, 0]);
        assert_eq!(&m[20..24], &3u32.to_ne_bytes());
        assert_eq!(&m[28..32], &[10, 0, 2, 15]);
        assert_eq!(&m[44..48], &[10, 0, 2, 255]);
    }

    #[test]
    fn del_addr_is_new_addr_without_create() {
        let a = Cidr::parse("10.0.2.15/24").unwrap();
        let (new, del) = (new_addr(7, 3, &a), del_addr(7, 3, &a));
        assert_eq!(&del[4..6], &RTM_DELADDR.to_ne_bytes());
        assert_eq!(&del[6..8], &0x5u16.to_ne_bytes(), "request + ack only");
        assert_eq!(new[..4], del[..4]);
        assert_eq!(new[8..], del[8..]);
    }

    #[test]
    fn addr_v6_has_no_broadcast() {
        let m = new_addr(1, 2, &Cidr::parse("2001:db8::5/64").unwrap());
        assert_eq!(m.len(), 16 + 8 + 2 * 20);
        assert_eq!(m[16], libc::AF_INET6 as u8);
    }

    #[test]
    fn default_route_has_no_dst() {
        let gw: IpAddr = "10.0.2.2".parse().unwrap();
        let m = new_route(1, 2, &Cidr::parse("0.0.0.0/0").unwrap(), Some(&gw));
        // header + rtmsg 12 + gateway 8 + oif 8.
        assert_eq!(m.len(), 16 + 12 + 8 + 8);
        assert_eq!(&m[16..24], &[2, 0, 0, 0, 254, 3, 0, 1]);
        assert_eq!(&m[28..32], &[8, 0, 5, 0]);
        let m = new_route(1, 2, &Cidr::parse("10.9.0.0/16").unwrap(), None);
        assert_eq!(m[22], RT_SCOPE_LINK);
        assert_eq!(&m[32..34], &[10, 9]);
    }

    #[test]
    fn acks_and_errors() {
        let mut ack = vec![0u8; 36];
        ack[0..4].copy_from_slice(&36u32.to_ne_bytes());
        ack[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        ack[8..12].copy_from_slice(&9u32.to_ne_bytes());
        assert!(parse_ack(&ack, 9).unwrap());
        assert!(!parse_ack(&ack, 8).unwrap());
        ack[16..20].copy_from_slice(&(-libc::EEXIST).to_ne_bytes());
        assert_eq!(
            parse_ack(&ack, 9).unwrap_err().raw_os_error(),
            Some(libc::EEXIST)
        );
        assert!(parse_ack(&ack[..20], 9).is_err());
    }
}
