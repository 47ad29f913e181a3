//! The Collection component `evidence-dir`: replays command outputs saved earlier, one directory per
//! host:
//!
//! ```text
//! <dir>/<host>/<command>.txt      stdout (required)
//! <dir>/<host>/<command>.stderr   stderr (optional)
//! <dir>/<host>/<command>.exit     exit code as a decimal integer (optional; 0 when absent)
//! ```
//!
//! A host's directory is its target's address (the `evidence-dir` target sets it), else
//! `<directory option>/<target id>`. Each file is read once into the record, without copies.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use diffy_plugin_api::{
    Collection, Command, Component, OptionSpec, OptionType, Record, RecordStatus, Result,
    TargetInfo,
};
use serde::Deserialize;

use super::{error_record, text, text_and_digest};
use crate::timestamp;

/// The options of the `evidence-dir` collection.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Options {
    /// The directory holding one subdirectory per host, for targets without an address.
    #[serde(default)]
    pub(crate) directory: Option<String>,
}

/// `evidence-dir`: reads `<host dir>/<command>.txt` and its siblings.
pub(crate) struct EvidenceCollection {
    directory: Option<PathBuf>,
}

impl EvidenceCollection {
    pub(crate) fn component() -> Component {
        Component::named(
            "evidence-dir",
            "Replay command outputs saved under a directory",
        )
        .description(
            "Replays saved outputs instead of running anything: for host H and command C it \
                 reads <dir>/H/C.txt as stdout, C.stderr as stderr and C.exit as the exit code \
                 (the last two optional; a non-zero exit code makes the record failed). The host \
                 directory is the target's address, which the evidence-dir target sets, else \
                 <directory>/<target id>. A missing C.txt is an error record.",
        )
        .option(OptionSpec::new(
            "directory",
            OptionType::String,
            "The evidence directory (one subdirectory per host id), for targets that carry no \
                 address; no default: the evidence-dir target gives each host's directory itself",
        ))
    }

    pub(crate) fn new(options: Options) -> Result<Self> {
        Ok(EvidenceCollection {
            directory: options.directory.map(PathBuf::from),
        })
    }

    /// The directory holding `target`'s evidence, or why there is none.
    fn host_dir(&self, target: &TargetInfo) -> Result<PathBuf, String> {
        let dir = match (&target.address, &self.directory) {
            (Some(address), _) => PathBuf::from(address),
            (None, Some(root)) if is_file_name(&target.id) => root.join(&target.id),
            (None, Some(_)) => {
                return Err(format!(
                    "target id {:?} cannot name an evidence directory",
                    target.id
                ));
            }
            (None, None) => {
                return Err(format!(
                    "no evidence directory for target {}: use the evidence-dir target, or give \
                     option directory",
                    target.id
                ));
            }
        };
        if dir.is_dir() {
            Ok(dir)
        } else {
            Err(format!(
                "evidence directory {} for target {} does not exist",
                dir.display(),
                target.id
            ))
        }
    }
}

impl Collection for EvidenceCollection {
    fn get(
        &self,
        targets: &[TargetInfo],
        commands: &[Command],
        _incident: Option<&str>,
    ) -> Result<Vec<Record>> {
        let mut records = Vec::with_capacity(targets.len() * commands.len());
        for target in targets {
            match self.host_dir(target) {
                Ok(dir) => records.extend(
                    commands
                        .iter()
                        .map(|command| replay(&target.id, &dir, &command.id)),
                ),
                Err(reason) => records.extend(
                    commands
                        .iter()
                        .map(|command| error_record(&target.id, &command.id, reason.clone())),
                ),
            }
        }
        Ok(records)
    }
}

/// The record of `command` on `target` from the files in `dir`.
fn replay(target: &str, dir: &Path, command: &str) -> Record {
    match read_evidence(dir, command) {
        Ok(record) => Record {
            target: target.to_string(),
            command: command.to_string(),
            ..record
        },
        Err(reason) => error_record(target, command, reason),
    }
}

/// Read the evidence files of `command` in `dir` into a record without target or command.
fn read_evidence(dir: &Path, command: &str) -> Result<Record, String> {
    if !is_file_name(command) {
        return Err(format!(
            "command id {command:?} cannot name an evidence file"
        ));
    }
    let stdout_path = dir.join(format!("{command}.txt"));
    let (bytes, modified) = match read_with_mtime(&stdout_path) {
        Ok(read) => read,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(format!(
                "no evidence for command {command} in {}",
                dir.display()
            ));
        }
        Err(e) => return Err(format!("cannot read {}: {e}", stdout_path.display())),
    };
    let stderr = read_optional(&dir.join(format!("{command}.stderr")))?
        .map(text)
        .unwrap_or_default();
    let exit_path = dir.join(format!("{command}.exit"));
    let exit_code = match read_optional(&exit_path)? {
        None => 0,
        Some(bytes) => {
            let code = std::str::from_utf8(&bytes).ok().map(str::trim);
            code.and_then(|code| code.parse::<i32>().ok())
                .ok_or_else(|| {
                    format!(
                        "{} holds {:?}, not an exit code",
                        exit_path.display(),
                        String::from_utf8_lossy(&bytes)
                    )
                })?
        }
    };
    let (stdout, sha256) = text_and_digest(bytes);
    Ok(Record {
        target: String::new(),
        command: String::new(),
        status: if exit_code == 0 {
            RecordStatus::Ok
        } else {
            RecordStatus::Failed
        },
        exit_code: Some(exit_code),
        collected_at: timestamp::rfc3339(modified),
        duration_ms: None,
        stdout,
        stderr,
        sha256,
        error: None,
        truncated: false,
    })
}

