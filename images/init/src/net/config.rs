//! cloud-init `network-config`, versions 1 and 2, parsed into one model.
//!
//! Supported (cloud-init's "Networking Config Version 1" and "Version 2"
//! docs): v1 `physical` entries with `dhcp`/`dhcp4`/`static`/`static6`
//! subnets (address as CIDR or with `netmask`, `gateway`,
//! `dns_nameservers`, `dns_search`, subnet `routes`), top-level
//! `nameserver` and `route` entries; v2 `ethernets` with `match`
//! (`macaddress`, `name`, `*` globs), `dhcp4`, `addresses`, `gateway4`,
//! `gateway6`, `routes` (`to`, `via`) and `nameservers`. Either may be
//! wrapped in a top-level `network:` key.
//!
//! Non-goals: bonds, bridges, VLANs, DHCPv6, renaming (`set-name`), MTU.
//! Every key or entry not understood becomes a warning naming it; only a
//! document that is not YAML, or not a mapping with a known `version`, is
//! an error.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde_json::{Map, Value};

/// An address with its prefix length: `10.0.0.5/24`, `2001:db8::5/64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    /// `ADDR/PREFIX`, or a bare address (a host: /32 or /128).
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (a, p) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = a.parse().map_err(|_| format!("bad address {s:?}"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                // `10.0.0.5/255.255.255.0`
                _ => netmask_prefix(p).ok_or_else(|| format!("bad prefix in {s:?}"))?,
            },
        };
        Ok(Cidr { addr, prefix })
    }

    /// `0.0.0.0/0` or `::/0`.
    pub fn default_for(v6: bool) -> Cidr {
        let addr = if v6 {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        };
        Cidr { addr, prefix: 0 }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Prefix length of a dotted IPv4 netmask; `None` if not contiguous.
pub fn netmask_prefix(mask: &str) -> Option<u8> {
    let m = u32::from(mask.trim().parse::<Ipv4Addr>().ok()?);
    let n = m.leading_ones();
    (m.checked_shl(n).unwrap_or(0) == 0).then_some(n as u8)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Destination; `0.0.0.0/0` / `::/0` for a default route.
    pub to: Cidr,
    pub via: IpAddr,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dns {
    pub nameservers: Vec<IpAddr>,
    pub search: Vec<String>,
}

impl Dns {
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty() && self.search.is_empty()
    }

    /// Append what `other` has that this does not, keeping order.
    pub fn merge(&mut self, other: &Dns) {
        for n in &other.nameservers {
            if !self.nameservers.contains(n) {
                self.nameservers.push(*n);
            }
        }
        for s in &other.search {
            if !self.search.contains(s) {
                self.search.push(s.clone());
            }
        }
    }
}

/// Which links an entry configures: every given criterion must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Match {
    /// Kernel name, `*` globs allowed (v2 `match: {name}`, v1 `name`).
    pub name: Option<String>,
    /// Lower-case `aa:bb:cc:dd:ee:ff`.
    pub mac: Option<String>,
}

impl Match {
    pub fn matches(&self, name: &str, mac: &str) -> bool {
        self.name.as_deref().is_none_or(|p| glob(p, name))
            && self
                .mac
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(mac))
    }
}

