//! `diffy-plugin-harness`: test a diffy plugin from its own `cargo test`, through diffy's real
//! loader.
//!
//! Add it as a dev-dependency of the plugin crate, then in `tests/`:
//!
//! ```no_run
//! use diffy_plugin_api::{AnalysisInput, Command, Record, RecordStatus};
//! use diffy_plugin_harness::{Harness, expect_plugin_error, json};
//!
//! // Builds this crate's library (once per test process), installs it with `--link` into a fresh
//! // temporary diffy configuration directory and loads it as `diffy` would.
//! let harness = Harness::for_crate(env!("CARGO_MANIFEST_DIR"));
//!
//! // Valid manifest, every component activates, sound option schemas, panics become errors.
//! // Panics with a readable report if not.
//! harness.check_conformance();
//!
//! // A CLI namespace runs in-process and returns its exit code.
//! assert_eq!(harness.cli("hello", &["greet", "world"]), 0);
//!
//! // Interface components are activated with options (checked against their schema, defaults
//! // filled in) and called with the documents of `diffy-plugin-api`.
//! let analysis = harness.analysis("hello-watch", json!({ "words": ["miner"] })).unwrap();
//! let report = analysis
//!     .run(
//!         AnalysisInput {
//!             commands: vec![Command::new("processes", "ps -eo args")],
//!             records: vec![Record::new("web-1", "processes", RecordStatus::Ok, "miner\n".into())],
//!             baseline: None,
//!         },
//!         None,
//!     )
//!     .unwrap();
//! assert_eq!(report.hosts[0].target, "web-1");
//!
//! // An error (or a panic) in the plugin comes back as `diffy_core::Error::Plugin`.
//! let message = expect_plugin_error(|| harness.analysis("hello-watch", json!({ "words": [] })));
//! assert!(message.contains("hello-watch"));
//! ```
//!
//! # What it does
//!
//! [`Harness::for_crate`] runs `cargo build --lib` for the crate (with the profile the tests were
//! built with, so `cargo test --release` tests a release build) and finds the `cdylib` from cargo's
//! own report, so `CARGO_TARGET_DIR` and workspaces are respected. [`Harness::for_library`] takes a
//! library built some other way. Either way the library is registered as `diffy plugin install
//! --link` would (which checks its name, namespaces and API and host versions) in a temporary
//! configuration directory, with diffy's bundled plugins turned off, and loaded through
//! `diffy_core::activation` and `diffy_core::loader`: the same code, checks and error messages as the
//! `diffy` binary.
//!
//! Each `Harness` has its own configuration directory, so tests running in parallel do not share
//! plugin state (`Host::data_dir` is `<config dir>/data/<plugin>`). A library, once loaded, stays
//! loaded for the life of the test process (diffy never unloads libraries).
//!
//! Output a CLI command prints goes to the test process's stdout and stderr directly (the plugin
//! has its own copy of the standard library, so the test runner does not capture it). Assert on
//! exit codes and on the files the command leaves in [`Harness::data_dir`].

#![warn(missing_docs)]

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};

use diffy_core::activation::Activator;
use diffy_core::catalog::{Catalog, KnownPlugin};
use diffy_core::config::{Settings, library_file_name};
use diffy_core::install::{self, InstallOptions, InstallOutcome};
use diffy_core::services::HostServices;
use diffy_plugin_api::__private::{PANIC_PROBE, PANIC_PROBE_MESSAGE};
use diffy_plugin_api::{Component, ComponentKind, Manifest};
use serde_json::Map;
use tempfile::TempDir;

pub use diffy_core::Error;
pub use diffy_core::component::{
    AnalysisHandle, CliCommandHandle, CollectionHandle, PayloadHandle, PersistenceHandle,
    TargetHandle,
};
pub use serde_json::{Value, json};

/// A plugin library loaded through diffy's loader in a temporary configuration directory.
///
/// Build one per test with [`Harness::for_crate`]; the library is built only once per process.
pub struct Harness {
    crate_dir: Option<PathBuf>,
    library: PathBuf,
    manifest: Manifest,
    known: KnownPlugin,
    settings: Settings,
    activator: Mutex<Activator>,
    options: BTreeMap<String, Map<String, Value>>,
    // Last, so the directory outlives everything that may use it.
    config: TempDir,
}

impl fmt::Debug for Harness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Harness")
            .field("plugin", &self.manifest.name)
            .field("library", &self.library)
            .field("config_dir", &self.config.path())
            .finish_non_exhaustive()
    }
}

