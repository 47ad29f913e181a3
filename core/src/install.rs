//! The plugin manager's operations: install (by copy or link), update, uninstall and check.
//!
//! Every operation that changes the registry holds its lock from first read to last write. An
//! install copies the library into a staging directory, loads *that copy* to verify it (so the
//! bytes verified are the bytes installed), and only then moves it into place and registers it. A
//! crash at any point leaves at worst an unregistered directory, never an entry without its files.

use std::fs;
use std::path::{Path, PathBuf};

use diffy_plugin_api::documents::sha256_hex;
use diffy_plugin_api::{Manifest, Permission};

use crate::catalog::Catalog;
use crate::config::{BUNDLED_PLUGINS, Settings, library_file_name};
use crate::error::{Error, IoContext, Result};
use crate::files;
use crate::inspect::{Candidate, check_namespaces};
use crate::isolation::frames::RunnerSpec;
use crate::isolation::{IsolatedPlugin, Isolation};
use crate::loader::{self, Expectation};
use crate::registry::{self, InstallationType, Registry, RegistryEntry, installed_dir};

/// How to install.
#[derive(Debug, Clone, Copy, Default)]
pub struct InstallOptions {
    /// Record a path entry instead of copying the library.
    pub link: bool,
    /// Replace an installed plugin of another version (or reinstall the same one).
    pub force: bool,
    /// Run the plugin in a sandboxed child process, from the verifying load on.
    pub isolate: bool,
}

/// What an install or update did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallOutcome {
    /// Copied and registered.
    Installed {
        name: String,
        version: String,
        library: PathBuf,
        granted: Grant,
    },
    /// Registered in place.
    Linked {
        name: String,
        version: String,
        library: PathBuf,
        granted: Grant,
    },
    /// The same name and version was already registered; nothing changed.
    Unchanged { name: String, version: String },
    /// Another version was replaced.
    Replaced {
        name: String,
        from: String,
        to: String,
        library: PathBuf,
        granted: Grant,
    },
}

/// How an installed plugin will run, and what it asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// In process, or isolated.
    pub isolation: Isolation,
    /// The permissions its manifest declares (granted when it runs isolated).
    pub permissions: Vec<Permission>,
}

impl Grant {
    fn of(manifest: &Manifest, isolation: Isolation) -> Grant {
        Grant {
            isolation,
            permissions: manifest.permissions.clone(),
        }
    }
}

/// Install the plugin library at `path`.
pub fn install(
    settings: &Settings,
    path: &Path,
    options: InstallOptions,
) -> Result<InstallOutcome> {
    // An archive is verified and unpacked into a temporary directory, removed on every path out.
    let candidate = Candidate::open(path)?;
    let outcome = if options.link {
        if candidate.is_archive() {
            return Err(Error::Usage(format!(
                "{} is a plugin archive; --link uses a library in place, so install the archive \
                 without --link",
                path.display()
            )));
        }
        link(settings, &candidate, isolation_flag(options))?
    } else {
        copy_in(
            settings,
            &candidate,
            None,
            options.force,
            isolation_flag(options),
        )?
    };
    refresh_cache(settings);
    Ok(outcome)
}

/// Replace the installed plugin `name` with the build at `path`.
pub fn update(settings: &Settings, name: &str, path: &Path) -> Result<InstallOutcome> {
    let candidate = Candidate::open(path)?;
    let outcome = copy_in(settings, &candidate, Some(name), true, None)?;
    refresh_cache(settings);
    Ok(outcome)
}

/// Run the registered plugin `name` isolated in a sandboxed child process, or in process again
/// (`diffy plugin isolate NAME on|off`). Returns the entry as it now is.
pub fn set_isolation(
    settings: &Settings,
    name: &str,
    isolation: Isolation,
) -> Result<RegistryEntry> {
    if BUNDLED_PLUGINS.contains(&name) {
        return Err(Error::Usage(format!(
            "{name} is bundled with diffy and runs in process; use --isolate-plugins=all to isolate \
             it for one run"
        )));
    }
    let entry = registry::modify(&settings.config_dir, |registry| {
        let entry = registry
            .entries
            .iter_mut()
            .find(|e| e.name == name)
            .ok_or_else(|| Error::Usage(format!("no plugin named {name:?} is registered")))?;
        entry.isolation = (isolation == Isolation::Process).then_some(Isolation::Process);
        Ok(entry.clone())
    })?;
    refresh_cache(settings);
    Ok(entry)
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
        remove_leftovers(settings, registry)?;
        let index = registry
            .entries
            .iter()
            .position(|e| e.name == name)
            .ok_or_else(|| Error::Usage(format!("no plugin named {name:?} is registered")))?;
        let removed = registry.entries.remove(index);
        Ok(removed)
    })?;
    if removed.installation_type == InstallationType::Installed {
        // Only now that no entry points at the files: a crash before this line leaves files the
        // next install, update or uninstall removes, never an entry without its library.
        remove_unreferenced(settings)?;
    }
    refresh_cache(settings);
    Ok(removed)
}

