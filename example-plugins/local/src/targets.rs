//! The Target components: `local` (this host) and `evidence-dir` (one host per subdirectory of a
//! directory of saved command outputs, replayed by the `evidence-dir` collection).

use std::fs;
use std::path::Path;

use diffy_plugin_api::anyhow::{Context, bail};
use diffy_plugin_api::{Component, Result, Target, TargetInfo};

/// This machine's hostname, from the kernel or `/etc/hostname`; `localhost` when neither says.
pub(crate) fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|path| fs::read_to_string(path).ok())
        .map(|text| text.trim().to_string())
        .find(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Whether `name` (a target's address, or its id when it has none) designates this machine.
pub(crate) fn is_this_host(name: &str) -> bool {
    matches!(name, "localhost" | "local" | "." | "127.0.0.1" | "::1")
        || name.eq_ignore_ascii_case(&hostname())
}

/// `local`: this host, as one target whose id is the hostname.
pub(crate) struct LocalTarget;

impl LocalTarget {
    pub(crate) fn component() -> Component {
        Component::named("local", "This host").description(
            "One target: the machine diffy runs on, named by its hostname. The key is kept as the \
             label `key` and otherwise ignored (`localhost`, `.` or the hostname read best). Pair it \
             with the `local-shell` collection.",
        )
    }
}

impl Target for LocalTarget {
    fn get(&self, key: &str, _incident: Option<&str>) -> Result<Vec<TargetInfo>> {
        let mut target = TargetInfo::new(hostname());
        if !key.is_empty() {
            target.labels.insert("key".to_string(), key.to_string());
        }
        Ok(vec![target])
    }
}

/// `evidence-dir`: the key is a directory; each of its subdirectories is a host.
pub(crate) struct EvidenceDirTarget;

impl EvidenceDirTarget {
    pub(crate) fn component() -> Component {
        Component::named(
            "evidence-dir",
            "One host per subdirectory of an evidence directory",
        )
        .description(
            "The key is a directory holding one subdirectory per host, named by the host's id, \
                 with that host's evidence files (`<dir>/<host>/<file>`, see the `evidence` \
                 payload and the `evidence-dir` collection). Hidden subdirectories are skipped; \
                 hosts come sorted by name, and each target's address is the absolute path of its \
                 subdirectory.",
        )
    }
}

impl Target for EvidenceDirTarget {
    fn get(&self, key: &str, _incident: Option<&str>) -> Result<Vec<TargetInfo>> {
        evidence_targets(Path::new(key))
    }
}

fn evidence_targets(dir: &Path) -> Result<Vec<TargetInfo>> {
    if !dir.is_dir() {
        bail!(
            "evidence directory {} does not exist or is not a directory",
            dir.display()
        );
    }
    let dir = fs::canonicalize(dir)
        .with_context(|| format!("cannot resolve evidence directory {}", dir.display()))?;
    let entries = fs::read_dir(&dir)
        .with_context(|| format!("cannot read evidence directory {}", dir.display()))?;
    let mut targets = Vec::new();
    for entry in entries {
        let entry =
            entry.with_context(|| format!("cannot read evidence directory {}", dir.display()))?;
        let path = entry.path();
        // The entry's type comes with the listing: only a symbolic link costs a `stat`.
        let kind = entry
            .file_type()
            .with_context(|| format!("cannot read {}", path.display()))?;
        if !(kind.is_dir() || kind.is_symlink() && path.is_dir()) {
            continue;
        }
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            bail!(
                "evidence directory {} has a subdirectory whose name is not UTF-8: {}",
                dir.display(),
                path.display()
            );
        };
        if name.starts_with('.') {
            continue;
        }
        let Some(address) = path.to_str().map(str::to_string) else {
            bail!("evidence path {} is not UTF-8", path.display());
        };
        targets.push(TargetInfo {
            address: Some(address),
            ..TargetInfo::new(name)
        });
    }
    if targets.is_empty() {
        bail!(
            "evidence directory {} has no host subdirectories (expected <dir>/<host>/<file>)",
            dir.display()
        );
    }
    targets.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(targets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_target_is_this_host() {
        let targets = LocalTarget.get("localhost", None).unwrap();
        assert_eq!(targets.len(), 1);
        assert_eq!(targets[0].id, hostname());
        assert!(targets[0].address.is_none());
        assert!(is_this_host(&targets[0].id));
        assert!(!is_this_host("/some/evidence/dir"));
    }

    #[test]
    fn evidence_targets_are_sorted_subdirectories() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["web-2", "web-1", ".hidden"] {
            fs::create_dir(dir.path().join(name)).unwrap();
        }
        fs::write(dir.path().join("notes.txt"), "not a host").unwrap();
        let targets = EvidenceDirTarget
            .get(dir.path().to_str().unwrap(), None)
            .unwrap();
        let ids: Vec<&str> = targets.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["web-1", "web-2"]);
        let address = targets[0].address.as_deref().unwrap();
        assert!(Path::new(address).is_absolute());
        assert!(Path::new(address).ends_with("web-1"));
    }

    #[test]
    fn evidence_target_errors() {
        let dir = tempfile::tempdir().unwrap();
        let empty = EvidenceDirTarget.get(dir.path().to_str().unwrap(), None);
        assert!(
            empty
                .unwrap_err()
                .to_string()
                .contains("no host subdirectories")
        );
        let missing = dir.path().join("missing");
        let error = EvidenceDirTarget.get(missing.to_str().unwrap(), None);
        assert!(error.unwrap_err().to_string().contains("not a directory"));
    }
}
