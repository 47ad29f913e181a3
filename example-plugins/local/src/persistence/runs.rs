//! Runs: a directory each, whose records are appended to one JSON Lines file per command.
//!
//! ```text
//! runs/<run>/run.json                 the run (RunInfo): written when it starts and when it ends
//! runs/<run>/records/<command>.jsonl  its records of that command, one JSON object a line
//! runs/<run>/index.jsonl              ["<target>","<command>",<offset>,<length>] per record
//! runs/<run>/report.json              its report, once it finished
//! runs/.open/<run>                    locked by the writer while the run is open
//! ```
//!
//! A run is created exclusively (`mkdir` fails when the id is taken), so two runs never share a
//! directory. Records are appended as they come, the index after the records it points at; at
//! the end the files are flushed to disk, the report written, and `run.json` replaced, atomically,
//! by the finished run: a run reads as complete only with all its records and its report. A
//! writer that dies leaves its `.open` file unlocked: the run reads as interrupted, and the next
//! run created marks it so for good and removes what its writer left half-written.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use diffy_plugin_api::anyhow::{Context, anyhow, bail};
use diffy_plugin_api::{RecordJson, Result, RunInfo, RunStatus};

use super::atomic;
use super::names::file_name;
use super::writeback::Writeback;

const RUN_FILE: &str = "run.json";
const REPORT_FILE: &str = "report.json";
const INDEX_FILE: &str = "index.jsonl";
const RECORDS_DIR: &str = "records";
const RECORDS_EXTENSION: &str = ".jsonl";
const OPEN_DIR: &str = ".open";

/// The runs under one directory.
pub(crate) struct Runs {
    root: PathBuf,
    /// The runs this component created and has not finished.
    open: Mutex<HashMap<String, OpenRun>>,
}

/// A run being written.
struct OpenRun {
    dir: PathBuf,
    /// The `.open` file, locked while this is alive.
    _marker: File,
    index: BufWriter<File>,
    /// Per command file name: the file and its length so far.
    records: HashMap<String, (BufWriter<File>, u64)>,
    writeback: Writeback,
}

/// Where a record of a run is.
#[derive(serde::Serialize, serde::Deserialize)]
struct IndexEntry(String, String, u64, u64);

impl Runs {
    pub(crate) fn new(root: PathBuf) -> Self {
        Runs {
            root,
            open: Mutex::new(HashMap::new()),
        }
    }

