//! `/etc/passwd`, `/etc/group` and `/etc/shadow` as lines: read, looked
//! up, appended to and written back with every existing line kept as it
//! was (passwd(5), group(5), shadow(5)).
//!
//! Fields that reach these files were checked for `:` and line breaks by
//! the parser. Non-goals: locking (`/etc/.pwd.lock`; PID 1 is alone this
//! early), `/etc/gshadow`, deleting or modifying accounts.

use std::io;

use crate::sys::Sys;

pub const PASSWD: &str = "/etc/passwd";
pub const GROUP: &str = "/etc/group";
pub const SHADOW: &str = "/etc/shadow";

/// The first uid and gid handed out, as useradd's `UID_MIN`.
pub const ID_MIN: u32 = 1000;
/// `nobody`/`nogroup` (65534) and beyond are never handed out.
const ID_MAX: u32 = 60000;

/// One file's lines; `existed` decides whether its mode is set on write.
#[derive(Debug, Default)]
pub struct Table {
    pub lines: Vec<String>,
    existed: bool,
    changed: bool,
}

impl Table {
    fn load(sys: &dyn Sys, path: &str) -> Table {
        match sys.read_file(path) {
            Ok(b) => Table {
                lines: String::from_utf8_lossy(&b)
                    .lines()
                    .map(String::from)
                    .collect(),
                existed: true,
                changed: false,
            },
            Err(_) => Table::default(),
        }
    }

    /// The line whose first field is `name`, split on `:`.
    pub fn find(&self, name: &str) -> Option<Vec<&str>> {
        self.lines
            .iter()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.first() == Some(&name))
    }

    /// Field `i` of every line parsed as an id.
    fn ids(&self, i: usize) -> Vec<u32> {
        self.lines
            .iter()
            .filter_map(|l| l.split(':').nth(i)?.parse().ok())
            .collect()
    }

    fn push(&mut self, line: String) {
        self.lines.push(line);
        self.changed = true;
    }

    fn save(&self, sys: &dyn Sys, path: &str, mode: u32) -> io::Result<()> {
        if !self.changed {
            return Ok(());
        }
        let mut text = self.lines.join("\n");
        text.push('\n');
        sys.write_file(path, text.as_bytes())?;
        if !self.existed {
            sys.chmod(path, mode)?;
        }
        Ok(())
    }
}

/// The three account files of the root.
#[derive(Debug, Default)]
pub struct Accounts {
    pub passwd: Table,
    pub group: Table,
    pub shadow: Table,
}

/// A user's ids and home, from `/etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

impl Accounts {
    pub fn load(sys: &dyn Sys) -> Accounts {
        Accounts {
            passwd: Table::load(sys, PASSWD),
            group: Table::load(sys, GROUP),
            shadow: Table::load(sys, SHADOW),
        }
    }

    pub fn user(&self, name: &str) -> Option<Entry> {
        let f = self.passwd.find(name)?;
        Some(Entry {
            uid: f.get(2)?.parse().ok()?,
            gid: f.get(3)?.parse().ok()?,
            home: f.get(5)?.to_string(),
        })
    }

    pub fn gid(&self, group: &str) -> Option<u32> {
        self.group.find(group)?.get(2)?.parse().ok()
    }

    /// The lowest id from [`ID_MIN`] not in `used`.
    fn free(used: &[u32], want: Option<u32>) -> Option<u32> {
        if let Some(w) = want.filter(|w| !used.contains(w)) {
            return Some(w);
        }
        (ID_MIN..ID_MAX).find(|id| !used.contains(id))
    }

    /// Create group `name` with a free gid (`want` if free); its gid.
    pub fn add_group(&mut self, name: &str, want: Option<u32>) -> Option<u32> {
        if let Some(gid) = self.gid(name) {
            return Some(gid);
        }
        let gid = Self::free(&self.group.ids(2), want)?;
        self.group.push(format!("{name}:x:{gid}:"));
        Some(gid)
    }

    /// Add `user` to the member list of `group` (which must exist).
    pub fn add_member(&mut self, group: &str, user: &str) {
        let Some(line) = self
            .group
            .lines
            .iter_mut()
            .find(|l| l.split(':').next() == Some(group))
        else {
            return;
        };
        let members = line.rsplit(':').next().unwrap_or_default();
        if members.split(',').any(|m| m == user) {
            return;
        }
        if !members.is_empty() {
            line.push(',');
        }
        line.push_str(user);
        self.group.changed = true;
    }

    /// Append a passwd line and its primary group; the new uid and gid.
    pub fn add_user(
        &mut self,
        name: &str,
        uid: Option<u32>,
        gecos: &str,
        home: &str,
        shell: &str,
    ) -> Result<Entry, String> {
        let uid = Self::free(&self.passwd.ids(2), uid).ok_or("no free uid")?;
        let gid = self.add_group(name, Some(uid)).ok_or("no free gid")?;
        self.passwd
            .push(format!("{name}:x:{uid}:{gid}:{gecos}:{home}:{shell}"));
        Ok(Entry {
            uid,
            gid,
            home: home.to_string(),
        })
    }

    /// A shadow line unless one exists: `hash` (or none) locked with `!`.
    pub fn add_shadow(&mut self, name: &str, hash: Option<&str>, lock: bool) {
        if self.shadow.find(name).is_some() {
            return;
        }
        let pw = match (hash, lock) {
            (Some(h), true) => format!("!{h}"),
            (Some(h), false) => h.to_string(),
            (None, true) => "!".into(),
            (None, false) => "*".into(),
        };
        self.shadow.push(format!("{name}:{pw}::0:99999:7:::"));
    }

    pub fn save(&self, sys: &dyn Sys) -> io::Result<()> {
        self.passwd.save(sys, PASSWD, 0o644)?;
        self.group.save(sys, GROUP, 0o644)?;
        self.shadow.save(sys, SHADOW, 0o600)
    }

    /// `user:group`, `user`, names or numbers: `(uid, gid)`; a lone user
    /// takes its primary group.
    pub fn owner(&self, spec: &str) -> Result<(u32, u32), String> {
        let (u, g) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g).filter(|g| !g.is_empty())),
            None => (spec, None),
        };
        let (uid, primary) = match u.parse::<u32>() {
            Ok(n) => (n, n),
            Err(_) => match self.user(u) {
                Some(e) => (e.uid, e.gid),
                // An image without /etc/passwd still has a root.
                None if u == "root" => (0, 0),
                None => return Err(format!("no user {u:?}")),
            },
        };
        let gid = match g {
            None => primary,
            Some(g) => match g.parse::<u32>() {
                Ok(n) => n,
                Err(_) => match self.gid(g) {
                    Some(n) => n,
                    None if g == "root" => 0,
                    None => return Err(format!("no group {g:?}")),
                },
            },
        };
        Ok((uid, gid))
    }
}
