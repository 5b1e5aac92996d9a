//! `/run/config`: LinuxKit's metadata package layout, for containers that
//! read it (`/run/config/userdata`, `/run/config/hostname`,
//! `/run/config/ssh/authorized_keys`), plus smelt's own report
//! `/run/config/smelt.json`.

use serde_json::json;

use super::{Applied, RUN_CONFIG};
use crate::sys::Sys;

/// The files of the layout, and a first `smelt.json`.
pub fn write(sys: &dyn Sys, applied: &mut Applied) {
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    if !applied.user_data.is_empty() {
        files.push((format!("{RUN_CONFIG}/userdata"), applied.user_data.clone()));
    }
    if let Some(h) = &applied.hostname {
        files.push((
            format!("{RUN_CONFIG}/hostname"),
            format!("{h}\n").into_bytes(),
        ));
    }
    let keys = all_keys(applied);
    if !keys.is_empty() {
        let text = keys.join("\n") + "\n";
        files.push((
            format!("{RUN_CONFIG}/ssh/authorized_keys"),
            text.into_bytes(),
        ));
    }
    for (path, data) in files {
        let dir = path.rsplit_once('/').map_or(RUN_CONFIG, |(d, _)| d);
        let r = sys
            .mkdir_all(dir, 0o755)
            .and_then(|()| sys.write_file(&path, &data));
        if let Err(e) = r {
            applied.report.error(sys, format!("writing {path}: {e}"));
        }
    }
    write_status(sys, applied);
}

/// Top-level keys, then each user's, without repeats.
fn all_keys(applied: &Applied) -> Vec<String> {
    let cfg = &applied.config;
    let mut keys: Vec<String> = Vec::new();
    let users = cfg.users.iter().flat_map(|u| &u.ssh_authorized_keys);
    for k in cfg.ssh_authorized_keys.iter().chain(users) {
        if !keys.contains(k) {
            keys.push(k.clone());
        }
    }
    keys
}

/// The report as JSON.
pub fn status_json(applied: &Applied) -> String {
    let r = &applied.report;
    let v = json!({
        "source": applied.source,
        "instance_id": applied.meta.instance_id,
        "applied": r.applied,
        "skipped": r.skipped,
        "errors": r.errors,
    });
    let mut text = serde_json::to_string_pretty(&v).unwrap_or_default();
    text.push('\n');
    text
}

/// `/run/config/smelt.json`; a failure is only logged (it has no report
/// left to go into).
pub fn write_status(sys: &dyn Sys, applied: &Applied) {
    let path = format!("{RUN_CONFIG}/smelt.json");
    let r = sys
        .mkdir_all(RUN_CONFIG, 0o755)
        .and_then(|()| sys.write_file(&path, status_json(applied).as_bytes()));
    if let Err(e) = r {
        sys.log(&format!("cloud-config: error: writing {path}: {e}"));
    }
}
