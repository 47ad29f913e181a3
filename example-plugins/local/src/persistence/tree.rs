//! Documents saved under keys of their own (any key outside the namespaces of runs and
//! baselines): one JSON file per key.
//!
//! A key such as `notes/web 1/triage` is split on `/`; each segment becomes one path component
//! with every byte outside `[A-Za-z0-9._-]` percent-encoded (`web%201`), and the last one gets
//! `.json`: `<root>/notes/web%201/triage.json`. Empty, `.` and `..` segments are refused, so no
//! key can reach outside the directory, and so is a segment whose encoding would not fit in a file
//! name; the encoding is reversible, so `list` gives back the keys as they were saved.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use diffy_plugin_api::Result;
use diffy_plugin_api::anyhow::{Context, bail};
use percent_encoding::{percent_decode_str, utf8_percent_encode};

use super::names::PATH_COMPONENT;

const EXTENSION: &str = ".json";

/// The longest encoded segment: a file name of 255 bytes, less `.json` and room for a temporary
/// name's suffix.
const MAX_SEGMENT_BYTES: usize = 240;

/// Documents as files under `root`.
pub(crate) struct Tree {
    root: PathBuf,
}

impl Tree {
    pub(crate) fn new(root: PathBuf) -> Self {
        Tree { root }
    }

    fn path_of(&self, key: &str) -> Result<PathBuf> {
        let mut path = self.root.clone();
        let mut segments = key.split('/').peekable();
        while let Some(segment) = segments.next() {
            let mut name =
                encode_segment(segment).with_context(|| format!("invalid key {key:?}"))?;
            if segments.peek().is_none() {
                name.push_str(EXTENSION);
            }
            path.push(name);
        }
        Ok(path)
    }

    pub(crate) fn get(&self, key: &str) -> Result<Option<String>> {
        let path = self.path_of(key)?;
        match fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    pub(crate) fn save(&self, key: &str, document: &str) -> Result<()> {
        let path = self.path_of(key)?;
        let dir = path.parent().unwrap_or(&self.root);
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        // Write a temporary file beside the target and rename it into place, so a reader never
        // sees half a document and a crash of this process leaves the old one. No fsync: an
        // analysis stores thousands of records, and losing the last ones to a power cut is
        // acceptable where a torn file is not.
        let mut file = tempfile::NamedTempFile::new_in(dir)
            .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
        file.write_all(document.as_bytes())
            .with_context(|| format!("cannot write {}", file.path().display()))?;
        file.persist(&path)
            .with_context(|| format!("cannot save {}", path.display()))?;
        Ok(())
    }

    pub(crate) fn list(&self, prefix: &str) -> Result<Vec<String>> {
        // Only the subtree named by the prefix's complete segments can hold matching keys.
        let (dir_key, partial) = match prefix.rsplit_once('/') {
            Some((dir_key, partial)) => (Some(dir_key), partial),
            None => (None, prefix),
        };
        let mut dir = self.root.clone();
        let mut key_prefix = String::new();
        if let Some(dir_key) = dir_key {
            for segment in dir_key.split('/') {
                let Ok(name) = encode_segment(segment) else {
                    return Ok(Vec::new()); // no saved key has such a segment
                };
                dir.push(name);
            }
            key_prefix = format!("{dir_key}/");
        }
        let mut keys = Vec::new();
        walk(&dir, &key_prefix, Some(partial), &mut keys)?;
        keys.retain(|key| key.starts_with(prefix));
        keys.sort();
        Ok(keys)
    }
}

/// Collect the keys of the documents under `dir`, whose keys start with `key_prefix`. At the top
/// level, skip entries whose decoded name cannot start with `partial`.
fn walk(dir: &Path, key_prefix: &str, partial: Option<&str>, keys: &mut Vec<String>) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(());
        }
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        // Names that no key encodes to (temporary files, files of others) are not documents.
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let file_type = entry
            .file_type()
            .with_context(|| format!("cannot list {}", dir.display()))?;
        let (stem, is_document) = match name.strip_suffix(EXTENSION) {
            Some(stem) if file_type.is_file() => (stem, true),
            _ => (name.as_str(), false),
        };
        let Some(segment) = decode_segment(stem) else {
            continue;
        };
        if partial.is_some_and(|partial| !segment.starts_with(partial)) {
            continue;
        }
        let key = format!("{key_prefix}{segment}");
        if is_document {
            keys.push(key);
        } else if file_type.is_dir() {
            walk(&entry.path(), &format!("{key}/"), None, keys)?;
        }
    }
    Ok(())
}

/// One key segment as a path component, or why it cannot be one.
fn encode_segment(segment: &str) -> Result<String> {
    if matches!(segment, "" | "." | "..") {
        bail!("empty, '.' and '..' segments are not allowed");
    }
    let encoded = utf8_percent_encode(segment, PATH_COMPONENT).to_string();
    if encoded.len() > MAX_SEGMENT_BYTES {
        bail!(
            "a segment of {} bytes once encoded does not fit in a file name (at most \
             {MAX_SEGMENT_BYTES})",
            encoded.len()
        );
    }
    Ok(encoded)
}

