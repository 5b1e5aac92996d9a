//! Registry credentials and authentication challenges.
//!
//! Credentials come from Docker's `config.json` (`$DOCKER_CONFIG/config.json`
//! or `~/.docker/config.json`): `credHelpers.<host>` first, then
//! `auths.<host>.auth` (base64 `user:password`), then `credsStore`; helpers
//! run as `docker-credential-<name> get` with the server URL on stdin
//! (docker-credential-helpers protocol). Docker Hub's key is
//! `https://index.docker.io/v1/`.
//!
//! Challenges are the `WWW-Authenticate` header of a 401 (RFC 7235 §4.1;
//! the Bearer token flow is the distribution project's `token.md`).
//!
//! Non-goals: identity/refresh tokens (OAuth2 `POST` flow), Kerberos.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;

/// Docker Hub's key in `config.json`.
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// A username and password (or token used as password).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <redacted>)", self.username)
    }
}

impl Credentials {
    /// `Basic <base64(user:password)>` (RFC 7617).
    pub fn basic_header(&self) -> String {
        format!(
            "Basic {}",
            B64.encode(format!("{}:{}", self.username, self.password))
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("docker config {path}: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("credential helper docker-credential-{helper} for {server}: {reason}")]
    Helper {
        helper: String,
        server: String,
        reason: String,
    },
}

#[derive(Default, Clone, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

impl std::fmt::Debug for AuthEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthEntry(<redacted>)")
    }
}

/// The parts of Docker's `config.json` smelt reads.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default)]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default)]
    creds_store: Option<String>,
    #[serde(skip)]
    path: PathBuf,
}

impl DockerConfig {
    /// `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`.
    pub fn default_path() -> Option<PathBuf> {
        if let Some(d) = std::env::var_os("DOCKER_CONFIG").filter(|v| !v.is_empty()) {
            return Some(PathBuf::from(d).join("config.json"));
        }
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
    }

    /// Loads the default config; a missing file means no credentials.
    pub fn load_default() -> Result<DockerConfig, AuthError> {
        match Self::default_path() {
            Some(p) if p.exists() => Self::load(&p),
            _ => Ok(DockerConfig::default()),
        }
    }

    pub fn load(path: &Path) -> Result<DockerConfig, AuthError> {
        let err = |reason: String| AuthError::Config {
            path: path.to_path_buf(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        Self::parse(&bytes, path).map_err(err)
    }

    /// Parses config.json bytes; `path` is only recorded for messages.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<DockerConfig, String> {
        let mut c: DockerConfig = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        c.path = path.to_path_buf();
        Ok(c)
    }

    /// Credentials for `registry` (as written in a reference, e.g.
    /// `docker.io`, `ghcr.io`, `localhost:5000`), if any are configured.
    pub fn credentials(&self, registry: &str) -> Result<Option<Credentials>, AuthError> {
        let server = server_key(registry);
        if let Some(helper) = self
            .cred_helpers
            .get(registry)
            .or(self.cred_helpers.get(&server))
        {
            return run_helper(helper, &server);
        }
        if let Some(entry) = self.find_auth(registry)
            && let Some(c) = self.decode_entry(entry)?
        {
            return Ok(Some(c));
        }
        match &self.creds_store {
            Some(store) if !store.is_empty() => run_helper(store, &server),
            _ => Ok(None),
        }
    }

    fn find_auth(&self, registry: &str) -> Option<&AuthEntry> {
        let want = normalise_key(&server_key(registry));
        self.auths
            .iter()
            .find(|(k, _)| normalise_key(k) == want)
            .map(|(_, v)| v)
    }

    fn decode_entry(&self, e: &AuthEntry) -> Result<Option<Credentials>, AuthError> {
        if let Some(a) = e.auth.as_deref().filter(|a| !a.is_empty()) {
            let err = |reason: &str| AuthError::Config {
                path: self.path.clone(),
                reason: reason.to_string(),
            };
            let raw = B64
                .decode(a.trim())
                .map_err(|_| err("auth is not valid base64"))?;
            let s = String::from_utf8(raw).map_err(|_| err("auth is not UTF-8"))?;
            let (u, p) = s
                .split_once(':')
                .ok_or_else(|| err("auth is not user:password"))?;
            return Ok(Some(Credentials {
                username: u.to_string(),
                password: p.to_string(),
            }));
        }
        Ok(match (&e.username, &e.password) {
            (Some(u), Some(p)) => Some(Credentials {
                username: u.clone(),
                password: p.clone(),
            }),
            _ => None,
        })
    }
}

/// The key Docker uses for a registry in config.json and helpers.
pub fn server_key(registry: &str) -> String {
    match registry {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB_KEY.to_string(),
        other => other.to_string(),
    }
}

/// `https://host/v1/` → `host`, so keys written with or without scheme match.
fn normalise_key(k: &str) -> String {
    let k = k
        .strip_prefix("https://")
        .or_else(|| k.strip_prefix("http://"))
        .unwrap_or(k);
    let host = k.split('/').next().unwrap_or(k);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io".to_string(),
        h => h.to_string(),
    }
}

