//! Rendering an analysis report for people: hosts ranked, then per host the rows that differ.
//!
//! A baseline report lists rows added (`+`), removed (`-`) and changed (`~`, with the columns
//! that changed); a fleet report (one with a fleet size) lists each host's rare rows with how
//! many hosts share each, and has no removed rows. Rows of named columns read as `key=value`
//! pairs.
//!
//! Everything in a report came from a plugin, much of it from the hosts themselves, so every
//! string is shown [`printable`]: a row cannot move the cursor, erase or forge a line.

use comfy_table::Table;
use diffy_plugin_api::{ChangedRow, CommandDiff, HostReport, Report, Row};

use crate::printable::printable;
use crate::table::{add_row, new_table};

/// Long rows (a process's whole command line) are cut in the table; JSON keeps them whole.
const MAX_ROW_CHARS: usize = 160;

/// The report as text: warnings, a ranking table, then per host and command the rows that
/// differ (at most `max_rows` of each kind).
pub fn render(report: &Report, max_rows: usize) -> String {
    let mut out = String::new();
    for warning in &report.warnings {
        out.push_str(&format!("warning: {}\n", printable(warning)));
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
        printable(&report.analysis),
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
            printable(&host.target),
            format_score(host.score)
        ));
        for command in host.commands.iter().filter(|c| c.differs()) {
            out.push_str(&format!("  {}:\n", printable(&command.command)));
            if let Some(error) = &command.error {
                out.push_str(&format!("    ! {}\n", printable(error)));
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
    let mut table = new_table(&header);
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
        add_row(&mut table, cells);
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
/// (`name=sshd  path: /usr/sbin/sshd → /tmp/sshd`), printable.
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
    printable(&shorten(&format!("{}  {}", row.key, changes.join("; ")))).into_owned()
}

/// A value as `key=value` rows show it: quoted when empty or when it holds spaces or quotes.
fn quoted(value: &str) -> String {
    if value.is_empty() || value.contains([' ', '"', ';']) {
        format!("{value:?}")
    } else {
        value.to_string()
    }
}

/// A row as one line, cut to [`MAX_ROW_CHARS`] and printable.
fn line(row: &Row) -> String {
    printable(&shorten(&row.to_line())).into_owned()
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
    use proptest::prelude::*;

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

    /// What a rogue process's arguments would do to a terminal, were they printed raw.
    const FORGED: &str = "\u{1b}[1A\u{1b}[2K\rfake: nothing here\u{1b}[2J\u{7}\u{9b}\u{202e}";

    #[test]
    fn hostile_rows_names_and_errors_are_escaped_visibly() {
        let report = Report {
            analysis: format!("x{FORGED}"),
            warnings: vec![FORGED.into()],
            hosts: vec![HostReport {
                target: format!("web{FORGED}"),
                score: 2.0,
                commands: vec![CommandDiff {
                    command: format!("ps{FORGED}"),
                    score: 2.0,
                    added: vec![FORGED.into(), columns(&[("cmd", FORGED)])],
                    changed: vec![ChangedRow {
                        key: columns(&[("k", FORGED)]),
                        before: columns(&[("k", FORGED), (FORGED, "a")]),
                        after: columns(&[("k", FORGED), (FORGED, "b")]),
                        columns: vec![FORGED.into()],
                    }],
                    error: Some(FORGED.into()),
                    ..CommandDiff::default()
                }],
            }],
            ..Report::default()
        };
        let text = render(&report, 10);
        assert!(crate::printable::is_printable(&text), "{text:?}");
        assert!(
            text.contains("    + \\e[1A\\e[2K\\rfake: nothing here\\e[2J\\x07\\u{9b}\\u{202e}\n"),
            "{text}"
        );
    }

    /// Text that is mostly ordinary, with the characters a terminal acts on mixed in.
    fn hostile_text() -> impl Strategy<Value = String> {
        let hostile = prop::sample::select(vec![
            '\u{1b}', '\n', '\r', '\t', '\u{7}', '\u{8}', '\0', '\u{7f}', '\u{85}', '\u{9b}',
            '\u{202e}', '\u{2066}', '\u{2028}',
        ]);
        prop::collection::vec(prop_oneof![any::<char>(), hostile], 0..12)
            .prop_map(|chars| chars.into_iter().collect())
    }

    fn hostile_row() -> impl Strategy<Value = Row> {
        prop_oneof![
            hostile_text().prop_map(Row::Text),
            prop::collection::vec((hostile_text(), hostile_text()), 0..3)
                .prop_map(|pairs| Row::Columns(pairs.into_iter().collect())),
        ]
    }

    fn hostile_command() -> impl Strategy<Value = CommandDiff> {
        let rows = || prop::collection::vec(hostile_row(), 0..3);
        let changed = (hostile_row(), hostile_row(), hostile_row(), hostile_text()).prop_map(
            |(key, before, after, column)| ChangedRow {
                key,
                before,
                after,
                columns: vec![column],
            },
        );
        (
            hostile_text(),
            rows(),
            rows(),
            prop::collection::vec(changed, 0..2),
            prop::collection::vec((hostile_row(), 0u64..5), 0..2),
            prop::option::of(hostile_text()),
        )
            .prop_map(
                |(command, added, removed, changed, rare, error)| CommandDiff {
                    command,
                    score: 1.0,
                    added,
                    removed,
                    changed,
                    rare: rare
                        .into_iter()
                        .map(|(row, hosts)| RareRow { row, hosts })
                        .collect(),
                    error,
                },
            )
    }

    fn hostile_report() -> impl Strategy<Value = Report> {
        let host = (
            hostile_text(),
            prop::collection::vec(hostile_command(), 0..3),
        )
            .prop_map(|(target, commands)| HostReport {
                target,
                score: 1.0,
                commands,
            });
        (
            hostile_text(),
            prop::collection::vec(hostile_text(), 0..2),
            prop::option::of(1u64..100),
            prop::collection::vec(host, 0..3),
        )
            .prop_map(|(analysis, warnings, fleet_size, hosts)| Report {
                analysis,
                warnings,
                fleet_size,
                hosts,
            })
    }

    proptest! {
        /// The property the `report` fuzz target checks too: whatever a report holds, no
        /// character a terminal acts on survives rendering, line breaks of the layout aside.
        #[test]
        fn no_control_character_survives_rendering(report in hostile_report()) {
            let text = render(&report, 2);
            prop_assert!(crate::printable::is_printable(&text), "{:?}", text);
        }
    }
}
