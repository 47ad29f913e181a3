//! Lazy activation: find the plugin that owns a component, load only its library, and construct
//! only that component. A command resolves what it needs into a [`Plan`](plan::Plan) first.
//!
//! The owner is looked up in the manifest cache first ([`manifest_cache::lookup`]), which reads no
//! registry and no manifest but the owner's; the [`Catalog`] is built only when the cache is stale.
//! Libraries are loaded at most once per process.

pub mod plan;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use diffy_plugin_api::ComponentKind;
use diffy_plugin_api::documents::sha256_hex;
use serde_json::{Map, Value};

pub use plan::{Plan, Planned};

use crate::catalog::{Catalog, KnownPlugin, resolve_owner};
use crate::component::{
    AnalysisHandle, CliCommandHandle, CollectionHandle, ComponentHandle, PayloadHandle,
    PersistenceHandle, TargetHandle,
};
use crate::config::Settings;
use crate::error::{Error, Result};
use crate::files::write_atomically;
use crate::loader::{self, Expectation, LoadedLibrary, Verified};
use crate::manifest_cache;
use crate::progress::{ProgressDisplay, Silent};
use crate::services::HostServices;

/// Loads plugins on demand for one process.
pub struct Activator {
    settings: Settings,
    catalog: Option<Catalog>,
    loaded: HashMap<PathBuf, Arc<LoadedLibrary>>,
    progress: Arc<dyn ProgressDisplay>,
}

impl Activator {
    /// An activator that has loaded nothing yet, whose components show no progress.
    pub fn new(settings: Settings) -> Self {
        Activator {
            settings,
            catalog: None,
            loaded: HashMap::new(),
            progress: Arc::new(Silent),
        }
    }

    /// Let `display` draw the progress of the components this activator activates.
    pub fn with_progress(mut self, display: Arc<dyn ProgressDisplay>) -> Self {
        self.progress = display;
        self
    }

    /// The settings in use.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The single plugin that declares the component, or why there is none.
    pub fn owner(&mut self, kind: ComponentKind, name: &str) -> Result<KnownPlugin> {
        if kind == ComponentKind::CliCommand
            && self.catalog.is_none()
            && let Some(owners) = manifest_cache::lookup_namespace(&self.settings, name)
            && !owners.is_empty()
        {
            tracing::debug!(component = %format!("{kind} {name}"), "owner found in the manifest cache");
            return resolve_owner(owners.iter().collect(), kind, name).cloned();
        }
        if self.catalog.is_none() {
            self.catalog = Some(Catalog::build(&self.settings)?);
        }
        let catalog = self.catalog.as_ref().expect("built above");
        catalog.resolve(kind, name).cloned()
    }

    /// Load a plugin's library (once per process), checking everything the loader checks.
    pub fn load(&mut self, plugin: &KnownPlugin) -> Result<Arc<LoadedLibrary>> {
        if let Some(error) = &plugin.error
            && plugin.manifest.is_none()
        {
            return Err(Error::Plugin(format!("plugin {}: {error}", plugin.name)));
        }
        if let Some(loaded) = self.loaded.get(&plugin.library) {
            return Ok(Arc::clone(loaded));
        }
        let record_path = self.verified_record(&plugin.library);
        let previous: Option<Verified> = std::fs::read(&record_path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        let expect = Expectation {
            name: Some(&plugin.name),
            sha256: plugin.sha256.as_deref(),
            previous: previous.as_ref(),
            shown_as: None,
        };
        let loaded = loader::load(&plugin.library, expect).map_err(|e| {
            Error::Plugin(format!(
                "plugin {} ({}): {e}",
                plugin.name,
                plugin.library.display()
            ))
        })?;
        if previous.as_ref() != Some(&loaded.verified) {
            tracing::debug!(
                had_record = previous.is_some(),
                "saving the verification record of {}",
                plugin.library.display()
            );
            let record = serde_json::to_vec(&loaded.verified).expect("records serialise");
            if let Err(e) = write_atomically(&record_path, &record) {
                tracing::debug!("cannot save the verification record: {e}");
            }
        }
        let loaded = Arc::new(loaded);
        self.loaded
            .insert(plugin.library.clone(), Arc::clone(&loaded));
        Ok(loaded)
    }

    /// Where the [`Verified`] record of a library is kept: `<config>/cache/verified/<hash>.json`.
    fn verified_record(&self, library: &Path) -> PathBuf {
        let key = sha256_hex(library.as_os_str().as_encoded_bytes());
        self.settings
            .cache_dir()
            .join("verified")
            .join(format!("{}.json", &key[..32]))
    }

    fn services(&self, plugin: &str) -> HostServices {
        HostServices::with_progress(plugin, self.settings.data_dir(plugin), &*self.progress)
    }

    /// Activate the CLI namespace `namespace`.
    pub fn cli_command(&mut self, namespace: &str) -> Result<CliCommandHandle> {
        let owner = self.owner(ComponentKind::CliCommand, namespace)?;
        let library = self.load(&owner)?;
        let services = self.services(&owner.name);
        library
            .activate(ComponentKind::CliCommand, namespace, services, &Map::new())
            .map(CliCommandHandle::from)
    }

    /// Activate the interface component of `kind` named `slug`, with `options` validated against
    /// its schema and completed with its defaults here.
    pub fn activate(
        &mut self,
        kind: ComponentKind,
        slug: &str,
        options: &Map<String, Value>,
    ) -> Result<ComponentHandle> {
        let planned = self.plan_one(kind, slug, options)?;
        self.activate_planned(&planned)
    }

    /// Activate a component of a [`Plan`](plan::Plan): load its owner's library (once per
    /// process) and construct it with its planned options.
    pub fn activate_planned(&mut self, planned: &Planned) -> Result<ComponentHandle> {
        let library = self.load(&planned.owner)?;
        let services = self.services(&planned.owner.name);
        library.activate(planned.kind(), planned.name(), services, &planned.options)
    }
}

macro_rules! activate_interface {
    ($($(#[$doc:meta])* $method:ident, $kind:ident, $handle:ident;)*) => {
        impl Activator {$(
            $(#[$doc])*
            pub fn $method(&mut self, slug: &str, options: &Map<String, Value>) -> Result<$handle> {
                self.activate(ComponentKind::$kind, slug, options).map($handle::from)
            }
        )*}
    };
}

activate_interface! {
    /// Activate a Target component with `options` (validated here).
    activate_target, Target, TargetHandle;
    /// Activate a Payload component with `options` (validated here).
    activate_payload, Payload, PayloadHandle;
    /// Activate a Collection component with `options` (validated here).
    activate_collection, Collection, CollectionHandle;
    /// Activate a Persistence component with `options` (validated here).
    activate_persistence, Persistence, PersistenceHandle;
    /// Activate an Analysis component with `options` (validated here).
    activate_analysis, Analysis, AnalysisHandle;
}
