//! `diffy show`: read back what the jobs saved.

use diffy_core::Result;
use diffy_core::config::Settings;
use diffy_core::error::Error;
use diffy_core::workflow;
use diffy_plugin_api::Report;

use super::report;
use crate::cli::{Format, ShowArgs};
use crate::output::{out, outln};
use crate::printable::{printable, printable_json};

/// Run `diffy show`.
pub fn run(settings: &Settings, args: ShowArgs) -> Result<u8> {
    let mut activator = super::activator(settings);
    let persistence =
        workflow::open_persistence(&mut activator, &args.persistence_plugin, &args.options)?;
    let Some(key) = args.key else {
        let keys = persistence.list(args.prefix.as_deref().unwrap_or(""))?;
        return print_keys(&keys, args.format);
    };
    // A key ending in `/` is a prefix, which no document is saved under.
    let document = match key.ends_with('/') {
        true => None,
        false => persistence.get(&key)?,
    };
    let Some(document) = document else {
        // A key's first segments (`baseline/localhost`) name the documents beneath them.
        let beneath = persistence.list(&format!("{}/", key.trim_end_matches('/')))?;
        if beneath.is_empty() {
            return Err(Error::Usage(format!(
                "nothing is saved under {key:?}; run 'diffy show' to list the keys"
            )));
        }
        return print_keys(&beneath, args.format);
    };
    let report = key
        .starts_with("report/")
        .then(|| serde_json::from_str::<Report>(&document).ok())
        .flatten();
    match (args.format, report) {
        (Format::Table, Some(report)) => out!("{}", report::render(&report, args.max_rows)),
        (format, _) => {
            let value: serde_json::Value = serde_json::from_str(&document).map_err(|e| {
                Error::Failure(format!("the document under {key:?} is not JSON: {e}"))
            })?;
            let json = serde_json::to_string_pretty(&value).expect("JSON serialises");
            match format {
                Format::Json => outln!("{json}"),
                // For people, a record's output is JSON too, with nothing a terminal acts on.
                Format::Table => outln!("{}", printable_json(&json)),
            }
        }
    }
    Ok(0)
}

/// The saved keys, one a line (JSON: an array).
fn print_keys(keys: &[String], format: Format) -> Result<u8> {
    match format {
        Format::Json => outln!(
            "{}",
            serde_json::to_string_pretty(keys).expect("strings serialise")
        ),
        Format::Table => {
            for key in keys {
                outln!("{}", printable(key));
            }
        }
    }
    Ok(0)
}