impl Harness {
    /// Build the plugin crate at `crate_dir` (pass `env!("CARGO_MANIFEST_DIR")`) and load its
    /// library. Panics with cargo's or diffy's message when the crate does not build or diffy
    /// refuses the library.
    pub fn for_crate(crate_dir: impl AsRef<Path>) -> Harness {
        Self::try_for_crate(crate_dir).unwrap_or_else(|e| panic!("{e}"))
    }

    /// As [`Harness::for_crate`], returning the reason instead of panicking.
    pub fn try_for_crate(crate_dir: impl AsRef<Path>) -> Result<Harness, String> {
        let crate_dir = crate_dir.as_ref();
        let library = build(crate_dir)?;
        let mut harness = Self::try_for_library(&library)?;
        harness.crate_dir = Some(crate_dir.to_path_buf());
        Ok(harness)
    }

    /// Load an already built plugin library. Panics with diffy's message when diffy refuses it.
    pub fn for_library(library: impl AsRef<Path>) -> Harness {
        Self::try_for_library(library).unwrap_or_else(|e| panic!("{e}"))
    }

    /// As [`Harness::for_library`], returning the reason instead of panicking.
    pub fn try_for_library(library: impl AsRef<Path>) -> Result<Harness, String> {
        let library = library.as_ref();
        let library = std::fs::canonicalize(library)
            .map_err(|e| format!("cannot find the plugin library {}: {e}", library.display()))?;
        let config = tempfile::Builder::new()
            .prefix("diffy-harness-")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary configuration directory: {e}"))?;
        let mut settings = Settings::resolve(Some(config.path().to_path_buf()))
            .map_err(|e| format!("cannot use {}: {e}", config.path().display()))?;
        settings.bundled_dir = None;
        settings.bundled_plugins = false;
        settings.user_plugins = true;
        let options = InstallOptions {
            link: true,
            ..InstallOptions::default()
        };
        let name = match install::install(&settings, &library, options) {
            Ok(InstallOutcome::Linked { name, .. } | InstallOutcome::Unchanged { name, .. }) => {
                name
            }
            Ok(other) => return Err(format!("unexpected install outcome: {other:?}")),
            Err(e) => {
                return Err(format!(
                    "diffy refuses the plugin library {}: {e}",
                    library.display()
                ));
            }
        };
        let catalog = Catalog::build(&settings).map_err(|e| e.to_string())?;
        let known = catalog
            .get(&name)
            .cloned()
            .ok_or_else(|| format!("{name} was installed but is not in the catalog"))?;
        let mut activator = Activator::new(settings.clone());
        let loaded = activator.load(&known).map_err(|e| e.to_string())?;
        let manifest = loaded.manifest.clone();
        Ok(Harness {
            crate_dir: None,
            library,
            manifest,
            known,
            settings,
            activator: Mutex::new(activator),
            options: BTreeMap::new(),
            config,
        })
    }

    /// Options to activate `component` with in [`Harness::conformance`] (a JSON object, checked
    /// against the component's schema; defaults fill the rest). Needed for components with
    /// required options. Panics if `options` is not an object.
    pub fn with_options(mut self, component: &str, options: Value) -> Harness {
        let Value::Object(options) = options else {
            panic!("the options of {component} must be a JSON object, not {options}");
        };
        self.options.insert(component.to_string(), options);
        self
    }

    /// The plugin's manifest, as the loaded library reported it.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The library under test.
    pub fn library(&self) -> &Path {
        &self.library
    }

    /// The temporary configuration directory (it holds `plugins.json`).
    pub fn config_dir(&self) -> &Path {
        self.config.path()
    }

    /// The plugin's data directory (`Host::data_dir` in the plugin); it may not exist yet.
    pub fn data_dir(&self) -> PathBuf {
        self.settings.data_dir(&self.manifest.name)
    }

    /// The settings the harness runs diffy's core with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    fn activator(&self) -> MutexGuard<'_, Activator> {
        self.activator.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Run `diffy <namespace> ARGS…` in-process and return its exit code. Panics if the namespace
    /// cannot be activated or the command returns an error; see [`Harness::try_cli`].
    pub fn cli(&self, namespace: &str, args: &[&str]) -> i32 {
        self.try_cli(namespace, args)
            .unwrap_or_else(|e| panic!("diffy {namespace} {}: {e}", args.join(" ")))
    }

    /// Run `diffy <namespace> ARGS…` in-process: its exit code, or the error diffy would print.
    pub fn try_cli(&self, namespace: &str, args: &[&str]) -> diffy_core::Result<i32> {
        let command = self.cli_command(namespace)?;
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        command.run(&args)
    }

    /// Activate the CLI namespace `namespace`.
    pub fn cli_command(&self, namespace: &str) -> diffy_core::Result<CliCommandHandle> {
        self.activator().cli_command(namespace)
    }

