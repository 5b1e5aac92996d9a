//! Version 1 ("Networking Config Version 1"): a `config` list of typed
//! entries.

use serde_json::{Map, Value};

use super::*;

pub(super) fn v1(top: &Map<String, Value>, cfg: &mut NetworkConfig) {
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
