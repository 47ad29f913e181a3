//! The Analysis components: `local-simple` compares every host with a saved baseline,
//! `local-cluster` with the rest of its fleet. Both see a command's output as a *set* of distinct
//! normalised rows, each entered once in the command's row book ([`book`]): a row repeated on a
//! host counts once, and row order does not matter.

pub(crate) mod book;
pub(crate) mod changes;
pub(crate) mod cluster;
pub(crate) mod rows;
pub(crate) mod simple;

use std::collections::HashMap;

use diffy_plugin_api::rows::ParseError;

use book::{Read, RowBook};
use diffy_plugin_api::{Command, CommandDiff, HostReport, Parser, Record, RecordStatus};

/// How many records an analysis reads at once (on every core) before entering their rows: enough
/// to keep the cores busy, few enough that their read rows stay small beside the records.
pub(crate) const RECORDS_READ_AT_ONCE: usize = 256;

/// A session that enters records in three steps, so that the reading — most of the work — runs
/// on every core: each record placed (its host and command positions; none to pass it over),
/// its output read by its command's book, then entered, in order, so that the report does not
/// depend on the number of threads.
pub(crate) trait BatchEntry: Sync {
    /// Where `record` goes; none for a record passed over (a second one of a host and command).
    fn place(&mut self, record: &Record) -> Option<(usize, usize)>;
    /// The book that reads `record`'s output for `command`, when it is to be read.
    fn reader(&self, record: &Record, command: usize) -> Option<&RowBook>;
    /// Enter `record` of `host` and `command`, with its rows when they were read.
    fn enter(&mut self, host: usize, command: usize, record: &Record, rows: Option<Read<'_>>);
}

/// Enter `records` into `session`, [`RECORDS_READ_AT_ONCE`] at a time.
pub(crate) fn enter_all(session: &mut impl BatchEntry, records: &[Record]) {
    use rayon::prelude::*;
    for records in records.chunks(RECORDS_READ_AT_ONCE) {
        let places: Vec<Option<(usize, usize)>> =
            records.iter().map(|record| session.place(record)).collect();
        let reading = &*session;
        let rows: Vec<Option<Read<'_>>> = records
            .par_iter()
            .zip(&places)
            .map(|(record, place)| {
                let (_, command) = (*place)?;
                let book = reading.reader(record, command)?;
                Some(book.read(&record.stdout))
            })
            .collect();
        for ((record, place), rows) in records.iter().zip(places).zip(rows) {
            if let Some((host, command)) = place {
                session.enter(host, command, record, rows);
            }
        }
    }
}

/// The longest stderr excerpt quoted in a command's error.
const MAX_EXCERPT_CHARS: usize = 200;

/// The hosts and commands an analysis has seen, each known by its position: commands those of
/// the payload, then any seen only in records; hosts in the order of their first record.
pub(crate) struct Index {
    pub(crate) hosts: Vec<String>,
    host_index: HashMap<String, usize>,
    pub(crate) commands: Vec<String>,
    /// Each command as the payload gave it (`None` for one seen only in records).
    specs: Vec<Option<Command>>,
    command_index: HashMap<String, usize>,
}

impl Index {
    pub(crate) fn new(commands: &[Command]) -> Self {
        let mut index = Index {
            hosts: Vec::new(),
            host_index: HashMap::new(),
            commands: Vec::new(),
            specs: Vec::new(),
            command_index: HashMap::new(),
        };
        for command in commands {
            if !index.command_index.contains_key(&command.id) {
                index
                    .command_index
                    .insert(command.id.clone(), index.commands.len());
                index.commands.push(command.id.clone());
                index.specs.push(Some(command.clone()));
            }
        }
        index
    }

    /// The position of host `id`, added if new.
    pub(crate) fn host(&mut self, id: &str) -> usize {
        if let Some(&host) = self.host_index.get(id) {
            return host;
        }
        self.host_index.insert(id.to_string(), self.hosts.len());
        self.hosts.push(id.to_string());
        self.hosts.len() - 1
    }

    /// The position of command `id`, added if new.
    pub(crate) fn command(&mut self, id: &str) -> usize {
        if let Some(&command) = self.command_index.get(id) {
            return command;
        }
        self.command_index
            .insert(id.to_string(), self.commands.len());
        self.commands.push(id.to_string());
        self.specs.push(None);
        self.commands.len() - 1
    }

    /// Command `command` (a position) as the payload gave it, if it did.
    pub(crate) fn spec(&self, command: usize) -> Option<&Command> {
        self.specs.get(command).and_then(Option::as_ref)
    }

