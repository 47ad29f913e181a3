//! The documents that flow through the Diffy workflow: targets, commands, records and reports.
//!
//! They cross the plugin boundary as JSON. Within an API series they only ever gain optional
//! fields (`#[serde(default)]`), and every enum has a catch-all variant, so a plugin built against
//! an older release of the series reads a newer host's documents, and the other way round: what a
//! reader does not know it ignores (an unknown field) or treats conservatively (an unknown
//! variant).

use std::collections::BTreeMap;
use std::fmt;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::rows::{self, Dialect, ParseError, Parsed};

/// A host to examine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetInfo {
    /// A stable identifier, unique within one run (a hostname, an instance id, a directory name).
    pub id: String,
    /// How to reach it (a host name or an IP address), when that differs from `id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The port to connect to, when not the protocol's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The user to log in as, when not the collector's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Free-form labels (region, role, the inventory groups, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl TargetInfo {
    /// A target known only by its id.
    pub fn new(id: impl Into<String>) -> Self {
        TargetInfo {
            id: id.into(),
            address: None,
            port: None,
            user: None,
            labels: BTreeMap::new(),
        }
    }
}

/// A command to run on every target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// A unique id (`listening-sockets`): results are stored under it, so two commands never
    /// overwrite each other.
    pub id: String,
    /// The shell command line.
    pub run: String,
    /// How to split the output into rows; without it every non-empty line is a row.
    /// See [`Command::read_rows`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parse: Option<Parser>,
    /// Columns that identify a row: two rows with the same values in these columns and other
    /// values elsewhere are one row that *changed*, not one removed and one added.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_columns: Vec<String>,
    /// Columns left out before rows are compared (values that change from run to run, such as
    /// process ids and times), by name, case-insensitively.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore_columns: Vec<String>,
}

impl Command {
    /// A command whose output is split into lines.
    pub fn new(id: impl Into<String>, run: impl Into<String>) -> Self {
        Command {
            id: id.into(),
            run: run.into(),
            parse: None,
            key_columns: Vec::new(),
            ignore_columns: Vec::new(),
        }
    }

    /// Set how the output is parsed.
    pub fn parse(mut self, parser: Parser) -> Self {
        self.parse = Some(parser);
        self
    }

    /// Set the columns that identify a row.
    pub fn key_columns<S: Into<String>>(mut self, columns: impl IntoIterator<Item = S>) -> Self {
        self.key_columns = columns.into_iter().map(Into::into).collect();
        self
    }

    /// Set the columns left out before rows are compared.
    pub fn ignore_columns<S: Into<String>>(mut self, columns: impl IntoIterator<Item = S>) -> Self {
        self.ignore_columns = columns.into_iter().map(Into::into).collect();
        self
    }

    /// Split `stdout` into rows of text columns with this command's parser; structured formats
    /// (`json`, `csv`, `tsv`) are read as lines here; [`Command::read_rows`] reads every format.
    pub fn rows<'a>(&self, stdout: &'a str) -> Table<'a> {
        self.parser().parse(stdout)
    }

    /// Split `stdout` into rows with this command's parser: text rows, or rows of named columns
    /// (since 0.2.1). Fails only on malformed structured output.
    pub fn read_rows<'a>(&self, stdout: &'a str) -> Result<Parsed<'a>, ParseError> {
        self.parser().read(stdout)
    }

    /// This command's parser: [`Parser::Lines`] unless it names one.
    pub fn parser(&self) -> &Parser {
        self.parse.as_ref().unwrap_or(&Parser::Lines)
    }
}

/// How a command's output becomes rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "format", rename_all = "snake_case")]
pub enum Parser {
    /// Every non-empty line is a row with one column.
    Lines,
    /// Every non-empty line is a row split into columns.
    Columns {
        /// The first line names the columns (and is not a row).
        #[serde(default)]
        header: bool,
        /// The separator; without it, runs of whitespace.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        separator: Option<String>,
        /// Split into at most this many columns: the last one keeps the rest of the line.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_columns: Option<usize>,
    },
    /// JSON objects, each a row of named columns (since 0.2.1): one array of objects, as
    /// `osqueryi --json` writes it, or one object after another (JSON Lines).
    Json,
    /// Comma-separated values whose first row names the columns (since 0.2.1); quoted fields as
    /// RFC 4180 has them.
    Csv {
        /// The one ASCII character between fields; without it, a comma (`"|"` reads
        /// `osqueryi --csv`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        delimiter: Option<String>,
    },
    /// Tab-separated values whose first row names the columns (since 0.2.1); quotes are ordinary
    /// characters.
    Tsv,
    /// A format introduced by a newer `diffy-plugin-api`; read as [`Parser::Lines`].
    #[serde(other)]
    Unknown,
}

