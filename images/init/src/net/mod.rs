//! Network bring-up in the init, with no external tools: cloud-init
//! `network-config` v1/v2 ([`config`]), links from sysfs ([`link`]), a
//! DHCPv4 client ([`dhcp`]), addresses, routes and resolv.conf
//! ([`apply`]), and plain-HTTP NoCloud fetches ([`http`]).
//!
//! Entry points: [`apply()`] for a network-config, [`dhcp_all`] when there
//! is none. Kernel access goes through [`crate::sys::Sys`] (SIOCSIFFLAGS,
//! rtnetlink, a device-bound UDP socket); [`netlink`] builds the messages.
//!
//! Non-goals: DHCPv6 and SLAAC configuration (the kernel does SLAAC by
//! itself), lease renewal, bonds/bridges/VLANs, interface renaming, TLS.

pub mod apply;
pub mod config;
pub mod dhcp;
pub mod http;
pub mod link;
pub mod netlink;

pub use apply::{Report, apply, dhcp_all};
pub use config::NetworkConfig;
pub use dhcp::Lease;
