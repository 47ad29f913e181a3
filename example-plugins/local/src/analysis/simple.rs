//! The Analysis component `local-simple`: every host against the saved baseline.
//!
//! For each host and command, `added` holds the distinct rows the host has and the baseline record
//! of that command lacks, `removed` the reverse, both sorted; when the command names key columns,
//! an added and a removed row that share their key are one `changed` row instead. The command's
//! score is how many rows differ. A command that cannot be compared (its collection failed, its
//! output cannot be read, or the baseline has no usable record of it) scores 1 and says why in
//! `error`.

use std::collections::HashMap;

use diffy_plugin_api::anyhow::bail;
use diffy_plugin_api::{
    Analysis, AnalysisInput, AnalysisSession, AnalysisStart, Command, CommandDiff, Component,
    Record, RecordStatus, Report, Result,
};
use serde::Deserialize;

use super::book::{Read, RowBook, RowId, sorted_rows};
use super::changes::{self, changed_rows};
use super::rows::{default_ignored_columns, ignore_columns_option};
use super::{BatchEntry, enter_all};
use super::{Index, error_diff, failure, finish, some_of, unreadable, usable};

/// The slug, also the report's `analysis`.
const NAME: &str = "local-simple";

/// The score of a command that could not be compared.
const UNCOMPARABLE_SCORE: f64 = 1.0;

/// The options of `local-simple`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Options {
    #[serde(default = "default_ignored_columns")]
    pub(crate) ignore_columns: Vec<String>,
}

/// `local-simple`: rows added, removed and changed against the baseline.
pub(crate) struct LocalSimple {
    ignore_columns: Vec<String>,
}

impl LocalSimple {
    pub(crate) fn component() -> Component {
        Component::named(
            NAME,
            "Rows added, removed and changed on each host, against a saved baseline",
        )
        .description(
            "Compares each host's output of each command with the baseline's record of that \
                 command, as sets of distinct rows: a text row is its columns, less ignore_columns \
                 and the command's own, joined by single spaces; a row of named columns (json, \
                 csv, tsv) is its values by column name, less those columns. When the command \
                 names key columns, a row added and a row removed with the same key are one \
                 changed row. A command scores one point per row added, removed or changed, and 1 \
                 when it cannot be compared (failed collection, malformed output, no baseline); a \
                 host scores the sum. Every host is listed, highest score first; 0 means \
                 identical.",
        )
        .option(ignore_columns_option())
        .uses_baseline(true)
    }

    pub(crate) fn new(options: Options) -> Result<Self> {
        Ok(LocalSimple {
            ignore_columns: options.ignore_columns,
        })
    }
}

impl Analysis for LocalSimple {
    fn run(&self, input: AnalysisInput, _incident: Option<&str>) -> Result<Report> {
        let mut session = self.session(&input.commands, input.baseline)?;
        enter_all(&mut session, &input.records);
        Ok(session.report())
    }

    fn begin(
        &self,
        start: AnalysisStart,
        _incident: Option<&str>,
    ) -> Result<Option<Box<dyn AnalysisSession>>> {
        Ok(Some(Box::new(
            self.session(&start.commands, start.baseline)?,
        )))
    }
}

impl LocalSimple {
    fn session(
        &self,
        commands: &[Command],
        baseline: Option<Vec<Record>>,
    ) -> Result<SimpleSession> {
        let Some(baseline) = baseline else {
            bail!("{NAME} needs a baseline: save one first with `diffy new baseline <KEY>`");
        };
        // The baseline holds one record per command; should it hold more, the first one counts.
        let mut baseline_of: HashMap<String, Record> = HashMap::new();
        for record in baseline {
            baseline_of.entry(record.command.clone()).or_insert(record);
        }
        let mut session = SimpleSession {
            ignore_columns: self.ignore_columns.clone(),
            index: Index::new(commands),
            baseline_of,
            references: Vec::new(),
            diffs: Vec::new(),
            uncompared: 0,
            unreadable_records: Vec::new(),
            without_baseline: Vec::new(),
        };
        session.references_up_to(session.index.commands.len());
        Ok(session)
    }
}

