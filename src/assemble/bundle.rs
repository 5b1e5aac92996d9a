//! `config.json` (and LinuxKit's `runtime.json`) for one container bundle.
//!
//! A port of LinuxKit's `ConfigToOCI` (`src/cmd/linuxkit/moby/config.go`):
//! each `onboot`/`onshutdown`/`services` entry becomes an OCI runtime bundle
//! whose config is built from three layers, later winning:
//!
//! 1. the image config (`Env`, `Entrypoint` + `Cmd`, `WorkingDir`, `User`),
//! 2. the image's `org.mobyproject.config` label (an [`ImageConfig`]),
//! 3. the spec's YAML fields (`binds.add` / `capabilities.add` append to the
//!    label's list; `binds` / `capabilities` replace it).
//!
//! Like LinuxKit: root path `rootfs`; default mounts `/proc`, `/dev`,
//! `/dev/pts`, `/sys`, `/sys/fs/cgroup` (no `/dev/shm` or `/dev/mqueue`, and
//! no default masked or read-only paths); mounts sorted by destination;
//! net/ipc/uts/user namespaces shared with the host unless asked, a new pid,
//! mount and cgroup namespace always; capabilities `all`/`none`; devices
//! also allowed in the device cgroup.
//!
//! Deliberate differences, all more permissive for input LinuxKit rejects or
//! ignores: the image's `User` is honoured as the lowest-precedence uid/gid
//! (LinuxKit ignores it); capability names are case-insensitive and may omit
//! `CAP_`; duplicate capabilities and binds are dropped (LinuxKit's
//! `mergeStrings` means to, but does not); a device without `mode` gets no
//! `fileMode` instead of an error.
//!
//! Non-goals: writing the bundle (the caller does), reading `/etc/passwd`
//! (names are resolved through a caller-supplied lookup), seccomp.

use std::collections::BTreeMap;

use oci_spec::image::ImageConfiguration;
use serde_json::{Map, Value, json};

use crate::spec::{Id, Image, ImageConfig, Mount, Origin, Resources};

/// The image label holding LinuxKit's per-image defaults.
pub const LABEL: &str = "org.mobyproject.config";

/// The OCI runtime-spec version written into `ociVersion`.
pub const OCI_VERSION: &str = "1.1.0";

/// Every capability the kernel knows, in number order (capability.h:
/// `CAP_CHOWN` = 0 … `CAP_CHECKPOINT_RESTORE` = 40), as LinuxKit's `allCaps`.
pub const ALL_CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The RLIMIT_ names the kernel accepts (getrlimit(2)).
const RLIMITS: [&str; 16] = [
    "RLIMIT_CPU",
    "RLIMIT_FSIZE",
    "RLIMIT_DATA",
    "RLIMIT_STACK",
    "RLIMIT_CORE",
    "RLIMIT_RSS",
    "RLIMIT_NPROC",
    "RLIMIT_NOFILE",
    "RLIMIT_MEMLOCK",
    "RLIMIT_AS",
    "RLIMIT_LOCKS",
    "RLIMIT_SIGPENDING",
    "RLIMIT_MSGQUEUE",
    "RLIMIT_NICE",
    "RLIMIT_RTPRIO",
    "RLIMIT_RTTIME",
];

/// What one bundle needs written.
#[derive(Debug, Clone, PartialEq)]
pub struct BundleConfig {
    /// The OCI runtime `config.json`, fields in runtime-spec order.
    pub config: Value,
    /// LinuxKit's `runtime.json` (cgroups, mounts, mkdir, interfaces,
    /// bindNS, namespace), always complete as LinuxKit writes it.
    pub runtime: Value,
    /// Whether the root filesystem is mounted read-only.
    pub readonly: bool,
}

impl BundleConfig {
    /// `config.json` bytes: pretty-printed, stable field order, trailing newline.
    pub fn config_json(&self) -> Vec<u8> {
        to_json_bytes(&self.config)
    }

    /// `runtime.json` bytes, formatted as [`BundleConfig::config_json`].
    pub fn runtime_json(&self) -> Vec<u8> {
        to_json_bytes(&self.runtime)
    }
}

