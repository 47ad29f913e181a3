//! `plugins.json`: the user's plugin registry (docs/architecture.md, "Registry").
//!
//! Reading validates every entry and reports the first fault in one line naming the file and the
//! entry's index. Writing is atomic (temporary file, fsync, rename) and serialised by an advisory
//! lock on `plugins.json.lock`, and keeps keys this version does not know.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use diffy_plugin_api::manifest::check_plugin_name;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, IoContext, Result};
use crate::files;
use crate::isolation::Isolation;

/// The only `plugins_config_version` this host reads and writes.
pub const CONFIG_VERSION: &str = "1.0.0";

/// How a plugin came to be registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum InstallationType {
    /// Copied into `<config dir>/plugins/<name>/<version>/` by `diffy plugin install`.
    #[default]
    Installed,
    /// Used in place (`diffy plugin install --link`).
    Path,
}

impl TryFrom<String> for InstallationType {
    type Error = String;

    fn try_from(text: String) -> std::result::Result<Self, String> {
        match text.as_str() {
            "installed" => Ok(InstallationType::Installed),
            "path" => Ok(InstallationType::Path),
            other => Err(format!(
                "unknown installation_type {other:?} (expected \"installed\" or \"path\")"
            )),
        }
    }
}

impl InstallationType {
    /// The spelling in `plugins.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            InstallationType::Installed => "installed",
            InstallationType::Path => "path",
        }
    }
}

/// One entry of `plugins.json`. Its shape is serde's; what serde cannot say (a valid name, the
/// fields each installation type needs) is checked by [`RegistryEntry::validate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegistryEntry {
    /// The plugin's name (validated).
    pub name: String,
    /// Installed or path; installed when absent.
    #[serde(default)]
    pub installation_type: InstallationType,
    /// Path entries: the library, as written (possibly relative to the registry's directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installation_path: Option<String>,
    /// Installed entries: the installed version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Installed entries: the library's SHA-256 at install time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// `"process"` to run the plugin in a sandboxed child process; in process when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<Isolation>,
    /// Keys this version does not know, kept as they were, in order.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The parsed registry, with the file's unknown top-level keys.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Registry {
    /// The entries, in file order.
    pub entries: Vec<RegistryEntry>,
    /// Top-level keys other than `plugins_config_version` and `plugins`.
    pub extra: Map<String, Value>,
}

/// `plugins.json` as written: the version and entries first, then whatever else the file held.
#[derive(Serialize)]
struct RegistryFile<'a> {
    plugins_config_version: &'a str,
    plugins: &'a [RegistryEntry],
    #[serde(flatten)]
    extra: &'a Map<String, Value>,
}

impl RegistryEntry {
    /// The library an entry points at: a path entry's `installation_path` (relative ones against
    /// the registry's directory), or the installed copy under the plugins directory.
    pub fn library_path(&self, config_dir: &Path) -> PathBuf {
        match self.installation_type {
            InstallationType::Path => {
                config_dir.join(self.installation_path.as_deref().unwrap_or_default())
            }
            InstallationType::Installed => installed_dir(
                config_dir,
                &self.name,
                self.version.as_deref().unwrap_or_default(),
            )
            .join(crate::config::library_file_name(&self.name)),
        }
    }
}

/// `<config dir>/plugins/<name>/<version>`: where an installed plugin's files live. Both parts
/// are validated before they reach this function.
pub fn installed_dir(config_dir: &Path, name: &str, version: &str) -> PathBuf {
    config_dir.join("plugins").join(name).join(version)
}

/// The largest `plugins.json` read: a thousand plugins take a few hundred KiB.
pub const MAX_REGISTRY_BYTES: u64 = 16 << 20;

impl Registry {
    /// Read `path`; a missing file is an empty registry. It must be a regular file of at most
    /// [`MAX_REGISTRY_BYTES`].
    pub fn read(path: &Path) -> Result<Registry> {
        match crate::files::read_regular(path, MAX_REGISTRY_BYTES) {
            Ok(Some(bytes)) => Registry::parse(path, &bytes),
            Ok(None) => Ok(Registry::default()),
            Err(crate::files::ReadFault::Io(e)) => Err(Error::io("read", path, e)),
            Err(fault) => Err(Error::Registry(format!("{}: {fault}", path.display()))),
        }
    }

