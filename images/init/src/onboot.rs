//! Run-to-completion containers: `onboot` at boot, `onshutdown` at
//! shutdown, each sequentially in name order with `runc run`.
//!
//! Policy: a failing container (bad bundle, runc error, non-zero exit) is
//! logged loudly and the next one still runs; boot goes on to services.
//! LinuxKit's `onboot` runner (`pkg/runc/cmd/onboot`) does the same: it
//! logs each failure and carries on. A system that comes up without a
//! network is debuggable from its console; one stuck in a boot loop is not.

use crate::bundle::{self, Bundle};
use crate::sys::Sys;

/// Outcome counts of [`run_all`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub ok: usize,
    pub failed: usize,
}

/// Run every bundle of `kind` (`onboot`/`onshutdown`) found in `dir`.
pub fn run_all(sys: &dyn Sys, kind: &str, bundles: &[Bundle]) -> Summary {
    let mut s = Summary::default();
    for b in bundles {
        if let Err(msg) = bundle::validate(sys, b).and_then(|()| bundle::prepare(sys, b)) {
            sys.log(&format!("{kind} {} failed: {msg}", b.name));
            s.failed += 1;
            continue;
        }
        match sys.run(&bundle::runc_run(b), &b.name) {
            Ok(0) => s.ok += 1,
            Ok(code) => {
                sys.log(&format!(
                    "*** {kind} {} failed: exit code {code} ***",
                    b.name
                ));
                s.failed += 1;
            }
            Err(e) => {
                sys.log(&format!(
                    "*** {kind} {} failed: starting {}: {e} ***",
                    b.name,
                    bundle::RUNC
                ));
                s.failed += 1;
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::FakeSys;

    const OK: &str = r#"{"process":{"args":["true"]}}"#;

    #[test]
    fn sequential_failure_continues() {
        let mut sys = FakeSys::new()
            .dir("/c/000-a/rootfs")
            .file("/c/000-a/config.json", OK)
            .dir("/c/001-b/rootfs")
            .file("/c/001-b/config.json", "not json")
            .dir("/c/002-c/rootfs")
            .file("/c/002-c/config.json", OK)
            .dir("/c/003-d/rootfs")
            .file("/c/003-d/config.json", OK);
        sys.exit_codes.insert("a".into(), 3);
        let bundles = bundle::discover(&sys, "/c");
        let s = run_all(&sys, "onboot", &bundles);
        assert_eq!(s, Summary { ok: 2, failed: 2 });
        assert_eq!(
            sys.calls(),
            [
                "run /usr/bin/runc --root /run/runc run --bundle /c/000-a a",
                "run /usr/bin/runc --root /run/runc run --bundle /c/002-c c",
                "run /usr/bin/runc --root /run/runc run --bundle /c/003-d d",
            ]
        );
        let logs = sys.logs();
        assert!(logs.contains("onboot a failed: exit code 3"), "{logs}");
        assert!(
            logs.contains("onboot b failed: container b: /c/001-b/config.json is not valid JSON"),
            "{logs}"
        );
    }
}
