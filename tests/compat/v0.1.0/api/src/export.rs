//! Turns a [`Plugin`] declaration into the root module a host loads: the `extern "C"` entry points,
//! adapters from the plain traits to the stable trait objects, and panic catching.
//!
//! Every function the host can call goes through [`guard`], so a panic in plugin code becomes an
//! [`FfiError`] with `panicked: true` instead of unwinding into the host (which would abort).

use std::any::Any;
use std::cell::RefCell;
use std::ffi::CStr;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Once, OnceLock};

use abi_stable::prefix_type::PrefixTypeTrait;
use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RErr, ROk, ROption, RStr, RString, RVec};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::author::{
    Activation, Analysis, CliCommand, Collection, Host, Payload, Persistence, Plugin, Registered,
    Result, Target,
};
use crate::documents::{AnalysisInput, Command, TargetInfo};
use crate::ffi::*;

static BUILD: OnceLock<fn() -> Plugin> = OnceLock::new();
static PLUGIN: OnceLock<Plugin> = OnceLock::new();
static PANIC_HOOK: Once = Once::new();

thread_local! {
    static PANIC_LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
    /// Set while the panic probe panics, so its deliberate panic is never printed.
    static PROBING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Called once by the root module loader that [`export_plugin!`](crate::export_plugin) generates.
#[doc(hidden)]
pub fn root_module(build: fn() -> Plugin) -> PluginModuleRef {
    let _ = BUILD.set(build);
    PluginModule {
        api_version,
        manifest,
        activate_cli_command,
        activate_target,
        activate_payload,
        activate_collection,
        activate_persistence,
        activate_analysis,
    }
    .leak_into_prefix()
}

/// The API version as a C string, for the pre-check symbol.
#[doc(hidden)]
pub const API_VERSION_CSTR: &CStr =
    match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
        Ok(version) => version,
        Err(_) => panic!("the crate version contains a NUL byte"),
    };

/// A component name no manifest can declare (names start with a lowercase letter). Activating it
/// panics inside the plugin on purpose, so `diffy-plugin-harness` can check that a panic in this
/// library comes back to the host as an error: that the library unwinds (`panic = "unwind"`) and
/// this crate's guard catches it. The `diffy` host never activates a name its manifest lacks.
#[doc(hidden)]
pub const PANIC_PROBE: &str = "__diffy_panic_probe";

/// The message of the probe's panic.
#[doc(hidden)]
pub const PANIC_PROBE_MESSAGE: &str = "deliberate panic of the diffy-plugin-harness panic probe";

fn panic_probe<T>() -> Result<T> {
    if cfg!(panic = "unwind") {
        PROBING.with(|p| p.set(true));
        panic!("{PANIC_PROBE_MESSAGE}");
    }
    anyhow::bail!(
        "this library is built with panic = \"abort\": a panic in it would abort diffy instead of \
         becoming an error; remove `panic = \"abort\"` from the crate's profiles"
    )
}

/// Run plugin code, turning an error or a panic into an [`FfiError`].
fn guard<T>(f: impl FnOnce() -> Result<T>) -> FfiResult<T> {
    install_panic_hook();
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(value)) => ROk(value),
        Ok(Err(error)) => RErr(FfiError {
            panicked: false,
            message: format!("{error:#}").into(),
        }),
        Err(payload) => RErr(FfiError {
            panicked: true,
            message: panic_message(payload).into(),
        }),
    }
}

/// Keep the plugin's own copy of std from printing panics on stderr: the host reports them in one
/// line. `RUST_BACKTRACE` brings the usual output back for debugging.
fn install_panic_hook() {
    PANIC_HOOK.call_once(|| {
        let default_hook = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let location = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()));
            PANIC_LOCATION.with(|cell| *cell.borrow_mut() = location);
            let probing = PROBING.with(|p| p.replace(false));
            if std::env::var_os("RUST_BACKTRACE").is_some() && !probing {
                default_hook(info);
            }
        }));
    });
}