fn to_json_bytes(v: &Value) -> Vec<u8> {
    // Serialising a `Value` cannot fail: its keys are strings.
    let mut out = serde_json::to_vec_pretty(v).unwrap_or_default();
    out.push(b'\n');
    out
}

/// A bundle that cannot be configured, naming the spec entry and image.
#[derive(Debug, thiserror::Error)]
#[error("{origin}: {name} ({image}): {problem}")]
pub struct BundleError {
    pub origin: Origin,
    pub name: String,
    pub image: String,
    /// Boxed to keep `Result`s small (clippy::result_large_err).
    pub problem: Box<BundleProblem>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleProblem {
    #[error("invalid {LABEL} label: {0}")]
    Label(String),
    #[error("cannot parse bind {0:?}: {1}")]
    Bind(String, &'static str),
    #[error("cannot parse tmpfs {0:?}: too many ':'")]
    Tmpfs(String),
    #[error("mount for destination {0:?} is missing a type")]
    MountType(String),
    #[error("mount of type {0:?} is missing a destination")]
    MountDestination(String),
    #[error("unknown capability {0:?}")]
    Capability(String),
    #[error("cannot parse rlimit {0:?}: {1}")]
    Rlimit(String, String),
    #[error("unknown user or group {0:?}")]
    UnknownId(String),
    #[error("device {0:?}: mode {1:?} is not an octal number")]
    DeviceMode(String, String),
}

/// Parses a label's JSON; LinuxKit forbids `name` and `image` in it, which
/// the [`ImageConfig`] type enforces.
pub fn parse_label(label: &str) -> Result<ImageConfig, BundleProblem> {
    serde_json::from_str(label).map_err(|e| BundleProblem::Label(e.to_string()))
}

/// The `org.mobyproject.config` label of an image config, if any.
pub fn label_of(image_config: &ImageConfiguration) -> Option<&str> {
    image_config
        .config()
        .as_ref()?
        .labels()
        .as_ref()?
        .get(LABEL)
        .map(String::as_str)
}

/// [`bundle_config_with_ids`] where only numeric IDs and `root` resolve.
pub fn bundle_config(
    image: &Image,
    image_config: &ImageConfiguration,
    label: Option<&str>,
) -> Result<BundleConfig, BundleError> {
    bundle_config_with_ids(image, image_config, label, &|_| None)
}

/// Builds the bundle config for `image`. `label` is the image's
/// [`LABEL`] JSON (see [`label_of`]); `ids` resolves user and group names
/// (from the image's `/etc/passwd` and `/etc/group`); `root` and `""` are
/// always 0, as in LinuxKit's `IDNumeric`.
pub fn bundle_config_with_ids(
    image: &Image,
    image_config: &ImageConfiguration,
    label: Option<&str>,
    ids: &dyn Fn(&str) -> Option<u32>,
) -> Result<BundleConfig, BundleError> {
    let fail = |problem| BundleError {
        origin: image.origin().clone(),
        name: image.name.clone(),
        image: image.image.text.clone(),
        problem: Box::new(problem),
    };
    let label = match label {
        Some(text) => parse_label(text).map_err(fail)?,
        None => ImageConfig::default(),
    };
    build(image, image_config, &label, ids).map_err(fail)
}

/// Later `Some` wins: LinuxKit's `assign*` helpers.
fn pick<'a, T>(label: &'a Option<T>, yaml: &'a Option<T>) -> Option<&'a T> {
    yaml.as_ref().or(label.as_ref())
}

/// Later non-empty string wins: LinuxKit's `assignStringEmpty*`.
fn pick_nonempty<'a>(layers: &[Option<&'a str>]) -> Option<&'a str> {
    layers
        .iter()
        .rev()
        .flatten()
        .find(|s| !s.is_empty())
        .copied()
}

/// Appends `extra` to `base` keeping the first of each duplicate.
fn merge_unique(base: Option<&Vec<String>>, extra: Option<&Vec<String>>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in base.into_iter().chain(extra).flatten() {
        if !out.contains(s) {
            out.push(s.clone());
        }
    }
    out
}