fn run_helper(helper: &str, server: &str) -> Result<Option<Credentials>, AuthError> {
    run_helper_program(
        Path::new(&format!("docker-credential-{helper}")),
        helper,
        server,
    )
}

/// Runs a credential helper `program` (looked up on PATH when relative).
fn run_helper_program(
    program: &Path,
    helper: &str,
    server: &str,
) -> Result<Option<Credentials>, AuthError> {
    let err = |reason: String| AuthError::Helper {
        helper: helper.to_string(),
        server: server.to_string(),
        reason,
    };
    let mut child = Command::new(program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| err(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(server.as_bytes())
            .map_err(|e| err(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| err(e.to_string()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // The helper protocol reports a missing entry this way.
        if stdout.contains("credentials not found") {
            return Ok(None);
        }
        let tail = String::from_utf8_lossy(&out.stderr);
        return Err(err(format!(
            "{}: {}{}",
            out.status,
            stdout.trim(),
            tail.trim()
        )));
    }
    #[derive(Deserialize)]
    struct HelperOut {
        #[serde(rename = "Username")]
        username: String,
        #[serde(rename = "Secret")]
        secret: String,
    }
    let h: HelperOut = serde_json::from_str(&stdout).map_err(|e| err(e.to_string()))?;
    Ok(Some(Credentials {
        username: h.username,
        password: h.secret,
    }))
}

/// One parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Lowercased scheme: `bearer` or `basic`.
    pub scheme: String,
    /// Lowercased parameter names → values (quotes removed).
    pub params: BTreeMap<String, String>,
}

/// Parses the first challenge of a `WWW-Authenticate` header value, e.g.
/// `Bearer realm="https://auth.docker.io/token",service="registry.docker.io"`.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = match header.split_once(char::is_whitespace) {
        Some((s, r)) => (s, r),
        None => (header, ""),
    };
    if scheme.is_empty() {
        return None;
    }
    let mut params = BTreeMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' || c.is_whitespace() {
                break;
            }
            name.push(c);
            chars.next();
        }
        if name.is_empty() {
            break;
        }
        if chars.peek() != Some(&'=') {
            break; // a following challenge or token68; we only need the first
        }
        chars.next();
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' || c.is_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        params.insert(name.to_ascii_lowercase(), value);
    }
    Some(Challenge {
        scheme: scheme.to_ascii_lowercase(),
        params,
    })
}