/// `*` matches any run of characters; everything else is literal.
fn glob(pattern: &str, s: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == s,
        Some((head, rest)) => {
            let Some(tail) = s.strip_prefix(head) else {
                return false;
            };
            (0..=tail.len())
                .filter(|&i| tail.is_char_boundary(i))
                .any(|i| glob(rest, &tail[i..]))
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interface {
    /// The v2 ID or the v1 `name`: for messages.
    pub id: String,
    pub matches: Match,
    pub dhcp4: bool,
    pub addresses: Vec<Cidr>,
    /// Default gateways and other routes through this interface.
    pub routes: Vec<Route>,
    pub dns: Dns,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkConfig {
    pub interfaces: Vec<Interface>,
    /// Routes not tied to an interface (v1 `type: route`): they go through
    /// whichever configured link reaches the gateway.
    pub routes: Vec<Route>,
    /// Global DNS (v1 `type: nameserver`).
    pub dns: Dns,
    /// Keys and entries skipped, by name.
    pub warnings: Vec<String>,
}

/// Parse a `network-config` document.
pub fn parse(text: &str) -> Result<NetworkConfig, String> {
    let doc: Value =
        serde_saphyr::from_str(text).map_err(|e| format!("network-config: not YAML: {e}"))?;
    let mut top = match doc {
        Value::Object(m) => m,
        Value::Null => return Err("network-config: empty".into()),
        _ => return Err("network-config: not a mapping".into()),
    };
    if let Some(Value::Object(inner)) = top.remove("network") {
        top = inner;
    }
    let mut cfg = NetworkConfig::default();
    match top.get("version").and_then(as_u64) {
        Some(1) => v1(&top, &mut cfg),
        Some(2) => v2(&top, &mut cfg),
        Some(v) => return Err(format!("network-config: version {v} not supported")),
        None => return Err("network-config: no version".into()),
    }
    Ok(cfg)
}

fn as_u64(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// `true`/`false` and YAML 1.1's `yes`/`no`/`on`/`off`.
fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" => Some(true),
            "false" | "no" | "off" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

fn as_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A string or a list of strings (cloud-init accepts both for DNS).
fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Array(a) => a.iter().filter_map(as_string).collect(),
        Value::String(s) => s
            .split([',', ' '])
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
        _ => Vec::new(),
    }
}

/// Records warnings with the path of the entry being read.
struct Ctx<'a> {
    cfg: &'a mut NetworkConfig,
    at: String,
}

impl Ctx<'_> {
    fn warn(&mut self, what: String) {
        self.cfg
            .warnings
            .push(format!("network-config {}: {what}", self.at));
    }

    fn unknown(&mut self, m: &Map<String, Value>, known: &[&str]) {
        for k in m.keys().filter(|k| !known.contains(&k.as_str())) {
            self.warn(format!("unknown key {k}"));
        }
    }

    fn ip(&mut self, key: &str, v: &Value) -> Option<IpAddr> {
        let s = as_string(v)?;
        match s.trim().parse() {
            Ok(ip) => Some(ip),
            Err(_) => {
                self.warn(format!("{key}: bad address {s:?}"));
                None
            }
        }
    }

    fn ips(&mut self, key: &str, v: &Value) -> Vec<IpAddr> {
        strings(v)
            .iter()
            .filter_map(|s| self.ip(key, &Value::String(s.clone())))
            .collect()
    }

    fn cidr(&mut self, key: &str, s: &str) -> Option<Cidr> {
        Cidr::parse(s)
            .map_err(|e| self.warn(format!("{key}: {e}")))
            .ok()
    }
}