fn build(
    y: &Image,
    cfg: &ImageConfiguration,
    l: &ImageConfig,
    ids: &dyn Fn(&str) -> Option<u32>,
) -> Result<BundleConfig, BundleProblem> {
    let readonly = pick(&l.readonly, &y.readonly).copied().unwrap_or(false);
    let mut root = Map::new();
    root.insert("path".into(), json!("rootfs"));
    if readonly {
        root.insert("readonly".into(), json!(true));
    }

    let mut config = Map::new();
    config.insert("ociVersion".into(), json!(OCI_VERSION));
    config.insert("process".into(), process(y, cfg, l, ids)?);
    config.insert("root".into(), Value::Object(root));
    if let Some(h) = pick_nonempty(&[l.hostname.as_deref(), y.hostname.as_deref()]) {
        config.insert("hostname".into(), json!(h));
    }
    config.insert("mounts".into(), json!(mounts(y, l, readonly)?));
    if let Some(a) = pick(&l.annotations, &y.annotations).filter(|a| !a.is_empty()) {
        config.insert("annotations".into(), json!(a));
    }
    config.insert("linux".into(), linux(y, l, namespaces(y, l))?);

    Ok(BundleConfig {
        config: Value::Object(config),
        runtime: runtime(y, l),
        readonly,
    })
}

/// The `process` section: args, env, cwd, user, capabilities, rlimits.
fn process(
    y: &Image,
    cfg: &ImageConfiguration,
    l: &ImageConfig,
    ids: &dyn Fn(&str) -> Option<u32>,
) -> Result<Value, BundleProblem> {
    let ic = cfg.config().as_ref();
    // LinuxKit runs Entrypoint + Cmd as one command line.
    let mut inspect_args: Vec<String> = Vec::new();
    if let Some(c) = ic {
        inspect_args.extend(c.entrypoint().iter().flatten().cloned());
        inspect_args.extend(c.cmd().iter().flatten().cloned());
    }
    let args = pick(&l.command, &y.command)
        .cloned()
        .unwrap_or(inspect_args);
    let image_env = ic.and_then(|c| c.env().clone()).unwrap_or_default();
    let env = pick(&l.env, &y.env).cloned().unwrap_or(image_env);
    let workdir = ic.and_then(|c| c.working_dir().as_deref());
    // OCI does not allow an empty cwd.
    let cwd =
        pick_nonempty(&[Some("/"), workdir, l.cwd.as_deref(), y.cwd.as_deref()]).unwrap_or("/");
    let (bounding, effective, ambient) = capabilities(y, l)?;
    let rlimits = rlimits(pick(&l.rlimits, &y.rlimits))?;

    let mut process = Map::new();
    process.insert("terminal".into(), json!(false));
    let image_user = ic.and_then(|c| c.user().as_deref());
    process.insert("user".into(), user(y, l, image_user, ids)?);
    if !args.is_empty() {
        process.insert("args".into(), json!(args));
    }
    if !env.is_empty() {
        process.insert("env".into(), json!(env));
    }
    process.insert("cwd".into(), json!(cwd));
    let mut caps = Map::new();
    insert_nonempty(&mut caps, "bounding", &bounding);
    insert_nonempty(&mut caps, "effective", &effective);
    insert_nonempty(&mut caps, "inheritable", &bounding);
    insert_nonempty(&mut caps, "permitted", &bounding);
    insert_nonempty(&mut caps, "ambient", &ambient);
    process.insert("capabilities".into(), Value::Object(caps));
    if !rlimits.is_empty() {
        process.insert("rlimits".into(), Value::Array(rlimits));
    }
    if pick(&l.no_new_privileges, &y.no_new_privileges) == Some(&true) {
        process.insert("noNewPrivileges".into(), json!(true));
    }
    if let Some(adj) = pick(&l.oom_score_adj, &y.oom_score_adj) {
        process.insert("oomScoreAdj".into(), json!(adj));
    }
    Ok(Value::Object(process))
}