/// The bytes of `path` and its modification time (now, if the file system keeps none).
fn read_with_mtime(path: &Path) -> io::Result<(Vec<u8>, SystemTime)> {
    let mut file = File::open(path)?;
    let metadata = file.metadata()?;
    let mut bytes = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0));
    file.read_to_end(&mut bytes)?;
    let modified = metadata.modified().unwrap_or_else(|_| SystemTime::now());
    Ok((bytes, modified))
}

/// The bytes of `path`, or `None` when it does not exist.
fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, String> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Whether `name` can be used as one path component: not empty, not hidden, no separator or NUL.
fn is_file_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && !name.contains(['/', '\\', '\0'])
}

#[cfg(test)]
mod tests {
    use diffy_plugin_api::documents::sha256_hex;

    use super::*;

    /// `root/web-1` has `ps` (ok, with stderr), `cron` (exit 2) and no `mods`.
    fn evidence() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let host = root.path().join("web-1");
        fs::create_dir(&host).unwrap();
        fs::write(host.join("ps.txt"), "root sshd\n").unwrap();
        fs::write(host.join("ps.stderr"), "warning\n").unwrap();
        fs::write(host.join("cron.txt"), "").unwrap();
        fs::write(host.join("cron.exit"), "2\n").unwrap();
        root
    }

    fn commands() -> Vec<Command> {
        ["ps", "cron", "mods"]
            .into_iter()
            .map(|id| Command::new(id, "unused"))
            .collect()
    }

    fn check_replay(records: &[Record]) {
        assert_eq!(records.len(), 3);
        let [ps, cron, mods] = records else {
            unreachable!()
        };
        assert_eq!((ps.target.as_str(), ps.command.as_str()), ("web-1", "ps"));
        assert_eq!(ps.status, RecordStatus::Ok);
        assert_eq!(ps.exit_code, Some(0));
        assert_eq!(ps.stdout, "root sshd\n");
        assert_eq!(ps.stderr, "warning\n");
        assert_eq!(ps.sha256, sha256_hex(b"root sshd\n"));
        assert!(ps.collected_at.ends_with('Z'));
        assert_eq!(cron.status, RecordStatus::Failed);
        assert_eq!(cron.exit_code, Some(2));
        assert_eq!(mods.status, RecordStatus::Error);
        assert!(mods.stderr.starts_with("no evidence for command mods in "));
    }

    #[test]
    fn replays_by_target_address() {
        let root = evidence();
        let mut target = TargetInfo::new("web-1");
        target.address = Some(root.path().join("web-1").to_str().unwrap().to_string());
        let collection = EvidenceCollection::new(Options::default()).unwrap();
        check_replay(&collection.get(&[target], &commands(), None).unwrap());
    }

    #[test]
    fn replays_by_directory_option() {
        let root = evidence();
        let collection = EvidenceCollection::new(Options {
            directory: Some(root.path().to_str().unwrap().to_string()),
        })
        .unwrap();
        let targets = [TargetInfo::new("web-1")];
        check_replay(&collection.get(&targets, &commands(), None).unwrap());
    }

    #[test]
    fn missing_directories_are_error_records() {
        let root = evidence();
        let nowhere = EvidenceCollection::new(Options::default()).unwrap();
        let records = nowhere
            .get(&[TargetInfo::new("web-1")], &commands(), None)
            .unwrap();
        assert!(records.iter().all(|r| r.status == RecordStatus::Error));
        assert!(
            records[0]
                .stderr
                .contains("no evidence directory for target web-1")
        );

        let collection = EvidenceCollection::new(Options {
            directory: Some(root.path().to_str().unwrap().to_string()),
        })
        .unwrap();
        let targets = [TargetInfo::new("web-9"), TargetInfo::new("..")];
        let records = collection.get(&targets, &commands(), None).unwrap();
        assert_eq!(records.len(), 6);
        assert!(records.iter().all(|r| r.status == RecordStatus::Error));
        assert!(records[0].stderr.contains("does not exist"));
        assert!(records[3].stderr.contains("cannot name"));
    }

    #[test]
    fn bad_exit_file_and_unsafe_command_ids_are_errors() {
        let root = evidence();
        let host = root.path().join("web-1");
        fs::write(host.join("bad.txt"), "x").unwrap();
        fs::write(host.join("bad.exit"), "three").unwrap();
        let record = replay("web-1", &host, "bad");
        assert_eq!(record.status, RecordStatus::Error);
        assert!(record.stderr.contains("not an exit code"));
        let record = replay("web-1", &host, "../web-1/ps");
        assert_eq!(record.status, RecordStatus::Error);
    }
}
