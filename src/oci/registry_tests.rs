//! Pull/push tests against a real distribution server (see testregistry).

use std::path::Path;

use super::*;
use crate::oci::manifest::Platform;
use crate::oci::testregistry::{TestRegistry, config_for, make_layer};
use crate::oci::{NoProgress, Progress, PullPolicy, Resolver};

fn r(s: &str) -> Reference {
    Reference::parse(s).unwrap()
}

fn client() -> RegistryClient {
    RegistryClient::new(&RegistryOptions::default())
}

/// A store in `dir/name` holding one image tagged `tag`; returns its digest.
fn store_with_image(
    dir: &Path,
    name: &str,
    tag: &str,
    content: &[u8],
    arch: &str,
) -> (Store, Digest) {
    let store = Store::open(&dir.join(name)).unwrap();
    let (gz, diff_id) = make_layer(dir, &format!("{name}-{arch}.tar.gz"), &[("bin/x", content)]);
    let d = store
        .import_image(&gz, &diff_id, config_for(arch), &r(tag))
        .unwrap();
    (store, d)
}

#[test]
fn base_urls_and_mirrors() {
    let c = RegistryClient::new(&RegistryOptions {
        mirrors: vec![RegistryOptions::parse_mirror("quay.io=http://127.0.0.1:5000/").unwrap()],
        ..Default::default()
    });
    assert_eq!(c.base_url("docker.io"), "https://registry-1.docker.io");
    assert_eq!(c.base_url("ghcr.io"), "https://ghcr.io");
    assert_eq!(c.base_url("localhost:5000"), "http://localhost:5000");
    assert_eq!(c.base_url("127.0.0.1:5000"), "http://127.0.0.1:5000");
    assert_eq!(c.base_url("[::1]:5000"), "http://[::1]:5000");
    assert_eq!(c.base_url("127.example.com"), "https://127.example.com");
    assert_eq!(c.base_url("quay.io"), "http://127.0.0.1:5000");
    assert!(RegistryOptions::parse_mirror("docker.io").is_none());
    assert!(RegistryOptions::parse_mirror("docker.io=ftp://x").is_none());
}

#[test]
fn push_then_pull_by_tag_and_by_digest() {
    let reg = TestRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let (a, d) = store_with_image(dir.path(), "a", "local/bb:1", b"hello", "amd64");
    let dest = r(&format!("{}/smelt/busybox:latest", reg.host()));
    let c = client();
    assert_eq!(
        push(&a, &r("local/bb:1"), &dest, &c, &NoProgress).unwrap(),
        d
    );
    // Pushing again is a no-op for blobs and succeeds.
    push(&a, &r("local/bb:1"), &dest, &c, &NoProgress).unwrap();

    let b = Store::open(&dir.path().join("b")).unwrap();
    let img = Resolver::new(&b, &c, PullPolicy::Missing)
        .resolve(&dest)
        .unwrap();
    assert_eq!(img.manifest_digest, d);
    assert_eq!(b.lookup(&dest).unwrap(), Some(d.clone()));
    let tar = b.layer_tar(&img.layers[0]).unwrap();
    assert_eq!(Digest::of_file(&tar).unwrap(), img.layers[0].diff_id);

    let pinned = dest.without_digest().with_digest(d.clone());
    let pinned = Reference {
        tag: None,
        ..pinned
    };
    let c2 = Store::open(&dir.path().join("c")).unwrap();
    let img = Resolver::new(&c2, &c, PullPolicy::Always)
        .resolve(&pinned)
        .unwrap();
    assert_eq!(img.manifest_digest, d);
    assert_eq!(c2.list().unwrap()[0].reference, pinned.to_string());

    // A pinned image in the store needs no network, even with Always.
    let offline = RegistryClient::new(&RegistryOptions {
        mirrors: vec![(reg.host(), "http://127.0.0.1:9".into())],
        ..Default::default()
    });
    let img = Resolver::new(&c2, &offline, PullPolicy::Always)
        .resolve(&pinned)
        .unwrap();
    assert_eq!(img.manifest_digest, d);
    // ... while a wrong pin is caught against the registry.
    let wrong = dest.with_digest(Digest::of(b"nope"));
    let e = client().pull(&c2, &wrong, &NoProgress).unwrap_err();
    assert!(
        matches!(
            e,
            RegistryError::NotFound { .. } | RegistryError::ManifestDigest { .. }
        ),
        "{e}"
    );
}