fn insert_nonempty(map: &mut Map<String, Value>, key: &str, list: &[String]) {
    if !list.is_empty() {
        map.insert(key.into(), json!(list));
    }
}

/// Default mounts, then tmpfs, binds and mounts, keyed by destination (a
/// later one replaces an earlier one) and sorted so `/dev` precedes `/dev/pts`.
fn mounts(y: &Image, l: &ImageConfig, readonly: bool) -> Result<Vec<Value>, BundleProblem> {
    let ro = |mut v: Vec<&'static str>| -> Vec<&'static str> {
        if readonly {
            v.push("ro");
        }
        v
    };
    let mut by_dest: BTreeMap<String, Value> = BTreeMap::new();
    let mut add = |dest: &str, kind: &str, source: &str, options: Vec<String>| {
        let mut m = Map::new();
        m.insert("destination".into(), json!(dest));
        m.insert("type".into(), json!(kind));
        m.insert("source".into(), json!(source));
        if !options.is_empty() {
            m.insert("options".into(), json!(options));
        }
        by_dest.insert(dest.to_string(), Value::Object(m));
    };
    let strings = |v: Vec<&str>| v.into_iter().map(String::from).collect::<Vec<_>>();
    // Options as Docker sets them (LinuxKit's comment in ConfigToOCI).
    add(
        "/proc",
        "proc",
        "proc",
        strings(vec!["nosuid", "nodev", "noexec", "relatime"]),
    );
    let dev = ro(vec!["nosuid", "strictatime", "mode=755", "size=65536k"]);
    add("/dev", "tmpfs", "tmpfs", strings(dev));
    let pts = vec![
        "nosuid",
        "noexec",
        "newinstance",
        "ptmxmode=0666",
        "mode=0620",
    ];
    add("/dev/pts", "devpts", "devpts", strings(pts));
    add(
        "/sys",
        "sysfs",
        "sysfs",
        strings(ro(vec!["nosuid", "noexec", "nodev"])),
    );
    let cgroup = vec!["nosuid", "noexec", "nodev", "relatime", "ro"];
    add("/sys/fs/cgroup", "cgroup", "cgroup", strings(cgroup));

    for t in pick(&l.tmpfs, &y.tmpfs).into_iter().flatten() {
        let parts: Vec<&str> = t.split(':').collect();
        if parts.len() > 2 {
            return Err(BundleProblem::Tmpfs(t.clone()));
        }
        let opts = parts
            .get(1)
            .map(|o| strings(o.split(',').collect()))
            .unwrap_or_default();
        add(parts[0], "tmpfs", "tmpfs", opts);
    }
    let binds = match &y.binds {
        Some(b) => b.clone(),
        None => merge_unique(l.binds.as_ref(), y.binds_add.as_ref()),
    };
    for b in &binds {
        let parts: Vec<&str> = b.split(':').collect();
        let opts = match parts.len() {
            0 | 1 => return Err(BundleProblem::Bind(b.clone(), "missing ':'")),
            2 => strings(vec!["rw", "rbind", "rshared"]),
            3 => {
                let mut o = strings(parts[2].split(',').collect());
                o.push("rbind".into());
                o
            }
            _ => return Err(BundleProblem::Bind(b.clone(), "too many ':'")),
        };
        add(parts[1], "bind", parts[0], opts);
    }
    for m in pick(&l.mounts, &y.mounts).into_iter().flatten() {
        let (dest, kind, source) = complete_mount(m)?;
        add(&dest, &kind, &source, m.options.clone().unwrap_or_default());
    }
    Ok(by_dest.into_values().collect())
}

