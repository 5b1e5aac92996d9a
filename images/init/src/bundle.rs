//! Container bundles under `/containers/{onboot,onshutdown,services}`:
//! discovery, validation, LinuxKit's `runtime.json`, and the `runc` command.
//!
//! Validation is the minimum that turns runc's obscure failures into a
//! message naming the container: `rootfs/` exists, `config.json` is JSON
//! with a non-empty `process.args`. From `runtime.json` (LinuxKit's
//! `pkg/runc` `prepare`), `mkdir` and `mounts` are performed; `interfaces`,
//! `bindNS`, `namespace` and `cgroups` are logged as unsupported and
//! ignored. Non-goals: full OCI validation (runc does it).

use serde_json::Value;

use crate::sys::Sys;

/// Where runc comes from (the runc image puts it there).
pub const RUNC: &str = "/usr/bin/runc";
/// runc's state directory, on the /run tmpfs.
pub const RUNC_ROOT: &str = "/run/runc";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// The bundle directory, e.g. `/containers/onboot/000-dhcpcd`.
    pub dir: String,
    /// Container id, log prefix and log file name: the directory name
    /// without its `NNN-` order prefix, as LinuxKit names onboot containers.
    pub name: String,
}

/// `000-dhcpcd` → `dhcpcd`; `getty` → `getty`.
pub fn container_name(dir_name: &str) -> String {
    match dir_name.split_once('-') {
        Some((n, rest))
            if !n.is_empty() && !rest.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) =>
        {
            rest.to_string()
        }
        _ => dir_name.to_string(),
    }
}

/// Bundles in `dir`, in name order (the `NNN-` prefix gives spec order).
/// A missing directory is no bundles.
pub fn discover(sys: &dyn Sys, dir: &str) -> Vec<Bundle> {
    sys.list_dir(dir)
        .unwrap_or_default()
        .into_iter()
        .map(|n| Bundle {
            dir: format!("{dir}/{n}"),
            name: container_name(&n),
        })
        .collect()
}

/// Check what runc needs; the error is a full message naming the bundle.
pub fn validate(sys: &dyn Sys, b: &Bundle) -> Result<(), String> {
    let name = &b.name;
    if !sys.exists(&format!("{}/rootfs", b.dir)) {
        return Err(format!("container {name}: {}/rootfs is missing", b.dir));
    }
    let path = format!("{}/config.json", b.dir);
    let bytes = sys
        .read_file(&path)
        .map_err(|e| format!("container {name}: reading {path}: {e}"))?;
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|e| format!("container {name}: {path} is not valid JSON: {e}"))?;
    match v.pointer("/process/args").and_then(Value::as_array) {
        Some(a) if !a.is_empty() => Ok(()),
        _ => Err(format!("container {name}: {path} has no process.args")),
    }
}

/// `runc --root /run/runc run --bundle DIR NAME` (foreground: runc waits
/// for the container and deletes it when it exits).
pub fn runc_run(b: &Bundle) -> Vec<String> {
    [
        RUNC, "--root", RUNC_ROOT, "run", "--bundle", &b.dir, &b.name,
    ]
    .map(String::from)
    .to_vec()
}

/// `runc --root /run/runc ARGS… NAME`.
pub fn runc(args: &[&str], name: &str) -> Vec<String> {
    let mut v: Vec<String> = [RUNC, "--root", RUNC_ROOT].map(String::from).to_vec();
    v.extend(args.iter().map(|a| a.to_string()));
    v.push(name.to_string());
    v
}

/// `runc --root /run/runc kill NAME SIGNAL`.
pub fn runc_kill(name: &str, signal: &str) -> Vec<String> {
    let mut v = runc(&["kill"], name);
    v.push(signal.to_string());
    v
}