#[test]
fn pull_policies_and_missing_tag() {
    let reg = TestRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let c = client();
    let dest = r(&format!("{}/smelt/app:v1", reg.host()));
    let (a, d1) = store_with_image(dir.path(), "a", "l/app:1", b"one", "amd64");
    let (a2, d2) = store_with_image(dir.path(), "a2", "l/app:2", b"two", "amd64");
    push(&a, &r("l/app:1"), &dest, &c, &NoProgress).unwrap();

    let b = Store::open(&dir.path().join("b")).unwrap();
    let e = Resolver::new(&b, &c, PullPolicy::Never)
        .resolve(&dest)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{dest}: not in the local store {} and pull policy is never",
            b.root().display()
        )
    );
    assert_eq!(
        Resolver::new(&b, &c, PullPolicy::Missing)
            .resolve(&dest)
            .unwrap()
            .manifest_digest,
        d1
    );
    push(&a2, &r("l/app:2"), &dest, &c, &NoProgress).unwrap();
    // Missing keeps the local copy; Always sees the new tag.
    assert_eq!(
        Resolver::new(&b, &c, PullPolicy::Missing)
            .resolve(&dest)
            .unwrap()
            .manifest_digest,
        d1
    );
    assert_eq!(
        Resolver::new(&b, &c, PullPolicy::Always)
            .resolve(&dest)
            .unwrap()
            .manifest_digest,
        d2
    );
    assert_eq!(
        Resolver::new(&b, &c, PullPolicy::Never)
            .resolve(&dest)
            .unwrap()
            .manifest_digest,
        d2
    );

    let missing = r(&format!("{}/smelt/app:nope", reg.host()));
    let e = Resolver::new(&b, &c, PullPolicy::Missing)
        .resolve(&missing)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{missing} ({}): manifest not found (HTTP 404)", reg.url())
    );
}

#[test]
fn pulls_linux_amd64_from_index() {
    let reg = TestRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let c = client();
    let (a, amd) = store_with_image(dir.path(), "a", "l/m:amd64", b"x86", "amd64");
    let (gz, diff_id) = make_layer(dir.path(), "arm.tar.gz", &[("bin/x", b"arm")]);
    let arm = a
        .import_image(&gz, &diff_id, config_for("arm64"), &r("l/m:arm64"))
        .unwrap();
    let entry = |d: &Digest, arch: &str| {
        let mut desc = Descriptor::new(
            OCI_MANIFEST,
            d.clone(),
            std::fs::metadata(a.blob_path(d)).unwrap().len(),
        );
        desc.platform = Some(Platform {
            architecture: arch.into(),
            os: "linux".into(),
            variant: None,
        });
        desc
    };
    let mut index = Index::new();
    index.manifests = vec![entry(&arm, "arm64"), entry(&amd, "amd64")];
    let bytes = serde_json::to_vec(&index).unwrap();
    let idx = a.write_blob(&bytes[..], None).unwrap();
    a.tag(&r("l/m:multi"), &idx, OCI_INDEX).unwrap();
    let dest = r(&format!("{}/smelt/multi:latest", reg.host()));
    assert_eq!(
        push(&a, &r("l/m:multi"), &dest, &c, &NoProgress).unwrap(),
        idx
    );

    let b = Store::open(&dir.path().join("b")).unwrap();
    let img = Resolver::new(&b, &c, PullPolicy::Missing)
        .resolve(&dest)
        .unwrap();
    assert_eq!(img.manifest_digest, amd);
    assert_eq!(b.lookup(&dest).unwrap(), Some(idx.clone()));
    assert!(!b.has_blob(&arm), "other platforms are not fetched");
    // The stored index resolves offline too, and pushes as the amd64 image.
    let img = Resolver::new(&b, &c, PullPolicy::Never)
        .resolve(&dest)
        .unwrap();
    assert_eq!(img.manifest_digest, amd);
    let again = r(&format!("{}/smelt/again:1", reg.host()));
    assert_eq!(push(&b, &dest, &again, &c, &NoProgress).unwrap(), amd);

    // An index without linux/amd64 names the platforms it has.
    index.manifests = vec![entry(&arm, "arm64")];
    let bytes = serde_json::to_vec(&index).unwrap();
    let only_arm = a.write_blob(&bytes[..], None).unwrap();
    a.tag(&r("l/m:arm"), &only_arm, OCI_INDEX).unwrap();
    let dest = r(&format!("{}/smelt/armonly:latest", reg.host()));
    push(&a, &r("l/m:arm"), &dest, &c, &NoProgress).unwrap();
    let e = Resolver::new(&b, &c, PullPolicy::Missing)
        .resolve(&dest)
        .unwrap_err();
    assert!(matches!(e, RegistryError::NoPlatform { .. }));
    assert_eq!(
        e.to_string(),
        format!(
            "{dest} ({}): no linux/amd64 image in the index (found linux/arm64)",
            reg.url()
        )
    );
}

