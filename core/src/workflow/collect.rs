//! Collection across the fleet: targets on a bounded pool of workers, each target's call under its
//! own deadline; a target that fails, times out or misses a command becomes failed records, and
//! the run goes on. Each target's records are handed on as soon as they are in.
//!
//! A worker makes its calls itself; deadlines are kept by the thread that receives the records,
//! not by a thread per call. A call past its deadline is abandoned (an in-process call cannot be
//! stopped; an isolated plugin's transport kills its runner at the component timeout): its target
//! is recorded as timed out, the worker's answer will be dropped, and a new worker takes its
//! place. At most `jobs` workers are ever abandoned; past that the pool shrinks, and once no
//! worker is left the remaining targets are recorded as not collected. So a run has at most
//! `2 × jobs` collection threads, whatever the size of its fleet.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use diffy_plugin_api::protocol;
use diffy_plugin_api::{Command, Record, RecordStatus, TargetInfo};
use rustix::process::Pid;
use serde_json::value::RawValue;

use super::RunOptions;
use super::names::now_rfc3339;
use crate::component::{CollectionHandle, next_kept_id};
use crate::error::Result;
use crate::processes;
use crate::progress::Progress;
use crate::records::RawRecord;

/// Records standing in for a target whose collection failed as a whole.
fn failed_records(
    target: &TargetInfo,
    commands: &[Command],
    status: RecordStatus,
    why: &str,
) -> Vec<RawRecord> {
    commands
        .iter()
        .map(|command| failed_record(target, command, status, why))
        .collect()
}

fn failed_record(
    target: &TargetInfo,
    command: &Command,
    status: RecordStatus,
    why: &str,
) -> RawRecord {
    let mut record = Record::new(&target.id, &command.id, status, String::new());
    record.stderr = why.to_string();
    record.collected_at = now_rfc3339();
    RawRecord::from_record(&record)
}

/// What the fleet's collection shares with its workers.
struct Shared {
    collection: Arc<CollectionHandle>,
    targets: Arc<[TargetInfo]>,
    commands: Arc<[Command]>,
    incident: Option<String>,
    /// Whether the records stay where the collection's calls are served
    /// (`RunSink::may_keep_records_of`).
    keep_records: bool,
    /// The next target to take.
    next: AtomicUsize,
    /// Set when the run stops early: workers take no more targets.
    stop: AtomicBool,
    /// Per worker, the call it is making: `(target, started)`. The receiving thread clears an
    /// entry to abandon the call.
    calls: Mutex<Vec<Option<(usize, Instant)>>>,
    /// Per worker, its thread once started: what an abandoned call started is ended through it.
    threads: Mutex<Vec<Option<Pid>>>,
}

enum Message {
    /// A worker's target, collected.
    Collected(usize, Vec<RawRecord>),
    /// A worker found no target left.
    Finished,
}

