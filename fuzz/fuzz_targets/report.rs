//! The report renderer must show whatever a report holds without letting a terminal act on any of
//! it: a compromised host writes the rows, and a row must not move the cursor, erase or forge a
//! line of the report a responder reads. Every line of the rendering is a fixed point of
//! `printable` (nothing left to escape); the property test beside the renderer checks the same.
//!
//! The renderer lives in the `diffy` binary, which has no library, so its three files are
//! compiled into this target as the binary compiles them.
#![no_main]

#[allow(dead_code)]
#[path = "../../host/src/printable.rs"]
mod printable;
#[path = "../../host/src/commands/report.rs"]
mod report;
#[path = "../../host/src/table.rs"]
mod table;

use diffy_plugin_api::{ChangedRow, CommandDiff, HostReport, RareRow, Report, Row};
use libfuzzer_sys::fuzz_target;

/// A report whose every string is a piece of `text` (split at `|`), taken in turn.
fn report_from(text: &str) -> Report {
    let mut pieces = text.split('|').map(str::to_string).cycle();
    let mut next = move || pieces.next().unwrap_or_default();
    let row = |next: &mut dyn FnMut() -> String| {
        let mut columns = indexmap::IndexMap::new();
        columns.insert(next(), next());
        [Row::Text(next()), Row::Columns(columns)]
    };
    let mut hosts = Vec::new();
    for _ in 0..2 {
        let mut commands = Vec::new();
        for _ in 0..2 {
            let [text_row, columns_row] = row(&mut next);
            commands.push(CommandDiff {
                command: next(),
                score: 1.0,
                added: vec![text_row.clone(), columns_row.clone()],
                removed: vec![columns_row.clone()],
                changed: vec![ChangedRow {
                    key: text_row.clone(),
                    before: columns_row.clone(),
                    after: text_row,
                    columns: vec![next()],
                }],
                rare: vec![RareRow {
                    row: columns_row,
                    hosts: 1,
                }],
                error: Some(next()),
            });
        }
        hosts.push(HostReport {
            target: next(),
            score: 1.0,
            commands,
        });
    }
    Report {
        analysis: next(),
        warnings: vec![next()],
        fleet_size: (text.len() % 2 == 0).then_some(7),
        hosts,
    }
}

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let report = report_from(&String::from_utf8_lossy(data));
    let rendered = report::render(&report, 3);
    for line in rendered.lines() {
        assert_eq!(printable::printable(line), line, "in {rendered:?}");
    }
});