    /// One empty report per host, in `hosts` order.
    pub(crate) fn empty_reports(&self) -> Vec<HostReport> {
        self.hosts
            .iter()
            .map(|host| HostReport {
                target: host.clone(),
                score: 0.0,
                commands: Vec::with_capacity(self.commands.len()),
            })
            .collect()
    }
}

/// `record` when its collection succeeded, else why it cannot be compared.
pub(crate) fn usable<'a>(record: Option<&'a Record>, command: &str) -> Result<&'a Record, String> {
    match record {
        None => Err(format!("no record was collected for command {command}")),
        Some(record) if record.status == RecordStatus::Ok => Ok(record),
        Some(record) => Err(failure(record)),
    }
}

/// Why the output of `command` on a host cannot be compared although its collection succeeded:
/// `cannot read processes.json as json: line 3 column 5: …`.
pub(crate) fn unreadable(command: &str, spec: Option<&Command>, error: &ParseError) -> String {
    let format = match spec.map(Command::parser) {
        Some(Parser::Json) => "json",
        Some(Parser::Csv { .. }) => "csv",
        Some(Parser::Tsv) => "tsv",
        _ => "rows",
    };
    format!("cannot read {command} as {format}: {error}")
}

/// A one-line account of a failed collection: `collection failed: exit 1: <stderr's first line>`.
pub(crate) fn failure(record: &Record) -> String {
    let what = match (record.status, record.exit_code) {
        (RecordStatus::Ok, _) => "collection succeeded".to_string(),
        (RecordStatus::Failed, Some(code)) => format!("collection failed: exit {code}"),
        (RecordStatus::Failed, None) => "collection failed".to_string(),
        (RecordStatus::Timeout, _) => "collection timed out".to_string(),
        (RecordStatus::Error, _) => "collection error".to_string(),
        (RecordStatus::Unknown, _) => "collection did not succeed".to_string(),
    };
    match record
        .stderr
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
    {
        Some(line) => format!("{what}: {}", excerpt(line)),
        None => what,
    }
}

/// At most [`MAX_EXCERPT_CHARS`] characters of `line`.
fn excerpt(line: &str) -> &str {
    match line.char_indices().nth(MAX_EXCERPT_CHARS) {
        Some((end, _)) => &line[..end],
        None => line,
    }
}

/// A command that could not be compared: its error and `score`.
pub(crate) fn error_diff(command: &str, error: String, score: f64) -> CommandDiff {
    CommandDiff {
        command: command.to_string(),
        score,
        error: Some(error),
        ..CommandDiff::default()
    }
}

/// Sum the command scores into each host's score, then rank: highest score first, then by id.
pub(crate) fn finish(hosts: &mut [HostReport]) {
    for host in hosts.iter_mut() {
        host.score = round4(host.commands.iter().map(|c| c.score).sum());
    }
    hosts.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.target.cmp(&b.target))
    });
}

/// `x` rounded to 4 decimals, so reports stay stable across summation orders.
pub(crate) fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// `items`, sorted, as a short list for a warning: `a, b, c and 4 more`.
pub(crate) fn some_of(mut items: Vec<String>) -> String {
    const SHOWN: usize = 3;
    items.sort();
    let more = items.len().saturating_sub(SHOWN);
    items.truncate(SHOWN);
    let mut text = items.join(", ");
    if more > 0 {
        text.push_str(&format!(" and {more} more"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_read_in_one_line() {
        let mut record = Record::new("h", "c", RecordStatus::Failed, String::new());
        record.exit_code = Some(1);
        record.stderr = "\n  ps: not found  \nmore".into();
        assert_eq!(failure(&record), "collection failed: exit 1: ps: not found");
        record.status = RecordStatus::Timeout;
        record.stderr = String::new();
        assert_eq!(failure(&record), "collection timed out");
        record.stderr = "é".repeat(500);
        assert_eq!(
            failure(&record).chars().count(),
            "collection timed out: ".len() + 200
        );
    }

    #[test]
    fn ranking_is_by_score_then_id() {
        let host = |target: &str, score| HostReport {
            target: target.into(),
            commands: vec![CommandDiff {
                score,
                ..CommandDiff::default()
            }],
            ..HostReport::default()
        };
        let mut hosts = vec![
            host("b", 1.0),
            host("c", 2.0),
            host("a", 1.0),
            host("d", 0.0),
        ];
        finish(&mut hosts);
        let order: Vec<&str> = hosts.iter().map(|h| h.target.as_str()).collect();
        assert_eq!(order, ["c", "a", "b", "d"]);
    }
}
