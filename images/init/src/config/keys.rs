//! The shape of each `#cloud-config` key the init applies, walked by hand
//! from the loose YAML value (see [`super::parse`]).

use serde_json::Value;

use super::files;
use super::parse::{
    MountEntry, Ntp, Problems, Res, User, WriteFile, boolean, field, list, map, name, scalar,
    ssh_keys, strings,
};

pub(super) fn write_files(v: &Value, p: &mut Problems) -> Res<Vec<WriteFile>> {
    list(v, "write_files", p, write_file)
}

pub(super) fn users(v: &Value, p: &mut Problems) -> Res<Vec<User>> {
    Ok(list(v, "users", p, user)?.into_iter().flatten().collect())
}

fn user(v: &Value, at: &str, p: &mut Problems) -> Res<Option<User>> {
    if let Value::String(s) = v {
        if s == "default" {
            p.skipped.push(format!(
                "{at}: \"default\" (smelt images have no default user)"
            ));
            return Ok(None);
        }
        return Ok(Some(new_user(name(s.clone())?)));
    }
    let m = map(v)?;
    let n = name(scalar(m.get("name").ok_or("no name")?)?)?;
    let mut u = new_user(n);
    for (k, v) in m {
        let r = match k.as_str() {
            "name" => Ok(()),
            "gecos" => scalar(v)
                .and_then(|s| field(s, "gecos"))
                .map(|s| u.gecos = s),
            "groups" => groups(v).map(|g| u.groups = g),
            "shell" => path(v).map(|s| u.shell = s),
            "homedir" => path(v).map(|s| u.homedir = s),
            "uid" => scalar(v)
                .and_then(|s| s.parse().map_err(|_| format!("invalid uid {s:?}")))
                .map(|n| u.uid = Some(n)),
            "ssh_authorized_keys" => ssh_keys(v).map(|k| u.ssh_authorized_keys = k),
            "lock_passwd" => boolean(v).map(|b| u.lock_passwd = b),
            "passwd" | "hashed_passwd" => scalar(v)
                .and_then(|s| field(s, "passwd"))
                .map(|s| u.passwd = Some(s)),
            "sudo" => {
                p.skipped
                    .push(format!("{at} {}: sudo (no sudo rules written)", u.name));
                Ok(())
            }
            _ => {
                p.skipped.push(format!("{at} {}: unknown key {k}", u.name));
                Ok(())
            }
        };
        r.map_err(|e| format!("{} {k}: {e}", u.name))?;
    }
    Ok(Some(u))
}

fn new_user(name: String) -> User {
    User {
        homedir: format!("/home/{name}"),
        name,
        gecos: String::new(),
        groups: Vec::new(),
        shell: "/bin/sh".into(),
        uid: None,
        ssh_authorized_keys: Vec::new(),
        lock_passwd: true,
        passwd: None,
    }
}

/// `groups: [a, b]` or `groups: "a, b"`.
fn groups(v: &Value) -> Res<Vec<String>> {
    let raw = match v {
        Value::String(s) => s.split(',').map(|g| g.trim().to_string()).collect(),
        _ => strings(v)?,
    };
    raw.into_iter()
        .filter(|g| !g.is_empty())
        .map(name)
        .collect()
}

/// An absolute path, also safe as a passwd field.
fn path(v: &Value) -> Res<String> {
    let s = field(scalar(v)?, "path")?;
    if !s.starts_with('/') {
        return Err(format!("{s:?} is not an absolute path"));
    }
    Ok(s)
}

fn write_file(v: &Value, at: &str, p: &mut Problems) -> Res<WriteFile> {
    let m = map(v)?;
    let path = path(m.get("path").ok_or("no path")?)?;
    let mut content = String::new();
    let mut encoding = String::from("text/plain");
    let mut f = WriteFile {
        path,
        content: Vec::new(),
        permissions: 0o644,
        owner: None,
        append: false,
        defer: false,
    };
    for (k, v) in m {
        let r = match k.as_str() {
            "path" => Ok(()),
            "content" if v.is_null() => Ok(()),
            "content" => scalar(v).map(|s| content = s),
            "encoding" => scalar(v).map(|s| encoding = s),
            "permissions" => permissions(v).map(|m| f.permissions = m),
            "owner" => scalar(v).map(|s| f.owner = Some(s)),
            "append" => boolean(v).map(|b| f.append = b),
            "defer" => boolean(v).map(|b| f.defer = b),
            _ => {
                p.skipped.push(format!("{at} {}: unknown key {k}", f.path));
                Ok(())
            }
        };
        r.map_err(|e| format!("{} {k}: {e}", f.path))?;
    }
    f.content = files::decode(&content, &encoding).map_err(|e| format!("{}: {e}", f.path))?;
    Ok(f)
}