impl Shared {
    fn lock_calls(&self) -> std::sync::MutexGuard<'_, Vec<Option<(usize, Instant)>>> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_threads(&self) -> std::sync::MutexGuard<'_, Vec<Option<Pid>>> {
        self.threads.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Take targets until none is left, the run stops, or this worker's call is abandoned.
    fn work(&self, worker: usize, sender: &mpsc::SyncSender<Message>) {
        self.lock_threads()[worker] = Some(processes::current_thread());
        loop {
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            let index = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(target) = self.targets.get(index) else {
                let _ = sender.send(Message::Finished);
                return;
            };
            self.lock_calls()[worker] = Some((index, Instant::now()));
            let answer = self.call(target);
            {
                let mut calls = self.lock_calls();
                if calls[worker].is_none_or(|(call, _)| call != index) {
                    return; // abandoned: the target is already recorded as timed out
                }
                calls[worker] = None;
            }
            let records = match answer {
                Ok(records) => complete_records(target, &self.commands, records),
                Err(why) => {
                    tracing::warn!(target = %target.id, "{why}");
                    failed_records(target, &self.commands, RecordStatus::Error, &why)
                }
            };
            if sender.send(Message::Collected(index, records)).is_err() {
                return;
            }
        }
    }

    /// One target's records as the collection answered them, checked to be records.
    fn call(&self, target: &TargetInfo) -> Result<Vec<RawRecord>, String> {
        let request = protocol::CollectionGet {
            targets: std::borrow::Cow::Borrowed(std::slice::from_ref(target)),
            commands: std::borrow::Cow::Borrowed(&self.commands),
            incident: self.incident.as_deref().map(std::borrow::Cow::Borrowed),
        };
        let request = serde_json::to_vec(&request).expect("requests serialise");
        let handle = &self.collection.handle;
        let lines = handle.supports("get_lines");
        let malformed = |e: &dyn std::fmt::Display| self.collection.label.malformed(e).to_string();
        if lines && self.keep_records {
            let keep = next_kept_id();
            let kept = handle
                .call_raw_keeping("get_lines", &request, keep)
                .map_err(|e| e.to_string())?;
            if let Some(why) = kept.malformed {
                return Err(malformed(&why));
            }
            let records = kept.records.into_iter().enumerate();
            return Ok(records
                .map(|(index, head)| RawRecord::kept(head, keep, index))
                .collect());
        }
        let answer = handle
            .call_raw(if lines { "get_lines" } else { "get" }, &request)
            .map_err(|e| e.to_string())?;
        let text = std::str::from_utf8(&answer).map_err(|e| malformed(&e))?;
        let record = |(index, record): (usize, Result<RawRecord, serde_json::Error>)| {
            record.map_err(|e| malformed(&format_args!("record {index}: {e}")))
        };
        if lines {
            return protocol::record_lines(text)
                .map(RawRecord::from_line)
                .enumerate()
                .map(record)
                .collect();
        }
        let records: Vec<&RawValue> = serde_json::from_str(text).map_err(|e| malformed(&e))?;
        records
            .into_iter()
            .map(RawRecord::from_json)
            .enumerate()
            .map(record)
            .collect()
    }
}

/// Collect every target, `run.jobs` at a time, each within `run.target_timeout`, and hand each
/// target's records (one per command, in command order) to `on_target` as they come in. A
/// target whose collection fails, times out or misses a command gets failed records; the run
/// goes on. An error of `on_target` stops the collection and is returned. With `keep_records`,
/// the records stay where the collection's calls are served and only their heads come here.
pub(super) fn collect(
    collection: &Arc<CollectionHandle>,
    targets: Arc<[TargetInfo]>,
    commands: &[Command],
    run: &RunOptions,
    keep_records: bool,
    progress: &dyn Progress,
    mut on_target: impl FnMut(Vec<RawRecord>) -> Result<()>,
) -> Result<()> {
    progress.start(targets.len() as u64, "collecting hosts");
    let jobs = run.jobs.clamp(1, targets.len().max(1));
    let shared = Arc::new(Shared {
        collection: Arc::clone(collection),
        commands: commands.into(),
        incident: run.incident.clone(),
        keep_records,
        next: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
        calls: Mutex::new(Vec::new()),
        threads: Mutex::new(Vec::new()),
        targets,
    });
    let (sender, receiver) = mpsc::sync_channel(jobs);
    let mut pool = Pool {
        shared: Arc::clone(&shared),
        sender,
        live: 0,
        abandoned: 0,
        jobs,
    };
    for _ in 0..jobs {
        pool.spawn();
    }
    let result = pool.receive(&receiver, run.target_timeout, progress, &mut on_target);
    shared.stop.store(true, Ordering::Relaxed);
    progress.finish();
    result
}

/// The workers of one collection, seen from the thread that receives their records.
struct Pool {
    shared: Arc<Shared>,
    sender: mpsc::SyncSender<Message>,
    /// Workers running and not abandoned.
    live: usize,
    abandoned: usize,
    jobs: usize,
}

impl Pool {
    /// Start a worker; a worker that cannot be started leaves the pool smaller.
    fn spawn(&mut self) {
        let worker = {
            let mut calls = self.shared.lock_calls();
            calls.push(None);
            self.shared.lock_threads().push(None);
            calls.len() - 1
        };
        let (shared, sender) = (Arc::clone(&self.shared), self.sender.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("collect {worker}"))
            .spawn(move || shared.work(worker, &sender));
        match spawned {
            Ok(_) => self.live += 1,
            Err(e) => tracing::warn!("cannot start a collection worker: {e}"),
        }
    }