fn items(v: Option<&Value>) -> &[Value] {
    v.and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

fn v1(top: &Map<String, Value>, cfg: &mut NetworkConfig) {
    let mut cx = Ctx {
        cfg,
        at: "v1".into(),
    };
    cx.unknown(top, &["version", "config"]);
    for (i, entry) in items(top.get("config")).iter().enumerate() {
        cx.at = format!("config[{i}]");
        let Some(m) = entry.as_object() else {
            cx.warn("not a mapping".into());
            continue;
        };
        match m.get("type").and_then(Value::as_str).unwrap_or("") {
            "physical" => v1_physical(&mut cx, m),
            "nameserver" => {
                cx.unknown(m, &["type", "address", "search", "interface"]);
                let dns = Dns {
                    nameservers: m
                        .get("address")
                        .map(|v| cx.ips("address", v))
                        .unwrap_or_default(),
                    search: m.get("search").map(strings).unwrap_or_default(),
                };
                cx.cfg.dns.merge(&dns);
            }
            "route" => {
                cx.unknown(
                    m,
                    &[
                        "type",
                        "destination",
                        "network",
                        "netmask",
                        "prefix",
                        "gateway",
                        "metric",
                    ],
                );
                if let Some(r) = v1_route(&mut cx, m) {
                    cx.cfg.routes.push(r);
                }
            }
            "loopback" => {}
            other => cx.warn(format!("type {other:?} not supported")),
        }
    }
}

fn v1_physical(cx: &mut Ctx, m: &Map<String, Value>) {
    cx.unknown(m, &["type", "name", "mac_address", "subnets", "mtu"]);
    if m.contains_key("mtu") {
        cx.warn("mtu not supported".into());
    }
    let name = m.get("name").and_then(as_string);
    let mac = m
        .get("mac_address")
        .and_then(as_string)
        .map(|s| s.to_ascii_lowercase());
    let mut ifc = Interface {
        id: name.clone().or_else(|| mac.clone()).unwrap_or_default(),
        // With a MAC the name is what cloud-init would rename the link
        // to; the MAC alone identifies it.
        matches: Match {
            name: if mac.is_some() { None } else { name },
            mac,
        },
        ..Default::default()
    };
    if ifc.matches == Match::default() {
        cx.warn("physical entry with neither name nor mac_address".into());
        return;
    }
    let at = cx.at.clone();
    for (j, s) in items(m.get("subnets")).iter().enumerate() {
        cx.at = format!("{at}.subnets[{j}]");
        let Some(s) = s.as_object() else {
            cx.warn("not a mapping".into());
            continue;
        };
        cx.unknown(
            s,
            &[
                "type",
                "address",
                "netmask",
                "gateway",
                "dns_nameservers",
                "dns_search",
                "routes",
                "control",
            ],
        );
        match s.get("type").and_then(Value::as_str).unwrap_or("") {
            "dhcp" | "dhcp4" => ifc.dhcp4 = true,
            "static" | "static6" => v1_static(cx, s, &mut ifc),
            other => {
                cx.warn(format!("subnet type {other:?} not supported"));
                continue;
            }
        }
        let dns = Dns {
            nameservers: s
                .get("dns_nameservers")
                .map(|v| cx.ips("dns_nameservers", v))
                .unwrap_or_default(),
            search: s.get("dns_search").map(strings).unwrap_or_default(),
        };
        ifc.dns.merge(&dns);
        for r in items(s.get("routes")) {
            if let Some(r) = r.as_object().and_then(|r| v1_route(cx, r)) {
                ifc.routes.push(r);
            }
        }
    }
    cx.cfg.interfaces.push(ifc);
}

fn v1_static(cx: &mut Ctx, s: &Map<String, Value>, ifc: &mut Interface) {
    let Some(a) = s.get("address").and_then(as_string) else {
        cx.warn("static subnet without address".into());
        return;
    };
    let a = match s.get("netmask").and_then(as_string) {
        Some(mask) if !a.contains('/') => format!("{a}/{mask}"),
        _ => a,
    };
    if let Some(c) = cx.cidr("address", &a) {
        ifc.addresses.push(c);
    }
    if let Some(gw) = s.get("gateway").and_then(|v| cx.ip("gateway", v)) {
        ifc.routes.push(Route {
            to: Cidr::default_for(gw.is_ipv6()),
            via: gw,
        });
    }
}

/// `{destination|network, netmask|prefix, gateway}`.
fn v1_route(cx: &mut Ctx, m: &Map<String, Value>) -> Option<Route> {
    let via = m.get("gateway").and_then(|v| cx.ip("gateway", v));
    let Some(via) = via else {
        cx.warn("route without gateway".into());
        return None;
    };
    let dest = m
        .get("destination")
        .or_else(|| m.get("network"))
        .and_then(as_string);
    let to = match dest.as_deref() {
        None | Some("default") => Cidr::default_for(via.is_ipv6()),
        Some(d) => {
            let d = match (
                m.get("netmask").and_then(as_string),
                m.get("prefix").and_then(as_string),
            ) {
                (_, _) if d.contains('/') => d.to_string(),
                (Some(mask), _) => format!("{d}/{mask}"),
                (None, Some(p)) => format!("{d}/{p}"),
                (None, None) => d.to_string(),
            };
            cx.cidr("destination", &d)?
        }
    };
    Some(Route { to, via })
}

fn v2(top: &Map<String, Value>, cfg: &mut NetworkConfig) {
    let mut cx = Ctx {
        cfg,
        at: "v2".into(),
    };
    for k in top.keys() {
        match k.as_str() {
            "version" | "ethernets" => {}
            "renderer" => {}
            other => cx.warn(format!("{other} not supported")),
        }
    }
    let Some(eths) = top.get("ethernets").and_then(Value::as_object) else {
        return;
    };
    for (id, e) in eths {
        cx.at = format!("ethernets.{id}");
        let Some(e) = e.as_object() else {
            cx.warn("not a mapping".into());
            continue;
        };
        if let Some(ifc) = v2_ethernet(&mut cx, id, e) {
            cx.cfg.interfaces.push(ifc);
        }
    }
}

fn v2_ethernet(cx: &mut Ctx, id: &str, e: &Map<String, Value>) -> Option<Interface> {
    cx.unknown(
        e,
        &[
            "match",
            "set-name",
            "dhcp4",
            "dhcp6",
            "addresses",
            "gateway4",
            "gateway6",
            "routes",
            "nameservers",
            "mtu",
        ],
    );
    for k in ["set-name", "mtu"] {
        if e.contains_key(k) {
            cx.warn(format!("{k} not supported"));
        }
    }
    if e.get("dhcp6").and_then(as_bool) == Some(true) {
        cx.warn("dhcp6 not supported".into());
    }
    let matches = match e.get("match").and_then(Value::as_object) {
        Some(m) => {
            cx.unknown(m, &["macaddress", "name", "driver"]);
            if m.contains_key("driver") {
                cx.warn("match.driver not supported: entry skipped".into());
                return None;
            }
            Match {
                name: m.get("name").and_then(as_string),
                mac: m
                    .get("macaddress")
                    .and_then(as_string)
                    .map(|s| s.to_ascii_lowercase()),
            }
        }
        None => Match {
            name: Some(id.to_string()),
            mac: None,
        },
    };
    let mut ifc = Interface {
        id: id.to_string(),
        matches,
        dhcp4: e.get("dhcp4").and_then(as_bool).unwrap_or(false),
        ..Default::default()
    };
    for a in items(e.get("addresses")) {
        // netplan also allows `- 10.0.0.5/24: {lifetime: …}`.
        let s = as_string(a).or_else(|| a.as_object().and_then(|m| m.keys().next().cloned()));
        if let Some(c) = s.and_then(|s| cx.cidr("addresses", &s)) {
            ifc.addresses.push(c);
        }
    }
    for key in ["gateway4", "gateway6"] {
        if let Some(gw) = e.get(key).and_then(|v| cx.ip(key, v)) {
            ifc.routes.push(Route {
                to: Cidr::default_for(gw.is_ipv6()),
                via: gw,
            });
        }
    }
    for r in items(e.get("routes")) {
        let Some(r) = r.as_object() else { continue };
        cx.unknown(r, &["to", "via", "metric", "on-link", "table"]);
        let Some(via) = r.get("via").and_then(|v| cx.ip("routes.via", v)) else {
            cx.warn("route without via".into());
            continue;
        };
        let to = match r.get("to").and_then(as_string).as_deref() {
            None | Some("default") => Some(Cidr::default_for(via.is_ipv6())),
            Some(t) => cx.cidr("routes.to", t),
        };
        if let Some(to) = to {
            ifc.routes.push(Route { to, via });
        }
    }
    if let Some(ns) = e.get("nameservers").and_then(Value::as_object) {
        cx.unknown(ns, &["addresses", "search"]);
        let dns = Dns {
            nameservers: ns
                .get("addresses")
                .map(|v| cx.ips("nameservers", v))
                .unwrap_or_default(),
            search: ns.get("search").map(strings).unwrap_or_default(),
        };
        ifc.dns.merge(&dns);
    }
    Some(ifc)
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
