//! Kconfig text: a kernel's `.config` and smelt's option fragments.
//!
//! A `.config` as `make` writes it (scripts/kconfig/confdata.c): blank
//! lines, `# comment` lines, `# CONFIG_X is not set`, and `CONFIG_X=VALUE`
//! where VALUE is `y`, `m`, `n`, a decimal or `0x` hex number, or a
//! double-quoted string with `\"` and `\\` escapes. Anything else is an
//! error naming `file:line`, so a truncated or foreign file is never taken
//! for a kernel without options. When an option appears twice the last one
//! wins, as in Kconfig.
//!
//! A fragment (`kernel-configs/*.cfg`) uses the same line syntax with the
//! values `y` (built in) and `y|m` (built in or a module), and every option
//! must have a `#` comment above it saying why it is needed: the first line
//! of the nearest comment block in the same paragraph is the reason shown.
//! Non-goals: `make olddefconfig` semantics (dependencies, defaults).

use std::collections::BTreeMap;
use std::fmt;

/// The largest `.config` smelt reads: real ones are 100–300 KiB.
pub const MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;

/// A malformed line, as `file:line: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct ParseError {
    pub file: String,
    /// 1-based.
    pub line: usize,
    pub message: String,
}

/// An option's value in a `.config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Yes,
    Module,
    /// `=n` or `# CONFIG_X is not set`.
    No,
    /// Decimal or `0x` hex, as written.
    Number(String),
    /// The string between the quotes, escapes resolved.
    Str(String),
}

/// A parsed `.config`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelConfig {
    values: BTreeMap<String, Value>,
    /// From the header `# Linux/x86 6.1.76 Kernel Configuration`.
    pub version: Option<String>,
}

impl KernelConfig {
    /// Parse `.config` text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<KernelConfig, ParseError> {
        let mut cfg = KernelConfig::default();
        for (i, raw) in text.lines().enumerate() {
            let err = |message: String| ParseError {
                file: file.to_string(),
                line: i + 1,
                message,
            };
            let line = raw.trim();
            if line.is_empty() {
                continue;
            }
            if let Some(comment) = line.strip_prefix('#') {
                let comment = comment.trim();
                if let Some(name) = not_set(comment) {
                    cfg.values.insert(name.to_string(), Value::No);
                } else if cfg.version.is_none() {
                    cfg.version = header_version(comment);
                }
                continue;
            }
            let (name, value) = assignment(line).map_err(err)?;
            let value = parse_value(value).map_err(|m| err(format!("{name}: {m}")))?;
            cfg.values.insert(name.to_string(), value);
        }
        Ok(cfg)
    }

    /// The option's value; `None` when the file does not mention it (a
    /// dependency is off, or the option does not exist in this kernel).
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values.get(name)
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// `CONFIG_X is not set` → `CONFIG_X`.
fn not_set(comment: &str) -> Option<&str> {
    let name = comment.strip_suffix(" is not set")?;
    valid_name(name).then_some(name)
}

/// `Linux/x86 6.1.76 Kernel Configuration` → `6.1.76`.
fn header_version(comment: &str) -> Option<String> {
    let rest = comment.strip_prefix("Linux/")?;
    let rest = rest.strip_suffix(" Kernel Configuration")?;
    let (_arch, version) = rest.split_once(' ')?;
    Some(version.trim().to_string()).filter(|v| !v.is_empty())
}

fn valid_name(name: &str) -> bool {
    name.strip_prefix("CONFIG_").is_some_and(|rest| {
        !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    })
}

/// `CONFIG_X=VALUE` → (`CONFIG_X`, `VALUE`).
fn assignment(line: &str) -> Result<(&str, &str), String> {
    match line.split_once('=') {
        Some((name, value)) if valid_name(name) => Ok((name, value)),
        _ => Err(format!(
            "expected CONFIG_NAME=VALUE or a # comment, found {line:?}"
        )),
    }
}

fn parse_value(v: &str) -> Result<Value, String> {
    match v {
        "y" => return Ok(Value::Yes),
        "m" => return Ok(Value::Module),
        "n" => return Ok(Value::No),
        _ => {}
    }
    if let Some(body) = v.strip_prefix('"') {
        return unquote(body).map(Value::Str);
    }
    let digits = v.strip_prefix('-').unwrap_or(v);
    let number = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(hex) => !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        None => !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()),
    };
    if number {
        Ok(Value::Number(v.to_string()))
    } else {
        Err(format!(
            "value {v:?} is not y, m, n, a number or a quoted string"
        ))
    }
}

/// The rest of a quoted string after its opening `"`.
fn unquote(body: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e) => out.push(e),
                None => break,
            },
            '"' => {
                let rest: String = chars.collect();
                return if rest.trim().is_empty() {
                    Ok(out)
                } else {
                    Err(format!("text {rest:?} after the closing quote"))
                };
            }
            c => out.push(c),
        }
    }
    Err("unterminated string".to_string())
}

