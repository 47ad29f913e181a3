//! The call protocol between host and plugin: which methods each component kind answers, since
//! which API version, and the document each method takes and returns.
//!
//! A call is a method name and a JSON document in, and a JSON document (or an error) out. Nothing
//! here does I/O or knows how a call travels: the same call crosses the in-process boundary
//! ([`ffi`](crate::ffi)) or a pipe to an isolated child process unchanged.
//!
//! Growing the protocol within a series (see `docs/abi.md` in the diffy repository): append a
//! [`MethodSpec`] with the new release as `since`, add a trait method with a default
//! implementation, and dispatch it in the export layer. Documents only gain optional fields.
//! A host calls a method only when the component's manifest lists it, so an older plugin is never
//! sent a method it does not know; a newer plugin's extra methods are simply not called.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::documents::{AnalysisInput, Command, Record, RecordStatus, RunInfo, TargetInfo};
use crate::manifest::ComponentKind;

/// One method of one component kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodSpec {
    /// The component kind that answers it.
    pub kind: ComponentKind,
    /// The method's name, as sent in a call.
    pub name: &'static str,
    /// The `diffy-plugin-api` release that added it.
    pub since: &'static str,
}

const fn method(kind: ComponentKind, name: &'static str, since: &'static str) -> MethodSpec {
    MethodSpec { kind, name, since }
}

/// Every method of this API release, by kind, in the order they were added.
pub const METHODS: &[MethodSpec] = &[
    method(ComponentKind::CliCommand, "run", "0.2.0"),
    method(ComponentKind::Target, "get", "0.2.0"),
    method(ComponentKind::Payload, "generate", "0.2.0"),
    method(ComponentKind::Collection, "get", "0.2.0"),
    method(ComponentKind::Persistence, "get", "0.2.0"),
    method(ComponentKind::Persistence, "save", "0.2.0"),
    method(ComponentKind::Persistence, "list", "0.2.0"),
    method(ComponentKind::Analysis, "run", "0.2.0"),
    method(ComponentKind::Persistence, "save_many", "0.2.1"),
    method(ComponentKind::Persistence, "get_many", "0.2.1"),
    method(ComponentKind::Persistence, "create_run", "0.2.1"),
    method(ComponentKind::Persistence, "append_records", "0.2.1"),
    method(ComponentKind::Persistence, "finish_run", "0.2.1"),
    method(ComponentKind::Persistence, "save_baseline", "0.2.1"),
    method(ComponentKind::Persistence, "list_runs", "0.2.1"),
    method(ComponentKind::Analysis, "begin", "0.2.1"),
    method(ComponentKind::Analysis, "feed", "0.2.1"),
    method(ComponentKind::Analysis, "finish", "0.2.1"),
    method(ComponentKind::Collection, "get_lines", "0.2.2"),
    method(ComponentKind::Persistence, "append_lines", "0.2.2"),
    method(ComponentKind::Analysis, "feed_lines", "0.2.2"),
];

/// The methods a component of `kind` answers in this API release, oldest first.
pub fn methods_of(kind: ComponentKind) -> impl Iterator<Item = &'static MethodSpec> {
    METHODS.iter().filter(move |m| m.kind == kind)
}

/// The method `name` of `kind`, if this API release knows it.
pub fn method_spec(kind: ComponentKind, name: &str) -> Option<&'static MethodSpec> {
    METHODS.iter().find(|m| m.kind == kind && m.name == name)
}

/// The services a host offers every activated component, in the other direction: called by name
/// with a JSON document, like component methods. A plugin built against a newer release that
/// calls a service this host lacks gets [`CallStatus::NO_SUCH_METHOD`](crate::ffi::CallStatus)
/// and degrades (a log line or a progress step is dropped).
pub mod services {
    use serde::{Deserialize, Serialize};

