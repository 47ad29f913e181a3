//! File names for ids (run ids, command ids, target keys), which can be any text: every byte
//! outside `[A-Za-z0-9._-]` percent-encoded, so a name is always one safe path component, and a
//! name too long for a file system (255 bytes) shortened deterministically to a prefix of its
//! encoding, `~` and a hash of the id. `~` is itself always encoded, so a shortened name never
//! equals another id's plain one. A shortened name cannot be read back: whatever is filed under
//! one keeps its id inside (a run's `run.json`, a baseline's `key`, each record's `command`).

use diffy_plugin_api::documents::sha256_hex;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Every byte but `[A-Za-z0-9._-]` is percent-encoded in a path component.
pub(crate) const PATH_COMPONENT: &AsciiSet =
    &NON_ALPHANUMERIC.remove(b'.').remove(b'_').remove(b'-');

/// The longest name this store makes, leaving room for a suffix (`.jsonl`) and for temporary
/// names beside it within the 255 bytes of ext4, XFS and btrfs.
const MAX_NAME_BYTES: usize = 200;

/// How much of the encoding a shortened name keeps, so a listing still hints at the id.
const SHORTENED_PREFIX_BYTES: usize = 120;

/// The file name of `id`: its encoding, or when that is too long, a prefix of it, `~` and 32 hex
/// digits of the id's SHA-256. `.` and `..` are encoded (`%2E`), so no name is a path step.
pub(crate) fn file_name(id: &str) -> String {
    let encoded = match id {
        "." => "%2E".to_string(),
        ".." => "%2E%2E".to_string(),
        _ => utf8_percent_encode(id, PATH_COMPONENT).to_string(),
    };
    if encoded.len() <= MAX_NAME_BYTES && !encoded.is_empty() {
        return encoded;
    }
    // A prefix of whole characters, so the shortened name still decodes to the id's start.
    let mut prefix = String::new();
    for ch in id.chars() {
        let mut buffer = [0; 4];
        let encoded = utf8_percent_encode(ch.encode_utf8(&mut buffer), PATH_COMPONENT).to_string();
        if prefix.len() + encoded.len() > SHORTENED_PREFIX_BYTES {
            break;
        }
        prefix.push_str(&encoded);
    }
    format!("{prefix}~{}", &sha256_hex(id.as_bytes())[..32])
}

#[cfg(test)]
/// The id a file name encodes, when it is a plain (not shortened) encoding; `None` for a
/// shortened name, whose id is inside what it names.
pub(crate) fn id_of(name: &str) -> Option<String> {
    if name.contains('~') {
        return None;
    }
    let id = percent_encoding::percent_decode_str(name)
        .decode_utf8()
        .ok()?
        .into_owned();
    (file_name(&id) == name).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_safe_and_read_back() {
        for id in ["web-1", "web 1", "/srv/x", ".", "..", "a%b", "é"] {
            let name = file_name(id);
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-%".contains(&b))
            );
            assert!(!matches!(name.as_str(), "." | ".."));
            assert_eq!(id_of(&name).as_deref(), Some(id), "{name}");
        }
    }

    #[test]
    fn long_ids_are_shortened_deterministically() {
        let long = "日".repeat(80);
        let name = file_name(&long);
        assert!(name.len() <= MAX_NAME_BYTES, "{}", name.len());
        assert_eq!(name, file_name(&long));
        assert_ne!(name, file_name(&"日".repeat(81)));
        assert!(name.starts_with("%E6%97%A5"));
        let prefix = name.split('~').next().unwrap();
        assert!(
            percent_encoding::percent_decode_str(prefix)
                .decode_utf8()
                .is_ok(),
            "cut inside an escape: {name}"
        );
        assert_eq!(id_of(&name), None);
        let ascii = "x".repeat(300);
        assert!(file_name(&ascii).len() <= MAX_NAME_BYTES);
    }
}
