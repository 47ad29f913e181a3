//! The authoring layer: plain Rust traits a plugin implements, and the [`Plugin`] builder that
//! declares them. Nothing here mentions FFI; [`export_plugin!`](crate::export_plugin) does the rest.

use std::fmt::Display;
use std::sync::Arc;

use abi_stable::std_types::{RSlice, RStr, RVec};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::documents::{
    AnalysisInput, AnalysisStart, Command, Record, RecordJson, Report, RunInfo, TargetInfo,
};
use crate::ffi::{CallStatus, HostBox};
use crate::keys;
use crate::manifest::{Component, ComponentKind, Manifest, Permission};
use crate::protocol::methods_of;
use crate::protocol::services::{self, LogLevel};

/// The result type of every plugin method: any error converts into [`anyhow::Error`].
pub type Result<T, E = anyhow::Error> = std::result::Result<T, E>;

/// A CLI namespace: `diffy <namespace> ARGS…`.
pub trait CliCommand: Send + Sync + 'static {
    /// Run with the arguments that followed the namespace (`["add", "--spoons", "2"]`) and return
    /// the process exit code. Print to stdout and stderr as any command-line program would.
    fn run(&self, args: Vec<String>) -> Result<i32>;
}

/// The Diffy Target interface: which hosts to examine.
pub trait Target: Send + Sync + 'static {
    /// Resolve `key` (a host name, a directory, a fleet name…) into targets.
    fn get(&self, key: &str, incident: Option<&str>) -> Result<Vec<TargetInfo>>;
}

/// The Diffy Payload interface: which commands to run.
pub trait Payload: Send + Sync + 'static {
    /// The commands to collect, each with a unique id.
    fn generate(&self, incident: Option<&str>) -> Result<Vec<Command>>;
    /// The commands to collect from `targets` (since 0.2.1), for a payload whose commands depend
    /// on the targets (what their evidence holds, their platform). The host calls this one and
    /// passes the targets it resolved (only the first for a baseline); a host before 0.2.1 passes
    /// none. The default ignores them and calls [`Payload::generate`].
    fn generate_for(&self, targets: &[TargetInfo], incident: Option<&str>) -> Result<Vec<Command>> {
        let _ = targets;
        self.generate(incident)
    }
}

/// The Diffy Collection interface: run commands on targets.
///
/// The host calls it once per target (many targets at once, with a timeout) and turns an error into
/// failed records, so an implementation may simply work through its inputs in order.
pub trait Collection: Send + Sync + 'static {
    /// One record per target and command. A command that fails is a record with a failed status,
    /// not an error.
    fn get(
        &self,
        targets: &[TargetInfo],
        commands: &[Command],
        incident: Option<&str>,
    ) -> Result<Vec<Record>>;
}

