//! Building a plugin crate's library with cargo, for `diffy plugin package` and for
//! `diffy-plugin-harness`: the `cdylib` is found from cargo's own report of what it built, so
//! `CARGO_TARGET_DIR`, workspaces and profiles are respected.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::config::is_library_file;
use crate::error::{Error, Result};

/// Build the library of the crate whose manifest is `manifest_path` (canonical) with
/// `cargo build --lib` and `extra_args` (a profile, `--quiet`, …); cargo's diagnostics go to
/// stderr. Returns the `cdylib` it built.
pub fn build_cdylib(manifest_path: &Path, extra_args: &[&str]) -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(&cargo)
        .args([
            "build",
            "--lib",
            "--message-format=json-render-diagnostics",
            "--manifest-path",
        ])
        .arg(manifest_path)
        .args(extra_args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| {
            Error::Failure(format!(
                "cannot run {}: {e}; is cargo installed?",
                Path::new(&cargo).display()
            ))
        })?;
    if !output.status.success() {
        return Err(Error::Failure(format!(
            "cargo build failed for {} (cargo's messages are above)",
            manifest_path.display()
        )));
    }
    cdylib_from_messages(&output.stdout, manifest_path).ok_or_else(|| {
        Error::Usage(format!(
            "{} builds no cdylib: a diffy plugin needs `crate-type = [\"cdylib\"]` under [lib]",
            manifest_path.display()
        ))
    })
}

/// The `cdylib` of the package at `manifest_path`, from cargo's JSON messages
/// (`--message-format=json…`).
fn cdylib_from_messages(stdout: &[u8], manifest_path: &Path) -> Option<PathBuf> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .filter(|m| {
            m["manifest_path"]
                .as_str()
                .is_some_and(|p| Path::new(p) == manifest_path)
        })
        .filter(|m| {
            m["target"]["crate_types"]
                .as_array()
                .is_some_and(|types| types.iter().any(|t| t == "cdylib"))
        })
        .flat_map(|m| {
            m["filenames"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|f| f.as_str().map(PathBuf::from))
        })
        .find(|f| is_library_file(f))
}