/// An int is the mode itself (`0644` unquoted is already octal 420, as in
/// PyYAML); a string is octal: `"0644"`, `"644"`, `"0o644"`.
fn permissions(v: &Value) -> Res<u32> {
    let mode = match v {
        Value::Number(n) => n.as_u64().ok_or_else(|| format!("invalid mode {n}"))?,
        Value::String(s) => {
            let t = s.trim();
            let t = t.strip_prefix("0o").unwrap_or(t);
            u64::from_str_radix(t, 8).map_err(|_| format!("invalid octal mode {s:?}"))?
        }
        _ => return Err("expected an octal mode".into()),
    };
    if mode > 0o7777 {
        return Err(format!("mode {mode:o} out of range"));
    }
    Ok(mode as u32)
}

/// Each command: a string for `/bin/sh -c`, or a list as argv.
pub(super) fn commands(v: &Value) -> Res<Vec<Vec<String>>> {
    let Value::Array(items) = v else {
        return match v {
            Value::Null => Ok(Vec::new()),
            _ => Err("expected a list".into()),
        };
    };
    let mut out = Vec::new();
    for (i, it) in items.iter().enumerate() {
        let argv = match it {
            Value::Array(_) => strings(it).map_err(|e| format!("[{i}]: {e}"))?,
            _ => {
                let s = scalar(it).map_err(|_| format!("[{i}]: expected a string or a list"))?;
                vec!["/bin/sh".into(), "-c".into(), s]
            }
        };
        if argv.is_empty() {
            return Err(format!("[{i}]: empty command"));
        }
        out.push(argv);
    }
    Ok(out)
}

pub(super) fn ntp(v: &Value, p: &mut Problems) -> Res<Option<Ntp>> {
    if v.is_null() {
        return Ok(None);
    }
    let mut n = Ntp {
        enabled: true,
        ..Ntp::default()
    };
    for (k, v) in map(v)? {
        let r = match k.as_str() {
            "enabled" => boolean(v).map(|b| n.enabled = b),
            "servers" => strings(v).map(|s| n.servers = s),
            "pools" => strings(v).map(|s| n.pools = s),
            _ => {
                p.skipped.push(format!("ntp: unknown key {k}"));
                Ok(())
            }
        };
        r.map_err(|e| format!("{k}: {e}"))?;
    }
    for s in n.servers.iter().chain(&n.pools) {
        if s.is_empty() || s.contains(char::is_whitespace) {
            return Err(format!("invalid server {s:?}"));
        }
    }
    Ok(Some(n))
}

/// `Area/City`: a relative path below `/usr/share/zoneinfo`, no `..`.
pub(super) fn timezone(v: &Value) -> Res<String> {
    let tz = scalar(v)?;
    let ok = !tz.is_empty()
        && !tz.starts_with('/')
        && tz
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
        && tz
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_+-".contains(c));
    if ok {
        Ok(tz)
    } else {
        Err(format!("invalid timezone {tz:?}"))
    }
}

pub(super) fn mounts(v: &Value, p: &mut Problems) -> Res<Vec<MountEntry>> {
    Ok(list(v, "mounts", p, mount)?.into_iter().flatten().collect())
}

/// `[device, mountpoint, fstype?, options?, …]`; a null mountpoint means
/// "no mount" in cloud-init.
fn mount(v: &Value, at: &str, p: &mut Problems) -> Res<Option<MountEntry>> {
    let Value::Array(items) = v else {
        return Err("expected a list [device, mountpoint, fstype, options]".into());
    };
    let get = |i: usize| match items.get(i) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => scalar(v).map(Some),
    };
    let (Some(device), Some(mountpoint)) = (get(0)?, get(1)?) else {
        p.skipped.push(format!("{at}: no device or mountpoint"));
        return Ok(None);
    };
    if mountpoint == "none" || get(2)?.as_deref() == Some("swap") {
        p.skipped
            .push(format!("{at}: swap {device} (not supported)"));
        return Ok(None);
    }
    if !mountpoint.starts_with('/') {
        return Err(format!("mountpoint {mountpoint:?} is not an absolute path"));
    }
    Ok(Some(MountEntry {
        device,
        mountpoint,
        fstype: get(2)?.unwrap_or_else(|| "auto".into()),
        options: get(3)?.unwrap_or_else(|| "defaults".into()),
    }))
}
