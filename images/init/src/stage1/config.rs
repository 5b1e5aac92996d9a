//! `/etc/smelt/stage1.json`: what stage 1 looks for, written by
//! `smelt build` into the stage-1 initramfs.
//!
//! Schema `smelt.stage1/v1` (the `schema` must match exactly; unknown keys
//! anywhere are ignored so a newer builder can add some):
//!
//! ```json
//! { "schema": "smelt.stage1/v1",
//!   "root": { "sha256": "<64 hex>", "size": 12345678, "fstype": "squashfs" },
//!   "locate": [ { "iso": { "volume_id": "SMELT_…", "path": "/smelt/root.squashfs" } },
//!               { "partition": { "partuuid": "…", "partlabel": "smelt-root-a" } } ],
//!   "modules": ["squashfs", "…"],
//!   "timeout_secs": 30 }
//! ```
//!
//! `modules` defaults to none and `timeout_secs` to 30. A `locate` entry
//! may hold `iso`, `partition` or both (then tried in that order); an
//! entry with neither (a method from a later schema revision) is skipped,
//! but at least one usable method must remain. Non-goals: config from the
//! kernel command line, URLs (a later `locate` kind).

use std::fmt;
use std::time::Duration;

use serde_json::{Map, Value};

/// Where the stage-1 initramfs carries the config.
pub const PATH: &str = "/etc/smelt/stage1.json";
/// The only schema this init reads.
pub const SCHEMA: &str = "smelt.stage1/v1";
/// Size limit, checked before parsing.
pub const MAX_BYTES: usize = 64 * 1024;
/// `timeout_secs` when absent.
pub const DEFAULT_TIMEOUT_SECS: u64 = 30;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub root: Root,
    /// Methods in the order they are tried on each poll.
    pub locate: Vec<Method>,
    pub modules: Vec<String>,
    pub timeout: Duration,
}

/// The root filesystem image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    /// Lowercase hex SHA-256 of the image's `size` bytes.
    pub sha256: String,
    /// Exact byte length of the image.
    pub size: u64,
    /// Filesystem type to mount it as (`squashfs`).
    pub fstype: String,
}

/// One way to find the root image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// A file on an ISO 9660 volume with this volume identifier.
    Iso { volume_id: String, path: String },
    /// A GPT partition: by unique GUID (lowercase), else by name.
    Partition {
        partuuid: Option<String>,
        partlabel: Option<String>,
    },
}

impl fmt::Display for Method {
    /// As the not-found message lists what was tried.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Method::Iso { volume_id, path } => write!(f, "iso volume {volume_id} (path {path})"),
            Method::Partition {
                partuuid,
                partlabel,
            } => {
                write!(f, "partition")?;
                if let Some(u) = partuuid {
                    write!(f, " partuuid {u}")?;
                }
                if let Some(l) = partlabel {
                    write!(f, " partlabel {l}")?;
                }
                Ok(())
            }
        }
    }
}

/// A config that cannot be used; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PATH}: {}", self.0)
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

fn obj<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>, ConfigError> {
    v.as_object()
        .ok_or_else(|| ConfigError(format!("{what} must be an object")))
}

fn string(m: &Map<String, Value>, key: &str, what: &str) -> Result<Option<String>, ConfigError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(_) => err(format!("{what}.{key} must be a non-empty string")),
    }
}

fn required(m: &Map<String, Value>, key: &str, what: &str) -> Result<String, ConfigError> {
    string(m, key, what)?.ok_or_else(|| ConfigError(format!("{what}.{key} is missing")))
}

