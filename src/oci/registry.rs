//! A small blocking client for the OCI distribution API (distribution-spec
//! v1.1: `/v2/<name>/manifests/<ref>`, `/v2/<name>/blobs/<digest>`,
//! monolithic `POST`+`PUT` uploads), with pull into and push from a [`Store`].
//!
//! Why not `oci-client`: it is async (tokio + reqwest) and buffers or hands
//! back streams we would have to drive; smelt pulls sequentially, verifies
//! each blob's sha256 while streaming it straight into the store's temp file,
//! and wants a small static binary. A blocking `ureq` agent does all of that
//! in a few hundred lines.
//!
//! Endpoints: a mirror (`docker.io=http://127.0.0.1:5000`) replaces the
//! registry's base URL for every request, pushes included (so tests and
//! air-gapped sites can serve `docker.io/...` names locally); otherwise `localhost`, `127.*` and `[::1]` use plain
//! HTTP and everything else HTTPS; `docker.io` means `registry-1.docker.io`.
//! Authentication: anonymous first; on 401 the `WWW-Authenticate` challenge
//! picks Basic or the Bearer token flow (distribution `token.md`), with
//! credentials from Docker's config.json ([`auth`](super::auth)).
//!
//! Non-goals: chunked/resumable uploads, cross-repository mounts, falling
//! back from a mirror to the upstream registry, platforms other than
//! linux/amd64.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use ureq::http::{self, Response};

use super::Progress;
use super::auth::{self, AuthError, DockerConfig};
use super::manifest::{
    self, DOCKER_LIST, DOCKER_MANIFEST, Descriptor, Index, MAX_MANIFEST_SIZE, Manifest, OCI_INDEX,
    OCI_MANIFEST,
};
use super::store::{Store, StoreError};
use super::{ProgressReader, Reference};
use crate::digest::Digest;

/// Errors from registry operations; each names the reference and the
/// registry base URL it was sent to.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{reference} ({url}): {what}: {source}")]
    Transport {
        reference: String,
        url: String,
        what: String,
        #[source]
        source: Box<ureq::Error>,
    },
    #[error("{reference} ({url}): {what}: HTTP {status}{detail}")]
    Status {
        reference: String,
        url: String,
        what: String,
        status: u16,
        detail: String,
    },
    #[error("{reference} ({url}): manifest not found (HTTP 404)")]
    NotFound { reference: String, url: String },
    #[error("blob {digest} of {reference} ({url}): digest mismatch, got {got}")]
    BlobDigest {
        digest: Digest,
        reference: String,
        url: String,
        got: Digest,
    },
    #[error("manifest of {reference} ({url}): digest mismatch, expected {expected}, got {got}")]
    ManifestDigest {
        reference: String,
        url: String,
        expected: Digest,
        got: Digest,
    },
    #[error("{reference} ({url}): no linux/amd64 image in the index (found {platforms})")]
    NoPlatform {
        reference: String,
        url: String,
        platforms: String,
    },
    #[error("{reference} ({url}): {reason}")]
    Invalid {
        reference: String,
        url: String,
        reason: String,
    },
    #[error("{reference} ({url}): authentication failed: {reason}")]
    Auth {
        reference: String,
        url: String,
        reason: String,
    },
    #[error("{reference}: not in the local store {root}")]
    NotInStore { reference: String, root: String },
    #[error("{reference}: {source}")]
    Store {
        reference: String,
        #[source]
        source: StoreError,
    },
    #[error(transparent)]
    Credentials(#[from] AuthError),
}

type Result<T> = std::result::Result<T, RegistryError>;

/// What the client needs to know besides references.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// `(registry host, base URL)`: requests for that registry go to the URL.
    pub mirrors: Vec<(String, String)>,
    /// Credentials source.
    pub docker_config: DockerConfig,
}

impl RegistryOptions {
    /// Options with credentials from the default Docker config.json.
    pub fn from_env() -> std::result::Result<RegistryOptions, AuthError> {
        Ok(RegistryOptions {
            mirrors: Vec::new(),
            docker_config: DockerConfig::load_default()?,
        })
    }

