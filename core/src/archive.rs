//! The plugin archive format: what `diffy plugin package` writes
//! (`<name>-<version>-<target>.tar.gz`) and `diffy plugin install <ARCHIVE>` reads back, refusing
//! anything it did not expect.
//!
//! An archive holds one directory, `<name>-<version>-<target>/`, with exactly four files:
//!
//! | file | what |
//! |---|---|
//! | the library (`libdiffy_x.so`) | the plugin, under its canonical file name |
//! | `manifest.json` | the plugin's manifest, as the library reported it when it was packaged |
//! | `package.json` | [`PackageInfo`]: name, version, target triple, API version, library file |
//! | `SHA256SUMS` | the SHA-256 of the other three, in `sha256sum` format |
//!
//! Reading is defensive ([`extract`]): only regular files and that one directory; no absolute
//! paths, no `..`, nothing outside the plugin's directory, no links or devices, no duplicates; each
//! member at most [`MAX_MEMBER_SIZE`] and all of them at most [`MAX_TOTAL_SIZE`], counted on the
//! decompressed stream so a gzip bomb stops early; every checksum must match and the target triple
//! must be the running diffy's. Files are written only under names this module chooses, into a
//! fresh temporary directory that disappears on every error.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use diffy_plugin_api::Manifest;
use diffy_plugin_api::documents::sha256_hex;
use diffy_plugin_api::manifest::check_plugin_name;
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use tempfile::TempDir;

use crate::component::one_line;
use crate::config::{is_library_file, library_file_name};
use crate::error::{Error, IoContext, Result};

/// The target triple this diffy was built for (an archive must be built for the same one).
pub const TARGET_TRIPLE: &str = env!("DIFFY_TARGET_TRIPLE");

/// The largest member an archive may hold (256 MiB).
pub const MAX_MEMBER_SIZE: u64 = 256 << 20;

/// The most an archive may hold in all, decompressed (512 MiB).
pub const MAX_TOTAL_SIZE: u64 = 512 << 20;

/// The largest `manifest.json`, `package.json` or `SHA256SUMS` (1 MiB).
const MAX_METADATA_SIZE: u64 = 1 << 20;

/// The layout version written into `package.json`.
pub const FORMAT_VERSION: u32 = 1;

const MANIFEST_FILE: &str = "manifest.json";
const PACKAGE_FILE: &str = "package.json";
const SUMS_FILE: &str = "SHA256SUMS";

/// What `package.json` says about a packaged plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageInfo {
    /// The archive layout version ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// The plugin's name.
    pub name: String,
    /// The plugin's version.
    pub version: String,
    /// The target triple the library was built for.
    pub target: String,
    /// The `diffy-plugin-api` version the library was built against.
    pub api_version: String,
    /// The library's file name inside the archive.
    pub library: String,
}

impl PackageInfo {
    /// The archive's top-level directory: `<name>-<version>-<target>`.
    pub fn dir_name(&self) -> String {
        format!("{}-{}-{}", self.name, self.version, self.target)
    }

    /// The archive's file name: `<name>-<version>-<target>.tar.gz`.
    pub fn archive_name(&self) -> String {
        format!("{}.tar.gz", self.dir_name())
    }
}

/// Whether `path` names a plugin archive (`.tar.gz` or `.tgz`) rather than a library.
pub fn is_archive(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    name.ends_with(".tar.gz") || name.ends_with(".tgz")
}

/// Write the archive of a plugin: its directory, `package.json`, `manifest.json`, `SHA256SUMS`
/// and the library, each with `mtime`, owned by root, gzip-compressed.
pub(crate) fn write_archive(
    file: File,
    info: &PackageInfo,
    manifest: &Manifest,
    library: &[u8],
    mtime: u64,
) -> io::Result<()> {
    let mut manifest_json = serde_json::to_string_pretty(manifest).expect("manifests serialise");
    manifest_json.push('\n');
    let mut package_json = serde_json::to_string_pretty(info).expect("package info serialises");
    package_json.push('\n');
    let sums = format!(
        "{}  {}\n{}  {MANIFEST_FILE}\n{}  {PACKAGE_FILE}\n",
        sha256_hex(library),
        info.library,
        sha256_hex(manifest_json.as_bytes()),
        sha256_hex(package_json.as_bytes()),
    );
    let mut tar = tar::Builder::new(GzEncoder::new(file, Compression::default()));
    let top = info.dir_name();
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    dir.set_mtime(mtime);
    tar.append_data(&mut dir, format!("{top}/"), io::empty())?;
    let files: [(&str, &[u8], u32); 4] = [
        (PACKAGE_FILE, package_json.as_bytes(), 0o644),
        (MANIFEST_FILE, manifest_json.as_bytes(), 0o644),
        (SUMS_FILE, sums.as_bytes(), 0o644),
        (&info.library, library, 0o755),
    ];
    for (name, data, mode) in files {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(mode);
        header.set_size(data.len() as u64);
        header.set_mtime(mtime);
        tar.append_data(&mut header, format!("{top}/{name}"), data)?;
    }
    tar.into_inner()?.finish()?.sync_all()
}