    /// `log`: a message for the host's log, under the plugin's name. Returns nothing.
    pub const LOG: &str = "log";
    /// `data_dir`: the plugin's state directory. Returns a [`DataDir`].
    pub const DATA_DIR: &str = "data_dir";
    /// `progress_start`: start or restart a progress bar. Returns nothing.
    pub const PROGRESS_START: &str = "progress_start";
    /// `progress_advance`: advance the progress bar. Returns nothing.
    pub const PROGRESS_ADVANCE: &str = "progress_advance";
    /// `progress_finish`: finish and clear the progress bar. Returns nothing.
    pub const PROGRESS_FINISH: &str = "progress_finish";

    /// The input of [`LOG`].
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Log {
        /// `debug`, `info`, `warn` or `error`.
        pub level: LogLevel,
        /// The message.
        pub message: String,
    }

    /// The severity of a logged message.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum LogLevel {
        /// Fine-grained detail (`-vv`).
        Debug,
        /// Progress worth seeing with `-v`.
        Info,
        /// Something the user should see.
        Warn,
        /// A failure the plugin recovered from.
        Error,
        /// A level introduced by a newer release; logged as info.
        #[serde(other)]
        Unknown,
    }

    /// The output of [`DATA_DIR`].
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct DataDir {
        /// `<config dir>/data/<plugin name>`; it may not exist yet.
        pub path: String,
    }

    /// The input of [`PROGRESS_START`].
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct ProgressStart {
        /// How many steps make the whole.
        pub total: u64,
        /// What is progressing.
        pub message: String,
    }

    /// The input of [`PROGRESS_ADVANCE`].
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct ProgressAdvance {
        /// How many steps were made.
        pub steps: u64,
    }
}

/// `cli_command.run`: the arguments after the namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunArgs {
    /// `["add", "--spoons", "2"]`.
    #[serde(default)]
    pub args: Vec<String>,
}

/// `cli_command.run`'s answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitCode {
    /// The process exit code.
    pub exit_code: i32,
}

/// `target.get`: resolve a key into targets. Answer: an array of [`TargetInfo`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetGet<'a> {
    /// The target key (a host name, a directory, an inventory file…).
    #[serde(borrow)]
    pub key: Cow<'a, str>,
    /// The incident id, where one exists.
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub incident: Option<Cow<'a, str>>,
}

/// `payload.generate`: the commands to collect. Answer: an array of [`Command`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayloadGenerate<'a> {
    /// The incident id, where one exists.
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub incident: Option<Cow<'a, str>>,
    /// The targets the commands are for (since 0.2.1; a host before it sends none), for a
    /// payload whose commands depend on them, such as one that replays what evidence holds.
    #[serde(default, skip_serializing_if = "<[_]>::is_empty")]
    pub targets: Cow<'a, [TargetInfo]>,
}

/// `collection.get`: run commands on targets. Answer: an array of
/// [`Record`](crate::documents::Record), one per target and command.
///
/// `collection.get_lines` (since 0.2.2) takes the same request and answers the same records as
/// JSON Lines ([`record_lines`]), so the host splits them at line ends instead of scanning an
/// array whose strings hold the commands' whole output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionGet<'a> {
    /// The targets to collect.
    pub targets: Cow<'a, [TargetInfo]>,
    /// The commands to run on each.
    pub commands: Cow<'a, [Command]>,
    /// The incident id, where one exists.
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub incident: Option<Cow<'a, str>>,
}

/// `persistence.get`: the document under a key. Answer: a [`Document`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistenceGet<'a> {
    /// The key (`baseline/<key>/<command>`, `report/<run>`, …).
    #[serde(borrow)]
    pub key: Cow<'a, str>,
}

/// `persistence.get`'s answer: the document, or `null` when nothing is saved under the key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Document<'a> {
    /// The saved JSON document, as it was saved.
    #[serde(borrow)]
    pub document: Option<&'a RawValue>,
}

