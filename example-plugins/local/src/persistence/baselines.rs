//! Baselines: one file each, `baselines/<key>.json`, holding the target key, when it was saved and
//! one record per command. Saving writes the whole file anew and renames it over the old one, so
//! a baseline is replaced whole (no command of an older one remains), a crash leaves the old one
//! or the new one, and of two saved at once one wins whole.

use std::fs;
use std::io;
use std::path::PathBuf;

use diffy_plugin_api::anyhow::Context;
use diffy_plugin_api::{RecordJson, Result};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::atomic;
use super::names::file_name;

const EXTENSION: &str = ".json";

/// A baseline as saved.
#[derive(Serialize, Deserialize)]
pub(crate) struct Baseline<'a> {
    /// The target key, as given.
    pub(crate) key: String,
    /// When it was saved (RFC 3339, UTC).
    pub(crate) saved_at: String,
    /// One record per command.
    #[serde(borrow)]
    pub(crate) records: Vec<&'a RawValue>,
}

/// The baselines under one directory.
pub(crate) struct Baselines {
    root: PathBuf,
}

impl Baselines {
    pub(crate) fn new(root: PathBuf) -> Self {
        Baselines { root }
    }

    /// Replace the baseline of `key` with `records`.
    pub(crate) fn save(&self, key: &str, records: &[RecordJson<'_>]) -> Result<()> {
        atomic::sweep(&self.root);
        let records = records
            .iter()
            .map(|r| serde_json::from_str(r.json))
            .collect::<Result<Vec<&RawValue>, _>>()?;
        self.write(key, records)
    }

    fn write(&self, key: &str, records: Vec<&RawValue>) -> Result<()> {
        let baseline = Baseline {
            key: key.to_string(),
            saved_at: crate::timestamp::now(),
            records,
        };
        let name = format!("{}{EXTENSION}", file_name(key));
        atomic::write(&self.root, &name, &serde_json::to_vec(&baseline)?)
    }

    /// Save one command's record into the baseline of `key`, keeping its other commands.
    pub(crate) fn save_one(&self, key: &str, command: &str, record: &str) -> Result<()> {
        let text = self.read(key)?;
        let mut records: Vec<&RawValue> = match &text {
            Some(text) => self.parse(key, text)?.records,
            None => Vec::new(),
        };
        let record: &RawValue = serde_json::from_str(record)?;
        records.retain(|r| command_of(r).as_deref() != Some(command));
        records.push(record);
        self.write(key, records)
    }

    /// The text of the baseline of `key`, if one is saved.
    pub(crate) fn read(&self, key: &str) -> Result<Option<String>> {
        let path = self.root.join(format!("{}{EXTENSION}", file_name(key)));
        match fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    pub(crate) fn parse<'t>(&self, key: &str, text: &'t str) -> Result<Baseline<'t>> {
        serde_json::from_str(text).with_context(|| format!("the baseline of {key:?} is corrupt"))
    }

    /// The record of `command` in the baseline of `key`.
    pub(crate) fn record(&self, key: &str, command: &str) -> Result<Option<String>> {
        let Some(text) = self.read(key)? else {
            return Ok(None);
        };
        let baseline = self.parse(key, &text)?;
        Ok(baseline
            .records
            .into_iter()
            .find(|r| command_of(r).as_deref() == Some(command))
            .map(|r| r.get().to_string()))
    }

    /// Every baseline's key and command ids.
    pub(crate) fn list(&self) -> Result<Vec<(String, Vec<String>)>> {
        let entries = match fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot list {}", self.root.display()));
            }
        };
        let mut baselines = Vec::new();
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot list {}", self.root.display()))?;
            let is_baseline = entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.ends_with(EXTENSION) && !n.starts_with('.'));
            if !is_baseline {
                continue;
            }
            let path = entry.path();
            let text = fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let baseline: Baseline<'_> = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a baseline", path.display()))?;
            let commands = baseline
                .records
                .iter()
                .filter_map(|r| command_of(r))
                .collect();
            baselines.push((baseline.key, commands));
        }
        Ok(baselines)
    }
}

/// The command id of a saved record.
fn command_of(record: &RawValue) -> Option<String> {
    RecordJson::read(record.get())
        .ok()
        .map(|r| r.command.into_owned())
}

#[cfg(test)]
mod tests {
    use diffy_plugin_api::{Record, RecordStatus};

    use super::*;

    fn record(command: &str, stdout: &str) -> String {
        serde_json::to_string(&Record::new(
            "host",
            command,
            RecordStatus::Ok,
            stdout.into(),
        ))
        .unwrap()
    }

    #[test]
    fn a_baseline_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let baselines = Baselines::new(dir.path().join("baselines"));
        let key = "日".repeat(80);
        let (ps, cron, mods) = (record("ps", "a"), record("cron", "b"), record("mods", "c"));
        let first: Vec<RecordJson<'_>> = [&ps, &cron]
            .iter()
            .map(|t| RecordJson::read(t).unwrap())
            .collect();
        baselines.save(&key, &first).unwrap();
        assert!(baselines.record(&key, "cron").unwrap().is_some());
        let second = [RecordJson::read(&mods).unwrap()];
        baselines.save(&key, &second).unwrap();
        assert_eq!(
            baselines.record(&key, "cron").unwrap(),
            None,
            "no stale command"
        );
        assert_eq!(
            baselines.list().unwrap(),
            [(key.clone(), vec!["mods".to_string()])]
        );
        baselines.save_one(&key, "ps", &ps).unwrap();
        assert_eq!(baselines.list().unwrap()[0].1, ["mods", "ps"]);
    }
}
