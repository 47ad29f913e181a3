//! The Persistence component `local-file`: runs, baselines and other documents in files under a
//! directory.
//!
//! ```text
//! <dir>/runs/<run>/…          a run of `new analysis`: its records in one JSON Lines file per
//!                             command, an index, its report and its state (runs.rs)
//! <dir>/baselines/<key>.json  the baseline of a target key, one file replaced whole (baselines.rs)
//! <dir>/documents/…           any other key, one JSON file per key (tree.rs)
//! ```
//!
//! The keys the host uses (`run/<run>`, `report/<run>`, `records/<run>/<target>/<command>`,
//! `baseline/<key>/<command>`, see `diffy_plugin_api::keys`) are answered from the runs and the
//! baselines, so `get` and `list` see the same keys as a store of one file per key would. A
//! document saved under one of those keys by `save` (an older host, or `diffy plugin call`) that
//! is not a baseline's record goes to the tree and is read back from there.

mod atomic;
mod baselines;
mod names;
mod runs;
mod tree;
mod writeback;

use std::path::PathBuf;

use diffy_plugin_api::anyhow::bail;
use diffy_plugin_api::keys::{self, decode_segment, segment};
use diffy_plugin_api::{
    Component, OptionSpec, OptionType, Persistence, RecordJson, Result, RunInfo,
};
use serde::Deserialize;

use baselines::Baselines;
use runs::Runs;
use tree::Tree;

/// The options of `local-file`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Options {
    /// Where the documents live; the plugin's data directory when not given.
    #[serde(default)]
    pub(crate) directory: Option<String>,
}

/// `local-file`.
pub(crate) struct LocalFile {
    runs: Runs,
    baselines: Baselines,
    tree: Tree,
}

/// A key of one of the host's namespaces, its segments decoded.
enum Parsed {
    Run(String),
    Report(String),
    Record(String, String, String),
    Baseline(String, String),
    Other,
}

fn parse(key: &str) -> Parsed {
    let parts: Vec<&str> = key.split('/').collect();
    let decoded: Option<Vec<String>> = parts[1..].iter().map(|s| decode_segment(s)).collect();
    let Some(ids) = decoded else {
        return Parsed::Other;
    };
    if ids.iter().any(String::is_empty) {
        return Parsed::Other;
    }
    match (parts[0], ids.as_slice()) {
        ("run", [run]) => Parsed::Run(run.clone()),
        ("report", [run]) => Parsed::Report(run.clone()),
        ("records", [run, target, command]) => {
            Parsed::Record(run.clone(), target.clone(), command.clone())
        }
        ("baseline", [key, command]) => Parsed::Baseline(key.clone(), command.clone()),
        _ => Parsed::Other,
    }
}

/// Whether a key starting with `prefix` could start with `namespace` (`records/`, …) too.
fn may_hold(prefix: &str, namespace: &str) -> bool {
    prefix.starts_with(namespace) || namespace.starts_with(prefix)
}

impl LocalFile {
    pub(crate) fn component() -> Component {
        Component::named(
            "local-file",
            "Runs, baselines and documents in files under a directory",
        )
        .description(
            "Keeps each run of 'new analysis' in <directory>/runs/<run>/: its records in \
                 one JSON Lines file per command (records/<command>.jsonl, readable with \
                 DuckDB's read_json), an index, its report, and run.json, replaced atomically \
                 when the run completes. Each baseline is one file, \
                 <directory>/baselines/<key>.json, replaced whole. Other documents are \
                 <directory>/documents/<key>.json. Names are percent-encoded, and shortened \
                 with a hash when too long for a file name, so no key can leave the directory.",
        )
        .option(OptionSpec::new(
            "directory",
            OptionType::String,
            "Where to keep the documents; default: this plugin's data directory \
                 (<config dir>/data/diffy-local)",
        ))
    }

    /// Store under `options.directory`, else under `data_dir`.
    pub(crate) fn new(options: Options, data_dir: PathBuf) -> Result<Self> {
        let root = options.directory.map_or(data_dir, PathBuf::from);
        if root.as_os_str().is_empty() {
            bail!("option directory is empty");
        }
        Ok(LocalFile {
            runs: Runs::new(root.join("runs")),
            baselines: Baselines::new(root.join("baselines")),
            tree: Tree::new(root.join("documents")),
        })
    }
}

impl Persistence for LocalFile {
    fn get(&self, key: &str) -> Result<Option<String>> {
        let found = match parse(key) {
            Parsed::Run(run) => self
                .runs
                .info(&run)?
                .map(|info| serde_json::to_string(&info))
                .transpose()?,
            Parsed::Report(run) => self.runs.report(&run)?,
            Parsed::Record(run, target, command) => self.runs.record(&run, &target, &command)?,
            Parsed::Baseline(key, command) => self.baselines.record(&key, &command)?,
            Parsed::Other => None,
        };
        match found {
            Some(text) => Ok(Some(text)),
            None => self.tree.get(key),
        }
    }