/// A verified archive, unpacked into a temporary directory that is removed when this is dropped.
#[derive(Debug)]
pub struct StagedPackage {
    dir: TempDir,
    /// The extracted library, its checksum verified.
    pub library: PathBuf,
    /// What `package.json` says.
    pub info: PackageInfo,
    /// The packaged `manifest.json`.
    pub manifest: Manifest,
}

impl StagedPackage {
    /// The temporary directory holding the extracted files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Size limits for reading an archive.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// One member.
    member: u64,
    /// All members together, and (with 1 MiB for headers) the decompressed stream.
    total: u64,
    /// `manifest.json`, `package.json`, `SHA256SUMS`.
    metadata: u64,
}

const LIMITS: Limits = Limits {
    member: MAX_MEMBER_SIZE,
    total: MAX_TOTAL_SIZE,
    metadata: MAX_METADATA_SIZE,
};

/// Counts what is read through it and fails once more than `limit` bytes came out, so a small
/// archive that decompresses to gigabytes is stopped early.
struct Limited<R> {
    inner: R,
    read: u64,
    limit: u64,
    exceeded: Arc<AtomicBool>,
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.limit {
            self.exceeded.store(true, Ordering::Relaxed);
            return Err(io::Error::other("size limit exceeded"));
        }
        Ok(n)
    }
}

/// Why reading an archive stopped: a refusal (the archive's fault), or a local write error.
enum Fault {
    Refused(String),
    Write(PathBuf, io::Error),
}

/// What an archive held: its directory, its metadata files and its library (file name and digest,
/// the file itself already written to the staging directory).
struct Members {
    top: String,
    metadata: Vec<(String, Vec<u8>)>,
    library: Option<(String, String)>,
}

/// Check and unpack `archive` into a fresh temporary directory. Every fault of the archive is an
/// [`Error::Usage`] naming it, and leaves nothing behind.
pub fn extract(archive: &Path) -> Result<StagedPackage> {
    extract_with(archive, LIMITS)
}

fn extract_with(archive: &Path, limits: Limits) -> Result<StagedPackage> {
    let refuse = |why: String| Error::Usage(format!("{}: {why}", archive.display()));
    let file = File::open(archive).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => Error::Usage(format!("{} does not exist", archive.display())),
        _ => Error::io("read", archive, e),
    })?;
    if !file.metadata().with_path("read", archive)?.is_file() {
        return Err(refuse("not a file".into()));
    }
    let dir = tempfile::Builder::new()
        .prefix("diffy-archive-")
        .tempdir()
        .map_err(|e| Error::io("create a temporary directory in", &std::env::temp_dir(), e))?;
    let members = read_members(file, dir.path(), limits).map_err(|fault| match fault {
        Fault::Refused(why) => refuse(why),
        Fault::Write(path, e) => Error::io("write", &path, e),
    })?;
    let (info, manifest, library) = verify(members).map_err(refuse)?;
    Ok(StagedPackage {
        library: dir.path().join(library),
        dir,
        info,
        manifest,
    })
}