/// Parsed output: optional column names and rows of columns, borrowed from the raw text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Table<'a> {
    /// Column names, when the parser reads a header.
    pub header: Option<Vec<&'a str>>,
    /// The rows.
    pub rows: Vec<Vec<&'a str>>,
}

impl Parser {
    /// Whether this parser reads rows of named columns (`json`, `csv`, `tsv`).
    pub fn is_structured(&self) -> bool {
        matches!(self, Parser::Json | Parser::Csv { .. } | Parser::Tsv)
    }

    /// Split `text` into rows: text rows for `lines` and `columns` (and formats this release does
    /// not know), rows of named columns for `json`, `csv` and `tsv` (since 0.2.1). Fails only on
    /// malformed structured output, saying where.
    pub fn read<'a>(&self, text: &'a str) -> Result<Parsed<'a>, ParseError> {
        let table = match self {
            Parser::Json => rows::parse_json(text)?,
            Parser::Csv { delimiter } => {
                rows::parse_delimited(text, Dialect::csv(delimiter.as_deref())?)?
            }
            Parser::Tsv => rows::parse_delimited(text, Dialect::tsv())?,
            Parser::Lines | Parser::Columns { .. } | Parser::Unknown => {
                return Ok(Parsed::Text(self.parse(text)));
            }
        };
        Ok(Parsed::Named(table))
    }

    /// Split `text` into a [`Table`] of text columns. Structured formats are read as lines here:
    /// [`Parser::read`] reads their columns.
    pub fn parse<'a>(&self, text: &'a str) -> Table<'a> {
        // A `\r` before a line end goes with the trailing whitespace, as `str::lines` drops it.
        let mut lines = rows::split_lines(text)
            .map(str::trim_end)
            .filter(|l| !l.trim().is_empty());
        match self {
            Parser::Lines | Parser::Json | Parser::Csv { .. } | Parser::Tsv | Parser::Unknown => {
                Table {
                    header: None,
                    rows: lines.map(|l| vec![l.trim_start()]).collect(),
                }
            }
            Parser::Columns {
                header,
                separator,
                max_columns,
            } => {
                let limit = max_columns.unwrap_or(usize::MAX).max(1);
                let split = |line: &'a str| -> Vec<&'a str> {
                    match separator.as_deref() {
                        Some(sep) => line.splitn(limit, sep).collect(),
                        None => split_whitespace_n(line, limit),
                    }
                };
                let header = if *header {
                    lines.next().map(split)
                } else {
                    None
                };
                Table {
                    header,
                    rows: lines.map(split).collect(),
                }
            }
        }
    }
}

fn split_whitespace_n(line: &str, limit: usize) -> Vec<&str> {
    let mut columns = Vec::new();
    let mut rest = line.trim_start();
    while !rest.is_empty() {
        if columns.len() + 1 == limit {
            columns.push(rest);
            break;
        }
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        columns.push(&rest[..end]);
        rest = rest[end..].trim_start();
    }
    columns
}

/// How a collection attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordStatus {
    /// The command ran and exited with status 0.
    Ok,
    /// The command ran and exited with another status (or was killed by a signal).
    Failed,
    /// The command did not finish within its timeout.
    Timeout,
    /// The command could not be run at all (unreachable target, missing evidence, plugin error).
    Error,
    /// A status introduced by a newer `diffy-plugin-api`; treated as a failure.
    #[serde(other)]
    Unknown,
}

impl RecordStatus {
    /// The spelling in documents and listings (`ok`, `failed`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            RecordStatus::Ok => "ok",
            RecordStatus::Failed => "failed",
            RecordStatus::Timeout => "timeout",
            RecordStatus::Error => "error",
            RecordStatus::Unknown => "unknown",
        }
    }
}

impl fmt::Display for RecordStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result of one command on one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The target's id.
    pub target: String,
    /// The command's id.
    pub command: String,
    /// How the attempt ended.
    pub status: RecordStatus,
    /// The exit code, when the command exited normally.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// When the output was collected (RFC 3339, UTC).
    pub collected_at: String,
    /// How long the command took, in milliseconds, when the collection measured it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Standard output.
    #[serde(default)]
    pub stdout: String,
    /// Standard error, or the reason the command could not run.
    #[serde(default)]
    pub stderr: String,
    /// SHA-256 of the raw standard output, in lowercase hex.
    #[serde(default)]
    pub sha256: String,
    /// Why the attempt did not succeed, in one line that starts with its class (`unreachable: …`,
    /// `timed out: …`, `command failed: exit 3`), when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether `stdout` was cut at the collection's output limit.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