/// `persistence.save`: save a JSON document under a key, replacing what was there. Answers
/// nothing (an empty document).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PersistenceSave<'a> {
    /// The key.
    #[serde(borrow)]
    pub key: Cow<'a, str>,
    /// The JSON document, embedded as it is.
    #[serde(borrow)]
    pub document: &'a RawValue,
}

/// `persistence.list`: the keys under a prefix. Answer: a sorted array of strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistenceList<'a> {
    /// The prefix (`""` lists everything).
    #[serde(borrow)]
    pub prefix: Cow<'a, str>,
}

/// `persistence.save_many` (since 0.2.1): save many documents at once, in order. Answers nothing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PersistenceSaveMany<'a> {
    /// The documents with their keys.
    #[serde(borrow)]
    pub items: Vec<PersistenceSave<'a>>,
}

/// `persistence.get_many` (since 0.2.1): the documents under many keys. Answer: a
/// [`Documents`], in the order of the keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistenceGetMany<'a> {
    /// The keys.
    #[serde(borrow)]
    pub keys: Vec<Cow<'a, str>>,
}

/// `persistence.get_many`'s answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Documents<'a> {
    /// One entry per key asked for, in order: the document, or `null`.
    #[serde(borrow)]
    pub documents: Vec<Option<&'a RawValue>>,
}

/// `analysis.run`: compare the collected records. Answer: a [`Report`](crate::documents::Report).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalysisRun<'a> {
    /// The commands, records and (for analyses that use one) the baseline.
    pub input: Cow<'a, AnalysisInput>,
    /// The incident id, where one exists.
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub incident: Option<Cow<'a, str>>,
}

/// `persistence.create_run` (since 0.2.1): reserve a run id, exclusively. Answer: a
/// [`RunCreated`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistenceCreateRun<'a> {
    /// The run, as it starts ([`RunStatus::Running`](crate::RunStatus::Running)).
    pub run: Cow<'a, RunInfo>,
}

/// `persistence.create_run`'s answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCreated {
    /// False when a run of that id already exists (nothing was written): the host picks another
    /// id.
    pub created: bool,
}

/// A batch of a run's records (since 0.2.1): what `persistence.append_records` and
/// `analysis.feed` both take, so that one encoded batch serves both. Answers nothing.
///
/// Each batch holds every record of the targets it covers (one per command), and a target is in
/// one batch only.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordBatch<'a> {
    /// The run id.
    #[serde(borrow)]
    pub run: Cow<'a, str>,
    /// The records, each a [`Record`] as JSON.
    #[serde(borrow)]
    pub records: Vec<&'a RawValue>,
}

/// The first line of a batch sent as JSON Lines (since 0.2.2), to `persistence.append_lines` and
/// `analysis.feed_lines`: the run, and each following line's target, command and status, so a
/// store files the records without reading them and an analysis splits them at line ends. Read
/// and written with [`read_batch_lines`] and [`encode_batch_lines`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchHead<'a> {
    /// The run id.
    #[serde(borrow)]
    pub run: Cow<'a, str>,
    /// One entry per record line, in order.
    #[serde(borrow)]
    pub records: Vec<RecordHead<'a>>,
}

/// The ids and status of one record of a [`BatchHead`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordHead<'a> {
    /// The record's target id.
    #[serde(borrow)]
    pub target: Cow<'a, str>,
    /// The record's command id.
    #[serde(borrow)]
    pub command: Cow<'a, str>,
    /// How the attempt ended.
    pub status: RecordStatus,
}

/// The lines of records sent as JSON Lines (since 0.2.2): each a [`Record`] as compact JSON on a
/// line of its own, every line ended by `\n`; an empty text has none. The lines are not parsed
/// here. A JSON text holds a line break only as whitespace between tokens (inside a string it is
/// written `\n`), so compact JSON never spans two lines and splitting at line ends needs no JSON
/// parsing — much cheaper than scanning an array whose strings hold whole command outputs.
pub fn record_lines(text: &str) -> impl Iterator<Item = &str> {
    crate::rows::split_lines(text)
}

