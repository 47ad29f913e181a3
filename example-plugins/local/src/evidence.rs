//! The layout of an evidence directory, as the `evidence-dir` target, collection and the
//! `evidence` payload read it: one subdirectory per host, holding that host's evidence files.
//!
//! ```text
//! <dir>/<host>/<file>             an evidence file: any name and extension (processes.json,
//!                                 listening.csv, packages.txt, ps), replayed as stdout
//! <dir>/<host>/<stem>.stderr      stderr of <stem>.<ext> (optional)
//! <dir>/<host>/<stem>.exit        its exit code as a decimal integer (optional; 0 when absent)
//! ```
//!
//! Hidden files are not evidence, nor are the `.stderr` and `.exit` files beside it. A symbolic
//! link is followed only while it stays inside the evidence directory, so that evidence collected
//! from a compromised host cannot make diffy read this machine's files.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use diffy_plugin_api::Parser;

/// The extensions of the files that describe an evidence file rather than hold evidence.
const SIDECARS: [&str; 2] = ["stderr", "exit"];

/// How much of a file the content check reads.
const SNIFF_BYTES: usize = 4096;

/// The evidence files of a host directory: names of files that are not hidden and not
/// sidecars, sorted. Symbolic links are listed as they are named; reading one is checked.
pub(crate) fn evidence_files(host_dir: &Path) -> io::Result<Vec<String>> {
    Ok(HostListing::read(host_dir)?
        .evidence()
        .map(str::to_string)
        .collect())
}

/// What one read of a host's directory found: every name that is not a directory, so that a
/// host's evidence and sidecar files are opened without first asking for each whether it is
/// there (at 100,000 hosts, those lookups were a fifth of the run).
#[derive(Debug, Default)]
pub(crate) struct HostListing {
    /// Names, sorted, and whether each is a regular file (after symbolic links): the rest (a
    /// FIFO, a device, a dangling link) are listed so that opening them says what they are.
    entries: std::collections::BTreeMap<String, bool>,
}

impl HostListing {
    /// The entries of `host_dir` that are not directories (nor links to one). Only symbolic
    /// links, and entries whose type the file system does not say, cost a `stat`.
    pub(crate) fn read(host_dir: &Path) -> io::Result<Self> {
        let mut entries = std::collections::BTreeMap::new();
        for entry in fs::read_dir(host_dir)? {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let kind = entry.file_type()?;
            let (is_dir, is_file) = if kind.is_symlink() {
                match fs::metadata(entry.path()) {
                    Ok(target) => (target.is_dir(), target.is_file()),
                    Err(_) => (false, false),
                }
            } else {
                (kind.is_dir(), kind.is_file())
            };
            if !is_dir {
                entries.insert(name, is_file);
            }
        }
        Ok(HostListing { entries })
    }

    /// The evidence files: regular files whose names are evidence names, sorted.
    pub(crate) fn evidence(&self) -> impl Iterator<Item = &str> {
        self.entries
            .iter()
            .filter(|(name, is_file)| **is_file && is_evidence_name(name))
            .map(|(name, _)| name.as_str())
    }

    /// Whether the directory holds `name`, other than as a directory.
    pub(crate) fn holds(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }
}

/// Whether a file named `name` can hold evidence: not hidden, not a sidecar, one path component.
pub(crate) fn is_evidence_name(name: &str) -> bool {
    let sidecar = Path::new(name)
        .extension()
        .and_then(|ext| ext.to_str())
        .is_some_and(|ext| SIDECARS.contains(&ext));
    is_file_name(name) && !sidecar
}

/// Whether `name` can be used as one path component: not empty, not hidden, no separator or NUL.
pub(crate) fn is_file_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && !name.contains(['/', '\\', '\0'])
}

