//! The manifest cache: `<config dir>/cache/manifests-v1.txt` and its namespace index
//! `namespaces-v1.txt`.
//!
//! It lets commands that need no plugin open none, and lets `diffy <namespace>` find the owning
//! plugin without parsing the registry or any manifest, whatever the number of plugins. Both files
//! are line-oriented so that a lookup parses only the lines it needs:
//!
//! ```text
//! manifests-v1.txt                                namespaces-v1.txt
//! diffy-manifest-cache v1 <fingerprint>           diffy-manifest-cache v1 <fingerprint>
//! p <plugin name> <KnownPlugin as JSON>           n <namespace> <KnownPlugin without manifest>
//! ```
//!
//! Fields are tab-separated. The fingerprint covers the host version, the registry file's identity
//! (device, inode, size, modification time: every atomic rewrite changes the inode) and the bundled
//! libraries' stamps; a path plugin's own stamp is checked when it is used.

use std::collections::HashMap;
use std::fmt::Write;

use diffy_plugin_api::ComponentKind;
use diffy_plugin_api::documents::sha256_hex;

use crate::config::{BUNDLED_PLUGINS, HOST_VERSION, Settings};
use crate::files::{self, FileIdentity};
use crate::known::KnownPlugin;

const HEADER: &str = "diffy-manifest-cache v1";
const FILE_NAME: &str = "manifests-v1.txt";
const NAMESPACES_FILE: &str = "namespaces-v1.txt";

fn fingerprint(settings: &Settings) -> String {
    let mut text = format!("{HOST_VERSION}\n");
    let registry = settings.registry_file();
    match std::fs::metadata(&registry) {
        Ok(metadata) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::MetadataExt;
                let _ = write!(text, "{}:{}:", metadata.dev(), metadata.ino());
            }
            let _ = writeln!(text, "{}:{:?}", metadata.len(), metadata.modified().ok());
        }
        Err(_) => text.push_str("no registry\n"),
    }
    for name in BUNDLED_PLUGINS {
        if let Some(library) = settings.bundled_library(name) {
            let _ = writeln!(
                text,
                "{}:{:?}",
                library.display(),
                FileIdentity::of_path(&library)
            );
        }
    }
    sha256_hex(text.as_bytes())
}

fn cache_file(settings: &Settings) -> std::path::PathBuf {
    settings.cache_dir().join(FILE_NAME)
}

/// Write the cache for `plugins` (a catalog's). Failure only costs speed, so it is logged, not
/// returned.
pub fn write(settings: &Settings, plugins: &[KnownPlugin]) {
    let mut text = format!("{HEADER} {}\n", fingerprint(settings));
    for plugin in plugins {
        match serde_json::to_string(plugin) {
            Ok(json) => {
                let _ = writeln!(text, "p\t{}\t{json}", plugin.name);
            }
            Err(e) => tracing::debug!("cannot cache {}: {e}", plugin.name),
        }
    }
    write_if_changed(&cache_file(settings), &text);

    // The namespace index: what `diffy <namespace>` needs, without any manifest.
    let mut index = format!("{HEADER} {}\n", fingerprint(settings));
    for plugin in plugins {
        let Some(manifest) = &plugin.manifest else {
            continue;
        };
        let compact = KnownPlugin {
            manifest: None,
            ..plugin.clone()
        };
        let Ok(json) = serde_json::to_string(&compact) else {
            continue;
        };
        for component in manifest
            .components
            .iter()
            .filter(|c| c.kind == ComponentKind::CliCommand)
        {
            let _ = writeln!(index, "n\t{}\t{json}", component.name);
        }
    }
    write_if_changed(&settings.cache_dir().join(NAMESPACES_FILE), &index);
}

fn write_if_changed(path: &std::path::Path, text: &str) {
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return;
    }
    if let Err(e) = files::write_atomically(path, text.as_bytes()) {
        tracing::debug!("cannot write the manifest cache: {e}");
    }
}

/// Every plugin in the cache, in order, if the cache is fresh (its fingerprint matches).
pub fn read_fresh(settings: &Settings) -> Option<Vec<KnownPlugin>> {
    let text = std::fs::read_to_string(cache_file(settings)).ok()?;
    let (header, body) = text.split_once('\n')?;
    if header.strip_prefix(HEADER)?.trim() != fingerprint(settings) {
        return None;
    }
    body.lines()
        .filter_map(|line| line.strip_prefix("p\t"))
        .map(|rest| {
            let (_, json) = rest.split_once('\t')?;
            serde_json::from_str::<KnownPlugin>(json).ok()
        })
        .collect()
}

/// Every plugin in the cache, fresh or not, by name (for reuse while rebuilding).
pub fn read_plugins(settings: &Settings) -> HashMap<String, KnownPlugin> {
    let Ok(text) = std::fs::read_to_string(cache_file(settings)) else {
        return HashMap::new();
    };
    text.lines()
        .filter_map(|line| line.strip_prefix("p\t"))
        .filter_map(|rest| rest.split_once('\t'))
        .filter_map(|(name, json)| {
            serde_json::from_str::<KnownPlugin>(json)
                .ok()
                .map(|p| (name.to_string(), p))
        })
        .collect()
}

/// The fast path of `diffy <namespace>`: the plugins that own CLI namespace `name`, read from the
/// namespace index of a fresh cache, without reading the registry or any manifest. The entries
/// carry no manifest. `None` when the cache is missing or stale, or an owner's library (path or
/// bundled) changed since it was cached; the caller then builds the catalog.
pub fn lookup_namespace(settings: &Settings, name: &str) -> Option<Vec<KnownPlugin>> {
    if !(settings.user_plugins && settings.bundled_plugins) {
        return None;
    }
    let text = std::fs::read_to_string(settings.cache_dir().join(NAMESPACES_FILE)).ok()?;
    let (header, body) = text.split_once('\n')?;
    if header.strip_prefix(HEADER)?.trim() != fingerprint(settings) {
        return None;
    }
    let prefix = format!("n\t{name}\t");
    let mut owners = Vec::new();
    for json in body
        .lines()
        .filter_map(|line| line.strip_prefix(prefix.as_str()))
    {
        let plugin: KnownPlugin = serde_json::from_str(json).ok()?;
        if plugin.stamp.is_some() && FileIdentity::of_path(&plugin.library) != plugin.stamp {
            return None;
        }
        owners.push(plugin);
    }
    Some(owners)
}
