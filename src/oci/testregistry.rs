//! Test helpers: a real OCI registry (Debian's `docker-registry`, the CNCF
//! distribution server) on 127.0.0.1, plus small image fixtures.
//!
//! Public (but hidden from docs) so integration tests in `tests/` can reuse
//! it. Not for production use: it panics when the registry cannot start.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::image::ImageConfiguration;

use crate::digest::Digest;

/// Where Debian installs the distribution server.
pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// A running registry; killed when dropped.
pub struct TestRegistry {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    basic_auth: bool,
}

/// User and password accepted by [`TestRegistry::start_with_basic_auth`].
pub const BASIC_USER: &str = "smelt";
pub const BASIC_PASSWORD: &str = "s3cret";
/// bcrypt (cost 5) of [`BASIC_PASSWORD`], precomputed so tests need no
/// htpasswd tool.
const BASIC_HTPASSWD: &str = "smelt:$2b$05$8PBd.uGyEQkBYLMl192SLOsqrQYJTHVFZn7Ir7jSB/vNel1nkdHc2";

impl TestRegistry {
    /// Starts the registry on a free port with its own storage directory and
    /// waits until `/v2/` answers.
    pub fn start() -> TestRegistry {
        Self::start_inner(false)
    }

    /// Like [`start`](Self::start), but every request needs HTTP Basic auth
    /// as [`BASIC_USER`]:[`BASIC_PASSWORD`] (distribution's htpasswd backend).
    pub fn start_with_basic_auth() -> TestRegistry {
        Self::start_inner(true)
    }

    fn start_inner(basic_auth: bool) -> TestRegistry {
        let dir = tempfile::tempdir().expect("temp dir for registry");
        // Ask the kernel for a free port, then hand it to the registry. The
        // small race with other processes is acceptable in tests.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let storage = dir.path().join("storage");
        let config = dir.path().join("config.yml");
        let mut yaml = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{port}\n",
            storage.display()
        );
        if basic_auth {
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, format!("{BASIC_HTPASSWD}\n")).expect("write htpasswd");
            yaml.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: smelt-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        std::fs::write(&config, yaml).expect("write registry config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("registry log");
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {REGISTRY_BIN}: {e}"));
        let reg = TestRegistry {
            child,
            port,
            dir,
            basic_auth,
        };
        reg.wait_ready();
        reg
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let req = "GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
                let want: &[u8] = if self.basic_auth { b"401" } else { b"200" };
                let mut buf = [0u8; 12];
                if s.write_all(req.as_bytes()).is_ok()
                    && std::io::Read::read_exact(&mut s, &mut buf).is_ok()
                    && buf.starts_with(b"HTTP/1.")
                    && &buf[9..12] == want
                {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default();
        panic!("registry on port {} did not start: {log}", self.port);
    }

    /// `127.0.0.1:PORT`, usable as a reference's registry.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.host())
    }

    /// The registry's storage root.
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// The file holding a blob in the registry's filesystem storage.
    pub fn blob_data_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.storage()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a gzip-compressed tar holding `files` (path, contents) into `dir`
/// and returns its path and the uncompressed tar's digest (the diff_id).
pub fn make_layer(dir: &Path, name: &str, files: &[(&str, &[u8])]) -> (PathBuf, Digest) {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_cksum();
        b.append_data(&mut h, path, *data).expect("tar entry");
    }
    let tar = b.into_inner().expect("tar");
    let diff_id = Digest::of(&tar);
    let path = dir.join(name);
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&path).expect("layer file"),
        flate2::Compression::default(),
    );
    gz.write_all(&tar).expect("gzip");
    gz.finish().expect("gzip");
    (path, diff_id)
}

/// A minimal image config for `arch` (linux).
pub fn config_for(arch: &str) -> ImageConfiguration {
    let json = format!(
        r#"{{"architecture":"{arch}","os":"linux","config":{{"Labels":{{"b":"2","a":"1","c":"3"}}}},"rootfs":{{"type":"layers","diff_ids":[]}}}}"#
    );
    ImageConfiguration::from_reader(json.as_bytes()).expect("config")
}
