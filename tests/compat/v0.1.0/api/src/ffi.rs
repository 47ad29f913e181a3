//! The stable ABI between the `diffy` host and a plugin library.
//!
//! Plugin authors never touch this module: [`export_plugin!`](crate::export_plugin) builds the root
//! module from the plain traits of this crate. It is public because the host's loader needs it.
//!
//! Compatibility rules:
//! - [`PluginModule`] is an abi_stable *prefix type*: a later minor version of this crate may append
//!   fields after the last one, and a host reads an appended field only through its optional accessor.
//! - Every trait object ends with `#[sabi(last_prefix_field)]` on its last method, so methods can be
//!   appended the same way.
//! - Documents cross the boundary as JSON text, so their shapes can grow new optional fields without
//!   any change to the layout checked here.

// The `#[sabi_trait]` expansion defines impls inside a const item; rustc >= 1.95 warns about that.
#![allow(non_local_definitions)]

use abi_stable::{
    StableAbi, declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RBox, ROption, RResult, RStr, RString, RVec},
};

/// An error returned across the boundary.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct FfiError {
    /// True when the plugin function panicked (the panic was caught inside the plugin).
    pub panicked: bool,
    /// The error message (for a panic, its payload and location).
    pub message: RString,
}

/// The result of every fallible plugin function.
pub type FfiResult<T> = RResult<T, FfiError>;

/// Severity of a message a plugin logs through [`HostFfi::log`].
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Fine-grained detail (`-vv`).
    Debug,
    /// Progress worth seeing with `-v`.
    Info,
    /// Something the user should see.
    Warn,
    /// A failure the plugin recovered from.
    Error,
}

