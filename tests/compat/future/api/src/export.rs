//! Turns a [`Plugin`] declaration into the root module a host loads: the `extern "C"` entry points,
//! one adapter per component kind that dispatches calls by method name to the plain traits, and
//! panic catching.
//!
//! Every function the host can call goes through [`guard`], so a panic in plugin code becomes an
//! error with [`CallStatus::PANICKED`] instead of unwinding into the host (which would abort).

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::CStr;
use std::io::Write;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Mutex, Once, OnceLock};

use abi_stable::prefix_type::PrefixTypeTrait;
use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RErr, ROk, RResult, RSlice, RStr, RString, RVec};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::author::{
    Activation, Analysis, AnalysisSession, CliCommand, Collection, Host, Payload, Persistence,
    Plugin, Registered, Result, Target,
};
use crate::documents::{AnalysisInput, AnalysisStart, Record, RecordJson};
use crate::ffi::*;
use crate::manifest::ComponentKind;
use crate::protocol::{self, Document, Documents};

static BUILD: OnceLock<fn() -> Plugin> = OnceLock::new();
static PLUGIN: OnceLock<Plugin> = OnceLock::new();
static PANIC_HOOK: Once = Once::new();

thread_local! {
    static PANIC_LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
    /// Set while the panic probe panics, so its deliberate panic is never printed.
    static PROBING: Cell<bool> = const { Cell::new(false) };
}

/// Called once by the root module loader that [`export_plugin!`](crate::export_plugin) generates.
#[doc(hidden)]
pub fn root_module(build: fn() -> Plugin) -> PluginModuleRef {
    let _ = BUILD.set(build);
    PluginModule {
        api_version,
        manifest,
        activate,
    }
    .leak_into_prefix()
}

/// The API version as a C string, for the pre-check symbol.
#[doc(hidden)]
pub const API_VERSION_CSTR: &CStr =
    match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
        Ok(version) => version,
        Err(_) => panic!("the crate version contains a NUL byte"),
    };

/// A component name no manifest can declare (names start with a lowercase letter). Activating it
/// panics inside the plugin on purpose, so `diffy-plugin-harness` can check that a panic in this
/// library comes back to the host as an error: that the library unwinds (`panic = "unwind"`) and
/// this crate's guard catches it. The `diffy` host never activates a name its manifest lacks.
#[doc(hidden)]
pub const PANIC_PROBE: &str = "__diffy_panic_probe";

/// The message of the probe's panic.
#[doc(hidden)]
pub const PANIC_PROBE_MESSAGE: &str = "deliberate panic of the diffy-plugin-harness panic probe";

fn panic_probe<T>() -> Result<T> {
    if cfg!(panic = "unwind") {
        PROBING.with(|p| p.set(true));
        panic!("{PANIC_PROBE_MESSAGE}");
    }
    anyhow::bail!(
        "this library is built with panic = \"abort\": a panic in it would abort diffy instead of \
         becoming an error; remove `panic = \"abort\"` from the crate's profiles"
    )
}

/// Why a call did not produce its document.
enum Failure {
    /// The component returned an error (or the input was malformed).
    Error(anyhow::Error),
    /// This component kind has no such method in this API release.
    NoSuchMethod(String),
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Failure::Error(error)
    }
}

impl From<serde_json::Error> for Failure {
    fn from(error: serde_json::Error) -> Self {
        Failure::Error(error.into())
    }
}

/// Run plugin code, catching a panic. `Err` holds the status and the one-line message.
fn guard<T>(
    f: impl FnOnce() -> std::result::Result<T, Failure>,
) -> std::result::Result<T, (CallStatus, String)> {
    install_panic_hook();
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(Failure::Error(error))) => Err((CallStatus::ERROR, format!("{error:#}"))),
        Ok(Err(Failure::NoSuchMethod(message))) => Err((CallStatus::NO_SUCH_METHOD, message)),
        Err(payload) => Err((CallStatus::PANICKED, panic_message(payload))),
    }
}

fn ffi_result<T>(result: std::result::Result<T, (CallStatus, String)>) -> RResult<T, FfiError> {
    match result {
        Ok(value) => ROk(value),
        Err((status, message)) => RErr(FfiError {
            status,
            message: message.into(),
        }),
    }
}