    /// Parses a `registry=URL` mirror spec, e.g. `docker.io=http://127.0.0.1:5000`.
    pub fn parse_mirror(spec: &str) -> Option<(String, String)> {
        let (host, url) = spec.split_once('=')?;
        let ok = !host.is_empty() && (url.starts_with("http://") || url.starts_with("https://"));
        ok.then(|| (host.to_string(), url.trim_end_matches('/').to_string()))
    }
}

/// A request body.
#[derive(Clone, Copy)]
enum Payload<'a> {
    Empty,
    Bytes(&'a [u8]),
    File(&'a Path),
}

/// One repository on one registry, with the access wanted.
struct Target<'a> {
    reference: &'a Reference,
    base: String,
    push: bool,
}

/// `host[:port]` of a base URL: whose credentials we may send there.
fn url_host(base: &str) -> &str {
    let rest = base.split_once("://").map_or(base, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest)
}

impl Target<'_> {
    fn repo_url(&self, kind: &str, rest: &str) -> String {
        format!(
            "{}/v2/{}/{kind}/{rest}",
            self.base, self.reference.repository
        )
    }
    fn scope(&self) -> String {
        let actions = if self.push { "pull,push" } else { "pull" };
        format!("repository:{}:{actions}", self.reference.repository)
    }
    fn cache_key(&self) -> String {
        format!("{} {}", self.base, self.scope())
    }
}

/// A blocking registry client. Cheap to share by reference; caches
/// Authorization headers per registry and scope.
pub struct RegistryClient {
    agent: ureq::Agent,
    mirrors: Vec<(String, String)>,
    docker_config: DockerConfig,
    auth_cache: Mutex<HashMap<String, String>>,
}

/// The top-level manifest a pull stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    /// Digest of what the reference names (an index or a manifest).
    pub digest: Digest,
    pub media_type: String,
}

impl RegistryClient {
    pub fn new(opts: &RegistryOptions) -> RegistryClient {
        let agent = ureq::Agent::config_builder()
            // We map statuses to errors that name the reference ourselves.
            .http_status_as_error(false)
            // Blobs must arrive byte-exact for digest checks.
            .accept_encoding("identity")
            .user_agent(concat!("smelt/", env!("CARGO_PKG_VERSION")))
            // A dead registry must fail, not hang a CI build; no overall
            // body timeout, since layers can be large on slow links.
            .timeout_connect(Some(std::time::Duration::from_secs(30)))
            .timeout_recv_response(Some(std::time::Duration::from_secs(120)))
            .build()
            .new_agent();
        RegistryClient {
            agent,
            mirrors: opts.mirrors.clone(),
            docker_config: opts.docker_config.clone(),
            auth_cache: Mutex::new(HashMap::new()),
        }
    }