/// The file beside evidence file `name` with extension `sidecar` (`processes.json` →
/// `processes.stderr`).
pub(crate) fn sidecar(host_dir: &Path, name: &str, sidecar: &str) -> PathBuf {
    let stem = Path::new(name)
        .file_stem()
        .and_then(|stem| stem.to_str())
        .unwrap_or(name);
    host_dir.join(format!("{stem}.{sidecar}"))
}

/// An evidence directory, resolved once, whose files are opened without leaving it.
#[derive(Debug)]
pub(crate) struct EvidenceRoot {
    /// The directory, canonical.
    pub(crate) path: PathBuf,
    /// The directory, open, for opening files beneath it.
    dir: Option<rustix::fd::OwnedFd>,
}

impl EvidenceRoot {
    /// The evidence directory `path`.
    pub(crate) fn new(path: &Path) -> io::Result<Self> {
        let path = fs::canonicalize(path)?;
        let flags =
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC;
        let dir = rustix::fs::open(&path, flags, rustix::fs::Mode::empty()).ok();
        Ok(EvidenceRoot { path, dir })
    }

    /// `relative` (a path under the directory, shown as `path`) opened for reading, if it stays
    /// inside the directory whatever symbolic links it goes through; `Ok(None)` when it does not
    /// exist. The kernel checks that in the one `openat2` call that opens it (`RESOLVE_BENEATH`,
    /// Linux 5.6): resolving each path first cost a dozen system calls per file, a quarter of
    /// the time of 100,000 small hosts. A link it will not follow beneath (an absolute one, which
    /// may still point inside) and a kernel without `openat2` get the full check.
    pub(crate) fn open(&self, relative: &Path, path: &Path) -> Result<Option<File>, String> {
        use rustix::fs::{Mode, OFlags, ResolveFlags};
        let Some(dir) = &self.dir else {
            return open_inside(&self.path, path);
        };
        let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC;
        match rustix::fs::openat2(dir, relative, flags, Mode::empty(), ResolveFlags::BENEATH) {
            Ok(fd) => regular_file(File::from(fd), path).map(Some),
            Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => Ok(None),
            Err(_) => open_inside(&self.path, path),
        }
    }
}

