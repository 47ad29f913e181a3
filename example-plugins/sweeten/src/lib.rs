//! `diffy-sweeten`: the example CLI plugin, after InSpec's demo plugin.
//!
//! `diffy sweeten add [--spoons N] [--sweetener NAME]` puts spoons in a jar kept in the plugin's
//! data directory; `diffy sweeten count` counts them. Copy this crate to start a plugin of your own.

use std::fs;
use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use diffy_plugin_api::{Activation, CliCommand, Component, Plugin, Result};

fn plugin() -> Plugin {
    Plugin::new(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
        .description("Adds and counts spoons of sweetener (an example plugin)")
        .author("The diffy developers")
        .license("MIT OR Apache-2.0")
        .cli_command(
            Component::named("sweeten", "Add and count spoons of sweetener")
                .usage("diffy sweeten <COMMAND> [OPTIONS]")
                .subcommand("add", "Add spoons of a sweetener to the jar")
                .subcommand("count", "Count the spoons in the jar"),
            Sweeten::new,
        )
}

diffy_plugin_api::export_plugin!(plugin);

/// The `sweeten` namespace. Activation only notes where the jar lives; nothing is read until a
/// subcommand needs it.
struct Sweeten {
    jar: PathBuf,
}

#[derive(Parser)]
#[command(
    name = "diffy sweeten",
    about = "Add and count spoons of sweetener",
    version
)]
struct Args {
    #[command(subcommand)]
    command: SweetenCommand,
}

#[derive(Subcommand)]
enum SweetenCommand {
    /// Add spoons of a sweetener to the jar
    Add {
        /// How many spoons
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
        spoons: u32,
        /// Which sweetener
        #[arg(long, default_value = "sugar")]
        sweetener: String,
    },
    /// Count the spoons in the jar
    Count,
}

impl Sweeten {
    fn new(activation: Activation) -> Result<Self> {
        Ok(Sweeten {
            jar: activation.host().data_dir().join("jar.txt"),
        })
    }

    /// The jar holds one line per addition: `<spoons> <sweetener>`.
    fn contents(&self) -> Result<Vec<(u32, String)>> {
        let text = match fs::read_to_string(&self.jar) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e.into()),
        };
        text.lines()
            .filter(|line| !line.is_empty())
            .map(|line| {
                let (spoons, sweetener) = line
                    .split_once(' ')
                    .ok_or_else(|| anyhow_line(&self.jar, line))?;
                Ok((spoons.parse()?, sweetener.to_string()))
            })
            .collect()
    }
}

fn anyhow_line(jar: &std::path::Path, line: &str) -> diffy_plugin_api::anyhow::Error {
    diffy_plugin_api::anyhow::anyhow!("{}: unreadable line {line:?}", jar.display())
}

impl CliCommand for Sweeten {
    fn run(&self, args: Vec<String>) -> Result<i32> {
        let args =
            match Args::try_parse_from(std::iter::once("diffy sweeten".to_string()).chain(args)) {
                Ok(args) => args,
                Err(e) => {
                    // clap prints help and usage errors itself; it exits 0 for --help, 2 otherwise.
                    let _ = e.print();
                    return Ok(e.exit_code());
                }
            };
        match args.command {
            SweetenCommand::Add { spoons, sweetener } => {
                if let Some(dir) = self.jar.parent() {
                    fs::create_dir_all(dir)?;
                }
                let mut jar = fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.jar)?;
                writeln!(jar, "{spoons} {sweetener}")?;
                let total: u32 = self.contents()?.iter().map(|(n, _)| n).sum();
                println!("Added {spoons} spoon(s) of {sweetener}; the jar holds {total}.");
            }
            SweetenCommand::Count => {
                let contents = self.contents()?;
                let total: u32 = contents.iter().map(|(n, _)| n).sum();
                println!("{total}");
            }
        }
        Ok(0)
    }
}