/// Keep the plugin's own copy of std from printing panics on stderr: the host reports them in one
/// line. `RUST_BACKTRACE` brings the usual output back for debugging.
fn install_panic_hook() {
    PANIC_HOOK.call_once(|| {
        let default_hook = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let location = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()));
            PANIC_LOCATION.with(|cell| *cell.borrow_mut() = location);
            let probing = PROBING.with(|p| p.replace(false));
            if std::env::var_os("RUST_BACKTRACE").is_some() && !probing {
                default_hook(info);
            }
        }));
    });
}

fn panic_message(payload: Box<dyn Any + Send>) -> String {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with a non-string payload".to_string());
    match PANIC_LOCATION.with(|cell| cell.borrow_mut().take()) {
        Some(location) => format!("{message} (at {location})"),
        None => message,
    }
}

fn plugin() -> Result<&'static Plugin> {
    if let Some(plugin) = PLUGIN.get() {
        return Ok(plugin);
    }
    let build = BUILD
        .get()
        .ok_or_else(|| anyhow::anyhow!("the plugin's root module was not initialised"))?;
    Ok(PLUGIN.get_or_init(build))
}

/// Decode a call's input document; an empty input is the empty object (a call without arguments).
/// The text is checked as UTF-8 once, up front, which is faster than serde_json checking each
/// string of a large document as it goes.
fn decode<'a, T: Deserialize<'a>>(method: &str, input: &'a [u8]) -> Result<T> {
    let malformed = |e: &dyn std::fmt::Display| {
        anyhow::anyhow!("the host sent a malformed document to {method}: {e}")
    };
    let text = if input.is_empty() {
        "{}"
    } else {
        std::str::from_utf8(input).map_err(|e| malformed(&e))?
    };
    serde_json::from_str(text).map_err(|e| malformed(&e))
}

fn encode<T: Serialize + ?Sized>(
    output: &mut RVec<u8>,
    value: &T,
) -> std::result::Result<(), Failure> {
    serde_json::to_writer(output, value)?;
    Ok(())
}

/// A saved document as it is, checked to be JSON so that a corrupt file is an error naming the
/// key rather than a malformed answer.
fn raw_document<'a>(key: &str, text: &'a str) -> Result<&'a RawValue> {
    serde_json::from_str(text)
        .map_err(|e| anyhow::anyhow!("the document saved under {key:?} is not JSON: {e}"))
}

#[cfg(not(feature = "abi-break"))]
extern "C" fn api_version() -> RStr<'static> {
    RStr::from_str(crate::API_VERSION)
}

// FUTURE: the forbidden change's other half (`abi-break`).
#[cfg(feature = "abi-break")]
extern "C" fn api_version() -> RString {
    crate::API_VERSION.into()
}

extern "C" fn manifest() -> RResult<RString, FfiError> {
    ffi_result(guard(|| {
        Ok(serde_json::to_string(plugin()?.manifest())?.into())
    }))
}

extern "C" fn activate(
    kind: RStr<'_>,
    name: RStr<'_>,
    host: HostBox,
    options: RSlice<'_, u8>,
) -> RResult<ComponentBox, FfiError> {
    ffi_result(guard(|| {
        if name.as_str() == PANIC_PROBE {
            return Ok(panic_probe()?);
        }
        let plugin = plugin()?;
        let options: Map<String, Value> = decode("activate", options.as_slice())?;
        let activation = || Activation::new(name.as_str().to_string(), options, Host::new(host));
        let kind: ComponentKind = serde_json::from_value(Value::String(kind.as_str().to_string()))?;
        let component = match kind {
            ComponentKind::CliCommand => {
                boxed(build(&plugin.cli_commands, kind, name, activation)?)
            }
            ComponentKind::Target => boxed(build(&plugin.targets, kind, name, activation)?),
            ComponentKind::Payload => boxed(build(&plugin.payloads, kind, name, activation)?),
            ComponentKind::Collection => boxed(build(&plugin.collections, kind, name, activation)?),
            ComponentKind::Persistence => {
                boxed(build(&plugin.persistences, kind, name, activation)?)
            }
            ComponentKind::Analysis => boxed(build(&plugin.analyses, kind, name, activation)?),
            ComponentKind::Unknown => {
                return Err(anyhow::anyhow!(
                    "this plugin was built against diffy-plugin-api {} and knows no component \
                     kind {:?}",
                    crate::API_VERSION,
                    kind.as_str()
                )
                .into());
            }
        };
        Ok(component)
    }))
}