/// The Diffy Persistence interface: JSON documents under keys such as `baseline/<key>/<command>`.
pub trait Persistence: Send + Sync + 'static {
    /// The JSON text saved under `key`, or `None`.
    fn get(&self, key: &str) -> Result<Option<String>>;
    /// Save `document` (JSON text) under `key`, replacing what was there.
    fn save(&self, key: &str, document: &str) -> Result<()>;
    /// Every key starting with `prefix`, sorted.
    fn list(&self, prefix: &str) -> Result<Vec<String>>;
    /// Save many `(key, document)` pairs, in order (since 0.2.1). The host saves a run's records
    /// through this; the default saves them one by one, and a store that can batch should.
    fn save_many(&self, items: &[(&str, &str)]) -> Result<()> {
        items
            .iter()
            .try_for_each(|(key, document)| self.save(key, document))
    }
    /// The documents under many keys, one entry per key in order (since 0.2.1). The default
    /// reads them one by one.
    fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<String>>> {
        keys.iter().map(|key| self.get(key)).collect()
    }
    /// Reserve the run `run.id` (since 0.2.1): save `run` under `run/<id>` unless a run of that
    /// id exists, and say whether it did. A store that can create exclusively (a directory, a
    /// conditional put) should: the default looks first and saves after, which two hosts racing
    /// for one id could both pass (ids are random enough that they do not meet in practice).
    fn create_run(&self, run: &RunInfo) -> Result<bool> {
        let key = keys::run_key(&run.id);
        if self.get(&key)?.is_some() {
            return Ok(false);
        }
        self.save(&key, &serde_json::to_string(run)?)?;
        Ok(true)
    }
    /// Append a batch of the run's records (since 0.2.1), each to be read back under
    /// `records/<run>/<target>/<command>`. The default saves them with
    /// [`Persistence::save_many`]; a store that keeps a run in a few files should append.
    fn append_records(&self, run: &str, records: &[RecordJson<'_>]) -> Result<()> {
        let keys: Vec<String> = records
            .iter()
            .map(|r| keys::record_key(run, &r.target, &r.command))
            .collect();
        let items: Vec<(&str, &str)> = keys
            .iter()
            .zip(records)
            .map(|(key, record)| (key.as_str(), record.json))
            .collect();
        self.save_many(&items)
    }
    /// Finish the run (since 0.2.1): save `report` (a report as JSON, none when the run failed)
    /// under `report/<id>` and `run` under `run/<id>`, the run last, so that a run that reads as
    /// complete has its report. A store that can should make both one atomic step.
    fn finish_run(&self, run: &RunInfo, report: Option<&str>) -> Result<()> {
        if let Some(report) = report {
            self.save(&keys::report_key(&run.id), report)?;
        }
        self.save(&keys::run_key(&run.id), &serde_json::to_string(run)?)
    }
    /// Save the baseline of target key `key` (since 0.2.1): one record per command, replacing
    /// the previous baseline of that key whole, so that no command of an older baseline remains
    /// and a crash leaves the old baseline or the new one, never a mix. The default saves each
    /// record under `baseline/<key>/<command>` with [`Persistence::save_many`], which cannot
    /// remove an older baseline's other commands: a store should replace the unit atomically.
    fn save_baseline(&self, key: &str, records: &[RecordJson<'_>]) -> Result<()> {
        let keys: Vec<String> = records
            .iter()
            .map(|r| keys::baseline_key(key, &r.command))
            .collect();
        let items: Vec<(&str, &str)> = keys
            .iter()
            .zip(records)
            .map(|(key, record)| (key.as_str(), record.json))
            .collect();
        self.save_many(&items)
    }
    /// The runs saved (since 0.2.1), of `incident` only when one is given, oldest first. The
    /// default reads every document under `run/`.
    fn list_runs(&self, incident: Option<&str>) -> Result<Vec<RunInfo>> {
        let keys = self.list("run/")?;
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let mut runs = Vec::new();
        for (key, text) in keys.iter().zip(self.get_many(&keys)?) {
            let Some(text) = text else { continue };
            let run: RunInfo = serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{key} is not a run: {e}"))?;
            if incident.is_none_or(|incident| run.incident.as_deref() == Some(incident)) {
                runs.push(run);
            }
        }
        runs.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(runs)
    }
}

/// The Diffy Analysis interface: tell which hosts differ, and how.
pub trait Analysis: Send + Sync + 'static {
    /// Compare `input.records` (against `input.baseline` when the component declared
    /// [`Component::uses_baseline`]) and rank the hosts.
    fn run(&self, input: AnalysisInput, incident: Option<&str>) -> Result<Report>;
    // FUTURE: the new trait method, with its default implementation.
    /// Why `target` scored what it did in the last report (since 0.2.3). The default has
    /// nothing to add.
    fn explain(&self, target: &str) -> Result<String> {
        Ok(format!("no explanation for {target}"))
    }
    /// Start analysing a run incrementally (since 0.2.1): the host then feeds the records to the
    /// returned session in batches as they are collected, and asks it for the report at the end,
    /// so the analysis need not hold the fleet's raw output. The default, `None`, has this crate
    /// keep the records and call [`Analysis::run`] once with all of them.
    fn begin(
        &self,
        start: AnalysisStart,
        incident: Option<&str>,
    ) -> Result<Option<Box<dyn AnalysisSession>>> {
        let _ = (start, incident);
        Ok(None)
    }
}

/// One run of an incremental analysis (since 0.2.1), from [`Analysis::begin`].
pub trait AnalysisSession: Send + 'static {
    /// A batch of records: every record (one per command) of the targets it covers; a target
    /// comes in one batch only, and batches come in no particular order of targets.
    fn feed(&mut self, records: Vec<Record>) -> Result<()>;
    /// Every record was fed: the report.
    fn finish(self: Box<Self>) -> Result<Report>;
}