/// What a fragment asks of an option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Need {
    /// `=y`: built in.
    BuiltIn,
    /// `=y|m`: built in or a module.
    BuiltInOrModule,
}

impl Need {
    pub fn satisfied_by(self, v: Option<&Value>) -> bool {
        matches!(
            (self, v),
            (_, Some(Value::Yes)) | (Need::BuiltInOrModule, Some(Value::Module))
        )
    }

    /// As written in a fragment: `y`, `y|m`.
    pub fn as_str(self) -> &'static str {
        match self {
            Need::BuiltIn => "y",
            Need::BuiltInOrModule => "y|m",
        }
    }
}

impl fmt::Display for Need {
    /// As the check reports it: `=y`, `=y or =m`.
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Need::BuiltIn => "=y",
            Need::BuiltInOrModule => "=y or =m",
        })
    }
}

/// One option line of a fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// `CONFIG_X`.
    pub option: String,
    pub need: Need,
    /// The first line of the comment block above the option.
    pub reason: String,
}

/// Parse a fragment; `file` names it in errors.
pub fn parse_fragment(text: &str, file: &str) -> Result<Vec<Requirement>, ParseError> {
    let mut out: Vec<Requirement> = Vec::new();
    // The first line of the comment block in effect, and whether an option
    // has followed it (a comment after an option starts a new block).
    let mut block: Option<String> = None;
    let mut after_option = false;
    for (i, raw) in text.lines().enumerate() {
        let err = |message: String| ParseError {
            file: file.to_string(),
            line: i + 1,
            message,
        };
        let line = raw.trim();
        if line.is_empty() {
            block = None;
            after_option = false;
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            if after_option {
                block = None;
                after_option = false;
            }
            let comment = comment.trim();
            if block.is_none() && !comment.is_empty() {
                block = Some(comment.to_string());
            }
            continue;
        }
        let (name, value) = assignment(line).map_err(err)?;
        let need = match value {
            "y" => Need::BuiltIn,
            "y|m" | "m|y" => Need::BuiltInOrModule,
            other => {
                return Err(err(format!(
                    "{name}: a fragment asks for y or y|m, not {other:?}"
                )));
            }
        };
        let Some(reason) = block.clone() else {
            return Err(err(format!(
                "{name} has no # comment above it saying why it is needed"
            )));
        };
        if out.iter().any(|r| r.option == name) {
            return Err(err(format!("{name} is listed twice")));
        }
        out.push(Requirement {
            option: name.to_string(),
            need,
            reason,
        });
        after_option = true;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "#\n\
        # Automatically generated file; DO NOT EDIT.\n\
        # Linux/x86 6.1.76 Kernel Configuration\n\
        #\n\
        CONFIG_CC_VERSION_TEXT=\"gcc-12 (Debian 12.2.0-14) 12.2.0\"\n\
        CONFIG_LOCALVERSION=\"\"\n\
        CONFIG_CMDLINE=\"a \\\"quoted\\\" \\\\ word\"\n\
        CONFIG_HZ=250\n\
        CONFIG_PHYSICAL_START=0x1000000\n\
        CONFIG_NEG=-1\n\
        \n\
        #\n\
        # General setup\n\
        #\n\
        CONFIG_DEVTMPFS=y\n\
        CONFIG_USB_STORAGE=m\n\
        CONFIG_EXPLICIT_NO=n\n\
        # CONFIG_SATA_AHCI is not set\n   \n\
        CONFIG_TRAILING=y   \n";

    #[test]
    fn parses_every_value_kind() {
        let c = KernelConfig::parse(CONFIG, "config").unwrap();
        assert_eq!(c.version.as_deref(), Some("6.1.76"));
        assert_eq!(c.get("CONFIG_DEVTMPFS"), Some(&Value::Yes));
        assert_eq!(c.get("CONFIG_USB_STORAGE"), Some(&Value::Module));
        assert_eq!(c.get("CONFIG_EXPLICIT_NO"), Some(&Value::No));
        assert_eq!(c.get("CONFIG_SATA_AHCI"), Some(&Value::No));
        assert_eq!(c.get("CONFIG_HZ"), Some(&Value::Number("250".into())));
        assert_eq!(
            c.get("CONFIG_PHYSICAL_START"),
            Some(&Value::Number("0x1000000".into()))
        );
        assert_eq!(c.get("CONFIG_NEG"), Some(&Value::Number("-1".into())));
        assert_eq!(
            c.get("CONFIG_LOCALVERSION"),
            Some(&Value::Str(String::new()))
        );
        assert_eq!(
            c.get("CONFIG_CMDLINE"),
            Some(&Value::Str(r#"a "quoted" \ word"#.into()))
        );
        assert_eq!(c.get("CONFIG_TRAILING"), Some(&Value::Yes));
        assert_eq!(c.get("CONFIG_ABSENT"), None);
        assert_eq!(c.len(), 11);
    }

    #[test]
    fn comments_are_not_options() {
        let c = KernelConfig::parse(
            "# CONFIG_X=y\n#CONFIG_Y is not set but more\n# CONFIG_Z is not set\n",
            "c",
        )
        .unwrap();
        assert_eq!(c.get("CONFIG_X"), None);
        assert_eq!(c.get("CONFIG_Y"), None);
        assert_eq!(c.get("CONFIG_Z"), Some(&Value::No));
        assert_eq!(c.version, None);
    }

    #[test]
    fn the_last_assignment_wins() {
        let c = KernelConfig::parse("CONFIG_A=m\nCONFIG_A=y\n", "c").unwrap();
        assert_eq!(c.get("CONFIG_A"), Some(&Value::Yes));
    }

    fn parse_err(text: &str) -> String {
        KernelConfig::parse(text, "kernel.config")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn garbage_lines_name_file_and_line() {
        assert_eq!(
            parse_err("CONFIG_A=y\n\nthis is not a config\n"),
            "kernel.config:3: expected CONFIG_NAME=VALUE or a # comment, found \"this is not a config\""
        );
        assert_eq!(
            parse_err("CONFIG_A=yes\n"),
            "kernel.config:1: CONFIG_A: value \"yes\" is not y, m, n, a number or a quoted string"
        );
        assert_eq!(
            parse_err("CONFIG_A=\n"),
            "kernel.config:1: CONFIG_A: value \"\" is not y, m, n, a number or a quoted string"
        );
        assert_eq!(
            parse_err("CONFIG_S=\"open\n"),
            "kernel.config:1: CONFIG_S: unterminated string"
        );
        assert_eq!(
            parse_err("CONFIG_S=\"a\" b\n"),
            "kernel.config:1: CONFIG_S: text \" b\" after the closing quote"
        );
        assert!(parse_err("FOO=y\n").starts_with("kernel.config:1: expected CONFIG_NAME"));
        assert!(parse_err("CONFIG_=y\n").starts_with("kernel.config:1: expected CONFIG_NAME"));
        assert!(parse_err("CONFIG_A-B=y\n").starts_with("kernel.config:1: expected"));
        assert!(parse_err("\u{7f}ELF\u{2}\u{1}\n").starts_with("kernel.config:1: expected"));
    }

    #[test]
    fn fragment_reasons_come_from_the_comment_above() {
        let text = "# header: what this fragment is for\n\
            # more header\n\
            \n\
            # the first reason\n\
            # kernel/Kconfig citation\n\
            CONFIG_A=y\n\
            CONFIG_B=y|m\n\
            # a second reason\n\
            CONFIG_C=m|y\n";
        let r = parse_fragment(text, "f.cfg").unwrap();
        let got: Vec<(&str, Need, &str)> = r
            .iter()
            .map(|r| (r.option.as_str(), r.need, r.reason.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("CONFIG_A", Need::BuiltIn, "the first reason"),
                ("CONFIG_B", Need::BuiltInOrModule, "the first reason"),
                ("CONFIG_C", Need::BuiltInOrModule, "a second reason"),
            ]
        );
    }

    fn fragment_err(text: &str) -> String {
        parse_fragment(text, "base.cfg").unwrap_err().to_string()
    }

    #[test]
    fn fragment_errors_name_file_and_line() {
        assert_eq!(
            fragment_err("# why\nCONFIG_A=y\n\nCONFIG_B=y\n"),
            "base.cfg:4: CONFIG_B has no # comment above it saying why it is needed"
        );
        assert_eq!(
            fragment_err("# why\nCONFIG_A=m\n"),
            "base.cfg:2: CONFIG_A: a fragment asks for y or y|m, not \"m\""
        );
        assert_eq!(
            fragment_err("# why\nCONFIG_A=y\n# again\nCONFIG_A=y|m\n"),
            "base.cfg:4: CONFIG_A is listed twice"
        );
        assert_eq!(
            fragment_err("# why\nCONFIG_A y\n"),
            "base.cfg:2: expected CONFIG_NAME=VALUE or a # comment, found \"CONFIG_A y\""
        );
        assert_eq!(
            fragment_err("#\nCONFIG_A=y\n"),
            "base.cfg:2: CONFIG_A has no # comment above it saying why it is needed"
        );
    }

    #[test]
    fn needs_are_met_by_the_right_values() {
        use Need::*;
        assert!(BuiltIn.satisfied_by(Some(&Value::Yes)));
        assert!(!BuiltIn.satisfied_by(Some(&Value::Module)));
        assert!(!BuiltIn.satisfied_by(Some(&Value::No)));
        assert!(!BuiltIn.satisfied_by(None));
        assert!(BuiltInOrModule.satisfied_by(Some(&Value::Module)));
        assert!(BuiltInOrModule.satisfied_by(Some(&Value::Yes)));
        assert!(!BuiltInOrModule.satisfied_by(Some(&Value::Str("y".into()))));
        assert!(!BuiltInOrModule.satisfied_by(None));
    }
}