/// Services the host offers to every activated component: logging and progress reporting.
#[sabi_trait]
pub trait HostFfi: Send + Sync {
    /// Record a log message under the plugin's name in the host's `tracing` output.
    fn log(&self, level: LogLevel, message: RStr<'_>);
    /// A directory the plugin may keep state in (`<config dir>/data/<plugin name>`); the plugin
    /// creates it when it first writes there.
    fn data_dir(&self) -> RString;
    /// Start (or restart) a progress bar with `total` steps; the host draws it only on a terminal.
    fn progress_start(&self, total: u64, message: RStr<'_>);
    /// Advance the progress bar by `steps`.
    fn progress_advance(&self, steps: u64);
    /// Finish and clear the progress bar.
    #[sabi(last_prefix_field)]
    fn progress_finish(&self);
}

/// An owned host services object, as handed to a plugin at activation.
pub type HostBox = HostFfi_TO<'static, RBox<()>>;

/// A CLI namespace such as `diffy sweeten …`.
#[sabi_trait]
pub trait CliCommandFfi: Send + Sync {
    /// Run with the arguments that followed the namespace; returns the process exit code.
    #[sabi(last_prefix_field)]
    fn run(&self, args: RVec<RString>) -> FfiResult<i32>;
}

/// Finds targets (hosts) for a key. JSON out: an array of `Target` documents.
#[sabi_trait]
pub trait TargetFfi: Send + Sync {
    /// Resolve `key` into targets.
    #[sabi(last_prefix_field)]
    fn get(&self, key: RStr<'_>, incident: ROption<RStr<'_>>) -> FfiResult<RString>;
}

/// Generates the commands to collect. JSON out: an array of `Command` documents.
#[sabi_trait]
pub trait PayloadFfi: Send + Sync {
    /// Produce the commands for an incident.
    #[sabi(last_prefix_field)]
    fn generate(&self, incident: ROption<RStr<'_>>) -> FfiResult<RString>;
}

/// Runs commands on targets. JSON in: targets and commands arrays; JSON out: an array of records.
#[sabi_trait]
pub trait CollectionFfi: Send + Sync {
    /// Collect one record per target and command.
    #[sabi(last_prefix_field)]
    fn get(
        &self,
        targets: RStr<'_>,
        commands: RStr<'_>,
        incident: ROption<RStr<'_>>,
    ) -> FfiResult<RString>;
}

/// Stores JSON documents under string keys.
#[sabi_trait]
pub trait PersistenceFfi: Send + Sync {
    /// The document saved under `key`, if any.
    fn get(&self, key: RStr<'_>) -> FfiResult<ROption<RString>>;
    /// Save `document` (JSON text) under `key`, replacing what was there.
    fn save(&self, key: RStr<'_>, document: RStr<'_>) -> FfiResult<()>;
    /// Every key that starts with `prefix`, sorted. JSON out: an array of strings.
    #[sabi(last_prefix_field)]
    fn list(&self, prefix: RStr<'_>) -> FfiResult<RString>;
}

/// Compares records. JSON in: an `AnalysisInput`; JSON out: a `Report`.
#[sabi_trait]
pub trait AnalysisFfi: Send + Sync {
    /// Analyse the collected records (and the baseline, when the analysis uses one).
    #[sabi(last_prefix_field)]
    fn run(&self, input: RStr<'_>, incident: ROption<RStr<'_>>) -> FfiResult<RString>;
}

/// An activated CLI command.
pub type CliCommandBox = CliCommandFfi_TO<'static, RBox<()>>;
/// An activated target component.
pub type TargetBox = TargetFfi_TO<'static, RBox<()>>;
/// An activated payload component.
pub type PayloadBox = PayloadFfi_TO<'static, RBox<()>>;
/// An activated collection component.
pub type CollectionBox = CollectionFfi_TO<'static, RBox<()>>;
/// An activated persistence component.
pub type PersistenceBox = PersistenceFfi_TO<'static, RBox<()>>;
/// An activated analysis component.
pub type AnalysisBox = AnalysisFfi_TO<'static, RBox<()>>;

/// The root module every plugin library exports.
///
/// Each `activate_*` function takes the component name, the host services and the component's
/// options (a JSON object the host has already checked against the component's schema).
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModuleRef)))]
#[sabi(missing_field(panic))]
pub struct PluginModule {
    /// The `diffy-plugin-api` version the library was built against.
    pub api_version: extern "C" fn() -> RStr<'static>,
    /// The plugin's manifest as JSON. Cheap and free of side effects.
    pub manifest: extern "C" fn() -> FfiResult<RString>,
    /// Construct the named CLI command.
    pub activate_cli_command:
        extern "C" fn(RStr<'_>, HostBox, RStr<'_>) -> FfiResult<CliCommandBox>,
    /// Construct the named target component.
    pub activate_target: extern "C" fn(RStr<'_>, HostBox, RStr<'_>) -> FfiResult<TargetBox>,
    /// Construct the named payload component.
    pub activate_payload: extern "C" fn(RStr<'_>, HostBox, RStr<'_>) -> FfiResult<PayloadBox>,
    /// Construct the named collection component.
    pub activate_collection: extern "C" fn(RStr<'_>, HostBox, RStr<'_>) -> FfiResult<CollectionBox>,
    /// Construct the named persistence component.
    pub activate_persistence:
        extern "C" fn(RStr<'_>, HostBox, RStr<'_>) -> FfiResult<PersistenceBox>,
    /// Construct the named analysis component.
    #[sabi(last_prefix_field)]
    pub activate_analysis: extern "C" fn(RStr<'_>, HostBox, RStr<'_>) -> FfiResult<AnalysisBox>,
}

impl RootModule for PluginModuleRef {
    declare_root_module_statics! {PluginModuleRef}
    const BASE_NAME: &'static str = "diffy_plugin";
    const NAME: &'static str = "diffy_plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// The name of the plain C function every plugin exports for the host's pre-check. It returns a
/// pointer to a NUL-terminated string: the `diffy-plugin-api` version the library was built with.
pub const API_VERSION_SYMBOL: &str = "diffy_plugin_api_version";

/// The symbol abi_stable looks up for the root module (`abi_stable::library::ROOT_MODULE_LOADER_NAME`),
/// spelled out because `#[export_name]` needs a literal; a test keeps the two equal.
pub const ROOT_MODULE_SYMBOL: &str = "_1as_0lib_1header_0root_bmodule_bloader";