#[test]
fn corrupted_blob_fails_and_stores_nothing() {
    let reg = TestRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let c = client();
    let (a, d) = store_with_image(dir.path(), "a", "l/c:1", b"precious", "amd64");
    let dest = r(&format!("{}/smelt/busybox:latest", reg.host()));
    push(&a, &r("l/c:1"), &dest, &c, &NoProgress).unwrap();
    let layer = a.image(&d).unwrap().layers[0].digest.clone();
    let data = reg.blob_data_path(&layer);
    let mut bytes = std::fs::read(&data).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&data, &bytes).unwrap();

    let b = Store::open(&dir.path().join("b")).unwrap();
    let e = Resolver::new(&b, &c, PullPolicy::Missing)
        .resolve(&dest)
        .unwrap_err();
    let RegistryError::BlobDigest { digest, got, .. } = &e else {
        panic!("unexpected error {e}");
    };
    assert_eq!(*digest, layer);
    assert_eq!(*got, Digest::of(&bytes));
    assert_eq!(
        e.to_string(),
        format!(
            "blob {layer} of {dest} ({}): digest mismatch, got {got}",
            reg.url()
        )
    );
    assert!(!b.has_blob(&layer));
    assert!(!b.has_blob(&d), "no manifest without its layers");
    assert_eq!(b.lookup(&dest).unwrap(), None);
    assert_eq!(std::fs::read_dir(b.root().join("tmp")).unwrap().count(), 0);
}

#[test]
fn mirror_serves_docker_io() {
    let reg = TestRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let (a, d) = store_with_image(dir.path(), "a", "l/bb:1", b"mirror", "amd64");
    let upstream = r(&format!("{}/smelt/busybox:latest", reg.host()));
    push(&a, &r("l/bb:1"), &upstream, &client(), &NoProgress).unwrap();
    let mirrored = RegistryClient::new(&RegistryOptions {
        mirrors: vec![RegistryOptions::parse_mirror(&format!("docker.io={}", reg.url())).unwrap()],
        ..Default::default()
    });
    let b = Store::open(&dir.path().join("b")).unwrap();
    let hub = r("smelt/busybox");
    let img = Resolver::new(&b, &mirrored, PullPolicy::Missing)
        .resolve(&hub)
        .unwrap();
    assert_eq!(img.manifest_digest, d);
    assert_eq!(
        b.list().unwrap()[0].reference,
        "docker.io/smelt/busybox:latest"
    );
}

fn config_with_auth(host: &str, user: &str, password: &str) -> DockerConfig {
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let json = format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}"}}}}}}"#);
    DockerConfig::parse(json.as_bytes(), Path::new("test-config.json")).unwrap()
}

