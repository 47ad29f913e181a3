//! `diffy-plugin-api`: the one crate a [diffy](https://example.invalid/diffy) plugin depends on.
//!
//! A plugin is a `cdylib` that implements plain Rust traits — [`CliCommand`] for a command-line
//! namespace, and [`Target`], [`Payload`], [`Collection`], [`Persistence`] and [`Analysis`] for the
//! five Diffy interfaces — declares them in a [`Plugin`], and exports that declaration with
//! [`export_plugin!`]. The stable ABI ([`ffi`], built on `abi_stable`), JSON encoding across the
//! boundary and panic catching stay out of sight.
//!
//! # Lifecycle
//!
//! The host knows a plugin from its cached [`Manifest`] without opening the library (`diffy help`,
//! `diffy plugin list`). It *loads* the library only when one of its components is needed, and
//! *activates* only that component: your constructor runs then, never at load time. Keep
//! [`Plugin`] construction cheap and free of side effects; do heavy work in the constructor or later.
//!
//! # A complete plugin
//!
//! `Cargo.toml`:
//!
//! ```toml
//! [package]
//! name = "diffy-hello"
//! version = "0.1.0"
//! edition = "2024"
//!
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! diffy-plugin-api = "0.2"
//! ```
//!
//! `src/lib.rs`:
//!
//! ```
//! use diffy_plugin_api::{
//!     Activation, Analysis, AnalysisInput, CliCommand, Component, CommandDiff, HostReport,
//!     OptionSpec, OptionType, Plugin, Report, Result,
//! };
//!
//! /// `diffy hello [NAME…]`
//! struct Hello;
//!
//! impl CliCommand for Hello {
//!     fn run(&self, args: Vec<String>) -> Result<i32> {
//!         if args.is_empty() {
//!             eprintln!("usage: diffy hello NAME…");
//!             return Ok(2);
//!         }
//!         println!("hello, {}", args.join(" and "));
//!         Ok(0)
//!     }
//! }
//!
//! /// An analysis that flags hosts whose output has more lines than `max_rows`.
//! struct TooLong {
//!     max_rows: usize,
//! }
//!
//! impl Analysis for TooLong {
//!     fn run(&self, input: AnalysisInput, _incident: Option<&str>) -> Result<Report> {
//!         let mut report = Report { analysis: "too-long".into(), ..Report::default() };
//!         for record in &input.records {
//!             let lines = record.stdout.lines().count();
//!             if lines > self.max_rows {
//!                 report.hosts.push(HostReport {
//!                     target: record.target.clone(),
//!                     score: (lines - self.max_rows) as f64,
//!                     commands: vec![CommandDiff {
//!                         command: record.command.clone(),
//!                         score: (lines - self.max_rows) as f64,
//!                         ..CommandDiff::default()
//!                     }],
//!                 });
//!             }
//!         }
//!         Ok(report)
//!     }
//! }
//!
//! fn plugin() -> Plugin {
//!     Plugin::new("diffy-hello", "0.1.0")
//!         .description("Greets people and flags long outputs")
//!         .author("Jane Doe")
//!         .license("MIT")
//!         .cli_command(
//!             Component::named("hello", "Greet people").usage("diffy hello NAME…"),
//!             |_activation| Ok(Hello),
//!         )
//!         .analysis(
//!             Component::named("too-long", "Flag outputs longer than a limit").option(
//!                 OptionSpec::new("max_rows", OptionType::Integer, "Rows allowed").default_value(100),
//!             ),
//!             |activation: Activation| {
//!                 let max_rows = activation.options()["max_rows"].as_u64().unwrap_or(100);
//!                 Ok(TooLong { max_rows: max_rows as usize })
//!             },
//!         )
//! }
//!
//! diffy_plugin_api::export_plugin!(plugin);
//! # fn main() { assert!(plugin().manifest().validate().is_ok()); }
//! ```
//!
//! Build it with `cargo build --release`, then `diffy plugin install target/release/libdiffy_hello.so`
//! and run `diffy hello world`.
//!
//! # Errors and panics
//!
//! Every method returns [`Result`]; an error reaches the user as one line naming your plugin and
//! component. A panic is caught inside your library and reported the same way (the host survives),
//! provided the crate keeps `panic = "unwind"`.
//!
//! # Compatibility
//!
//! A host loads plugins built against the same API series: the same major version, or for `0.x`
//! the same minor version ([`is_api_compatible`]), whichever release of the series is newer. The
//! part of the boundary abi_stable checks ([`ffi`]) never changes within a series; what grows —
//! component methods, document fields — travels as a method name and a JSON document
//! ([`protocol`]). A host calls only the methods a component's manifest lists, so an older plugin
//! keeps working in a newer host, and a newer plugin's new methods go unused in an older one.
//! A trait method added in a minor release has a default implementation: rebuilding is all it
//! takes to pick it up.

#![deny(missing_docs)]

mod author;
pub mod documents;
// The export layer and the FFI types it fills: the only places a plugin's `unsafe` lives.
#[allow(unsafe_code)]
mod export;
#[allow(unsafe_code)]
pub mod ffi;
pub mod keys;
pub mod manifest;
pub mod options;
pub mod protocol;
pub mod rows;

pub use anyhow;
pub use author::{
    Activation, Analysis, AnalysisSession, CliCommand, Collection, Host, Payload, Persistence,
    Plugin, Progress, Result, Target,
};
pub use documents::{
    AnalysisInput, AnalysisStart, ChangedRow, Command, CommandDiff, HostReport, Parser, RareRow,
    Record, RecordJson, RecordStatus, Report, Row, RunInfo, RunStatus, Table, TargetInfo,
};
pub use manifest::{
    Component, ComponentKind, Manifest, OptionSpec, OptionType, Permission, Subcommand,
};

/// The version of this crate a plugin is built against.
pub const API_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The first release of this API series. The frozen parts of the boundary ([`ffi`]) carry this
/// version for abi_stable's check, so every release of the series loads every other.
pub const ABI_SERIES: &str = "0.2.0";

/// The host requirement a plugin gets unless it declares its own: every `diffy` of this API series.
pub const DEFAULT_HOST_REQUIREMENT: &str = "^0.2";

/// Whether a plugin built against API `plugin` can be loaded by a host built against API `host`:
/// the same major version, or for `0.x` the same minor version.
pub fn is_api_compatible(plugin: &semver::Version, host: &semver::Version) -> bool {
    plugin.major == host.major && (host.major != 0 || plugin.minor == host.minor)
}

#[doc(hidden)]
pub mod __private {
    pub use crate::export::{API_VERSION_CSTR, PANIC_PROBE, PANIC_PROBE_MESSAGE, root_module};
    pub use abi_stable::library::{
        __call_root_module_loader, CheckTypeLayout, LibHeader, RootModuleResult,
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn root_module_symbol_matches_abi_stable() {
        assert_eq!(
            crate::ffi::ROOT_MODULE_SYMBOL,
            abi_stable::library::ROOT_MODULE_LOADER_NAME
        );
    }

    #[test]
    fn api_compatibility_follows_semver_series() {
        let v = |s| semver::Version::parse(s).unwrap();
        assert!(crate::is_api_compatible(&v("0.1.5"), &v("0.1.0")));
        assert!(!crate::is_api_compatible(&v("0.2.0"), &v("0.1.0")));
        assert!(crate::is_api_compatible(&v("1.4.0"), &v("1.2.0")));
        assert!(!crate::is_api_compatible(&v("2.0.0"), &v("1.2.0")));
    }
}
