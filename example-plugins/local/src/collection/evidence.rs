//! The Collection component `evidence-dir`: replays command outputs saved earlier, one directory
//! per host, laid out as [`crate::evidence`] describes.
//!
//! The evidence of command C is the file named C (as the `evidence` payload names its commands),
//! else `C.txt` (as other payloads' commands, such as `local-command`'s, are saved). A host's
//! directory is its target's address (the `evidence-dir` target sets it), else
//! `<directory option>/<target id>`; the evidence directory is that directory's parent, or the
//! option. Each file is read once into the record, without copies.

use std::fs::File;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use diffy_plugin_api::{
    Collection, Command, Component, OptionSpec, OptionType, Record, RecordStatus, Result,
    TargetInfo,
};
use serde::Deserialize;

use super::{
    default_max_output_mib, error_record, max_output_bytes, max_output_option, read_limited, text,
    text_and_digest, truncation_note,
};
use crate::evidence::{EvidenceRoot, HostListing, is_evidence_name, is_file_name, sidecar};
use crate::timestamp;

/// The options of the `evidence-dir` collection.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Options {
    /// The directory holding one subdirectory per host, for targets without an address.
    #[serde(default)]
    pub(crate) directory: Option<String>,
    /// The most bytes kept of one evidence file.
    #[serde(default = "default_max_output_mib")]
    pub(crate) max_output_mib: i64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            directory: None,
            max_output_mib: default_max_output_mib(),
        }
    }
}

/// `evidence-dir`: reads each command's evidence file in the host's directory.
pub(crate) struct EvidenceCollection {
    directory: Option<PathBuf>,
    /// The most bytes read of one file.
    max_output: u64,
    /// The evidence directory the last target was in, as given and resolved: a fleet's hosts
    /// share one, which is resolved once.
    last_root: Mutex<Option<(PathBuf, Arc<EvidenceRoot>)>>,
}

/// Where a host's evidence is.
struct HostDir {
    /// The host's directory.
    dir: PathBuf,
    /// What it holds.
    listing: HostListing,
    /// Its name in the evidence directory.
    name: PathBuf,
    /// The evidence directory: no file outside it is read.
    root: Arc<EvidenceRoot>,
    /// The most bytes read of one file.
    limit: u64,
}

impl EvidenceCollection {
    pub(crate) fn component() -> Component {
        Component::named(
            "evidence-dir",
            "Replay command outputs saved under a directory",
        )
        .description(
            "Replays saved outputs instead of running anything: for host H and command C it \
                 reads the file <dir>/H/C, else <dir>/H/C.txt, as stdout, and beside it \
                 <stem>.stderr as stderr and <stem>.exit as the exit code (both optional; a \
                 non-zero exit code makes the record failed). The host directory is the target's \
                 address, which the evidence-dir target sets, else <directory>/<target id>. A \
                 missing file is an error record (no evidence), and so is every command of a host \
                 directory that holds no evidence file; a symbolic link that leads out of the \
                 evidence directory is refused.",
        )
        .option(OptionSpec::new(
            "directory",
            OptionType::String,
            "The evidence directory (one subdirectory per host id), for targets that carry no \
                 address; no default: the evidence-dir target gives each host's directory itself",
        ))
        .option(max_output_option())
    }

    pub(crate) fn new(options: Options) -> Result<Self> {
        Ok(EvidenceCollection {
            directory: options.directory.map(PathBuf::from),
            max_output: max_output_bytes(options.max_output_mib)?,
            last_root: Mutex::new(None),
        })
    }

    /// The directory holding `target`'s evidence, or why there is none.
    fn host_dir(&self, target: &TargetInfo) -> Result<HostDir, String> {
        let (dir, root) = match (&target.address, &self.directory) {
            (Some(address), _) => {
                let dir = PathBuf::from(address);
                let root = dir.parent().unwrap_or(Path::new("/")).to_path_buf();
                (dir, root)
            }
            (None, Some(root)) if is_file_name(&target.id) => (root.join(&target.id), root.clone()),
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
        let listing = match HostListing::read(&dir) {
            Ok(listing) => listing,
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
                return Err(format!(
                    "evidence directory {} for target {} does not exist",
                    dir.display(),
                    target.id
                ));
            }
            Err(e) => return Err(format!("cannot read {}: {e}", dir.display())),
        };
        let name = dir.file_name().map(PathBuf::from).unwrap_or_default();
        Ok(HostDir {
            dir,
            listing,
            name,
            root: self.root(&root)?,
            limit: self.max_output,
        })
    }

    /// The evidence directory `root`, resolved.
    fn root(&self, root: &Path) -> Result<Arc<EvidenceRoot>, String> {
        let mut last = self.last_root.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((given, resolved)) = &*last
            && given == root
        {
            return Ok(Arc::clone(resolved));
        }
        let resolved = EvidenceRoot::new(root)
            .map(Arc::new)
            .map_err(|e| format!("cannot resolve {}: {e}", root.display()))?;
        *last = Some((root.to_path_buf(), Arc::clone(&resolved)));
        Ok(resolved)
    }

