//! The manifest decoder, validator and option resolver must never panic, whatever a plugin (or a
//! corrupted cache) hands them.
#![no_main]

use diffy_plugin_api::Manifest;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

fuzz_target!(|data: &[u8]| {
    let Ok(manifest) = serde_json::from_slice::<Manifest>(data) else {
        return;
    };
    if manifest.validate().is_err() {
        return;
    }
    let given: Map<String, Value> = serde_json::from_slice(data).unwrap_or_default();
    for component in &manifest.components {
        let _ = component.resolve_options(&given);
        for option in &component.options {
            let _ = option.parse_cli_value("1");
            let _ = option.parse_cli_value("[\"x\"]");
        }
    }
});
