//! Collecting one host: log in once, run every command over that connection, one record each.
//!
//! A host that cannot be reached gets one failed record per command, all with the same class;
//! a command that fails or runs past `command_timeout` fails alone and the next one runs; a
//! connection lost midway fails the commands left without trying them.

use std::path::Path;
use std::time::Duration;

use diffy_plugin_api::documents::sha256_hex;
use diffy_plugin_api::{Command, Record, RecordStatus, TargetInfo};

use super::argv::{Destination, Invocation};
use super::failure::Failure;
use super::master::Master;
use super::process::{self, Finished, MAX_OUTPUT};
use super::settings::Settings;

/// ssh's exit status for its own failures (a remote command may exit 255 too).
const SSH_FAILED: i32 = 255;

/// One host's records and a line saying how it went, for `-v`.
pub(crate) struct HostOutcome {
    pub(crate) records: Vec<Record>,
    pub(crate) summary: String,
}

/// Collect `commands` on `target`, with its control socket and master log under `dir` as
/// `<slot>` and `<slot>.log`.
pub(crate) fn collect(
    target: &TargetInfo,
    commands: &[Command],
    settings: &Settings,
    dir: &Path,
    slot: usize,
    incident: Option<&str>,
) -> HostOutcome {
    let destination = match Destination::of(target, settings) {
        Ok(destination) => destination,
        Err(why) => return failed_host(target, commands, &Failure::Invalid(why), Duration::ZERO),
    };
    let control_path = dir.join(slot.to_string());
    let invocation = Invocation {
        settings,
        destination: &destination,
        control_path: &control_path,
        incident,
    };
    let started = std::time::Instant::now();
    let master = match Master::start(&invocation, dir.join(format!("{slot}.log"))) {
        Ok(master) => master,
        Err(failure) => return failed_host(target, commands, &failure, started.elapsed()),
    };
    let mut records = Vec::with_capacity(commands.len());
    let mut lost: Option<Failure> = None;
    for command in commands {
        if let Some(failure) = &lost {
            records.push(failure_record(target, &command.id, failure, Duration::ZERO));
            continue;
        }
        let record = match process::run(
            &mut invocation.remote(&command.run),
            settings.command_timeout,
        ) {
            Err(e) => failure_record(
                target,
                &command.id,
                &Failure::Ssh(format!("cannot run ssh: {e}")),
                Duration::ZERO,
            ),
            Ok(finished) if finished.status.and_then(|s| s.code()) == Some(SSH_FAILED) => {
                // 255 is ssh's own failure only if the connection is gone; else the command's.
                match master.check() {
                    Ok(_) => command_record(target, command, finished, settings),
                    Err(_) => {
                        let failure = connection_lost(&finished.stderr_text());
                        let record =
                            failure_record(target, &command.id, &failure, finished.elapsed);
                        lost = Some(failure);
                        record
                    }
                }
            }
            Ok(finished) => command_record(target, command, finished, settings),
        };
        records.push(record);
    }
    let summary = summarise(&records, master.login, started.elapsed());
    drop(master);
    HostOutcome { records, summary }
}

fn connection_lost(stderr: &str) -> Failure {
    match Failure::from_ssh_stderr(stderr) {
        Failure::Ssh(said) => Failure::Unreachable(format!("the connection was lost: {said}")),
        classified => classified,
    }
}

/// A record for a command that ran, however it ended.
fn command_record(
    target: &TargetInfo,
    command: &Command,
    finished: Finished,
    settings: &Settings,
) -> Record {
    let sha256 = sha256_hex(&finished.stdout);
    let exit_code = finished.status.and_then(|s| s.code());
    let mut stderr = text(finished.stderr);
    let (status, error) = match (finished.status, exit_code) {
        (None, _) => {
            let why = format!(
                "timed out: the command ran past command_timeout ({} s) and was killed",
                settings.command_timeout.as_secs()
            );
            append_line(&mut stderr, &why);
            (RecordStatus::Timeout, Some(why))
        }
        (Some(_), Some(0)) => (RecordStatus::Ok, None),
        (Some(_), Some(code)) => (
            RecordStatus::Failed,
            Some(format!("command failed: exit {code}")),
        ),
        (Some(_), None) => (
            RecordStatus::Failed,
            Some("command failed: ssh was killed by a signal".to_string()),
        ),
    };
    if finished.truncated {
        append_line(
            &mut stderr,
            &format!("diffy-ssh: output cut at {} MiB", MAX_OUTPUT >> 20),
        );
    }
    Record {
        target: target.id.clone(),
        command: command.id.clone(),
        status,
        exit_code,
        collected_at: now(),
        duration_ms: Some(millis(finished.elapsed)),
        stdout: text(finished.stdout),
        stderr,
        sha256,
        error,
        truncated: finished.truncated,
    }
}

/// A record for a command that could not run: the failure, class first, in `error` and `stderr`.
fn failure_record(
    target: &TargetInfo,
    command: &str,
    failure: &Failure,
    spent: Duration,
) -> Record {
    let status = match failure {
        Failure::TimedOut(_) => RecordStatus::Timeout,
        _ => RecordStatus::Error,
    };
    let line = failure.to_string();
    Record {
        collected_at: now(),
        duration_ms: Some(millis(spent)),
        stderr: line.clone(),
        error: Some(line),
        ..Record::new(&target.id, command, status, String::new())
    }
}

fn failed_host(
    target: &TargetInfo,
    commands: &[Command],
    failure: &Failure,
    spent: Duration,
) -> HostOutcome {
    HostOutcome {
        records: commands
            .iter()
            .map(|command| failure_record(target, &command.id, failure, spent))
            .collect(),
        summary: format!("{failure} ({:.2} s)", spent.as_secs_f64()),
    }
}

/// `5 commands in 0.42 s (login 0.21 s): 4 ok, 1 failed`.
fn summarise(records: &[Record], login: Duration, total: Duration) -> String {
    let count = |status| records.iter().filter(|r| r.status == status).count();
    let mut parts = vec![format!("{} ok", count(RecordStatus::Ok))];
    for (status, name) in [
        (RecordStatus::Failed, "failed"),
        (RecordStatus::Timeout, "timed out"),
        (RecordStatus::Error, "not run"),
    ] {
        if count(status) > 0 {
            parts.push(format!("{} {name}", count(status)));
        }
    }
    format!(
        "{} commands in {:.2} s (login {:.2} s): {}",
        records.len(),
        total.as_secs_f64(),
        login.as_secs_f64(),
        parts.join(", ")
    )
}

/// Raw output as text, lossily when it is not UTF-8 (without a copy when it is).
fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Append a line of our own to a command's stderr.
fn append_line(stderr: &mut String, line: &str) {
    if !stderr.is_empty() && !stderr.ends_with('\n') {
        stderr.push('\n');
    }
    stderr.push_str(line);
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn now() -> String {
    format!("{:.0}", jiff::Timestamp::now())
}
