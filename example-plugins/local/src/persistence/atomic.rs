//! Writes that a crash cannot tear, and the cleaning up after one that was torn anyway.
//!
//! A file is written whole to a temporary file beside it (`.tmp…`), flushed to disk and renamed
//! over its name, then the directory is flushed: a reader, or the next run after a crash, sees the
//! old file or the new one. While it writes, the writer holds an exclusive lock on its temporary
//! file; the kernel drops the lock when the writer dies, however it dies. So a temporary file
//! that is unlocked, and older than a writer needs between creating and locking it, was left by a
//! writer that is gone, and [`sweep`] removes it.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime};

use diffy_plugin_api::Result;
use diffy_plugin_api::anyhow::Context;

/// The prefix of every temporary file.
pub(crate) const TEMPORARY_PREFIX: &str = ".tmp";

/// How old an unlocked temporary file must be before it counts as left behind: a writer locks
/// its file right after creating it, far within this.
pub(crate) const ABANDONED_AFTER: Duration = Duration::from_secs(5);

/// Write `bytes` to `dir/name` atomically and durably.
pub(crate) fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut file = tempfile::Builder::new()
        .prefix(TEMPORARY_PREFIX)
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    file.as_file()
        .try_lock()
        .with_context(|| format!("cannot lock {}", file.path().display()))?;
    file.write_all(bytes)
        .and_then(|()| file.as_file().sync_all())
        .with_context(|| format!("cannot write {}", file.path().display()))?;
    let path = dir.join(name);
    file.persist(&path)
        .with_context(|| format!("cannot save {}", path.display()))?;
    sync_dir(dir)
}

/// Flush `dir`'s entries (a rename, a new file) to disk.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot flush {}", dir.display()))
}

/// Whether the file at `path` is unlocked and was last changed more than [`ABANDONED_AFTER`] ago:
/// what its writer left when it died.
pub(crate) fn is_abandoned(path: &Path) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    let old = file
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|modified| SystemTime::now().duration_since(modified).ok())
        .is_some_and(|age| age > ABANDONED_AFTER);
    old && file.try_lock().is_ok()
}

/// Whether no one holds a lock on the file at `path` (false when it cannot be opened).
pub(crate) fn is_unlocked(path: &Path) -> bool {
    File::open(path).is_ok_and(|file| file.try_lock().is_ok())
}

/// Remove the temporary files that dead writers left in `dir`; report what could not be removed.
pub(crate) fn sweep(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let temporary = entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.starts_with(TEMPORARY_PREFIX));
        if temporary
            && is_abandoned(&path)
            && let Err(e) = fs::remove_file(&path)
        {
            eprintln!("diffy-local: cannot remove {}: {e}", path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_replace_whole_and_leave_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.json", b"one").unwrap();
        write(dir.path(), "a.json", b"two").unwrap();
        assert_eq!(fs::read(dir.path().join("a.json")).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn only_unlocked_old_temporary_files_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let old = SystemTime::now() - 2 * ABANDONED_AFTER;
        let left = dir.path().join(".tmpLEFT");
        File::create(&left).unwrap().set_modified(old).unwrap();
        let held = dir.path().join(".tmpHELD");
        let writer = File::create(&held).unwrap();
        writer.set_modified(old).unwrap();
        writer.lock().unwrap();
        let fresh = dir.path().join(".tmpFRESH");
        File::create(&fresh).unwrap();
        let other = dir.path().join("data.json");
        File::create(&other).unwrap().set_modified(old).unwrap();
        sweep(dir.path());
        assert!(!left.exists());
        assert!(held.exists() && fresh.exists() && other.exists());
    }
}