    /// Parse and validate registry text; `path` names the file in messages.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Registry> {
        let file = path.display();
        let fault = |message: String| Error::Registry(format!("{file}: {message}"));
        let document: Value = serde_json::from_slice(bytes).map_err(|e| {
            fault(format!(
                "malformed JSON at line {} column {}: {}",
                e.line(),
                e.column(),
                strip_position(&e.to_string())
            ))
        })?;
        let Value::Object(mut top) = document else {
            return Err(fault("the top level is not a JSON object".into()));
        };
        match top.shift_remove("plugins_config_version") {
            Some(Value::String(v)) if v == CONFIG_VERSION => {}
            Some(other) => {
                return Err(fault(format!(
                    "unsupported plugins_config_version {other} (this diffy reads \"{CONFIG_VERSION}\")"
                )));
            }
            None => return Err(fault("missing plugins_config_version".into())),
        }
        let raw_entries = match top.shift_remove("plugins") {
            Some(Value::Array(entries)) => entries,
            Some(_) => return Err(fault("\"plugins\" is not an array".into())),
            None => return Err(fault("missing \"plugins\" array".into())),
        };
        let mut entries = Vec::with_capacity(raw_entries.len());
        let mut seen: HashMap<String, usize> = HashMap::with_capacity(raw_entries.len());
        for (index, raw) in raw_entries.into_iter().enumerate() {
            let entry = parse_entry(raw).map_err(|m| fault(format!("entry {index}: {m}")))?;
            if let Some(first) = seen.insert(entry.name.clone(), index) {
                return Err(fault(format!(
                    "entries {first} and {index}: duplicate plugin name {:?}",
                    entry.name
                )));
            }
            entries.push(entry);
        }
        Ok(Registry {
            entries,
            extra: top,
        })
    }

    /// The entry named `name`.
    pub fn get(&self, name: &str) -> Option<&RegistryEntry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// Serialise as pretty JSON, known keys first, unknown keys kept.
    pub fn to_json(&self) -> String {
        let file = RegistryFile {
            plugins_config_version: CONFIG_VERSION,
            plugins: &self.entries,
            extra: &self.extra,
        };
        let mut text = serde_json::to_string_pretty(&file).expect("registries serialise");
        text.push('\n');
        text
    }
}

/// serde_json appends " at line L column C" to its messages; the caller says it first.
fn strip_position(message: &str) -> &str {
    message.rsplit_once(" at line ").map_or(message, |(m, _)| m)
}

fn parse_entry(raw: Value) -> std::result::Result<RegistryEntry, String> {
    let Value::Object(mut map) = raw else {
        return Err("not a JSON object".into());
    };
    // A null is an absent key, as it always was.
    map.retain(|_, value| !value.is_null());
    if !map.contains_key("name") {
        return Err("missing \"name\"".into());
    }
    let entry: RegistryEntry =
        serde_path_to_error::deserialize(Value::Object(map)).map_err(|e| {
            match e.path().to_string().as_str() {
                "." => e.inner().to_string(),
                key => format!("{} (in {key:?})", e.inner()),
            }
        })?;
    entry.validate()?;
    Ok(entry)
}

impl RegistryEntry {
    /// What serde cannot check: a valid name, and the fields each installation type needs.
    fn validate(&self) -> std::result::Result<(), String> {
        let name = &self.name;
        check_plugin_name(name)?;
        match self.installation_type {
            InstallationType::Path
                if self.installation_path.as_deref().is_none_or(str::is_empty) =>
            {
                Err(format!("path plugin {name:?} has no \"installation_path\""))
            }
            InstallationType::Path => Ok(()),
            InstallationType::Installed => {
                let version = self
                    .version
                    .as_deref()
                    .ok_or_else(|| format!("installed plugin {name:?} has no \"version\""))?;
                semver::Version::parse(version).map_err(|e| {
                    format!("installed plugin {name:?} has an invalid version {version:?}: {e}")
                })?;
                match &self.sha256 {
                    Some(digest)
                        if !(digest.len() == 64
                            && digest.bytes().all(|b| b.is_ascii_hexdigit())) =>
                    {
                        Err(format!("installed plugin {name:?} has a malformed sha256"))
                    }
                    _ => Ok(()),
                }
            }
        }
    }
}

/// An exclusive advisory lock on `<config dir>/plugins.json.lock`, held until dropped. Every writer
/// of the registry (and of the plugins directory) takes it, so concurrent `diffy plugin` commands
/// run one after another.
pub struct RegistryLock {
    _file: File,
}