/// Find the registered component `name` of `kind` and construct it.
fn build<T: ?Sized>(
    registered: &[Registered<T>],
    kind: ComponentKind,
    name: RStr<'_>,
    activation: impl FnOnce() -> Activation,
) -> Result<Adapter<T>> {
    let Some(entry) = registered.iter().find(|r| r.name == name.as_str()) else {
        anyhow::bail!("this plugin has no {kind} named {:?}", name.as_str());
    };
    Ok(Adapter::new((entry.make)(activation())?))
}

fn boxed<T: ?Sized>(adapter: Adapter<T>) -> ComponentBox
where
    Adapter<T>: Dispatch,
{
    ComponentFfi_TO::from_value(adapter, TD_Opaque)
}

/// An activated component of one kind, answering calls by method name.
struct Adapter<T: ?Sized> {
    component: Box<T>,
    /// The runs an incremental analysis is in the middle of, by run id (empty for other kinds).
    sessions: Mutex<HashMap<String, Session>>,
}

impl<T: ?Sized> Adapter<T> {
    fn new(component: Box<T>) -> Self {
        Adapter {
            component,
            sessions: Mutex::new(HashMap::new()),
        }
    }
}

/// One run of an analysis between `begin` and `finish`.
enum Session {
    /// The analysis's own incremental session.
    Incremental(Box<dyn AnalysisSession>),
    /// An analysis that is not incremental: its records, kept until `finish` calls `run`.
    Buffered {
        input: AnalysisInput,
        incident: Option<String>,
    },
}

/// Answer one call: decode the input, call the trait method, encode the answer.
trait Dispatch: Send + Sync + 'static {
    fn dispatch(
        &self,
        method: &str,
        input: &[u8],
        output: &mut RVec<u8>,
    ) -> std::result::Result<(), Failure>;
}

impl<T: ?Sized> ComponentFfi for Adapter<T>
where
    Adapter<T>: Dispatch,
{
    fn call(&self, method: RStr<'_>, input: RSlice<'_, u8>, output: &mut RVec<u8>) -> CallStatus {
        match guard(|| self.dispatch(method.as_str(), input.as_slice(), output)) {
            Ok(()) => CallStatus::OK,
            Err((status, message)) => {
                output.clear();
                output.extend_from_slice(message.as_bytes());
                status
            }
        }
    }
}

fn no_such_method(kind: ComponentKind, method: &str) -> Failure {
    Failure::NoSuchMethod(format!(
        "{kind} components of diffy-plugin-api {} have no method {method:?}",
        crate::API_VERSION
    ))
}

impl Dispatch for Adapter<dyn CliCommand> {
    fn dispatch(
        &self,
        method: &str,
        input: &[u8],
        output: &mut RVec<u8>,
    ) -> std::result::Result<(), Failure> {
        match method {
            "run" => {
                let request: protocol::RunArgs = decode(method, input)?;
                let exit_code = self.component.run(request.args)?;
                // Whatever the command printed reaches the terminal before the host goes on.
                let _ = std::io::stdout().flush();
                encode(output, &protocol::ExitCode { exit_code })
            }
            _ => Err(no_such_method(ComponentKind::CliCommand, method)),
        }
    }
}

impl Dispatch for Adapter<dyn Target> {
    fn dispatch(
        &self,
        method: &str,
        input: &[u8],
        output: &mut RVec<u8>,
    ) -> std::result::Result<(), Failure> {
        match method {
            "get" => {
                let request: protocol::TargetGet<'_> = decode(method, input)?;
                encode(
                    output,
                    &self
                        .component
                        .get(&request.key, request.incident.as_deref())?,
                )
            }
            _ => Err(no_such_method(ComponentKind::Target, method)),
        }
    }
}

impl Dispatch for Adapter<dyn Payload> {
    fn dispatch(
        &self,
        method: &str,
        input: &[u8],
        output: &mut RVec<u8>,
    ) -> std::result::Result<(), Failure> {
        match method {
            "generate" => {
                let request: protocol::PayloadGenerate<'_> = decode(method, input)?;
                let commands = self
                    .component
                    .generate_for(&request.targets, request.incident.as_deref())?;
                encode(output, &commands)
            }
            _ => Err(no_such_method(ComponentKind::Payload, method)),
        }
    }
}

