//! Diffy's two jobs, chaining the five interface components:
//!
//! - `new baseline`: target → first target only → payload → collection → persistence under
//!   `baseline/<key>/<command>`.
//! - `new analysis`: target → all targets → payload → collection (many targets at once, each with a
//!   timeout; a failed target is failed records, never a failed run) → persistence of every record
//!   under `records/<run>/<target>/<command>` → analysis (with the saved baseline when the analysis
//!   uses one) → persistence of the report under `report/<run>`.
//!
//! Only the five chosen components are activated, each resolved once into an activation plan
//! (owner, declaration, validated options) before anything is loaded.

mod collect;
mod guard;
mod names;
mod stream;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use diffy_plugin_api::{
    Command, ComponentKind, Record, Report, RunInfo, RunStatus, TargetInfo, keys,
};
use serde_json::value::RawValue;

use crate::activation::{Activator, Plan};
use crate::component::{
    AnalysisHandle, CollectionHandle, ComponentHandle, PayloadHandle, PersistenceHandle,
    TargetHandle,
};
use crate::error::{Error, Result};
use crate::progress::{Progress, Silent};
use collect::collect;
use guard::Guarded;
pub use names::{MAX_INCIDENT_CHARS, MAX_TARGET_KEY_CHARS};
use names::{check_incident, check_target_key, new_run_id, now_rfc3339_millis};
use stream::RunSink;

/// The components `diffy new` uses unless told otherwise: the bundled `diffy-local`'s.
pub mod defaults {
    /// Target slug.
    pub const TARGET: &str = "local";
    /// Payload slug.
    pub const PAYLOAD: &str = "local-command";
    /// Collection slug.
    pub const COLLECTION: &str = "local-shell";
    /// Persistence slug.
    pub const PERSISTENCE: &str = "local-file";
    /// Analysis slug.
    pub const ANALYSIS: &str = "local-simple";
    /// The payload of evidence replayed by the `evidence-dir` collection: what the evidence holds.
    pub const EVIDENCE_PAYLOAD: &str = "evidence";
    /// The collection that replays saved evidence.
    pub const EVIDENCE_COLLECTION: &str = "evidence-dir";