    fn lock_open(&self) -> MutexGuard<'_, HashMap<String, OpenRun>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn dir_of(&self, run: &str) -> PathBuf {
        self.root.join(file_name(run))
    }

    fn marker_of(&self, run: &str) -> PathBuf {
        self.root.join(OPEN_DIR).join(file_name(run))
    }

    /// Create run `info.id`, unless it exists.
    pub(crate) fn create(&self, info: &RunInfo) -> Result<bool> {
        self.mark_interrupted();
        let open_dir = self.root.join(OPEN_DIR);
        fs::create_dir_all(&open_dir)
            .with_context(|| format!("cannot create {}", open_dir.display()))?;
        // The marker is locked before it gets its name, so no one ever sees it unlocked while
        // this run lives.
        let marker = tempfile::Builder::new()
            .prefix(atomic::TEMPORARY_PREFIX)
            .tempfile_in(&open_dir)
            .with_context(|| format!("cannot create a file in {}", open_dir.display()))?;
        marker
            .as_file()
            .try_lock()
            .with_context(|| format!("cannot lock {}", marker.path().display()))?;
        let dir = self.dir_of(&info.id);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", dir.display())),
        }
        // Marked open before run.json exists, so no reader ever sees the run without its
        // writer's lock (it would read as interrupted).
        let marker = marker
            .persist_noclobber(self.marker_of(&info.id))
            .map_err(|e| anyhow!("cannot mark run {} as open: {}", info.id, e.error))?;
        let records_dir = dir.join(RECORDS_DIR);
        fs::create_dir(&records_dir)
            .with_context(|| format!("cannot create {}", records_dir.display()))?;
        let index = create_new(&dir.join(INDEX_FILE))?;
        atomic::write(&dir, RUN_FILE, &serde_json::to_vec(info)?)?;
        self.lock_open().insert(
            info.id.clone(),
            OpenRun {
                dir,
                _marker: marker,
                index: BufWriter::new(index),
                records: HashMap::new(),
                writeback: Writeback::start(&info.id),
            },
        );
        Ok(true)
    }

    /// Append records to open run `run`.
    pub(crate) fn append(&self, run: &str, records: &[RecordJson<'_>]) -> Result<()> {
        let mut open = self.lock_open();
        let Some(open) = open.get_mut(run) else {
            bail!("run {run:?} is not open in this store: create it first (or it finished)");
        };
        // Index entries gather here and reach the index only after the records they point at
        // reach their files: the index's own buffer, once full, would write them out early.
        let mut entries = Vec::new();
        for record in records {
            let name = format!("{}{RECORDS_EXTENSION}", file_name(&record.command));
            let (file, length) = match open.records.get_mut(&name) {
                Some(entry) => entry,
                None => {
                    let path = open.dir.join(RECORDS_DIR).join(&name);
                    let file = BufWriter::with_capacity(1 << 20, create_new(&path)?);
                    open.records.entry(name.clone()).or_insert((file, 0))
                }
            };
            let line = one_line(record.json);
            let write = file
                .write_all(line.as_bytes())
                .and_then(|()| file.write_all(b"\n"));
            write.with_context(|| format!("cannot append to {name} of run {run}"))?;
            let entry = IndexEntry(
                record.target.to_string(),
                record.command.to_string(),
                *length,
                line.len() as u64,
            );
            *length += line.len() as u64 + 1;
            serde_json::to_writer(&mut entries, &entry)?;
            entries.push(b'\n');
        }
        // Records reach the files before the index entries that point at them.
        for (name, (file, _)) in &mut open.records {
            file.flush()
                .with_context(|| format!("cannot append to {name} of run {run}"))?;
            open.writeback.push(file.get_ref());
        }
        open.index
            .write_all(&entries)
            .and_then(|()| open.index.flush())
            .with_context(|| format!("cannot append to the index of run {run}"))?;
        open.writeback.push(open.index.get_ref());
        Ok(())
    }

    /// Finish run `info.id`: its files flushed to disk, its report and its final state saved.
    pub(crate) fn finish(&self, info: &RunInfo, report: Option<&str>) -> Result<()> {
        // The open run, and so the lock on its marker, is held until its final state is saved:
        // no reader ever sees the run's writer gone while it finishes.
        let mut open = self.lock_open().remove(&info.id);
        let dir = match &mut open {
            Some(open) => {
                let writeback = std::mem::replace(&mut open.writeback, Writeback::idle());
                writeback
                    .finish()
                    .with_context(|| format!("cannot write run {} to disk", info.id))?;
                for (name, (file, _)) in &mut open.records {
                    file.flush()
                        .and_then(|()| file.get_ref().sync_all())
                        .with_context(|| format!("cannot flush {name} of run {}", info.id))?;
                }
                open.index.flush()?;
                open.index.get_ref().sync_all()?;
                atomic::sync_dir(&open.dir.join(RECORDS_DIR))?;
                open.dir.clone()
            }
            None => {
                let dir = self.dir_of(&info.id);
                if !dir.is_dir() {
                    bail!("no run {:?} in this store", info.id);
                }
                dir
            }
        };
        if let Some(report) = report {
            atomic::write(&dir, REPORT_FILE, report.as_bytes())?;
        }
        atomic::write(&dir, RUN_FILE, &serde_json::to_vec(info)?)?;
        // The run is finished: its marker goes, then its lock.
        let _ = fs::remove_file(self.marker_of(&info.id));
        drop(open);
        Ok(())
    }

    /// Run `run` as saved, interrupted if its writer is gone.
    pub(crate) fn info(&self, run: &str) -> Result<Option<RunInfo>> {
        self.read_info(&self.dir_of(run))
    }

    fn read_info(&self, dir: &Path) -> Result<Option<RunInfo>> {
        let Some(text) = read_optional(&dir.join(RUN_FILE))? else {
            return Ok(None);
        };
        let mut info: RunInfo = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a run", dir.join(RUN_FILE).display()))?;
        if info.status == RunStatus::Running && self.writer_is_gone(&info.id) {
            info.status = RunStatus::Interrupted;
        }
        Ok(Some(info))
    }

    fn writer_is_gone(&self, run: &str) -> bool {
        if self.lock_open().contains_key(run) {
            return false;
        }
        // A marker is locked before it takes its name, so an unlocked one is a dead writer's.
        let marker = self.marker_of(run);
        !marker.exists() || atomic::is_unlocked(&marker)
    }

    /// Every run, oldest first.
    pub(crate) fn list(&self) -> Result<Vec<RunInfo>> {
        let entries = match fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot list {}", self.root.display()));
            }
        };
        let mut runs = Vec::new();
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot list {}", self.root.display()))?;
            if entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.starts_with('.'))
            {
                continue;
            }
            if let Some(info) = self.read_info(&entry.path())? {
                runs.push(info);
            }
        }
        runs.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(runs)
    }

    /// The report of run `run`.
    pub(crate) fn report(&self, run: &str) -> Result<Option<String>> {
        read_optional(&self.dir_of(run).join(REPORT_FILE))
    }

    /// The record of `target` and `command` in run `run`.
    pub(crate) fn record(&self, run: &str, target: &str, command: &str) -> Result<Option<String>> {
        let dir = self.dir_of(run);
        let found = self
            .index(&dir)?
            .into_iter()
            .find(|entry| entry.0 == target && entry.1 == command);
        let Some(IndexEntry(_, command, offset, length)) = found else {
            return Ok(None);
        };
        let path = dir
            .join(RECORDS_DIR)
            .join(format!("{}{RECORDS_EXTENSION}", file_name(&command)));
        let mut file =
            File::open(&path).with_context(|| format!("cannot read {}", path.display()))?;
        file.seek(SeekFrom::Start(offset))?;
        let mut line = vec![0; usize::try_from(length)?];
        file.read_exact(&mut line)
            .with_context(|| format!("cannot read {} at {offset}", path.display()))?;
        Ok(Some(String::from_utf8(line).with_context(|| {
            format!("{} holds a record that is not UTF-8", path.display())
        })?))
    }

    /// The `(target, command)` of every record of run `run`, in the order they were saved.
    pub(crate) fn records(&self, run: &str) -> Result<Vec<(String, String)>> {
        Ok(self
            .index(&self.dir_of(run))?
            .into_iter()
            .map(|IndexEntry(target, command, ..)| (target, command))
            .collect())
    }

    fn index(&self, dir: &Path) -> Result<Vec<IndexEntry>> {
        let Some(text) = read_optional(&dir.join(INDEX_FILE))? else {
            return Ok(Vec::new());
        };
        // A writer killed mid-line leaves a last line without its end: it is not an entry.
        text.split_terminator('\n')
            .filter(|line| !line.is_empty())
            .map_while(|line| serde_json::from_str(line).ok())
            .map(Ok)
            .collect()
    }

    /// Mark the runs whose writers died as interrupted, for good, and remove what they left
    /// half-written (temporary files); their records stay, readable.
    fn mark_interrupted(&self) {
        let open_dir = self.root.join(OPEN_DIR);
        atomic::sweep(&open_dir);
        let Ok(entries) = fs::read_dir(&open_dir) else {
            return;
        };
        for entry in entries.flatten() {
            let marker = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if name.starts_with('.') || !atomic::is_unlocked(&marker) {
                continue;
            }
            let dir = self.root.join(&name);
            atomic::sweep(&dir);
            let marked = match self.read_info(&dir) {
                Ok(Some(info)) if info.status == RunStatus::Interrupted => {
                    serde_json::to_vec(&info)
                        .is_ok_and(|bytes| atomic::write(&dir, RUN_FILE, &bytes).is_ok())
                }
                _ => true,
            };
            if marked {
                let _ = fs::remove_file(&marker);
            }
        }
    }
}