    /// The records of `commands` on `target`, or why there are none.
    fn replay_host(
        &self,
        target: &TargetInfo,
        commands: &[Command],
    ) -> Result<Vec<Record>, String> {
        let host = self.host_dir(target)?;
        if host.listing.evidence().next().is_none() {
            return Err(format!(
                "no evidence: the host directory {} holds no evidence file",
                host.dir.display()
            ));
        }
        Ok(commands
            .iter()
            .map(|command| replay(&target.id, &host, &command.id))
            .collect())
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
            match self.replay_host(target, commands) {
                Ok(replayed) => records.extend(replayed),
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

impl HostDir {
    /// The host's file `name` (shown as `path`), opened if it stays inside the evidence
    /// directory.
    fn open(&self, name: &Path, path: &Path) -> Result<Option<File>, String> {
        self.root.open(&self.name.join(name), path)
    }
}

/// The record of `command` on `target` from the files of `host`.
fn replay(target: &str, host: &HostDir, command: &str) -> Record {
    match read_evidence(host, command) {
        Ok(record) => Record {
            target: target.to_string(),
            command: command.to_string(),
            ..record
        },
        Err(reason) => error_record(target, command, reason),
    }
}

/// Open the evidence file of `command`: the file of that name, else `<command>.txt`.
fn open_evidence(host: &HostDir, command: &str) -> Result<(String, File), String> {
    let mut names = vec![format!("{command}.txt")];
    if is_evidence_name(command) {
        names.insert(0, command.to_string());
    }
    for name in names {
        // A directory named like a command holds no evidence (the listing leaves directories
        // out); anything else not a regular file (a FIFO, a device) is refused when opened.
        if !host.listing.holds(&name) {
            continue;
        }
        let path = host.dir.join(&name);
        if let Some(file) = host.open(Path::new(&name), &path)? {
            return Ok((name, file));
        }
    }
    Err(format!(
        "no evidence for command {command} in {}",
        host.dir.display()
    ))
}

/// Read the evidence files of `command` in `host` into a record without target or command.
fn read_evidence(host: &HostDir, command: &str) -> Result<Record, String> {
    if !is_file_name(command) {
        return Err(format!(
            "command id {command:?} cannot name an evidence file"
        ));
    }
    let (name, file) = open_evidence(host, command)?;
    let stdout_path = host.dir.join(&name);
    let (bytes, truncated, modified) = read_with_mtime(file, host.limit)
        .map_err(|e| format!("cannot read {}: {e}", stdout_path.display()))?;
    let mut stderr = read_optional(host, &sidecar(&host.dir, &name, "stderr"))?
        .map(text)
        .unwrap_or_default();
    if truncated {
        super::append_line(&mut stderr, &truncation_note("evidence-dir", host.limit));
    }
    let exit_path = sidecar(&host.dir, &name, "exit");
    let exit_code = match read_optional(host, &exit_path)? {
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
        truncated,
    })
}

/// At most `limit` bytes of `file`, whether it held more, and its modification time (now, if
/// the file system keeps none).
fn read_with_mtime(file: File, limit: u64) -> std::io::Result<(Vec<u8>, bool, SystemTime)> {
    let metadata = file.metadata()?;
    let (bytes, truncated) = read_limited(file, limit, false, metadata.len())?;
    let modified = metadata.modified().unwrap_or_else(|_| SystemTime::now());
    Ok((bytes, truncated, modified))
}

/// The bytes of `path`, or `None` when the host's directory does not hold it.
fn read_optional(host: &HostDir, path: &Path) -> Result<Option<Vec<u8>>, String> {
    let name = path.file_name().map(Path::new).unwrap_or(path);
    if !name.to_str().is_some_and(|name| host.listing.holds(name)) {
        return Ok(None);
    }
    let Some(file) = host.open(name, path)? else {
        return Ok(None);
    };
    let expected = file.metadata().map_or(0, |m| m.len());
    let (bytes, _) = read_limited(file, host.limit, false, expected)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests {
    use std::fs;

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
            ..Options::default()
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
            ..Options::default()
        })
        .unwrap();
        let targets = [TargetInfo::new("web-9"), TargetInfo::new("..")];
        let records = collection.get(&targets, &commands(), None).unwrap();
        assert_eq!(records.len(), 6);
        assert!(records.iter().all(|r| r.status == RecordStatus::Error));
        assert!(records[0].stderr.contains("does not exist"));
        assert!(records[3].stderr.contains("cannot name"));
    }