/// The host's services, given to every component at activation: logging into the host's
/// `tracing` output (shown with `-v`) and a progress bar the host draws on a terminal.
#[derive(Clone)]
pub struct Host {
    inner: Arc<HostBox>,
}

impl Host {
    pub(crate) fn new(inner: HostBox) -> Self {
        Host {
            inner: Arc::new(inner),
        }
    }

    /// Call a host service; `None` when it failed or this host lacks it (an older host), in which
    /// case the caller degrades.
    fn call(&self, service: &str, input: &impl Serialize) -> Option<RVec<u8>> {
        let input = serde_json::to_vec(input).ok()?;
        let mut output = RVec::new();
        let status = self.inner.call(
            RStr::from_str(service),
            RSlice::from_slice(&input),
            &mut output,
        );
        (status == CallStatus::OK).then_some(output)
    }

    fn log(&self, level: LogLevel, message: impl Display) {
        let message = message.to_string();
        self.call(services::LOG, &services::Log { level, message });
    }

    /// Log detail shown with `-vv`.
    pub fn debug(&self, message: impl Display) {
        self.log(LogLevel::Debug, message);
    }

    /// Log progress shown with `-v`.
    pub fn info(&self, message: impl Display) {
        self.log(LogLevel::Info, message);
    }

    /// Log something the user should see.
    pub fn warn(&self, message: impl Display) {
        self.log(LogLevel::Warn, message);
    }

    /// Log a failure the component recovered from.
    pub fn error(&self, message: impl Display) {
        self.log(LogLevel::Error, message);
    }

    /// A directory the plugin may keep state in (`<config dir>/data/<plugin name>`). It may not
    /// exist yet: create it before writing. Every host of the series answers this; should one
    /// fail to, the plugin gets a directory under the system's temporary directory.
    pub fn data_dir(&self) -> std::path::PathBuf {
        self.call(services::DATA_DIR, &Map::new())
            .and_then(|output| serde_json::from_slice::<services::DataDir>(&output).ok())
            .map(|dir| dir.path.into())
            .unwrap_or_else(|| std::env::temp_dir().join("diffy-plugin-data"))
    }

    /// Show a progress bar of `total` steps until the returned guard is dropped.
    pub fn progress(&self, total: u64, message: &str) -> Progress {
        let start = services::ProgressStart {
            total,
            message: message.to_string(),
        };
        self.call(services::PROGRESS_START, &start);
        Progress { host: self.clone() }
    }
}

/// A progress bar drawn by the host; it disappears when this guard is dropped.
pub struct Progress {
    host: Host,
}

impl Progress {
    /// Advance by `steps`.
    pub fn advance(&self, steps: u64) {
        let advance = services::ProgressAdvance { steps };
        self.host.call(services::PROGRESS_ADVANCE, &advance);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.host.call(services::PROGRESS_FINISH, &Map::new());
    }
}

/// What a component's constructor receives.
pub struct Activation {
    name: String,
    options: Map<String, Value>,
    host: Host,
}

impl Activation {
    pub(crate) fn new(name: String, options: Map<String, Value>, host: Host) -> Self {
        Activation {
            name,
            options,
            host,
        }
    }

    /// The component name being activated (a namespace or a slug).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The options, already checked by the host against the component's schema and completed with
    /// its defaults.
    pub fn options(&self) -> &Map<String, Value> {
        &self.options
    }

    /// The options as a typed struct (`#[derive(Deserialize)]`).
    pub fn options_as<T: DeserializeOwned>(&self) -> Result<T> {
        Ok(serde_json::from_value(Value::Object(self.options.clone()))?)
    }

    /// The host's services; keep a clone if the component logs or reports progress later.
    pub fn host(&self) -> &Host {
        &self.host
    }
}

type Factory<T> = Box<dyn Fn(Activation) -> Result<Box<T>> + Send + Sync>;

pub(crate) struct Registered<T: ?Sized> {
    pub(crate) name: String,
    pub(crate) make: Factory<T>,
}