    /// The base URL (scheme://host[:port], no trailing slash) for `registry`.
    pub fn base_url(&self, registry: &str) -> String {
        if let Some((_, url)) = self.mirrors.iter().find(|(h, _)| h == registry) {
            return url.trim_end_matches('/').to_string();
        }
        let host = registry.rsplit_once(':').map_or(registry, |(h, p)| {
            if p.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                registry
            }
        });
        // Loopback only (an IPv4 literal, not a name like `127.example.com`).
        let local = host == "localhost"
            || host == "[::1]"
            || host
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|a| a.is_loopback());
        match registry {
            "docker.io" => "https://registry-1.docker.io".to_string(),
            r if local => format!("http://{r}"),
            r => format!("https://{r}"),
        }
    }

    fn target<'a>(&self, reference: &'a Reference, push: bool) -> Target<'a> {
        Target {
            reference,
            base: self.base_url(&reference.registry),
            push,
        }
    }

    fn send_once(
        &self,
        method: &http::Method,
        url: &str,
        headers: &[(&str, &str)],
        auth: Option<&str>,
        body: Payload<'_>,
    ) -> std::result::Result<Response<ureq::Body>, ureq::Error> {
        let mut b = http::Request::builder().method(method.clone()).uri(url);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        if let Some(a) = auth {
            b = b.header("Authorization", a);
        }
        match body {
            Payload::Empty => self.agent.run(b.body(())?),
            Payload::Bytes(bytes) => self.agent.run(b.body(bytes)?),
            Payload::File(p) => self.agent.run(b.body(std::fs::File::open(p)?)?),
        }
    }

    /// Sends a request, authenticating and retrying once on 401.
    fn request(
        &self,
        t: &Target<'_>,
        method: http::Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Payload<'_>,
        what: &str,
    ) -> Result<Response<ureq::Body>> {
        let mut retried = false;
        loop {
            let cached = self.cached_auth(t);
            let resp = self
                .send_once(&method, url, headers, cached.as_deref(), body)
                .map_err(|e| RegistryError::Transport {
                    reference: t.reference.to_string(),
                    url: t.base.clone(),
                    what: what.to_string(),
                    source: Box::new(e),
                })?;
            if resp.status() != 401 || retried {
                return Ok(resp);
            }
            let challenge = resp
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            self.authenticate(t, &challenge)?;
            retried = true;
        }
    }

    fn cached_auth(&self, t: &Target<'_>) -> Option<String> {
        let cache = self.auth_cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.get(&t.cache_key()).cloned()
    }

    /// Answers a 401 challenge and caches the resulting Authorization value.
    fn authenticate(&self, t: &Target<'_>, challenge: &str) -> Result<()> {
        let fail = |reason: String| RegistryError::Auth {
            reference: t.reference.to_string(),
            url: t.base.clone(),
            reason,
        };
        let ch = auth::parse_challenge(challenge)
            .ok_or_else(|| fail("HTTP 401 without a WWW-Authenticate challenge".into()))?;
        // Credentials of the host actually contacted (a mirror's own, not
        // those of the registry it mirrors), so they never leak elsewhere;
        // registry-1.docker.io maps to Docker Hub's key.
        let host = url_host(&t.base);
        let creds = self.docker_config.credentials(host)?;
        let header = match ch.scheme.as_str() {
            "basic" => creds
                .ok_or_else(|| {
                    fail(format!(
                        "registry wants Basic auth and no credentials are configured for {host}"
                    ))
                })?
                .basic_header(),
            "bearer" => {
                let url = auth::token_url(&ch, &t.scope())
                    .ok_or_else(|| fail(format!("Bearer challenge without realm: {challenge}")))?;
                let basic = creds.as_ref().map(|c| c.basic_header());
                let mut resp = self
                    .send_once(
                        &http::Method::GET,
                        &url,
                        &[],
                        basic.as_deref(),
                        Payload::Empty,
                    )
                    .map_err(|e| fail(format!("token request to {url}: {e}")))?;
                if resp.status() != 200 {
                    return Err(fail(format!(
                        "token request to {url}: HTTP {}",
                        resp.status()
                    )));
                }
                #[derive(serde::Deserialize)]
                struct Token {
                    token: Option<String>,
                    access_token: Option<String>,
                }
                let body = resp
                    .body_mut()
                    .with_config()
                    .limit(1 << 20)
                    .read_to_vec()
                    .map_err(|e| fail(format!("token response from {url}: {e}")))?;
                let tok: Token = serde_json::from_slice(&body)
                    .map_err(|e| fail(format!("token response from {url}: {e}")))?;
                let tok = tok
                    .token
                    .or(tok.access_token)
                    .ok_or_else(|| fail(format!("token response from {url} has no token")))?;
                format!("Bearer {tok}")
            }
            other => return Err(fail(format!("unsupported auth scheme {other:?}"))),
        };
        let mut cache = self.auth_cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.insert(t.cache_key(), header);
        Ok(())
    }

    fn status_err(
        &self,
        t: &Target<'_>,
        what: &str,
        resp: &mut Response<ureq::Body>,
    ) -> RegistryError {
        // The distribution error body ({"errors":[{"code","message"}]}) is
        // short and says why; keep its first line.
        let body = resp
            .body_mut()
            .with_config()
            .limit(4096)
            .read_to_string()
            .unwrap_or_default();
        let line = body.lines().next().unwrap_or("").trim();
        RegistryError::Status {
            reference: t.reference.to_string(),
            url: t.base.clone(),
            what: what.to_string(),
            status: resp.status().as_u16(),
            detail: if line.is_empty() {
                String::new()
            } else {
                format!(" {line}")
            },
        }
    }

    fn invalid(&self, t: &Target<'_>, reason: String) -> RegistryError {
        RegistryError::Invalid {
            reference: t.reference.to_string(),
            url: t.base.clone(),
            reason,
        }
    }

    /// GETs a manifest or index: its bytes, media type and digest.
    fn fetch_manifest(&self, t: &Target<'_>, r: &str) -> Result<(Vec<u8>, String, Digest)> {
        let accept = [OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST].join(", ");
        let url = t.repo_url("manifests", r);
        let what = format!("GET manifest {r}");
        let mut resp = self.request(
            t,
            http::Method::GET,
            &url,
            &[("Accept", &accept)],
            Payload::Empty,
            &what,
        )?;
        match resp.status().as_u16() {
            200 => {}
            404 => {
                return Err(RegistryError::NotFound {
                    reference: t.reference.to_string(),
                    url: t.base.clone(),
                });
            }
            _ => return Err(self.status_err(t, &what, &mut resp)),
        }
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(|s| s.split(';').next().unwrap_or(s).trim().to_string());
        let header_digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok());
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(MAX_MANIFEST_SIZE)
            .read_to_vec()
            .map_err(|e| self.invalid(t, format!("reading manifest {r}: {e}")))?;
        let digest = Digest::of(&bytes);
        // The registry's own digest claim must match the bytes we got.
        if let Some(claimed) = header_digest.filter(|h| *h != digest) {
            return Err(RegistryError::ManifestDigest {
                reference: t.reference.to_string(),
                url: t.base.clone(),
                expected: claimed,
                got: digest,
            });
        }
        let media_type = manifest::sniff_media_type(&bytes)
            .filter(|m| manifest::is_index(m) || manifest::is_manifest(m))
            .or(content_type)
            .unwrap_or_default();
        Ok((bytes, media_type, digest))
    }

    /// Downloads one blob into the store, verifying its digest as it streams;
    /// skips blobs already present.
    fn fetch_blob(
        &self,
        store: &Store,
        t: &Target<'_>,
        d: &Descriptor,
        progress: &dyn Progress,
    ) -> Result<()> {
        if store.has_blob(&d.digest) {
            return Ok(());
        }
        let url = t.repo_url("blobs", &d.digest.to_string());
        let what = format!("GET blob {}", d.digest);
        let mut resp = self.request(t, http::Method::GET, &url, &[], Payload::Empty, &what)?;
        if resp.status() != 200 {
            return Err(self.status_err(t, &what, &mut resp));
        }
        progress.start(&d.digest.to_string(), Some(d.size));
        // Never read past the descriptor's size: a longer body is wrong
        // anyway and the digest check will say so.
        let reader = ProgressReader {
            inner: std::io::Read::take(resp.into_body().into_reader(), d.size),
            progress,
        };
        let res = store.write_blob(reader, Some(&d.digest));
        progress.finish();
        match res {
            Ok(_) => Ok(()),
            Err(StoreError::DigestMismatch { got, .. }) => Err(RegistryError::BlobDigest {
                digest: d.digest.clone(),
                reference: t.reference.to_string(),
                url: t.base.clone(),
                got,
            }),
            Err(source) => Err(RegistryError::Store {
                reference: t.reference.to_string(),
                source,
            }),
        }
    }

    fn store_err(t: &Target<'_>) -> impl FnOnce(StoreError) -> RegistryError {
        let reference = t.reference.to_string();
        move |source| RegistryError::Store { reference, source }
    }

    /// Pulls `reference` (for an index, its linux/amd64 image) into `store`.
    /// Blobs are written before the manifests naming them, so a manifest in
    /// the store implies its blobs are there. Does not tag.
    pub fn pull(
        &self,
        store: &Store,
        reference: &Reference,
        progress: &dyn Progress,
    ) -> Result<Pulled> {
        let t = self.target(reference, false);
        let (bytes, media_type, digest) = self.fetch_manifest(&t, &reference.manifest_ref())?;
        if let Some(pin) = &reference.digest
            && *pin != digest
        {
            return Err(RegistryError::ManifestDigest {
                reference: reference.to_string(),
                url: t.base.clone(),
                expected: pin.clone(),
                got: digest,
            });
        }
        if manifest::is_index(&media_type) {
            let index: Index = serde_json::from_slice(&bytes)
                .map_err(|e| self.invalid(&t, format!("index {digest}: {e}")))?;
            let entry = index
                .linux_amd64()
                .ok_or_else(|| RegistryError::NoPlatform {
                    reference: reference.to_string(),
                    url: t.base.clone(),
                    platforms: index.platforms().join(", "),
                })?;
            let (mbytes, _mt, mdigest) = self.fetch_manifest(&t, &entry.digest.to_string())?;
            if mdigest != entry.digest {
                return Err(RegistryError::ManifestDigest {
                    reference: reference.to_string(),
                    url: t.base.clone(),
                    expected: entry.digest.clone(),
                    got: mdigest,
                });
            }
            self.pull_image(store, &t, &mbytes, &mdigest, progress)?;
        } else if manifest::is_manifest(&media_type) {
            self.pull_image(store, &t, &bytes, &digest, progress)?;
        } else {
            return Err(self.invalid(
                &t,
                format!("unsupported manifest media type {media_type:?}"),
            ));
        }
        if !store.has_blob(&digest) {
            store
                .write_blob(&bytes[..], Some(&digest))
                .map_err(Self::store_err(&t))?;
        }
        Ok(Pulled { digest, media_type })
    }

    fn pull_image(
        &self,
        store: &Store,
        t: &Target<'_>,
        bytes: &[u8],
        digest: &Digest,
        progress: &dyn Progress,
    ) -> Result<()> {
        let m: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| self.invalid(t, format!("manifest {digest}: {e}")))?;
        self.fetch_blob(store, t, &m.config, progress)?;
        for layer in &m.layers {
            self.fetch_blob(store, t, layer, progress)?;
        }
        if !store.has_blob(digest) {
            store
                .write_blob(bytes, Some(digest))
                .map_err(Self::store_err(t))?;
        }
        Ok(())
    }

    /// Uploads one blob from the store unless the registry already has it.
    fn push_blob(
        &self,
        store: &Store,
        t: &Target<'_>,
        d: &Descriptor,
        progress: &dyn Progress,
    ) -> Result<()> {
        let url = t.repo_url("blobs", &d.digest.to_string());
        let what = format!("HEAD blob {}", d.digest);
        let mut resp = self.request(t, http::Method::HEAD, &url, &[], Payload::Empty, &what)?;
        match resp.status().as_u16() {
            200 => return Ok(()),
            404 => {}
            _ => return Err(self.status_err(t, &what, &mut resp)),
        }
        let path = store.blob_path(&d.digest);
        if !path.is_file() {
            return Err(RegistryError::Store {
                reference: t.reference.to_string(),
                source: StoreError::MissingBlob {
                    digest: d.digest.clone(),
                    root: store.root().to_path_buf(),
                },
            });
        }
        let what = format!("POST upload for blob {}", d.digest);
        let url = t.repo_url("blobs", "uploads/");
        let mut resp = self.request(t, http::Method::POST, &url, &[], Payload::Empty, &what)?;
        if resp.status() != 202 {
            return Err(self.status_err(t, &what, &mut resp));
        }
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| self.invalid(t, format!("{what}: no Location header")))?;
        let mut put_url = if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else {
            format!("{}{location}", t.base)
        };
        put_url.push(if put_url.contains('?') { '&' } else { '?' });
        put_url.push_str(&format!(
            "digest={}",
            auth::query_escape(&d.digest.to_string())
        ));
        progress.start(&d.digest.to_string(), Some(d.size));
        let what = format!("PUT blob {}", d.digest);
        let headers = [("Content-Type", "application/octet-stream")];
        let mut resp = self.request(
            t,
            http::Method::PUT,
            &put_url,
            &headers,
            Payload::File(&path),
            &what,
        )?;
        progress.advance(d.size);
        progress.finish();
        if resp.status() != 201 {
            return Err(self.status_err(t, &what, &mut resp));
        }
        Ok(())
    }

    fn put_manifest(&self, t: &Target<'_>, r: &str, bytes: &[u8], media_type: &str) -> Result<()> {
        let url = t.repo_url("manifests", r);
        let what = format!("PUT manifest {r}");
        let headers = [("Content-Type", media_type)];
        let mut resp = self.request(
            t,
            http::Method::PUT,
            &url,
            &headers,
            Payload::Bytes(bytes),
            &what,
        )?;
        if resp.status() != 201 {
            return Err(self.status_err(t, &what, &mut resp));
        }
        Ok(())
    }

    /// Pushes one image manifest and its blobs; `r` is the tag or digest.
    fn push_image(
        &self,
        store: &Store,
        t: &Target<'_>,
        digest: &Digest,
        r: &str,
        progress: &dyn Progress,
    ) -> Result<()> {
        let bytes = store
            .read_blob(digest, MAX_MANIFEST_SIZE)
            .map_err(Self::store_err(t))?;
        let m: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| self.invalid(t, format!("local manifest {digest}: {e}")))?;
        self.push_blob(store, t, &m.config, progress)?;
        for l in &m.layers {
            self.push_blob(store, t, l, progress)?;
        }
        let mt = m.media_type.as_deref().unwrap_or(OCI_MANIFEST);
        self.put_manifest(t, r, &bytes, mt)
    }
}