impl Dispatch for Adapter<dyn Collection> {
    fn dispatch(
        &self,
        method: &str,
        input: &[u8],
        output: &mut RVec<u8>,
    ) -> std::result::Result<(), Failure> {
        // `get` and `get_lines` (since 0.2.2) collect alike and differ in how they answer.
        if !matches!(method, "get" | "get_lines") {
            return Err(no_such_method(ComponentKind::Collection, method));
        }
        let request: protocol::CollectionGet<'_> = decode(method, input)?;
        let records = self.component.get(
            &request.targets,
            &request.commands,
            request.incident.as_deref(),
        )?;
        if method == "get" {
            return encode(output, &records);
        }
        let mut lines = Vec::new();
        for record in &records {
            push_record_line(&mut lines, record)?;
        }
        *output = RVec::from(lines);
        Ok(())
    }
}

/// Append `record` to `out` as one line: the compact JSON serde_json writes, then `\n`, its
/// outputs escaped by a SIMD routine (`json-escape-simd`, sonic-rs's kernel) rather than by
/// serde_json, which escapes a string byte by byte — and a record's outputs are most of its
/// bytes. serde_json writes the rest, with the outputs left empty, and they are put in place.
fn push_record_line(out: &mut Vec<u8>, record: &Record) -> std::result::Result<(), Failure> {
    // Every field but the outputs, by name: a field added to `Record` must be added here.
    let shell = Record {
        target: record.target.clone(),
        command: record.command.clone(),
        status: record.status,
        exit_code: record.exit_code,
        collected_at: record.collected_at.clone(),
        duration_ms: record.duration_ms,
        stdout: String::new(),
        stderr: String::new(),
        sha256: record.sha256.clone(),
        error: record.error.clone(),
        truncated: record.truncated,
    };
    let shell = serde_json::to_vec(&shell)?;
    // Outside strings, whose quotes are escaped, these appear once each, in field order.
    const STDOUT: &[u8] = br#""stdout":"""#;
    const STDERR: &[u8] = br#""stderr":"""#;
    let find = |field: &[u8], from: usize| {
        shell[from..]
            .windows(field.len())
            .position(|w| w == field)
            .map(|at| from + at)
            .ok_or_else(|| anyhow::anyhow!("a record serialised without its outputs"))
    };
    let stdout_at = find(STDOUT, 0)?;
    let stderr_at = find(STDERR, stdout_at)?;
    let name = STDOUT.len() - 2; // up to the empty string's quotes
    // The escaping asks for room for its worst case (six bytes a byte) past the end each time;
    // asked once per record here, no record's line is copied to grow.
    let outputs = record.stdout.len() + record.stderr.len();
    out.reserve(shell.len() + outputs * 6 + 2 * 35);
    out.extend_from_slice(&shell[..stdout_at + name]);
    json_escape_simd::escape_into(&record.stdout, out);
    out.extend_from_slice(&shell[stdout_at + STDOUT.len()..stderr_at + name]);
    json_escape_simd::escape_into(&record.stderr, out);
    out.extend_from_slice(&shell[stderr_at + STDERR.len()..]);
    out.push(b'\n');
    Ok(())
}

