//! Activated components as the rest of diffy sees them: a [`ComponentHandle`] makes calls by
//! method name with JSON documents, checks each method against the component's manifest first,
//! and turns failures into one-line [`Error::Plugin`] messages naming plugin and component.
//!
//! How a call travels is a [`Transport`]: into the library in this process (the loader's), or over
//! a pipe to a sandboxed child. The typed handles below ([`TargetHandle`], …) speak the documents
//! of `diffy-plugin-api` and are the same whichever transport carries them.

use std::borrow::Cow;

use diffy_plugin_api::protocol::{self, Document, Documents};
use diffy_plugin_api::{
    AnalysisInput, Command, ComponentKind, Manifest, Record, RecordStatus, Report, RunInfo,
    TargetInfo, keys,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::{Error, Result};
use crate::records::{EncodedBatch, RawRecord, json_array};

/// Why a call produced no document, as the transport reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallFailure {
    /// The component returned an error.
    Error(String),
    /// The component panicked (the panic was caught on its side).
    Panicked(String),
    /// The component does not know the method.
    NoSuchMethod(String),
    /// The component could not be reached or died (an isolated plugin's crash).
    Lost(String),
}

/// Carries one call to a component and its answer back.
pub trait Transport: Send + Sync {
    /// Call `method` with the JSON document `input`; the answer's JSON document (empty for
    /// "nothing") or why there is none.
    fn call(&self, method: &str, input: &[u8]) -> Result<Vec<u8>, CallFailure>;

    /// Whether the transport ends a call that overruns its deadline itself (an isolated plugin's
    /// runner is killed), so callers need not abandon it.
    fn ends_overruns(&self) -> bool {
        false
    }

    /// Call `method` with `input`, which other calls send too (`shared` says how many): a
    /// transport that carries their inputs to one process sends it there once. By default a call
    /// like any other.
    fn call_shared(
        &self,
        method: &str,
        input: &[u8],
        shared: &SharedInput,
    ) -> Result<Vec<u8>, CallFailure> {
        let _ = shared;
        self.call(method, input)
    }

    /// The process that serves the calls, when it is not this one: calls served by the same
    /// process may share their inputs ([`Transport::call_shared`]).
    fn served_by(&self) -> Option<usize> {
        None
    }

    /// Call `method`, whose answer is records as JSON Lines, and keep the answer where the calls
    /// are served, under `keep` (unique in this diffy process), answering its [`KeptRecords`]
    /// as JSON: a batch put together there later names its lines ([`LinePart::Kept`]) instead
    /// of sending them back. Only transports that have a [`served_by`](Self::served_by) can.
    fn call_keeping(&self, method: &str, input: &[u8], keep: u64) -> Result<Vec<u8>, CallFailure> {
        let _ = (input, keep);
        Err(CallFailure::Error(format!(
            "{method}: this transport cannot keep answers"
        )))
    }
}

/// Where some lines of a batch put together in the runner come from (a [`SharedInput`]'s `parts`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum LinePart {
    /// The next `count` lines of the payload.
    Sent {
        /// How many.
        count: usize,
    },
    /// Lines `first..first + count` of the answer kept as `answer`.
    Kept {
        /// The kept answer's id.
        answer: u64,
        /// Its first line taken.
        first: usize,
        /// How many.
        count: usize,
    },
}

/// What [`Transport::call_keeping`] answers: each kept record's ids, status and length, or why
/// the answer is not records (then nothing is kept).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptRecords {
    /// One per line of the answer, in order.
    pub records: Vec<KeptHead>,
    /// Why the answer is not records as JSON Lines: `record 3: missing field ...`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub malformed: Option<String>,
}

/// One record kept in the runner, as the host files it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptHead {
    /// Its target id.
    pub target: String,
    /// Its command id.
    pub command: String,
    /// How the attempt ended.
    pub status: RecordStatus,
    /// The length of its line, without the line end.
    pub len: usize,
}

