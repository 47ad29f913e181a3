//! Rendering an analysis report for people: hosts ranked, then what was added and removed.

use comfy_table::{ContentArrangement, Table, presets};
use diffy_plugin_api::Report;

/// The report as text: warnings, a ranking table, then per host and command the rows that
/// differ (at most `max_rows` of each kind).
pub fn render(report: &Report, max_rows: usize) -> String {
    let mut out = String::new();
    for warning in &report.warnings {
        out.push_str(&format!("warning: {warning}\n"));
    }
    let differing: Vec<_> = report.hosts.iter().filter(|h| h.score > 0.0).collect();
    let with_rows = report
        .hosts
        .iter()
        .filter(|h| {
            h.commands
                .iter()
                .any(|c| !c.added.is_empty() || !c.removed.is_empty())
        })
        .count();
    let incomplete = report
        .hosts
        .iter()
        .filter(|h| h.commands.iter().any(|c| c.error.is_some()))
        .count();
    out.push_str(&format!(
        "{} analysis: {with_rows} of {} hosts differ",
        report.analysis,
        report.hosts.len()
    ));
    if incomplete > 0 {
        out.push_str(&format!("; {incomplete} could not be fully compared"));
    }
    out.push_str("\n\n");
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(vec![
            "RANK",
            "HOST",
            "SCORE",
            "ADDED",
            "REMOVED",
            "FAILED",
            "COMMANDS THAT DIFFER",
        ]);
    for (rank, host) in report.hosts.iter().enumerate() {
        let added: usize = host.commands.iter().map(|c| c.added.len()).sum();
        let removed: usize = host.commands.iter().map(|c| c.removed.len()).sum();
        let failed = host.commands.iter().filter(|c| c.error.is_some()).count();
        let commands: Vec<&str> = host
            .commands
            .iter()
            .filter(|c| !c.added.is_empty() || !c.removed.is_empty() || c.error.is_some())
            .map(|c| c.command.as_str())
            .collect();
        table.add_row(vec![
            (rank + 1).to_string(),
            host.target.clone(),
            format_score(host.score),
            added.to_string(),
            removed.to_string(),
            failed.to_string(),
            commands.join(", "),
        ]);
    }
    out.push_str(&format!("{table}\n"));
    for host in &differing {
        out.push_str(&format!(
            "\n{} (score {})\n",
            host.target,
            format_score(host.score)
        ));
        for command in &host.commands {
            if command.added.is_empty() && command.removed.is_empty() && command.error.is_none() {
                continue;
            }
            out.push_str(&format!("  {}:\n", command.command));
            if let Some(error) = &command.error {
                out.push_str(&format!("    ! {error}\n"));
            }
            for (sign, rows) in [('+', &command.added), ('-', &command.removed)] {
                for row in rows.iter().take(max_rows) {
                    out.push_str(&format!("    {sign} {}\n", shorten(&row.to_line())));
                }
                if rows.len() > max_rows {
                    out.push_str(&format!(
                        "    {sign} … and {} more\n",
                        rows.len() - max_rows
                    ));
                }
            }
        }
    }
    out
}

/// Long rows (a process's whole command line) are cut in the table; JSON keeps them whole.
fn shorten(row: &str) -> String {
    const LIMIT: usize = 160;
    match row.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{}…", &row[..cut]),
        None => row.to_string(),
    }
}

fn format_score(score: f64) -> String {
    let text = format!("{score:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}
