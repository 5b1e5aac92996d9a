//! Put a [`NetworkConfig`] or DHCP leases onto the links: addresses,
//! routes, `/etc/resolv.conf`.
//!
//! Nothing here stops the boot: every failure becomes a line in the
//! [`Report`] and the rest is still applied. One console line per
//! configured link says what it got.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::time::Duration;

use super::config::{Cidr, Dns, NetworkConfig, Route};
use super::dhcp::{self, Client, Lease, Timing, Transport};
use super::link::{self, Link};
use crate::sys::Sys;

pub const RESOLV_CONF: &str = "/etc/resolv.conf";
/// DHCP budget per link when a network-config asks for DHCP: three 4 s
/// tries.
pub const DHCP_TIMEOUT: Duration = Duration::from_secs(12);
/// How long a link may take to report carrier after it is set up.
const CARRIER_WAIT: Duration = Duration::from_secs(3);

/// What [`apply`] did, for the console and `/run/config/smelt.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// One line per configured link, as logged.
    pub applied: Vec<String>,
    /// Config parts skipped (the parser's warnings and unmatched entries).
    pub skipped: Vec<String>,
    pub errors: Vec<String>,
    pub leases: Vec<Lease>,
}

/// Apply `cfg`: static addresses and routes, DHCP where asked, DNS.
pub fn apply(sys: &dyn Sys, cfg: &NetworkConfig) -> Report {
    let mut rep = Report {
        skipped: cfg.warnings.clone(),
        ..Default::default()
    };
    let links = link::ethernet_links(sys);
    let mut dns = cfg.dns.clone();
    let mut dhcp_links = Vec::new();
    // Static routes of DHCP links: their gateways are reachable only once
    // the lease's address is on.
    let mut after_lease: Vec<(Link, &[Route])> = Vec::new();
    // Which link each configured address is on, to place global routes.
    let mut on_link: Vec<(Cidr, String)> = Vec::new();
    for ifc in &cfg.interfaces {
        let matched: Vec<&Link> = links
            .iter()
            .filter(|l| ifc.matches.matches(&l.name, &l.mac))
            .collect();
        if matched.is_empty() {
            rep.skipped
                .push(format!("network-config {}: no link matches", ifc.id));
            continue;
        }
        dns.merge(&ifc.dns);
        for l in matched {
            if let Err(e) = link::set_up(sys, &l.name) {
                rep.errors.push(format!("{}: set up: {e}", l.name));
                continue;
            }
            let mut routes = ifc.routes.as_slice();
            if ifc.dhcp4 {
                dhcp_links.push(l.clone());
                after_lease.push((l.clone(), routes));
                routes = &[];
            }
            if ifc.addresses.is_empty() && routes.is_empty() {
                continue;
            }
            let done = configure(sys, l, &ifc.addresses, routes, &mut rep.errors);
            on_link.extend(done.addresses.iter().map(|a| (*a, l.name.clone())));
            if !done.addresses.is_empty() {
                log(sys, &mut rep, l, &done, "static");
            }
        }
    }
    let (leases, errors) = dhcp_on(sys, &dhcp_links, Timing::new(DHCP_TIMEOUT));
    rep.errors.extend(errors);
    for lease in &leases {
        let (line, errs) = configure_lease(sys, lease);
        rep.errors.extend(errs);
        sys.log(&line);
        rep.applied.push(line);
        dns.merge(&lease_dns(lease));
        let addr = Cidr {
            addr: IpAddr::V4(lease.address),
            prefix: lease.prefix,
        };
        on_link.push((addr, lease.ifname.clone()));
    }
    rep.leases = leases;
    for (l, routes) in after_lease {
        configure(sys, &l, &[], routes, &mut rep.errors);
    }
    for r in &cfg.routes {
        let Some((_, name)) = on_link.iter().find(|(a, _)| contains(a, &r.via)) else {
            rep.errors.push(format!(
                "route {} via {}: no link reaches the gateway",
                r.to, r.via
            ));
            continue;
        };
        if let Err(e) = sys.route_add(name, &r.to, Some(r.via)) {
            rep.errors
                .push(format!("{name}: route {} via {}: {e}", r.to, r.via));
        }
    }
    if let Err(e) = write_resolv_conf(sys, &dns) {
        rep.errors.push(e);
    }
    rep
}

/// DHCP on every Ethernet link at once, each lease configured; failures
/// are logged. `timeout` is each link's whole budget.
pub fn dhcp_all(sys: &dyn Sys, timeout: Duration) -> Vec<Lease> {
    let mut links = Vec::new();
    for l in link::ethernet_links(sys) {
        match link::set_up(sys, &l.name) {
            Ok(()) => links.push(l),
            Err(e) => sys.log(&format!("smelt: {}: set up: {e}", l.name)),
        }
    }
    let (leases, errors) = dhcp_on(sys, &links, Timing::new(timeout));
    for e in errors {
        sys.log(&format!("smelt: dhcp: {e}"));
    }
    let mut dns = Dns::default();
    for lease in &leases {
        let (line, errs) = configure_lease(sys, lease);
        sys.log(&line);
        for e in errs {
            sys.log(&format!("smelt: {e}"));
        }
        dns.merge(&lease_dns(lease));
    }
    if let Err(e) = write_resolv_conf(sys, &dns) {
        sys.log(&format!("smelt: {e}"));
    }
    leases
}

