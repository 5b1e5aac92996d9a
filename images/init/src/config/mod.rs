//! NoCloud user-data and meta-data: parsed and applied by the init, every
//! boot (the root is a tmpfs; nothing persists, so there is no
//! per-instance state).
//!
//! The boot sequence (`crate::run`) calls three steps, in this order
//! (docs/cloud-config.md):
//!
//! 1. [`apply_early`]: parse the seed, set hostname/fqdn, run `bootcmd`;
//! 2. (the caller brings up the network from [`Applied::network_config`])
//! 3. [`apply_system`]: `write_files` not deferred, `users`,
//!    `ssh_authorized_keys`, `ntp`, `timezone`, `mounts`, `/run/config`;
//! 4. (the caller runs the onboot containers)
//! 5. [`apply_late`]: `write_files` with `defer: true`, `runcmd`, the final
//!    `/run/config/smelt.json`.
//!
//! Policy: nothing in the config can stop the system from coming up. Every
//! failure is one console line and one entry in [`Report::errors`]; keys
//! the init does not know are listed in [`Report::skipped`] and ignored.
//! The YAML is read loosely (into a `serde_json::Value`, YAML 1.1 octal
//! `0644` as cloud-init's PyYAML reads it) and walked by hand in
//! [`parse`], so one bad key never hides the others.
//!
//! Non-goals: cloud-init's module list and frequencies, MIME multipart,
//! shell-script and `#include` user-data, jinja templates, vendor-data,
//! package installation, `sudo` rules, plain-text passwords, swap.

mod accounts;
mod commands;
mod files;
mod hostname;
mod keys;
pub mod parse;
mod runconfig;
pub mod sources;
mod system;
#[cfg(test)]
mod tests;
mod users;

use std::collections::BTreeMap;

use crate::sys::Sys;
pub use parse::{CloudConfig, MetaData, MountEntry, Ntp, User, WriteFile};

/// Where `/run/config` lives (LinuxKit's metadata package layout).
pub const RUN_CONFIG: &str = "/run/config";

/// One NoCloud seed as found at boot ([`sources`]): the three files, any
/// other files of the source, and where from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seed {
    /// "http://…/", "slot /dev/vda@24576", "CIDATA /dev/vda5", "initrd".
    pub source: String,
    pub meta_data: Vec<u8>,
    pub user_data: Vec<u8>,
    pub network_config: Option<Vec<u8>>,
    /// Every other file of the source (`smelt inject --file`), by relative
    /// path.
    pub files: BTreeMap<String, Vec<u8>>,
}

/// What was applied, skipped and what failed; `/run/config/smelt.json`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Top-level keys applied, in order (`hostname`, `bootcmd`, …).
    pub applied: Vec<String>,
    /// Unknown or unsupported keys and entries, one line each.
    pub skipped: Vec<String>,
    pub errors: Vec<String>,
}

impl Report {
    fn applied(&mut self, key: &str) {
        if !self.applied.iter().any(|k| k == key) {
            self.applied.push(key.to_string());
        }
    }

    fn skip(&mut self, sys: &dyn Sys, msg: String) {
        sys.log(&format!("cloud-config: skipped {msg}"));
        self.skipped.push(msg);
    }

    fn error(&mut self, sys: &dyn Sys, msg: String) {
        sys.log(&format!("cloud-config: error: {msg}"));
        self.errors.push(msg);
    }
}

/// The parsed seed and what has been done with it so far; passed from one
/// step to the next.
#[derive(Debug, Default)]
pub struct Applied {
    pub source: String,
    pub meta: MetaData,
    /// The raw user-data, for `/run/config/userdata`.
    pub user_data: Vec<u8>,
    /// The seed's `network-config`, untouched: the network code applies it.
    pub network_config: Option<Vec<u8>>,
    pub config: CloudConfig,
    /// The short hostname set, if any.
    pub hostname: Option<String>,
    pub report: Report,
}

/// Parse the seed, set the hostname and run `bootcmd`.
pub fn apply_early(sys: &dyn Sys, seed: &Seed) -> Applied {
    sys.log(&format!("cloud-config: seed from {}", seed.source));
    let mut problems = parse::Problems::default();
    let meta = parse::parse_meta_data(&seed.meta_data, &mut problems);
    let config = parse::parse_user_data(&seed.user_data, &mut problems);
    let mut applied = Applied {
        source: seed.source.clone(),
        meta,
        user_data: seed.user_data.clone(),
        network_config: seed.network_config.clone(),
        config,
        ..Applied::default()
    };
    for msg in problems.skipped {
        applied.report.skip(sys, msg);
    }
    for msg in problems.errors {
        applied.report.error(sys, msg);
    }
    hostname::apply(sys, &mut applied);
    commands::run_all(sys, "bootcmd", &applied.config.bootcmd, &mut applied.report);
    applied
}

/// `write_files` (not deferred), `users`, `ssh_authorized_keys`, `ntp`,
/// `timezone`, `mounts`, then `/run/config`.
pub fn apply_system(sys: &dyn Sys, applied: &mut Applied) {
    let cfg = &applied.config;
    let report = &mut applied.report;
    files::write_all(sys, &cfg.write_files, false, report);
    users::apply(sys, cfg, report);
    system::ntp(sys, cfg.ntp.as_ref(), report);
    system::timezone(sys, cfg.timezone.as_deref(), report);
    system::mounts(sys, &cfg.mounts, report);
    runconfig::write(sys, applied);
}

/// `write_files` with `defer: true`, `runcmd`, and the final
/// `/run/config/smelt.json`.
pub fn apply_late(sys: &dyn Sys, applied: &mut Applied) {
    let cfg = &applied.config;
    let report = &mut applied.report;
    files::write_all(sys, &cfg.write_files, true, report);
    commands::run_all(sys, "runcmd", &cfg.runcmd, report);
    runconfig::write_status(sys, applied);
    let r = &applied.report;
    sys.log(&format!(
        "cloud-config: {} applied, {} skipped, {} errors",
        r.applied.len(),
        r.skipped.len(),
        r.errors.len()
    ));
}
