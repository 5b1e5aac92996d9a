use std::process::Command;

use super::*;
use crate::oci::testregistry::{config_for, make_layer};

fn r(s: &str) -> Reference {
    Reference::parse(s).unwrap()
}

#[test]
fn open_creates_layout_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    assert!(dir.path().join("oci-layout").is_file());
    assert!(dir.path().join("blobs/sha256").is_dir());
    let idx: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.path().join("index.json")).unwrap()).unwrap();
    assert_eq!(idx["schemaVersion"], 2);
    assert!(s.list().unwrap().is_empty());
    Store::open(dir.path()).unwrap();
}

#[test]
fn write_blob_verifies_and_leaves_nothing_on_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let good = Digest::of(b"hello");
    assert_eq!(s.write_blob(&b"hello"[..], Some(&good)).unwrap(), good);
    assert_eq!(fs::read(s.blob_path(&good)).unwrap(), b"hello");
    let bad = Digest::of(b"other");
    let err = s.write_blob(&b"hello!"[..], Some(&bad)).unwrap_err();
    assert!(matches!(err, StoreError::DigestMismatch { .. }));
    assert_eq!(
        err.to_string(),
        format!("blob {bad}: digest mismatch, got {}", Digest::of(b"hello!"))
    );
    assert!(!s.has_blob(&bad));
    assert!(!s.has_blob(&Digest::of(b"hello!")));
    assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
}

#[test]
fn import_tag_lookup_list_image_and_layer_tar() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("store")).unwrap();
    let (gz, diff_id) = make_layer(dir.path(), "l.tar.gz", &[("etc/hello", b"world")]);
    let tag = r("127.0.0.1:5000/smelt/test:v1");
    let d = s
        .import_image(&gz, &diff_id, config_for("amd64"), &tag)
        .unwrap();
    // Deterministic: importing again gives the same digest.
    let d2 = s
        .import_image(&gz, &diff_id, config_for("amd64"), &r("x/y:z"))
        .unwrap();
    assert_eq!(d, d2);
    assert_eq!(s.lookup(&tag).unwrap(), Some(d.clone()));
    assert_eq!(s.lookup(&r("127.0.0.1:5000/smelt/test:v2")).unwrap(), None);
    assert_eq!(
        s.lookup(&tag.with_digest(d.clone())).unwrap(),
        Some(d.clone())
    );
    let list = s.list().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].reference, "127.0.0.1:5000/smelt/test:v1");
    assert_eq!(list[1].reference, "docker.io/x/y:z");

    let img = s.image(&d).unwrap();
    assert_eq!(img.layers.len(), 1);
    assert_eq!(img.layers[0].diff_id, diff_id);
    assert_eq!(img.layers[0].media_type, OCI_LAYER_GZIP);
    let tar = s.layer_tar(&img.layers[0]).unwrap();
    assert_eq!(Digest::of_file(&tar).unwrap(), diff_id);
    // An independent reader sees the file.
    let out = Command::new("tar").arg("-tf").arg(&tar).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "etc/hello");
    // Retagging replaces the entry.
    s.tag(&tag, &img.config_digest, OCI_CONFIG).unwrap();
    assert_eq!(s.lookup(&tag).unwrap(), Some(img.config_digest.clone()));
    assert_eq!(s.list().unwrap().len(), 2);
}

#[test]
fn layer_tar_rejects_wrong_diff_id_and_handles_zstd() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let tar_bytes = {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(3);
        h.set_cksum();
        b.append_data(&mut h, "a", &b"abc"[..]).unwrap();
        b.into_inner().unwrap()
    };
    let zst = zstd::encode_all(&tar_bytes[..], 3).unwrap();
    let digest = s.write_blob(&zst[..], None).unwrap();
    let mut layer = Layer {
        digest,
        diff_id: Digest::of(b"not it"),
        media_type: "application/vnd.oci.image.layer.v1.tar+zstd".into(),
        size: zst.len() as u64,
    };
    let err = s.layer_tar(&layer).unwrap_err();
    assert!(matches!(err, StoreError::DiffIdMismatch { .. }), "{err}");
    assert!(
        !dir.path()
            .join("diffs/sha256")
            .join(layer.diff_id.hex())
            .exists()
    );
    layer.diff_id = Digest::of(&tar_bytes);
    let p = s.layer_tar(&layer).unwrap();
    assert_eq!(fs::read(p).unwrap(), tar_bytes);
    layer.media_type = "application/x-rar".into();
    layer.diff_id = Digest::of(b"x");
    assert!(matches!(
        s.layer_tar(&layer).unwrap_err(),
        StoreError::UnsupportedLayer { .. }
    ));
}

#[test]
fn concurrent_tagging_loses_no_entries() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let d = s.write_blob(&b"{}"[..], None).unwrap();
    std::thread::scope(|sc| {
        for i in 0..8 {
            let s = s.clone();
            let d = d.clone();
            sc.spawn(move || {
                for j in 0..5 {
                    s.tag(&r(&format!("t/x{i}:{j}")), &d, OCI_MANIFEST).unwrap();
                }
            });
        }
    });
    assert_eq!(s.list().unwrap().len(), 40);
}

#[test]
fn default_root_prefers_smelt_store() {
    // Only checks the pure fallback logic shape: SMELT_STORE wins when set.
    if let Some(v) = std::env::var_os("SMELT_STORE") {
        assert_eq!(Store::default_root(), PathBuf::from(v));
    } else {
        assert!(Store::default_root().ends_with("smelt"));
    }
}

#[test]
fn open_removes_only_stale_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    Store::open(dir.path()).unwrap();
    let old = dir.path().join("tmp/part-old");
    let new = dir.path().join("tmp/part-new");
    let f = File::create(&old).unwrap();
    let two_days = std::time::Duration::from_secs(2 * 24 * 3600);
    f.set_modified(std::time::SystemTime::now() - two_days)
        .unwrap();
    drop(f);
    File::create(&new).unwrap();
    Store::open(dir.path()).unwrap();
    assert!(!old.exists());
    assert!(new.exists());
}