/// Mount flags and data from fstab-style options (mount(8)); propagation
/// flags are returned apart, since the kernel wants them in a second call.
pub fn mount_options(opts: &[String]) -> (u64, u64, String) {
    let (mut flags, mut prop, mut data) = (0u64, 0u64, Vec::new());
    for o in opts {
        let (set, clear, p) = match o.as_str() {
            "ro" => (libc::MS_RDONLY, 0, 0),
            "rw" => (0, libc::MS_RDONLY, 0),
            "nosuid" => (libc::MS_NOSUID, 0, 0),
            "suid" => (0, libc::MS_NOSUID, 0),
            "nodev" => (libc::MS_NODEV, 0, 0),
            "dev" => (0, libc::MS_NODEV, 0),
            "noexec" => (libc::MS_NOEXEC, 0, 0),
            "exec" => (0, libc::MS_NOEXEC, 0),
            "sync" => (libc::MS_SYNCHRONOUS, 0, 0),
            "async" => (0, libc::MS_SYNCHRONOUS, 0),
            "remount" => (libc::MS_REMOUNT, 0, 0),
            "bind" => (libc::MS_BIND, 0, 0),
            "rbind" => (libc::MS_BIND | libc::MS_REC, 0, 0),
            "noatime" => (libc::MS_NOATIME, 0, 0),
            "nodiratime" => (libc::MS_NODIRATIME, 0, 0),
            "relatime" => (libc::MS_RELATIME, 0, 0),
            "strictatime" => (libc::MS_STRICTATIME, 0, 0),
            "private" => (0, 0, libc::MS_PRIVATE),
            "rprivate" => (0, 0, libc::MS_PRIVATE | libc::MS_REC),
            "shared" => (0, 0, libc::MS_SHARED),
            "rshared" => (0, 0, libc::MS_SHARED | libc::MS_REC),
            "slave" => (0, 0, libc::MS_SLAVE),
            "rslave" => (0, 0, libc::MS_SLAVE | libc::MS_REC),
            "defaults" => (0, 0, 0),
            other => {
                data.push(other.to_string());
                (0, 0, 0)
            }
        };
        flags = (flags | set) & !clear;
        prop |= p;
    }
    (flags, prop, data.join(","))
}

fn str_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn non_empty(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => o.values().any(|x| non_empty(Some(x))),
        Some(_) => true,
    }
}

/// Apply `runtime.json` if present: `mkdir`, then `mounts`. The first
/// failure is returned as a message naming the container, and the caller
/// skips the container, as LinuxKit's `onboot` does when `prepare` fails.
pub fn prepare(sys: &dyn Sys, b: &Bundle) -> Result<(), String> {
    let name = &b.name;
    let path = format!("{}/runtime.json", b.dir);
    let Ok(bytes) = sys.read_file(&path) else {
        return Ok(());
    };
    let rt: Value = serde_json::from_slice(&bytes)
        .map_err(|e| format!("container {name}: {path} is not valid JSON: {e}"))?;
    for d in str_list(rt.get("mkdir")) {
        sys.mkdir_all(&d, 0o755)
            .map_err(|e| format!("container {name}: runtime mkdir {d}: {e}"))?;
    }
    let mounts = rt
        .get("mounts")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for m in &mounts {
        mount_one(b, m, sys)?;
    }
    for key in ["interfaces", "bindNS", "namespace", "cgroups"] {
        if non_empty(rt.get(key)) {
            sys.log(&format!(
                "container {name}: runtime.json {key} is not supported by smelt init, ignored"
            ));
        }
    }
    Ok(())
}