/// An input that several calls send — a batch of records for both the persistence and the
/// analysis — so that a transport serving those calls from one process sends it there once.
#[derive(Debug)]
pub struct SharedInput {
    /// Unique among the inputs of this diffy process.
    pub id: u64,
    /// How many calls send it.
    pub uses: u32,
    /// Set by the first call that sent it.
    pub sent: std::sync::atomic::AtomicBool,
    /// When some of its lines are answers kept where the calls are served: how to put the
    /// batch together there from the lines sent (its head line, then the records it holds
    /// itself) and the kept ones.
    pub parts: Option<Vec<LinePart>>,
}

/// A new id for an input or answer kept where calls are served, unique in this diffy process.
pub fn next_kept_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl SharedInput {
    /// An input that `uses` calls will send, put together from `parts` where they are served
    /// when some of its lines are kept there.
    pub fn new(uses: u32, parts: Option<Vec<LinePart>>) -> Self {
        SharedInput {
            id: next_kept_id(),
            uses,
            sent: std::sync::atomic::AtomicBool::new(false),
            parts,
        }
    }
}

/// Which component of which plugin a handle belongs to, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    /// The plugin's name.
    pub plugin: String,
    /// The component's kind.
    pub kind: ComponentKind,
    /// The component's name.
    pub name: String,
}

impl Label {
    /// Why this component could not be activated, in one line.
    pub fn activation_failed(&self, failure: CallFailure) -> Error {
        let Label { plugin, kind, name } = self;
        Error::Plugin(match failure {
            CallFailure::Panicked(message) => format!(
                "plugin {plugin} panicked while activating {kind} {name}: {}",
                one_line(&message)
            ),
            CallFailure::Error(message) | CallFailure::NoSuchMethod(message) => format!(
                "plugin {plugin} failed to activate {kind} {name}: {}",
                one_line(&message)
            ),
            CallFailure::Lost(message) => one_line(&message),
        })
    }

    /// A malformed answer from this component.
    pub fn malformed(&self, fault: impl std::fmt::Display) -> Error {
        Error::Plugin(format!(
            "plugin {} returned a malformed document from {} {}: {fault}",
            self.plugin, self.kind, self.name
        ))
    }
}

/// An activated component: calls by method name, checked against its manifest.
pub struct ComponentHandle {
    /// Which plugin and component this is.
    pub label: Label,
    plugin_version: String,
    api_version: String,
    methods: Vec<String>,
    transport: Box<dyn Transport>,
}

impl ComponentHandle {
    /// A handle for the component `label` of the plugin whose manifest is `manifest`, reached
    /// through `transport`.
    pub fn new(label: Label, manifest: &Manifest, transport: Box<dyn Transport>) -> Self {
        let methods = manifest
            .component(label.kind, &label.name)
            .map(|c| c.methods.clone())
            .unwrap_or_default();
        ComponentHandle {
            label,
            plugin_version: manifest.version.clone(),
            api_version: manifest.api_version.clone(),
            methods,
            transport,
        }
    }

    /// Whether calls that overrun their deadline are ended by the transport itself.
    pub fn ends_overruns(&self) -> bool {
        self.transport.ends_overruns()
    }

    /// Whether the component answers `method`.
    pub fn supports(&self, method: &str) -> bool {
        self.methods.iter().any(|m| m == method)
    }

    /// Why `method` cannot be called on this component, in one line that says what to rebuild.
    fn missing_method(&self, method: &str) -> Error {
        let Label { plugin, kind, name } = &self.label;
        Error::Plugin(match protocol::method_spec(*kind, method) {
            Some(spec) => format!(
                "{plugin} {} was built against diffy-plugin-api {} and has no method `{method}` \
                 in {kind} `{name}`; rebuild it against {} or newer",
                self.plugin_version, self.api_version, spec.since
            ),
            None => format!(
                "{kind} `{name}` of {plugin} {} has no method `{method}` (it answers: {})",
                self.plugin_version,
                self.methods.join(", ")
            ),
        })
    }

    /// The process that serves this component's calls, when it is not this one.
    pub fn served_by(&self) -> Option<usize> {
        self.transport.served_by()
    }

