//! Files that matter to diffy: written atomically, and known again by their identity.
//!
//! Every write of state (the registry, caches, installed manifests) goes through
//! [`write_atomically`], so a crash leaves the old file or the new one, never a torn one. A file's
//! [`FileIdentity`] tells whether it may have changed since diffy last looked, without reading it.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};

/// Replace `path` atomically with `contents`: write a temporary file in the same directory, fsync
/// it, rename it over `path`, and fsync the directory.
pub fn write_atomically(path: &Path, contents: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).with_path("create", dir)?;
    let mut temp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .with_path("create a temporary file in", dir)?;
    temp.write_all(contents).with_path("write", temp.path())?;
    temp.as_file().sync_all().with_path("sync", temp.path())?;
    temp.persist(path)
        .map_err(|e| Error::io("replace", path, e.error))?;
    sync_dir(dir)
}

/// fsync a directory so a rename in it survives a crash.
pub fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_path("sync", dir)?;
    Ok(())
}

/// A file's identity: when any of these change, its bytes may have changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileIdentity {
    /// Device.
    pub dev: u64,
    /// Inode.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Modification time (ns).
    pub mtime_ns: i64,
    /// Status change time (ns); it changes on every write and cannot be set back by a user.
    pub ctime_ns: i64,
}

impl FileIdentity {
    /// The identity of the file `metadata` describes.
    pub fn of(metadata: &fs::Metadata) -> FileIdentity {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            FileIdentity {
                dev: metadata.dev(),
                ino: metadata.ino(),
                size: metadata.size(),
                mtime_ns: metadata.mtime() * 1_000_000_000 + metadata.mtime_nsec(),
                ctime_ns: metadata.ctime() * 1_000_000_000 + metadata.ctime_nsec(),
            }
        }
        #[cfg(not(unix))]
        {
            FileIdentity {
                dev: 0,
                ino: 0,
                size: metadata.len(),
                mtime_ns: metadata
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos() as i64),
                ctime_ns: 0,
            }
        }
    }

    /// The identity of the regular file at `path`, or `None` if there is none.
    pub fn of_path(path: &Path) -> Option<FileIdentity> {
        fs::metadata(path)
            .ok()
            .filter(|m| m.is_file())
            .map(|m| FileIdentity::of(&m))
    }

    /// The identity of the running `diffy` executable.
    pub fn of_current_exe() -> Option<FileIdentity> {
        FileIdentity::of_path(&std::env::current_exe().ok()?)
    }
}
