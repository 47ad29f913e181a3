//! The command line, as clap derive types. Parsing only: `commands` does the work.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use diffy_core::workflow::defaults;

/// diffy: differential triage of hosts, extended by plugins.
#[derive(Debug, Parser)]
#[command(
    name = "diffy",
    version,
    about = "Tell which hosts differ from a known-good baseline or from the rest of their fleet",
    disable_help_subcommand = true,
    disable_help_flag = true,
    after_help = "Run 'diffy help <COMMAND>' for a command's help, plugin commands included."
)]
pub struct Cli {
    /// Configuration directory [default: $DIFFY_CONFIG_DIR, else ~/.diffy]
    #[arg(long, global = true, value_name = "DIR")]
    pub config_dir: Option<PathBuf>,

    /// More output: -v shows which plugins are loaded and timings, -vv adds debug detail
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Only errors on stderr
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Ignore plugins registered in plugins.json
    #[arg(long, global = true)]
    pub disable_user_plugins: bool,

    /// Ignore the plugins bundled with diffy
    #[arg(long, global = true)]
    pub disable_bundled_plugins: bool,

    /// Run every user plugin in a sandboxed child process for this run ('all': bundled ones too)
    #[arg(
        long,
        global = true,
        value_name = "WHICH",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "user",
        value_enum
    )]
    pub isolate_plugins: Option<IsolateWhich>,

    /// Print help
    #[arg(short = 'h', long = "help", action = ArgAction::SetTrue)]
    pub help: bool,

    #[command(subcommand)]
    pub command: Option<Commands>,
}

/// Built-in commands; anything else is looked up as a plugin namespace.
#[derive(Debug, Subcommand)]
pub enum Commands {
    /// Install, list, inspect, update, uninstall and check plugins
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Run a Diffy job: take a baseline, or analyse a fleet
    #[command(subcommand)]
    New(NewCommand),
    /// List saved baselines, records and reports, or print one
    Show(ShowArgs),
    /// Show help for diffy, a built-in command, or a plugin's namespace
    Help {
        /// The command to explain (e.g. 'plugin install', 'sweeten')
        command: Vec<String>,
    },
    /// Print a shell completion script (plugin namespaces included)
    Completions {
        /// The shell
        shell: clap_complete::Shell,
    },
    /// A plugin's command: `diffy <namespace> ARGS…`
    #[command(external_subcommand)]
    External(Vec<String>),
}

/// `diffy plugin …`
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Install a plugin library (or the one library in a directory, or a packaged .tar.gz)
    Install {
        /// The library, a directory holding one, or an archive made by 'diffy plugin package'
        path: PathBuf,
        /// Use the library where it is (for plugin development) instead of copying it
        #[arg(long)]
        link: bool,
        /// Replace an installed plugin even if another version is installed
        #[arg(long)]
        force: bool,
        /// Run the plugin in a sandboxed child process (its load at install too)
        #[arg(long)]
        isolate: bool,
    },
    /// Run a plugin in a sandboxed child process, or in process again
    Isolate {
        /// The plugin's name
        name: String,
        /// on: isolated; off: in process
        mode: OnOff,
    },
    /// List plugins with their status (opens no plugin library)
    List {
        /// Output format
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Show a plugin's manifest, components, files, digest and status
    Info {
        /// The plugin's name
        name: String,
        /// Output format
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Replace an installed plugin with another build
    Update {
        /// The plugin's name
        name: String,
        /// The new library, a directory holding it, or an archive
        path: PathBuf,
    },
    /// Remove a plugin (and its files, if it was copied in)
    Uninstall {
        /// The plugin's name
        name: String,
    },
    /// Call one method of one component and print its answer (for plugin authors)
    #[command(after_help = "Examples:\n  \
        diffy plugin call target local get '{\"key\":\"localhost\"}'\n  \
        diffy plugin call persistence local-file list '{\"prefix\":\"report/\"}'")]
    Call {
        /// The component's kind
        #[arg(value_parser = component_kind)]
        kind: diffy_plugin_api::ComponentKind,
        /// The component's name: a CLI namespace or an interface slug
        name: String,
        /// The method, as listed by 'diffy plugin info'
        method: String,
        /// The input document (JSON); '-' reads it from stdin
        #[arg(default_value = "{}")]
        input: String,
        /// A component option, repeatable: --option SLUG.KEY=VALUE
        #[arg(long = "option", value_name = "SLUG.KEY=VALUE")]
        options: Vec<String>,
    },
    /// Load and validate a library (or a packaged .tar.gz) without installing it
    Check {
        /// The library, a directory holding one, or an archive made by 'diffy plugin package'
        path: PathBuf,
    },
    /// Create a new plugin crate that builds and passes its tests as generated
    New {
        /// The plugin's name: 'diffy-' or 'diffy_' then lowercase letters, digits, '-' or '_'
        name: String,
        /// Where to create the crate [default: ./NAME]
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Depend on a local diffy-plugin-api crate by path (and on the plugin-harness beside it)
        /// instead of by version
        #[arg(long, value_name = "PATH")]
        api_path: Option<PathBuf>,
    },
    /// Package a plugin as <name>-<version>-<target>.tar.gz for 'diffy plugin install'
    Package {
        /// The plugin's crate directory (built with 'cargo build --release'), or a library
        #[arg(default_value = ".")]
        path: PathBuf,
        /// Where to write the archive
        #[arg(long, value_name = "DIR", default_value = ".")]
        out: PathBuf,
    },
}

/// Which plugins `--isolate-plugins` isolates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IsolateWhich {
    /// Every plugin registered in plugins.json
    User,
    /// Bundled plugins too
    All,
}