impl RegistryLock {
    /// Block until the lock is ours. Creates the configuration directory if needed.
    pub fn acquire(config_dir: &Path) -> Result<RegistryLock> {
        let (file, path) = Self::open(config_dir)?;
        file.lock().with_path("lock", &path)?;
        Ok(RegistryLock { _file: file })
    }

    /// Take the lock if nobody holds it; `None` if another process does.
    pub fn try_acquire(config_dir: &Path) -> Result<Option<RegistryLock>> {
        let (file, path) = Self::open(config_dir)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(RegistryLock { _file: file })),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(Error::io("lock", &path, e)),
        }
    }

    fn open(config_dir: &Path) -> Result<(File, PathBuf)> {
        fs::create_dir_all(config_dir).with_path("create", config_dir)?;
        let path = config_dir.join("plugins.json.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_path("open", &path)?;
        Ok((file, path))
    }
}

/// Lock the registry, read it fresh, let `change` edit it, and write it back atomically if
/// `change` returns `Ok`. Returns what `change` returned.
pub fn modify<T>(config_dir: &Path, change: impl FnOnce(&mut Registry) -> Result<T>) -> Result<T> {
    let _lock = RegistryLock::acquire(config_dir)?;
    let path = config_dir.join("plugins.json");
    let mut registry = Registry::read(&path)?;
    let before = registry.clone();
    let outcome = change(&mut registry)?;
    if registry != before {
        files::write_atomically(&path, registry.to_json().as_bytes())?;
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Registry> {
        Registry::parse(Path::new("plugins.json"), text.as_bytes())
    }

    #[test]
    fn round_trip_keeps_unknown_keys() {
        let text = r#"{"plugins_config_version":"1.0.0","owner":"me","plugins":[
            {"name":"diffy-a","installation_type":"path","installation_path":"a.so","pinned":true},
            {"name":"diffy-b","version":"1.2.3"}]}"#;
        let registry = parse(text).unwrap();
        assert_eq!(
            registry.entries[1].installation_type,
            InstallationType::Installed
        );
        let again = parse(&registry.to_json()).unwrap();
        assert_eq!(registry, again);
        assert!(registry.to_json().contains("\"pinned\": true"));
        assert!(registry.to_json().contains("\"owner\": \"me\""));
    }

    #[test]
    fn faults_name_the_entry() {
        let cases = [
            ("{", "malformed JSON at line 1 column 1"),
            (r#"{"plugins":[]}"#, "missing plugins_config_version"),
            (
                r#"{"plugins_config_version":"2.0.0","plugins":[]}"#,
                "unsupported plugins_config_version",
            ),
            (
                r#"{"plugins_config_version":"1.0.0"}"#,
                "missing \"plugins\"",
            ),
            (
                r#"{"plugins_config_version":"1.0.0","plugins":{}}"#,
                "not an array",
            ),
            (
                r#"{"plugins_config_version":"1.0.0","plugins":[1]}"#,
                "entry 0: not a JSON object",
            ),
            (
                r#"{"plugins_config_version":"1.0.0","plugins":[{}]}"#,
                "entry 0: missing \"name\"",
            ),
            (
                r#"{"plugins_config_version":"1.0.0","plugins":[{"name":"diffy-a","installation_type":"x"}]}"#,
                "unknown installation_type",
            ),
            (
                r#"{"plugins_config_version":"1.0.0","plugins":[{"name":"diffy-a","installation_type":"path"}]}"#,
                "no \"installation_path\"",
            ),
            (
                r#"{"plugins_config_version":"1.0.0","plugins":[{"name":"diffy-a"}]}"#,
                "no \"version\"",
            ),
            (
                r#"{"plugins_config_version":"1.0.0","plugins":[{"name":"diffy-a","version":3}]}"#,
                "entry 0: invalid type: integer `3`, expected a string (in \"version\")",
            ),
            (
                r#"{"plugins_config_version":"1.0.0","plugins":[{"name":"../x","version":"1.0.0"}]}"#,
                "invalid plugin name",
            ),
            (
                r#"{"plugins_config_version":"1.0.0","plugins":[{"name":"diffy-a","version":"1.0.0"},{"name":"diffy-a","version":"1.0.0"}]}"#,
                "entries 0 and 1: duplicate",
            ),
        ];
        for (text, expected) in cases {
            let message = parse(text).unwrap_err().to_string();
            assert!(message.starts_with("plugins.json: "), "{message}");
            assert!(message.contains(expected), "{text}: {message}");
            assert!(!message.contains('\n'));
        }
    }
}
