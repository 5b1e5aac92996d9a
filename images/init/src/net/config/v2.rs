//! Version 2 (netplan's format): `ethernets` keyed by ID.

use serde_json::{Map, Value};

use super::*;

pub(super) fn v2(top: &Map<String, Value>, cfg: &mut NetworkConfig) {
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
