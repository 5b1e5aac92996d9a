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

mod v1;
mod v2;

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
        Some(1) => v1::v1(&top, &mut cfg),
        Some(2) => v2::v2(&top, &mut cfg),
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

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