    /// Activate the Target component `slug` with `options` (a JSON object).
    pub fn target(&self, slug: &str, options: Value) -> diffy_core::Result<TargetHandle> {
        self.activator().activate_target(slug, &object(options)?)
    }

    /// Activate the Payload component `slug` with `options` (a JSON object).
    pub fn payload(&self, slug: &str, options: Value) -> diffy_core::Result<PayloadHandle> {
        self.activator().activate_payload(slug, &object(options)?)
    }

    /// Activate the Collection component `slug` with `options` (a JSON object).
    pub fn collection(&self, slug: &str, options: Value) -> diffy_core::Result<CollectionHandle> {
        self.activator()
            .activate_collection(slug, &object(options)?)
    }

    /// Activate the Persistence component `slug` with `options` (a JSON object).
    pub fn persistence(&self, slug: &str, options: Value) -> diffy_core::Result<PersistenceHandle> {
        self.activator()
            .activate_persistence(slug, &object(options)?)
    }

    /// Activate the Analysis component `slug` with `options` (a JSON object).
    pub fn analysis(&self, slug: &str, options: Value) -> diffy_core::Result<AnalysisHandle> {
        self.activator().activate_analysis(slug, &object(options)?)
    }

    /// Check the plugin against diffy's contract and panic with the report if it fails; returns
    /// the report (with any warnings) if it passes. See [`Harness::conformance`].
    pub fn check_conformance(&self) -> ConformanceReport {
        let report = self.conformance();
        if !report.passed() {
            panic!(
                "{} does not conform to diffy's plugin contract\n{report}",
                self.manifest.name
            );
        }
        report
    }

    /// Check the plugin against diffy's contract:
    ///
    /// - the manifest is valid (name, versions, host requirement, component names);
    /// - diffy accepts it for install (done when the harness was made);
    /// - every option schema is sound, and every required option is given (see
    ///   [`Harness::with_options`]);
    /// - every declared component activates, with its default options or those given;
    /// - an error, and a panic, inside the library come back to diffy as [`Error::Plugin`]
    ///   (the library must unwind on panic: never `panic = "abort"`).
    pub fn conformance(&self) -> ConformanceReport {
        let m = &self.manifest;
        let mut report = ConformanceReport {
            plugin: m.name.clone(),
            version: m.version.clone(),
            library: self.library.clone(),
            checks: Vec::new(),
            warnings: Vec::new(),
        };
        report.check(
            "the manifest is valid",
            m.validate().map(|()| {
                format!(
                    "{} {}, diffy-plugin-api {}",
                    m.name, m.version, m.api_version
                )
            }),
        );
        report.check(
            "diffy accepts it for install",
            Ok(format!(
                "name, namespaces and slugs free; supports diffy {}",
                m.host_requirement
            )),
        );
        self.metadata_warnings(&mut report);
        let schemas: Vec<String> = m
            .components
            .iter()
            .filter_map(|c| self.schema_fault(c, &mut report.warnings))
            .collect();
        report.check(
            "the option schemas are sound",
            if schemas.is_empty() {
                let count: usize = m.components.iter().map(|c| c.options.len()).sum();
                Ok(format!("{count} options"))
            } else {
                Err(schemas.join("; "))
            },
        );
        for component in &m.components {
            if component.kind == ComponentKind::Unknown {
                report.warnings.push(format!(
                    "component {:?} has a kind this diffy does not know; it is ignored",
                    component.name
                ));
                continue;
            }
            let outcome = self.activate(component);
            report.check(
                &format!("{} {} activates", component.kind, component.name),
                outcome,
            );
        }
        report.check(
            "an error in the plugin comes back as an error",
            self.error_probe(),
        );
        report.check(
            "a panic in the plugin comes back as an error",
            self.panic_probe(),
        );
        report
    }

    fn metadata_warnings(&self, report: &mut ConformanceReport) {
        let m = &self.manifest;
        if m.description.trim().is_empty() {
            report
                .warnings
                .push("the manifest has no description ('diffy plugin list' shows it)".into());
        }
        if m.license.trim().is_empty() {
            report
                .warnings
                .push("the manifest has no license (Plugin::license)".into());
        }
        if m.components.is_empty() {
            report
                .warnings
                .push("the plugin declares no components".into());
        }
        let file = self
            .library
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        if file != library_file_name(&m.name) {
            report.warnings.push(format!(
                "the library builds as {file}, but plugin {} installs as {}: name the crate \
                 after the plugin (Plugin::new(env!(\"CARGO_PKG_NAME\"), …))",
                m.name,
                library_file_name(&m.name)
            ));
        }
    }