/// Read every member, refusing any that is not one of the four expected files in one directory;
/// metadata files are kept in memory, the library is written into `dir` and hashed on the way.
fn read_members(file: File, dir: &Path, limits: Limits) -> std::result::Result<Members, Fault> {
    let refuse = |why: String| Fault::Refused(format!("refused: {why}"));
    let exceeded = Arc::new(AtomicBool::new(false));
    let corrupt = |e: io::Error| {
        Fault::Refused(if exceeded.load(Ordering::Relaxed) {
            format!(
                "refused: it decompresses to more than the {} MiB an archive may hold",
                limits.total >> 20
            )
        } else {
            format!(
                "not a valid plugin archive (truncated or corrupt): {}",
                one_line(&e.to_string())
            )
        })
    };
    let mut tar = tar::Archive::new(Limited {
        inner: GzDecoder::new(BufReader::new(file)),
        read: 0,
        // Headers and padding come on top of the members' own bytes.
        limit: limits.total + (1 << 20),
        exceeded: Arc::clone(&exceeded),
    });
    let mut top: Option<String> = None;
    let mut total = 0u64;
    let mut metadata: Vec<(String, Vec<u8>)> = Vec::new();
    let mut library: Option<(String, String)> = None;
    let mut seen = std::collections::BTreeSet::new();
    for entry in tar.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let path = String::from_utf8(entry.path_bytes().into_owned())
            .map_err(|_| refuse("a member's name is not UTF-8".into()))?;
        let parts = member_parts(&path).map_err(refuse)?;
        let kind = entry.header().entry_type();
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::Directory => {}
            tar::EntryType::Symlink => {
                return Err(refuse(format!("member {path:?} is a symbolic link")));
            }
            tar::EntryType::Link => return Err(refuse(format!("member {path:?} is a hard link"))),
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                return Err(refuse(format!(
                    "member {path:?} is a device or special file"
                )));
            }
            other => {
                return Err(refuse(format!(
                    "member {path:?} has an unsupported type ({other:?})"
                )));
            }
        }
        match &top {
            None => top = Some(parts[0].to_string()),
            Some(top) if top != parts[0] => {
                return Err(refuse(format!(
                    "member {path:?} is outside the plugin's directory {top}/"
                )));
            }
            Some(_) => {}
        }
        if kind == tar::EntryType::Directory {
            if parts.len() != 1 {
                return Err(refuse(format!(
                    "unexpected directory {path:?} (a plugin archive holds one directory)"
                )));
            }
            continue;
        }
        let [_, name] = parts[..] else {
            return Err(refuse(format!(
                "unexpected member {path:?} (a plugin archive holds four files in one directory)"
            )));
        };
        if !seen.insert(name.to_string()) {
            return Err(refuse(format!("member {path:?} appears twice")));
        }
        let size = entry.size();
        if size > limits.member {
            return Err(refuse(format!(
                "member {path:?} is {size} bytes, over the {} MiB limit",
                limits.member >> 20
            )));
        }
        total += size;
        if total > limits.total {
            return Err(refuse(format!(
                "the members add up to more than the {} MiB limit",
                limits.total >> 20
            )));
        }
        match name {
            MANIFEST_FILE | PACKAGE_FILE | SUMS_FILE => {
                if size > limits.metadata {
                    return Err(refuse(format!(
                        "member {path:?} is {size} bytes, over the {} KiB limit",
                        limits.metadata >> 10
                    )));
                }
                let mut bytes = Vec::with_capacity(size as usize);
                (&mut entry)
                    .take(limits.metadata + 1)
                    .read_to_end(&mut bytes)
                    .map_err(corrupt)?;
                metadata.push((name.to_string(), bytes));
            }
            _ if is_library_file(Path::new(name)) && library.is_none() => {
                // `member_parts` made sure the name is one plain path component.
                let target = dir.join(name);
                let sha256 = copy_hashed(&mut entry, &target, size).map_err(|e| match e {
                    CopyError::Read(e) => corrupt(e),
                    CopyError::Write(e) => Fault::Write(target.clone(), e),
                })?;
                library = Some((name.to_string(), sha256));
            }
            _ => {
                return Err(refuse(format!(
                    "unexpected member {path:?} (expected the library, {MANIFEST_FILE}, \
                     {PACKAGE_FILE} and {SUMS_FILE})"
                )));
            }
        }
    }
    // Read to the end of the gzip stream, so that its length and CRC are checked too.
    io::copy(&mut tar.into_inner(), &mut io::sink()).map_err(corrupt)?;
    let top = top.ok_or_else(|| Fault::Refused("not a plugin archive: it is empty".into()))?;
    Ok(Members {
        top,
        metadata,
        library,
    })
}