/// Fills a mount's type, source and destination as LinuxKit does.
fn complete_mount(m: &Mount) -> Result<(String, String, String), BundleProblem> {
    let source = m.source.clone().unwrap_or_default();
    let dest = m.destination.clone().unwrap_or_default();
    let mut kind = m.kind.clone().unwrap_or_default();
    if kind.is_empty()
        && matches!(
            source.as_str(),
            "mqueue" | "devpts" | "proc" | "sysfs" | "cgroup"
        )
    {
        kind = source.clone();
    }
    if kind.is_empty() && dest == "/dev" {
        kind = "tmpfs".into();
    }
    if kind.is_empty() {
        return Err(BundleProblem::MountType(dest));
    }
    let source = if source.is_empty() {
        kind.clone()
    } else {
        source
    };
    let dest = if dest.is_empty() {
        match kind.as_str() {
            "proc" => "/proc",
            "devpts" => "/dev/pts",
            "sysfs" => "/sys",
            "cgroup" => "/sys/fs/cgroup",
            "mqueue" => "/dev/mqueue",
            _ => return Err(BundleProblem::MountDestination(kind)),
        }
        .to_string()
    } else {
        dest
    };
    Ok((dest, kind, source))
}

/// `host`/`root` share the host's namespace, `new` (or `none` for net)
/// creates one, anything else is a path to join. net, ipc, uts and user
/// default to the host; pid, mount and cgroup are always new by default.
fn namespaces(y: &Image, l: &ImageConfig) -> Vec<Value> {
    let mut out = Vec::new();
    let mut ns = |kind: &str, default: &str, label: &Option<String>, yaml: &Option<String>| {
        let v =
            pick_nonempty(&[Some(default), label.as_deref(), yaml.as_deref()]).unwrap_or(default);
        if v == "host" || v == "root" {
            return;
        }
        let path = if v == "new" || (kind == "network" && v == "none") {
            ""
        } else {
            v
        };
        out.push(if path.is_empty() {
            json!({"type": kind})
        } else {
            json!({"type": kind, "path": path})
        });
    };
    ns("network", "root", &l.net, &y.net);
    ns("ipc", "root", &l.ipc, &y.ipc);
    ns("uts", "root", &l.uts, &y.uts);
    ns("pid", "new", &l.pid, &y.pid);
    ns("user", "root", &l.userns, &y.userns);
    out.push(json!({"type": "mount"}));
    out.push(json!({"type": "cgroup"}));
    out
}

/// Canonical `CAP_` name, or `None` when unknown.
fn capability_name(name: &str) -> Option<&'static str> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    ALL_CAPABILITIES.iter().copied().find(|c| *c == full)
}

/// Expands a single `all` / `none` and checks every name.
fn expand_caps(list: Vec<String>) -> Result<Vec<String>, BundleProblem> {
    if let [only] = list.as_slice() {
        match only.to_ascii_lowercase().as_str() {
            "all" => return Ok(ALL_CAPABILITIES.iter().map(|c| c.to_string()).collect()),
            "none" => return Ok(Vec::new()),
            _ => {}
        }
    }
    let mut out: Vec<String> = Vec::new();
    for c in &list {
        let name = capability_name(c).ok_or_else(|| BundleProblem::Capability(c.clone()))?;
        if !out.iter().any(|o| o == name) {
            out.push(name.to_string());
        }
    }
    Ok(out)
}

/// (bounding = inheritable = permitted, sorted; effective; ambient).
type Caps = (Vec<String>, Vec<String>, Vec<String>);

fn capabilities(y: &Image, l: &ImageConfig) -> Result<Caps, BundleProblem> {
    let caps = match &y.capabilities {
        Some(c) => c.clone(),
        None => merge_unique(l.capabilities.as_ref(), y.capabilities_add.as_ref()),
    };
    let effective = expand_caps(caps)?;
    let ambient = expand_caps(pick(&l.ambient, &y.ambient).cloned().unwrap_or_default())?;
    let mut bounding: Vec<String> = effective.iter().chain(&ambient).cloned().collect();
    bounding.sort();
    bounding.dedup();
    Ok((bounding, effective, ambient))
}

