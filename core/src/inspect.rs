//! A library a user points at — a file, a directory holding one library, or a plugin archive —
//! found, unpacked where needed, and checked as `diffy plugin check` does, before anything is
//! installed or packaged.

use std::fs;
use std::path::{Path, PathBuf};

use diffy_plugin_api::documents::sha256_hex;
use diffy_plugin_api::{ComponentKind, Manifest};

use crate::archive::{self, StagedPackage};
use crate::config::{BUILT_IN_COMMANDS, is_library_file};
use crate::error::{Error, IoContext, Result};
use crate::loader::{self, Expectation};

/// What `plugin check` found.
pub struct CheckReport {
    /// The library checked.
    pub library: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
    /// Its SHA-256.
    pub sha256: String,
}

/// The library a user pointed at: the file itself, or the one library inside a directory.
pub fn find_library(path: &Path) -> Result<PathBuf> {
    let metadata = fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::Usage(format!("{} does not exist", path.display())),
        _ => Error::io("read", path, e),
    })?;
    if metadata.is_file() {
        return Ok(path.to_path_buf());
    }
    if !metadata.is_dir() {
        return Err(Error::Usage(crate::files::not_a_library(path)));
    }
    let mut libraries: Vec<PathBuf> = fs::read_dir(path)
        .with_path("read", path)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && is_library_file(p))
        .collect();
    libraries.sort();
    match libraries.len() {
        1 => Ok(libraries.remove(0)),
        0 => Err(Error::Usage(format!(
            "{} holds no plugin library (*{})",
            path.display(),
            std::env::consts::DLL_SUFFIX
        ))),
        _ => Err(Error::Usage(format!(
            "{} holds several libraries ({}); name the one to install",
            path.display(),
            libraries
                .iter()
                .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// A library to check or install, and how to name it in messages: the path the user gave (an
/// archive is named, not the temporary file unpacked from it).
#[derive(Debug)]
pub struct Candidate {
    /// The library file to read and load.
    pub library: PathBuf,
    /// The path to name in messages.
    pub shown: PathBuf,
    /// The unpacked archive the library came from, removed when the candidate is dropped.
    pub staged: Option<StagedPackage>,
}

impl Candidate {
    /// The library at `path`: the file itself, the one library in a directory, or the library of
    /// a plugin archive (verified and unpacked into a temporary directory).
    pub fn open(path: &Path) -> Result<Candidate> {
        if archive::is_archive(path) {
            let staged = archive::extract(path)?;
            return Ok(Candidate {
                library: staged.library.clone(),
                shown: path.to_path_buf(),
                staged: Some(staged),
            });
        }
        let library = find_library(path)?;
        Ok(Candidate {
            shown: library.clone(),
            library,
            staged: None,
        })
    }

    /// Whether the candidate came from an archive.
    pub fn is_archive(&self) -> bool {
        self.staged.is_some()
    }

    /// Load the library to check it (nothing registered), naming the candidate in any error.
    pub fn load(&self) -> Result<Manifest, String> {
        let expect = Expectation {
            shown_as: Some(&self.shown),
            ..Expectation::default()
        };
        loader::load(&self.library, expect).map(|loaded| loaded.manifest)
    }
}

/// Load and validate a library (or an archive's) without installing it.
pub fn check(path: &Path) -> Result<CheckReport> {
    let candidate = Candidate::open(path)?;
    let bytes = fs::read(&candidate.library).with_path("read", &candidate.library)?;
    let sha256 = sha256_hex(&bytes);
    let manifest = candidate
        .load()
        .map_err(|e| Error::Plugin(format!("{}: {e}", candidate.shown.display())))?;
    check_namespaces(&manifest)?;
    Ok(CheckReport {
        library: candidate.shown,
        manifest,
        sha256,
    })
}

/// Refuse a plugin whose CLI namespaces shadow built-in commands.
pub fn check_namespaces(manifest: &Manifest) -> Result<()> {
    for component in &manifest.components {
        if component.kind == ComponentKind::CliCommand
            && BUILT_IN_COMMANDS.contains(&component.name.as_str())
        {
            return Err(Error::Plugin(format!(
                "plugin {} declares CLI namespace {:?}, which is a built-in command",
                manifest.name, component.name
            )));
        }
    }
    Ok(())
}
