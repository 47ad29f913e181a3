//! `diffy show`: read back what the jobs saved.

use comfy_table::ColumnConstraint;
use diffy_core::Result;
use diffy_core::config::Settings;
use diffy_core::error::Error;
use diffy_core::workflow;
use diffy_plugin_api::{Report, RunInfo};

use super::report;
use crate::cli::{Format, ShowArgs};
use crate::output::{out, outln};
use crate::printable::{printable, printable_json};
use crate::table::{add_row, new_table};

/// Run `diffy show`.
pub fn run(settings: &Settings, args: ShowArgs) -> Result<u8> {
    let mut activator = super::activator(settings);
    let persistence =
        workflow::open_persistence(&mut activator, &args.persistence_plugin, &args.options)?;
    let Some(key) = args.key else {
        let Some(prefix) = args.prefix else {
            let runs = workflow::list_runs(&persistence, args.incident_id.as_deref())?;
            match args.format {
                Format::Json => outln!(
                    "{}",
                    serde_json::to_string_pretty(&runs).expect("runs serialise")
                ),
                Format::Table => out!("{}", runs_table(runs)),
            }
            return Ok(0);
        };
        let keys = persistence.list(&prefix)?;
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
                "nothing is saved under {key:?}; run 'diffy show' to list the runs, \
                 'diffy show --prefix \"\"' the keys"
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

/// The runs as a table: grouped by incident (runs without one last), oldest first in each group,
/// with where each stands and the key of its report.
fn runs_table(mut runs: Vec<RunInfo>) -> String {
    if runs.is_empty() {
        return "no runs saved; 'diffy new analysis KEY' makes one\n".to_string();
    }
    runs.sort_by(|a, b| {
        (a.incident.is_none(), &a.incident, &a.id).cmp(&(b.incident.is_none(), &b.incident, &b.id))
    });
    let mut table = new_table(&[
        "INCIDENT",
        "RUN",
        "STATUS",
        "HOSTS",
        "RECORDS",
        "FAILED",
        "ANALYSIS",
        "TARGET KEY",
    ]);
    // A run id is what one copies into `diffy show report/<RUN>`: never wrapped. It starts with
    // the run's start time (the JSON listing has `started_at` too).
    if let Some(column) = table.column_mut(1) {
        column.set_constraint(ColumnConstraint::ContentWidth);
    }
    for run in &runs {
        add_row(
            &mut table,
            [
                run.incident.clone().unwrap_or_else(|| "-".into()),
                run.id.clone(),
                run.status.to_string(),
                run.hosts.to_string(),
                run.records.to_string(),
                run.failed_records.to_string(),
                run.analysis.clone(),
                run.key.clone(),
            ],
        );
    }
    format!(
        "{table}\n\n'diffy show report/<RUN>' shows a run's report; a run that is not complete has \
         no report\n"
    )
}
