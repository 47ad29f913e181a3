//! Every plugin diffy knows — bundled and registered — with its cached manifest, and which plugin
//! owns which component.
//!
//! Building the catalog opens a library only when its cached manifest is missing or stale (a path
//! or bundled library whose size or modification time changed). Installed plugins' manifests are
//! cached at install time beside the library and are never refreshed by loading.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use diffy_plugin_api::{ComponentKind, Manifest};

use crate::config::{BUILT_IN_COMMANDS, BUNDLED_PLUGINS, Settings};
use crate::error::{Error, Result};
use crate::files::FileIdentity;
use crate::isolation::{self, IsolatedPlugin, Isolation};
pub use crate::known::{KnownPlugin, Source};
use crate::loader::{self, Expectation};
use crate::manifest_cache;
use crate::registry::{InstallationType, Registry, RegistryEntry};

/// Where a plugin stands, as `diffy plugin list` and `diffy plugin info` report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Known from its cached manifest; its library was not opened.
    Known,
    /// Its library was opened and passed every check just now.
    Loaded,
    /// It cannot be used, and why.
    Error(String),
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Status::Known => f.write_str("known"),
            Status::Loaded => f.write_str("loaded"),
            Status::Error(error) => write!(f, "error: {error}"),
        }
    }
}

impl Status {
    /// A plugin's status without opening its library: its recorded error, else a conflict it is
    /// part of, else known.
    pub fn of(plugin: &KnownPlugin, conflicts: &[Conflict]) -> Status {
        match &plugin.error {
            Some(error) => Status::Error(error.clone()),
            None => conflict_of(plugin, conflicts).unwrap_or(Status::Known),
        }
    }

    /// A plugin's status after loading its library: the load's error, else a conflict it is part
    /// of, else loaded.
    pub fn after_load(
        plugin: &KnownPlugin,
        conflicts: &[Conflict],
        load: std::result::Result<(), String>,
    ) -> Status {
        match load {
            Err(error) => Status::Error(error),
            Ok(()) => conflict_of(plugin, conflicts).unwrap_or(Status::Loaded),
        }
    }
}

/// Two or more plugins claiming one component, or a namespace shadowing a built-in command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The component's kind.
    pub kind: ComponentKind,
    /// The contested name.
    pub name: String,
    /// The plugins claiming it (one, when it shadows a built-in).
    pub plugins: Vec<String>,
}

impl Conflict {
    /// One line describing the conflict.
    pub fn describe(&self) -> String {
        if self.plugins.len() == 1 {
            format!(
                "plugin {} declares CLI namespace {:?}, which is a built-in command; it is not used",
                self.plugins[0], self.name
            )
        } else {
            format!(
                "{} {:?} is claimed by {}; it is not used until one of them is uninstalled",
                self.kind,
                self.name,
                self.plugins.join(" and ")
            )
        }
    }
}

/// All known plugins of the enabled sources.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Bundled plugins first, then registry entries in file order.
    pub plugins: Vec<KnownPlugin>,
}

impl Catalog {
    /// Read the registry and the manifest cache, refresh stale entries (one load each), and save
    /// the cache back when every source is enabled.
    pub fn build(settings: &Settings) -> Result<Catalog> {
        if settings.user_plugins
            && settings.bundled_plugins
            && let Some(plugins) = manifest_cache::read_fresh(settings)
            && plugins.iter().all(|p| match p.stamp {
                Some(stamp) => FileIdentity::of_path(&p.library) == Some(stamp),
                None => p.error.is_some() || p.library.is_file(),
            })
        {
            return Ok(Catalog { plugins });
        }
        let registry = if settings.user_plugins {
            Registry::read(&settings.registry_file())?
        } else {
            Registry::default()
        };
        Catalog::build_with(settings, &registry)
    }

