//! `diffy-core`: everything `diffy` does, as a library with no terminal: the plugin registry, the
//! loader, lazy activation, the plugin manager and Diffy's baseline and analysis jobs. The `diffy`
//! binary (crate `diffy`, in `host/`) parses the command line, calls in here and prints; plugin
//! authors' tests call in here through `diffy-plugin-harness`.
//!
//! Layers, from the bottom up: [`config`] (where files live), [`registry`] (`plugins.json`),
//! [`loader`] (the only module with `unsafe` and FFI: opening libraries, calling plugins),
//! [`manifest_cache`] and [`catalog`] (what is known without opening libraries), [`activation`]
//! (load and activate only what a command needs), [`install`] (the plugin manager's operations),
//! [`package`] (plugin archives) and [`scaffold`] (new plugin crates) for plugin authors, and
//! [`workflow`] (Diffy's baseline and analysis jobs). Nothing here parses argv or prints; the
//! `diffy` binary does that.

pub mod activation;
pub mod archive;
pub mod cargo;
pub mod catalog;
pub mod component;
pub mod config;
pub mod error;
pub mod files;
pub mod inspect;
pub mod install;
pub mod isolation;
pub mod known;
// The one module of the host that opens libraries and crosses the FFI boundary.
#[allow(unsafe_code)]
pub mod loader;
pub mod manifest_cache;
pub mod package;
pub mod processes;
pub mod progress;
pub mod records;
pub mod registry;
pub mod scaffold;
pub mod services;
pub mod workflow;

pub use error::{Error, Result};
