//! Network links as sysfs shows them: `/sys/class/net/NAME/{type,address,carrier}`.
//!
//! Only Ethernet-like links (ARPHRD_ETHER, `type` 1: NICs, virtio-net,
//! veth, bridges) are listed; `lo` is brought up by `early`.

use std::io;
use std::time::Duration;

use crate::sys::Sys;

pub const SYS_CLASS_NET: &str = "/sys/class/net";
/// `ARPHRD_ETHER` (include/uapi/linux/if_arp.h).
const ARPHRD_ETHER: &str = "1";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub name: String,
    /// Lower-case `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
}

fn attr(sys: &dyn Sys, name: &str, what: &str) -> Option<String> {
    let b = sys
        .read_file(&format!("{SYS_CLASS_NET}/{name}/{what}"))
        .ok()?;
    Some(String::from_utf8_lossy(&b).trim().to_string())
}

/// Every Ethernet link but `lo`, sorted by name.
pub fn ethernet_links(sys: &dyn Sys) -> Vec<Link> {
    let names = sys.list_dir(SYS_CLASS_NET).unwrap_or_default();
    names
        .into_iter()
        .filter(|n| n != "lo")
        .filter(|n| attr(sys, n, "type").as_deref() == Some(ARPHRD_ETHER))
        .filter_map(|name| {
            let mac = attr(sys, &name, "address")?.to_ascii_lowercase();
            Some(Link { name, mac })
        })
        .collect()
}

pub fn set_up(sys: &dyn Sys, name: &str) -> io::Result<()> {
    sys.link_set_up(name, true)
}

pub fn set_down(sys: &dyn Sys, name: &str) -> io::Result<()> {
    sys.link_set_up(name, false)
}

/// Poll `carrier` until it reads 1 or `max` passes; whether it did. (Sent
/// before the carrier is up, a DISCOVER is lost and costs a retry.)
pub fn wait_carrier(sys: &dyn Sys, name: &str, max: Duration) -> bool {
    let start = sys.now();
    loop {
        if attr(sys, name, "carrier").as_deref() == Some("1") {
            return true;
        }
        if sys.now().saturating_sub(start) >= max {
            return false;
        }
        sys.sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::FakeSys;

    #[test]
    fn lists_ethernet_only() {
        let sys = FakeSys::new()
            .file("/sys/class/net/lo/type", "772\n")
            .file("/sys/class/net/lo/address", "00:00:00:00:00:00\n")
            .file("/sys/class/net/eth0/type", "1\n")
            .file("/sys/class/net/eth0/address", "52:54:00:AB:CD:EF\n")
            .file("/sys/class/net/sit0/type", "776\n")
            .file("/sys/class/net/sit0/address", "00:00:00:00\n")
            .file("/sys/class/net/noaddr/type", "1\n");
        assert_eq!(
            ethernet_links(&sys),
            [Link {
                name: "eth0".into(),
                mac: "52:54:00:ab:cd:ef".into()
            }]
        );
    }

    #[test]
    fn carrier_wait_times_out() {
        let sys = FakeSys::new().file("/sys/class/net/eth0/carrier", "0\n");
        assert!(!wait_carrier(&sys, "eth0", Duration::from_secs(1)));
        assert!(sys.now() >= Duration::from_secs(1));
        let sys = FakeSys::new().file("/sys/class/net/eth0/carrier", "1\n");
        assert!(wait_carrier(&sys, "eth0", Duration::from_secs(1)));
        assert_eq!(sys.now(), Duration::ZERO);
    }

    #[test]
    fn up_and_down_go_through_sys() {
        let sys = FakeSys::new();
        set_up(&sys, "eth0").unwrap();
        set_down(&sys, "eth0").unwrap();
        assert_eq!(sys.calls(), ["link eth0 up", "link eth0 down"]);
    }
}
