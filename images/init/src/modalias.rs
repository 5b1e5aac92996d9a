//! Autoloading by `modalias`: the modules whose `modules.alias` patterns
//! match a device's `/sys/bus/*/devices/*/modalias`, as udev's
//! `kmod load $env{MODALIAS}` does, so virtio_net and friends load without
//! being listed in `/etc/modules`.
//!
//! Patterns are fnmatch(3) globs (`*`, `?`, `[…]` with ranges and `!`/`^`
//! negation), as kmod matches them. Non-goals: `modules.alias.bin`,
//! hotplug after boot (no uevent listener), blacklists.

use std::collections::BTreeSet;

use crate::modules::module_name;
use crate::sys::Sys;

/// `modules.alias`: `alias PATTERN MODULE` lines, in file order.
#[derive(Debug, Default)]
pub struct Aliases(Vec<(String, String)>);

impl Aliases {
    pub fn parse(text: &str) -> Aliases {
        let mut v = Vec::new();
        for line in text.lines() {
            let mut f = line.split_whitespace();
            if let (Some("alias"), Some(pat), Some(m)) = (f.next(), f.next(), f.next()) {
                v.push((pat.to_string(), module_name(m)));
            }
        }
        Aliases(v)
    }

    /// Modules matching any of `modaliases`, sorted, each once.
    pub fn modules_for(&self, modaliases: &[String]) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for a in modaliases {
            for (pat, m) in &self.0 {
                if glob(pat.as_bytes(), a.as_bytes()) {
                    out.insert(m.clone());
                }
            }
        }
        out
    }
}

/// Every device's modalias on every bus.
pub fn device_aliases(sys: &dyn Sys) -> Vec<String> {
    let mut out = Vec::new();
    for bus in sys.list_dir("/sys/bus").unwrap_or_default() {
        let devs = format!("/sys/bus/{bus}/devices");
        for d in sys.list_dir(&devs).unwrap_or_default() {
            if let Ok(b) = sys.read_file(&format!("{devs}/{d}/modalias")) {
                let s = String::from_utf8_lossy(&b).trim().to_string();
                if !s.is_empty() {
                    out.push(s);
                }
            }
        }
    }
    out
}

/// One `[…]` class at the start of `p`: (matches `c`, bytes consumed), or
/// None when unterminated (then `[` is literal, as fnmatch does).
fn class(p: &[u8], c: u8) -> Option<(bool, usize)> {
    let mut i = 1;
    let neg = matches!(p.get(i), Some(b'!' | b'^'));
    if neg {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    while i < p.len() {
        if p[i] == b']' && !first {
            return Some((hit != neg, i + 1));
        }
        first = false;
        if i + 2 < p.len() && p[i + 1] == b'-' && p[i + 2] != b']' {
            hit |= p[i] <= c && c <= p[i + 2];
            i += 3;
        } else {
            hit |= p[i] == c;
            i += 1;
        }
    }
    None
}

/// fnmatch(3) without flags; iterative, backtracking only to the last `*`.
pub fn glob(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        let step = match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, si));
                pi += 1;
                continue;
            }
            Some(b'?') => Some(1),
            Some(b'[') => match class(&p[pi..], s[si]) {
                Some((true, n)) => Some(n),
                Some((false, _)) => None,
                None => (s[si] == b'[').then_some(1),
            },
            Some(&c) => (c == s[si]).then_some(1),
            None => None,
        };
        match (step, star) {
            (Some(n), _) => {
                pi += n;
                si += 1;
            }
            (None, Some((sp, ss))) => {
                pi = sp + 1;
                si = ss + 1;
                star = Some((sp, ss + 1));
            }
            (None, None) => return false,
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::FakeSys;

    #[test]
    fn fnmatch_globs() {
        let g = |p: &str, s: &str| glob(p.as_bytes(), s.as_bytes());
        assert!(g("virtio:d00000001v*", "virtio:d00000001v00001AF4"));
        assert!(!g("virtio:d00000001v*", "virtio:d00000002v00001AF4"));
        assert!(g(
            "pci:v00001AF4d00001000sv*sd*bc*sc*i*",
            "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00"
        ));
        assert!(g("a?c", "abc") && !g("a?c", "ac"));
        assert!(
            g("acpi*:PNP0C0[9A]:*", "acpi:PNP0C0A:") && !g("acpi*:PNP0C0[9A]:*", "acpi:PNP0C0B:")
        );
        assert!(g("x[!0-3]", "x7") && !g("x[!0-3]", "x2"));
        assert!(g("*", "") && g("a*b*c", "aXXbYYc") && !g("a*b*c", "aXXbYY"));
        assert!(g("[", "[") && !g("", "a"));
    }

    #[test]
    fn devices_match_aliases() {
        let sys = FakeSys::new()
            .file(
                "/sys/bus/virtio/devices/virtio0/modalias",
                "virtio:d00000001v00001AF4\n",
            )
            .file(
                "/sys/bus/pci/devices/0000:00:03.0/modalias",
                "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00\n",
            )
            .file("/sys/bus/pci/devices/0000:00:01.0/vendor", "0x8086\n");
        let devs = device_aliases(&sys);
        assert_eq!(devs.len(), 2);
        let al = Aliases::parse(
            "# Aliases extracted from modules themselves.\nalias virtio:d00000001v* virtio_net\nalias pci:v00001AF4d*sv*sd*bc*sc*i* virtio-pci\nalias pci:v00008086d*sv*sd*bc*sc*i* e1000\n",
        );
        let got: Vec<String> = al.modules_for(&devs).into_iter().collect();
        assert_eq!(got, ["virtio_net", "virtio_pci"]);
    }
}