impl Record {
    /// Build a record for `stdout`, computing its digest.
    pub fn new(
        target: impl Into<String>,
        command: impl Into<String>,
        status: RecordStatus,
        stdout: String,
    ) -> Self {
        let sha256 = sha256_hex(stdout.as_bytes());
        Record {
            target: target.into(),
            command: command.into(),
            status,
            exit_code: None,
            collected_at: String::new(),
            duration_ms: None,
            stdout,
            stderr: String::new(),
            sha256,
            error: None,
            truncated: false,
        }
    }
}

/// What an analysis receives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalysisInput {
    /// The commands that were collected (for their ids and parsers).
    pub commands: Vec<Command>,
    /// One record per target and command.
    pub records: Vec<Record>,
    /// The saved baseline records (one per command), for analyses that use one.
    #[serde(default)]
    pub baseline: Option<Vec<Record>>,
}

/// What an incremental analysis is told before the records come (since 0.2.1): the same as an
/// [`AnalysisInput`] without its records, which arrive in batches afterwards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalysisStart {
    /// The commands that are collected (for their ids and parsers).
    pub commands: Vec<Command>,
    /// The saved baseline records (one per command), for analyses that use one.
    #[serde(default)]
    pub baseline: Option<Vec<Record>>,
}

/// One run of `diffy new analysis` (since 0.2.1), as the persistence keeps it under `run/<id>`:
/// its id, the incident it belongs to, and whether it finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunInfo {
    /// The run's id, unique and time-ordered: `20261122T084057.123Z-5f0c9a2e`. Its records are
    /// saved under `records/<id>/…` and its report under `report/<id>`.
    pub id: String,
    /// The incident the run belongs to, when one was given: runs of one incident are grouped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<String>,
    /// The target key the run examined.
    pub key: String,
    /// The analysis slug.
    #[serde(default)]
    pub analysis: String,
    /// When the run started (RFC 3339, UTC, milliseconds).
    pub started_at: String,
    /// When it finished, once it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Where the run stands.
    pub status: RunStatus,
    /// How many targets it examines.
    #[serde(default)]
    pub hosts: u64,
    /// How many records were saved, once it finished.
    #[serde(default)]
    pub records: u64,
    /// How many of them did not succeed.
    #[serde(default)]
    pub failed_records: u64,
    /// Why the run failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Where a run stands (since 0.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Started and not finished: still running, or stopped before it could say so (a store that
    /// can tell reports [`RunStatus::Interrupted`] instead).
    Running,
    /// Finished: every record and the report are saved.
    Complete,
    /// Finished without a report; [`RunInfo::error`] says why.
    Failed,
    /// Its process ended before the run finished (killed, crashed, lost power).
    Interrupted,
    /// A status introduced by a newer `diffy-plugin-api`; treated as not complete.
    #[serde(other)]
    Unknown,
}

impl RunStatus {
    /// The spelling in documents and listings (`running`, `complete`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Complete => "complete",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Unknown => "unknown",
        }
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A record as the JSON text it travels as (since 0.2.1), with the ids a store files it under:
/// what [`Persistence::append_records`](crate::Persistence::append_records) and
/// [`Persistence::save_baseline`](crate::Persistence::save_baseline) receive, so that a store
/// writes records without decoding and encoding them again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordJson<'a> {
    /// The record's target id.
    pub target: std::borrow::Cow<'a, str>,
    /// The record's command id.
    pub command: std::borrow::Cow<'a, str>,
    /// How the attempt ended.
    pub status: RecordStatus,
    /// The whole record, a JSON object.
    pub json: &'a str,
}

impl<'a> RecordJson<'a> {
    /// Read the ids and status of the record `json` (a [`Record`] as JSON), without decoding
    /// the rest.
    pub fn read(json: &'a str) -> Result<Self, serde_json::Error> {
        #[derive(Deserialize)]
        struct Head<'a> {
            #[serde(borrow)]
            target: std::borrow::Cow<'a, str>,
            #[serde(borrow)]
            command: std::borrow::Cow<'a, str>,
            status: RecordStatus,
        }
        let head: Head<'a> = serde_json::from_str(json)?;
        Ok(RecordJson {
            target: head.target,
            command: head.command,
            status: head.status,
            json,
        })
    }
}

