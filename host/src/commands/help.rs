//! `diffy help` and `diffy completions`: built-in commands from clap, plugin commands from the
//! manifest cache (no plugin library is opened).

use clap::CommandFactory;
use diffy_core::Result;
use diffy_core::catalog::Catalog;
use diffy_core::config::Settings;
use diffy_core::error::Error;
use diffy_plugin_api::ComponentKind;

use crate::cli::Cli;
use crate::output::out;
use crate::printable::printable;

/// The root command with every usable plugin namespace added as a subcommand.
fn command_with_plugins(catalog: &Catalog) -> clap::Command {
    let mut root = Cli::command();
    let contested: Vec<String> = catalog.conflicts().into_iter().map(|c| c.name).collect();
    for plugin in &catalog.plugins {
        let Some(manifest) = &plugin.manifest else {
            continue;
        };
        for component in &manifest.components {
            if component.kind != ComponentKind::CliCommand || contested.contains(&component.name) {
                continue;
            }
            root = root.subcommand(plugin_command(component, &plugin.name));
        }
    }
    root
}

/// A plugin namespace as a clap command, from what its manifest says (made printable: a
/// manifest is the plugin's text).
fn plugin_command(component: &diffy_plugin_api::Component, plugin: &str) -> clap::Command {
    let mut command = clap::Command::new(component.name.clone())
        .about(format!(
            "{} [plugin {plugin}]",
            printable(&component.summary)
        ))
        .disable_help_subcommand(true)
        .after_help(format!(
            "Run 'diffy {} --help' for the plugin's full help.",
            component.name
        ));
    if !component.usage.is_empty() {
        command = command.override_usage(printable(&component.usage).into_owned());
    }
    for sub in &component.subcommands {
        let name = printable(&sub.name).into_owned();
        let summary = printable(&sub.summary).into_owned();
        command = command.subcommand(clap::Command::new(name).about(summary));
    }
    command
}

/// The catalog, or none with a warning: a broken registry must not take help away.
fn catalog_or_built_ins(settings: &Settings) -> Catalog {
    Catalog::build(settings).unwrap_or_else(|error| {
        eprintln!(
            "warning: {}; plugin commands are not listed",
            printable(&error.to_string())
        );
        Catalog::default()
    })
}

/// Print help for the root or for the command named by `path`.
pub fn run(settings: &Settings, path: &[String]) -> Result<u8> {
    let catalog = catalog_or_built_ins(settings);
    if let Some(namespace) = path.first()
        && let Some(plugin) = catalog
            .owners(ComponentKind::CliCommand, namespace)
            .into_iter()
            .next()
        && let Some(component) = plugin
            .manifest
            .as_ref()
            .and_then(|m| m.component(ComponentKind::CliCommand, namespace))
    {
        // A plugin namespace's help comes from its cached manifest, without diffy's global options.
        let mut command =
            plugin_command(component, &plugin.name).bin_name(format!("diffy {namespace}"));
        out!("{}", command.render_long_help());
        return Ok(0);
    }
    let mut root = command_with_plugins(&catalog);
    root.build();
    let mut current = &mut root;
    for (depth, name) in path.iter().enumerate() {
        current = current.find_subcommand_mut(name).ok_or_else(|| {
            Error::Usage(format!(
                "no help for {:?}: unknown command; run 'diffy help' to see the commands",
                path[..=depth].join(" ")
            ))
        })?;
    }
    out!("{}", current.render_long_help());
    Ok(0)
}

/// Print a completion script for `shell`.
pub fn completions(settings: &Settings, shell: clap_complete::Shell) -> Result<u8> {
    let catalog = catalog_or_built_ins(settings);
    let mut root = command_with_plugins(&catalog);
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut root, "diffy", &mut script);
    out!("{}", String::from_utf8_lossy(&script));
    Ok(0)
}
