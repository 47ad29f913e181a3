//! The plugin manager's operations: install (by copy or link), update, uninstall and check.
//!
//! Every operation that changes the registry holds its lock from first read to last write. An
//! install copies the library into a staging directory, loads *that copy* to verify it (so the
//! bytes verified are the bytes installed), and only then moves it into place and registers it. A
//! crash at any point leaves at worst an unregistered directory, never an entry without its files.

use std::fs;
use std::path::{Path, PathBuf};

use diffy_plugin_api::documents::sha256_hex;
use diffy_plugin_api::{ComponentKind, Manifest};

use crate::catalog::Catalog;
use crate::config::{
    BUILT_IN_COMMANDS, BUNDLED_PLUGINS, Settings, is_library_file, library_file_name,
};
use crate::error::{Error, IoContext, Result};
use crate::loader::{self, Expectation};
use crate::registry::{self, InstallationType, Registry, RegistryEntry, installed_dir};

/// How to install.
#[derive(Debug, Clone, Copy, Default)]
pub struct InstallOptions {
    /// Record a path entry instead of copying the library.
    pub link: bool,
    /// Replace an installed plugin of another version (or reinstall the same one).
    pub force: bool,
}

/// What an install or update did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallOutcome {
    /// Copied and registered.
    Installed {
        name: String,
        version: String,
        library: PathBuf,
    },
    /// Registered in place.
    Linked {
        name: String,
        version: String,
        library: PathBuf,
    },
    /// The same name and version was already registered; nothing changed.
    Unchanged { name: String, version: String },
    /// Another version was replaced.
    Replaced {
        name: String,
        from: String,
        to: String,
        library: PathBuf,
    },
}

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

/// Load and validate a library without installing it.
pub fn check(path: &Path) -> Result<CheckReport> {
    let library = find_library(path)?;
    let bytes = fs::read(&library).with_path("read", &library)?;
    let sha256 = sha256_hex(&bytes);
    let loaded = loader::load(&library, Expectation::default())
        .map_err(|e| Error::Plugin(format!("{}: {e}", library.display())))?;
    check_namespaces(&loaded.manifest)?;
    Ok(CheckReport {
        library,
        manifest: loaded.manifest,
        sha256,
    })
}

/// Install the plugin library at `path`.
pub fn install(
    settings: &Settings,
    path: &Path,
    options: InstallOptions,
) -> Result<InstallOutcome> {
    let library = find_library(path)?;
    let outcome = if options.link {
        link(settings, &library)?
    } else {
        copy_in(settings, &library, None, options.force)?
    };
    refresh_cache(settings);
    Ok(outcome)
}

/// Replace the installed plugin `name` with the build at `path`.
pub fn update(settings: &Settings, name: &str, path: &Path) -> Result<InstallOutcome> {
    let library = find_library(path)?;
    let outcome = copy_in(settings, &library, Some(name), true)?;
    refresh_cache(settings);
    Ok(outcome)
}

/// Remove the plugin `name` from the registry, and its files if it was installed by copy.
/// Returns the entry that was removed.
pub fn uninstall(settings: &Settings, name: &str) -> Result<RegistryEntry> {
    if BUNDLED_PLUGINS.contains(&name) {
        return Err(Error::Usage(format!(
            "{name} is bundled with diffy and cannot be uninstalled; use --disable-bundled-plugins to turn it off"
        )));
    }
    let removed = registry::modify(&settings.config_dir, |registry| {
        let index = registry
            .entries
            .iter()
            .position(|e| e.name == name)
            .ok_or_else(|| Error::Usage(format!("no plugin named {name:?} is registered")))?;
        let removed = registry.entries.remove(index);
        Ok(removed)
    })?;
    if removed.installation_type == InstallationType::Installed {
        let dir = settings.plugins_dir().join(&removed.name);
        if dir.exists() {
            fs::remove_dir_all(&dir).with_path("remove", &dir)?;
        }
    }
    refresh_cache(settings);
    Ok(removed)
}

fn refresh_cache(settings: &Settings) {
    if let Err(e) = Catalog::build(settings) {
        tracing::debug!("cannot refresh the manifest cache: {e}");
    }
}