/// A run of `local-simple`, fed records as they come: each host is compared with the baseline as
/// its record arrives, so only the differences are kept (and each command's book of rows).
struct SimpleSession {
    ignore_columns: Vec<String>,
    index: Index,
    baseline_of: HashMap<String, Record>,
    /// By command position.
    references: Vec<Reference>,
    /// By host position, by command position.
    diffs: Vec<Vec<Option<CommandDiff>>>,
    uncompared: usize,
    unreadable_records: Vec<String>,
    without_baseline: Vec<String>,
}

/// One command's book and the baseline's rows in it, or why there are none.
struct Reference {
    book: RowBook,
    rows: Result<Vec<RowId>, String>,
}

impl SimpleSession {
    /// Make the references of the first `count` commands.
    fn references_up_to(&mut self, count: usize) {
        while self.references.len() < count {
            let command = self.references.len();
            let id = self.index.commands[command].clone();
            let spec = self.index.spec(command);
            let mut book = RowBook::new(spec, &self.ignore_columns);
            let rows = match self.baseline_of.remove(&id) {
                None => {
                    self.without_baseline.push(id.clone());
                    Err(format!("no baseline for command {id}"))
                }
                Some(record) if record.status != RecordStatus::Ok => Err(format!(
                    "the baseline of command {id} failed: {}",
                    failure(&record)
                )),
                Some(record) => book.enter(&record.stdout).map_err(|error| {
                    format!(
                        "the baseline of command {id}: {}",
                        unreadable(&id, spec, &error)
                    )
                }),
            };
            self.references.push(Reference { book, rows });
        }
    }

    /// The diff of `record` (none: not collected) of `host` and `command`, given its rows when
    /// they were read already.
    fn compare<'r>(
        &mut self,
        host: usize,
        command: usize,
        record: Option<&'r Record>,
        rows: Option<Read<'r>>,
    ) -> CommandDiff {
        let id = &self.index.commands[command];
        let spec = self.index.spec(command);
        let Reference {
            book,
            rows: reference,
        } = &mut self.references[command];
        match (usable(record, id), &*reference, rows) {
            (Err(error), _, _) => {
                self.uncompared += 1;
                error_diff(id, error, UNCOMPARABLE_SCORE)
            }
            (Ok(_), Err(error), _) => error_diff(id, error.clone(), UNCOMPARABLE_SCORE),
            (Ok(record), Ok(reference), rows) => {
                match rows.unwrap_or_else(|| book.read(&record.stdout)) {
                    Ok(rows) => {
                        let mine = book.enter_rows(rows);
                        compare(book, id, &mine, reference)
                    }
                    Err(error) => {
                        self.unreadable_records
                            .push(format!("{}/{id}", self.index.hosts[host]));
                        let error = unreadable(id, spec, &error);
                        error_diff(id, error, UNCOMPARABLE_SCORE)
                    }
                }
            }
        }
    }

    fn report(mut self) -> Report {
        let mut hosts = self.index.empty_reports();
        let commands = self.index.commands.len();
        self.references_up_to(commands);
        for (host, report) in hosts.iter_mut().enumerate() {
            let mut diffs = std::mem::take(&mut self.diffs[host]);
            diffs.resize(commands, None);
            for (command, diff) in diffs.into_iter().enumerate() {
                let diff = diff.unwrap_or_else(|| self.compare(host, command, None, None));
                report.commands.push(diff);
            }
        }
        finish(&mut hosts);
        let mut warnings = Vec::new();
        if !self.without_baseline.is_empty() {
            warnings.push(format!(
                "the baseline has no record of {}: those commands were not compared",
                some_of(self.without_baseline)
            ));
        }
        if self.uncompared > 0 {
            warnings.push(format!(
                "{} record(s) could not be compared because their collection failed \
                 (see each command's error)",
                self.uncompared
            ));
        }
        if !self.unreadable_records.is_empty() {
            warnings.push(format!(
                "{} record(s) could not be compared because their output is malformed: {}",
                self.unreadable_records.len(),
                some_of(self.unreadable_records)
            ));
        }
        Report {
            analysis: NAME.to_string(),
            warnings,
            hosts,
            ..Report::default()
        }
    }
}