/// `type,soft,hard` with `unlimited` for `u64::MAX`; `RLIMIT_` is optional.
fn rlimits(list: Option<&Vec<String>>) -> Result<Vec<Value>, BundleProblem> {
    let mut out = Vec::new();
    for s in list.into_iter().flatten() {
        let bad = |why: String| BundleProblem::Rlimit(s.clone(), why);
        let parts: Vec<&str> = s.splitn(3, ',').map(str::trim).collect();
        let [kind, soft, hard] = parts.as_slice() else {
            return Err(bad("expected type,soft,hard".into()));
        };
        let upper = kind.to_ascii_uppercase();
        let kind = if upper.starts_with("RLIMIT_") {
            upper
        } else {
            format!("RLIMIT_{upper}")
        };
        if !RLIMITS.contains(&kind.as_str()) {
            return Err(bad(format!("unknown limit {kind}")));
        }
        let value = |v: &str| {
            if v.eq_ignore_ascii_case("unlimited") {
                Ok(u64::MAX)
            } else {
                v.parse::<u64>().map_err(|e| bad(format!("{v:?}: {e}")))
            }
        };
        out.push(json!({"type": kind, "hard": value(hard)?, "soft": value(soft)?}));
    }
    Ok(out)
}

fn resolve(id: &Id, ids: &dyn Fn(&str) -> Option<u32>) -> Result<u32, BundleProblem> {
    match id {
        Id::Number(n) => Ok(*n),
        Id::Name(s) if s.is_empty() || s == "root" => Ok(0),
        Id::Name(s) => match s.parse::<u32>() {
            Ok(n) => Ok(n),
            Err(_) => ids(s).ok_or_else(|| BundleProblem::UnknownId(s.clone())),
        },
    }
}

/// uid/gid: image `User` (`user[:group]`) < label < YAML; default root.
fn user(
    y: &Image,
    l: &ImageConfig,
    image_user: Option<&str>,
    ids: &dyn Fn(&str) -> Option<u32>,
) -> Result<Value, BundleProblem> {
    let (iu, ig) = match image_user.filter(|u| !u.is_empty()) {
        Some(u) => match u.split_once(':') {
            Some((a, b)) => (Some(Id::Name(a.into())), Some(Id::Name(b.into()))),
            None => (Some(Id::Name(u.into())), None),
        },
        None => (None, None),
    };
    let uid = pick(&l.uid, &y.uid).or(iu.as_ref());
    let gid = pick(&l.gid, &y.gid).or(ig.as_ref());
    let uid = uid.map(|i| resolve(i, ids)).transpose()?.unwrap_or(0);
    let gid = gid.map(|i| resolve(i, ids)).transpose()?.unwrap_or(0);
    let mut user = Map::new();
    user.insert("uid".into(), json!(uid));
    user.insert("gid".into(), json!(gid));
    let extra = pick(&l.additional_gids, &y.additional_gids)
        .into_iter()
        .flatten();
    let extra = extra
        .map(|i| resolve(i, ids))
        .collect::<Result<Vec<u32>, _>>()?;
    if !extra.is_empty() {
        user.insert("additionalGids".into(), json!(extra));
    }
    Ok(Value::Object(user))
}

/// The `linux` section: ID mappings, sysctl, resources (plus device
/// cgroup rules), cgroups path, namespaces, devices, propagation, paths.
fn linux(y: &Image, l: &ImageConfig, namespaces: Vec<Value>) -> Result<Value, BundleProblem> {
    let mut resources = pick(&l.resources, &y.resources)
        .cloned()
        .unwrap_or_default();
    let devices = device_entries(pick(&l.devices, &y.devices), &mut resources)?;
    let mut linux = Map::new();
    let put_list = |linux: &mut Map<String, Value>, key: &str, v: Value| {
        if v.as_array().is_some_and(|a| !a.is_empty()) {
            linux.insert(key.into(), v);
        }
    };
    put_list(
        &mut linux,
        "uidMappings",
        json!(pick(&l.uid_mappings, &y.uid_mappings)),
    );
    put_list(
        &mut linux,
        "gidMappings",
        json!(pick(&l.gid_mappings, &y.gid_mappings)),
    );
    if let Some(s) = pick(&l.sysctl, &y.sysctl).filter(|s| !s.is_empty()) {
        linux.insert("sysctl".into(), json!(s));
    }
    linux.insert("resources".into(), json!(resources));
    if let Some(p) = pick(&l.cgroups_path, &y.cgroups_path).filter(|p| !p.is_empty()) {
        linux.insert("cgroupsPath".into(), json!(p));
    }
    put_list(&mut linux, "namespaces", Value::Array(namespaces));
    put_list(&mut linux, "devices", Value::Array(devices));
    let propagation = pick(&l.rootfs_propagation, &y.rootfs_propagation);
    if let Some(p) = propagation.filter(|p| !p.is_empty()) {
        linux.insert("rootfsPropagation".into(), json!(p));
    }
    put_list(
        &mut linux,
        "maskedPaths",
        json!(pick(&l.masked_paths, &y.masked_paths)),
    );
    put_list(
        &mut linux,
        "readonlyPaths",
        json!(pick(&l.readonly_paths, &y.readonly_paths)),
    );
    Ok(Value::Object(linux))
}