/// A plugin's declaration: its manifest and a constructor for each component.
///
/// ```
/// use diffy_plugin_api::{CliCommand, Component, Plugin, Result};
///
/// struct Hello;
/// impl CliCommand for Hello {
///     fn run(&self, args: Vec<String>) -> Result<i32> {
///         println!("hello {}", args.join(" "));
///         Ok(0)
///     }
/// }
///
/// fn plugin() -> Plugin {
///     Plugin::new("diffy-hello", "0.1.0")
///         .description("Says hello")
///         .cli_command(Component::named("hello", "Say hello"), |_| Ok(Hello))
/// }
/// # assert!(plugin().manifest().validate().is_ok());
/// ```
pub struct Plugin {
    manifest: Manifest,
    pub(crate) cli_commands: Vec<Registered<dyn CliCommand>>,
    pub(crate) targets: Vec<Registered<dyn Target>>,
    pub(crate) payloads: Vec<Registered<dyn Payload>>,
    pub(crate) collections: Vec<Registered<dyn Collection>>,
    pub(crate) persistences: Vec<Registered<dyn Persistence>>,
    pub(crate) analyses: Vec<Registered<dyn Analysis>>,
}

macro_rules! register_methods {
    ($($(#[$doc:meta])* $method:ident: $field:ident, $trait:ident, $kind:ident;)*) => {$(
        $(#[$doc])*
        pub fn $method<C, F>(mut self, component: Component, make: F) -> Self
        where
            C: $trait,
            F: Fn(Activation) -> Result<C> + Send + Sync + 'static,
        {
            let methods = methods_of(ComponentKind::$kind).map(|m| m.name.to_string()).collect();
            let component = Component { kind: ComponentKind::$kind, methods, ..component };
            self.$field.push(Registered {
                name: component.name.clone(),
                make: Box::new(move |activation| Ok(Box::new(make(activation)?))),
            });
            self.manifest.components.push(component);
            self
        }
    )*};
}

impl Plugin {
    /// Declare a plugin. `name` must start with `diffy-` or `diffy_`; pass
    /// `env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION")` to keep it in step with `Cargo.toml`.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Plugin {
            manifest: Manifest::new(name, version),
            cli_commands: Vec::new(),
            targets: Vec::new(),
            payloads: Vec::new(),
            collections: Vec::new(),
            persistences: Vec::new(),
            analyses: Vec::new(),
        }
    }

    /// One line saying what the plugin is for.
    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.manifest.description = text.into();
        self
    }

    /// Who wrote the plugin.
    pub fn author(mut self, author: impl Into<String>) -> Self {
        self.manifest.author = author.into();
        self
    }

    /// Where to find the author or project.
    pub fn author_url(mut self, url: impl Into<String>) -> Self {
        self.manifest.author_url = url.into();
        self
    }

    /// The plugin's license (an SPDX expression).
    pub fn license(mut self, license: impl Into<String>) -> Self {
        self.manifest.license = license.into();
        self
    }

    /// The `diffy` versions the plugin supports (a semver requirement). The default accepts every
    /// host of the same API series as this crate.
    pub fn host_requirement(mut self, requirement: impl Into<String>) -> Self {
        self.manifest.host_requirement = requirement.into();
        self
    }

    /// Declare a permission the plugin needs when it runs isolated in diffy's sandbox (network
    /// access, spawning processes, reading the whole filesystem). An isolated plugin gets exactly
    /// the permissions it declares; `diffy plugin install` and `diffy plugin info` show them.
    pub fn permission(mut self, permission: Permission) -> Self {
        if !self.manifest.permissions.contains(&permission) {
            self.manifest.permissions.push(permission);
        }
        self
    }

    /// The manifest built so far.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    register_methods! {
        /// Register a CLI namespace (`diffy <name> …`); `make` runs only when the namespace is used.
        cli_command: cli_commands, CliCommand, CliCommand;
        /// Register a Target component under its slug.
        target: targets, Target, Target;
        /// Register a Payload component under its slug.
        payload: payloads, Payload, Payload;
        /// Register a Collection component under its slug.
        collection: collections, Collection, Collection;
        /// Register a Persistence component under its slug.
        persistence: persistences, Persistence, Persistence;
        /// Register an Analysis component under its slug.
        analysis: analyses, Analysis, Analysis;
    }
}
