//! An activation plan: every component a command needs, resolved once — which plugin owns it, what
//! its manifest declares, and its options validated against its schema and completed with their
//! defaults — before any library is opened. Activation then works from the plan and looks nothing
//! up again.

use diffy_plugin_api::{Component, ComponentKind};
use serde_json::{Map, Value};

use super::Activator;
use crate::error::{Error, Result};
use crate::known::KnownPlugin;

/// One component of a plan.
#[derive(Debug, Clone)]
pub struct Planned {
    /// The plugin that owns it.
    pub owner: KnownPlugin,
    /// Its declaration in the owner's manifest.
    pub declaration: Component,
    /// Its options, validated and completed with their defaults.
    pub options: Map<String, Value>,
}

impl Planned {
    /// The component's kind.
    pub fn kind(&self) -> ComponentKind {
        self.declaration.kind
    }

    /// The component's name.
    pub fn name(&self) -> &str {
        &self.declaration.name
    }
}

/// The components of one command, in the order they were asked for.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The components.
    pub components: Vec<Planned>,
}

impl Plan {
    /// The planned component of `kind`, if the plan has one (the first, if several).
    pub fn get(&self, kind: ComponentKind) -> Option<&Planned> {
        self.components.iter().find(|c| c.kind() == kind)
    }
}

impl Activator {
    /// Resolve one component with explicit options (validated here).
    pub fn plan_one(
        &mut self,
        kind: ComponentKind,
        name: &str,
        options: &Map<String, Value>,
    ) -> Result<Planned> {
        let owner = self.owner(kind, name)?;
        let declaration = declaration_of(&owner, kind, name)?;
        let options = declaration.resolve_options(options).map_err(Error::Usage)?;
        Ok(Planned {
            owner,
            declaration,
            options,
        })
    }

    /// Resolve `wanted` components, with options given as `SLUG.KEY=VALUE` text (each value typed
    /// by the schema of the component it names). An option goes to every wanted component with
    /// that slug whose schema declares the key; a slug that is not wanted, or a key none of them
    /// declares, is an error.
    pub fn plan(&mut self, wanted: &[(ComponentKind, &str)], options: &[String]) -> Result<Plan> {
        let mut resolved = Vec::with_capacity(wanted.len());
        for (kind, name) in wanted {
            let owner = self.owner(*kind, name)?;
            let declaration = declaration_of(&owner, *kind, name)?;
            resolved.push((owner, declaration));
        }
        let declarations: Vec<&Component> = resolved.iter().map(|(_, d)| d).collect();
        let given = options_from_text(&declarations, options)?;
        let components = resolved
            .into_iter()
            .zip(given)
            .map(|((owner, declaration), given)| {
                let options = declaration.resolve_options(&given).map_err(Error::Usage)?;
                Ok(Planned {
                    owner,
                    declaration,
                    options,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Plan { components })
    }
}

fn declaration_of(owner: &KnownPlugin, kind: ComponentKind, name: &str) -> Result<Component> {
    owner
        .manifest
        .as_ref()
        .and_then(|m| m.component(kind, name))
        .cloned()
        .ok_or_else(|| Error::Plugin(format!("plugin {} has no {kind} {name:?}", owner.name)))
}

/// Split `SLUG.KEY=VALUE`.
fn split_option(text: &str) -> Result<(&str, &str, &str)> {
    let bad = || {
        Error::Usage(format!(
            "--option {text:?} is not of the form SLUG.KEY=VALUE"
        ))
    };
    let (name, value) = text.split_once('=').ok_or_else(bad)?;
    let (slug, key) = name.split_once('.').ok_or_else(bad)?;
    if slug.is_empty() || key.is_empty() {
        return Err(bad());
    }
    Ok((slug, key, value))
}

/// One option object per declaration, from `--option` text.
fn options_from_text(
    declarations: &[&Component],
    options: &[String],
) -> Result<Vec<Map<String, Value>>> {
    let mut result = vec![Map::new(); declarations.len()];
    let mut given = std::collections::HashMap::new();
    for text in options {
        let (slug, key, value) = split_option(text)?;
        // A repeated option is a mistake, not a merge: which one was meant cannot be known.
        if let Some(first) = given.insert((slug, key), text) {
            return Err(Error::Usage(format!(
                "--option {slug}.{key} is given twice ({first:?} and {text:?}); give it once"
            )));
        }
        let mut matched_slug = false;
        let mut taken = false;
        let mut known = Vec::new();
        for (index, declaration) in declarations.iter().enumerate() {
            if declaration.name != slug {
                continue;
            }
            matched_slug = true;
            match declaration.option_spec(key) {
                Some(spec) => {
                    let value = spec.parse_cli_value(value).map_err(Error::Usage)?;
                    result[index].insert(key.to_string(), value);
                    taken = true;
                }
                None => known.extend(declaration.options.iter().map(|o| o.key.clone())),
            }
        }
        if !matched_slug {
            let chosen: Vec<&str> = declarations.iter().map(|d| d.name.as_str()).collect();
            return Err(Error::Usage(format!(
                "--option {text:?}: {slug} is not one of the chosen components ({})",
                chosen.join(", ")
            )));
        }
        if !taken {
            known.sort();
            known.dedup();
            return Err(Error::Usage(format!(
                "--option {text:?}: {slug} has no option {key:?} (known: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )));
        }
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_at_the_first_dot_and_equals() {
        assert_eq!(
            split_option("local-file.directory=/a=b").unwrap(),
            ("local-file", "directory", "/a=b")
        );
        assert!(split_option("nodot=1").is_err());
        assert!(split_option("a.b").is_err());
    }
}
