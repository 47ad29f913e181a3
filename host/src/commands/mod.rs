//! Commands: turn parsed arguments into calls on the core and print the results. No work that a
//! test would want to call without a terminal lives here.

pub mod help;
mod new;
mod plugin;
mod report;
mod show;

use std::sync::Arc;

use diffy_core::Result;
use diffy_core::activation::Activator;
use diffy_core::config::{IsolateOverride, Settings};

use crate::cli::{Cli, Commands, IsolateWhich};
use crate::progress::TerminalProgress;

/// An activator whose components draw their progress on the terminal.
fn activator(settings: &Settings) -> Activator {
    Activator::new(settings.clone()).with_progress(Arc::new(TerminalProgress))
}

/// Run the parsed command line; returns the exit code.
pub fn run(cli: Cli) -> Result<u8> {
    let mut settings = Settings::resolve(cli.config_dir.clone())?;
    settings.user_plugins = !cli.disable_user_plugins;
    settings.bundled_plugins = !cli.disable_bundled_plugins;
    settings.isolate = match cli.isolate_plugins {
        None => IsolateOverride::AsRegistered,
        Some(IsolateWhich::User) => IsolateOverride::UserPlugins,
        Some(IsolateWhich::All) => IsolateOverride::All,
    };
    match cli.command {
        None => {
            help::run(&settings, &[])?;
            Ok(if cli.help { 0 } else { 2 })
        }
        Some(_) if cli.help => help::run(&settings, &[]),
        Some(Commands::Plugin(command)) => plugin::run(&settings, command),
        Some(Commands::New(command)) => new::run(&settings, command),
        Some(Commands::Show(args)) => show::run(&settings, args),
        Some(Commands::Help { command }) => help::run(&settings, &command),
        Some(Commands::Completions { shell }) => help::completions(&settings, shell),
        Some(Commands::External(args)) => run_namespace(settings, &args),
    }
}

/// `diffy COMMAND … --help`: that built-in command's help.
pub fn help_after(request: help::Request) -> Result<u8> {
    let settings = Settings::resolve(request.config_dir)?;
    help::run(&settings, &request.path)
}

/// `diffy <namespace> ARGS…`: open only the library that owns the namespace.
fn run_namespace(settings: Settings, args: &[String]) -> Result<u8> {
    let (namespace, rest) = args.split_first().expect("clap passes the subcommand name");
    let mut activator = activator(&settings);
    let command = activator.cli_command(namespace)?;
    let code = command.run(rest)?;
    Ok(u8::try_from(code).unwrap_or(1))
}