/// Check what an archive held: every file present and its checksum right, then the target, then
/// that names and versions agree. Returns the package info, the manifest and the library's name.
fn verify(members: Members) -> std::result::Result<(PackageInfo, Manifest, String), String> {
    let Members {
        top,
        metadata,
        library,
    } = members;
    let take = |wanted: &str| {
        metadata
            .iter()
            .find(|(name, _)| name == wanted)
            .map(|(_, bytes)| bytes.as_slice())
            .ok_or_else(|| format!("not a plugin archive: {top}/{wanted} is missing"))
    };
    let sums = take(SUMS_FILE)?;
    let package_json = take(PACKAGE_FILE)?;
    let manifest_json = take(MANIFEST_FILE)?;
    let Some((library_name, library_sha256)) = library else {
        return Err(format!(
            "not a plugin archive: {top}/ holds no library (*{})",
            std::env::consts::DLL_SUFFIX
        ));
    };

    // Integrity first: every file listed in SHA256SUMS, with a matching digest, and nothing else.
    let listed = parse_sums(sums).map_err(|why| format!("refused: {SUMS_FILE}: {why}"))?;
    let actual = [
        (library_name.as_str(), library_sha256),
        (MANIFEST_FILE, sha256_hex(manifest_json)),
        (PACKAGE_FILE, sha256_hex(package_json)),
    ];
    for (name, digest) in &actual {
        let Some((_, expected)) = listed.iter().find(|(n, _)| n == name) else {
            return Err(format!("refused: {SUMS_FILE} has no checksum for {name}"));
        };
        if !expected.eq_ignore_ascii_case(digest) {
            return Err(format!(
                "refused: checksum mismatch for {name} (expected {expected}, got {digest}): the \
                 archive is corrupt or was tampered with"
            ));
        }
    }
    if let Some((name, _)) = listed
        .iter()
        .find(|(n, _)| !actual.iter().any(|(a, _)| a == n))
    {
        return Err(format!(
            "refused: {SUMS_FILE} lists {name:?}, which the archive does not hold"
        ));
    }

    let info: PackageInfo = serde_json::from_slice(package_json)
        .map_err(|e| format!("refused: malformed {PACKAGE_FILE}: {e}"))?;
    if info.format_version != FORMAT_VERSION {
        return Err(format!(
            "refused: archive format {} is not supported by this diffy (it reads format \
             {FORMAT_VERSION}); install a newer diffy",
            info.format_version
        ));
    }
    if info.target != TARGET_TRIPLE {
        return Err(format!(
            "refused: the plugin is built for {}, but this diffy runs on {TARGET_TRIPLE}; get \
             the archive for {TARGET_TRIPLE} or build the plugin there",
            info.target
        ));
    }
    check_plugin_name(&info.name).map_err(|e| format!("refused: {PACKAGE_FILE}: {e}"))?;
    if top != info.dir_name() {
        return Err(format!(
            "refused: its directory is {top}/, but {PACKAGE_FILE} describes {}/",
            info.dir_name()
        ));
    }
    let expected_library = library_file_name(&info.name);
    if library_name != expected_library || info.library != expected_library {
        return Err(format!(
            "refused: the library is {library_name}, but plugin {} must be {expected_library}",
            info.name
        ));
    }
    let manifest: Manifest = serde_json::from_slice(manifest_json)
        .map_err(|e| format!("refused: malformed {MANIFEST_FILE}: {e}"))?;
    if manifest.name != info.name || manifest.version != info.version {
        return Err(format!(
            "refused: {MANIFEST_FILE} is {} {}, but {PACKAGE_FILE} says {} {}",
            manifest.name, manifest.version, info.name, info.version
        ));
    }
    Ok((info, manifest, library_name))
}

/// Why [`copy_hashed`] failed: reading the archive, or writing the file.
enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// Copy exactly `size` bytes from `from` into a new file at `to`, returning their SHA-256.
fn copy_hashed(
    from: &mut impl Read,
    to: &Path,
    size: u64,
) -> std::result::Result<String, CopyError> {
    let mut out = File::create_new(to).map_err(CopyError::Write)?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut copied = 0u64;
    loop {
        let n = from.read(&mut buf).map_err(CopyError::Read)?;
        if n == 0 {
            break;
        }
        copied += n as u64;
        if copied > size {
            return Err(CopyError::Read(io::Error::other(
                "a member is longer than its header says",
            )));
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(CopyError::Write)?;
    }
    if copied != size {
        return Err(CopyError::Read(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("a member ends after {copied} of its {size} bytes"),
        )));
    }
    out.sync_all().map_err(CopyError::Write)?;
    let digest = hasher.finalize();
    Ok(hex::encode(digest))
}