/// The result of an analysis: hosts ranked by how much they differ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Report {
    /// The analysis slug that produced the report.
    pub analysis: String,
    /// Caveats the reader must see (a fleet too small to cluster, failed collections, …).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// For an analysis that compares each host with the rest of its fleet (since 0.2.1): how many
    /// hosts the fleet has, so that [`RareRow::hosts`] reads "seen on 2 of 50 hosts".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet_size: Option<u64>,
    /// Hosts, highest score first.
    pub hosts: Vec<HostReport>,
}

/// How one host differs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct HostReport {
    /// The target's id.
    pub target: String,
    /// How much the host differs (higher is more suspicious); 0 means no difference.
    pub score: f64,
    /// Per command, what differs.
    pub commands: Vec<CommandDiff>,
}

/// How one command's output on one host differs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct CommandDiff {
    /// The command's id.
    pub command: String,
    /// This command's share of the host's score.
    pub score: f64,
    /// Rows present here and absent from the reference (baseline or fleet).
    #[serde(default)]
    pub added: Vec<Row>,
    /// Rows present in the reference and absent here.
    #[serde(default)]
    pub removed: Vec<Row>,
    /// Rows whose key columns match a row of the reference but whose other values differ
    /// (since 0.2.1), instead of one row added and one removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<ChangedRow>,
    /// For a fleet analysis (since 0.2.1): this host's rows that few hosts of the fleet share,
    /// rarest first, each with how many hosts have it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rare: Vec<RareRow>,
    /// Why the command could not be compared (a failed collection), if it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A row of the reference whose key columns a row here shares, with other values (since 0.2.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangedRow {
    /// The key columns and their values, the same on both sides.
    pub key: Row,
    /// The row in the reference (the baseline).
    pub before: Row,
    /// The row here.
    pub after: Row,
    /// The names of the columns whose values differ (present on one side only included), in
    /// column order.
    #[serde(default)]
    pub columns: Vec<String>,
}

/// A row few hosts of the fleet share (since 0.2.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RareRow {
    /// The row.
    pub row: Row,
    /// On how many hosts of the fleet it appears, this one included (of [`Report::fleet_size`]).
    pub hosts: u64,
}

impl CommandDiff {
    /// Whether the command differs on this host: a row added, removed, changed or rare, or an
    /// error.
    pub fn differs(&self) -> bool {
        !self.added.is_empty()
            || !self.removed.is_empty()
            || !self.changed.is_empty()
            || !self.rare.is_empty()
            || self.error.is_some()
    }
}

impl Report {
    /// True when any host differs from its reference or could not be compared.
    pub fn has_differences(&self) -> bool {
        self.hosts
            .iter()
            .any(|h| h.commands.iter().any(CommandDiff::differs))
    }
}

/// One row of a command's output, as a report names it: the row's text (for output read as lines
/// or as unnamed columns), or its named columns in output order. In JSON a text row is a string
/// and a row of named columns an object, so reports stay readable by `jq` and by people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Row {
    /// The row as one line of text.
    Text(String),
    /// The row's named columns (a JSON object's keys, a CSV header), in output order.
    Columns(IndexMap<String, String>),
}

impl Row {
    /// The row as one line: its text, or its columns as `key=value` pairs separated by spaces
    /// (values with spaces or quotes are quoted).
    pub fn to_line(&self) -> String {
        match self {
            Row::Text(text) => text.clone(),
            Row::Columns(columns) => {
                let mut line = String::new();
                for (key, value) in columns {
                    if !line.is_empty() {
                        line.push(' ');
                    }
                    line.push_str(key);
                    line.push('=');
                    if value.is_empty() || value.contains([' ', '"', '=']) {
                        line.push_str(&format!("{value:?}"));
                    } else {
                        line.push_str(value);
                    }
                }
                line
            }
        }
    }
}

impl fmt::Display for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_line())
    }
}

impl From<String> for Row {
    fn from(text: String) -> Self {
        Row::Text(text)
    }
}

impl From<&str> for Row {
    fn from(text: &str) -> Self {
        Row::Text(text.to_string())
    }
}

impl PartialEq<&str> for Row {
    fn eq(&self, other: &&str) -> bool {
        matches!(self, Row::Text(text) if text == other)
    }
}

