//! Pull/push tests against a real distribution server (see testregistry).

use std::path::Path;

use super::*;
use crate::oci::manifest::Platform;
use crate::oci::testregistry::{TestRegistry, config_for, make_layer};
use crate::oci::{NoProgress, PullPolicy, Resolver};

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