    fn save(&self, key: &str, document: &str) -> Result<()> {
        match parse(key) {
            Parsed::Baseline(key, command) => self.baselines.save_one(&key, &command, document),
            _ => self.tree.save(key, document),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let mut listed = self.tree.list(prefix)?;
        let (runs, records, reports) = (
            may_hold(prefix, "run/"),
            may_hold(prefix, "records/"),
            may_hold(prefix, "report/"),
        );
        if runs || records || reports {
            // A prefix naming one run's records reads that run's index only.
            let only = prefix
                .strip_prefix("records/")
                .and_then(|rest| rest.split_once('/'))
                .and_then(|(run, _)| decode_segment(run));
            let ids: Vec<String> = match &only {
                Some(run) => vec![run.clone()],
                None => self.runs.list()?.into_iter().map(|info| info.id).collect(),
            };
            for id in ids {
                let run = segment(&id);
                if runs && only.is_none() {
                    listed.push(format!("run/{run}"));
                }
                if reports && only.is_none() && self.runs.report(&id)?.is_some() {
                    listed.push(format!("report/{run}"));
                }
                if records {
                    for (target, command) in self.runs.records(&id)? {
                        listed.push(keys::record_key(&id, &target, &command));
                    }
                }
            }
        }
        if may_hold(prefix, "baseline/") {
            for (key, commands) in self.baselines.list()? {
                for command in commands {
                    listed.push(keys::baseline_key(&key, &command));
                }
            }
        }
        listed.retain(|key| key.starts_with(prefix));
        listed.sort();
        listed.dedup();
        Ok(listed)
    }

    fn create_run(&self, run: &RunInfo) -> Result<bool> {
        self.runs.create(run)
    }

    fn append_records(&self, run: &str, records: &[RecordJson<'_>]) -> Result<()> {
        self.runs.append(run, records)
    }

    fn finish_run(&self, run: &RunInfo, report: Option<&str>) -> Result<()> {
        self.runs.finish(run, report)
    }

    fn save_baseline(&self, key: &str, records: &[RecordJson<'_>]) -> Result<()> {
        self.baselines.save(key, records)
    }

    fn list_runs(&self, incident: Option<&str>) -> Result<Vec<RunInfo>> {
        let mut runs = self.runs.list()?;
        runs.retain(|run| {
            incident.is_none_or(|incident| run.incident.as_deref() == Some(incident))
        });
        Ok(runs)
    }
}

#[cfg(test)]
mod tests {
    use diffy_plugin_api::{Record, RecordStatus, RunStatus};

    use super::*;

    fn record(target: &str, command: &str) -> String {
        serde_json::to_string(&Record::new(
            target,
            command,
            RecordStatus::Ok,
            "x\n".into(),
        ))
        .unwrap()
    }

    #[test]
    fn the_host_keys_read_back_from_runs_and_baselines() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalFile::new(Options::default(), dir.path().to_path_buf()).unwrap();
        let info = RunInfo {
            id: "r1".into(),
            incident: Some("IR 1".into()),
            key: "/fleet".into(),
            analysis: "local-cluster".into(),
            started_at: "2026-11-22T08:40:57.123Z".into(),
            finished_at: None,
            status: RunStatus::Running,
            hosts: 1,
            records: 0,
            failed_records: 0,
            error: None,
        };
        assert!(store.create_run(&info).unwrap());
        let texts = [record("web/1", "ps"), record("web/1", "..")];
        let records: Vec<RecordJson<'_>> =
            texts.iter().map(|t| RecordJson::read(t).unwrap()).collect();
        store.append_records("r1", &records).unwrap();
        let mut done = info.clone();
        done.status = RunStatus::Complete;
        store.finish_run(&done, Some("{\"hosts\":[]}")).unwrap();
        let long = "日".repeat(80);
        store.save_baseline(&long, &records[..1]).unwrap();
        store.save("notes/a", "{}").unwrap();

        let listed = store.list("").unwrap();
        let expected = [
            keys::baseline_key(&long, "ps"),
            "notes/a".to_string(),
            "records/r1/web%2F1/%2E%2E".to_string(),
            "records/r1/web%2F1/ps".to_string(),
            "report/r1".to_string(),
            "run/r1".to_string(),
        ];
        assert_eq!(listed, expected);
        for key in &listed {
            assert!(store.get(key).unwrap().is_some(), "{key}");
        }
        assert_eq!(
            store.get("records/r1/web%2F1/ps").unwrap().as_deref(),
            Some(texts[0].as_str())
        );
        assert_eq!(store.list("records/r1/").unwrap().len(), 2);
        assert_eq!(
            store.list("baseline/").unwrap(),
            [keys::baseline_key(&long, "ps")]
        );
        assert_eq!(store.list_runs(Some("IR 1")).unwrap(), [done]);
        assert!(store.list_runs(Some("IR 2")).unwrap().is_empty());
    }
}
