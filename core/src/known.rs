//! A plugin in the *known* state: what the registry (or the bundled list) says about it, plus the
//! manifest last read from its library. Known plugins are what the manifest cache stores and the
//! catalog is made of; nothing here opens a library.

use std::path::PathBuf;

use diffy_plugin_api::{ComponentKind, Manifest};
use serde::{Deserialize, Serialize};

use crate::files::FileIdentity;
use crate::isolation::Isolation;

/// Where a plugin comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Shipped with the binary.
    Bundled,
    /// Copied into the configuration directory.
    Installed,
    /// Used in place from a path.
    Path,
}

impl Source {
    /// The spelling in listings.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Bundled => "bundled",
            Source::Installed => "installed",
            Source::Path => "path",
        }
    }
}

/// A plugin in the *known* state: what the registry says plus its cached manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KnownPlugin {
    /// The plugin's name.
    pub name: String,
    /// Where it comes from.
    pub source: Source,
    /// Its library.
    pub library: PathBuf,
    /// The library's identity when its manifest was cached (path and bundled plugins), to
    /// notice that it was rebuilt.
    #[serde(default)]
    pub stamp: Option<FileIdentity>,
    /// The SHA-256 recorded at install time (installed plugins).
    #[serde(default)]
    pub sha256: Option<String>,
    /// The last manifest read from the library, if one ever was.
    #[serde(default)]
    pub manifest: Option<Manifest>,
    /// Why the plugin cannot be used, if it cannot.
    #[serde(default)]
    pub error: Option<String>,
    /// How its registry entry says it runs.
    #[serde(default)]
    pub isolation: Isolation,
}

impl KnownPlugin {
    /// The version: the manifest's, else what the registry recorded.
    pub fn version(&self) -> Option<&str> {
        self.manifest.as_ref().map(|m| m.version.as_str())
    }

    /// Whether the plugin's manifest declares the component.
    pub fn provides(&self, kind: ComponentKind, name: &str) -> bool {
        self.manifest
            .as_ref()
            .is_some_and(|m| m.component(kind, name).is_some())
    }
}