    /// Call `method` with a raw JSON document; the answer's raw JSON document.
    pub fn call_raw(&self, method: &str, input: &[u8]) -> Result<Vec<u8>> {
        self.call_raw_shared(method, input, None)
    }

    /// Call `method` with a raw JSON document that other calls may send too (`shared`).
    pub fn call_raw_shared(
        &self,
        method: &str,
        input: &[u8],
        shared: Option<&SharedInput>,
    ) -> Result<Vec<u8>> {
        if !self.supports(method) {
            return Err(self.missing_method(method));
        }
        let answer = match shared {
            Some(shared) => self.transport.call_shared(method, input, shared),
            None => self.transport.call(method, input),
        };
        answer.map_err(|failure| self.failed(method, failure))
    }

    /// Call `method`, whose answer is records as JSON Lines, keeping them where the calls are
    /// served ([`Transport::call_keeping`]); what was kept.
    pub fn call_raw_keeping(&self, method: &str, input: &[u8], keep: u64) -> Result<KeptRecords> {
        if !self.supports(method) {
            return Err(self.missing_method(method));
        }
        let answer = self
            .transport
            .call_keeping(method, input, keep)
            .map_err(|failure| self.failed(method, failure))?;
        self.decode(&answer)
    }

    /// A failed call of `method` as the one-line error it is.
    fn failed(&self, method: &str, failure: CallFailure) -> Error {
        let Label { plugin, kind, name } = &self.label;
        Error::Plugin(match failure {
            CallFailure::Error(message) => {
                format!(
                    "plugin {plugin} failed in {kind} {name}: {}",
                    one_line(&message)
                )
            }
            CallFailure::Panicked(message) => {
                format!(
                    "plugin {plugin} panicked in {kind} {name}: {}",
                    one_line(&message)
                )
            }
            CallFailure::NoSuchMethod(message) => format!(
                "plugin {plugin} lists method `{method}` for {kind} {name} but does not \
                 answer it: {}",
                one_line(&message)
            ),
            CallFailure::Lost(message) => one_line(&message),
        })
    }

    /// Call `method` with `input` encoded as JSON, decoding the answer as `O`.
    pub fn call<I: Serialize + ?Sized, O: DeserializeOwned>(
        &self,
        method: &str,
        input: &I,
    ) -> Result<O> {
        let output = self.call_raw(method, &encode(input))?;
        self.decode(&output)
    }

    /// Decode an answer, naming the component when it is malformed.
    fn decode<O: DeserializeOwned>(&self, output: &[u8]) -> Result<O> {
        self.decode_borrowed(output)
    }
}

/// A document as JSON bytes. Documents are plain data whose serialisation cannot fail.
fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("documents serialise")
}

/// A message in one line: runs of whitespace (newlines included) become one space.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn incident(incident: Option<&str>) -> Option<Cow<'_, str>> {
    incident.map(Cow::Borrowed)
}

/// A typed handle ([`TargetHandle`], …) and the component it speaks to.
pub trait Typed {
    /// The component.
    fn component(&self) -> &ComponentHandle;
}