impl Dispatch for Adapter<dyn Persistence> {
    fn dispatch(
        &self,
        method: &str,
        input: &[u8],
        output: &mut RVec<u8>,
    ) -> std::result::Result<(), Failure> {
        match method {
            "get" => {
                let request: protocol::PersistenceGet<'_> = decode(method, input)?;
                let text = self.component.get(&request.key)?;
                let document = text
                    .as_deref()
                    .map(|text| raw_document(&request.key, text))
                    .transpose()?;
                encode(output, &Document { document })
            }
            "save" => {
                let request: protocol::PersistenceSave<'_> = decode(method, input)?;
                Ok(self.component.save(&request.key, request.document.get())?)
            }
            "list" => {
                let request: protocol::PersistenceList<'_> = decode(method, input)?;
                encode(output, &self.component.list(&request.prefix)?)
            }
            "save_many" => {
                let request: protocol::PersistenceSaveMany<'_> = decode(method, input)?;
                let items: Vec<(&str, &str)> = request
                    .items
                    .iter()
                    .map(|item| (item.key.as_ref(), item.document.get()))
                    .collect();
                Ok(self.component.save_many(&items)?)
            }
            "get_many" => {
                let request: protocol::PersistenceGetMany<'_> = decode(method, input)?;
                let keys: Vec<&str> = request.keys.iter().map(AsRef::as_ref).collect();
                let texts = self.component.get_many(&keys)?;
                if texts.len() != keys.len() {
                    return Err(anyhow::anyhow!(
                        "get_many returned {} documents for {} keys",
                        texts.len(),
                        keys.len()
                    )
                    .into());
                }
                let documents = keys
                    .iter()
                    .zip(&texts)
                    .map(|(key, text)| text.as_deref().map(|t| raw_document(key, t)).transpose())
                    .collect::<Result<Vec<_>>>()?;
                encode(output, &Documents { documents })
            }
            "create_run" => {
                let request: protocol::PersistenceCreateRun<'_> = decode(method, input)?;
                let created = self.component.create_run(&request.run)?;
                encode(output, &protocol::RunCreated { created })
            }
            "append_records" => {
                let request: protocol::RecordBatch<'_> = decode(method, input)?;
                let records = record_texts(method, &request.records)?;
                Ok(self.component.append_records(&request.run, &records)?)
            }
            "append_lines" => {
                let (head, lines) = read_batch(method, input)?;
                let records: Vec<RecordJson<'_>> = head
                    .records
                    .into_iter()
                    .zip(lines)
                    .map(|(record, json)| RecordJson {
                        target: record.target,
                        command: record.command,
                        status: record.status,
                        json,
                    })
                    .collect();
                Ok(self.component.append_records(&head.run, &records)?)
            }
            "finish_run" => {
                let request: protocol::PersistenceFinishRun<'_> = decode(method, input)?;
                let report = request.report.map(RawValue::get);
                Ok(self.component.finish_run(&request.run, report)?)
            }
            "save_baseline" => {
                let request: protocol::PersistenceSaveBaseline<'_> = decode(method, input)?;
                let records = record_texts(method, &request.records)?;
                Ok(self.component.save_baseline(&request.key, &records)?)
            }
            "list_runs" => {
                let request: protocol::PersistenceListRuns<'_> = decode(method, input)?;
                let runs = self.component.list_runs(request.incident.as_deref())?;
                encode(output, &runs)
            }
            _ => Err(no_such_method(ComponentKind::Persistence, method)),
        }
    }
}

impl Dispatch for Adapter<dyn Analysis> {
    fn dispatch(
        &self,
        method: &str,
        input: &[u8],
        output: &mut RVec<u8>,
    ) -> std::result::Result<(), Failure> {
        match method {
            "run" => {
                let request: protocol::AnalysisRun<'_> = decode(method, input)?;
                let report = self
                    .component
                    .run(request.input.into_owned(), request.incident.as_deref())?;
                encode(output, &report)
            }
            "begin" => {
                let request: protocol::AnalysisBegin<'_> = decode(method, input)?;
                let start = AnalysisStart {
                    commands: request.commands.into_owned(),
                    baseline: request.baseline.map(|b| b.into_owned()),
                };
                let incident = request.incident.map(|i| i.into_owned());
                let session = match self.component.begin(start.clone(), incident.as_deref())? {
                    Some(session) => Session::Incremental(session),
                    None => Session::Buffered {
                        input: AnalysisInput {
                            commands: start.commands,
                            records: Vec::new(),
                            baseline: start.baseline,
                        },
                        incident,
                    },
                };
                let mut sessions = self.lock_sessions();
                if sessions.contains_key(request.run.as_ref()) {
                    return Err(anyhow::anyhow!(
                        "the analysis of run {:?} has already begun",
                        request.run
                    )
                    .into());
                }
                sessions.insert(request.run.into_owned(), session);
                Ok(())
            }
            "feed" => {
                let request: protocol::AnalysisFeed = decode(method, input)?;
                self.feed(&request.run, request.records)
            }
            "feed_lines" => {
                let (head, lines) = read_batch(method, input)?;
                let records = decode_record_lines(method, &lines)?;
                self.feed(&head.run, records)
            }
            "finish" => {
                let request: protocol::AnalysisFinish<'_> = decode(method, input)?;
                let report = match self.take_session(&request.run)? {
                    Session::Incremental(session) => session.finish()?,
                    Session::Buffered { input, incident } => {
                        self.component.run(input, incident.as_deref())?
                    }
                };
                encode(output, &report)
            }
            // FUTURE: the new method's dispatch.
            "explain" => {
                let request: protocol::AnalysisExplain<'_> = decode(method, input)?;
                let text = self.component.explain(&request.target)?;
                encode(output, &protocol::Explanation { text })
            }
            _ => Err(no_such_method(ComponentKind::Analysis, method)),
        }
    }
}

