//! What a plugin says about itself: the [`Manifest`], its [`Component`]s and their option schemas.
//!
//! The host caches manifests so that `diffy help` and `diffy plugin list` never open a library; keep
//! building one cheap and free of side effects.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

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

/// The JSON type an option takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptionType {
    /// A JSON string.
    String,
    /// A whole number.
    Integer,
    /// Any JSON number.
    Number,
    /// `true` or `false`.
    Boolean,
    /// A JSON array (on the command line: JSON, or a comma-separated list of strings).
    Array,
    /// A JSON object (on the command line: JSON).
    Object,
}

impl OptionType {
    fn as_str(self) -> &'static str {
        match self {
            OptionType::String => "string",
            OptionType::Integer => "integer",
            OptionType::Number => "number",
            OptionType::Boolean => "boolean",
            OptionType::Array => "array",
            OptionType::Object => "object",
        }
    }

    fn admits(self, value: &Value) -> bool {
        match self {
            OptionType::String => value.is_string(),
            OptionType::Integer => value.is_i64() || value.is_u64(),
            OptionType::Number => value.is_number(),
            OptionType::Boolean => value.is_boolean(),
            OptionType::Array => value.is_array(),
            OptionType::Object => value.is_object(),
        }
    }
}

impl fmt::Display for OptionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One option in a component's schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptionSpec {
    /// The key (`timeout_secs`), given on the command line as `--option SLUG.KEY=VALUE`.
    pub key: String,
    /// The JSON type of the value.
    #[serde(rename = "type")]
    pub value_type: OptionType,
    /// What the option does.
    #[serde(default)]
    pub description: String,
    /// Whether activation fails without it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
    /// The value used when the option is not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
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

    /// The option named `key` in this component's schema.
    pub fn option_spec(&self, key: &str) -> Option<&OptionSpec> {
        self.options.iter().find(|o| o.key == key)
    }

    /// Validate `given` against the schema: unknown keys and wrong types are errors, missing
    /// required keys are errors, and defaults fill the rest. Returns the complete option object.
    pub fn resolve_options(
        &self,
        given: &Map<String, Value>,
    ) -> Result<Map<String, Value>, String> {
        let mut resolved = Map::new();
        for (key, value) in given {
            let Some(spec) = self.option_spec(key) else {
                let known: Vec<&str> = self.options.iter().map(|o| o.key.as_str()).collect();
                return Err(if known.is_empty() {
                    format!(
                        "unknown option {key:?}: {} {} takes no options",
                        self.kind, self.name
                    )
                } else {
                    format!(
                        "unknown option {key:?} for {} {} (known: {})",
                        self.kind,
                        self.name,
                        known.join(", ")
                    )
                });
            };
            if !spec.value_type.admits(value) {
                return Err(format!(
                    "option {key:?} of {} {} must be {}, not {value}",
                    self.kind, self.name, spec.value_type
                ));
            }
            resolved.insert(key.clone(), value.clone());
        }
        for spec in &self.options {
            if resolved.contains_key(&spec.key) {
                continue;
            }
            match &spec.default {
                Some(default) => {
                    resolved.insert(spec.key.clone(), default.clone());
                }
                None if spec.required => {
                    return Err(format!(
                        "{} {} needs option {:?}: {}",
                        self.kind, self.name, spec.key, spec.description
                    ));
                }
                None => {}
            }
        }
        Ok(resolved)
    }

    fn validate_schema(&self) -> Result<(), String> {
        let mut keys = BTreeSet::new();
        for option in &self.options {
            let valid_key = !option.key.is_empty()
                && option
                    .key
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !valid_key {
                return Err(format!(
                    "{} {}: option key {:?} must be lowercase letters, digits and '_'",
                    self.kind, self.name, option.key
                ));
            }
            if !keys.insert(option.key.as_str()) {
                return Err(format!(
                    "{} {}: option {:?} is declared twice",
                    self.kind, self.name, option.key
                ));
            }
            if let Some(default) = &option.default
                && !option.value_type.admits(default)
            {
                return Err(format!(
                    "{} {}: the default of option {:?} is not a {}",
                    self.kind, self.name, option.key, option.value_type
                ));
            }
        }
        Ok(())
    }
}

impl OptionSpec {
    /// An option of `value_type` under `key`.
    pub fn new(
        key: impl Into<String>,
        value_type: OptionType,
        description: impl Into<String>,
    ) -> Self {
        OptionSpec {
            key: key.into(),
            value_type,
            description: description.into(),
            required: false,
            default: None,
        }
    }

    /// Give the option a default value.
    pub fn default_value(mut self, value: impl Into<Value>) -> Self {
        self.default = Some(value.into());
        self
    }

    /// Make the option required.
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// Turn a command-line string (`--option SLUG.KEY=VALUE`) into a value of this option's type.
    pub fn parse_cli_value(&self, text: &str) -> Result<Value, String> {
        let fail = || {
            format!(
                "option {:?} must be {}, not {text:?}",
                self.key, self.value_type
            )
        };
        match self.value_type {
            OptionType::String => Ok(Value::String(text.to_string())),
            OptionType::Integer => text.parse::<i64>().map(Value::from).map_err(|_| fail()),
            OptionType::Number => text
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .ok_or_else(fail),
            OptionType::Boolean => match text {
                "true" | "yes" | "1" => Ok(Value::Bool(true)),
                "false" | "no" | "0" => Ok(Value::Bool(false)),
                _ => Err(fail()),
            },
            OptionType::Array if !text.trim_start().starts_with('[') => Ok(Value::Array(
                text.split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| Value::String(s.to_string()))
                    .collect(),
            )),
            OptionType::Array | OptionType::Object => {
                let value: Value = serde_json::from_str(text).map_err(|_| fail())?;
                if self.value_type.admits(&value) {
                    Ok(value)
                } else {
                    Err(fail())
                }
            }
        }
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
    use serde_json::json;

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

    #[test]
    fn options_resolve_with_defaults_and_reject_unknown_keys() {
        let component = Component::new(ComponentKind::Analysis, "x", "")
            .option(OptionSpec::new("n", OptionType::Integer, "").default_value(3))
            .option(OptionSpec::new("dir", OptionType::String, "").required());
        let given = json!({"dir": "/tmp"}).as_object().unwrap().clone();
        let resolved = component.resolve_options(&given).unwrap();
        assert_eq!(Value::Object(resolved), json!({"dir": "/tmp", "n": 3}));
        let unknown = json!({"dir": "/tmp", "bogus": 1})
            .as_object()
            .unwrap()
            .clone();
        assert!(
            component
                .resolve_options(&unknown)
                .unwrap_err()
                .contains("bogus")
        );
        assert!(
            component
                .resolve_options(&Map::new())
                .unwrap_err()
                .contains("dir")
        );
        let wrong = json!({"dir": 1}).as_object().unwrap().clone();
        assert!(component.resolve_options(&wrong).is_err());
    }

    #[test]
    fn cli_values_follow_the_schema() {
        let array = OptionSpec::new("a", OptionType::Array, "");
        assert_eq!(array.parse_cli_value("x,y").unwrap(), json!(["x", "y"]));
        assert_eq!(array.parse_cli_value("[1]").unwrap(), json!([1]));
        let boolean = OptionSpec::new("b", OptionType::Boolean, "");
        assert!(boolean.parse_cli_value("maybe").is_err());
    }
}