/// A new file; an existing one is an error (a run's files are its own).
fn create_new(path: &Path) -> Result<File> {
    OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))
}

fn read_optional(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// A JSON document on one line. A line break can only be whitespace between tokens in JSON (a
/// string holds `\n`, never the byte), so a space does instead.
fn one_line(json: &str) -> std::borrow::Cow<'_, str> {
    // One SIMD scan for both; a record's output is most of its bytes, and each is scanned here.
    if memchr::memchr2(b'\n', b'\r', json.as_bytes()).is_some() {
        std::borrow::Cow::Owned(json.replace(['\n', '\r'], " "))
    } else {
        std::borrow::Cow::Borrowed(json)
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use diffy_plugin_api::{Record, RecordStatus};

    use super::*;

    fn info(id: &str) -> RunInfo {
        RunInfo {
            id: id.into(),
            incident: Some("IR-1".into()),
            key: "/fleet".into(),
            analysis: "local-cluster".into(),
            started_at: "2026-11-22T08:40:57.123Z".into(),
            finished_at: None,
            status: RunStatus::Running,
            hosts: 2,
            records: 0,
            failed_records: 0,
            error: None,
        }
    }

    fn record(target: &str, command: &str) -> String {
        serde_json::to_string(&Record::new(
            target,
            command,
            RecordStatus::Ok,
            "a\n\"b\"\n".into(),
        ))
        .unwrap()
    }

    #[test]
    fn a_run_is_created_once_appended_and_finished() {
        let dir = tempfile::tempdir().unwrap();
        let runs = Runs::new(dir.path().join("runs"));
        assert!(runs.create(&info("r1")).unwrap());
        assert!(!runs.create(&info("r1")).unwrap(), "exclusive");
        let texts = [
            record("web 1", "ps"),
            record("web/2", "ps"),
            record("web 1", "日"),
        ];
        let records: Vec<RecordJson<'_>> =
            texts.iter().map(|t| RecordJson::read(t).unwrap()).collect();
        runs.append("r1", &records[..2]).unwrap();
        runs.append("r1", &records[2..]).unwrap();
        assert_eq!(runs.info("r1").unwrap().unwrap().status, RunStatus::Running);
        assert_eq!(
            runs.record("r1", "web/2", "ps").unwrap().as_deref(),
            Some(texts[1].as_str())
        );
        let mut done = info("r1");
        done.status = RunStatus::Complete;
        runs.finish(&done, Some("{\"hosts\":[]}")).unwrap();
        assert_eq!(
            runs.info("r1").unwrap().unwrap().status,
            RunStatus::Complete
        );
        assert_eq!(
            runs.report("r1").unwrap().as_deref(),
            Some("{\"hosts\":[]}")
        );
        assert_eq!(
            runs.record("r1", "web 1", "日").unwrap().as_deref(),
            Some(texts[2].as_str())
        );
        assert_eq!(runs.records("r1").unwrap().len(), 3);
        assert!(
            runs.append("r1", &records).is_err(),
            "finished runs take no records"
        );
        let files: Vec<_> = fs::read_dir(runs.dir_of("r1").join(RECORDS_DIR))
            .unwrap()
            .collect();
        assert_eq!(files.len(), 2, "one file per command");
    }

    #[test]
    fn a_run_whose_writer_died_reads_as_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let runs = Runs::new(dir.path().join("runs"));
        runs.create(&info("r1")).unwrap();
        // The writer dies: its lock goes, its marker stays.
        runs.lock_open().clear();
        let marker = runs.marker_of("r1");
        File::options()
            .write(true)
            .open(&marker)
            .unwrap()
            .set_modified(SystemTime::now() - 2 * atomic::ABANDONED_AFTER)
            .unwrap();
        assert_eq!(
            runs.info("r1").unwrap().unwrap().status,
            RunStatus::Interrupted
        );
        assert!(runs.create(&info("r2")).unwrap());
        assert!(!marker.exists(), "the next run cleans up");
        assert_eq!(runs.list().unwrap()[0].status, RunStatus::Interrupted);
        assert_eq!(runs.list().unwrap()[1].status, RunStatus::Running);
    }
}