/// The key segment a path component encodes, or `None` when it is not one `encode_segment` makes
/// (only the canonical encoding is read back, so one key never has two files).
fn decode_segment(name: &str) -> Option<String> {
    let decoded = percent_decode_str(name).decode_utf8().ok()?;
    let canonical = encode_segment(&decoded).ok()?;
    (canonical == name).then(|| decoded.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Tree) {
        let dir = tempfile::tempdir().unwrap();
        let store = Tree::new(dir.path().join("data"));
        (dir, store)
    }

    #[test]
    fn keys_map_to_encoded_paths() {
        let (_dir, store) = store();
        let root = &store.root;
        assert_eq!(
            store.path_of("baseline/web-1/processes").unwrap(),
            root.join("baseline/web-1/processes.json")
        );
        assert_eq!(
            store.path_of("analysis/inc 7:2/a%b").unwrap(),
            root.join("analysis/inc%207%3A2/a%25b.json")
        );
        assert_eq!(store.path_of("a/..b").unwrap(), root.join("a/..b.json"));
        assert_eq!(store.path_of("é").unwrap(), root.join("%C3%A9.json"));
    }

    #[test]
    fn traversal_attempts_are_refused_or_stay_inside() {
        let (_dir, store) = store();
        for bad in [
            "",
            "..",
            "../x",
            "a/../../b",
            "/etc/passwd",
            "a//b",
            "a/",
            "./a",
            "a/.",
        ] {
            assert!(store.path_of(bad).is_err(), "{bad}");
            assert!(store.save(bad, "{}").is_err(), "{bad}");
        }
        for odd in ["..\\x", "a\\..\\..\\b", "~", "$HOME", "a\0b"] {
            let path = store.path_of(odd).unwrap();
            assert!(path.starts_with(&store.root), "{odd}");
            assert_eq!(path.parent().unwrap(), store.root, "{odd}");
        }
    }

    #[test]
    fn save_get_and_list_round_trip() {
        let (_dir, store) = store();
        let keys = [
            "baseline/web 1/processes",
            "baseline/web 1/cron-entries",
            "baseline/web:2/processes",
            "baseline/x%41/é ü",
            "analysis/incident/report",
            "top",
        ];
        for (i, key) in keys.iter().enumerate() {
            store.save(key, &format!("{{\"n\": {i}}}")).unwrap();
        }
        assert_eq!(
            store.get("baseline/web 1/processes").unwrap().unwrap(),
            "{\"n\": 0}"
        );
        assert_eq!(store.get("baseline/missing/processes").unwrap(), None);
        assert_eq!(store.get("baseline/web 1").unwrap(), None);
        store.save("top", "{\"n\": 9}").unwrap();
        assert_eq!(store.get("top").unwrap().unwrap(), "{\"n\": 9}");

        let mut all = keys.map(str::to_string).to_vec();
        all.sort();
        assert_eq!(store.list("").unwrap(), all);
        assert_eq!(
            store.list("baseline/web 1/").unwrap(),
            ["baseline/web 1/cron-entries", "baseline/web 1/processes"]
        );
        assert_eq!(
            store.list("baseline/web").unwrap(),
            [
                "baseline/web 1/cron-entries",
                "baseline/web 1/processes",
                "baseline/web:2/processes"
            ]
        );
        assert_eq!(store.list("baseline/x%41/").unwrap(), ["baseline/x%41/é ü"]);
        assert_eq!(
            store.list("baseline/web 1/proc").unwrap(),
            ["baseline/web 1/processes"]
        );
        assert_eq!(store.list("to").unwrap(), ["top"]);
        assert!(store.list("nothing/").unwrap().is_empty());
        assert!(store.list("../").unwrap().is_empty());
    }

    #[test]
    fn foreign_files_are_not_listed() {
        let (_dir, store) = store();
        store.save("a/b", "{}").unwrap();
        let dir = store.root.join("a");
        fs::write(dir.join(".tmpXYZ"), "").unwrap();
        fs::write(dir.join("notes.txt"), "").unwrap();
        fs::write(dir.join("bad%zz.json"), "").unwrap();
        fs::write(dir.join("lower%3a.json"), "").unwrap();
        fs::write(dir.join("plain%41.json"), "").unwrap();
        assert_eq!(store.list("").unwrap(), ["a/b"]);
    }

    #[test]
    fn encoding_round_trips() {
        for segment in [
            "plain",
            "with space",
            "colon:x",
            "100%",
            "é",
            "a.b_c-d",
            "...",
        ] {
            let encoded = encode_segment(segment).unwrap();
            assert!(
                encoded
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-%".contains(&b))
            );
            assert_eq!(decode_segment(&encoded).as_deref(), Some(segment));
        }
    }
}
