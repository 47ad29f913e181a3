//! `diffy help` and `diffy completions`: built-in commands from clap, plugin commands from the
//! manifest cache (no plugin library is opened).

use std::ffi::OsString;
use std::path::PathBuf;

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

/// Help asked for after a built-in command (`diffy new analysis --help`, `diffy plugin -h`).
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    /// The built-in command and its subcommands, as given (`["new", "analysis"]`).
    pub path: Vec<String>,
    /// `--config-dir`, when given: the help lists that configuration's plugins.
    pub config_dir: Option<PathBuf>,
}

/// Whether `args` (argv, the program first) ask for a built-in command's help with `-h` or
/// `--help` anywhere after it (before `--`). Answered before the command line is parsed, so a
/// command's required arguments need not be given to see its help. A plugin namespace's
/// `--help` is the plugin's to answer, and the root's is answered as before.
pub fn requested(args: &[OsString]) -> Option<Request> {
    let mut root = Cli::command();
    root.build();
    let mut current = &root;
    let mut path = Vec::new();
    let mut config_dir = None;
    let mut help = false;
    let mut more_commands = true;
    let mut args = args.iter().skip(1);
    while let Some(arg) = args.next() {
        let Some(arg) = arg.to_str() else {
            more_commands = false;
            continue;
        };
        match arg {
            "--" => break,
            "-h" | "--help" => help = true,
            _ if arg.starts_with('-') && arg.len() > 1 => {
                let (name, inline) = match arg.strip_prefix("--") {
                    Some(long) => long
                        .split_once('=')
                        .map_or((long, None), |(n, v)| (n, Some(v))),
                    None => (&arg[1..2], (arg.len() > 2).then(|| &arg[2..])),
                };
                let spec = current.get_arguments().find(|a| {
                    a.get_long() == Some(name)
                        || (name.chars().count() == 1 && a.get_short() == name.chars().next())
                });
                let takes_value = spec
                    .is_some_and(|a| a.get_action().takes_values() && !a.is_require_equals_set());
                let value = match inline {
                    Some(value) => Some(value.to_string()),
                    None if takes_value => args.next().map(|v| v.to_string_lossy().into_owned()),
                    None => None,
                };
                if spec.is_some_and(|a| a.get_id() == "config_dir") {
                    config_dir = value.map(PathBuf::from);
                }
            }
            word if more_commands => match current.find_subcommand(word) {
                Some(sub) => {
                    path.push(word.to_string());
                    current = sub;
                }
                // The first word names a plugin namespace: its arguments are its own.
                None if path.is_empty() => return None,
                None => more_commands = false,
            },
            _ => {}
        }
    }
    (help && !path.is_empty()).then_some(Request { path, config_dir })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn request(line: &str) -> Option<Request> {
        let args: Vec<OsString> = line.split(' ').map(OsString::from).collect();
        requested(&args)
    }

    fn path(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn help_after_a_command_is_that_commands_help() {
        for (line, expected) in [
            ("diffy new --help", path(&["new"])),
            ("diffy new analysis --help", path(&["new", "analysis"])),
            (
                "diffy new analysis localhost -h",
                path(&["new", "analysis"]),
            ),
            ("diffy plugin --help", path(&["plugin"])),
            (
                "diffy -v plugin install --help",
                path(&["plugin", "install"]),
            ),
            ("diffy show --help", path(&["show"])),
            ("diffy show --prefix plugin -h", path(&["show"])),
        ] {
            assert_eq!(request(line).map(|r| r.path), Some(expected), "{line}");
        }
    }

    #[test]
    fn values_are_not_commands_nor_help() {
        let request = request("diffy --config-dir /c show --option local-file.x=-h --help");
        assert_eq!(
            request,
            Some(Request {
                path: path(&["show"]),
                config_dir: Some(PathBuf::from("/c")),
            })
        );
    }

    #[test]
    fn the_root_and_plugin_namespaces_answer_their_own_help() {
        for line in [
            "diffy --help",
            "diffy -h",
            "diffy sweeten --help",
            "diffy new analysis -- --help",
            "diffy show",
        ] {
            assert_eq!(request(line), None, "{line}");
        }
    }
}
