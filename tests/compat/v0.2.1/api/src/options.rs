//! Option schemas: the options a component accepts, their JSON types and defaults, and how the
//! host checks what a user gives against them (`--option SLUG.KEY=VALUE`).

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::manifest::Component;

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

impl Component {
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

    pub(crate) fn validate_schema(&self) -> Result<(), String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::ComponentKind;
    use serde_json::json;

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
