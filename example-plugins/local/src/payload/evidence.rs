//! The Payload component `evidence`: the commands are what an evidence directory holds, one per
//! evidence file name found under any host's directory (the union over hosts), so that a host
//! lacking one gets a failed record ("no evidence") from the `evidence-dir` collection.
//!
//! A command's id is the file's name (`processes.json`), and its parser follows the name or the
//! content ([`parser_for`]). Evidence named after an `osquery` query (`processes.json`) gets that
//! query's key and volatile columns.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use diffy_plugin_api::anyhow::{Context, bail};
use diffy_plugin_api::{Command, Component, OptionSpec, OptionType, Payload, Result, TargetInfo};
use serde::Deserialize;

use super::osquery;
use crate::evidence::{evidence_files, file_start, is_file_name, parser_for};

/// The options of `evidence`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Options {
    /// The evidence directory, for targets without an address (and hosts older than 0.2.1).
    #[serde(default)]
    pub(crate) directory: Option<String>,
}

/// `evidence`: one command per evidence file name.
pub(crate) struct EvidencePayload {
    directory: Option<PathBuf>,
}

impl EvidencePayload {
    pub(crate) fn component() -> Component {
        Component::named(
            "evidence",
            "What an evidence directory holds: one command per evidence file name",
        )
        .description(
            "For the evidence-dir collection (and the default payload with it): one command per \
             evidence file name found in any host's directory (<dir>/<host>/<file>, any name and \
             extension; hidden files and the .stderr and .exit files beside evidence are not \
             evidence), named by the file. Rows are read by the file's extension (.json, \
             .jsonl and .ndjson as JSON, .csv, .tsv) or, failing that, its content (JSON \
             objects), else as lines. Files named after an osquery query (processes.json) get \
             its key and volatile columns. The host directories are the targets' addresses, \
             which the evidence-dir target sets, else <directory>/<target id>.",
        )
        .option(OptionSpec::new(
            "directory",
            OptionType::String,
            "The evidence directory (one subdirectory per host id), for targets that carry no \
             address; no default: the evidence-dir target gives each host's directory itself",
        ))
    }

    pub(crate) fn new(options: Options) -> Result<Self> {
        Ok(EvidencePayload {
            directory: options.directory.map(PathBuf::from),
        })
    }

    /// The host directories: the targets' addresses (else `<directory>/<id>`), or every host
    /// directory under the `directory` option when no target is known.
    fn host_dirs(&self, targets: &[TargetInfo]) -> Result<Vec<PathBuf>> {
        if !targets.is_empty() {
            return Ok(targets
                .iter()
                .filter_map(|target| match (&target.address, &self.directory) {
                    (Some(address), _) => Some(PathBuf::from(address)),
                    (None, Some(root)) if is_file_name(&target.id) => Some(root.join(&target.id)),
                    (None, _) => None,
                })
                .collect());
        }
        let Some(root) = &self.directory else {
            bail!(
                "the evidence payload needs the evidence-dir target (with diffy 0.2.1 or newer) \
                 or option directory"
            );
        };
        let entries = fs::read_dir(root)
            .with_context(|| format!("cannot read evidence directory {}", root.display()))?;
        let mut dirs = Vec::new();
        for entry in entries {
            let path = entry
                .with_context(|| format!("cannot read evidence directory {}", root.display()))?
                .path();
            let hidden = path
                .file_name()
                .and_then(|name| name.to_str())
                .is_none_or(|name| name.starts_with('.'));
            if path.is_dir() && !hidden {
                dirs.push(path);
            }
        }
        Ok(dirs)
    }
}

impl Payload for EvidencePayload {
    fn generate(&self, incident: Option<&str>) -> Result<Vec<Command>> {
        self.generate_for(&[], incident)
    }