/// Run DHCP on `links` (already up), interleaved: leases and errors.
fn dhcp_on(sys: &dyn Sys, links: &[Link], timing: Timing) -> (Vec<Lease>, Vec<String>) {
    let mut errors = Vec::new();
    let mut clients: Vec<(Client, Box<dyn Transport + '_>)> = Vec::new();
    for l in links {
        let Some(mac) = dhcp::parse_mac(&l.mac) else {
            errors.push(format!("{}: bad MAC {:?}", l.name, l.mac));
            continue;
        };
        // Random per boot (std seeds RandomState from the OS), so two
        // machines booting together do not take each other's replies.
        let xid = RandomState::new().hash_one((&l.name, mac)) as u32;
        link::wait_carrier(sys, &l.name, CARRIER_WAIT);
        match sys.dhcp_transport(&l.name) {
            Ok(t) => clients.push((Client::new(&l.name, mac, xid, timing), t)),
            Err(e) => errors.push(format!("{}: dhcp socket: {e}", l.name)),
        }
    }
    dhcp::drive(&mut clients, &|| sys.now());
    let mut leases = Vec::new();
    for (c, _) in &clients {
        match c.result() {
            Some(Ok(l)) => leases.push(l.clone()),
            Some(Err(e)) => errors.push(e.to_string()),
            None => errors.push(format!("{}: dhcp did not finish", c.ifname())),
        }
    }
    (leases, errors)
}

/// Address and default route from a lease: the console line and errors.
pub fn configure_lease(sys: &dyn Sys, lease: &Lease) -> (String, Vec<String>) {
    let l = Link {
        name: lease.ifname.clone(),
        mac: lease.mac.clone(),
    };
    let addr = Cidr {
        addr: IpAddr::V4(lease.address),
        prefix: lease.prefix,
    };
    // The first router is the default gateway (RFC 2132 §3.5: in order
    // of preference).
    let routes: Vec<Route> = lease
        .routers
        .first()
        .map(|gw| Route {
            to: Cidr::default_for(false),
            via: IpAddr::V4(*gw),
        })
        .into_iter()
        .collect();
    let mut errors = Vec::new();
    let done = configure(sys, &l, &[addr], &routes, &mut errors);
    (line(&l, &done, "dhcp"), errors)
}

/// What [`configure`] managed to set.
struct Done {
    addresses: Vec<Cidr>,
    gateways: Vec<IpAddr>,
}

fn configure(
    sys: &dyn Sys,
    l: &Link,
    addresses: &[Cidr],
    routes: &[Route],
    errors: &mut Vec<String>,
) -> Done {
    let mut done = Done {
        addresses: Vec::new(),
        gateways: Vec::new(),
    };
    for a in addresses {
        match sys.addr_add(&l.name, a) {
            Ok(()) => done.addresses.push(*a),
            Err(e) => errors.push(format!("{}: address {a}: {e}", l.name)),
        }
    }
    for r in routes {
        match sys.route_add(&l.name, &r.to, Some(r.via)) {
            Ok(()) if r.to.prefix == 0 => done.gateways.push(r.via),
            Ok(()) => {}
            // A default route another link already set keeps its place.
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => errors.push(format!("{}: route {} via {}: {e}", l.name, r.to, r.via)),
        }
    }
    done
}

/// `smelt: eth0 52:54:00:12:34:56 10.0.2.15/24 via 10.0.2.2 (dhcp)`
fn line(l: &Link, done: &Done, how: &str) -> String {
    let addrs: Vec<String> = done.addresses.iter().map(|a| a.to_string()).collect();
    let mut s = format!("smelt: {} {} {}", l.name, l.mac, addrs.join(" "));
    if !done.gateways.is_empty() {
        let gws: Vec<String> = done.gateways.iter().map(|g| g.to_string()).collect();
        s += &format!(" via {}", gws.join(" "));
    }
    s + &format!(" ({how})")
}

fn log(sys: &dyn Sys, rep: &mut Report, l: &Link, done: &Done, how: &str) {
    let s = line(l, done, how);
    sys.log(&s);
    rep.applied.push(s);
}

fn lease_dns(lease: &Lease) -> Dns {
    Dns {
        nameservers: lease.dns.iter().map(|d| IpAddr::V4(*d)).collect(),
        search: lease.domain.iter().cloned().collect(),
    }
}

/// Whether `ip` is inside `net`'s prefix (same family only).
fn contains(net: &Cidr, ip: &IpAddr) -> bool {
    fn bits(ip: &IpAddr) -> u128 {
        match ip {
            IpAddr::V4(a) => u32::from(*a) as u128,
            IpAddr::V6(a) => u128::from(*a),
        }
    }
    let width = if net.addr.is_ipv4() { 32 } else { 128 };
    if net.addr.is_ipv4() != ip.is_ipv4() {
        return false;
    }
    let shift = width - net.prefix as u32;
    bits(&net.addr).checked_shr(shift).unwrap_or(0) == bits(ip).checked_shr(shift).unwrap_or(0)
}

/// `resolv.conf(5)`; `None` when there is nothing to say.
pub fn resolv_conf(dns: &Dns) -> Option<String> {
    if dns.is_empty() {
        return None;
    }
    let mut s = String::from("# written by smelt init from network-config or DHCP\n");
    for n in &dns.nameservers {
        s += &format!("nameserver {n}\n");
    }
    if !dns.search.is_empty() {
        s += &format!("search {}\n", dns.search.join(" "));
    }
    Some(s)
}

fn write_resolv_conf(sys: &dyn Sys, dns: &Dns) -> Result<(), String> {
    let Some(text) = resolv_conf(dns) else {
        return Ok(());
    };
    sys.write_file(RESOLV_CONF, text.as_bytes())
        .map_err(|e| format!("writing {RESOLV_CONF}: {e}"))
}

#[cfg(test)]
#[path = "apply_tests.rs"]
mod tests;