    /// As [`Catalog::build`], with a registry already read (under the lock, during install).
    pub fn build_with(settings: &Settings, registry: &Registry) -> Result<Catalog> {
        let previous = manifest_cache::read_plugins(settings);
        let mut plugins = Vec::new();
        if settings.bundled_plugins {
            for name in BUNDLED_PLUGINS {
                let library = settings
                    .bundled_library(name)
                    .unwrap_or_else(|| PathBuf::from(crate::config::library_file_name(name)));
                plugins.push(refresh(
                    settings,
                    name,
                    Source::Bundled,
                    library,
                    Isolation::InProcess,
                    &previous,
                ));
            }
        }
        if settings.user_plugins {
            for entry in &registry.entries {
                let mut plugin = known_from_entry(settings, entry, &previous);
                if BUNDLED_PLUGINS.contains(&entry.name.as_str()) {
                    plugin.error = Some(format!(
                        "the name {} belongs to a bundled plugin; uninstall this entry",
                        entry.name
                    ));
                    plugin.manifest = None;
                }
                plugins.push(plugin);
            }
        }
        let catalog = Catalog { plugins };
        if settings.user_plugins && settings.bundled_plugins {
            manifest_cache::write(settings, &catalog.plugins);
        }
        Ok(catalog)
    }

    /// The plugin named `name`.
    pub fn get(&self, name: &str) -> Option<&KnownPlugin> {
        self.plugins.iter().find(|p| p.name == name)
    }

    /// The plugins that declare the component.
    pub fn owners(&self, kind: ComponentKind, name: &str) -> Vec<&KnownPlugin> {
        self.plugins
            .iter()
            .filter(|p| p.provides(kind, name))
            .collect()
    }

    /// Every contested component name.
    pub fn conflicts(&self) -> Vec<Conflict> {
        let mut claims: BTreeMap<(ComponentKind, &str), Vec<String>> = BTreeMap::new();
        for plugin in &self.plugins {
            let Some(manifest) = &plugin.manifest else {
                continue;
            };
            for component in &manifest.components {
                claims
                    .entry((component.kind, component.name.as_str()))
                    .or_default()
                    .push(plugin.name.clone());
            }
        }
        claims
            .into_iter()
            .filter(|((kind, name), plugins)| {
                plugins.len() > 1
                    || (*kind == ComponentKind::CliCommand && BUILT_IN_COMMANDS.contains(name))
            })
            .map(|((kind, name), plugins)| Conflict {
                kind,
                name: name.to_string(),
                plugins,
            })
            .collect()
    }

    /// The one plugin that provides the component, or a one-line error. When no plugin declares
    /// it but some plugin could not be read at all (a bundled library refused, say), the error
    /// names those plugins and why: one of them may be the owner.
    pub fn resolve(&self, kind: ComponentKind, name: &str) -> Result<&KnownPlugin> {
        let owners = self.owners(kind, name);
        let unreadable: Vec<String> = self
            .plugins
            .iter()
            .filter(|p| p.manifest.is_none())
            .filter_map(|p| {
                let error = p.error.as_deref()?;
                Some(format!(
                    "{} plugin {} ({}) could not be loaded: {error}",
                    p.source.as_str(),
                    p.name,
                    p.library.display()
                ))
            })
            .collect();
        if owners.is_empty() && !unreadable.is_empty() {
            let what = match kind {
                ComponentKind::CliCommand => format!("command {name:?}"),
                _ => format!("{kind} {name:?}"),
            };
            return Err(Error::Plugin(format!(
                "no usable plugin provides {what}; {}",
                unreadable.join("; ")
            )));
        }
        resolve_owner(owners, kind, name)
    }
}

fn conflict_of(plugin: &KnownPlugin, conflicts: &[Conflict]) -> Option<Status> {
    conflicts
        .iter()
        .find(|c| c.plugins.contains(&plugin.name))
        .map(|conflict| Status::Error(conflict.describe()))
}

/// Pick the single owner of a component or explain why there is none.
pub fn resolve_owner<'a>(
    owners: Vec<&'a KnownPlugin>,
    kind: ComponentKind,
    name: &str,
) -> Result<&'a KnownPlugin> {
    match owners.as_slice() {
        [owner] => Ok(owner),
        [] if kind == ComponentKind::CliCommand => Err(Error::Usage(format!(
            "unknown command {name:?}; run 'diffy help' to see the commands"
        ))),
        [] => Err(Error::Usage(format!(
            "no plugin provides {kind} {name:?}; run 'diffy plugin list' to see the plugins"
        ))),
        many => Err(Error::Plugin(format!(
            "{kind} {name:?} is claimed by {}; uninstall one of them",
            many.iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(" and ")
        ))),
    }
}

