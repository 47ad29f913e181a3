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
use std::time::Duration;

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
use crate::isolation::{self, IsolatedPlugin, Isolation, SandboxReport};
use crate::loader::{self, Expectation, LoadedLibrary, Verified};
use crate::manifest_cache;
use crate::progress::{ProgressDisplay, Silent};
use crate::services::HostServices;

/// Loads plugins on demand for one process.
pub struct Activator {
    settings: Settings,
    catalog: Option<Catalog>,
    loaded: HashMap<PathBuf, Arc<LoadedLibrary>>,
    isolated: HashMap<PathBuf, Arc<IsolatedPlugin>>,
    progress: Arc<dyn ProgressDisplay>,
    call_timeout: Option<Duration>,
}

impl Activator {
    /// An activator that has loaded nothing yet, whose components show no progress.
    pub fn new(settings: Settings) -> Self {
        Activator {
            settings,
            catalog: None,
            loaded: HashMap::new(),
            isolated: HashMap::new(),
            progress: Arc::new(Silent),
            call_timeout: None,
        }
    }

    /// Kill an isolated plugin whose call does not answer within `timeout` (in-process calls
    /// are bounded by the workflow, which can only abandon them).
    pub fn with_call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = Some(timeout);
        self
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

    /// Load a plugin's library into this process (once per process), checking everything the
    /// loader checks.
    pub fn load(&mut self, plugin: &KnownPlugin) -> Result<Arc<LoadedLibrary>> {
        usable(plugin)?;
        if let Some(loaded) = self.loaded.get(&plugin.library) {
            return Ok(Arc::clone(loaded));
        }
        let previous = self.previous_verification(&plugin.library);
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
        self.remember_verification(&plugin.library, previous.as_ref(), &loaded.verified);
        let loaded = Arc::new(loaded);
        self.loaded
            .insert(plugin.library.clone(), Arc::clone(&loaded));
        Ok(loaded)
    }

    /// Start a plugin's sandboxed runner (once per process), which loads its library with the
    /// same checks.
    pub fn isolated(&mut self, plugin: &KnownPlugin) -> Result<Arc<IsolatedPlugin>> {
        usable(plugin)?;
        if let Some(isolated) = self.isolated.get(&plugin.library) {
            return Ok(Arc::clone(isolated));
        }
        let previous = self.previous_verification(&plugin.library);
        let spec = isolation::spec_for(
            plugin,
            self.settings.data_dir(&plugin.name),
            previous.clone(),
        );
        let isolated = IsolatedPlugin::start(&self.settings.runner, spec, self.call_timeout)
            .map_err(|why| isolation::start_error(plugin, why))?;
        self.remember_verification(
            &plugin.library,
            previous.as_ref(),
            &isolated.started.verified,
        );
        let isolated = Arc::new(isolated);
        self.isolated
            .insert(plugin.library.clone(), Arc::clone(&isolated));
        Ok(isolated)
    }

    /// Load a plugin as it runs (in process, or in its runner) to check it, for `plugin info`:
    /// its manifest, digest and, when isolated, its sandbox.
    pub fn verify(&mut self, plugin: &KnownPlugin) -> Result<Verification> {
        if self.settings.isolation_of(plugin) == Isolation::Process {
            let isolated = self.isolated(plugin)?;
            let started = &isolated.started;
            return Ok(Verification {
                manifest: started.manifest.clone(),
                sha256: started.verified.sha256.clone(),
                sandbox: Some(started.sandbox.clone()),
            });
        }
        let loaded = self.load(plugin)?;
        Ok(Verification {
            manifest: loaded.manifest.clone(),
            sha256: loaded.sha256().map(String::from),
            sandbox: None,
        })
    }

    /// What an earlier load of `library` verified, if it recorded it.
    fn previous_verification(&self, library: &Path) -> Option<Verified> {
        std::fs::read(self.verified_record(library))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
    }

    /// Record what a load verified, when it differs from what was recorded; failing costs only
    /// time next run.
    fn remember_verification(&self, library: &Path, previous: Option<&Verified>, now: &Verified) {
        if previous == Some(now) {
            return;
        }
        tracing::debug!(
            had_record = previous.is_some(),
            "saving the verification record of {}",
            library.display()
        );
        let record = serde_json::to_vec(now).expect("records serialise");
        if let Err(e) = write_atomically(&self.verified_record(library), &record) {
            tracing::debug!("cannot save the verification record: {e}");
        }
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
        self.activate_owned(&owner, ComponentKind::CliCommand, namespace, &Map::new())
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
        let kind = planned.kind();
        self.activate_owned(&planned.owner, kind, planned.name(), &planned.options)
    }

    /// Activate `owner`'s component, in process or in its runner as it is to run.
    fn activate_owned(
        &mut self,
        owner: &KnownPlugin,
        kind: ComponentKind,
        name: &str,
        options: &Map<String, Value>,
    ) -> Result<ComponentHandle> {
        let services = self.services(&owner.name);
        match self.settings.isolation_of(owner) {
            Isolation::Process => self
                .isolated(owner)?
                .activate(kind, name, services, options),
            Isolation::InProcess => self.load(owner)?.activate(kind, name, services, options),
        }
    }
}

/// A plugin that cannot be loaded at all, as its known state already says.
fn usable(plugin: &KnownPlugin) -> Result<()> {
    match &plugin.error {
        Some(error) if plugin.manifest.is_none() => {
            Err(Error::Plugin(format!("plugin {}: {error}", plugin.name)))
        }
        _ => Ok(()),
    }
}

/// What loading a plugin as it runs showed, for `plugin info`.
#[derive(Debug, Clone)]
pub struct Verification {
    /// The library's manifest.
    pub manifest: diffy_plugin_api::Manifest,
    /// Its SHA-256, when the load computed (or trusted) it.
    pub sha256: Option<String>,
    /// Its sandbox, when it runs isolated.
    pub sandbox: Option<SandboxReport>,
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