    fn generate_for(
        &self,
        targets: &[TargetInfo],
        _incident: Option<&str>,
    ) -> Result<Vec<Command>> {
        let dirs = self.host_dirs(targets)?;
        if dirs.is_empty() {
            bail!(
                "the evidence payload found no host directory: use the evidence-dir target, or \
                 give option directory"
            );
        }
        // Each evidence file name, with the first file of that name (whose content may say how
        // to read it) and the evidence directory that file must stay in.
        let mut first: BTreeMap<String, (PathBuf, PathBuf)> = BTreeMap::new();
        for dir in &dirs {
            let (Ok(names), Some(root)) = (evidence_files(dir), evidence_root(dir)) else {
                continue; // the collection reports an unreadable host directory
            };
            for name in names {
                first
                    .entry(name)
                    .or_insert_with_key(|name| (dir.join(name), root.clone()));
            }
        }
        if first.is_empty() {
            bail!(
                "no evidence file in any of the {} host directories ({}…): expected \
                 <dir>/<host>/<file>, such as processes.json",
                dirs.len(),
                dirs[0].display()
            );
        }
        Ok(first
            .into_iter()
            .map(|(name, (path, root))| evidence_command(name, &path, &root))
            .collect())
    }
}

/// The evidence directory of a host directory, canonical: its parent.
fn evidence_root(host_dir: &Path) -> Option<PathBuf> {
    fs::canonicalize(host_dir.parent()?).ok()
}

/// The command for evidence file `name`, whose first file is `path` (inside `root`).
fn evidence_command(name: String, path: &Path, root: &Path) -> Command {
    let parser = parser_for(&name, || file_start(root, path));
    let mut command = Command::new(name.clone(), name).parse(parser.clone());
    let stem = Path::new(&command.id)
        .file_stem()
        .and_then(|stem| stem.to_str());
    if let Some(query) = stem.and_then(osquery::query)
        && parser.is_structured()
    {
        command = command
            .key_columns(query.key.iter().copied())
            .ignore_columns(query.volatile.iter().copied());
    }
    command
}

#[cfg(test)]
mod tests {
    use diffy_plugin_api::Parser;

    use super::*;

    /// `root/web-1` has processes.json and ps; `root/web-2` has ps and listening.csv and a
    /// sidecar; `root/web-3` is empty.
    fn evidence() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        for (host, files) in [
            ("web-1", &["processes.json", "ps"][..]),
            ("web-2", &["ps", "listening.csv", "ps.stderr"][..]),
            ("web-3", &[][..]),
        ] {
            let dir = root.path().join(host);
            fs::create_dir(&dir).unwrap();
            for file in files {
                fs::write(dir.join(file), "[{\"pid\":\"1\"}]").unwrap();
            }
        }
        root
    }

    fn targets(root: &Path) -> Vec<TargetInfo> {
        ["web-1", "web-2", "web-3"]
            .into_iter()
            .map(|id| TargetInfo {
                address: Some(root.join(id).to_str().unwrap().to_string()),
                ..TargetInfo::new(id)
            })
            .collect()
    }

    #[test]
    fn the_commands_are_the_union_of_the_evidence_files() {
        let root = evidence();
        let payload = EvidencePayload::new(Options::default()).unwrap();
        let commands = payload.generate_for(&targets(root.path()), None).unwrap();
        let ids: Vec<&str> = commands.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["listening.csv", "processes.json", "ps"]);
        assert_eq!(commands[0].parse, Some(Parser::Csv { delimiter: None }));
        assert_eq!(commands[1].parse, Some(Parser::Json));
        // osquery's processes query: its key and volatile columns.
        assert_eq!(commands[1].key_columns, ["name", "path"]);
        assert!(
            commands[1]
                .ignore_columns
                .contains(&"start_time".to_string())
        );
        // No extension: the content says JSON.
        assert_eq!(commands[2].parse, Some(Parser::Json));
        assert!(commands[2].key_columns.is_empty());
    }

    #[test]
    fn without_targets_the_directory_option_is_read() {
        let root = evidence();
        let payload = EvidencePayload::new(Options {
            directory: Some(root.path().to_str().unwrap().to_string()),
        })
        .unwrap();
        assert_eq!(payload.generate(None).unwrap().len(), 3);
        let nowhere = EvidencePayload::new(Options::default()).unwrap();
        let error = nowhere.generate(None).unwrap_err().to_string();
        assert!(error.contains("option directory"), "{error}");
        let addressless = [TargetInfo::new("web-1")];
        let error = nowhere
            .generate_for(&addressless, None)
            .unwrap_err()
            .to_string();
        assert!(error.contains("found no host directory"), "{error}");
    }

    #[test]
    fn a_directory_without_evidence_is_an_error() {
        let root = evidence();
        let payload = EvidencePayload::new(Options::default()).unwrap();
        let error = payload
            .generate_for(&targets(root.path())[2..], None)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("no evidence file in any of the 1 host directories"),
            "{error}"
        );
    }
}