/// What interrupted operations left in the plugins directory: staging directories and installed
/// versions no registry entry points at. Reading only; [`remove_leftovers`] removes them.
fn find_leftovers(settings: &Settings, registry: &Registry) -> Result<Vec<PathBuf>> {
    let plugins_dir = settings.plugins_dir();
    let Ok(entries) = fs::read_dir(&plugins_dir) else {
        return Ok(Vec::new());
    };
    let in_use: std::collections::HashSet<PathBuf> = registry
        .entries
        .iter()
        .filter(|e| e.installation_type == InstallationType::Installed)
        .map(|e| {
            installed_dir(
                &settings.config_dir,
                &e.name,
                e.version.as_deref().unwrap_or_default(),
            )
        })
        .collect();
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with(".staging-") {
            found.push(path);
        } else if path.is_dir() {
            for version in fs::read_dir(&path).with_path("read", &path)?.flatten() {
                if !in_use.contains(&version.path()) {
                    found.push(version.path());
                }
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Remove the leftovers of interrupted operations (and plugin directories they emptied). The
/// caller holds the registry lock.
fn remove_leftovers(settings: &Settings, registry: &Registry) -> Result<()> {
    for leftover in find_leftovers(settings, registry)? {
        fs::remove_dir_all(&leftover).with_path("remove", &leftover)?;
        if let Some(plugin_dir) = leftover.parent().filter(|p| *p != settings.plugins_dir())
            && fs::read_dir(plugin_dir).is_ok_and(|mut d| d.next().is_none())
        {
            fs::remove_dir(plugin_dir).with_path("remove", plugin_dir)?;
        }
    }
    Ok(())
}

/// Under a fresh lock, remove installed files the registry no longer points at.
fn remove_unreferenced(settings: &Settings) -> Result<()> {
    let _lock = registry::RegistryLock::acquire(&settings.config_dir)?;
    let registry = Registry::read(&settings.registry_file())?;
    remove_leftovers(settings, &registry)
}

/// For `plugin list`: what interrupted operations left, which the next install, update or
/// uninstall removes. Listing changes nothing.
pub fn leftovers(settings: &Settings) -> Result<Vec<PathBuf>> {
    let registry = Registry::read(&settings.registry_file())?;
    find_leftovers(settings, &registry)
}

fn refresh_cache(settings: &Settings) {
    if let Err(e) = Catalog::build(settings) {
        tracing::debug!("cannot refresh the manifest cache: {e}");
    }
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

/// `--isolate` as an isolation to record; without it an existing entry's stays as it was.
fn isolation_flag(options: InstallOptions) -> Option<Isolation> {
    options.isolate.then_some(Isolation::Process)
}

/// Load `library` (a staged copy of `candidate`) to verify it, naming the candidate: in a
/// sandboxed runner when the plugin is to run isolated, so its code never runs in diffy itself.
fn load_checked(
    settings: &Settings,
    library: &Path,
    candidate: &Candidate,
    isolation: Isolation,
) -> Result<Manifest> {
    let failed =
        |e: String| Error::Plugin(format!("cannot install {}: {e}", candidate.shown.display()));
    if isolation == Isolation::Process {
        let data_dir = tempfile::tempdir()
            .with_path("create a temporary directory in", &std::env::temp_dir())?;
        let spec = RunnerSpec {
            name: None,
            library: library.to_path_buf(),
            shown_as: Some(candidate.shown.clone()),
            sha256: None,
            previous: None,
            permissions: Vec::new(),
            data_dir: data_dir.path().to_path_buf(),
            temp_dir: PathBuf::new(),
            probe: true,
        };
        return IsolatedPlugin::probe(&settings.runner, spec)
            .map(|started| started.manifest)
            .map_err(failed);
    }
    let expect = Expectation {
        shown_as: Some(&candidate.shown),
        ..Expectation::default()
    };
    loader::load(library, expect)
        .map(|loaded| loaded.manifest)
        .map_err(failed)
}

fn link(
    settings: &Settings,
    candidate: &Candidate,
    isolation: Option<Isolation>,
) -> Result<InstallOutcome> {
    let library = fs::canonicalize(&candidate.library).with_path("resolve", &candidate.library)?;
    registry::modify(&settings.config_dir, |registry| {
        let manifest = load_checked(settings, &library, candidate, isolation.unwrap_or_default())?;
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
            isolation,
            extra: Default::default(),
        });
        Ok(InstallOutcome::Linked {
            granted: Grant::of(&manifest, isolation.unwrap_or_default()),
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
    candidate: &Candidate,
    expected_name: Option<&str>,
    force: bool,
    isolation: Option<Isolation>,
) -> Result<InstallOutcome> {
    let source = &candidate.shown;
    let bytes = fs::read(&candidate.library).with_path("read", &candidate.library)?;
    let plugins_dir = settings.plugins_dir();
    let mut old_version_dir = None;
    let outcome = registry::modify(&settings.config_dir, |registry| {
        remove_leftovers(settings, registry)?;
        fs::create_dir_all(&plugins_dir).with_path("create", &plugins_dir)?;
        let staging = tempfile::Builder::new()
            .prefix(".staging-")
            .tempdir_in(&plugins_dir)
            .with_path("create a staging directory in", &plugins_dir)?;
        let staged = staging
            .path()
            .join(candidate.library.file_name().unwrap_or("plugin".as_ref()));
        fs::write(&staged, &bytes).with_path("write", &staged)?;
        fs::File::open(&staged)
            .and_then(|f| f.sync_all())
            .with_path("sync", &staged)?;
        // An update runs as the installed plugin does; an install as asked.
        let registered = expected_name
            .and_then(|name| registry.get(name))
            .and_then(|entry| entry.isolation);
        let verify_as = isolation.or(registered).unwrap_or_default();
        let manifest = load_checked(settings, &staged, candidate, verify_as)?;
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
        files::write_atomically(
            &staging.path().join("manifest.json"),
            manifest_json.as_bytes(),
        )?;
        let target = installed_dir(&settings.config_dir, &name, &version);
        let parent = target.parent().expect("installed dirs have a parent");
        let registered_here =
            existing.as_ref().and_then(|e| e.version.as_deref()) == Some(&version);
        if registered_here && target.exists() {
            // Reinstalling the registered version (--force): the directory is in use, so replace
            // its files one by one, each atomically. Until the registry records the new digest a
            // crash leaves a library whose digest does not match, which is refused, never loaded.
            for file in [library_file_name(&name), "manifest.json".to_string()] {
                let (from, to) = (staging.path().join(&file), target.join(&file));
                fs::rename(&from, &to).with_path("replace", &to)?;
            }
            files::sync_dir(&target)?;
        } else {
            if target.exists() {
                // Not registered: the remains of an interrupted install.
                fs::remove_dir_all(&target).with_path("remove", &target)?;
            }
            fs::create_dir_all(parent).with_path("create", parent)?;
            let staging_path = staging.keep();
            fs::rename(&staging_path, &target).with_path("move into place", &staging_path)?;
            files::sync_dir(parent)?;
        }

        let library = target.join(library_file_name(&name));
        let entry = RegistryEntry {
            name: name.clone(),
            installation_type: InstallationType::Installed,
            installation_path: None,
            version: Some(version.clone()),
            sha256: Some(sha256_hex(&bytes)),
            isolation: isolation.or(existing.as_ref().and_then(|e| e.isolation)),
            extra: existing
                .as_ref()
                .map(|e| e.extra.clone())
                .unwrap_or_default(),
        };
        let granted = Grant::of(&manifest, entry.isolation.unwrap_or_default());
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
                    granted,
                }
            }
            None => InstallOutcome::Installed {
                name,
                version,
                library,
                granted,
            },
        })
    })?;
    if old_version_dir.is_some() {
        remove_unreferenced(settings)?;
    }
    Ok(outcome)
}
