//! `user-data` (`#cloud-config` YAML) and `meta-data` into typed values.
//!
//! The YAML goes into a loose `serde_json::Value` first and is walked by
//! hand: an unknown key is listed in [`Problems::skipped`], a key of the
//! wrong shape in [`Problems::errors`], and the rest still applies. Every
//! string that ends up in `/etc/passwd`-style files is checked for `:` and
//! newlines here, so the appliers never see one.

use serde_json::{Map, Value};

use super::files;

/// Decompressed gzip user-data is cut off beyond this (a gzip bomb must
/// not fill the tmpfs root); cloud-init's own limit is far lower.
pub const MAX_USER_DATA: u64 = 16 << 20;

/// Messages collected while parsing, reported by the caller.
#[derive(Debug, Default)]
pub struct Problems {
    pub skipped: Vec<String>,
    pub errors: Vec<String>,
}

/// `meta-data`: a YAML (or JSON) map; only these keys are used.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MetaData {
    pub instance_id: Option<String>,
    pub local_hostname: Option<String>,
}

/// The `#cloud-config` keys the init applies.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CloudConfig {
    pub hostname: Option<String>,
    pub fqdn: Option<String>,
    pub preserve_hostname: bool,
    pub users: Vec<User>,
    pub ssh_authorized_keys: Vec<String>,
    pub write_files: Vec<WriteFile>,
    /// argv of each command (strings become `/bin/sh -c STRING`).
    pub bootcmd: Vec<Vec<String>>,
    pub runcmd: Vec<Vec<String>>,
    pub ntp: Option<Ntp>,
    pub timezone: Option<String>,
    pub mounts: Vec<MountEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub gecos: String,
    pub groups: Vec<String>,
    pub shell: String,
    pub homedir: String,
    pub uid: Option<u32>,
    pub ssh_authorized_keys: Vec<String>,
    /// Default true, as cloud-init: no password login.
    pub lock_passwd: bool,
    /// A crypt(3) hash.
    pub passwd: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteFile {
    pub path: String,
    /// Decoded content.
    pub content: Vec<u8>,
    pub permissions: u32,
    /// `user:group`, `user`, names or numbers; None: leave it root's.
    pub owner: Option<String>,
    pub append: bool,
    pub defer: bool,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Ntp {
    pub enabled: bool,
    pub servers: Vec<String>,
    pub pools: Vec<String>,
}

/// One `mounts` entry: `[device, mountpoint, fstype, options]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub device: String,
    pub mountpoint: String,
    pub fstype: String,
    pub options: String,
}

type Res<T> = Result<T, String>;

/// YAML 1.1 as cloud-init's PyYAML: `permissions: 0644` is octal 420.
fn yaml(text: &str) -> Result<Value, String> {
    let opts = serde_saphyr::options! {
        legacy_octal_numbers: true,
        with_snippet: false,
    };
    serde_saphyr::from_str_with_options::<Value>(text, opts).map_err(|e| {
        let text = e.without_snippet().to_string();
        let first = text.lines().next().unwrap_or_default();
        let msg = first.rfind(" at line ").map_or(first, |i| &first[..i]);
        match e.location() {
            Some(l) => format!("line {}, column {}: {msg}", l.line(), l.column()),
            None => msg.to_string(),
        }
    })
}

/// Parse `meta-data`; empty is fine (a pristine slot).
pub fn parse_meta_data(data: &[u8], p: &mut Problems) -> MetaData {
    let mut meta = MetaData::default();
    let Ok(text) = std::str::from_utf8(data) else {
        p.errors.push("meta-data: not UTF-8".into());
        return meta;
    };
    let map = match yaml(text) {
        Ok(Value::Object(m)) => m,
        Ok(Value::Null) => return meta,
        Ok(_) => {
            p.errors.push("meta-data: not a mapping".into());
            return meta;
        }
        Err(e) => {
            p.errors.push(format!("meta-data: YAML error at {e}"));
            return meta;
        }
    };
    let mut get = |key: &str| match map.get(key).map(scalar) {
        Some(Ok(s)) => Some(s),
        Some(Err(e)) => {
            p.errors.push(format!("meta-data {key}: {e}"));
            None
        }
        None => None,
    };
    meta.instance_id = get("instance-id");
    meta.local_hostname = get("local-hostname");
    meta
}

/// What a user-data that is not `#cloud-config` is, for the log line.
fn kind(text: &str) -> &'static str {
    let starts = |p: &str| text.starts_with(p);
    if starts("#!") {
        "a shell script (unsupported)"
    } else if starts("#include") {
        "an #include list (unsupported)"
    } else if starts("## template") {
        "a jinja template (unsupported)"
    } else if starts("#cloud-boothook") {
        "a cloud-boothook (unsupported)"
    } else if text.to_ascii_lowercase().starts_with("content-type:") {
        "MIME multipart (unsupported)"
    } else {
        "not #cloud-config"
    }
}

/// gzip user-data (cloud-init accepts it too), else as is.
fn gunzip_user_data(data: &[u8], p: &mut Problems) -> Option<Vec<u8>> {
    if !data.starts_with(&[0x1f, 0x8b]) {
        return Some(data.to_vec());
    }
    match files::gunzip(data, MAX_USER_DATA) {
        Ok(d) => Some(d),
        Err(e) => {
            p.errors.push(format!("user-data: {e}"));
            None
        }
    }
}

