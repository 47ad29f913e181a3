//! The stable ABI between the `diffy` host and a plugin library: the part abi_stable checks, kept
//! small and frozen for a whole API series.
//!
//! Plugin authors never touch this module: [`export_plugin!`](crate::export_plugin) builds the root
//! module from the plain traits of this crate. It is public because the host's loader needs it.
//!
//! Three types cross the boundary, and none of them changes within a series:
//!
//! - [`PluginModule`], the root module: `api_version`, `manifest` and `activate`.
//! - [`ComponentFfi`], an activated component: one method, `call(method, input, output)`.
//!   Dropping the object releases the component (abi_stable runs the plugin's destructor).
//! - [`HostFfi`], the host's services as a component sees them: the same single `call`, the
//!   other way.
//!
//! Everything that grows — methods, component kinds, document fields, host services — travels as
//! a method name (a string) and a JSON document (bytes), which abi_stable never sees. This is
//! deliberate: abi_stable accepts a library whose prefix types have *more* fields than the host
//! expects, never fewer, so appending a root-module field or a trait-object method would make a
//! newer host refuse every plugin built before it (abi_stable issue #118). See the crate's
//! [`protocol`](crate::protocol) for the methods and `docs/abi.md` in the diffy repository for the
//! policy.

// The `#[sabi_trait]` expansion defines impls inside a const item; rustc >= 1.95 warns about that.
#![allow(non_local_definitions)]

use abi_stable::{
    StableAbi, declare_root_module_statics,
    library::RootModule,
    sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RBox, RResult, RSlice, RStr, RString, RVec},
};

/// How a call ended. A plain number rather than an enum so that a newer release can add outcomes
/// without a layout change; a reader treats an outcome it does not know as an error.
#[repr(transparent)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallStatus(pub u8);

impl CallStatus {
    /// The call succeeded; the output holds its JSON document (empty for "nothing").
    pub const OK: CallStatus = CallStatus(0);
    /// The callee returned an error; the output holds its one-line message.
    pub const ERROR: CallStatus = CallStatus(1);
    /// The callee panicked (the panic was caught on its side); the output holds the message.
    pub const PANICKED: CallStatus = CallStatus(2);
    /// The callee does not know the method; the output holds a message naming it.
    pub const NO_SUCH_METHOD: CallStatus = CallStatus(3);
}

/// An error from `manifest` or `activate`.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct FfiError {
    /// [`CallStatus::ERROR`] or [`CallStatus::PANICKED`] (or a later outcome).
    pub status: CallStatus,
    /// The message (for a panic, its payload and location).
    pub message: RString,
}

/// An activated component: the plugin's side of a handle.
#[sabi_trait]
pub trait ComponentFfi: Send + Sync {
    /// Call `method` with the JSON document `input` (empty means "no arguments"), writing the
    /// answer into `output`: its JSON document when the status is [`CallStatus::OK`], else a
    /// one-line message. The host only calls methods the component's manifest lists.
    #[sabi(last_prefix_field)]
    fn call(&self, method: RStr<'_>, input: RSlice<'_, u8>, output: &mut RVec<u8>) -> CallStatus;
}

/// The host's services, the host's side of the same contract: a component calls a service by
/// name with a JSON document (see [`protocol::services`](crate::protocol::services)).
#[sabi_trait]
pub trait HostFfi: Send + Sync {
    /// Call host service `service` with `input`, writing the answer into `output`, exactly as
    /// [`ComponentFfi::call`]. [`CallStatus::NO_SUCH_METHOD`] means this host lacks the service.
    #[sabi(last_prefix_field)]
    fn call(&self, service: RStr<'_>, input: RSlice<'_, u8>, output: &mut RVec<u8>) -> CallStatus;
}

/// An activated component, owned by the host; dropping it releases the component.
pub type ComponentBox = ComponentFfi_TO<'static, RBox<()>>;

/// The host's services, as handed to a component at activation.
pub type HostBox = HostFfi_TO<'static, RBox<()>>;

/// The root module every plugin library exports. Frozen for the whole API series: a field added
/// here would make every host of the series that has it refuse every plugin built before it.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModuleRef)))]
#[sabi(missing_field(panic))]
pub struct PluginModule {
    /// The `diffy-plugin-api` version the library was built against.
    pub api_version: extern "C" fn() -> RStr<'static>,
    /// The plugin's manifest as JSON. Cheap and free of side effects.
    pub manifest: extern "C" fn() -> RResult<RString, FfiError>,
    /// Construct the component of `kind` (`cli_command`, `analysis`, …) named `name`, with the
    /// host's services and its options (a JSON object the host has checked against the
    /// component's schema and completed with its defaults).
    #[sabi(last_prefix_field)]
    pub activate: extern "C" fn(
        kind: RStr<'_>,
        name: RStr<'_>,
        host: HostBox,
        options: RSlice<'_, u8>,
    ) -> RResult<ComponentBox, FfiError>,
}

impl RootModule for PluginModuleRef {
    declare_root_module_statics! {PluginModuleRef}
    const BASE_NAME: &'static str = "diffy_plugin";
    const NAME: &'static str = "diffy_plugin";
    /// The series, not this release: abi_stable refuses a library whose root module claims an
    /// older minor version (for `0.x`) than the host's, and every release of a series must load.
    const VERSION_STRINGS: VersionStrings = VersionStrings::new(crate::ABI_SERIES);
}

/// The name of the plain C function every plugin exports for the host's pre-check. It returns a
/// pointer to a NUL-terminated string: the `diffy-plugin-api` version the library was built with.
pub const API_VERSION_SYMBOL: &str = "diffy_plugin_api_version";

/// The symbol abi_stable looks up for the root module (`abi_stable::library::ROOT_MODULE_LOADER_NAME`),
/// spelled out because `#[export_name]` needs a literal; a test keeps the two equal.
pub const ROOT_MODULE_SYMBOL: &str = "_1as_0lib_1header_0root_bmodule_bloader";