/// Percent-encodes a query component (RFC 3986 unreserved kept).
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The token endpoint URL for a Bearer challenge and a scope.
pub fn token_url(ch: &Challenge, scope: &str) -> Option<String> {
    let realm = ch.params.get("realm")?;
    let mut url = realm.clone();
    let mut sep = if realm.contains('?') { '&' } else { '?' };
    if let Some(service) = ch.params.get("service") {
        url.push_str(&format!("{sep}service={}", query_escape(service)));
        sep = '&';
    }
    url.push_str(&format!("{sep}scope={}", query_escape(scope)));
    Some(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenge() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:samalba/my-app:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.docker.io/token");
        assert_eq!(c.params["scope"], "repository:samalba/my-app:pull,push");
        assert_eq!(
            token_url(&c, "repository:library/busybox:pull").unwrap(),
            "https://auth.docker.io/token?service=registry.docker.io&scope=repository%3Alibrary%2Fbusybox%3Apull"
        );
        let b = parse_challenge(r#"Basic realm="Registry \"R\"", charset=UTF-8"#).unwrap();
        assert_eq!(b.scheme, "basic");
        assert_eq!(b.params["realm"], r#"Registry "R""#);
        assert_eq!(b.params["charset"], "UTF-8");
        assert_eq!(parse_challenge("Basic").unwrap().params.len(), 0);
        assert!(parse_challenge("").is_none());
    }

    #[test]
    fn reads_docker_config_auths() {
        let json = format!(
            r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{}"}},
              "127.0.0.1:5000":{{"auth":"{}"}},
              "https://ghcr.io":{{"username":"u","password":"p"}},
              "bad.example":{{"auth":"!!"}}}}}}"#,
            B64.encode("hubuser:hub:pass"),
            B64.encode("me:secret"),
        );
        let c = DockerConfig::parse(json.as_bytes(), Path::new("/x/config.json")).unwrap();
        let hub = c.credentials("docker.io").unwrap().unwrap();
        assert_eq!(hub.username, "hubuser");
        assert_eq!(hub.password, "hub:pass");
        assert_eq!(
            c.credentials("registry-1.docker.io").unwrap(),
            Some(hub.clone())
        );
        assert!(
            !format!("{c:?}").contains(&B64.encode("me:secret")),
            "secrets in Debug"
        );
        let local = c.credentials("127.0.0.1:5000").unwrap().unwrap();
        assert_eq!(
            local.basic_header(),
            format!("Basic {}", B64.encode("me:secret"))
        );
        assert_eq!(local.basic_header(), "Basic bWU6c2VjcmV0");
        assert_eq!(c.credentials("ghcr.io").unwrap().unwrap().username, "u");
        assert!(c.credentials("quay.io").unwrap().is_none());
        let e = c.credentials("bad.example").unwrap_err().to_string();
        assert!(e.contains("/x/config.json") && e.contains("base64"), "{e}");
    }

    #[test]
    fn runs_credential_helper() {
        let dir = tempfile::tempdir().unwrap();
        let helper = dir.path().join("docker-credential-smelttest");
        std::fs::write(
            &helper,
            "#!/bin/sh\nread s\nif [ \"$s\" = https://index.docker.io/v1/ ]; then\n\
             echo '{\"ServerURL\":\"x\",\"Username\":\"hu\",\"Secret\":\"hs\"}'; else\n\
             echo 'credentials not found in native keychain'; exit 1; fi\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let hub = run_helper_program(&helper, "smelttest", DOCKER_HUB_KEY)
            .unwrap()
            .unwrap();
        assert_eq!((hub.username.as_str(), hub.password.as_str()), ("hu", "hs"));
        assert!(
            run_helper_program(&helper, "smelttest", "ghcr.io")
                .unwrap()
                .is_none()
        );
        // run_helper uses the process PATH, which tests must not mutate
        // (tests run in parallel); a missing helper must be a clear error.
        let e = run_helper("smelt-no-such-helper", DOCKER_HUB_KEY)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("docker-credential-smelt-no-such-helper") && e.contains(DOCKER_HUB_KEY),
            "{e}"
        );
    }
}
