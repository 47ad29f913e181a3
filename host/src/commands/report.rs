//! Rendering an analysis report for people: hosts ranked, then per host the rows that differ.
//!
//! A baseline report lists rows added (`+`), removed (`-`) and changed (`~`, with the columns
//! that changed); a fleet report (one with a fleet size) lists each host's rare rows with how
//! many hosts share each, and has no removed rows. Rows of named columns read as `key=value`
//! pairs.

use comfy_table::{ContentArrangement, Table, presets};
use diffy_plugin_api::{ChangedRow, CommandDiff, HostReport, Report, Row};

/// Long rows (a process's whole command line) are cut in the table; JSON keeps them whole.
const MAX_ROW_CHARS: usize = 160;

/// The report as text: warnings, a ranking table, then per host and command the rows that
/// differ (at most `max_rows` of each kind).
pub fn render(report: &Report, max_rows: usize) -> String {
    let mut out = String::new();
    for warning in &report.warnings {
        out.push_str(&format!("warning: {warning}\n"));
    }
    let with_rows = report
        .hosts
        .iter()
        .filter(|h| h.commands.iter().any(has_rows))
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
    out.push_str(&format!("{}\n", ranking(report)));
    for host in report.hosts.iter().filter(|h| h.score > 0.0) {
        out.push_str(&format!(
            "\n{} (score {})\n",
            host.target,
            format_score(host.score)
        ));
        for command in host.commands.iter().filter(|c| c.differs()) {
            out.push_str(&format!("  {}:\n", command.command));
            if let Some(error) = &command.error {
                out.push_str(&format!("    ! {error}\n"));
            }
            let added = command.added.iter().map(|row| format!("+ {}", line(row)));
            push_rows(&mut out, "+ ", added, max_rows);
            let removed = command.removed.iter().map(|row| format!("- {}", line(row)));
            push_rows(&mut out, "- ", removed, max_rows);
            let changed = command
                .changed
                .iter()
                .map(|row| format!("~ {}", change(row)));
            push_rows(&mut out, "~ ", changed, max_rows);
            let rare = command.rare.iter().map(|rare| {
                let seen = match report.fleet_size {
                    Some(size) => format!("seen on {} of {size} hosts", rare.hosts),
                    None => format!("seen on {} hosts", rare.hosts),
                };
                format!("{}  ({seen})", line(&rare.row))
            });
            push_rows(&mut out, "", rare, max_rows);
        }
    }
    out
}

/// Append at most `max_rows` of `lines`, then how many more there are.
fn push_rows(
    out: &mut String,
    sign: &str,
    lines: impl ExactSizeIterator<Item = String>,
    max_rows: usize,
) {
    let total = lines.len();
    for text in lines.take(max_rows) {
        out.push_str(&format!("    {text}\n"));
    }
    if total > max_rows {
        out.push_str(&format!("    {sign}… and {} more\n", total - max_rows));
    }
}

/// Whether a command lists rows (beyond an error).
fn has_rows(command: &CommandDiff) -> bool {
    !command.added.is_empty()
        || !command.removed.is_empty()
        || !command.changed.is_empty()
        || !command.rare.is_empty()
}

/// The ranking table: a fleet report counts rare rows, a baseline report rows added, removed and
/// changed.
fn ranking(report: &Report) -> Table {
    let fleet = report.fleet_size.is_some();
    let mut header = vec!["RANK", "HOST", "SCORE"];
    if fleet {
        header.push("RARE");
    } else {
        header.extend(["ADDED", "REMOVED", "CHANGED"]);
    }
    header.extend(["FAILED", "COMMANDS THAT DIFFER"]);
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header);
    for (rank, host) in report.hosts.iter().enumerate() {
        let count = |rows: fn(&CommandDiff) -> usize| -> String {
            host.commands.iter().map(rows).sum::<usize>().to_string()
        };
        let mut cells = vec![
            (rank + 1).to_string(),
            host.target.clone(),
            format_score(host.score),
        ];
        if fleet {
            cells.push(count(|c| c.rare.len() + c.added.len()));
        } else {
            cells.extend([
                count(|c| c.added.len()),
                count(|c| c.removed.len()),
                count(|c| c.changed.len()),
            ]);
        }
        cells.extend([
            count(|c| usize::from(c.error.is_some())),
            differing_commands(host),
        ]);
        table.add_row(cells);
    }
    table
}