/// Pushes the image `local` names in `store` to `dest`; returns the digest
/// of the pushed top-level manifest. An index is pushed whole when all its
/// manifests are in the store; otherwise (a pull keeps only linux/amd64)
/// just the linux/amd64 image is pushed.
pub fn push(
    store: &Store,
    local: &Reference,
    dest: &Reference,
    client: &RegistryClient,
    progress: &dyn Progress,
) -> Result<Digest> {
    let t = client.target(dest, true);
    let digest = store
        .lookup(local)
        .map_err(RegistryClient::store_err(&t))?
        .ok_or_else(|| RegistryError::NotInStore {
            reference: local.to_string(),
            root: store.root().display().to_string(),
        })?;
    let bytes = store
        .read_blob(&digest, MAX_MANIFEST_SIZE)
        .map_err(RegistryClient::store_err(&t))?;
    let media_type = manifest::sniff_media_type(&bytes).unwrap_or_default();
    let top_ref = |d: &Digest| dest.tag.clone().unwrap_or_else(|| d.to_string());
    if !manifest::is_index(&media_type) {
        client.push_image(store, &t, &digest, &top_ref(&digest), progress)?;
        return Ok(digest);
    }
    let index: Index = serde_json::from_slice(&bytes)
        .map_err(|e| client.invalid(&t, format!("local index {digest}: {e}")))?;
    if index.manifests.iter().all(|d| store.has_blob(&d.digest)) {
        for m in &index.manifests {
            client.push_image(store, &t, &m.digest, &m.digest.to_string(), progress)?;
        }
        client.put_manifest(&t, &top_ref(&digest), &bytes, &media_type)?;
        return Ok(digest);
    }
    let image = store
        .image(&digest)
        .map_err(RegistryClient::store_err(&t))?;
    let d = image.manifest_digest;
    client.push_image(store, &t, &d, &top_ref(&d), progress)?;
    Ok(d)
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;