/// `on` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    /// Isolated in a sandboxed child process
    On,
    /// In diffy's own process
    Off,
}

/// How to print results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A table for people
    Table,
    /// JSON for programs
    Json,
}

/// The five components a job chains, and how to configure them.
#[derive(Debug, Args)]
pub struct PluginChoices {
    /// Target component (which hosts)
    #[arg(long, value_name = "SLUG", default_value = defaults::TARGET)]
    pub target_plugin: String,
    /// Payload component (which commands) [default: local-command; evidence with the
    /// evidence-dir collection, unless an --option configures local-command]
    #[arg(long, value_name = "SLUG")]
    pub payload_plugin: Option<String>,
    /// Collection component (how to run them)
    #[arg(long, value_name = "SLUG", default_value = defaults::COLLECTION)]
    pub collection_plugin: String,
    /// Persistence component (where results are saved)
    #[arg(long, value_name = "SLUG", default_value = defaults::PERSISTENCE)]
    pub persistence_plugin: String,
    /// A component option, repeatable: --option local-shell.timeout_secs=10
    #[arg(long = "option", value_name = "SLUG.KEY=VALUE")]
    pub options: Vec<String>,
    /// The incident id, passed to every component; runs of one incident are listed together
    #[arg(long, value_name = "ID")]
    pub incident_id: Option<String>,
    /// How many targets to collect at once
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub jobs: u16,
    /// Seconds one target's collection may take before it is recorded as timed out
    #[arg(long, value_name = "SECS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub target_timeout: u64,
    /// Seconds any other component call may take before the run fails
    #[arg(long, value_name = "SECS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    pub component_timeout: u64,
}

/// `diffy new …`
#[derive(Debug, Subcommand)]
pub enum NewCommand {
    /// Collect a known-good baseline from the first host the target key resolves to
    Baseline {
        /// What the target component resolves into hosts (a hostname, a directory, …)
        target_key: String,
        #[command(flatten)]
        choices: PluginChoices,
    },
    /// Collect every host and report which differ, and how
    Analysis {
        /// What the target component resolves into hosts (a hostname, a directory, …)
        target_key: String,
        #[command(flatten)]
        choices: PluginChoices,
        /// Analysis component
        #[arg(long, value_name = "SLUG", default_value = defaults::ANALYSIS)]
        analysis_plugin: String,
        /// The baseline to compare against, for analyses that use one [default: TARGET_KEY]
        #[arg(long, value_name = "KEY")]
        baseline: Option<String>,
        /// Output format
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Rows shown per command in the table (all rows are in the JSON and the saved report)
        #[arg(long, value_name = "N", default_value_t = 10)]
        max_rows: usize,
        /// Exit with code 1 when any host differs
        #[arg(long)]
        fail_on_diff: bool,
    },
}

/// `diffy show [KEY]`
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// A saved key (report/<run>, records/<run>/<host>/<command>, baseline/<key>/<command>);
    /// without it, list the runs by incident and time
    pub key: Option<String>,
    /// List the saved keys starting with this prefix (e.g. baseline/) instead of the runs
    #[arg(long, value_name = "PREFIX", conflicts_with_all = ["key", "incident_id"])]
    pub prefix: Option<String>,
    /// List only the runs of this incident
    #[arg(long, value_name = "ID", conflicts_with = "key")]
    pub incident_id: Option<String>,
    /// Persistence component to read from
    #[arg(long, value_name = "SLUG", default_value = defaults::PERSISTENCE)]
    pub persistence_plugin: String,
    /// A persistence option, repeatable: --option local-file.directory=DIR
    #[arg(long = "option", value_name = "SLUG.KEY=VALUE")]
    pub options: Vec<String>,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Rows shown per command when the key is a report
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub max_rows: usize,
}

/// A component kind as the manifests spell it (`cli_command`, `target`, …).
fn component_kind(text: &str) -> Result<diffy_plugin_api::ComponentKind, String> {
    use diffy_plugin_api::ComponentKind;
    let kind: ComponentKind =
        serde_json::from_value(serde_json::Value::String(text.replace('-', "_")))
            .unwrap_or(ComponentKind::Unknown);
    if kind == ComponentKind::Unknown {
        return Err(
            "expected cli_command, target, payload, collection, persistence or analysis".into(),
        );
    }
    Ok(kind)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;
    use diffy_core::config::BUILT_IN_COMMANDS;

    use super::Cli;

    /// The core refuses plugin namespaces that shadow built-in commands by a list of its own;
    /// this keeps that list and the command line the same.
    #[test]
    fn the_built_in_command_list_is_the_command_line() {
        let mut names: Vec<String> = Cli::command()
            .get_subcommands()
            .map(|c| c.get_name().to_string())
            .collect();
        names.sort();
        let mut listed: Vec<String> = BUILT_IN_COMMANDS.iter().map(|c| c.to_string()).collect();
        listed.sort();
        assert_eq!(names, listed);
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