/// `path` opened for reading, once it is known to stay inside `root` (canonical) whatever
/// symbolic links it goes through; `Ok(None)` when it does not exist.
pub(crate) fn open_inside(root: &Path, path: &Path) -> Result<Option<File>, String> {
    let resolved = match fs::canonicalize(path) {
        Ok(resolved) => resolved,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    if !resolved.starts_with(root) {
        return Err(format!(
            "refused {}: it leads to {}, outside the evidence directory {}",
            path.display(),
            resolved.display(),
            root.display()
        ));
    }
    // Without blocking: a FIFO would otherwise wait for a writer forever. What was opened is
    // checked, not the path, which could be swapped in between.
    let flags =
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::CLOEXEC;
    let file = match rustix::fs::open(&resolved, flags, rustix::fs::Mode::empty()) {
        Ok(fd) => File::from(fd),
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    regular_file(file, path).map(Some)
}

/// `file` (opened from `path`) if it is a regular file.
fn regular_file(file: File, path: &Path) -> Result<File, String> {
    let kind = file
        .metadata()
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .file_type();
    if !kind.is_file() {
        return Err(format!(
            "refused {}: it is {}, not a regular file",
            path.display(),
            describe(kind)
        ));
    }
    Ok(file)
}

/// What a file that is not a regular file is, for a message.
pub(crate) fn describe(kind: fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_file() {
        "a regular file"
    } else {
        "not a file"
    }
}

/// How evidence file `name` is read: by its extension (`.json`, `.jsonl`, `.ndjson`, `.csv`,
/// `.tsv`), else by its content (JSON objects, or an array of them), else as lines.
pub(crate) fn parser_for(name: &str, content: impl FnOnce() -> Option<Vec<u8>>) -> Parser {
    let extension = Path::new(name)
        .extension()
        .and_then(|ext| ext.to_str())
        .map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("json" | "jsonl" | "ndjson") => Parser::Json,
        Some("csv") => Parser::Csv { delimiter: None },
        Some("tsv") => Parser::Tsv,
        _ if content().is_some_and(|start| looks_like_json_rows(&start)) => Parser::Json,
        _ => Parser::Lines,
    }
}

/// The first bytes of `path`, for [`parser_for`], if it stays inside `root` (canonical).
pub(crate) fn file_start(root: &Path, path: &Path) -> Option<Vec<u8>> {
    let mut start = Vec::with_capacity(SNIFF_BYTES);
    open_inside(root, path)
        .ok()??
        .take(SNIFF_BYTES as u64)
        .read_to_end(&mut start)
        .ok()?;
    Some(start)
}

/// Whether text starts as JSON rows do: `[` then `{` or `]`, or `{` then `"` or `}` (whitespace
/// allowed between). Lines such as `[    0.000000] Linux version …` (dmesg) or `[Unit]` do not.
fn looks_like_json_rows(start: &[u8]) -> bool {
    let mut bytes = start.iter().copied().filter(|b| !b.is_ascii_whitespace());
    matches!(
        (bytes.next(), bytes.next()),
        (Some(b'['), Some(b'{' | b']')) | (Some(b'{'), Some(b'"' | b'}'))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evidence_files_leave_out_hidden_files_sidecars_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "ps",
            "processes.json",
            "ps.stderr",
            "ps.exit",
            ".hidden",
            "b.csv",
        ] {
            fs::write(dir.path().join(name), "x").unwrap();
        }
        fs::create_dir(dir.path().join("sub")).unwrap();
        assert_eq!(
            evidence_files(dir.path()).unwrap(),
            ["b.csv", "processes.json", "ps"]
        );
        assert_eq!(
            sidecar(dir.path(), "processes.json", "exit"),
            dir.path().join("processes.exit")
        );
    }

    #[test]
    fn parsers_by_extension_then_content() {
        let never = || -> Option<Vec<u8>> { panic!("the extension decides") };
        assert_eq!(parser_for("a.JSON", never), Parser::Json);
        assert_eq!(parser_for("a.jsonl", never), Parser::Json);
        assert_eq!(parser_for("a.csv", never), Parser::Csv { delimiter: None });
        assert_eq!(parser_for("a.tsv", never), Parser::Tsv);
        let content = |text: &'static str| move || Some(text.as_bytes().to_vec());
        assert_eq!(
            parser_for("a.txt", content("[\n  {\"a\":\"1\"}]")),
            Parser::Json
        );
        assert_eq!(parser_for("a", content(" {\"a\":1}\n")), Parser::Json);
        assert_eq!(parser_for("a.txt", content("[]")), Parser::Json);
        assert_eq!(
            parser_for("dmesg", content("[    0.000] Linux")),
            Parser::Lines
        );
        assert_eq!(parser_for("unit", content("[Unit]\n")), Parser::Lines);
        assert_eq!(parser_for("a.txt", || None), Parser::Lines);
    }

    #[test]
    fn links_are_followed_only_inside_the_evidence_directory() {
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret"), "s").unwrap();
        let root = tempfile::tempdir().unwrap();
        let root_path = fs::canonicalize(root.path()).unwrap();
        let host = root.path().join("web-1");
        fs::create_dir(&host).unwrap();
        fs::write(host.join("ps.txt"), "p").unwrap();
        std::os::unix::fs::symlink(host.join("ps.txt"), host.join("inside.txt")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), host.join("out.txt")).unwrap();
        assert!(
            open_inside(&root_path, &host.join("inside.txt"))
                .unwrap()
                .is_some()
        );
        assert!(
            open_inside(&root_path, &host.join("none.txt"))
                .unwrap()
                .is_none()
        );
        let refused = open_inside(&root_path, &host.join("out.txt")).unwrap_err();
        assert!(
            refused.contains("outside the evidence directory"),
            "{refused}"
        );
    }
}
