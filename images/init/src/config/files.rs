//! `write_files`: decode each entry's content, write or append it, set its
//! mode and owner (cloud-init's `cc_write_files`).
//!
//! Encodings as cloud-init: `text/plain` (default), `b64`/`base64`,
//! `gz`/`gzip`, and gzip inside base64 (`gz+b64`, `gzip+base64`,
//! `gz+base64`, `gzip+b64`). Deferred entries are written by the late step,
//! after `users`, so their owner may be a user the config creates.

use std::io::Read;

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use super::Report;
use super::accounts::Accounts;
use super::parse::WriteFile;
use crate::sys::Sys;

/// One decompressed `write_files` entry may not exceed this (a gzip bomb
/// must not fill the tmpfs root).
pub const MAX_FILE: u64 = 64 << 20;

/// Standard alphabet; padding optional, as Python's `b64decode` is lenient.
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn b64(s: &str) -> Result<Vec<u8>, String> {
    let clean: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    B64.decode(clean).map_err(|e| format!("base64: {e}"))
}

/// gunzip `data`, at most `limit` bytes out.
pub fn gunzip(data: &[u8], limit: u64) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("gzip: {e}"))?;
    if out.len() as u64 > limit {
        return Err(format!("gzip: more than {limit} bytes decompressed"));
    }
    Ok(out)
}

/// The bytes `content` stands for under `encoding`.
pub fn decode(content: &str, encoding: &str) -> Result<Vec<u8>, String> {
    match encoding.trim().to_ascii_lowercase().as_str() {
        "" | "text/plain" => Ok(content.as_bytes().to_vec()),
        "b64" | "base64" => b64(content),
        // Raw gzip cannot be YAML text; cloud-init users write it as
        // `!!binary` base64, which reaches us as that text.
        "gz" | "gzip" if content.as_bytes().starts_with(&[0x1f, 0x8b]) => {
            gunzip(content.as_bytes(), MAX_FILE)
        }
        "gz" | "gzip" => gunzip(&b64(content)?, MAX_FILE),
        "gz+b64" | "gzip+base64" | "gz+base64" | "gzip+b64" => gunzip(&b64(content)?, MAX_FILE),
        other => Err(format!("unknown encoding {other:?}")),
    }
}

/// Write the entries whose `defer` is `deferred`.
pub fn write_all(sys: &dyn Sys, files: &[WriteFile], deferred: bool, report: &mut Report) {
    let todo: Vec<&WriteFile> = files.iter().filter(|f| f.defer == deferred).collect();
    if todo.is_empty() {
        return;
    }
    // Read once per step: deferred entries see the users just created.
    let accounts = Accounts::load(sys);
    for f in todo {
        match write_one(sys, &accounts, f) {
            Ok(()) => {
                report.applied("write_files");
                sys.log(&format!(
                    "cloud-config: wrote {} ({} bytes, mode {:04o}{})",
                    f.path,
                    f.content.len(),
                    f.permissions,
                    if f.append { ", appended" } else { "" }
                ));
            }
            Err(e) => report.error(sys, format!("write_files {}: {e}", f.path)),
        }
    }
}

fn write_one(sys: &dyn Sys, accounts: &Accounts, f: &WriteFile) -> Result<(), String> {
    // Resolve the owner first: an unknown user writes nothing.
    let owner = f.owner.as_deref().map(|o| accounts.owner(o)).transpose()?;
    if let Some(dir) = std::path::Path::new(&f.path).parent() {
        let dir = dir.to_string_lossy();
        sys.mkdir_all(&dir, 0o755)
            .map_err(|e| format!("creating {dir}: {e}"))?;
    }
    let r = if f.append {
        sys.append_file(&f.path, &f.content)
    } else {
        sys.write_file(&f.path, &f.content)
    };
    r.map_err(|e| e.to_string())?;
    sys.chmod(&f.path, f.permissions)
        .map_err(|e| format!("chmod: {e}"))?;
    if let Some((uid, gid)) = owner {
        sys.chown(&f.path, uid, gid)
            .map_err(|e| format!("chown {uid}:{gid}: {e}"))?;
    }
    Ok(())
}
