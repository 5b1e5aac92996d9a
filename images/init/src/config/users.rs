//! `users` and top-level `ssh_authorized_keys` (cloud-init's
//! `cc_users_groups` and `cc_ssh`'s key part).
//!
//! Each user gets a passwd line (uid from 1000 up, or `uid`), a primary
//! group of its name, a shadow line (locked unless `lock_passwd: false`),
//! membership of `groups` (created when missing), `/home/NAME` (0700) and
//! `.ssh/authorized_keys` (0700/0600), owned by the user. A user already in
//! `/etc/passwd` keeps its line; its keys and groups are still added.
//! Top-level keys go to root's `/root/.ssh/authorized_keys`.

use super::Report;
use super::accounts::{Accounts, Entry};
use super::parse::{CloudConfig, User};
use crate::sys::Sys;

/// Create the users and install every key.
pub fn apply(sys: &dyn Sys, cfg: &CloudConfig, report: &mut Report) {
    if !cfg.users.is_empty() {
        let mut accounts = Accounts::load(sys);
        let mut made = Vec::new();
        for u in &cfg.users {
            match add(sys, &mut accounts, u) {
                Ok(e) => made.push((u, e)),
                Err(e) => report.error(sys, format!("users {}: {e}", u.name)),
            }
        }
        // Homes after the files are saved: nothing is owned by a uid that
        // is not in /etc/passwd.
        match accounts.save(sys) {
            Ok(()) => {
                if !made.is_empty() {
                    report.applied("users");
                }
                for (u, e) in made {
                    if let Err(err) = home(sys, u, &e) {
                        report.error(sys, format!("users {}: {err}", u.name));
                    }
                }
            }
            Err(e) => report.error(sys, format!("users: writing account files: {e}")),
        }
    }
    if !cfg.ssh_authorized_keys.is_empty() {
        let root = Entry {
            uid: 0,
            gid: 0,
            home: "/root".into(),
        };
        match install_keys(sys, &root, &cfg.ssh_authorized_keys) {
            Ok(()) => {
                sys.log(&format!(
                    "cloud-config: {} ssh keys for root",
                    cfg.ssh_authorized_keys.len()
                ));
                report.applied("ssh_authorized_keys");
            }
            Err(e) => report.error(sys, format!("ssh_authorized_keys: {e}")),
        }
    }
}

/// The account lines of one user; its ids and home.
fn add(sys: &dyn Sys, a: &mut Accounts, u: &User) -> Result<Entry, String> {
    let entry = match a.user(&u.name) {
        Some(e) => {
            sys.log(&format!(
                "cloud-config: user {} exists (uid {}), adding keys and groups",
                u.name, e.uid
            ));
            e
        }
        None => {
            let e = a.add_user(&u.name, u.uid, &u.gecos, &u.homedir, &u.shell)?;
            a.add_shadow(&u.name, u.passwd.as_deref(), u.lock_passwd);
            sys.log(&format!(
                "cloud-config: user {} uid {} gid {}{}",
                u.name,
                e.uid,
                e.gid,
                if u.lock_passwd {
                    ", password locked"
                } else {
                    ""
                }
            ));
            e
        }
    };
    for g in &u.groups {
        if a.gid(g).is_none() {
            a.add_group(g, None).ok_or("no free gid")?;
            sys.log(&format!("cloud-config: group {g} created"));
        }
        a.add_member(g, &u.name);
    }
    Ok(entry)
}

/// `/home/NAME` owned by the user, and its keys.
fn home(sys: &dyn Sys, u: &User, e: &Entry) -> Result<(), String> {
    if let Some(parent) = std::path::Path::new(&e.home).parent() {
        let parent = parent.to_string_lossy();
        if !sys.exists(&parent) {
            sys.mkdir_all(&parent, 0o755)
                .map_err(|err| format!("creating {parent}: {err}"))?;
        }
    }
    if !sys.exists(&e.home) {
        sys.mkdir_all(&e.home, 0o700)
            .map_err(|err| format!("creating {}: {err}", e.home))?;
        sys.chown(&e.home, e.uid, e.gid)
            .map_err(|err| format!("chown {}: {err}", e.home))?;
    }
    if u.ssh_authorized_keys.is_empty() {
        return Ok(());
    }
    install_keys(sys, e, &u.ssh_authorized_keys)
}

/// `HOME/.ssh/authorized_keys`: the keys already there, then new ones.
fn install_keys(sys: &dyn Sys, e: &Entry, keys: &[String]) -> Result<(), String> {
    let dir = format!("{}/.ssh", e.home.trim_end_matches('/'));
    let file = format!("{dir}/authorized_keys");
    let io = |what: &str, err: std::io::Error| format!("{what}: {err}");
    sys.mkdir_all(&dir, 0o700).map_err(|err| io(&dir, err))?;
    sys.chmod(&dir, 0o700).map_err(|err| io(&dir, err))?;
    sys.chown(&dir, e.uid, e.gid).map_err(|err| io(&dir, err))?;
    let old = sys.read_file(&file).unwrap_or_default();
    let mut lines: Vec<String> = String::from_utf8_lossy(&old)
        .lines()
        .map(String::from)
        .collect();
    for k in keys {
        if !lines.iter().any(|l| l.trim() == k) {
            lines.push(k.clone());
        }
    }
    let text = lines.join("\n") + "\n";
    sys.write_file(&file, text.as_bytes())
        .map_err(|err| io(&file, err))?;
    sys.chmod(&file, 0o600).map_err(|err| io(&file, err))?;
    sys.chown(&file, e.uid, e.gid).map_err(|err| io(&file, err))
}
