//! `diffy new baseline` and `diffy new analysis`.

use std::time::Duration;

use diffy_core::Result;
use diffy_core::config::Settings;
use diffy_core::progress::ProgressDisplay;
use diffy_core::workflow::{self, Choices, RunOptions, defaults};

use super::report;
use crate::cli::{Format, NewCommand, PluginChoices};
use crate::output::{out, outln};
use crate::printable::printable;
use crate::progress::TerminalProgress;

fn run_options(
    choices: PluginChoices,
    analysis: Option<String>,
    baseline_key: Option<String>,
) -> RunOptions {
    let defaults = Choices::default();
    let payload = choices.payload_plugin.unwrap_or_else(|| {
        defaults::payload_for(&choices.collection_plugin, &choices.options).into()
    });
    RunOptions {
        choices: Choices {
            target: choices.target_plugin,
            payload,
            collection: choices.collection_plugin,
            persistence: choices.persistence_plugin,
            analysis: analysis.unwrap_or(defaults.analysis),
        },
        options: choices.options,
        incident: choices.incident_id,
        jobs: usize::from(choices.jobs),
        target_timeout: Duration::from_secs(choices.target_timeout),
        component_timeout: Duration::from_secs(choices.component_timeout),
        baseline_key,
    }
}

/// Run `diffy new …`.
pub fn run(settings: &Settings, command: NewCommand) -> Result<u8> {
    // An isolated component that does not answer within the component timeout is killed.
    let activator =
        |run: &RunOptions| super::activator(settings).with_call_timeout(run.component_timeout);
    match command {
        NewCommand::Baseline {
            target_key,
            choices,
        } => {
            let run = run_options(choices, None, None);
            let outcome = workflow::new_baseline(&mut activator(&run), &target_key, &run)?;
            let failed = outcome
                .records
                .iter()
                .filter(|r| r.status != diffy_plugin_api::RecordStatus::Ok)
                .count();
            outln!(
                "Saved baseline {target_key:?} from {}: {} commands ({} failed).",
                printable(&outcome.target.id),
                outcome.records.len(),
                failed
            );
            for record in &outcome.records {
                let status = format!("{:?}", record.status).to_lowercase();
                let lines = record.stdout.lines().count();
                outln!(
                    "  {:<20} {:<8} {lines} lines",
                    printable(&record.command),
                    status
                );
            }
            if failed > 0 {
                eprintln!(
                    "warning: {failed} command(s) failed; their records were saved as failed"
                );
            }
            Ok(0)
        }
        NewCommand::Analysis {
            target_key,
            choices,
            analysis_plugin,
            baseline,
            format,
            max_rows,
            fail_on_diff,
        } => {
            let run = run_options(choices, Some(analysis_plugin), baseline);
            let progress = TerminalProgress.indicator();
            let outcome =
                workflow::new_analysis(&mut activator(&run), &target_key, &run, &*progress)?;
            match format {
                Format::Json => outln!(
                    "{}",
                    serde_json::to_string_pretty(&outcome.report).expect("reports serialise")
                ),
                Format::Table => {
                    out!("{}", report::render(&outcome.report, max_rows));
                    outln!(
                        "\n{} records collected ({} failed); report saved as {}",
                        outcome.records,
                        outcome.failed_records,
                        outcome.report_key
                    );
                }
            }
            Ok(if fail_on_diff && outcome.report.has_differences() {
                1
            } else {
                0
            })
        }
    }
}