impl Adapter<dyn Analysis> {
    fn feed(&self, run: &str, records: Vec<Record>) -> std::result::Result<(), Failure> {
        // Out of the table while it works, so other runs' batches are not held up.
        let mut session = self.take_session(run)?;
        match &mut session {
            Session::Incremental(session) => session.feed(records)?,
            Session::Buffered { input, .. } => input.records.extend(records),
        }
        self.lock_sessions().insert(run.to_string(), session);
        Ok(())
    }

    fn lock_sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // A panic while the table was held left it whole: each entry is inserted or removed.
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take_session(&self, run: &str) -> Result<Session> {
        self.lock_sessions().remove(run).ok_or_else(|| {
            anyhow::anyhow!("no analysis of run {run:?} has begun (or it already finished)")
        })
    }
}

/// A batch sent as JSON Lines, split into its head and its record lines.
fn read_batch<'a>(
    method: &str,
    input: &'a [u8],
) -> Result<(protocol::BatchHead<'a>, Vec<&'a str>)> {
    protocol::read_batch_lines(input)
        .map_err(|e| anyhow::anyhow!("the host sent a malformed batch to {method}: {e}"))
}

/// Decode a batch's record lines on every core: decoding (unescaping every command's output) is
/// much of what an analysis does with a batch, and lines need no scanning to be split.
fn decode_record_lines(method: &str, lines: &[&str]) -> Result<Vec<Record>> {
    use rayon::prelude::*;
    lines
        .par_iter()
        .with_min_len(4)
        .enumerate()
        .map(|(index, line)| {
            serde_json::from_str::<Record>(line).map_err(|e| {
                anyhow::anyhow!("the host sent a malformed record to {method}: record {index}: {e}")
            })
        })
        .collect()
}

/// The ids of each record of a batch, for the store to file it under.
fn record_texts<'a>(method: &str, records: &[&'a RawValue]) -> Result<Vec<RecordJson<'a>>> {
    records
        .iter()
        .enumerate()
        .map(|(index, raw)| {
            RecordJson::read(raw.get()).map_err(|e| {
                anyhow::anyhow!("the host sent a malformed record to {method}: record {index}: {e}")
            })
        })
        .collect()
}