/// SHA-256 of `bytes` in lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_with_header_and_limit() {
        let parser = Parser::Columns {
            header: true,
            separator: None,
            max_columns: Some(3),
        };
        let table = parser.parse("USER PID CMD\nroot 1  /sbin/init splash\n\n");
        assert_eq!(table.header, Some(vec!["USER", "PID", "CMD"]));
        assert_eq!(table.rows, vec![vec!["root", "1", "/sbin/init splash"]]);
    }

    #[test]
    fn lines_skip_blanks() {
        let table = Parser::Lines.parse("a\n\n  b  \n");
        assert_eq!(table.rows, vec![vec!["a"], vec!["b"]]);
    }

    #[test]
    fn unknown_variants_are_read_conservatively() {
        let command: Command =
            serde_json::from_str(r#"{"id":"x","run":"true","parse":{"format":"parquet"}}"#)
                .unwrap();
        assert_eq!(command.parse, Some(Parser::Unknown));
        assert_eq!(command.rows("a\nb\n").rows, vec![vec!["a"], vec!["b"]]);
        let status: RecordStatus = serde_json::from_str(r#""quarantined""#).unwrap();
        assert_eq!(status, RecordStatus::Unknown);
    }

    #[test]
    fn rows_are_strings_or_objects_in_json() {
        let text = Row::from("tcp 0.0.0.0:22");
        assert_eq!(serde_json::to_string(&text).unwrap(), r#""tcp 0.0.0.0:22""#);
        let columns: Row =
            serde_json::from_str(r#"{"name":"sshd","port":"22","cmd":"a b"}"#).unwrap();
        assert_eq!(columns.to_line(), r#"name=sshd port=22 cmd="a b""#);
        assert_eq!(
            serde_json::to_string(&columns).unwrap(),
            r#"{"name":"sshd","port":"22","cmd":"a b"}"#
        );
    }

    #[test]
    fn structured_parsers_in_json_and_their_rows() {
        let command: Command = serde_json::from_str(
            r#"{"id":"ports","run":"osqueryi --csv","parse":{"format":"csv","delimiter":"|"},
               "key_columns":["port"]}"#,
        )
        .unwrap();
        assert_eq!(
            command.parse,
            Some(Parser::Csv {
                delimiter: Some("|".into())
            })
        );
        let Ok(Parsed::Named(table)) = command.read_rows("port|name\n22|sshd\n") else {
            panic!("not named rows");
        };
        assert_eq!(
            table.rows().next().unwrap().to_row().to_line(),
            "port=22 name=sshd"
        );
        for (text, parser) in [
            (r#"{"format":"json"}"#, Parser::Json),
            (r#"{"format":"tsv"}"#, Parser::Tsv),
            (r#"{"format":"csv"}"#, Parser::Csv { delimiter: None }),
        ] {
            assert_eq!(serde_json::from_str::<Parser>(text).unwrap(), parser);
            assert_eq!(serde_json::to_string(&parser).unwrap(), text);
            assert!(parser.is_structured());
        }
        // Text parsers never fail; the old text view reads structured output as lines.
        assert!(matches!(Parser::Lines.read("x"), Ok(Parsed::Text(_))));
        assert_eq!(Parser::Json.parse("[\n{}\n]").rows.len(), 3);
        let error = Parser::Json.read("[{]").unwrap_err();
        assert_eq!(error.to_string(), "line 1 column 3: key must be a string");
    }

    #[test]
    fn changed_and_rare_rows_in_json() {
        let columns = |pairs: &[(&str, &str)]| {
            Row::Columns(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        let diff = CommandDiff {
            command: "ports".into(),
            changed: vec![ChangedRow {
                key: columns(&[("port", "22")]),
                before: columns(&[("port", "22"), ("path", "/usr/sbin/sshd")]),
                after: columns(&[("port", "22"), ("path", "/tmp/sshd")]),
                columns: vec!["path".into()],
            }],
            rare: vec![RareRow {
                row: "nc -l".into(),
                hosts: 2,
            }],
            ..CommandDiff::default()
        };
        assert!(diff.differs());
        let json = serde_json::to_value(&diff).unwrap();
        assert_eq!(json["changed"][0]["after"]["path"], "/tmp/sshd");
        assert_eq!(
            json["rare"][0],
            serde_json::json!({"row": "nc -l", "hosts": 2})
        );
        // An older report, without the new fields, still reads; empty ones are left out.
        let old: CommandDiff =
            serde_json::from_str(r#"{"command":"c","score":0,"added":[],"removed":[]}"#).unwrap();
        assert!(!old.differs());
        let text = serde_json::to_string(&old).unwrap();
        assert!(
            !text.contains("changed") && !text.contains("rare"),
            "{text}"
        );
        let report: Report = serde_json::from_str(r#"{"analysis":"a","hosts":[]}"#).unwrap();
        assert_eq!(report.fleet_size, None);
    }

    #[test]
    fn separator_columns() {
        let parser = Parser::Columns {
            header: false,
            separator: Some(":".into()),
            max_columns: None,
        };
        assert_eq!(parser.parse("root:x:0").rows, vec![vec!["root", "x", "0"]]);
    }
}