fn mount_one(b: &Bundle, m: &Value, sys: &dyn Sys) -> Result<(), String> {
    let get = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let (dst, src, kind) = (get("destination"), get("source"), get("type"));
    if dst.is_empty() {
        return Err(format!(
            "container {}: runtime mount of {src} has no destination",
            b.name
        ));
    }
    let (flags, prop, data) = mount_options(&str_list(m.get("options")));
    sys.mkdir_all(&dst, 0o755)
        .and_then(|()| sys.mount(&src, &dst, &kind, flags, &data))
        .and_then(|()| {
            if prop != 0 {
                sys.mount("", &dst, "", prop, "")
            } else {
                Ok(())
            }
        })
        .map_err(|e| {
            format!(
                "container {}: runtime mount {src} on {dst} ({kind}): {e}",
                b.name
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::FakeSys;

    const OK: &str = r#"{"process":{"args":["/bin/sh"]}}"#;

    #[test]
    fn discovery_in_name_order_with_prefix_stripped() {
        let sys = FakeSys::new()
            .dir("/c/onboot/010-b/rootfs")
            .dir("/c/onboot/002-a/rootfs")
            .dir("/c/onboot/100-x-y");
        let got = discover(&sys, "/c/onboot");
        let names: Vec<_> = got
            .iter()
            .map(|b| (b.dir.as_str(), b.name.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("/c/onboot/002-a", "a"),
                ("/c/onboot/010-b", "b"),
                ("/c/onboot/100-x-y", "x-y")
            ]
        );
        assert!(discover(&sys, "/c/nothing").is_empty());
        assert_eq!(container_name("getty"), "getty");
        assert_eq!(container_name("01a-x"), "01a-x");
    }

    #[test]
    fn validation_messages() {
        let b = Bundle {
            dir: "/c/s/getty".into(),
            name: "getty".into(),
        };
        let sys = FakeSys::new().file("/c/s/getty/config.json", OK);
        assert_eq!(
            validate(&sys, &b).unwrap_err(),
            "container getty: /c/s/getty/rootfs is missing"
        );
        let sys = FakeSys::new().dir("/c/s/getty/rootfs");
        assert!(
            validate(&sys, &b)
                .unwrap_err()
                .starts_with("container getty: reading /c/s/getty/config.json: ")
        );
        let sys = FakeSys::new()
            .dir("/c/s/getty/rootfs")
            .file("/c/s/getty/config.json", "{nope");
        assert!(
            validate(&sys, &b)
                .unwrap_err()
                .starts_with("container getty: /c/s/getty/config.json is not valid JSON: ")
        );
        let sys = FakeSys::new()
            .dir("/c/s/getty/rootfs")
            .file("/c/s/getty/config.json", r#"{"process":{"args":[]}}"#);
        assert_eq!(
            validate(&sys, &b).unwrap_err(),
            "container getty: /c/s/getty/config.json has no process.args"
        );
        let sys = FakeSys::new()
            .dir("/c/s/getty/rootfs")
            .file("/c/s/getty/config.json", OK);
        assert_eq!(validate(&sys, &b), Ok(()));
    }

    #[test]
    fn runc_command_line() {
        let b = Bundle {
            dir: "/containers/onboot/000-dhcpcd".into(),
            name: "dhcpcd".into(),
        };
        assert_eq!(
            runc_run(&b).join(" "),
            "/usr/bin/runc --root /run/runc run --bundle /containers/onboot/000-dhcpcd dhcpcd"
        );
        assert_eq!(
            runc(&["kill"], "x").join(" "),
            "/usr/bin/runc --root /run/runc kill x"
        );
    }

    #[test]
    fn options_to_flags() {
        let o: Vec<String> = ["rbind", "ro", "rshared", "size=10m", "mode=755"]
            .map(String::from)
            .to_vec();
        let (f, p, d) = mount_options(&o);
        assert_eq!(f, libc::MS_BIND | libc::MS_REC | libc::MS_RDONLY);
        assert_eq!(p, libc::MS_SHARED | libc::MS_REC);
        assert_eq!(d, "size=10m,mode=755");
        let (f, _, _) = mount_options(&["ro".into(), "rw".into()]);
        assert_eq!(f, 0);
    }

    #[test]
    fn runtime_json_mkdir_mounts_and_ignored_keys() {
        let rt = r#"{"cgroups":[],"mounts":[{"type":"bind","source":"/var/lib","destination":"/var/lib/x","options":["rbind","rshared"]}],
            "mkdir":["/var/lib/docker"],"interfaces":[{"name":"eth0"}],"bindNS":{"net":"/run/netns/x","pid":""},"namespace":""}"#;
        let sys = FakeSys::new().file("/c/s/d/runtime.json", rt);
        let b = Bundle {
            dir: "/c/s/d".into(),
            name: "d".into(),
        };
        prepare(&sys, &b).unwrap();
        let rec = libc::MS_BIND | libc::MS_REC;
        let sh = libc::MS_SHARED | libc::MS_REC;
        assert_eq!(
            sys.calls(),
            [
                "mkdir /var/lib/docker 755".to_string(),
                "mkdir /var/lib/x 755".to_string(),
                format!("mount /var/lib /var/lib/x bind {rec:#x} "),
                format!("mount  /var/lib/x  {sh:#x} "),
            ]
        );
        let logs = sys.logs();
        assert!(
            logs.contains("container d: runtime.json interfaces is not supported"),
            "{logs}"
        );
        assert!(
            logs.contains("runtime.json bindNS is not supported"),
            "{logs}"
        );
        assert!(!logs.contains("cgroups"), "{logs}");
        assert!(!logs.contains("namespace is"), "{logs}");
    }

    #[test]
    fn runtime_json_failures_name_the_container() {
        let b = Bundle {
            dir: "/c/s/d".into(),
            name: "d".into(),
        };
        let sys = FakeSys::new().file("/c/s/d/runtime.json", "[");
        assert!(
            prepare(&sys, &b)
                .unwrap_err()
                .starts_with("container d: /c/s/d/runtime.json is not valid JSON: ")
        );
        let mut sys = FakeSys::new().file(
            "/c/s/d/runtime.json",
            r#"{"mounts":[{"type":"tmpfs","source":"tmpfs","destination":"/var/x"}]}"#,
        );
        sys.failing_mounts.insert("/var/x".into());
        let e = prepare(&sys, &b).unwrap_err();
        assert!(
            e.starts_with("container d: runtime mount tmpfs on /var/x (tmpfs): "),
            "{e}"
        );
        let sys = FakeSys::new().file("/c/s/d/runtime.json", r#"{"mounts":[{"source":"x"}]}"#);
        assert_eq!(
            prepare(&sys, &b).unwrap_err(),
            "container d: runtime mount of x has no destination"
        );
    }
}
