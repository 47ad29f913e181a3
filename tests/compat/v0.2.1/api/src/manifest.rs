//! What a plugin says about itself: the [`Manifest`], its [`Component`]s and their option schemas.
//!
//! The host caches manifests so that `diffy help` and `diffy plugin list` never open a library; keep
//! building one cheap and free of side effects.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

pub use crate::options::{OptionSpec, OptionType};

/// The kinds of component a plugin can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComponentKind {
    /// A CLI namespace: `diffy <name> …`.
    CliCommand,
    /// Finds the hosts to examine.
    Target,
    /// Says which commands to run on them.
    Payload,
    /// Runs the commands and records their output.
    Collection,
    /// Stores and reads JSON documents.
    Persistence,
    /// Compares what was collected.
    Analysis,
    /// A kind introduced by a newer `diffy-plugin-api`; this host ignores such components.
    #[serde(other)]
    Unknown,
}

impl ComponentKind {
    /// The five Diffy interfaces, in workflow order.
    pub const INTERFACES: [ComponentKind; 5] = [
        ComponentKind::Target,
        ComponentKind::Payload,
        ComponentKind::Collection,
        ComponentKind::Persistence,
        ComponentKind::Analysis,
    ];

    /// The name used in manifests and messages (`cli_command`, `analysis`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ComponentKind::CliCommand => "cli_command",
            ComponentKind::Target => "target",
            ComponentKind::Payload => "payload",
            ComponentKind::Collection => "collection",
            ComponentKind::Persistence => "persistence",
            ComponentKind::Analysis => "analysis",
            ComponentKind::Unknown => "unknown",
        }
    }
}

impl fmt::Display for ComponentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A plugin's description of itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The plugin's name: `diffy-` or `diffy_` then lowercase letters, digits, `-` and `_`.
    pub name: String,
    /// The plugin's own version (semver).
    pub version: String,
    /// The `diffy-plugin-api` version the plugin was built against (filled in by the crate).
    pub api_version: String,
    /// One line saying what the plugin is for.
    #[serde(default)]
    pub description: String,
    /// Who wrote it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub author: String,
    /// Where to find the author or the project.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub author_url: String,
    /// SPDX license expression.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub license: String,
    /// The `diffy` versions the plugin supports, as a semver requirement (`>=0.2, <0.4`).
    pub host_requirement: String,
    /// What the plugin needs when it runs isolated in diffy's sandbox.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<Permission>,
    /// Everything the plugin can activate.
    #[serde(default)]
    pub components: Vec<Component>,
}

/// A permission a plugin declares for its isolated mode, where it gets exactly what it declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Permission {
    /// Open network connections (TCP connect and bind).
    Network,
    /// Start other programs.
    Exec,
    /// Read the whole filesystem, not only system libraries, its data and its temporary directory.
    ReadAll,
    /// A permission introduced by a newer `diffy-plugin-api`; this host cannot grant it.
    #[serde(other)]
    Unknown,
}

impl Permission {
    /// The spelling in manifests and listings (`network`, `exec`, `read-all`).
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Network => "network",
            Permission::Exec => "exec",
            Permission::ReadAll => "read-all",
            Permission::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One activatable part of a plugin: a CLI namespace or an implementation of one Diffy interface.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Component {
    /// What kind of component this is.
    pub kind: ComponentKind,
    /// The activation name: a CLI namespace (`sweeten`) or an interface slug (`local-cluster`).
    pub name: String,
    /// One line for listings.
    #[serde(default)]
    pub summary: String,
    /// CLI commands: the usage line shown by `diffy help`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub usage: String,
    /// CLI commands: subcommands and their summaries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subcommands: Vec<Subcommand>,
    /// Interfaces: a longer description.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Interfaces: the options the component accepts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<OptionSpec>,
    /// Analyses: whether the analysis compares against a saved baseline.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub uses_baseline: bool,
    /// The methods the component answers (filled in by the crate from
    /// [`protocol::METHODS`](crate::protocol::METHODS)); a host calls no other.
    #[serde(default)]
    pub methods: Vec<String>,
}

/// A subcommand of a CLI command, as listed by `diffy help <namespace>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subcommand {
    /// The subcommand's name.
    pub name: String,
    /// One line saying what it does.
    pub summary: String,
}