macro_rules! typed_handle {
    ($($(#[$doc:meta])* $name:ident;)*) => {$(
        $(#[$doc])*
        pub struct $name {
            /// The component.
            pub handle: ComponentHandle,
            /// Which plugin and component this is.
            pub label: Label,
        }

        impl From<ComponentHandle> for $name {
            fn from(handle: ComponentHandle) -> Self {
                $name { label: handle.label.clone(), handle }
            }
        }

        impl Typed for $name {
            fn component(&self) -> &ComponentHandle {
                &self.handle
            }
        }
    )*};
}

typed_handle! {
    /// An activated CLI command.
    CliCommandHandle;
    /// An activated Target component.
    TargetHandle;
    /// An activated Payload component.
    PayloadHandle;
    /// An activated Collection component.
    CollectionHandle;
    /// An activated Persistence component.
    PersistenceHandle;
    /// An activated Analysis component.
    AnalysisHandle;
}

impl CliCommandHandle {
    /// Run with the arguments after the namespace; returns the exit code.
    pub fn run(&self, args: &[String]) -> Result<i32> {
        let args = protocol::RunArgs {
            args: args.to_vec(),
        };
        let answer: protocol::ExitCode = self.handle.call("run", &args)?;
        Ok(answer.exit_code)
    }
}

impl TargetHandle {
    /// Resolve `key` into targets.
    pub fn get(&self, key: &str, incident_id: Option<&str>) -> Result<Vec<TargetInfo>> {
        let request = protocol::TargetGet {
            key: Cow::Borrowed(key),
            incident: incident(incident_id),
        };
        self.handle.call("get", &request)
    }
}

impl PayloadHandle {
    /// The commands to collect from `targets`.
    pub fn generate(
        &self,
        targets: &[TargetInfo],
        incident_id: Option<&str>,
    ) -> Result<Vec<Command>> {
        let request = protocol::PayloadGenerate {
            incident: incident(incident_id),
            targets: Cow::Borrowed(targets),
        };
        self.handle.call("generate", &request)
    }
}

impl CollectionHandle {
    /// Collect records for `targets` × `commands`.
    pub fn get(
        &self,
        targets: &[TargetInfo],
        commands: &[Command],
        incident_id: Option<&str>,
    ) -> Result<Vec<Record>> {
        let request = protocol::CollectionGet {
            targets: Cow::Borrowed(targets),
            commands: Cow::Borrowed(commands),
            incident: incident(incident_id),
        };
        self.handle.call("get", &request)
    }
}

impl PersistenceHandle {
    /// The JSON text saved under `key`.
    pub fn get(&self, key: &str) -> Result<Option<String>> {
        let request = protocol::PersistenceGet {
            key: Cow::Borrowed(key),
        };
        let output = self.handle.call_raw("get", &encode(&request))?;
        let answer: Document<'_> = self.handle.decode_borrowed(&output)?;
        Ok(answer.document.map(|d| d.get().to_string()))
    }

    /// Save the JSON text `document` under `key` (checked to be JSON first).
    pub fn save(&self, key: &str, document: &str) -> Result<()> {
        self.save_document(key, raw(document)?)
    }

    /// Save a JSON document under `key`.
    pub fn save_document(&self, key: &str, document: &RawValue) -> Result<()> {
        let request = protocol::PersistenceSave {
            key: Cow::Borrowed(key),
            document,
        };
        self.handle.call_raw("save", &encode(&request)).map(drop)
    }

    /// Keys under `prefix`.
    pub fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let request = protocol::PersistenceList {
            prefix: Cow::Borrowed(prefix),
        };
        self.handle.call("list", &request)
    }

    /// Save many `(key, document)` pairs: in one call where the plugin has `save_many`, else
    /// one `save` each (a plugin built before 0.2.1).
    pub fn save_many(&self, items: &[(&str, &RawValue)]) -> Result<()> {
        if !self.handle.supports("save_many") {
            return items
                .iter()
                .try_for_each(|(key, doc)| self.save_document(key, doc));
        }
        let items = items
            .iter()
            .map(|(key, document)| protocol::PersistenceSave {
                key: Cow::Borrowed(*key),
                document,
            })
            .collect();
        let request = protocol::PersistenceSaveMany { items };
        self.handle
            .call_raw("save_many", &encode(&request))
            .map(drop)
    }

    /// The JSON texts under `keys`, in order: in one call where the plugin has `get_many`, else
    /// one `get` each.
    pub fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<String>>> {
        if !self.handle.supports("get_many") {
            return keys.iter().map(|key| self.get(key)).collect();
        }
        let request = protocol::PersistenceGetMany {
            keys: keys.iter().map(|k| Cow::Borrowed(*k)).collect(),
        };
        let output = self.handle.call_raw("get_many", &encode(&request))?;
        let answer: Documents<'_> = self.handle.decode_borrowed(&output)?;
        if answer.documents.len() != keys.len() {
            return Err(self.label.malformed(format!(
                "get_many returned {} documents for {} keys",
                answer.documents.len(),
                keys.len()
            )));
        }
        Ok(answer
            .documents
            .into_iter()
            .map(|d| d.map(|d| d.get().to_string()))
            .collect())
    }
}

/// Runs and baselines as units (0.2.1), each with the fallback for a plugin built before it: the
/// same documents saved one by one under their keys (`diffy_plugin_api::keys`).
impl PersistenceHandle {
    /// Reserve run `run.id`; false when a run of that id exists. Without `create_run`, the host
    /// looks under `run/<id>` first (two hosts racing for one random id could both pass).
    pub fn create_run(&self, run: &RunInfo) -> Result<bool> {
        if !self.handle.supports("create_run") {
            if self.get(&keys::run_key(&run.id))?.is_some() {
                return Ok(false);
            }
            self.save_document(&keys::run_key(&run.id), &to_raw(run))?;
            return Ok(true);
        }
        let request = protocol::PersistenceCreateRun {
            run: Cow::Borrowed(run),
        };
        let answer: protocol::RunCreated = self.handle.call("create_run", &request)?;
        Ok(answer.created)
    }

    /// Append a batch of the run's records (one `save_many` without `append_records`).
    pub fn append_records(&self, batch: &EncodedBatch) -> Result<()> {
        if !self.handle.supports("append_records") {
            let keys: Vec<String> = batch
                .records
                .iter()
                .map(|r| keys::record_key(&batch.run, &r.target, &r.command))
                .collect();
            let items: Vec<(&str, &RawValue)> = keys
                .iter()
                .zip(&batch.records)
                .map(|(key, record)| (key.as_str(), record.raw_value()))
                .collect();
            return self.save_many(&items);
        }
        if self.handle.supports("append_lines") {
            return self
                .handle
                .call_raw_shared("append_lines", batch.lines(), batch.shared_lines.as_ref())
                .map(drop);
        }
        self.handle
            .call_raw("append_records", batch.json())
            .map(drop)
    }

    /// Save the report, if any, and the run as it ended (the report, then the run, without
    /// `finish_run`).
    pub fn finish_run(&self, run: &RunInfo, report: Option<&RawValue>) -> Result<()> {
        if !self.handle.supports("finish_run") {
            if let Some(report) = report {
                self.save_document(&keys::report_key(&run.id), report)?;
            }
            return self.save_document(&keys::run_key(&run.id), &to_raw(run));
        }
        let request = protocol::PersistenceFinishRun {
            run: Cow::Borrowed(run),
            report,
        };
        self.handle
            .call_raw("finish_run", &encode(&request))
            .map(drop)
    }

    /// Save the baseline of target key `key` as one unit (its records one by one without
    /// `save_baseline`, which cannot remove an older baseline's other commands).
    pub fn save_baseline(&self, key: &str, records: &[RawRecord]) -> Result<()> {
        if !self.handle.supports("save_baseline") {
            let keys: Vec<String> = records
                .iter()
                .map(|r| keys::baseline_key(key, &r.command))
                .collect();
            let items: Vec<(&str, &RawValue)> = keys
                .iter()
                .zip(records)
                .map(|(key, record)| (key.as_str(), record.raw_value()))
                .collect();
            return self.save_many(&items);
        }
        let request = protocol::PersistenceSaveBaseline {
            key: Cow::Borrowed(key),
            records: records.iter().map(RawRecord::raw_value).collect(),
        };
        self.handle
            .call_raw("save_baseline", &encode(&request))
            .map(drop)
    }

    /// The runs saved, of `incident` only when given, oldest first (the documents under `run/`
    /// without `list_runs`).
    pub fn list_runs(&self, incident: Option<&str>) -> Result<Vec<RunInfo>> {
        if !self.handle.supports("list_runs") {
            let keys = self.list("run/")?;
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            let mut runs = Vec::new();
            for (key, text) in keys.iter().zip(self.get_many(&keys)?) {
                let Some(text) = text else { continue };
                let run: RunInfo = serde_json::from_str(&text)
                    .map_err(|e| self.label.malformed(format!("{key} is not a run: {e}")))?;
                if incident.is_none_or(|incident| run.incident.as_deref() == Some(incident)) {
                    runs.push(run);
                }
            }
            runs.sort_by(|a, b| a.id.cmp(&b.id));
            return Ok(runs);
        }
        let request = protocol::PersistenceListRuns {
            incident: incident.map(Cow::Borrowed),
        };
        self.handle.call("list_runs", &request)
    }
}

impl AnalysisHandle {
    /// Whether the analysis takes its records in batches (`begin`, `feed`, `finish`).
    pub fn is_incremental(&self) -> bool {
        ["begin", "feed", "finish"]
            .iter()
            .all(|method| self.handle.supports(method))
    }

    /// Start analysing run `run`.
    pub fn begin(
        &self,
        run: &str,
        commands: &[Command],
        baseline: Option<&[Record]>,
        incident_id: Option<&str>,
    ) -> Result<()> {
        let request = protocol::AnalysisBegin {
            run: Cow::Borrowed(run),
            commands: Cow::Borrowed(commands),
            baseline: baseline.map(Cow::Borrowed),
            incident: incident(incident_id),
        };
        self.handle.call_raw("begin", &encode(&request)).map(drop)
    }

    /// Feed a batch of the run's records.
    pub fn feed(&self, batch: &EncodedBatch) -> Result<()> {
        if self.handle.supports("feed_lines") {
            return self
                .handle
                .call_raw_shared("feed_lines", batch.lines(), batch.shared_lines.as_ref())
                .map(drop);
        }
        self.handle.call_raw("feed", batch.json()).map(drop)
    }

    /// Every record was fed: the report.
    pub fn finish(&self, run: &str) -> Result<Report> {
        let request = protocol::AnalysisFinish {
            run: Cow::Borrowed(run),
        };
        self.handle.call("finish", &request)
    }

    /// Run the analysis over records kept as JSON (for an analysis that is not incremental),
    /// encoding the request by concatenation.
    pub fn run_records<'r>(
        &self,
        commands: &[Command],
        records: impl IntoIterator<Item = &'r RawRecord>,
        baseline: Option<&[Record]>,
        incident_id: Option<&str>,
    ) -> Result<Report> {
        let mut text = String::from(r#"{"input":{"commands":"#);
        text.push_str(&serde_json::to_string(commands).expect("commands serialise"));
        text.push_str(r#","records":"#);
        text.push_str(&json_array(records));
        text.push_str(r#","baseline":"#);
        text.push_str(&serde_json::to_string(&baseline).expect("records serialise"));
        text.push('}');
        if let Some(incident) = incident_id {
            text.push_str(r#","incident":"#);
            text.push_str(&serde_json::to_string(incident).expect("strings serialise"));
        }
        text.push('}');
        let output = self.handle.call_raw("run", text.as_bytes())?;
        drop(text);
        self.handle.decode(&output)
    }

    /// Run the analysis. The input is dropped once encoded, so the records are not held twice.
    pub fn run(&self, input: AnalysisInput, incident_id: Option<&str>) -> Result<Report> {
        let request = protocol::AnalysisRun {
            input: Cow::Owned(input),
            incident: incident(incident_id),
        };
        let encoded = encode(&request);
        drop(request);
        let output = self.handle.call_raw("run", &encoded)?;
        drop(encoded);
        self.handle.decode(&output)
    }
}

impl ComponentHandle {
    /// Decode an answer that borrows from `output`. The text is checked as UTF-8 once, up front,
    /// which is faster than serde_json checking each string of a large document as it goes.
    fn decode_borrowed<'a, O: serde::Deserialize<'a>>(&self, output: &'a [u8]) -> Result<O> {
        let text = std::str::from_utf8(output).map_err(|e| self.label.malformed(e))?;
        serde_json::from_str(text).map_err(|e| self.label.malformed(e))
    }
}

/// A document as raw JSON.
fn to_raw<T: Serialize>(value: &T) -> Box<RawValue> {
    serde_json::value::to_raw_value(value).expect("documents serialise")
}

/// `text` as a raw JSON document, or a usage error when it is not JSON.
fn raw(text: &str) -> Result<&RawValue> {
    serde_json::from_str(text)
        .map_err(|e| Error::Failure(format!("cannot save a document that is not JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use diffy_plugin_api::{Component, Plugin};
    use std::sync::Mutex;

    /// A transport that records calls and answers from a script.
    struct Scripted {
        calls: Mutex<Vec<(String, String)>>,
        answer: fn(&str) -> Result<Vec<u8>, CallFailure>,
    }

    impl Transport for Scripted {
        fn call(&self, method: &str, input: &[u8]) -> Result<Vec<u8>, CallFailure> {
            let input = String::from_utf8_lossy(input).into_owned();
            self.calls.lock().unwrap().push((method.to_string(), input));
            (self.answer)(method)
        }
    }

    fn persistence(api_version: &str, methods: &[&str]) -> (PersistenceHandle, &'static Scripted) {
        let mut manifest = Plugin::new("diffy-x", "0.3.0")
            .persistence(Component::named("x", "test"), |_| Ok(NoStore))
            .manifest()
            .clone();
        manifest.api_version = api_version.to_string();
        manifest.components[0].methods = methods.iter().map(|m| m.to_string()).collect();
        let transport: &'static Scripted = Box::leak(Box::new(Scripted {
            calls: Mutex::new(Vec::new()),
            answer: |method| match method {
                "get" => Ok(br#"{"document":{"a":1}}"#.to_vec()),
                "fail" => Err(CallFailure::Error("line one\nline two".into())),
                _ => Ok(Vec::new()),
            },
        }));
        struct Shared(&'static Scripted);
        impl Transport for Shared {
            fn call(&self, method: &str, input: &[u8]) -> Result<Vec<u8>, CallFailure> {
                self.0.call(method, input)
            }
        }
        let label = Label {
            plugin: "diffy-x".into(),
            kind: ComponentKind::Persistence,
            name: "x".into(),
        };
        let handle = ComponentHandle::new(label, &manifest, Box::new(Shared(transport)));
        (handle.into(), transport)
    }

    struct NoStore;
    impl diffy_plugin_api::Persistence for NoStore {
        fn get(&self, _: &str) -> diffy_plugin_api::Result<Option<String>> {
            Ok(None)
        }
        fn save(&self, _: &str, _: &str) -> diffy_plugin_api::Result<()> {
            Ok(())
        }
        fn list(&self, _: &str) -> diffy_plugin_api::Result<Vec<String>> {
            Ok(Vec::new())
        }
    }

    #[test]
    fn a_method_the_manifest_lacks_is_one_line_saying_what_to_rebuild() {
        let (store, transport) = persistence("0.2.0", &["get", "save", "list"]);
        let error = store
            .handle
            .call_raw("get_many", b"{}")
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "diffy-x 0.3.0 was built against diffy-plugin-api 0.2.0 and has no method \
             `get_many` in persistence `x`; rebuild it against 0.2.1 or newer"
        );
        assert!(transport.calls.lock().unwrap().is_empty(), "never sent");
    }

    #[test]
    fn batched_calls_fall_back_to_single_ones_for_older_plugins() {
        let (store, transport) = persistence("0.2.0", &["get", "save", "list"]);
        let (one, two) = (raw("1").unwrap(), raw("[2]").unwrap());
        store.save_many(&[("a", one), ("b", two)]).unwrap();
        let calls = transport.calls.lock().unwrap().clone();
        assert_eq!(
            calls,
            [
                (
                    "save".to_string(),
                    r#"{"key":"a","document":1}"#.to_string()
                ),
                (
                    "save".to_string(),
                    r#"{"key":"b","document":[2]}"#.to_string()
                ),
            ]
        );
        let (store, transport) =
            persistence("0.2.1", &["get", "save", "list", "save_many", "get_many"]);
        store.save_many(&[("a", raw("1").unwrap())]).unwrap();
        assert_eq!(transport.calls.lock().unwrap()[0].0, "save_many");
    }

    #[test]
    fn documents_cross_as_they_are() {
        let (store, _) = persistence("0.2.1", &["get"]);
        assert_eq!(store.get("k").unwrap().as_deref(), Some(r#"{"a":1}"#));
    }
}