    /// `root/web-1` as it is now (each replay lists it again, as each collection does).
    fn host_of(root: &tempfile::TempDir) -> HostDir {
        let dir = root.path().join("web-1");
        HostDir {
            listing: HostListing::read(&dir).unwrap(),
            dir,
            name: "web-1".into(),
            root: Arc::new(EvidenceRoot::new(root.path()).unwrap()),
            limit: 64 << 20,
        }
    }

    #[test]
    fn bad_exit_file_and_unsafe_command_ids_are_errors() {
        let root = evidence();
        let host = host_of(&root);
        fs::write(host.dir.join("bad.txt"), "x").unwrap();
        fs::write(host.dir.join("bad.exit"), "three").unwrap();
        let record = replay("web-1", &host_of(&root), "bad");
        assert_eq!(record.status, RecordStatus::Error);
        assert!(record.stderr.contains("not an exit code"));
        let record = replay("web-1", &host_of(&root), "../web-1/ps");
        assert_eq!(record.status, RecordStatus::Error);
    }

    #[test]
    fn any_file_name_is_evidence_with_sidecars_by_stem() {
        let root = evidence();
        let host = host_of(&root);
        fs::write(host.dir.join("processes.json"), "[]").unwrap();
        fs::write(host.dir.join("processes.exit"), "1").unwrap();
        fs::write(host.dir.join("processes.stderr"), "partial").unwrap();
        let record = replay("web-1", &host_of(&root), "processes.json");
        assert_eq!(
            (record.status, record.exit_code),
            (RecordStatus::Failed, Some(1))
        );
        assert_eq!(
            (record.stdout.as_str(), record.stderr.as_str()),
            ("[]", "partial")
        );
        // A directory named like a command holds no evidence.
        fs::create_dir(host.dir.join("cron")).unwrap();
        assert_eq!(replay("web-1", &host_of(&root), "cron").exit_code, Some(2));
    }

    #[test]
    fn links_out_of_the_evidence_directory_are_refused() {
        let root = evidence();
        let host = host_of(&root);
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("shadow"), "root:secret").unwrap();
        std::os::unix::fs::symlink(outside.path().join("shadow"), host.dir.join("leak.txt"))
            .unwrap();
        let record = replay("web-1", &host_of(&root), "leak.txt");
        assert_eq!(record.status, RecordStatus::Error);
        assert!(
            record.stderr.contains("outside the evidence directory"),
            "{}",
            record.stderr
        );
        assert!(record.stdout.is_empty());
        // A sidecar is checked too.
        std::os::unix::fs::symlink(
            outside.path().join("shadow"),
            host.dir.join("ps.stderr.tmp"),
        )
        .unwrap();
        fs::remove_file(host.dir.join("ps.stderr")).unwrap();
        fs::rename(host.dir.join("ps.stderr.tmp"), host.dir.join("ps.stderr")).unwrap();
        let record = replay("web-1", &host_of(&root), "ps");
        assert!(
            record.stderr.contains("outside the evidence directory"),
            "{}",
            record.stderr
        );
        // A relative link that climbs out is refused; links that stay inside are followed,
        // relative or absolute.
        // From web-1 up to `/`: one `..` per component of the root, the root directory's
        // place taken by web-1's.
        let up = "../".repeat(root.path().components().count());
        let climbing = Path::new(&up).join(outside.path().strip_prefix("/").unwrap());
        std::os::unix::fs::symlink(climbing.join("shadow"), host.dir.join("up.txt")).unwrap();
        let record = replay("web-1", &host_of(&root), "up.txt");
        assert!(
            record.stderr.contains("outside the evidence directory"),
            "{}",
            record.stderr
        );
        fs::create_dir(root.path().join("common")).unwrap();
        fs::write(root.path().join("common/list"), "a\n").unwrap();
        std::os::unix::fs::symlink("../common/list", host.dir.join("near.txt")).unwrap();
        std::os::unix::fs::symlink(root.path().join("common/list"), host.dir.join("far.txt"))
            .unwrap();
        for name in ["near.txt", "far.txt"] {
            let record = replay("web-1", &host_of(&root), name);
            assert_eq!(
                (record.status, record.stdout.as_str()),
                (RecordStatus::Ok, "a\n"),
                "{name}"
            );
        }
    }

    #[test]
    fn a_host_directory_without_evidence_is_reported() {
        let root = evidence();
        fs::create_dir(root.path().join("web-2")).unwrap();
        fs::write(root.path().join("web-2").join(".bash_history"), "x").unwrap();
        let collection = EvidenceCollection::new(Options {
            directory: Some(root.path().to_str().unwrap().to_string()),
            ..Options::default()
        })
        .unwrap();
        let records = collection
            .get(&[TargetInfo::new("web-2")], &commands(), None)
            .unwrap();
        assert_eq!(records.len(), 3);
        for record in records {
            assert_eq!(record.status, RecordStatus::Error);
            assert!(
                record.stderr.starts_with("no evidence: the host directory"),
                "{}",
                record.stderr
            );
        }
    }
}