impl BatchEntry for SimpleSession {
    /// Where `record` is compared, by host and command position; none for a second record of
    /// one host and command, which is ignored.
    fn place(&mut self, record: &Record) -> Option<(usize, usize)> {
        let host = self.index.host(&record.target);
        let command = self.index.command(&record.command);
        self.references_up_to(command + 1);
        if self.diffs.len() <= host {
            self.diffs.resize_with(host + 1, Vec::new);
        }
        let row = &mut self.diffs[host];
        if row.len() <= command {
            row.resize(command + 1, None);
        }
        if row[command].is_some() {
            return None;
        }
        // Taken, so that a second record of the host in the same batch is ignored too.
        row[command] = Some(CommandDiff::default());
        Some((host, command))
    }

    /// Only outputs of successful collections of commands whose baseline can be read are read.
    fn reader(&self, record: &Record, command: usize) -> Option<&RowBook> {
        let reference = &self.references[command];
        (record.status == RecordStatus::Ok && reference.rows.is_ok()).then_some(&reference.book)
    }

    fn enter(&mut self, host: usize, command: usize, record: &Record, rows: Option<Read<'_>>) {
        let diff = self.compare(host, command, Some(record), rows);
        self.diffs[host][command] = Some(diff);
    }
}

impl AnalysisSession for SimpleSession {
    fn feed(&mut self, records: Vec<Record>) -> Result<()> {
        enter_all(self, &records);
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<Report> {
        Ok(self.report())
    }
}

/// One host's rows of a command against the baseline's, both sorted row numbers of `book`.
fn compare(book: &RowBook, command: &str, rows: &[RowId], reference: &[RowId]) -> CommandDiff {
    let changes = changes::pair(
        book,
        difference(rows, reference),
        difference(reference, rows),
    );
    let differing = changes.added.len() + changes.removed.len() + changes.changed.len();
    CommandDiff {
        command: command.to_string(),
        score: differing as f64,
        added: sorted_rows(book, changes.added),
        removed: sorted_rows(book, changes.removed),
        changed: changed_rows(book, &changes.changed),
        ..CommandDiff::default()
    }
}

/// The row numbers of `left` that are not in `right`; both are sorted and distinct.
fn difference(left: &[RowId], right: &[RowId]) -> Vec<RowId> {
    let mut out = Vec::new();
    let mut right = right.iter().peekable();
    for &row in left {
        while right.next_if(|&&other| other < row).is_some() {}
        if right.peek().is_none_or(|&&other| other != row) {
            out.push(row);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use diffy_plugin_api::{Command, Parser};

    use super::*;

    fn ps_command() -> Command {
        Command::new("processes", "ps").parse(Parser::Columns {
            header: true,
            separator: None,
            max_columns: Some(5),
        })
    }

    fn record(target: &str, command: &str, stdout: &str) -> Record {
        Record::new(target, command, RecordStatus::Ok, stdout.to_string())
    }

    const PS: &str =
        "USER PID PPID COMMAND COMMAND\nroot 1 0 init /sbin/init\nroot 50 1 sshd sshd -D\n";

    fn analyse(records: Vec<Record>, baseline: Vec<Record>) -> Report {
        let simple = LocalSimple::new(Options {
            ignore_columns: default_ignored_columns(),
        })
        .unwrap();
        let input = AnalysisInput {
            commands: vec![ps_command(), Command::new("modules", "lsmod")],
            records,
            baseline: Some(baseline),
        };
        simple.run(input, None).unwrap()
    }

    #[test]
    fn identical_data_has_no_differences() {
        let data = vec![
            record("web-1", "processes", PS),
            record("web-1", "modules", "ext4\nxfs\n"),
        ];
        let report = analyse(data.clone(), data);
        assert!(!report.has_differences(), "{report:?}");
        assert_eq!(report.analysis, "local-simple");
        assert_eq!(report.hosts.len(), 1);
        assert_eq!(report.hosts[0].score, 0.0);
        assert!(report.warnings.is_empty());
    }

    #[test]
    fn added_and_removed_rows_are_reported() {
        let baseline = vec![
            record("web-1", "processes", PS),
            record("web-1", "modules", "ext4\nxfs\n"),
        ];
        // Other pids and alignment do not matter; a new process and a missing module do.
        let changed = "USER   PID PPID COMMAND COMMAND\nroot 7 0 init /sbin/init\n\
                       root 51 1 sshd sshd -D\nwww 66 1 nc nc -l -p 4444\n";
        let records = vec![
            record("web-1", "processes", PS),
            record("web-1", "modules", "ext4\nxfs\n"),
            record("web-2", "processes", changed),
            record("web-2", "modules", "ext4\n"),
        ];
        let report = analyse(records, baseline);
        assert!(report.has_differences());
        let top = &report.hosts[0];
        assert_eq!(top.target, "web-2");
        assert_eq!(top.score, 2.0);
        assert_eq!(top.commands[0].added, ["www nc nc -l -p 4444"]);
        assert!(top.commands[0].removed.is_empty());
        assert_eq!(top.commands[1].removed, ["xfs"]);
        assert_eq!(report.hosts[1].target, "web-1");
        assert_eq!(report.hosts[1].score, 0.0);
    }

    #[test]
    fn failures_and_missing_baselines_are_errors() {
        let mut failed = record("web-1", "processes", "");
        failed.status = RecordStatus::Failed;
        failed.exit_code = Some(1);
        failed.stderr = "ps: command not found\n".into();
        let records = vec![failed, record("web-1", "modules", "ext4\n")];
        let baseline = vec![record("base", "processes", PS)];
        let report = analyse(records, baseline);
        let host = &report.hosts[0];
        assert_eq!(host.score, 2.0);
        assert_eq!(
            host.commands[0].error.as_deref(),
            Some("collection failed: exit 1: ps: command not found")
        );
        assert_eq!(
            host.commands[1].error.as_deref(),
            Some("no baseline for command modules")
        );
        assert_eq!(report.warnings.len(), 2);
    }

    #[test]
    fn without_a_baseline_it_refuses() {
        let simple = LocalSimple::new(Options {
            ignore_columns: Vec::new(),
        })
        .unwrap();
        let input = AnalysisInput {
            commands: Vec::new(),
            records: Vec::new(),
            baseline: None,
        };
        assert!(
            simple
                .run(input, None)
                .unwrap_err()
                .to_string()
                .contains("baseline")
        );
    }

    #[test]
    fn records_fed_one_by_one_give_the_report_of_one_run() {
        let records = vec![
            record("a", "processes", PS),
            record("b", "processes", &format!("{PS}root 9 1 nc nc -l\n")),
            record("b", "modules", "ext4\n"),
            record("c", "extra", "x\n"),
        ];
        let baseline = vec![
            record("base", "processes", PS),
            record("base", "modules", "xfs\n"),
        ];
        let whole = analyse(records.clone(), baseline.clone());
        let simple = LocalSimple::new(Options {
            ignore_columns: default_ignored_columns(),
        })
        .unwrap();
        let start = AnalysisStart {
            commands: vec![ps_command(), Command::new("modules", "lsmod")],
            baseline: Some(baseline),
        };
        let mut session = simple.begin(start, None).unwrap().unwrap();
        for record in records {
            session.feed(vec![record]).unwrap();
        }
        assert_eq!(session.finish().unwrap(), whole);
        assert_eq!(whole.hosts[0].target, "b");
    }

    #[test]
    fn difference_of_sorted_sets() {
        assert_eq!(difference(&[1, 2, 4], &[2, 3]), [1, 4]);
        assert!(difference(&[], &[7]).is_empty());
    }
}