#[test]
fn basic_auth_with_docker_config_credentials() {
    use crate::oci::testregistry::{BASIC_PASSWORD, BASIC_USER};
    let reg = TestRegistry::start_with_basic_auth();
    let dir = tempfile::tempdir().unwrap();
    let (a, d) = store_with_image(dir.path(), "a", "l/s:1", b"secret", "amd64");
    let dest = r(&format!("{}/smelt/private:1", reg.host()));
    let authed = RegistryClient::new(&RegistryOptions {
        docker_config: config_with_auth(&reg.host(), BASIC_USER, BASIC_PASSWORD),
        ..Default::default()
    });
    assert_eq!(
        push(&a, &r("l/s:1"), &dest, &authed, &NoProgress).unwrap(),
        d
    );
    let b = Store::open(&dir.path().join("b")).unwrap();
    let img = Resolver::new(&b, &authed, PullPolicy::Missing)
        .resolve(&dest)
        .unwrap();
    assert_eq!(img.manifest_digest, d);

    let e = client().pull(&b, &dest, &NoProgress).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{dest} ({}): authentication failed: registry wants Basic auth and no credentials are configured for {}",
            reg.url(),
            reg.host()
        )
    );
    let wrong = RegistryClient::new(&RegistryOptions {
        docker_config: config_with_auth(&reg.host(), BASIC_USER, "wrong"),
        ..Default::default()
    });
    let e = wrong.pull(&b, &dest, &NoProgress).unwrap_err();
    assert!(
        matches!(e, RegistryError::Status { status: 401, .. }),
        "{e}"
    );
}

/// A minimal HTTP server speaking the Bearer token flow (distribution
/// `token.md`): `/v2/…` needs `Bearer T0K`, `/token` hands it out. Records
/// each request as `METHOD target authorization`.
struct FakeTokenRegistry {
    port: u16,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl FakeTokenRegistry {
    fn start(files: Vec<(String, String, Vec<u8>)>) -> FakeTokenRegistry {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log2 = log.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let target = line.split(' ').nth(1).unwrap_or("").to_string();
                let mut auth = String::new();
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                    if let Some(v) = h
                        .strip_prefix("authorization: ")
                        .or(h.strip_prefix("Authorization: "))
                    {
                        auth = v.trim().to_string();
                    }
                }
                log2.lock().unwrap().push(format!(
                    "{} {target} {auth}",
                    line.split(' ').next().unwrap_or("")
                ));
                let (status, extra, ctype, body): (&str, String, &str, Vec<u8>) = if target
                    .starts_with("/token")
                {
                    (
                        "200 OK",
                        String::new(),
                        "application/json",
                        br#"{"token":"T0K"}"#.to_vec(),
                    )
                } else if auth != "Bearer T0K" {
                    let ch = format!(
                        "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"fake\"\r\n"
                    );
                    (
                        "401 Unauthorized",
                        ch,
                        "text/plain",
                        b"unauthorized".to_vec(),
                    )
                } else if let Some((_, ct, b)) = files.iter().find(|(p, _, _)| *p == target) {
                    ("200 OK", String::new(), ct.as_str(), b.clone())
                } else {
                    (
                        "404 Not Found",
                        String::new(),
                        "text/plain",
                        b"not found".to_vec(),
                    )
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\n{extra}Content-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(head.as_bytes());
                let _ = conn.write_all(&body);
            }
        });
        FakeTokenRegistry { port, log }
    }
}