fn known_from_entry(
    settings: &Settings,
    entry: &RegistryEntry,
    previous: &HashMap<String, KnownPlugin>,
) -> KnownPlugin {
    let library = entry.library_path(&settings.config_dir);
    let registered = entry.isolation.unwrap_or_default();
    match entry.installation_type {
        InstallationType::Path => refresh(
            settings,
            &entry.name,
            Source::Path,
            library,
            registered,
            previous,
        ),
        InstallationType::Installed => {
            let manifest_path = library.with_file_name("manifest.json");
            let (manifest, mut error) = match read_installed_manifest(&manifest_path) {
                Ok(manifest) => (Some(manifest), None),
                Err(e) => (None, Some(e)),
            };
            if error.is_none() && !library.is_file() {
                error = Some(crate::files::not_a_library(&library));
            }
            KnownPlugin {
                name: entry.name.clone(),
                source: Source::Installed,
                library,
                stamp: None,
                sha256: entry.sha256.clone(),
                manifest,
                error,
                isolation: registered,
            }
        }
    }
}

fn read_installed_manifest(path: &Path) -> Result<Manifest, String> {
    let cannot = |why: String| {
        format!(
            "cannot read the cached manifest {}: {why}; reinstall the plugin",
            path.display()
        )
    };
    let text = match crate::files::read_regular(path, crate::registry::MAX_REGISTRY_BYTES) {
        Ok(Some(bytes)) => String::from_utf8(bytes).map_err(|e| cannot(e.to_string()))?,
        Ok(None) => return Err(cannot("No such file or directory (os error 2)".into())),
        Err(fault) => return Err(cannot(fault.to_string())),
    };
    serde_json::from_str(&text).map_err(|e| {
        format!(
            "the cached manifest {} is malformed: {e}; reinstall the plugin",
            path.display()
        )
    })
}

/// Reuse the previous cache entry when the library is unchanged; otherwise load it once to read
/// its manifest — in a sandboxed runner when the plugin runs isolated, so that an untrusted
/// library's code never runs in diffy's own process.
fn refresh(
    settings: &Settings,
    name: &str,
    source: Source,
    library: PathBuf,
    registered: Isolation,
    previous: &HashMap<String, KnownPlugin>,
) -> KnownPlugin {
    let stamp = FileIdentity::of_path(&library);
    if let Some(old) = previous.get(name)
        && old.source == source
        && old.library == library
        && old.stamp.is_some()
        && old.stamp == stamp
    {
        return old.clone();
    }
    let mut plugin = KnownPlugin {
        name: name.to_string(),
        source,
        library,
        stamp,
        sha256: None,
        manifest: None,
        error: None,
        isolation: registered,
    };
    if plugin.stamp.is_none() {
        plugin.error = Some(match source {
            Source::Bundled => format!("bundled {}", crate::files::not_a_library(&plugin.library)),
            _ => crate::files::not_a_library(&plugin.library),
        });
    } else if settings.isolation_of(&plugin) == Isolation::Process {
        let spec = isolation::spec_for(&plugin, settings.data_dir(name), None);
        match IsolatedPlugin::probe(&settings.runner, spec) {
            Ok(started) => plugin.manifest = Some(started.manifest),
            Err(error) => plugin.error = Some(error),
        }
    } else {
        let expect = Expectation {
            name: Some(name),
            ..Expectation::default()
        };
        match loader::load(&plugin.library, expect) {
            Ok(loaded) => plugin.manifest = Some(loaded.manifest),
            Err(error) => plugin.error = Some(error),
        }
    }
    if plugin.manifest.is_none() {
        // Keep the last good manifest so the plugin's commands still show, and fail with the
        // load error when used.
        plugin.manifest = previous
            .get(name)
            .filter(|old| old.library == plugin.library)
            .and_then(|old| old.manifest.clone());
    }
    plugin
}
