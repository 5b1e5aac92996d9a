//! Atomic artifact files.
//!
//! Each artifact is written into an anonymous file in the output directory
//! (`O_TMPFILE`): until it is committed it has no name, so an interrupted or
//! killed build — even by SIGKILL — leaves nothing behind. Committing links
//! it under a hidden temporary name and renames that over the final name, so
//! readers see either the old artifact or the whole new one. All artifacts
//! of a build are committed together, after every one is complete.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, CWD, Mode, OFlags};

use crate::digest::{Digest, HashingWriter};

/// One artifact being written. Dropping it without [`OutputSet::commit`]
/// discards it.
pub struct OutputFile {
    name: String,
    file: HashingWriter<File>,
    /// The config slot in this artifact, for the manifest.
    pub slot: Option<SlotRecord>,
}

/// Where an artifact's config slot is (docs/slots.md), as the manifest
/// records it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SlotRecord {
    /// `nocloud-fat` (raw, qcow2, ISO) or `config-initrd`.
    pub kind: &'static str,
    /// Byte offset of the slot index, where there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index_offset: Option<u64>,
    /// The slot's bytes: offset and length (for qcow2, in the guest's view).
    pub offset: u64,
    pub length: u64,
}

impl OutputFile {
    /// The artifact's final file name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.file.count()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The sha256 of everything written so far.
    pub fn digest(&self) -> Digest {
        self.file.digest()
    }
    /// Reopen the bytes written so far for reading (verification).
    pub fn reader(&self) -> io::Result<File> {
        let mut f = self.file_ref().try_clone()?;
        f.seek(SeekFrom::Start(0))?;
        Ok(f)
    }
    fn file_ref(&self) -> &File {
        // HashingWriter owns the File; borrow through a shared accessor.
        self.file.get_ref()
    }
}

impl Write for OutputFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// A record of one committed artifact.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Written {
    pub name: String,
    pub path: PathBuf,
    pub size: u64,
    pub sha256: Digest,
}

/// The artifacts of one build, committed all at once.
pub struct OutputSet {
    dir: PathBuf,
    pending: Vec<OutputFile>,
}

impl OutputSet {
    /// Prepare to write artifacts into `dir`, creating it if needed.
    pub fn new(dir: &Path) -> io::Result<OutputSet> {
        std::fs::create_dir_all(dir)?;
        Ok(OutputSet {
            dir: dir.to_path_buf(),
            pending: Vec::new(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Start an artifact called `name` (a file name, no directories, not
    /// one this set already holds: two writers of one name would leave only
    /// the last).
    pub fn create(&self, name: &str) -> io::Result<OutputFile> {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid artifact name {name:?}"),
            ));
        }
        if self.pending().any(|o| o.name() == name) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("artifact {name} is written twice in one build"),
            ));
        }
        let fd = rustix::fs::open(
            &self.dir,
            OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!(
                    "creating an anonymous file in {} (O_TMPFILE): {e}",
                    self.dir.display()
                ),
            )
        })?;
        Ok(OutputFile {
            name: name.to_string(),
            file: HashingWriter::new(File::from(fd)),
            slot: None,
        })
    }

    /// Hand a finished artifact to the set; it is committed with the rest.
    pub fn finish(&mut self, mut out: OutputFile) -> io::Result<()> {
        out.flush()?;
        out.file_ref().sync_all()?;
        self.pending.push(out);
        Ok(())
    }

    /// The finished, not yet committed artifacts, in the order finished.
    pub fn pending(&self) -> impl Iterator<Item = &OutputFile> {
        self.pending.iter()
    }

    /// Give every finished artifact its name. On error, artifacts not yet
    /// renamed are discarded and no temporary name is left behind.
    pub fn commit(self) -> io::Result<Vec<Written>> {
        let mut written = Vec::new();
        for out in self.pending {
            let final_path = self.dir.join(&out.name);
            let tmp_path = self.dir.join(format!(".{}.smelt-tmp", out.name));
            let _ = std::fs::remove_file(&tmp_path);
            let fd_path = format!("/proc/self/fd/{}", {
                use std::os::fd::AsRawFd;
                out.file_ref().as_fd().as_raw_fd()
            });
            rustix::fs::linkat(CWD, &fd_path, CWD, &tmp_path, AtFlags::SYMLINK_FOLLOW).map_err(
                |e| {
                    io::Error::new(
                        io::Error::from(e).kind(),
                        format!("naming {}: {e}", tmp_path.display()),
                    )
                },
            )?;
            if let Err(e) = std::fs::rename(&tmp_path, &final_path) {
                let _ = std::fs::remove_file(&tmp_path);
                return Err(io::Error::new(
                    e.kind(),
                    format!("renaming to {}: {e}", final_path.display()),
                ));
            }
            written.push(Written {
                name: out.name.clone(),
                path: final_path,
                size: out.len(),
                sha256: out.digest(),
            });
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncommitted_outputs_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let set = OutputSet::new(dir.path()).unwrap();
        let mut f = set.create("a-kernel").unwrap();
        f.write_all(b"partial").unwrap();
        drop(f);
        drop(set);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn commit_names_all_and_replaces_old() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x"), b"old").unwrap();
        let mut set = OutputSet::new(dir.path()).unwrap();
        for (n, body) in [("x", &b"new"[..]), ("y", b"why")] {
            let mut f = set.create(n).unwrap();
            f.write_all(body).unwrap();
            set.finish(f).unwrap();
        }
        let w = set.commit().unwrap();
        assert_eq!(w.len(), 2);
        assert_eq!(std::fs::read(dir.path().join("x")).unwrap(), b"new");
        assert_eq!(w[1].sha256, Digest::of(b"why"));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn a_name_is_written_once() {
        let d = tempfile::tempdir().unwrap();
        let mut set = OutputSet::new(d.path()).unwrap();
        let f = set.create("x").unwrap();
        set.finish(f).unwrap();
        let e = set.create("x").err().unwrap();
        assert_eq!(e.to_string(), "artifact x is written twice in one build");
        assert!(set.create("y").is_ok());
    }

    #[test]
    fn rejects_path_names() {
        let dir = tempfile::tempdir().unwrap();
        let set = OutputSet::new(dir.path()).unwrap();
        assert!(set.create("../x").is_err());
        assert!(set.create(".hidden").is_err());
    }
}