#[test]
fn bearer_token_flow() {
    let dir = tempfile::tempdir().unwrap();
    let (a, d) = store_with_image(dir.path(), "a", "l/t:1", b"token", "amd64");
    let img = a.image(&d).unwrap();
    let mut files = vec![
        (
            "/v2/smelt/bb/manifests/latest".to_string(),
            OCI_MANIFEST.to_string(),
            img.manifest_bytes.clone(),
        ),
        (
            format!("/v2/smelt/bb/manifests/{}", Digest::of(b"pin")),
            OCI_MANIFEST.to_string(),
            img.manifest_bytes.clone(),
        ),
    ];
    for blob in [&img.config_digest, &img.layers[0].digest] {
        files.push((
            format!("/v2/smelt/bb/blobs/{blob}"),
            "application/octet-stream".into(),
            std::fs::read(a.blob_path(blob)).unwrap(),
        ));
    }
    let fake = FakeTokenRegistry::start(files);
    let mirror = format!("127.0.0.1:{}", fake.port);
    let mirrors = vec![("docker.io".to_string(), format!("http://{mirror}"))];
    // docker.io mirrored to the fake: Docker Hub's credentials are never
    // sent to the mirror ...
    let hub_only = RegistryClient::new(&RegistryOptions {
        mirrors: mirrors.clone(),
        docker_config: config_with_auth("https://index.docker.io/v1/", "hub", "pw"),
    });
    let b = Store::open(&dir.path().join("b0")).unwrap();
    hub_only.pull(&b, &r("smelt/bb"), &NoProgress).unwrap();
    let token_req = fake.log.lock().unwrap().drain(..).nth(1).unwrap();
    assert!(
        token_req.starts_with("GET /token") && token_req.ends_with(' '),
        "{token_req}"
    );
    // ... the mirror's own are.
    let c = RegistryClient::new(&RegistryOptions {
        mirrors,
        docker_config: config_with_auth(&mirror, "hub", "pw"),
    });
    let b = Store::open(&dir.path().join("b")).unwrap();
    let pulled = c.pull(&b, &r("smelt/bb"), &NoProgress).unwrap();
    let log = fake.log.lock().unwrap().clone();
    // A registry answering a pinned digest with other bytes is caught.
    let pinned = r(&format!("smelt/bb@{}", Digest::of(b"pin")));
    let e = c.pull(&b, &pinned, &NoProgress).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "manifest of {pinned} (http://{mirror}): digest mismatch, expected {}, got {d}",
            Digest::of(b"pin")
        )
    );
    assert_eq!(pulled.digest, d);
    assert!(b.image(&d).is_ok());
    assert_eq!(log[0], "GET /v2/smelt/bb/manifests/latest ");
    assert_eq!(
        log[1],
        "GET /token?service=fake&scope=repository%3Asmelt%2Fbb%3Apull Basic aHViOnB3"
    );
    assert_eq!(log[2], "GET /v2/smelt/bb/manifests/latest Bearer T0K");
    // The token is reused: no further token requests or 401s.
    assert_eq!(log.len(), 5, "{log:#?}");
    assert!(log[3..].iter().all(|l| l.ends_with("Bearer T0K")));
}

#[test]
fn reports_progress() {
    use std::sync::Mutex;
    /// (starts, bytes advanced, finishes)
    type Seen = (Vec<(String, Option<u64>)>, u64, usize);
    #[derive(Default)]
    struct Count(Mutex<Seen>);
    impl Progress for Count {
        fn start(&self, what: &str, total: Option<u64>) {
            self.0.lock().unwrap().0.push((what.to_string(), total));
        }
        fn advance(&self, bytes: u64) {
            self.0.lock().unwrap().1 += bytes;
        }
        fn finish(&self) {
            self.0.lock().unwrap().2 += 1;
        }
    }
    let reg = TestRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let (a, d) = store_with_image(dir.path(), "a", "l/p:1", b"progress", "amd64");
    let dest = r(&format!("{}/smelt/p:1", reg.host()));
    let up = Count::default();
    push(&a, &r("l/p:1"), &dest, &client(), &up).unwrap();
    let img = a.image(&d).unwrap();
    let total = img.manifest.config.size + img.layers[0].size;
    let (starts, bytes, finishes) = up.0.into_inner().unwrap();
    assert_eq!((starts.len(), bytes, finishes), (2, total, 2));
    let down = Count::default();
    let b = Store::open(&dir.path().join("b")).unwrap();
    client().pull(&b, &dest, &down).unwrap();
    let (starts, bytes, finishes) = down.0.into_inner().unwrap();
    assert_eq!(
        starts[1],
        (img.layers[0].digest.to_string(), Some(img.layers[0].size))
    );
    assert_eq!((bytes, finishes), (total, 2));
}

#[test]
fn unreachable_registry_names_reference_and_url() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let reference = r(&format!("127.0.0.1:{port}/smelt/x:1"));
    let e = client().pull(&s, &reference, &NoProgress).unwrap_err();
    assert!(matches!(e, RegistryError::Transport { .. }), "{e}");
    let prefix = format!("{reference} (http://127.0.0.1:{port}): GET manifest 1: ");
    assert!(e.to_string().starts_with(&prefix), "{e}");
}