/// Declare the plugin this library exports.
///
/// Pass a function that builds the [`Plugin`](crate::Plugin). The macro exports the abi_stable root
/// module and the plain C symbol `diffy_plugin_api_version` that the host checks first. The crate
/// must be built as a `cdylib` with `panic = "unwind"` (the default) so panics can be caught.
///
/// ```ignore
/// fn plugin() -> diffy_plugin_api::Plugin { /* … */ }
/// diffy_plugin_api::export_plugin!(plugin);
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($build:path) => {
        const _: () = {
            fn __diffy_build() -> $crate::Plugin {
                $build()
            }

            extern "C" fn __diffy_root_module() -> $crate::__private::RootModuleResult {
                $crate::__private::__call_root_module_loader(|| {
                    $crate::__private::root_module(__diffy_build)
                })
            }

            /// The abi_stable library header (what `#[export_root_module]` would generate).
            #[unsafe(export_name = "_1as_0lib_1header_0root_bmodule_bloader")]
            pub static __DIFFY_LIB_HEADER: $crate::__private::LibHeader = {
                // SAFETY: `__diffy_root_module` returns the root module of type `PluginModuleRef`,
                // the type the header is declared with, as `from_constructor` requires.
                unsafe {
                    $crate::__private::LibHeader::from_constructor::<$crate::ffi::PluginModuleRef>(
                        __diffy_root_module,
                        $crate::__private::CheckTypeLayout::Yes,
                    )
                }
            };

            /// The `diffy-plugin-api` version, for the host's pre-check before abi_stable loads.
            #[unsafe(no_mangle)]
            pub extern "C" fn diffy_plugin_api_version() -> *const ::std::ffi::c_char {
                $crate::__private::API_VERSION_CSTR.as_ptr()
            }
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::documents::RecordStatus;
    use crate::protocol::METHODS;

    /// Every method of the protocol table is dispatched by its kind's adapter: a call with an
    /// unparsable input is a decoding error, never "no such method".
    #[test]
    fn every_listed_method_is_dispatched() {
        struct Nothing;
        impl CliCommand for Nothing {
            fn run(&self, _: Vec<String>) -> Result<i32> {
                Ok(0)
            }
        }
        impl Target for Nothing {
            fn get(&self, _: &str, _: Option<&str>) -> Result<Vec<crate::TargetInfo>> {
                Ok(vec![])
            }
        }
        impl Payload for Nothing {
            fn generate(&self, _: Option<&str>) -> Result<Vec<crate::Command>> {
                Ok(vec![])
            }
        }
        impl Collection for Nothing {
            fn get(
                &self,
                _: &[crate::TargetInfo],
                _: &[crate::Command],
                _: Option<&str>,
            ) -> Result<Vec<crate::Record>> {
                Ok(vec![])
            }
        }
        impl Persistence for Nothing {
            fn get(&self, _: &str) -> Result<Option<String>> {
                Ok(None)
            }
            fn save(&self, _: &str, _: &str) -> Result<()> {
                Ok(())
            }
            fn list(&self, _: &str) -> Result<Vec<String>> {
                Ok(vec![])
            }
        }
        impl Analysis for Nothing {
            fn run(&self, _: crate::AnalysisInput, _: Option<&str>) -> Result<crate::Report> {
                Ok(crate::Report::default())
            }
        }
        let adapters: Vec<(ComponentKind, Box<dyn Dispatch>)> = vec![
            (
                ComponentKind::CliCommand,
                Box::new(Adapter::<dyn CliCommand>::new(Box::new(Nothing))),
            ),
            (
                ComponentKind::Target,
                Box::new(Adapter::<dyn Target>::new(Box::new(Nothing))),
            ),
            (
                ComponentKind::Payload,
                Box::new(Adapter::<dyn Payload>::new(Box::new(Nothing))),
            ),
            (
                ComponentKind::Collection,
                Box::new(Adapter::<dyn Collection>::new(Box::new(Nothing))),
            ),
            (
                ComponentKind::Persistence,
                Box::new(Adapter::<dyn Persistence>::new(Box::new(Nothing))),
            ),
            (
                ComponentKind::Analysis,
                Box::new(Adapter::<dyn Analysis>::new(Box::new(Nothing))),
            ),
        ];
        for (kind, adapter) in &adapters {
            for spec in METHODS.iter().filter(|m| m.kind == *kind) {
                let mut output = RVec::new();
                match adapter.dispatch(spec.name, b"[", &mut output) {
                    Err(Failure::Error(_)) => {}
                    Err(Failure::NoSuchMethod(m)) => panic!("{kind} {}: {m}", spec.name),
                    Ok(()) => panic!("{kind} {} accepted a malformed input", spec.name),
                }
            }
            let mut output = RVec::new();
            assert!(matches!(
                adapter.dispatch("no-such-method", b"{}", &mut output),
                Err(Failure::NoSuchMethod(_))
            ));
        }
    }

    #[test]
    fn record_lines_are_the_bytes_serde_json_writes() {
        let every_ascii: String = (0u8..=127).map(char::from).collect();
        let mut records = vec![Record::new("w", "ps", RecordStatus::Ok, String::new())];
        let mut full = Record::new(
            "t\"x\\",
            "c \"stdout\":\"\"",
            RecordStatus::Failed,
            format!("{every_ascii} é 漢 🎉 \u{2028}\n\"stderr\":\"\"").repeat(40),
        );
        full.stderr = every_ascii.clone();
        full.exit_code = Some(-3);
        full.duration_ms = Some(12);
        full.error = Some("command failed: exit 3".into());
        full.truncated = true;
        full.collected_at = "2026-12-02T00:00:00Z".into();
        records.push(full);
        for record in &records {
            let mut line = Vec::new();
            assert!(push_record_line(&mut line, record).is_ok());
            let mut expected = serde_json::to_vec(record).unwrap();
            expected.push(b'\n');
            assert_eq!(
                String::from_utf8(line).unwrap(),
                String::from_utf8(expected).unwrap()
            );
        }
    }
}
