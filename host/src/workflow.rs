//! Diffy's two jobs (DESIGN §6), chaining the five interface components:
//!
//! - `new baseline`: target → first target only → payload → collection → persistence under
//!   `baseline/<key>/<command>`.
//! - `new analysis`: target → all targets → payload → collection (many targets at once, each with a
//!   timeout; a failed target is failed records, never a failed run) → persistence of every record
//!   under `records/<run>/<target>/<command>` → analysis (with the saved baseline when the analysis
//!   uses one) → persistence of the report under `report/<run>`.
//!
//! Only the five chosen components are activated. Keys are built from ids with `/` and `%`
//! percent-encoded, so a target key that is a path stays one key segment.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, SystemTime};

use diffy_plugin_api::{
    AnalysisInput, Command, ComponentKind, Record, RecordStatus, Report, TargetInfo,
};
use indicatif::ProgressBar;
use serde_json::{Map, Value};

use crate::activation::Activator;
use crate::component::{
    CollectionHandle, ComponentHandle, Label, PayloadHandle, PersistenceHandle, TargetHandle,
};
use crate::error::{Error, Result};

/// The slugs of the five components a run uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choices {
    /// Target slug.
    pub target: String,
    /// Payload slug.
    pub payload: String,
    /// Collection slug.
    pub collection: String,
    /// Persistence slug.
    pub persistence: String,
    /// Analysis slug.
    pub analysis: String,
}

impl Default for Choices {
    /// The bundled `diffy-local` components.
    fn default() -> Self {
        Choices {
            target: "local".into(),
            payload: "local-command".into(),
            collection: "local-shell".into(),
            persistence: "local-file".into(),
            analysis: "local-simple".into(),
        }
    }
}

/// Everything a run needs besides the target key.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Which components to use.
    pub choices: Choices,
    /// `--option SLUG.KEY=VALUE`, as given.
    pub options: Vec<String>,
    /// The incident id, passed to every component.
    pub incident: Option<String>,
    /// How many targets are collected at once.
    pub jobs: usize,
    /// How long one target's collection may take.
    pub target_timeout: Duration,
    /// Analysis: the baseline to compare against (default: the target key).
    pub baseline_key: Option<String>,
    /// How long any other component call may take.
    pub component_timeout: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            choices: Choices::default(),
            options: Vec::new(),
            incident: None,
            jobs: 8,
            target_timeout: Duration::from_secs(300),
            baseline_key: None,
            component_timeout: Duration::from_secs(600),
        }
    }
}

/// The outcome of `new baseline`.
#[derive(Debug)]
pub struct BaselineOutcome {
    /// The target the baseline was taken from.
    pub target: TargetInfo,
    /// How many targets the key resolved to (only the first is used).
    pub targets_found: usize,
    /// The records saved, one per command.
    pub records: Vec<Record>,
    /// The persistence keys written.
    pub keys: Vec<String>,
}

/// The outcome of `new analysis`.
#[derive(Debug)]
pub struct AnalysisOutcome {
    /// The analysis report.
    pub report: Report,
    /// The key the report was saved under.
    pub report_key: String,
    /// How many records were collected, and how many of them failed.
    pub records: usize,
    /// How many records did not succeed.
    pub failed_records: usize,
}

/// Percent-encode `/` and `%` so `text` is one segment of a persistence key.
pub fn key_segment(text: &str) -> String {
    text.replace('%', "%25").replace('/', "%2F")
}

/// `baseline/<key>/`
pub fn baseline_prefix(key: &str) -> String {
    format!("baseline/{}/", key_segment(key))
}

/// Split `SLUG.KEY=VALUE`.
fn parse_option(text: &str) -> Result<(&str, &str, &str)> {
    let bad = || {
        Error::Usage(format!(
            "--option {text:?} is not of the form SLUG.KEY=VALUE"
        ))
    };
    let (name, value) = text.split_once('=').ok_or_else(bad)?;
    let (slug, key) = name.split_once('.').ok_or_else(bad)?;
    if slug.is_empty() || key.is_empty() {
        return Err(bad());
    }
    Ok((slug, key, value))
}

