//! `user-data` (`#cloud-config` YAML) and `meta-data` into typed values.
//!
//! The YAML goes into a loose `serde_json::Value` first and is walked by
//! hand: an unknown key is listed in [`Problems::skipped`], a key of the
//! wrong shape in [`Problems::errors`], and the rest still applies. Every
//! string that ends up in `/etc/passwd`-style files is checked for `:` and
//! newlines here, so the appliers never see one.

use serde_json::{Map, Value};

use super::{files, keys};

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

pub(super) type Res<T> = Result<T, String>;

/// YAML 1.1 as cloud-init's PyYAML: `permissions: 0644` is octal 420
/// (user-data only: meta-data's `instance-id: 0123` stays "0123").
///
/// A `!!binary` scalar stays its base64 text: a loose value has no bytes
/// type, and gzip data (cloud-init's documented `encoding: gzip` +
/// `!!binary` example) is not UTF-8. [`files::decode`] base64-decodes gzip
/// content that is not raw gzip, so that example works; `!!binary` with
/// no `encoding` is written as its base64 text (documented).
fn yaml(text: &str, legacy_octal: bool) -> Result<Value, String> {
    let opts = serde_saphyr::options! {
        legacy_octal_numbers: legacy_octal,
        leading_zero_numbers_as_strings: !legacy_octal,
        ignore_binary_tag_for_string: true,
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
    let map = match yaml(text, false) {
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
    let map = match yaml(text, true) {
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
        "users" => c.users = keys::users(v, p)?,
        "ssh_authorized_keys" => c.ssh_authorized_keys = ssh_keys(v)?,
        "write_files" => c.write_files = keys::write_files(v, p)?,
        "bootcmd" => c.bootcmd = keys::commands(v)?,
        "runcmd" => c.runcmd = keys::commands(v)?,
        "ntp" => c.ntp = keys::ntp(v, p)?,
        "timezone" => c.timezone = Some(keys::timezone(v)?),
        "mounts" => c.mounts = keys::mounts(v, p)?,
        _ => p.skipped.push(format!("unknown key {key}")),
    }
    Ok(())
}

/// A YAML scalar as a string (`hostname: 1234` is an int to YAML).
pub(super) fn scalar(v: &Value) -> Res<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err("expected a string".into()),
    }
}

pub(super) fn boolean(v: &Value) -> Res<bool> {
    v.as_bool().ok_or_else(|| "expected true or false".into())
}

/// No `:` (the field separator) or line break: safe in `/etc/passwd`.
pub(super) fn field(s: String, what: &str) -> Res<String> {
    if s.contains([':', '\n', '\r', '\0']) {
        return Err(format!("{what} {s:?} contains ':' or a line break"));
    }
    Ok(s)
}

/// A user or group name: what shadow-utils accepts, minus oddities.
pub(super) fn name(s: String) -> Res<String> {
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

pub(super) fn strings(v: &Value) -> Res<Vec<String>> {
    match v {
        Value::Array(items) => items.iter().map(scalar).collect(),
        Value::Null => Ok(Vec::new()),
        _ => Err("expected a list".into()),
    }
}

/// A list or one string; keys never contain line breaks.
pub(super) fn ssh_keys(v: &Value) -> Res<Vec<String>> {
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
pub(super) fn list<T>(
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

pub(super) fn map(v: &Value) -> Res<&Map<String, Value>> {
    v.as_object().ok_or_else(|| "expected a mapping".into())
}