fn differing_commands(host: &HostReport) -> String {
    let commands: Vec<&str> = host
        .commands
        .iter()
        .filter(|c| c.differs())
        .map(|c| c.command.as_str())
        .collect();
    commands.join(", ")
}

/// A changed row as one line: its key, then each changed column's value before and after
/// (`name=sshd  path: /usr/sbin/sshd → /tmp/sshd`).
fn change(row: &ChangedRow) -> String {
    let value = |row: &Row, column: &str| match row {
        Row::Columns(columns) => columns
            .get(column)
            .map_or_else(|| "(absent)".to_string(), |value| quoted(value)),
        Row::Text(text) => text.clone(),
    };
    let changes: Vec<String> = if row.columns.is_empty() {
        vec![format!("{} → {}", row.before, row.after)]
    } else {
        row.columns
            .iter()
            .map(|column| {
                let (before, after) = (value(&row.before, column), value(&row.after, column));
                format!("{column}: {before} → {after}")
            })
            .collect()
    };
    shorten(&format!("{}  {}", row.key, changes.join("; ")))
}

/// A value as `key=value` rows show it: quoted when empty or when it holds spaces or quotes.
fn quoted(value: &str) -> String {
    if value.is_empty() || value.contains([' ', '"', ';']) {
        format!("{value:?}")
    } else {
        value.to_string()
    }
}

fn line(row: &Row) -> String {
    shorten(&row.to_line())
}

fn shorten(row: &str) -> String {
    match row.char_indices().nth(MAX_ROW_CHARS) {
        Some((cut, _)) => format!("{}…", &row[..cut]),
        None => row.to_string(),
    }
}

fn format_score(score: f64) -> String {
    let text = format!("{score:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use diffy_plugin_api::RareRow;

    use super::*;

    fn columns(pairs: &[(&str, &str)]) -> Row {
        Row::Columns(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn host(commands: Vec<CommandDiff>) -> HostReport {
        HostReport {
            target: "web-07".into(),
            score: 1.0,
            commands,
        }
    }

    #[test]
    fn a_fleet_report_shows_rare_rows_with_their_counts_and_no_removed_column() {
        let report = Report {
            analysis: "local-cluster".into(),
            fleet_size: Some(50),
            hosts: vec![host(vec![CommandDiff {
                command: "listening.json".into(),
                score: 0.96,
                rare: vec![RareRow {
                    row: columns(&[("name", "nc"), ("port", "4444")]),
                    hosts: 2,
                }],
                ..CommandDiff::default()
            }])],
            ..Report::default()
        };
        let text = render(&report, 10);
        assert!(text.contains("RARE") && !text.contains("REMOVED"), "{text}");
        assert!(
            text.contains("    name=nc port=4444  (seen on 2 of 50 hosts)\n"),
            "{text}"
        );
        assert!(text.contains("1 of 1 hosts differ"), "{text}");
    }

    #[test]
    fn a_baseline_report_shows_added_removed_and_changed_rows() {
        let report = Report {
            analysis: "local-simple".into(),
            hosts: vec![host(vec![CommandDiff {
                command: "listening-ports".into(),
                score: 3.0,
                added: vec!["tcp 4444".into()],
                removed: vec!["tcp 80".into()],
                changed: vec![ChangedRow {
                    key: columns(&[("port", "22")]),
                    before: columns(&[("port", "22"), ("path", "/usr/sbin/sshd")]),
                    after: columns(&[("port", "22"), ("path", "/tmp/my sshd")]),
                    columns: vec!["path".into()],
                }],
                ..CommandDiff::default()
            }])],
            ..Report::default()
        };
        let text = render(&report, 10);
        assert!(text.contains("CHANGED"), "{text}");
        for expected in [
            "    + tcp 4444\n",
            "    - tcp 80\n",
            "    ~ port=22  path: /usr/sbin/sshd → \"/tmp/my sshd\"\n",
        ] {
            assert!(text.contains(expected), "{expected:?} in {text}");
        }
    }

    #[test]
    fn long_lists_are_cut() {
        let rare = (0..5)
            .map(|i| RareRow {
                row: format!("row {i}").into(),
                hosts: 1,
            })
            .collect();
        let report = Report {
            analysis: "local-cluster".into(),
            fleet_size: Some(20),
            hosts: vec![host(vec![CommandDiff {
                command: "c".into(),
                rare,
                ..CommandDiff::default()
            }])],
            ..Report::default()
        };
        let text = render(&report, 2);
        assert!(text.contains("    … and 3 more\n"), "{text}");
        assert!(!text.contains("row 2"), "{text}");
    }
}