/// Turn `--option` strings into one typed option object per chosen component. An option goes to
/// every chosen component with that slug whose schema declares the key; a key no such component
/// declares, or a slug that is not chosen, is an error.
fn component_options(
    activator: &mut Activator,
    chosen: &[(ComponentKind, &str)],
    raw: &[String],
) -> Result<Vec<Map<String, Value>>> {
    let mut result = vec![Map::new(); chosen.len()];
    for text in raw {
        let (slug, key, value) = parse_option(text)?;
        let mut matched_slug = false;
        let mut taken = false;
        let mut known = Vec::new();
        for (index, (kind, chosen_slug)) in chosen.iter().enumerate() {
            if *chosen_slug != slug {
                continue;
            }
            matched_slug = true;
            let (_, component) = activator.declaration(*kind, slug)?;
            match component.option_spec(key) {
                Some(spec) => {
                    result[index].insert(
                        key.to_string(),
                        spec.parse_cli_value(value).map_err(Error::Usage)?,
                    );
                    taken = true;
                }
                None => known.extend(component.options.iter().map(|o| o.key.clone())),
            }
        }
        if !matched_slug {
            return Err(Error::Usage(format!(
                "--option {text:?}: {slug} is not one of the chosen components ({})",
                chosen
                    .iter()
                    .map(|(_, s)| *s)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        if !taken {
            known.sort();
            known.dedup();
            return Err(Error::Usage(format!(
                "--option {text:?}: {slug} has no option {key:?} (known: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )));
        }
    }
    Ok(result)
}

type Job = Box<dyn FnOnce() + Send>;

/// An activated component whose calls run on a thread of its own, so a call that never returns
/// costs one timeout and a clear error instead of the whole run.
struct Guarded<H> {
    handle: Arc<H>,
    label: Label,
    jobs: mpsc::Sender<Job>,
    timeout: Duration,
}

impl<H: Send + Sync + 'static> Guarded<H> {
    fn new(label: Label, handle: H, timeout: Duration) -> Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name(format!("{} {}", label.kind, label.name))
            .spawn(move || queue.into_iter().for_each(|job| job()))
            .map_err(|e| Error::Failure(format!("cannot start a thread: {e}")))?;
        Ok(Guarded {
            handle: Arc::new(handle),
            label,
            jobs,
            timeout,
        })
    }

    /// Run `f` on the component's thread and wait at most the timeout for its answer.
    fn call<T: Send + 'static>(
        &self,
        what: &str,
        f: impl FnOnce(&H) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (answer, receiver) = mpsc::sync_channel(1);
        let handle = Arc::clone(&self.handle);
        let timed_out = || {
            Error::Plugin(format!(
                "plugin {} {} {} did not return from {what} within {}s",
                self.label.plugin,
                self.label.kind,
                self.label.name,
                self.timeout.as_secs_f64()
            ))
        };
        self.jobs
            .send(Box::new(move || {
                let _ = answer.send(f(&handle));
            }))
            .map_err(|_| timed_out())?;
        receiver
            .recv_timeout(self.timeout)
            .map_err(|_| timed_out())?
    }

    fn malformed(&self, fault: String) -> Error {
        Error::Plugin(format!(
            "plugin {} returned a malformed document from {} {}: {fault}",
            self.label.plugin, self.label.kind, self.label.name
        ))
    }
}

struct Components {
    target: Guarded<TargetHandle>,
    payload: Guarded<PayloadHandle>,
    collection: Arc<CollectionHandle>,
    persistence: Guarded<PersistenceHandle>,
}

/// Validate every option first, then activate the four components every job uses.
fn activate_pipeline(
    activator: &mut Activator,
    run: &RunOptions,
    with_analysis: bool,
) -> Result<(Components, Option<Map<String, Value>>)> {
    let c = &run.choices;
    let mut chosen = vec![
        (ComponentKind::Target, c.target.as_str()),
        (ComponentKind::Payload, c.payload.as_str()),
        (ComponentKind::Collection, c.collection.as_str()),
        (ComponentKind::Persistence, c.persistence.as_str()),
    ];
    if with_analysis {
        chosen.push((ComponentKind::Analysis, c.analysis.as_str()));
    }
    let mut options = component_options(activator, &chosen, &run.options)?;
    for ((kind, slug), given) in chosen.iter().zip(&options) {
        activator.resolve_options(*kind, slug, given)?;
    }
    let analysis_options = with_analysis.then(|| options.pop().expect("five components"));
    let timeout = run.component_timeout;
    let target = activator.activate_target(&c.target, &options[0])?;
    let payload = activator.activate_payload(&c.payload, &options[1])?;
    let collection = activator.activate_collection(&c.collection, &options[2])?;
    let persistence = activator.activate_persistence(&c.persistence, &options[3])?;
    let components = Components {
        target: Guarded::new(target.label.clone(), target, timeout)?,
        payload: Guarded::new(payload.label.clone(), payload, timeout)?,
        collection: Arc::new(collection),
        persistence: Guarded::new(persistence.label.clone(), persistence, timeout)?,
    };
    Ok((components, analysis_options))
}

/// Activate only a persistence component (for `diffy show`), with `--option` strings.
pub fn open_persistence(
    activator: &mut Activator,
    slug: &str,
    raw: &[String],
) -> Result<PersistenceHandle> {
    open_component(activator, ComponentKind::Persistence, slug, raw).map(PersistenceHandle::from)
}

/// Activate one component with `--option SLUG.KEY=VALUE` strings (for `diffy plugin call`).
pub fn open_component(
    activator: &mut Activator,
    kind: ComponentKind,
    slug: &str,
    raw: &[String],
) -> Result<ComponentHandle> {
    let options = component_options(activator, &[(kind, slug)], raw)?;
    activator.activate(kind, slug, &options[0])
}

fn generate_commands(
    payload: &Guarded<PayloadHandle>,
    targets: &[TargetInfo],
    incident: Option<String>,
) -> Result<Vec<Command>> {
    let targets = targets.to_vec();
    let commands = payload.call("generate", move |p| {
        p.generate(&targets, incident.as_deref())
    })?;
    let mut seen = HashSet::new();
    for command in &commands {
        if command.id.is_empty() || !seen.insert(command.id.as_str()) {
            return Err(payload.malformed(format!(
                "command id {:?} is empty or used twice, so results would overwrite each other",
                command.id
            )));
        }
    }
    if commands.is_empty() {
        return Err(Error::Usage(format!(
            "payload {} produced no commands",
            payload.label.name
        )));
    }
    Ok(commands)
}

fn resolve_targets(
    target: &Guarded<TargetHandle>,
    key: &str,
    incident: Option<String>,
) -> Result<Vec<TargetInfo>> {
    let owned_key = key.to_string();
    let targets = target.call("get", move |t| t.get(&owned_key, incident.as_deref()))?;
    if targets.is_empty() {
        return Err(Error::Usage(format!(
            "target {} found no hosts for {key:?}",
            target.label.name
        )));
    }
    let mut seen = HashSet::new();
    for info in &targets {
        if info.id.is_empty() {
            return Err(target.malformed("a target has an empty id".into()));
        }
        if !seen.insert(info.id.as_str()) {
            return Err(target.malformed(format!("target id {:?} appears twice", info.id)));
        }
    }
    Ok(targets)
}

fn save(persistence: &Guarded<PersistenceHandle>, key: String, document: String) -> Result<()> {
    persistence.call("save", move |p| p.save(&key, &document))
}

/// Save `(key, document)` pairs in one batched call (one call per document for plugins built
/// before `save_many`).
fn save_many(persistence: &Guarded<PersistenceHandle>, items: Vec<(String, String)>) -> Result<()> {
    persistence.call("save_many", move |p| {
        let items: Vec<(&str, &str)> = items
            .iter()
            .map(|(key, document)| (key.as_str(), document.as_str()))
            .collect();
        p.save_many(&items)
    })
}

/// `diffy new baseline KEY`.
pub fn new_baseline(
    activator: &mut Activator,
    key: &str,
    run: &RunOptions,
) -> Result<BaselineOutcome> {
    let (components, _) = activate_pipeline(activator, run, false)?;
    let targets = resolve_targets(&components.target, key, run.incident.clone())?;
    let targets_found = targets.len();
    let first = targets.into_iter().next().expect("checked non-empty");
    if targets_found > 1 {
        tracing::warn!(
            "a baseline is taken from one host: using {} of the {targets_found} found",
            first.id
        );
    }
    let commands = generate_commands(
        &components.payload,
        std::slice::from_ref(&first),
        run.incident.clone(),
    )?;
    let records = collect(
        &components.collection,
        std::slice::from_ref(&first),
        &commands,
        run,
        &ProgressBar::hidden(),
    );
    let prefix = baseline_prefix(key);
    let items: Vec<(String, String)> = records
        .iter()
        .map(|record| {
            let record_key = format!("{prefix}{}", key_segment(&record.command));
            (record_key, to_json(record))
        })
        .collect();
    let keys = items.iter().map(|(key, _)| key.clone()).collect();
    save_many(&components.persistence, items)?;
    Ok(BaselineOutcome {
        target: first,
        targets_found,
        records,
        keys,
    })
}

/// `diffy new analysis KEY`.
pub fn new_analysis(
    activator: &mut Activator,
    key: &str,
    run: &RunOptions,
    progress: &ProgressBar,
) -> Result<AnalysisOutcome> {
    let (components, analysis_options) = activate_pipeline(activator, run, true)?;
    let analysis_options = analysis_options.expect("requested");
    let (_, declaration) = activator.declaration(ComponentKind::Analysis, &run.choices.analysis)?;

    // A missing baseline is a usage error worth reporting before any collection runs.
    let baseline = if declaration.uses_baseline {
        Some(load_baseline(
            &components.persistence,
            run.baseline_key.as_deref().unwrap_or(key),
        )?)
    } else {
        None
    };
    let analysis = activator.activate_analysis(&run.choices.analysis, &analysis_options)?;
    let analysis = Guarded::new(analysis.label.clone(), analysis, run.component_timeout)?;

    let targets = resolve_targets(&components.target, key, run.incident.clone())?;
    let commands = generate_commands(&components.payload, &targets, run.incident.clone())?;
    let records = collect(&components.collection, &targets, &commands, run, progress);
    let failed_records = records
        .iter()
        .filter(|r| r.status != RecordStatus::Ok)
        .count();

    let run_id = key_segment(&run.incident.clone().unwrap_or_else(timestamp_id));
    let items = records
        .iter()
        .map(|record| {
            let record_key = format!(
                "records/{run_id}/{}/{}",
                key_segment(&record.target),
                key_segment(&record.command)
            );
            (record_key, to_json(record))
        })
        .collect();
    save_many(&components.persistence, items)?;
    let record_count = records.len();
    let input = AnalysisInput {
        commands,
        records,
        baseline,
    };
    let incident = run.incident.clone();
    let mut report = analysis.call("run", move |a| a.run(input, incident.as_deref()))?;
    let known: HashSet<&str> = targets.iter().map(|t| t.id.as_str()).collect();
    if let Some(stranger) = report
        .hosts
        .iter()
        .find(|h| !known.contains(h.target.as_str()))
    {
        return Err(analysis.malformed(format!(
            "the report names {:?}, which is not one of the targets",
            stranger.target
        )));
    }
    if failed_records > 0 && !report.warnings.iter().any(|w| w.contains("failed")) {
        report.warnings.push(format!(
            "{failed_records} of {record_count} collections failed"
        ));
    }
    let report_key = format!("report/{run_id}");
    save(
        &components.persistence,
        report_key.clone(),
        to_json(&report),
    )?;
    Ok(AnalysisOutcome {
        report,
        report_key,
        records: record_count,
        failed_records,
    })
}

fn load_baseline(persistence: &Guarded<PersistenceHandle>, key: &str) -> Result<Vec<Record>> {
    let prefix = baseline_prefix(key);
    let listed_prefix = prefix.clone();
    let keys = persistence.call("list", move |p| p.list(&listed_prefix))?;
    if let Some(outside) = keys.iter().find(|k| !k.starts_with(&prefix)) {
        return Err(persistence.malformed(format!(
            "list({prefix:?}) returned {outside:?}, which does not start with the prefix"
        )));
    }
    if keys.is_empty() {
        return Err(Error::Usage(format!(
            "no baseline saved for {key:?}; run 'diffy new baseline {key}' first"
        )));
    }
    let read_keys = keys.clone();
    let documents = persistence.call("get_many", move |p| {
        let keys: Vec<&str> = read_keys.iter().map(String::as_str).collect();
        p.get_many(&keys)
    })?;
    keys.iter()
        .zip(documents)
        .map(|(k, text)| {
            let text = text.ok_or_else(|| {
                Error::Failure(format!("baseline document {k} disappeared while reading"))
            })?;
            serde_json::from_str(&text)
                .map_err(|e| Error::Failure(format!("baseline document {k} is not a record: {e}")))
        })
        .collect()
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("documents serialise")
}

/// A run id from the current time: `20261121T235959Z`.
fn timestamp_id() -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rest = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Records standing in for a target whose collection failed as a whole.
fn failed_records(
    target: &TargetInfo,
    commands: &[Command],
    status: RecordStatus,
    why: &str,
) -> Vec<Record> {
    commands
        .iter()
        .map(|command| {
            let mut record = Record::new(&target.id, &command.id, status, String::new());
            record.stderr = why.to_string();
            record.collected_at = now_rfc3339();
            record
        })
        .collect()
}

/// Collect every target, `run.jobs` at a time, each within `run.target_timeout`. A target whose
/// collection fails, times out or misses a command gets failed records; the run goes on.
fn collect(
    collection: &Arc<CollectionHandle>,
    targets: &[TargetInfo],
    commands: &[Command],
    run: &RunOptions,
    progress: &ProgressBar,
) -> Vec<Record> {
    progress.set_length(targets.len() as u64);
    let commands: Arc<[Command]> = commands.into();
    let next = AtomicUsize::new(0);
    let jobs = run.jobs.clamp(1, targets.len().max(1));
    let mut per_target: Vec<Vec<Record>> = vec![Vec::new(); targets.len()];
    std::thread::scope(|scope| {
        let (sender, receiver) = mpsc::channel();
        for _ in 0..jobs {
            let sender = sender.clone();
            let (next, commands) = (&next, &commands);
            scope.spawn(move || {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(target) = targets.get(index) else {
                        break;
                    };
                    let records = collect_one(collection, target, commands, run);
                    if sender.send((index, records)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(sender);
        for (index, records) in receiver {
            per_target[index] = records;
            progress.inc(1);
        }
    });
    progress.finish_and_clear();
    per_target.into_iter().flatten().collect()
}

fn collect_one(
    collection: &Arc<CollectionHandle>,
    target: &TargetInfo,
    commands: &Arc<[Command]>,
    run: &RunOptions,
) -> Vec<Record> {
    // The call runs on its own thread so a plugin that never returns costs a timeout, not the run.
    let (sender, receiver) = mpsc::channel();
    let (call_collection, call_commands, call_target) =
        (Arc::clone(collection), Arc::clone(commands), target.clone());
    let incident = run.incident.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("collect {}", target.id))
        .spawn(move || {
            let result = call_collection.get(
                std::slice::from_ref(&call_target),
                &call_commands,
                incident.as_deref(),
            );
            let _ = sender.send(result);
        });
    if let Err(e) = spawned {
        return failed_records(
            target,
            commands,
            RecordStatus::Error,
            &format!("cannot start collection: {e}"),
        );
    }
    let label = &collection.label;
    match receiver.recv_timeout(run.target_timeout) {
        Ok(Ok(records)) => complete_records(target, commands, records),
        Ok(Err(error)) => {
            tracing::warn!(target = %target.id, "{error}");
            failed_records(target, commands, RecordStatus::Error, &error.to_string())
        }
        Err(_) => {
            let why = format!(
                "plugin {} collection {} did not finish within {}s",
                label.plugin,
                label.name,
                run.target_timeout.as_secs_f64()
            );
            tracing::warn!(target = %target.id, "{why}");
            failed_records(target, commands, RecordStatus::Timeout, &why)
        }
    }
}

/// Keep one record per command for this target, in command order; fill in what is missing.
fn complete_records(
    target: &TargetInfo,
    commands: &[Command],
    records: Vec<Record>,
) -> Vec<Record> {
    let mut by_command: BTreeMap<String, Record> = records
        .into_iter()
        .filter(|r| r.target == target.id)
        .map(|r| (r.command.clone(), r))
        .collect();
    commands
        .iter()
        .map(|command| {
            by_command.remove(&command.id).unwrap_or_else(|| {
                let mut missing = failed_records(
                    target,
                    std::slice::from_ref(command),
                    RecordStatus::Error,
                    "the collection returned no record for this command",
                );
                missing.remove(0)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse() {
        assert_eq!(
            parse_option("local-file.directory=/a=b").unwrap(),
            ("local-file", "directory", "/a=b")
        );
        assert!(parse_option("nodot=1").is_err());
        assert!(parse_option("a.b").is_err());
    }

    #[test]
    fn keys_stay_one_segment() {
        assert_eq!(key_segment("/tmp/fleet%1"), "%2Ftmp%2Ffleet%251");
    }

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_413), (2025, 11, 21));
    }
}