/// Refuse a plugin whose CLI namespaces shadow built-in commands.
fn check_namespaces(manifest: &Manifest) -> Result<()> {
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

/// Refuse a name or a component another plugin already has.
fn check_free(settings: &Settings, registry: &Registry, manifest: &Manifest) -> Result<()> {
    if BUNDLED_PLUGINS.contains(&manifest.name.as_str()) {
        return Err(Error::Usage(format!(
            "the name {} belongs to a plugin bundled with diffy",
            manifest.name
        )));
    }
    check_namespaces(manifest)?;
    let catalog = Catalog::build_with(settings, registry)?;
    for component in &manifest.components {
        if let Some(other) = catalog
            .owners(component.kind, &component.name)
            .into_iter()
            .find(|p| p.name != manifest.name)
        {
            return Err(Error::Plugin(format!(
                "plugin {} declares {} {:?}, which plugin {} already provides",
                manifest.name, component.kind, component.name, other.name
            )));
        }
    }
    Ok(())
}

fn load_checked(library: &Path, shown: &Path) -> Result<Manifest> {
    loader::load(library, Expectation::default())
        .map(|loaded| loaded.manifest)
        .map_err(|e| Error::Plugin(format!("cannot install {}: {e}", shown.display())))
}

fn link(settings: &Settings, library: &Path) -> Result<InstallOutcome> {
    let library = fs::canonicalize(library).with_path("resolve", library)?;
    registry::modify(&settings.config_dir, |registry| {
        let manifest = load_checked(&library, &library)?;
        let name = manifest.name.clone();
        let path_text = library.to_string_lossy().into_owned();
        if let Some(existing) = registry.get(&name) {
            if existing.installation_type == InstallationType::Path
                && existing.installation_path.as_deref() == Some(path_text.as_str())
            {
                return Ok(InstallOutcome::Unchanged {
                    name,
                    version: manifest.version,
                });
            }
            return Err(Error::Usage(format!(
                "a plugin named {name} is already registered; uninstall it first"
            )));
        }
        check_free(settings, registry, &manifest)?;
        registry.entries.push(RegistryEntry {
            name: name.clone(),
            installation_type: InstallationType::Path,
            installation_path: Some(path_text),
            version: None,
            sha256: None,
            extra: Default::default(),
        });
        Ok(InstallOutcome::Linked {
            name,
            version: manifest.version,
            library: library.clone(),
        })
    })
}

/// Copy a library into the plugins directory and register it. `expected_name` is set by
/// `update`, which also requires an installed entry of that name.
fn copy_in(
    settings: &Settings,
    source: &Path,
    expected_name: Option<&str>,
    force: bool,
) -> Result<InstallOutcome> {
    let bytes = fs::read(source).with_path("read", source)?;
    let plugins_dir = settings.plugins_dir();
    let mut old_version_dir = None;
    let outcome = registry::modify(&settings.config_dir, |registry| {
        fs::create_dir_all(&plugins_dir).with_path("create", &plugins_dir)?;
        let staging = tempfile::Builder::new()
            .prefix(".staging-")
            .tempdir_in(&plugins_dir)
            .with_path("create a staging directory in", &plugins_dir)?;
        let staged = staging
            .path()
            .join(source.file_name().unwrap_or("plugin".as_ref()));
        fs::write(&staged, &bytes).with_path("write", &staged)?;
        fs::File::open(&staged)
            .and_then(|f| f.sync_all())
            .with_path("sync", &staged)?;
        let manifest = load_checked(&staged, source)?;
        let name = manifest.name.clone();
        let version = manifest.version.clone();
        if let Some(expected) = expected_name
            && expected != name
        {
            return Err(Error::Usage(format!(
                "{} is plugin {name}, not {expected}",
                source.display()
            )));
        }
        let existing = registry.get(&name).cloned();
        match (&existing, expected_name) {
            (None, Some(_)) => {
                return Err(Error::Usage(format!(
                    "{name} is not installed; install it with 'diffy plugin install {}'",
                    source.display()
                )));
            }
            (Some(entry), _) if entry.installation_type == InstallationType::Path => {
                return Err(Error::Usage(format!(
                    "{name} is registered as a path plugin ({}); uninstall it first",
                    entry.installation_path.as_deref().unwrap_or_default()
                )));
            }
            (Some(entry), None) if !force => {
                let installed = entry.version.clone().unwrap_or_default();
                if installed == version {
                    return Ok(InstallOutcome::Unchanged { name, version });
                }
                return Err(Error::Usage(format!(
                    "{name} {installed} is installed; run 'diffy plugin update {name} {}' (or \
                     install with --force) to replace it with {version}",
                    source.display()
                )));
            }
            _ => {}
        }
        check_free(settings, registry, &manifest)?;

        // Move the verified copy into place under its canonical file name, with its manifest.
        let final_name = staging.path().join(library_file_name(&name));
        fs::rename(&staged, &final_name).with_path("rename", &staged)?;
        let manifest_json = serde_json::to_string_pretty(&manifest).expect("manifests serialise");
        registry::write_atomically(
            &staging.path().join("manifest.json"),
            manifest_json.as_bytes(),
        )?;
        let target = installed_dir(&settings.config_dir, &name, &version);
        if target.exists() {
            fs::remove_dir_all(&target).with_path("remove", &target)?;
        }
        let parent = target.parent().expect("installed dirs have a parent");
        fs::create_dir_all(parent).with_path("create", parent)?;
        let staging_path = staging.keep();
        fs::rename(&staging_path, &target).with_path("move into place", &staging_path)?;
        registry::sync_dir(parent)?;

        let library = target.join(library_file_name(&name));
        let entry = RegistryEntry {
            name: name.clone(),
            installation_type: InstallationType::Installed,
            installation_path: None,
            version: Some(version.clone()),
            sha256: Some(sha256_hex(&bytes)),
            extra: existing
                .as_ref()
                .map(|e| e.extra.clone())
                .unwrap_or_default(),
        };
        match registry.entries.iter_mut().find(|e| e.name == name) {
            Some(slot) => *slot = entry,
            None => registry.entries.push(entry),
        }
        Ok(match existing.and_then(|e| e.version) {
            Some(from) => {
                if from != version {
                    old_version_dir = Some(installed_dir(&settings.config_dir, &name, &from));
                }
                InstallOutcome::Replaced {
                    name,
                    from,
                    to: version,
                    library,
                }
            }
            None => InstallOutcome::Installed {
                name,
                version,
                library,
            },
        })
    })?;
    if let Some(dir) = old_version_dir {
        // Only after the registry no longer points at the old version, and only if no other
        // process has registered it again meanwhile.
        let _lock = registry::RegistryLock::acquire(&settings.config_dir)?;
        let registry = Registry::read(&settings.registry_file())?;
        let still_used = registry.entries.iter().any(|e| {
            e.installation_type == InstallationType::Installed
                && e.library_path(&settings.config_dir).starts_with(&dir)
        });
        if !still_used && dir.exists() {
            fs::remove_dir_all(&dir).with_path("remove", &dir)?;
        }
    }
    Ok(outcome)
}