fn panic_message(payload: Box<dyn Any + Send>) -> String {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with a non-string payload".to_string());
    match PANIC_LOCATION.with(|cell| cell.borrow_mut().take()) {
        Some(location) => format!("{message} (at {location})"),
        None => message,
    }
}

fn plugin() -> Result<&'static Plugin> {
    if let Some(plugin) = PLUGIN.get() {
        return Ok(plugin);
    }
    let build = BUILD
        .get()
        .ok_or_else(|| anyhow::anyhow!("the plugin's root module was not initialised"))?;
    Ok(PLUGIN.get_or_init(build))
}

fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<RString> {
    Ok(serde_json::to_string(value)?.into())
}

fn from_json<T: DeserializeOwned>(what: &str, text: RStr<'_>) -> Result<T> {
    serde_json::from_str(text.as_str())
        .map_err(|e| anyhow::anyhow!("the host sent malformed {what}: {e}"))
}

fn incident_of<'a>(incident: &'a ROption<RStr<'_>>) -> Option<&'a str> {
    incident.as_ref().map(|s| s.as_str()).into_option()
}

extern "C" fn api_version() -> RStr<'static> {
    RStr::from_str(crate::API_VERSION)
}

extern "C" fn manifest() -> FfiResult<RString> {
    guard(|| to_json(plugin()?.manifest()))
}

/// Find the registered component `name`, check its options and construct it.
fn activate<T: ?Sized>(
    registered: &[Registered<T>],
    kind: &str,
    name: RStr<'_>,
    host: HostBox,
    options: RStr<'_>,
) -> Result<Box<T>> {
    if name.as_str() == PANIC_PROBE {
        return panic_probe();
    }
    let Some(entry) = registered.iter().find(|r| r.name == name.as_str()) else {
        anyhow::bail!("this plugin has no {kind} named {:?}", name.as_str());
    };
    let options: Map<String, Value> = if options.is_empty() {
        Map::new()
    } else {
        from_json("options", options)?
    };
    (entry.make)(Activation::new(
        name.as_str().to_string(),
        options,
        Host::new(host),
    ))
}

struct CliAdapter(Box<dyn CliCommand>);
struct TargetAdapter(Box<dyn Target>);
struct PayloadAdapter(Box<dyn Payload>);
struct CollectionAdapter(Box<dyn Collection>);
struct PersistenceAdapter(Box<dyn Persistence>);
struct AnalysisAdapter(Box<dyn Analysis>);

macro_rules! activation_fn {
    ($fn_name:ident, $field:ident, $kind:literal, $boxed:ty, $adapter:ident, $to:ident) => {
        extern "C" fn $fn_name(
            name: RStr<'_>,
            host: HostBox,
            options: RStr<'_>,
        ) -> FfiResult<$boxed> {
            guard(|| {
                let component = activate(&plugin()?.$field, $kind, name, host, options)?;
                Ok($to::from_value($adapter(component), TD_Opaque))
            })
        }
    };
}

activation_fn!(
    activate_cli_command,
    cli_commands,
    "cli_command",
    CliCommandBox,
    CliAdapter,
    CliCommandFfi_TO
);
activation_fn!(
    activate_target,
    targets,
    "target",
    TargetBox,
    TargetAdapter,
    TargetFfi_TO
);
activation_fn!(
    activate_payload,
    payloads,
    "payload",
    PayloadBox,
    PayloadAdapter,
    PayloadFfi_TO
);
activation_fn!(
    activate_collection,
    collections,
    "collection",
    CollectionBox,
    CollectionAdapter,
    CollectionFfi_TO
);
activation_fn!(
    activate_persistence,
    persistences,
    "persistence",
    PersistenceBox,
    PersistenceAdapter,
    PersistenceFfi_TO
);
activation_fn!(
    activate_analysis,
    analyses,
    "analysis",
    AnalysisBox,
    AnalysisAdapter,
    AnalysisFfi_TO
);