/// OCI `linux.devices` entries; each device (and each `path: all` type) is
/// also allowed in the device cgroup, or it could not be opened (kernel
/// admin-guide/cgroup-v1/devices).
fn device_entries(
    devices: Option<&Vec<crate::spec::Device>>,
    resources: &mut Resources,
) -> Result<Vec<Value>, BundleProblem> {
    let mut out = Vec::new();
    let rules = resources.devices.get_or_insert_with(Vec::new);
    for d in devices.into_iter().flatten() {
        let mut rule = crate::spec::DeviceCgroup {
            allow: true,
            kind: Some(d.kind.clone()),
            major: None,
            minor: None,
            access: Some("rwm".into()),
        };
        if d.path == "all" {
            rules.push(rule);
            continue;
        }
        let mut dev = Map::new();
        dev.insert("path".into(), json!(d.path));
        dev.insert("type".into(), json!(d.kind));
        dev.insert("major".into(), json!(d.major));
        dev.insert("minor".into(), json!(d.minor));
        if let Some(mode) = &d.mode {
            let m = u32::from_str_radix(mode, 8)
                .map_err(|_| BundleProblem::DeviceMode(d.path.clone(), mode.clone()))?;
            dev.insert("fileMode".into(), json!(m));
        }
        out.push(Value::Object(dev));
        rule.major = Some(d.major);
        rule.minor = Some(d.minor);
        rules.push(rule);
    }
    if rules.is_empty() {
        resources.devices = None;
    }
    Ok(out)
}

/// LinuxKit's `assignRuntime`: each field from YAML, else label, else empty.
fn runtime(y: &Image, l: &ImageConfig) -> Value {
    let none = Default::default();
    let lr = l.runtime.as_ref().unwrap_or(&none);
    let yr = y.runtime.as_ref().unwrap_or(&none);
    let list = |a: &Option<Vec<String>>, b: &Option<Vec<String>>| {
        json!(pick(a, b).cloned().unwrap_or_default())
    };
    let lns = lr.bind_ns.clone().unwrap_or_default();
    let yns = yr.bind_ns.clone().unwrap_or_default();
    let ns =
        |a: &Option<String>, b: &Option<String>| json!(pick(a, b).cloned().unwrap_or_default());
    json!({
        "cgroups": list(&lr.cgroups, &yr.cgroups),
        "mounts": pick(&lr.mounts, &yr.mounts).cloned().unwrap_or_default(),
        "mkdir": list(&lr.mkdir, &yr.mkdir),
        "interfaces": pick(&lr.interfaces, &yr.interfaces).cloned().unwrap_or_default(),
        "bindNS": {
            "cgroup": ns(&lns.cgroup, &yns.cgroup),
            "ipc": ns(&lns.ipc, &yns.ipc),
            "mnt": ns(&lns.mnt, &yns.mnt),
            "net": ns(&lns.net, &yns.net),
            "pid": ns(&lns.pid, &yns.pid),
            "user": ns(&lns.user, &yns.user),
            "uts": ns(&lns.uts, &yns.uts),
        },
        "namespace": pick(&lr.namespace, &yr.namespace).cloned().unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests;
