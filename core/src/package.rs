//! `diffy plugin package`: build a plugin crate (or take a built library), check the library as
//! `diffy plugin check` would, and write it as an archive ([`crate::archive`]) labelled with this
//! diffy's target triple.

use std::fs;
use std::path::{Path, PathBuf};

use diffy_plugin_api::documents::sha256_hex;

use crate::archive::{FORMAT_VERSION, MAX_MEMBER_SIZE, PackageInfo, TARGET_TRIPLE, write_archive};
use crate::config::library_file_name;
use crate::error::{Error, IoContext, Result};
use crate::{cargo, inspect};

/// What `diffy plugin package` made.
#[derive(Debug, Clone)]
pub struct Packaged {
    /// The archive written.
    pub archive: PathBuf,
    /// What its `package.json` says.
    pub info: PackageInfo,
    /// The library that was packaged.
    pub library: PathBuf,
    /// The SHA-256 of the library.
    pub library_sha256: String,
    /// The SHA-256 of the archive itself.
    pub archive_sha256: String,
}

/// Package the plugin at `path` into `out` (created if missing).
///
/// `path` is a plugin's crate directory (one holding `Cargo.toml`: it is built with
/// `cargo build --release` first), a library, or a directory holding one library. The library is
/// loaded and checked as `diffy plugin check` would, so an archive only ever holds a plugin this
/// diffy accepts. The archive is labelled with this diffy's target triple.
pub fn package(path: &Path, out: &Path) -> Result<Packaged> {
    let library = if path.is_dir() && path.join("Cargo.toml").is_file() {
        let manifest_path = path.join("Cargo.toml");
        let manifest_path =
            fs::canonicalize(&manifest_path).with_path("resolve", &manifest_path)?;
        cargo::build_cdylib(&manifest_path, &["--release"])?
    } else {
        inspect::find_library(path)?
    };
    let report = inspect::check(&library)?;
    let manifest = report.manifest;
    let bytes = fs::read(&library).with_path("read", &library)?;
    if bytes.len() as u64 > MAX_MEMBER_SIZE {
        return Err(Error::Usage(format!(
            "{} is {} bytes; a packaged library may be at most {MAX_MEMBER_SIZE}",
            library.display(),
            bytes.len()
        )));
    }
    let info = PackageInfo {
        format_version: FORMAT_VERSION,
        name: manifest.name.clone(),
        version: manifest.version.clone(),
        target: TARGET_TRIPLE.to_string(),
        api_version: manifest.api_version.clone(),
        library: library_file_name(&manifest.name),
    };
    let mtime = fs::metadata(&library)
        .ok()
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());

    fs::create_dir_all(out).with_path("create", out)?;
    let archive = out.join(info.archive_name());
    // Written beside its final name and renamed into place: never a half-written archive.
    let temp = tempfile::Builder::new()
        .prefix(".diffy-package-")
        .tempfile_in(out)
        .with_path("create a temporary file in", out)?;
    temp.reopen()
        .and_then(|file| write_archive(file, &info, &manifest, &bytes, mtime))
        .with_path("write", &archive)?;
    temp.persist(&archive)
        .map_err(|e| Error::io("write", &archive, e.error))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // A temporary file is private (0600); an archive is for sharing.
        fs::set_permissions(&archive, fs::Permissions::from_mode(0o644))
            .with_path("set the permissions of", &archive)?;
    }
    let archive_bytes = fs::read(&archive).with_path("read", &archive)?;
    Ok(Packaged {
        archive_sha256: sha256_hex(&archive_bytes),
        archive,
        info,
        library,
        library_sha256: sha256_hex(&bytes),
    })
}