    /// What is wrong with a component's schema beyond what the manifest's validation checks,
    /// including required options the test did not give.
    fn schema_fault(&self, component: &Component, warnings: &mut Vec<String>) -> Option<String> {
        let label = format!("{} {}", component.kind, component.name);
        if component.kind == ComponentKind::CliCommand && !component.options.is_empty() {
            warnings.push(format!(
                "{label} declares options, but CLI commands get none (they parse their own arguments)"
            ));
        }
        for option in &component.options {
            if option.required && option.default.is_some() {
                warnings.push(format!(
                    "{label}: option {:?} is required and has a default; the default is never used",
                    option.key
                ));
            }
            if option.description.trim().is_empty() {
                warnings.push(format!(
                    "{label}: option {:?} has no description ('diffy plugin info' shows it)",
                    option.key
                ));
            }
        }
        if component.kind == ComponentKind::CliCommand {
            return None;
        }
        let given = self
            .options
            .get(&component.name)
            .cloned()
            .unwrap_or_default();
        let missing: Vec<String> = component
            .options
            .iter()
            .filter(|o| o.required && o.default.is_none() && !given.contains_key(&o.key))
            .map(|o| format!("{} ({}: {})", o.key, o.value_type, o.description))
            .collect();
        if !missing.is_empty() {
            return Some(format!(
                "{label} has required options, so give them: Harness::with_options({:?}, \
                 json!({{ … }})) with {}",
                component.name,
                missing.join(", ")
            ));
        }
        component
            .resolve_options(&given)
            .err()
            .map(|e| format!("{label}: the options given are refused: {e}"))
    }

    fn activate(&self, component: &Component) -> Result<String, String> {
        let options = self
            .options
            .get(&component.name)
            .cloned()
            .unwrap_or_default();
        let shown = match component.kind {
            ComponentKind::CliCommand => String::new(),
            _ => component
                .resolve_options(&options)
                .ok()
                .filter(|o| !o.is_empty())
                .map(|o| format!("with options {}", Value::Object(o)))
                .unwrap_or_default(),
        };
        let name = component.name.as_str();
        let options = Value::Object(options);
        let result = match component.kind {
            ComponentKind::CliCommand => self.cli_command(name).map(drop),
            ComponentKind::Target => self.target(name, options).map(drop),
            ComponentKind::Payload => self.payload(name, options).map(drop),
            ComponentKind::Collection => self.collection(name, options).map(drop),
            ComponentKind::Persistence => self.persistence(name, options).map(drop),
            ComponentKind::Analysis => self.analysis(name, options).map(drop),
            ComponentKind::Unknown => Ok(()),
        };
        result.map(|()| shown).map_err(|e| e.to_string())
    }

    fn services(&self) -> HostServices {
        HostServices::new(&self.manifest.name, self.data_dir())
    }

    /// Ask the library for a component it does not have: its refusal must come back as an error.
    fn error_probe(&self) -> Result<String, String> {
        let loaded = self
            .activator()
            .load(&self.known)
            .map_err(|e| e.to_string())?;
        match loaded.activate(
            ComponentKind::CliCommand,
            "no-such-component",
            self.services(),
            &Map::new(),
        ) {
            Ok(_) => Err("the library activated a component it does not declare".into()),
            Err(Error::Plugin(message)) => Ok(message),
            Err(other) => Err(format!("not a plugin error: {other:?}")),
        }
    }

    /// Make the library panic on purpose (`diffy-plugin-api`'s panic probe): the panic must be
    /// caught inside it and come back as an error, which needs `panic = "unwind"`.
    fn panic_probe(&self) -> Result<String, String> {
        let loaded = self
            .activator()
            .load(&self.known)
            .map_err(|e| e.to_string())?;
        match loaded.activate(
            ComponentKind::CliCommand,
            PANIC_PROBE,
            self.services(),
            &Map::new(),
        ) {
            Ok(_) => Err("the panic probe activated instead of panicking".into()),
            Err(Error::Plugin(message))
                if message.contains("panicked") && message.contains(PANIC_PROBE_MESSAGE) =>
            {
                Ok(message)
            }
            Err(Error::Plugin(message)) => Err(message),
            Err(other) => Err(format!("not a plugin error: {other:?}")),
        }
    }
}

/// Turn a JSON value into an options object, or the usage error diffy would give.
fn object(options: Value) -> diffy_core::Result<Map<String, Value>> {
    match options {
        Value::Object(map) => Ok(map),
        Value::Null => Ok(Map::new()),
        other => Err(Error::Usage(format!(
            "component options must be a JSON object, not {other}"
        ))),
    }
}

