//! A run's records on their way out: gathered into batches as targets finish, each batch encoded
//! once and sent to the persistence (`append_lines`, or `append_records` before API 0.2.2) and the
//! analysis (`feed_lines`, or `feed`) at the same time, each on its component's thread, while the
//! next batches gather: the collection never waits for storage or analysis unless [`IN_FLIGHT`]
//! batches are queued for them. When one isolated plugin serves both, a batch crosses to its
//! runner once for the two calls; when it serves the collection too, the records stay there and
//! only their heads cross: the runner puts each batch together from the answers it kept. So memory holds a few batches whatever the fleet's size, unless
//! the analysis is not incremental (built before 0.2.1): then every record is kept for its one
//! `run`.

use std::collections::VecDeque;
use std::sync::Arc;

use diffy_plugin_api::{Command, Record, RecordStatus, Report};

use super::guard::{Guarded, Pending};
use crate::component::{AnalysisHandle, ComponentHandle, PersistenceHandle, SharedInput};
use crate::error::Result;
use crate::records::{EncodedBatch, RawRecord};

/// A batch is sent once its records' JSON reaches this size…
const BATCH_BYTES: usize = 4 << 20;
/// …or it holds this many records.
const BATCH_RECORDS: usize = 2048;
/// How many batches may be on their way to the components before the next one waits.
const IN_FLIGHT: usize = 4;

/// Where a run's records go.
pub(super) struct RunSink<'a> {
    run: String,
    persistence: &'a Guarded<PersistenceHandle>,
    analysis: &'a Guarded<AnalysisHandle>,
    incremental: bool,
    /// Whether the persistence and the analysis take the batches as JSON Lines from one process
    /// (an isolated plugin serving both): each batch is then sent there once for both.
    shared_lines: bool,
    /// For an analysis that is not incremental: every batch, for its one `run` call.
    kept: Vec<Arc<EncodedBatch>>,
    gathering: Vec<RawRecord>,
    gathered_bytes: usize,
    /// Per batch sent and not yet answered: its calls.
    in_flight: VecDeque<Vec<Pending<()>>>,
    /// How many records were handed on, and how many of them did not succeed.
    pub(super) records: usize,
    pub(super) failed: usize,
}

impl<'a> RunSink<'a> {
    /// A sink for run `run`, whose analysis has begun if it is incremental.
    pub(super) fn new(
        run: &str,
        persistence: &'a Guarded<PersistenceHandle>,
        analysis: &'a Guarded<AnalysisHandle>,
        incremental: bool,
    ) -> Self {
        let (saving, analysing) = (persistence.component(), analysis.component());
        let shared_lines = incremental
            && saving.served_by().is_some()
            && saving.served_by() == analysing.served_by()
            && saving.supports("append_lines")
            && analysing.supports("feed_lines");
        tracing::debug!(
            shared_lines,
            persistence = ?saving.served_by(),
            analysis = ?analysing.served_by(),
            "where the run's batches go"
        );
        RunSink {
            run: run.to_string(),
            persistence,
            analysis,
            incremental,
            shared_lines,
            kept: Vec::new(),
            gathering: Vec::new(),
            gathered_bytes: 0,
            in_flight: VecDeque::new(),
            records: 0,
            failed: 0,
        }
    }

    /// Whether `collection` may keep its records in the runner that serves it: when that one
    /// isolated plugin serves the persistence and the analysis too, which take each batch as
    /// JSON Lines put together there, so the records never cross to the host and back.
    pub(super) fn may_keep_records_of(&self, collection: &ComponentHandle) -> bool {
        self.shared_lines
            && collection.served_by().is_some()
            && collection.served_by() == self.persistence.component().served_by()
            && collection.supports("get_lines")
    }

    /// One target's records.
    pub(super) fn push(&mut self, records: Vec<RawRecord>) -> Result<()> {
        self.records += records.len();
        self.failed += records
            .iter()
            .filter(|r| r.status != RecordStatus::Ok)
            .count();
        self.gathered_bytes += records.iter().map(|r| r.text_len()).sum::<usize>();
        self.gathering.extend(records);
        if self.gathered_bytes >= BATCH_BYTES || self.gathering.len() >= BATCH_RECORDS {
            self.send()?;
        }
        Ok(())
    }

    /// Send what has gathered, once fewer than [`IN_FLIGHT`] batches are on their way.
    fn send(&mut self) -> Result<()> {
        while self.in_flight.len() >= IN_FLIGHT {
            self.settle_oldest()?;
        }
        if self.gathering.is_empty() {
            return Ok(());
        }
        let records = std::mem::take(&mut self.gathering);
        self.gathered_bytes = 0;
        let mut batch = EncodedBatch::new(&self.run, records);
        if self.shared_lines {
            batch.shared_lines = Some(SharedInput::new(2, batch.parts()));
        }
        let batch = Arc::new(batch);
        let saved = Arc::clone(&batch);
        let mut calls = vec![
            self.persistence
                .start("append_records", move |p| p.append_records(&saved)),
        ];
        if self.incremental {
            let fed = Arc::clone(&batch);
            calls.push(self.analysis.start("feed", move |a| a.feed(&fed)));
        } else {
            self.kept.push(batch);
        }
        self.in_flight.push_back(calls);
        Ok(())
    }

    /// Wait for the oldest batch's calls; the first failure, if any.
    fn settle_oldest(&mut self) -> Result<()> {
        let mut result = Ok(());
        for pending in self.in_flight.pop_front().unwrap_or_default() {
            let answer = pending.wait();
            if result.is_ok() {
                result = answer;
            }
        }
        result
    }

    /// Wait for every batch on its way.
    fn settle(&mut self) -> Result<()> {
        while !self.in_flight.is_empty() {
            self.settle_oldest()?;
        }
        Ok(())
    }

    /// Every record is in: save the last batch and ask the analysis for its report.
    pub(super) fn finish(
        mut self,
        commands: Vec<Command>,
        baseline: Option<Vec<Record>>,
        incident: Option<String>,
    ) -> Result<Report> {
        self.send()?;
        self.settle()?;
        if self.incremental {
            let run = self.run.clone();
            return self.analysis.call("finish", move |a| a.finish(&run));
        }
        let kept = std::mem::take(&mut self.kept);
        self.analysis.call("run", move |a| {
            let records = kept.iter().flat_map(|batch| &batch.records);
            a.run_records(&commands, records, baseline.as_deref(), incident.as_deref())
        })
    }
}