    fn receive(
        &mut self,
        receiver: &mpsc::Receiver<Message>,
        timeout: Duration,
        progress: &dyn Progress,
        on_target: &mut impl FnMut(Vec<RawRecord>) -> Result<()>,
    ) -> Result<()> {
        let total = self.shared.targets.len();
        let mut handed = Handed {
            done: vec![false; total],
            remaining: total,
        };
        let mut hand_on = |handed: &mut Handed, index: usize, records| -> Result<()> {
            if !handed.take(index) {
                return Ok(()); // an abandoned call's target, recorded already
            }
            progress.advance(1);
            on_target(records)
        };
        while handed.remaining > 0 {
            if self.live == 0 {
                // Every worker was abandoned: what is left cannot be collected.
                let why = format!(
                    "not collected: {} calls of collection {} did not return, so the rest of \
                     the fleet was given up",
                    self.abandoned, self.shared.collection.label.name
                );
                for index in 0..total {
                    if !handed.done[index] {
                        let target = &self.shared.targets[index];
                        let records = failed_records(
                            target,
                            &self.shared.commands,
                            RecordStatus::Error,
                            &why,
                        );
                        hand_on(&mut handed, index, records)?;
                    }
                }
                break;
            }
            match receiver.recv_timeout(self.until_next_deadline(timeout)) {
                Ok(Message::Collected(index, records)) => hand_on(&mut handed, index, records)?,
                Ok(Message::Finished) => self.live -= 1,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    for (index, ended) in self.abandon_overdue(timeout) {
                        let target = &self.shared.targets[index];
                        let why = format!(
                            "plugin {} collection {} did not finish within {}s{}",
                            self.shared.collection.label.plugin,
                            self.shared.collection.label.name,
                            timeout.as_secs_f64(),
                            killed(ended)
                        );
                        tracing::warn!(target = %target.id, "{why}");
                        let records = failed_records(
                            target,
                            &self.shared.commands,
                            RecordStatus::Timeout,
                            &why,
                        );
                        hand_on(&mut handed, index, records)?;
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        Ok(())
    }

    /// How long until the oldest call in flight is overdue.
    fn until_next_deadline(&self, timeout: Duration) -> Duration {
        let oldest = self.shared.lock_calls().iter().flatten().map(|c| c.1).min();
        oldest.map_or(timeout, |started| {
            (started + timeout).saturating_duration_since(Instant::now())
        })
    }

    /// Abandon every call past its deadline, end what its worker's thread started, replace the
    /// worker while fewer than `jobs` were abandoned, and return the targets of those calls with
    /// how many processes were ended for each.
    fn abandon_overdue(&mut self, timeout: Duration) -> Vec<(usize, usize)> {
        let now = Instant::now();
        let overdue: Vec<(usize, usize)> = {
            let mut calls = self.shared.lock_calls();
            calls
                .iter_mut()
                .enumerate()
                .filter(|(_, call)| call.is_some_and(|(_, started)| now >= started + timeout))
                .filter_map(|(worker, call)| call.take().map(|(target, _)| (worker, target)))
                .collect::<Vec<_>>()
        }
        .into_iter()
        .map(|(worker, target)| {
            // The call is abandoned; what it started must not outlive it.
            let thread = self.shared.lock_threads()[worker];
            (target, thread.map_or(0, processes::end_started_by))
        })
        .collect();
        for _ in &overdue {
            self.live -= 1;
            self.abandoned += 1;
            if self.abandoned <= self.jobs {
                self.spawn();
            }
        }
        overdue
    }
}

/// Which targets' records were handed on.
struct Handed {
    done: Vec<bool>,
    remaining: usize,
}

impl Handed {
    /// Mark target `index` handed on; false if it already was.
    fn take(&mut self, index: usize) -> bool {
        if std::mem::replace(&mut self.done[index], true) {
            return false;
        }
        self.remaining -= 1;
        true
    }
}

/// What a timed-out record adds about the processes its call had started.
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
    records: Vec<RawRecord>,
) -> Vec<RawRecord> {
    let mut by_command: BTreeMap<String, RawRecord> = records
        .into_iter()
        .filter(|r| r.target == target.id)
        .map(|r| (r.command.clone(), r))
        .collect();
    commands
        .iter()
        .map(|command| {
            by_command.remove(&command.id).unwrap_or_else(|| {
                failed_record(
                    target,
                    command,
                    RecordStatus::Error,
                    "the collection returned no record for this command",
                )
            })
        })
        .collect()
}
