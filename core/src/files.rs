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

/// What a file that is not a regular file is, for a message ("a directory", "a FIFO", …).
pub fn describe(kind: fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_file() {
        "a regular file"
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a file"
    }
}

/// Why a library path cannot be a library, in words that say what is there: "library not found:
/// P" when nothing is, "P is a character device, not a library" when something else is.
pub fn not_a_library(path: &Path) -> String {
    match fs::metadata(path) {
        Err(_) => format!("library not found: {}", path.display()),
        Ok(metadata) => format!(
            "{} is {}, not a library",
            path.display(),
            describe(metadata.file_type())
        ),
    }
}

/// Why [`read_regular`] read nothing.
#[derive(Debug)]
pub enum ReadFault {
    /// The path is something else than a regular file (its [`describe`]).
    NotRegular(&'static str),
    /// The file holds more than the limit.
    TooLarge(u64),
    /// Reading failed.
    Io(std::io::Error),
}

impl std::fmt::Display for ReadFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadFault::NotRegular(kind) => write!(f, "it is {kind}, not a regular file"),
            ReadFault::TooLarge(limit) => write!(f, "it is larger than {} MiB", limit >> 20),
            ReadFault::Io(e) => write!(f, "{e}"),
        }
    }
}

/// The bytes of the regular file `path`, at most `limit` of them; `Ok(None)` when there is no
/// file. Opened without blocking (a FIFO would wait for a writer forever), checked on the open
/// file (a path can be swapped), and never read past the limit (`/dev/zero` never ends).
pub fn read_regular(path: &Path, limit: u64) -> std::result::Result<Option<Vec<u8>>, ReadFault> {
    use std::io::Read;
    let flags =
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::CLOEXEC;
    let file = match rustix::fs::open(path, flags, rustix::fs::Mode::empty()) {
        Ok(fd) => File::from(fd),
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(e) => return Err(ReadFault::Io(e.into())),
    };
    let metadata = file.metadata().map_err(ReadFault::Io)?;
    if !metadata.is_file() {
        return Err(ReadFault::NotRegular(describe(metadata.file_type())));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(metadata.len().min(limit)).unwrap_or(0));
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadFault::Io)?;
    if bytes.len() as u64 > limit {
        return Err(ReadFault::TooLarge(limit));
    }
    Ok(Some(bytes))
}

#[cfg(test)]
mod regular_tests {
    use super::*;

    #[test]
    fn only_regular_files_within_the_limit_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, b"12345").unwrap();
        assert_eq!(read_regular(&file, 5).unwrap().unwrap(), b"12345");
        assert!(matches!(
            read_regular(&file, 4),
            Err(ReadFault::TooLarge(4))
        ));
        assert!(read_regular(&dir.path().join("none"), 5).unwrap().is_none());
        assert!(matches!(
            read_regular(dir.path(), 5),
            Err(ReadFault::NotRegular("a directory"))
        ));
        assert!(matches!(
            read_regular(Path::new("/dev/zero"), 5),
            Err(ReadFault::NotRegular("a character device"))
        ));
        assert_eq!(
            not_a_library(Path::new("/dev/zero")),
            "/dev/zero is a character device, not a library"
        );
    }
}
