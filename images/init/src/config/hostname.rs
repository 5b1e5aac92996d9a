//! `hostname` and `fqdn`, with meta-data's `local-hostname` as fallback
//! (cloud-init's `cc_set_hostname` and `util.get_hostname_fqdn`).
//!
//! The kernel gets the short name, `/etc/hostname` too, and `/etc/hosts`
//! gets `127.0.1.1 FQDN SHORT` (Debian's convention) in place of any
//! `127.0.1.1` line it had; its other lines are kept.

use super::Applied;
use crate::sys::Sys;

pub const HOSTS: &str = "/etc/hosts";

/// `(short, fqdn)` as cloud-init picks them, if any name is given.
pub fn resolve(
    hostname: Option<&str>,
    fqdn: Option<&str>,
    local_hostname: Option<&str>,
) -> Option<(String, Option<String>)> {
    let first = |s: &str| s.split('.').next().unwrap_or(s).to_string();
    if let Some(f) = fqdn {
        return Some((
            hostname.map_or_else(|| first(f), first),
            Some(f.to_string()),
        ));
    }
    let name = hostname.or(local_hostname)?;
    let fq = name.contains('.').then(|| name.to_string());
    Some((first(name), fq))
}

/// RFC 1123 labels; the kernel takes at most 64 bytes.
fn valid(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.split('.').all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// Set the hostname; records it in `applied.hostname`.
pub fn apply(sys: &dyn Sys, applied: &mut Applied) {
    let cfg = &applied.config;
    let picked = resolve(
        cfg.hostname.as_deref(),
        cfg.fqdn.as_deref(),
        applied.meta.local_hostname.as_deref(),
    );
    let Some((short, fqdn)) = picked else {
        return;
    };
    let report = &mut applied.report;
    if cfg.preserve_hostname {
        report.skip(sys, "hostname: preserve_hostname is true".into());
        return;
    }
    let shown = fqdn.as_deref().unwrap_or(&short);
    if !valid(&short) || !fqdn.as_deref().is_none_or(valid) {
        report.error(sys, format!("hostname: invalid name {shown:?}"));
        return;
    }
    if let Err(e) = sys.set_hostname(&short) {
        report.error(sys, format!("hostname: sethostname {short}: {e}"));
        return;
    }
    if let Err(e) = sys.write_file("/etc/hostname", format!("{short}\n").as_bytes()) {
        report.error(sys, format!("hostname: writing /etc/hostname: {e}"));
    }
    let old = sys.read_file(HOSTS).unwrap_or_default();
    if let Err(e) = sys.write_file(HOSTS, hosts(&old, &short, fqdn.as_deref()).as_bytes()) {
        report.error(sys, format!("hostname: writing {HOSTS}: {e}"));
    }
    sys.log(&format!("cloud-config: hostname {shown}"));
    applied.hostname = Some(short);
    report.applied("hostname");
}

/// `/etc/hosts` with our `127.0.1.1` line; localhost lines if it was empty.
fn hosts(old: &[u8], short: &str, fqdn: Option<&str>) -> String {
    let old = String::from_utf8_lossy(old);
    let mut lines: Vec<&str> = old
        .lines()
        .filter(|l| l.split_whitespace().next() != Some("127.0.1.1"))
        .collect();
    if lines.is_empty() {
        lines = vec!["127.0.0.1 localhost", "::1 localhost ip6-localhost"];
    }
    let ours = match fqdn {
        Some(f) if f != short => format!("127.0.1.1 {f} {short}"),
        _ => format!("127.0.1.1 {short}"),
    };
    let mut text = lines.join("\n");
    text.push('\n');
    text.push_str(&ours);
    text.push('\n');
    text
}