/// Run `call` and return the message of the [`Error::Plugin`] it must fail with: the way an error
/// or a panic inside a plugin reaches diffy. Panics if the call succeeds or fails otherwise.
///
/// ```no_run
/// # use diffy_plugin_harness::{Harness, expect_plugin_error, json};
/// # let harness = Harness::for_crate(env!("CARGO_MANIFEST_DIR"));
/// let message = expect_plugin_error(|| harness.analysis("hello-watch", json!({ "words": [] })));
/// assert!(message.contains("needs at least one word"));
/// ```
pub fn expect_plugin_error<T>(call: impl FnOnce() -> diffy_core::Result<T>) -> String {
    match call() {
        Ok(_) => panic!("expected a plugin error, but the call succeeded"),
        Err(Error::Plugin(message)) => message,
        Err(other) => panic!("expected a plugin error (Error::Plugin), got {other:?}: {other}"),
    }
}

/// As [`expect_plugin_error`], and the error must come from a panic inside the plugin
/// (`plugin … panicked in …`). Returns the message, which holds the panic's message and location.
pub fn expect_plugin_panic<T>(call: impl FnOnce() -> diffy_core::Result<T>) -> String {
    let message = expect_plugin_error(call);
    assert!(
        message.contains(" panicked "),
        "expected a panic in the plugin, got another plugin error: {message}"
    );
    message
}

/// One conformance check and how it went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// `Ok(detail)` when it passed, `Err(reason)` when it failed.
    pub outcome: Result<String, String>,
}

/// The result of [`Harness::conformance`]: each check, and warnings that do not fail it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConformanceReport {
    /// The plugin's name.
    pub plugin: String,
    /// The plugin's version.
    pub version: String,
    /// The library checked.
    pub library: PathBuf,
    /// The checks, in the order they ran.
    pub checks: Vec<Check>,
    /// Things worth fixing that do not break the contract.
    pub warnings: Vec<String>,
}

impl ConformanceReport {
    fn check(&mut self, name: &str, outcome: Result<String, String>) {
        self.checks.push(Check {
            name: name.to_string(),
            outcome,
        });
    }

    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.outcome.is_ok())
    }

    /// The checks that failed.
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.outcome.is_err())
    }
}

impl fmt::Display for ConformanceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let failed = self.failures().count();
        writeln!(
            f,
            "conformance of {} {} ({}): {} passed, {failed} failed",
            self.plugin,
            self.version,
            self.library.display(),
            self.checks.len() - failed
        )?;
        for check in &self.checks {
            match &check.outcome {
                Ok(detail) if detail.is_empty() => writeln!(f, "  ok    {}", check.name)?,
                Ok(detail) => writeln!(f, "  ok    {}: {detail}", check.name)?,
                Err(reason) => writeln!(f, "  FAIL  {}: {reason}", check.name)?,
            }
        }
        for warning in &self.warnings {
            writeln!(f, "  warn  {warning}")?;
        }
        Ok(())
    }
}

/// Build the crate's library once per process and crate.
fn build(crate_dir: &Path) -> Result<PathBuf, String> {
    static BUILT: OnceLock<Mutex<HashMap<PathBuf, Result<PathBuf, String>>>> = OnceLock::new();
    let manifest_path = crate_dir.join("Cargo.toml");
    let manifest_path = std::fs::canonicalize(&manifest_path)
        .map_err(|e| format!("{} is not a crate: {e}", crate_dir.display()))?;
    let mut built = BUILT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(result) = built.get(&manifest_path) {
        return result.clone();
    }
    let result = cargo_build(&manifest_path);
    built.insert(manifest_path, result.clone());
    result
}

/// `cargo build --lib` with the profile the running tests were built with.
fn cargo_build(manifest_path: &Path) -> Result<PathBuf, String> {
    let profile = profile_args();
    let mut args: Vec<&str> = vec!["--quiet"];
    args.extend(profile.iter().map(String::as_str));
    diffy_core::cargo::build_cdylib(manifest_path, &args).map_err(|e| e.to_string())
}

/// The cargo profile flags matching the running test executable (`target/<profile>/deps/…`).
fn profile_args() -> Vec<String> {
    let exe = std::env::current_exe().ok();
    let deps = exe.as_deref().and_then(Path::parent);
    let profile = deps
        .filter(|d| d.file_name().is_some_and(|n| n == "deps"))
        .and_then(Path::parent)
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned());
    match profile.as_deref() {
        None | Some("debug") => Vec::new(),
        Some("release") => vec!["--release".into()],
        Some(other) => vec!["--profile".into(), other.into()],
    }
}