/// Append `record` (a record's compact JSON) and its line end to `out`, as [`record_lines`]
/// reads them.
pub fn push_record_line(out: &mut Vec<u8>, record: &str) {
    out.extend_from_slice(record.as_bytes());
    out.push(b'\n');
}

/// The batch of run `run` holding `records` (each record's head and compact JSON) as JSON Lines:
/// its [`BatchHead`] on the first line, then one record per line.
pub fn encode_batch_lines<'r, I>(run: &str, records: I) -> Vec<u8>
where
    I: IntoIterator<Item = (RecordHead<'r>, &'r str)>,
    I::IntoIter: Clone,
{
    let records = records.into_iter();
    let head = BatchHead {
        run: Cow::Borrowed(run),
        records: records.clone().map(|(head, _)| head).collect(),
    };
    let mut out = serde_json::to_vec(&head).expect("batch heads serialise");
    out.push(b'\n');
    out.reserve(records.clone().map(|(_, json)| json.len() + 1).sum());
    for (_, json) in records {
        push_record_line(&mut out, json);
    }
    out
}

/// Split a batch sent as JSON Lines into its head and its record lines, checking that there is
/// one line per record the head names. The lines are not parsed.
pub fn read_batch_lines(input: &[u8]) -> Result<(BatchHead<'_>, Vec<&str>), String> {
    let text = std::str::from_utf8(input).map_err(|e| e.to_string())?;
    let (head, rest) = text
        .split_once('\n')
        .ok_or_else(|| "the batch has no head line".to_string())?;
    let head: BatchHead<'_> =
        serde_json::from_str(head).map_err(|e| format!("the batch's head line: {e}"))?;
    let lines: Vec<&str> = record_lines(rest).collect();
    if lines.len() != head.records.len() {
        return Err(format!(
            "the batch's head names {} records but {} lines follow it",
            head.records.len(),
            lines.len()
        ));
    }
    Ok((head, lines))
}

/// `persistence.finish_run` (since 0.2.1): save the run's report, if it has one, and its final
/// state, as one step: a reader sees the run complete with its report, or not complete. Answers
/// nothing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PersistenceFinishRun<'a> {
    /// The run as it ended ([`RunStatus::Complete`](crate::RunStatus::Complete) or
    /// [`RunStatus::Failed`](crate::RunStatus::Failed)).
    pub run: Cow<'a, RunInfo>,
    /// The report, a [`Report`](crate::Report) as JSON; none when the run failed.
    #[serde(default, borrow)]
    pub report: Option<&'a RawValue>,
}

/// `persistence.save_baseline` (since 0.2.1): the baseline of a target key, as one unit that
/// replaces the previous one whole. Answers nothing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PersistenceSaveBaseline<'a> {
    /// The target key (as given, not encoded).
    #[serde(borrow)]
    pub key: Cow<'a, str>,
    /// One record per command, each a [`Record`] as JSON.
    #[serde(borrow)]
    pub records: Vec<&'a RawValue>,
}

/// `persistence.list_runs` (since 0.2.1): the runs saved, oldest first. Answer: an array of
/// [`RunInfo`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistenceListRuns<'a> {
    /// Only the runs of this incident.
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub incident: Option<Cow<'a, str>>,
}

/// `analysis.begin` (since 0.2.1): start analysing a run whose records come in batches
/// (`analysis.feed`, a [`RecordBatch`]) until `analysis.finish`. Answers nothing; the component
/// keeps the run's state until `finish`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalysisBegin<'a> {
    /// The run id, which `feed` and `finish` name.
    #[serde(borrow)]
    pub run: Cow<'a, str>,
    /// The commands that are collected.
    pub commands: Cow<'a, [Command]>,
    /// The baseline records, for analyses that use one.
    #[serde(default)]
    pub baseline: Option<Cow<'a, [Record]>>,
    /// The incident id, where one exists.
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub incident: Option<Cow<'a, str>>,
}