impl Manifest {
    /// Start a manifest for `name` at `version`, built against this crate's API version.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Manifest {
            name: name.into(),
            version: version.into(),
            api_version: crate::API_VERSION.to_string(),
            description: String::new(),
            author: String::new(),
            author_url: String::new(),
            license: String::new(),
            host_requirement: crate::DEFAULT_HOST_REQUIREMENT.to_string(),
            permissions: Vec::new(),
            components: Vec::new(),
        }
    }

    /// The component of `kind` named `name`, if the plugin has one.
    pub fn component(&self, kind: ComponentKind, name: &str) -> Option<&Component> {
        self.components
            .iter()
            .find(|c| c.kind == kind && c.name == name)
    }

    /// Check everything a host relies on; the error is one line naming the first fault.
    pub fn validate(&self) -> Result<(), String> {
        check_plugin_name(&self.name)?;
        semver::Version::parse(&self.version)
            .map_err(|e| format!("version {:?} is not semver: {e}", self.version))?;
        semver::Version::parse(&self.api_version)
            .map_err(|e| format!("api_version {:?} is not semver: {e}", self.api_version))?;
        semver::VersionReq::parse(&self.host_requirement).map_err(|e| {
            format!(
                "host_requirement {:?} is not a semver requirement: {e}",
                self.host_requirement
            )
        })?;
        let mut seen = BTreeSet::new();
        for component in &self.components {
            if component.kind == ComponentKind::Unknown {
                continue;
            }
            check_component_name(&component.name)
                .map_err(|e| format!("{} component {:?}: {e}", component.kind, component.name))?;
            if !seen.insert((component.kind, component.name.as_str())) {
                return Err(format!(
                    "{} component {:?} is declared twice",
                    component.kind, component.name
                ));
            }
            component.validate_schema()?;
            for method in &component.methods {
                let valid = !method.is_empty()
                    && method
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                if !valid {
                    return Err(format!(
                        "{} component {:?}: method name {method:?} must be lowercase letters, \
                         digits and '_'",
                        component.kind, component.name
                    ));
                }
            }
        }
        Ok(())
    }
}

impl Component {
    /// A component of `kind` named `name` with a one-line summary.
    pub fn new(kind: ComponentKind, name: impl Into<String>, summary: impl Into<String>) -> Self {
        Component {
            kind,
            name: name.into(),
            summary: summary.into(),
            usage: String::new(),
            subcommands: Vec::new(),
            description: String::new(),
            options: Vec::new(),
            uses_baseline: false,
            methods: Vec::new(),
        }
    }

    /// A component for a plugin author to register with one of [`Plugin`](crate::Plugin)'s
    /// methods, which sets its kind (`Plugin::cli_command`, `Plugin::analysis`, …).
    pub fn named(name: impl Into<String>, summary: impl Into<String>) -> Self {
        Component::new(ComponentKind::CliCommand, name, summary)
    }

    /// Set the usage line (CLI commands).
    pub fn usage(mut self, usage: impl Into<String>) -> Self {
        self.usage = usage.into();
        self
    }

    /// Add a subcommand and its summary (CLI commands).
    pub fn subcommand(mut self, name: impl Into<String>, summary: impl Into<String>) -> Self {
        self.subcommands.push(Subcommand {
            name: name.into(),
            summary: summary.into(),
        });
        self
    }

    /// Set the longer description (interfaces).
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Add an option to the schema (interfaces).
    pub fn option(mut self, option: OptionSpec) -> Self {
        self.options.push(option);
        self
    }

    /// Declare that this analysis compares against a saved baseline.
    pub fn uses_baseline(mut self, uses: bool) -> Self {
        self.uses_baseline = uses;
        self
    }

    /// Whether the component answers `method` (its manifest lists it).
    pub fn has_method(&self, method: &str) -> bool {
        self.methods.iter().any(|m| m == method)
    }
}

/// Check a plugin name: `diffy-` or `diffy_` followed by lowercase letters, digits, `-` and `_`, at
/// most 64 characters in all. Such a name is safe to use as a directory name.
pub fn check_plugin_name(name: &str) -> Result<(), String> {
    let rest = name
        .strip_prefix("diffy-")
        .or_else(|| name.strip_prefix("diffy_"));
    let valid = name.len() <= 64
        && rest.is_some_and(|rest| {
            !rest.is_empty()
                && rest
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        });
    if valid {
        Ok(())
    } else {
        Err(format!(
            "invalid plugin name {name:?}: expected 'diffy-' or 'diffy_' followed by lowercase \
             letters, digits, '-' or '_' (at most 64 characters)"
        ))
    }
}

/// Check a component name (a CLI namespace or an interface slug): a lowercase letter, then lowercase
/// letters, digits and `-`, at most 64 characters.
pub fn check_component_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid = name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "invalid name {name:?}: expected a lowercase letter, then lowercase letters, digits or '-'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_names() {
        assert!(check_plugin_name("diffy-sweeten").is_ok());
        assert!(check_plugin_name("diffy_local2").is_ok());
        for bad in [
            "diffy-",
            "sweeten",
            "diffy-../x",
            "diffy-A",
            "diffy-a/b",
            &"diffy-x".repeat(10),
        ] {
            assert!(check_plugin_name(bad).is_err(), "{bad}");
        }
    }
}
