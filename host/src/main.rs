//! The `diffy` binary: parse the command line, run the command, print its error in one line.

mod cli;
mod commands;
mod output;
mod printable;
mod progress;
mod signals;
mod table;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use diffy_core::isolation::RUNNER_COMMAND;

fn main() -> ExitCode {
    // An isolated plugin's runner is this executable too; it answers before anything is parsed.
    if std::env::args_os().nth(1).as_deref() == Some(RUNNER_COMMAND.as_ref()) {
        return ExitCode::from(diffy_core::isolation::runner::serve());
    }
    // What diffy and its plugins start ends with it: on Ctrl-C or SIGTERM, and on exit.
    signals::handle_termination();
    diffy_core::processes::become_subreaper();
    let code = run();
    signals::wait_if_stopping();
    diffy_core::processes::end_descendants();
    code
}

fn run() -> ExitCode {
    let result = match commands::help::requested(&std::env::args_os().collect::<Vec<_>>()) {
        Some(request) => {
            init_tracing(0, false);
            commands::help_after(request)
        }
        None => {
            let cli = cli::Cli::parse();
            init_tracing(cli.verbose, cli.quiet);
            commands::run(cli)
        }
    };
    match result {
        Ok(code) => ExitCode::from(code),
        // Whoever read our output stopped reading (`| head`): nothing is wrong, nothing to say.
        Err(error) if error.is_closed_pipe() => ExitCode::SUCCESS,
        Err(error) => {
            // A failure that the stopping caused is not worth a line of its own.
            signals::wait_if_stopping();
            // Errors quote what plugins said and what evidence holds.
            eprintln!("error: {}", printable::printable(&error.to_string()));
            ExitCode::from(error.exit_code())
        }
    }
}

fn init_tracing(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => tracing::Level::ERROR,
        (false, 0) => tracing::Level::WARN,
        (false, 1) => tracing::Level::INFO,
        (false, 2) => tracing::Level::DEBUG,
        (false, _) => tracing::Level::TRACE,
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_timer(tracing_subscriber::fmt::time::uptime())
        .fmt_fields(printable_fields())
        .init();
}

/// Log fields as `tracing-subscriber` writes them (the message bare, others as `name=value`),
/// each made [`printable`](printable::printable): a plugin's log lines carry evidence too.
fn printable_fields() -> impl for<'writer> tracing_subscriber::fmt::FormatFields<'writer> {
    use tracing_subscriber::field::MakeExt;
    tracing_subscriber::fmt::format::debug_fn(|writer, field, value| {
        let text = format!("{value:?}");
        let shown = printable::printable(&text);
        match field.name() {
            "message" => write!(writer, "{shown}"),
            name => write!(writer, "{name}={shown}"),
        }
    })
    .delimited(" ")
}