    /// The payload when none is chosen: [`PAYLOAD`], except that evidence replayed by the
    /// [`EVIDENCE_COLLECTION`] holds its own commands, which [`EVIDENCE_PAYLOAD`] lists — unless
    /// an `--option local-command.…` says the commands are [`PAYLOAD`]'s.
    pub fn payload_for(collection: &str, options: &[String]) -> &'static str {
        let configures_payload = options
            .iter()
            .any(|option| option.starts_with(&format!("{PAYLOAD}.")));
        if collection == EVIDENCE_COLLECTION && !configures_payload {
            EVIDENCE_PAYLOAD
        } else {
            PAYLOAD
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn evidence_is_the_payload_of_evidence_unless_local_command_is_configured() {
            let commands = vec![r#"local-command.commands=[{"id":"x","run":"true"}]"#.into()];
            assert_eq!(payload_for("evidence-dir", &[]), "evidence");
            assert_eq!(payload_for("evidence-dir", &commands), "local-command");
            let other = vec!["evidence-dir.directory=/x".to_string()];
            assert_eq!(payload_for("evidence-dir", &other), "evidence");
            assert_eq!(payload_for("local-shell", &[]), "local-command");
        }
    }
}

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
    /// The bundled `diffy-local` components ([`defaults`]).
    fn default() -> Self {
        Choices {
            target: defaults::TARGET.into(),
            payload: defaults::PAYLOAD.into(),
            collection: defaults::COLLECTION.into(),
            persistence: defaults::PERSISTENCE.into(),
            analysis: defaults::ANALYSIS.into(),
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
    /// The run, as saved.
    pub run: RunInfo,
}

struct Components {
    target: Guarded<TargetHandle>,
    payload: Guarded<PayloadHandle>,
    collection: Arc<CollectionHandle>,
    persistence: Guarded<PersistenceHandle>,
}

/// Resolve the job's components (and every option) into a plan, then activate the four that every
/// job uses. The analysis, when planned, is activated later, after the baseline is found.
fn activate_pipeline(
    activator: &mut Activator,
    run: &RunOptions,
    with_analysis: bool,
) -> Result<(Components, Plan)> {
    let c = &run.choices;
    let mut wanted = vec![
        (ComponentKind::Target, c.target.as_str()),
        (ComponentKind::Payload, c.payload.as_str()),
        (ComponentKind::Collection, c.collection.as_str()),
        (ComponentKind::Persistence, c.persistence.as_str()),
    ];
    if with_analysis {
        wanted.push((ComponentKind::Analysis, c.analysis.as_str()));
    }
    let plan = activator.plan(&wanted, &run.options)?;
    let timeout = run.component_timeout;
    let [target, payload, collection, persistence] =
        [0, 1, 2, 3].map(|index| &plan.components[index]);
    let target = TargetHandle::from(activator.activate_planned(target)?);
    let payload = PayloadHandle::from(activator.activate_planned(payload)?);
    let collection = CollectionHandle::from(activator.activate_planned(collection)?);
    let persistence = PersistenceHandle::from(activator.activate_planned(persistence)?);
    let components = Components {
        target: Guarded::new(target, timeout)?,
        payload: Guarded::new(payload, timeout)?,
        collection: Arc::new(collection),
        persistence: Guarded::new(persistence, timeout)?,
    };
    Ok((components, plan))
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
    let plan = activator.plan(&[(kind, slug)], raw)?;
    activator.activate_planned(&plan.components[0])
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

/// A document as JSON, written once and never parsed again on the host's side.
fn raw_json<T: serde::Serialize>(value: &T) -> Box<RawValue> {
    serde_json::value::to_raw_value(value).expect("documents serialise")
}

/// `diffy new baseline KEY`.
pub fn new_baseline(
    activator: &mut Activator,
    key: &str,
    run: &RunOptions,
) -> Result<BaselineOutcome> {
    check_target_key(key)?;
    check_incident(run.incident.as_deref())?;
    let (components, _plan) = activate_pipeline(activator, run, false)?;
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
    let mut collected = Vec::new();
    collect(
        &components.collection,
        Arc::from(vec![first.clone()]),
        &commands,
        run,
        false,
        &Silent,
        |records| {
            collected.extend(records);
            Ok(())
        },
    )?;
    let records = collected
        .iter()
        .map(|record| {
            record
                .decode()
                .map_err(|e| components.collection.label.malformed(e))
        })
        .collect::<Result<Vec<Record>>>()?;
    let keys = collected
        .iter()
        .map(|record| keys::baseline_key(key, &record.command))
        .collect();
    let owned_key = key.to_string();
    components.persistence.call("save_baseline", move |p| {
        p.save_baseline(&owned_key, &collected)
    })?;
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
    progress: &dyn Progress,
) -> Result<AnalysisOutcome> {
    check_target_key(key)?;
    check_incident(run.incident.as_deref())?;
    let (components, plan) = activate_pipeline(activator, run, true)?;
    let planned_analysis = plan.get(ComponentKind::Analysis).expect("planned above");

    // A missing baseline is a usage error worth reporting before any collection runs.
    let baseline = if planned_analysis.declaration.uses_baseline {
        Some(load_baseline(
            &components.persistence,
            run.baseline_key.as_deref().unwrap_or(key),
        )?)
    } else {
        None
    };
    let analysis = AnalysisHandle::from(activator.activate_planned(planned_analysis)?);
    let incremental = analysis.is_incremental();
    let analysis = Guarded::new(analysis, run.component_timeout)?;

    let targets = resolve_targets(&components.target, key, run.incident.clone())?;
    let commands = generate_commands(&components.payload, &targets, run.incident.clone())?;
    let mut info = create_run(&components.persistence, key, run, &targets)?;
    tracing::debug!(run = %info.id, hosts = targets.len(), commands = commands.len(), "run created");
    let outcome = analyse(
        &components,
        &analysis,
        incremental,
        &info.id,
        targets,
        commands,
        baseline,
        run,
        progress,
    );
    info.finished_at = Some(now_rfc3339_millis());
    let (report, report_json) = match outcome {
        Ok(analysed) => {
            info.status = RunStatus::Complete;
            info.records = analysed.records as u64;
            info.failed_records = analysed.failed as u64;
            (analysed.report, None)
        }
        Err(error) => {
            // Keep what was saved, and say why the run has no report.
            info.status = RunStatus::Failed;
            info.error = Some(error.to_string());
            let failed = info.clone();
            if let Err(also) = components
                .persistence
                .call("finish_run", move |p| p.finish_run(&failed, None))
            {
                tracing::warn!("cannot mark run {} as failed: {also}", info.id);
            }
            return Err(error);
        }
    };
    let report_json = report_json.unwrap_or_else(|| raw_json(&report));
    let finished = info.clone();
    components.persistence.call("finish_run", move |p| {
        p.finish_run(&finished, Some(&report_json))
    })?;
    tracing::debug!(run = %info.id, "run saved with its report");
    Ok(AnalysisOutcome {
        report,
        report_key: keys::report_key(&info.id),
        records: info.records as usize,
        failed_records: info.failed_records as usize,
        run: info,
    })
}

/// Reserve a new run id in the persistence: a few tries, each with a new id, in case another
/// run took the first.
fn create_run(
    persistence: &Guarded<PersistenceHandle>,
    key: &str,
    run: &RunOptions,
    targets: &[TargetInfo],
) -> Result<RunInfo> {
    const TRIES: usize = 5;
    for _ in 0..TRIES {
        let info = RunInfo {
            id: new_run_id(),
            incident: run.incident.clone(),
            key: key.to_string(),
            analysis: run.choices.analysis.clone(),
            started_at: now_rfc3339_millis(),
            finished_at: None,
            status: RunStatus::Running,
            hosts: targets.len() as u64,
            records: 0,
            failed_records: 0,
            error: None,
        };
        let candidate = info.clone();
        if persistence.call("create_run", move |p| p.create_run(&candidate))? {
            return Ok(info);
        }
        tracing::debug!("run id {} is taken; trying another", info.id);
    }
    Err(persistence.malformed(format!(
        "create_run refused {TRIES} new random run ids as taken"
    )))
}

/// What a run's analysis produced.
struct Analysed {
    report: Report,
    records: usize,
    failed: usize,
}

/// Collect the fleet into run `run_id`, saving and analysing records as they come in, and check
/// the report.
#[allow(clippy::too_many_arguments)]
fn analyse(
    components: &Components,
    analysis: &Guarded<AnalysisHandle>,
    incremental: bool,
    run_id: &str,
    targets: Vec<TargetInfo>,
    commands: Vec<Command>,
    baseline: Option<Vec<Record>>,
    run: &RunOptions,
    progress: &dyn Progress,
) -> Result<Analysed> {
    if incremental {
        let (id, begun_commands) = (run_id.to_string(), commands.clone());
        let (begun_baseline, incident) = (baseline.clone(), run.incident.clone());
        analysis.call("begin", move |a| {
            a.begin(
                &id,
                &begun_commands,
                begun_baseline.as_deref(),
                incident.as_deref(),
            )
        })?;
    }
    let known: HashSet<String> = targets.iter().map(|t| t.id.clone()).collect();
    let mut sink = RunSink::new(run_id, &components.persistence, analysis, incremental);
    let keep_records = sink.may_keep_records_of(&components.collection.handle);
    tracing::debug!(
        keep_records,
        "whether the records stay in the collection's runner"
    );
    collect(
        &components.collection,
        Arc::from(targets),
        &commands,
        run,
        keep_records,
        progress,
        |records| sink.push(records),
    )?;
    let (records, failed) = (sink.records, sink.failed);
    tracing::debug!(records, failed, "every target collected");
    let mut report = sink.finish(commands, baseline, run.incident.clone())?;
    tracing::debug!(hosts = report.hosts.len(), "analysis finished");
    if let Some(stranger) = report.hosts.iter().find(|h| !known.contains(&h.target)) {
        return Err(analysis.malformed(format!(
            "the report names {:?}, which is not one of the targets",
            stranger.target
        )));
    }
    // Say how many collections failed, unless the report already accounts for each of them as a
    // command it could not compare.
    let accounted = report
        .hosts
        .iter()
        .flat_map(|h| &h.commands)
        .filter(|c| c.error.is_some())
        .count();
    if failed > accounted {
        report
            .warnings
            .push(format!("{failed} of {records} collections failed"));
    }
    Ok(Analysed {
        report,
        records,
        failed,
    })
}

/// The runs saved (of `incident` only, when given), oldest first.
pub fn list_runs(persistence: &PersistenceHandle, incident: Option<&str>) -> Result<Vec<RunInfo>> {
    persistence.list_runs(incident)
}

fn load_baseline(persistence: &Guarded<PersistenceHandle>, key: &str) -> Result<Vec<Record>> {
    let prefix = keys::baseline_prefix(key);
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
