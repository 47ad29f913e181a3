//! Collection across the fleet: targets on a bounded pool of workers, each target's call under its
//! own deadline; a target that fails, times out or misses a command becomes failed records, and
//! the run goes on.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};

use diffy_plugin_api::{Command, Record, RecordStatus, TargetInfo};

use super::RunOptions;
use super::keys::now_rfc3339;
use crate::component::CollectionHandle;
use crate::processes;
use crate::progress::Progress;

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
pub(super) fn collect(
    collection: &Arc<CollectionHandle>,
    targets: &[TargetInfo],
    commands: &[Command],
    run: &RunOptions,
    progress: &dyn Progress,
) -> Vec<Record> {
    progress.start(targets.len() as u64, "collecting hosts");
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
            progress.advance(1);
        }
    });
    progress.finish();
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
    let (thread_sender, thread) = mpsc::sync_channel(1);
    let (call_collection, call_commands, call_target) =
        (Arc::clone(collection), Arc::clone(commands), target.clone());
    let incident = run.incident.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("collect {}", target.id))
        .spawn(move || {
            let _ = thread_sender.send(processes::current_thread());
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
            // The call is abandoned; what it started must not outlive it.
            let ended = thread.recv().map_or(0, processes::end_started_by);
            let why = format!(
                "plugin {} collection {} did not finish within {}s{}",
                label.plugin,
                label.name,
                run.target_timeout.as_secs_f64(),
                killed(ended)
            );
            tracing::warn!(target = %target.id, "{why}");
            failed_records(target, commands, RecordStatus::Timeout, &why)
        }
    }
}

/// What a timed-out call's record says of the processes it had started.
pub(super) fn killed(processes: usize) -> String {
    match processes {
        0 => String::new(),
        1 => "; the process it had started was killed".into(),
        n => format!("; the {n} processes it had started were killed"),
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