/// Parse and validate the file's bytes.
pub fn parse(bytes: &[u8]) -> Result<Config, ConfigError> {
    if bytes.len() > MAX_BYTES {
        return err(format!(
            "{} bytes, more than the {MAX_BYTES} allowed",
            bytes.len()
        ));
    }
    let v: Value =
        serde_json::from_slice(bytes).map_err(|e| ConfigError(format!("not valid JSON: {e}")))?;
    let top = obj(&v, "the config")?;
    match top.get("schema") {
        Some(Value::String(s)) if s == SCHEMA => {}
        Some(Value::String(s)) => {
            return err(format!("schema is \"{s}\", this init reads only {SCHEMA}"));
        }
        _ => return err(format!("schema is missing (want \"{SCHEMA}\")")),
    }
    let root = parse_root(
        top.get("root")
            .ok_or_else(|| ConfigError("root is missing".into()))?,
    )?;
    let locate = parse_locate(top.get("locate"))?;
    let modules = match top.get("modules") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|m| match m {
                Value::String(s) if !s.is_empty() => Ok(s.clone()),
                _ => err("modules must be a list of module names"),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return err("modules must be a list of module names"),
    };
    let secs = match top.get("timeout_secs") {
        None | Some(Value::Null) => DEFAULT_TIMEOUT_SECS,
        Some(t) => match t.as_u64() {
            Some(n @ 1..=86_400) => n,
            _ => return err("timeout_secs must be a whole number of seconds, 1 to 86400"),
        },
    };
    Ok(Config {
        root,
        locate,
        modules,
        timeout: Duration::from_secs(secs),
    })
}

fn parse_root(v: &Value) -> Result<Root, ConfigError> {
    let m = obj(v, "root")?;
    let sha256 = required(m, "sha256", "root")?.to_ascii_lowercase();
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return err(format!("root.sha256 \"{sha256}\" is not 64 hex digits"));
    }
    let size = match m.get("size") {
        None => return err("root.size is missing"),
        Some(s) => match s.as_u64() {
            Some(n) if n > 0 => n,
            _ => return err("root.size must be a positive whole number of bytes"),
        },
    };
    let fstype = required(m, "fstype", "root")?;
    Ok(Root {
        sha256,
        size,
        fstype,
    })
}

fn parse_locate(v: Option<&Value>) -> Result<Vec<Method>, ConfigError> {
    let Some(Value::Array(entries)) = v else {
        return err("locate must be a list of methods");
    };
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let what = format!("locate[{i}]");
        let m = obj(e, &what)?;
        if let Some(iso) = m.get("iso") {
            let w = format!("{what}.iso");
            let iso = obj(iso, &w)?;
            let volume_id = required(iso, "volume_id", &w)?;
            if volume_id.len() > 32 {
                return err(format!("{w}.volume_id is longer than 32 bytes"));
            }
            let path = required(iso, "path", &w)?;
            if !path.starts_with('/') || path.split('/').any(|c| c == "..") {
                return err(format!("{w}.path \"{path}\" must be absolute, without .."));
            }
            out.push(Method::Iso { volume_id, path });
        }
        if let Some(p) = m.get("partition") {
            out.push(parse_partition(p, &format!("{what}.partition"))?);
        }
    }
    if out.is_empty() {
        return err("locate has no iso or partition method");
    }
    Ok(out)
}

fn parse_partition(v: &Value, what: &str) -> Result<Method, ConfigError> {
    let p = obj(v, what)?;
    let partuuid = string(p, "partuuid", what)?.map(|u| u.to_ascii_lowercase());
    if let Some(u) = &partuuid
        && !is_guid(u)
    {
        return err(format!(
            "{what}.partuuid \"{u}\" is not a GUID (8-4-4-4-12 hex)"
        ));
    }
    let partlabel = string(p, "partlabel", what)?;
    if partuuid.is_none() && partlabel.is_none() {
        return err(format!("{what} needs partuuid or partlabel"));
    }
    Ok(Method::Partition {
        partuuid,
        partlabel,
    })
}

fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn good() -> String {
        format!(
            r#"{{"schema":"smelt.stage1/v1",
            "root":{{"sha256":"{}","size":4,"fstype":"squashfs","future":1}},
            "locate":[{{"iso":{{"volume_id":"SMELT_1A2B3C4D","path":"/smelt/root.squashfs"}}}},
                      {{"partition":{{"partuuid":"0F0E0D0C-0B0A-0908-0706-050403020100","partlabel":"smelt-root-a"}}}},
                      {{"url":{{"href":"http://x"}}}}],
            "modules":["squashfs","overlay"],"timeout_secs":5,"extra":true}}"#,
            SHA.to_uppercase()
        )
    }

    #[test]
    fn parses_the_contract_example() {
        let c = parse(good().as_bytes()).unwrap();
        assert_eq!(
            c.root,
            Root {
                sha256: SHA.into(),
                size: 4,
                fstype: "squashfs".into()
            }
        );
        assert_eq!(
            c.locate,
            [
                Method::Iso {
                    volume_id: "SMELT_1A2B3C4D".into(),
                    path: "/smelt/root.squashfs".into()
                },
                Method::Partition {
                    partuuid: Some("0f0e0d0c-0b0a-0908-0706-050403020100".into()),
                    partlabel: Some("smelt-root-a".into())
                },
            ]
        );
        assert_eq!(c.modules, ["squashfs", "overlay"]);
        assert_eq!(c.timeout, Duration::from_secs(5));
        assert_eq!(
            c.locate[1].to_string(),
            "partition partuuid 0f0e0d0c-0b0a-0908-0706-050403020100 partlabel smelt-root-a"
        );
    }

    #[test]
    fn defaults_for_modules_and_timeout() {
        let c = parse(
            format!(r#"{{"schema":"smelt.stage1/v1","root":{{"sha256":"{SHA}","size":1,"fstype":"squashfs"}},"locate":[{{"partition":{{"partlabel":"r"}}}}]}}"#)
                .as_bytes(),
        )
        .unwrap();
        assert!(c.modules.is_empty());
        assert_eq!(c.timeout, Duration::from_secs(30));
    }

    fn msg(json: &str) -> String {
        parse(json.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn bad_schema_is_a_clear_error() {
        let j = good().replace("smelt.stage1/v1", "smelt.stage1/v2");
        assert_eq!(
            msg(&j),
            "/etc/smelt/stage1.json: schema is \"smelt.stage1/v2\", this init reads only smelt.stage1/v1"
        );
        assert_eq!(
            msg("{}"),
            "/etc/smelt/stage1.json: schema is missing (want \"smelt.stage1/v1\")"
        );
        assert!(msg("{").contains("not valid JSON"));
        assert!(msg(&" ".repeat(MAX_BYTES + 1)).contains("more than the 65536 allowed"));
    }

    #[test]
    fn missing_or_bad_fields_name_the_field() {
        let g = good();
        let cases = [
            (g.replace(r#""size":4,"#, ""), "root.size is missing"),
            (
                g.replace(r#""size":4"#, r#""size":-1"#),
                "root.size must be",
            ),
            (
                g.replace(&SHA.to_uppercase(), "abc"),
                "root.sha256 \"abc\" is not 64 hex digits",
            ),
            (
                g.replace(r#","fstype":"squashfs""#, ""),
                "root.fstype is missing",
            ),
            (
                g.replace("SMELT_1A2B3C4D", ""),
                "locate[0].iso.volume_id must be a non-empty string",
            ),
            (
                g.replace(r#","path":"/smelt/root.squashfs""#, ""),
                "locate[0].iso.path is missing",
            ),
            (
                g.replace("/smelt/root.squashfs", "smelt/../x"),
                "must be absolute",
            ),
            (
                g.replace("0F0E0D0C-", "0F0E0D0C"),
                "locate[1].partition.partuuid",
            ),
            (
                g.replace(r#""timeout_secs":5"#, r#""timeout_secs":0"#),
                "timeout_secs must be",
            ),
            (
                g.replace(r#"["squashfs","overlay"]"#, "[1]"),
                "modules must be a list",
            ),
        ];
        for (json, want) in cases {
            let m = msg(&json);
            assert!(m.contains(want), "want {want:?} in {m:?}");
        }
        let none = format!(
            r#"{{"schema":"smelt.stage1/v1","root":{{"sha256":"{SHA}","size":1,"fstype":"squashfs"}},"locate":[{{"url":{{}}}}]}}"#
        );
        assert!(msg(&none).ends_with("locate has no iso or partition method"));
        let empty_part = none.replace(r#"{"url":{}}"#, r#"{"partition":{}}"#);
        assert!(msg(&empty_part).ends_with("locate[0].partition needs partuuid or partlabel"));
        assert!(
            msg(&none.replace(r#","locate":[{"url":{}}]"#, ""))
                .ends_with("locate must be a list of methods")
        );
        assert!(msg(&none.replace(r#""root":{"#, r#""rooot":{"#)).ends_with("root is missing"));
    }
}