/// Split a member's path into its components, refusing anything that could land outside the
/// directory it is extracted into.
fn member_parts(path: &str) -> std::result::Result<Vec<&str>, String> {
    if path.starts_with('/') || path.starts_with('\\') {
        return Err(format!("member {path:?} has an absolute path"));
    }
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    if trimmed.is_empty() {
        return Err(format!("member {path:?} has an empty name"));
    }
    let parts: Vec<&str> = trimmed.split('/').collect();
    for part in &parts {
        if *part == ".." {
            return Err(format!(
                "member {path:?} leaves the archive's directory ('..')"
            ));
        }
        if part.is_empty() || *part == "." {
            return Err(format!("member {path:?} has an empty or '.' component"));
        }
        if part
            .chars()
            .any(|c| c.is_control() || c == '\\' || c == ':')
        {
            return Err(format!(
                "member {path:?} has a character not allowed in names"
            ));
        }
    }
    Ok(parts)
}

/// Parse `sha256sum` output: `<64 hex digits>  <file>` (or ` *<file>`) per line.
fn parse_sums(bytes: &[u8]) -> std::result::Result<Vec<(String, String)>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
    let mut sums: Vec<(String, String)> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let malformed = || format!("line {} is not `<sha256>  <file>`", index + 1);
        let (digest, rest) = line.split_once(' ').ok_or_else(malformed)?;
        let name = rest
            .strip_prefix(' ')
            .or_else(|| rest.strip_prefix('*'))
            .ok_or_else(malformed)?;
        if digest.len() != 64 || !digest.chars().all(|c| c.is_ascii_hexdigit()) || name.is_empty() {
            return Err(malformed());
        }
        if sums.iter().any(|(n, _)| n == name) {
            return Err(format!("{name} is listed twice"));
        }
        sums.push((name.to_string(), digest.to_string()));
    }
    Ok(sums)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_paths_stay_inside() {
        assert_eq!(member_parts("a-1/lib.so").unwrap(), vec!["a-1", "lib.so"]);
        assert_eq!(member_parts("a-1/").unwrap(), vec!["a-1"]);
        for bad in [
            "/etc/passwd",
            "../evil",
            "a/../../evil",
            "a//b",
            "./a",
            "a/./b",
            "",
            "a\\b",
            "C:x",
        ] {
            assert!(member_parts(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sums_parse_both_modes() {
        let digest = "a".repeat(64);
        let text = format!("{digest}  lib.so\n{digest} *manifest.json\n");
        let sums = parse_sums(text.as_bytes()).unwrap();
        assert_eq!(sums[0].0, "lib.so");
        assert_eq!(sums[1].0, "manifest.json");
        assert!(parse_sums(b"abc  lib.so").is_err());
        assert!(parse_sums(format!("{digest}  x\n{digest}  x\n").as_bytes()).is_err());
    }

    fn fake_package() -> (PackageInfo, Manifest) {
        let name = "diffy-fake";
        let info = PackageInfo {
            format_version: FORMAT_VERSION,
            name: name.into(),
            version: "1.2.3".into(),
            target: TARGET_TRIPLE.into(),
            api_version: diffy_plugin_api::API_VERSION.into(),
            library: library_file_name(name),
        };
        (info, Manifest::new(name, "1.2.3"))
    }

    #[test]
    fn what_is_written_reads_back() {
        let tmp = tempfile::tempdir().unwrap();
        let (info, manifest) = fake_package();
        let path = tmp.path().join(info.archive_name());
        let file = File::create(&path).unwrap();
        write_archive(file, &info, &manifest, b"not really a library", 0).unwrap();
        let staged = extract(&path).unwrap();
        assert_eq!(staged.info, info);
        assert_eq!(staged.manifest, manifest);
        assert_eq!(
            std::fs::read(&staged.library).unwrap(),
            b"not really a library"
        );
        let dir = staged.dir().to_path_buf();
        drop(staged);
        assert!(!dir.exists(), "the staging directory is removed");
    }

    #[test]
    fn a_gzip_bomb_stops_at_the_limit() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("bomb.tar.gz");
        let mut gz = GzEncoder::new(File::create(&path).unwrap(), Compression::fast());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..4 {
            gz.write_all(&zeros).unwrap();
        }
        gz.finish().unwrap();
        let limits = Limits {
            member: 1 << 20,
            total: 1 << 20,
            metadata: 1 << 10,
        };
        let error = extract_with(&path, limits).unwrap_err().to_string();
        assert!(
            error.contains("decompresses to more than the 1 MiB"),
            "{error}"
        );
    }

    #[test]
    fn archive_names() {
        assert!(is_archive(Path::new("x/diffy-a-0.1.0-x86_64.tar.gz")));
        assert!(is_archive(Path::new("a.TGZ")));
        assert!(!is_archive(Path::new("libdiffy_a.so")));
    }
}