/// Parse `user-data`. Empty, not `#cloud-config`, or broken: nothing.
pub fn parse_user_data(data: &[u8], p: &mut Problems) -> CloudConfig {
    let mut c = CloudConfig::default();
    let Some(data) = gunzip_user_data(data, p) else {
        return c;
    };
    if data.iter().all(u8::is_ascii_whitespace) {
        return c;
    }
    let Ok(text) = std::str::from_utf8(&data) else {
        p.errors.push("user-data: not UTF-8, ignored".into());
        return c;
    };
    if !text.starts_with("#cloud-config") {
        p.skipped
            .push(format!("user-data: {}, ignored", kind(text.trim_start())));
        return c;
    }
    let map = match yaml(text) {
        Ok(Value::Object(m)) => m,
        Ok(Value::Null) => return c,
        Ok(_) => {
            p.errors
                .push("user-data: top level is not a mapping, ignored".into());
            return c;
        }
        Err(e) => {
            p.errors
                .push(format!("user-data: YAML error at {e}; nothing applied"));
            return c;
        }
    };
    for (key, val) in &map {
        if let Err(e) = top_key(&mut c, key, val, p) {
            p.errors.push(format!("{key}: {e}"));
        }
    }
    c
}

fn top_key(c: &mut CloudConfig, key: &str, v: &Value, p: &mut Problems) -> Res<()> {
    match key {
        "hostname" => c.hostname = Some(scalar(v)?),
        "fqdn" => c.fqdn = Some(scalar(v)?),
        "preserve_hostname" => c.preserve_hostname = boolean(v)?,
        "users" => c.users = users(v, p)?,
        "ssh_authorized_keys" => c.ssh_authorized_keys = keys(v)?,
        "write_files" => c.write_files = list(v, "write_files", p, write_file)?,
        "bootcmd" => c.bootcmd = commands(v)?,
        "runcmd" => c.runcmd = commands(v)?,
        "ntp" => c.ntp = ntp(v, p)?,
        "timezone" => c.timezone = Some(timezone(v)?),
        "mounts" => c.mounts = mounts(v, p)?,
        _ => p.skipped.push(format!("unknown key {key}")),
    }
    Ok(())
}

/// A YAML scalar as a string (`hostname: 1234` is an int to YAML).
pub(crate) fn scalar(v: &Value) -> Res<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err("expected a string".into()),
    }
}

fn boolean(v: &Value) -> Res<bool> {
    v.as_bool().ok_or_else(|| "expected true or false".into())
}

/// No `:` (the field separator) or line break: safe in `/etc/passwd`.
fn field(s: String, what: &str) -> Res<String> {
    if s.contains([':', '\n', '\r', '\0']) {
        return Err(format!("{what} {s:?} contains ':' or a line break"));
    }
    Ok(s)
}

/// A user or group name: what shadow-utils accepts, minus oddities.
fn name(s: String) -> Res<String> {
    let ok = !s.is_empty()
        && s.len() <= 32
        && !s.starts_with('-')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
        Ok(s)
    } else {
        Err(format!("invalid name {s:?}"))
    }
}

fn strings(v: &Value) -> Res<Vec<String>> {
    match v {
        Value::Array(items) => items.iter().map(scalar).collect(),
        Value::Null => Ok(Vec::new()),
        _ => Err("expected a list".into()),
    }
}

/// A list or one string; keys never contain line breaks.
fn keys(v: &Value) -> Res<Vec<String>> {
    let keys = match v {
        Value::String(s) => vec![s.clone()],
        _ => strings(v)?,
    };
    keys.into_iter()
        .map(|k| {
            let k = k.trim().to_string();
            if k.contains(['\n', '\r']) {
                Err("an ssh key contains a line break".to_string())
            } else {
                Ok(k)
            }
        })
        .filter(|k| k.as_ref().map_or(true, |k| !k.is_empty()))
        .collect()
}

/// Each item through `item`; a bad item is an error, the rest still count.
fn list<T>(
    v: &Value,
    what: &str,
    p: &mut Problems,
    item: fn(&Value, &str, &mut Problems) -> Res<T>,
) -> Res<Vec<T>> {
    let items = match v {
        Value::Array(items) => items,
        Value::Null => return Ok(Vec::new()),
        _ => return Err("expected a list".into()),
    };
    let mut out = Vec::new();
    for (i, it) in items.iter().enumerate() {
        let at = format!("{what}[{i}]");
        match item(it, &at, p) {
            Ok(t) => out.push(t),
            Err(e) => p.errors.push(format!("{at}: {e}")),
        }
    }
    Ok(out)
}

fn map(v: &Value) -> Res<&Map<String, Value>> {
    v.as_object().ok_or_else(|| "expected a mapping".into())
}

fn users(v: &Value, p: &mut Problems) -> Res<Vec<User>> {
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
            "ssh_authorized_keys" => keys(v).map(|k| u.ssh_authorized_keys = k),
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
fn commands(v: &Value) -> Res<Vec<Vec<String>>> {
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

fn ntp(v: &Value, p: &mut Problems) -> Res<Option<Ntp>> {
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
fn timezone(v: &Value) -> Res<String> {
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

fn mounts(v: &Value, p: &mut Problems) -> Res<Vec<MountEntry>> {
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