/// `analysis.feed` as the analysis reads it: a [`RecordBatch`] with its records decoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalysisFeed {
    /// The run id.
    pub run: String,
    /// The records.
    pub records: Vec<Record>,
}

/// `analysis.finish` (since 0.2.1): every record was fed. Answer: the
/// [`Report`](crate::Report).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalysisFinish<'a> {
    /// The run id.
    #[serde(borrow)]
    pub run: Cow<'a, str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_is_known_once_and_no_newer_than_this_release() {
        let this = semver::Version::parse(crate::API_VERSION).unwrap();
        for (index, spec) in METHODS.iter().enumerate() {
            let since = semver::Version::parse(spec.since).unwrap();
            assert!(
                since <= this,
                "{} {} is from the future",
                spec.kind,
                spec.name
            );
            assert!(
                crate::is_api_compatible(&since, &this),
                "{} {} belongs to another series",
                spec.kind,
                spec.name
            );
            assert_eq!(
                METHODS.iter().position(|m| m == spec),
                Some(index),
                "{} {} is listed twice",
                spec.kind,
                spec.name
            );
        }
    }

    #[test]
    fn a_generate_request_without_targets_is_one_from_an_older_host() {
        let request: PayloadGenerate<'_> = serde_json::from_str(r#"{"incident":"IR-1"}"#).unwrap();
        assert!(request.targets.is_empty());
        let request = PayloadGenerate {
            targets: Cow::Owned(vec![TargetInfo::new("web-1")]),
            ..PayloadGenerate::default()
        };
        assert_eq!(
            serde_json::to_string(&request).unwrap(),
            r#"{"targets":[{"id":"web-1"}]}"#
        );
    }

    #[test]
    fn one_encoded_batch_is_both_an_append_and_a_feed() {
        let record = crate::Record::new("web-1", "ps", crate::RecordStatus::Ok, "a\n".into());
        let json = serde_json::to_string(&record).unwrap();
        let raw: &RawValue = serde_json::from_str(&json).unwrap();
        let batch = RecordBatch {
            run: Cow::Borrowed("r1"),
            records: vec![raw],
        };
        let text = serde_json::to_string(&batch).unwrap();
        let feed: AnalysisFeed = serde_json::from_str(&text).unwrap();
        assert_eq!((feed.run.as_str(), feed.records), ("r1", vec![record]));
    }

    #[test]
    fn a_batch_of_lines_is_split_without_parsing_its_records() {
        let records = [r#"{"target":"w1","stdout":"a\nb"}"#, r#"{"target":"w2"}"#];
        let head = |target| RecordHead {
            target: Cow::Borrowed(target),
            command: Cow::Borrowed("ps"),
            status: RecordStatus::Ok,
        };
        let batch =
            encode_batch_lines("r\n1", [(head("w1"), records[0]), (head("w2"), records[1])]);
        let (read, lines) = read_batch_lines(&batch).unwrap();
        assert_eq!(read.run, "r\n1");
        assert_eq!(read.records, [head("w1"), head("w2")]);
        assert_eq!(lines, records);
        let short = &batch[..batch.len() - records[1].len() - 1];
        assert_eq!(
            read_batch_lines(short).unwrap_err(),
            "the batch's head names 2 records but 1 lines follow it"
        );
        assert!(read_batch_lines(b"{}").is_err(), "no head line");
        let empty = encode_batch_lines("r", std::iter::empty());
        assert_eq!(read_batch_lines(&empty).unwrap().1.len(), 0);
    }

    #[test]
    fn requests_borrow_from_their_input() {
        let text = r#"{"key":"baseline/web-1/processes","document":{"a":[1,2]}}"#;
        let save: PersistenceSave<'_> = serde_json::from_str(text).unwrap();
        assert!(matches!(save.key, Cow::Borrowed(_)));
        assert_eq!(save.document.get(), r#"{"a":[1,2]}"#);
    }
}