impl CliCommandFfi for CliAdapter {
    fn run(&self, args: RVec<RString>) -> FfiResult<i32> {
        guard(|| self.0.run(args.into_iter().map(String::from).collect()))
    }
}

impl TargetFfi for TargetAdapter {
    fn get(&self, key: RStr<'_>, incident: ROption<RStr<'_>>) -> FfiResult<RString> {
        guard(|| to_json(&self.0.get(key.as_str(), incident_of(&incident))?))
    }
}

impl PayloadFfi for PayloadAdapter {
    fn generate(&self, incident: ROption<RStr<'_>>) -> FfiResult<RString> {
        guard(|| to_json(&self.0.generate(incident_of(&incident))?))
    }
}

impl CollectionFfi for CollectionAdapter {
    fn get(
        &self,
        targets: RStr<'_>,
        commands: RStr<'_>,
        incident: ROption<RStr<'_>>,
    ) -> FfiResult<RString> {
        guard(|| {
            let targets: Vec<TargetInfo> = from_json("targets", targets)?;
            let commands: Vec<Command> = from_json("commands", commands)?;
            to_json(&self.0.get(&targets, &commands, incident_of(&incident))?)
        })
    }
}

impl PersistenceFfi for PersistenceAdapter {
    fn get(&self, key: RStr<'_>) -> FfiResult<ROption<RString>> {
        guard(|| Ok(self.0.get(key.as_str())?.map(RString::from).into()))
    }

    fn save(&self, key: RStr<'_>, document: RStr<'_>) -> FfiResult<()> {
        guard(|| self.0.save(key.as_str(), document.as_str()))
    }

    fn list(&self, prefix: RStr<'_>) -> FfiResult<RString> {
        guard(|| to_json(&self.0.list(prefix.as_str())?))
    }
}

impl AnalysisFfi for AnalysisAdapter {
    fn run(&self, input: RStr<'_>, incident: ROption<RStr<'_>>) -> FfiResult<RString> {
        guard(|| {
            let input: AnalysisInput = from_json("analysis input", input)?;
            to_json(&self.0.run(input, incident_of(&incident))?)
        })
    }
}

/// Declare the plugin this library exports.
///
/// Pass a function that builds the [`Plugin`](crate::Plugin). The macro exports the abi_stable root
/// module and the plain C symbol `diffy_plugin_api_version` that the host checks first. The crate
/// must be built as a `cdylib` with `panic = "unwind"` (the default) so panics can be caught.
///
/// ```ignore
/// fn plugin() -> diffy_plugin_api::Plugin { /* … */ }
/// diffy_plugin_api::export_plugin!(plugin);
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($build:path) => {
        const _: () = {
            fn __diffy_build() -> $crate::Plugin {
                $build()
            }

            extern "C" fn __diffy_root_module() -> $crate::__private::RootModuleResult {
                $crate::__private::__call_root_module_loader(|| {
                    $crate::__private::root_module(__diffy_build)
                })
            }

            /// The abi_stable library header (what `#[export_root_module]` would generate).
            #[unsafe(export_name = "_1as_0lib_1header_0root_bmodule_bloader")]
            pub static __DIFFY_LIB_HEADER: $crate::__private::LibHeader = {
                // SAFETY: `__diffy_root_module` returns the root module of type `PluginModuleRef`,
                // the type the header is declared with, as `from_constructor` requires.
                unsafe {
                    $crate::__private::LibHeader::from_constructor::<$crate::ffi::PluginModuleRef>(
                        __diffy_root_module,
                        $crate::__private::CheckTypeLayout::Yes,
                    )
                }
            };

            /// The `diffy-plugin-api` version, for the host's pre-check before abi_stable loads.
            #[unsafe(no_mangle)]
            pub extern "C" fn diffy_plugin_api_version() -> *const ::std::ffi::c_char {
                $crate::__private::API_VERSION_CSTR.as_ptr()
            }
        };
    };
}
