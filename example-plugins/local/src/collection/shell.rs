//! The Collection component `local-shell`: runs each command with `sh -c` on this machine.
//!
//! A command runs in a process group of its own, with stdin closed and stdout and stderr read by
//! two threads at once (so a large output cannot fill one pipe while we wait on the other). When
//! the timeout passes, the whole group is killed (SIGKILL to the group, so a shell's children
//! go too) and the record says `timeout`. Only exit status 0 is `ok`.

use std::io::{self, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{self, Child, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

use diffy_plugin_api::anyhow::bail;
use diffy_plugin_api::{
    Collection, Command, Component, OptionSpec, OptionType, Record, RecordStatus, Result,
    TargetInfo,
};
use rustix::process::{Pid, Signal, kill_process_group};
use serde::Deserialize;

use super::{
    append_line, default_max_output_mib, error_record, max_output_bytes, max_output_option,
    read_limited, text, text_and_digest, truncation_note,
};
use crate::targets::{hostname, is_this_host};
use crate::timestamp;

const DEFAULT_TIMEOUT_SECS: i64 = 30;

/// How long to wait for the output pipes to close once the command has been killed.
const KILL_GRACE: Duration = Duration::from_secs(2);

/// The longest pause between two checks of a running command.
const MAX_POLL: Duration = Duration::from_millis(50);

/// The options of `local-shell`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Options {
    #[serde(default = "default_timeout_secs")]
    pub(crate) timeout_secs: i64,
    #[serde(default = "default_max_output_mib")]
    pub(crate) max_output_mib: i64,
}

fn default_timeout_secs() -> i64 {
    DEFAULT_TIMEOUT_SECS
}

/// `local-shell`: runs commands here, one after another, each with a timeout.
pub(crate) struct LocalShell {
    timeout: Duration,
    /// The most bytes kept of each output stream.
    max_output: u64,
}

impl LocalShell {
    pub(crate) fn component() -> Component {
        Component::named("local-shell", "Run the commands with sh -c on this machine")
            .description(
                "Runs each command with `sh -c` on the machine diffy runs on, in a process group \
                 of its own with stdin closed. Status ok only for exit status 0; failed for any \
                 other status or a signal; timeout when the command had to be killed; error when \
                 it could not be started. Targets other than this host (by address, else by id) \
                 get error records: use a remote collection, or evidence-dir for saved outputs.",
            )
            .option(
                OptionSpec::new(
                    "timeout_secs",
                    OptionType::Integer,
                    "Seconds each command may run before it and its children are killed",
                )
                .default_value(DEFAULT_TIMEOUT_SECS),
            )
            .option(max_output_option())
    }

    pub(crate) fn new(options: Options) -> Result<Self> {
        let Ok(secs @ 1..) = u64::try_from(options.timeout_secs) else {
            bail!(
                "option timeout_secs must be at least 1, not {}",
                options.timeout_secs
            );
        };
        Ok(LocalShell {
            timeout: Duration::from_secs(secs),
            max_output: max_output_bytes(options.max_output_mib)?,
        })
    }

    fn run(&self, target: &str, command: &Command) -> Record {
        match run_with_timeout(&command.run, self.timeout, self.max_output) {
            Ok(outcome) => outcome.into_record(target, &command.id, self.timeout, self.max_output),
            Err(e) => error_record(
                target,
                &command.id,
                format!("local-shell could not run sh: {e}"),
            ),
        }
    }
}

impl Collection for LocalShell {
    fn get(
        &self,
        targets: &[TargetInfo],
        commands: &[Command],
        _incident: Option<&str>,
    ) -> Result<Vec<Record>> {
        let mut records = Vec::with_capacity(targets.len() * commands.len());
        for target in targets {
            // An address says how to reach the target; without one, the id does.
            let place = target.address.as_deref().unwrap_or(&target.id);
            if is_this_host(place) {
                records.extend(commands.iter().map(|command| self.run(&target.id, command)));
            } else {
                let reason = format!(
                    "local-shell runs only on this host ({}), not on {place}",
                    hostname()
                );
                records.extend(
                    commands
                        .iter()
                        .map(|command| error_record(&target.id, &command.id, reason.clone())),
                );
            }
        }
        Ok(records)
    }
}

/// What became of one command.
struct Outcome {
    /// How the shell exited, when it did before the timeout.
    status: Option<ExitStatus>,
    /// Whether the command was killed because the timeout passed.
    timed_out: bool,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// Something we must add to stderr (output left open, output lost).
    note: Option<&'static str>,
    /// Whether an output stream was cut at the limit.
    truncated: bool,
}

impl Outcome {
    fn into_record(self, target: &str, command: &str, timeout: Duration, limit: u64) -> Record {
        let (stdout, sha256) = text_and_digest(self.stdout);
        let mut stderr = text(self.stderr);
        if let Some(note) = self.note {
            append_line(&mut stderr, note);
        }
        if self.truncated {
            append_line(&mut stderr, &truncation_note("local-shell", limit));
        }
        let exit_code = self.status.and_then(|s| s.code());
        let status = if self.timed_out {
            append_line(
                &mut stderr,
                &format!(
                    "local-shell: timed out after {} s; the command was killed",
                    timeout.as_secs()
                ),
            );
            RecordStatus::Timeout
        } else if exit_code == Some(0) {
            RecordStatus::Ok
        } else {
            if let Some(signal) = self.status.and_then(|s| s.signal()) {
                append_line(
                    &mut stderr,
                    &format!("local-shell: killed by signal {signal}"),
                );
            }
            RecordStatus::Failed
        };
        Record {
            target: target.to_string(),
            command: command.to_string(),
            status,
            exit_code,
            collected_at: timestamp::now(),
            duration_ms: None,
            stdout,
            stderr,
            sha256,
            error: None,
            truncated: self.truncated,
        }
    }
}

/// Which output a reader thread drains.
#[derive(Clone, Copy)]
enum Stream {
    Stdout = 0,
    Stderr = 1,
}

/// Run `script` with `sh -c`, killing it (and its process group) once `timeout` has passed.
fn run_with_timeout(script: &str, timeout: Duration, limit: u64) -> io::Result<Outcome> {
    let deadline = Instant::now() + timeout;
    let mut child = process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()?;
    let pgid = child.id();
    let (sender, receiver) = mpsc::channel();
    let mut readers = 0;
    let pipes: [(Option<Box<dyn Read + Send>>, Stream); 2] = [
        (
            child.stdout.take().map(|p| Box::new(p) as _),
            Stream::Stdout,
        ),
        (
            child.stderr.take().map(|p| Box::new(p) as _),
            Stream::Stderr,
        ),
    ];
    for (pipe, stream) in pipes {
        if let Some(pipe) = pipe {
            if let Err(e) = drain(pipe, stream, limit, sender.clone()) {
                kill_group(pgid, &mut child);
                return Err(e);
            }
            readers += 1;
        }
    }
    drop(sender);

    let status = match wait_until(&mut child, deadline) {
        Ok(status) => status,
        Err(e) => {
            kill_group(pgid, &mut child);
            return Err(e);
        }
    };
    let mut timed_out = status.is_none();
    if timed_out {
        kill_group(pgid, &mut child);
    }

    let mut outputs: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
    let mut truncated = false;
    let mut note = None;
    let mut wait_for_output = if timed_out {
        Instant::now() + KILL_GRACE
    } else {
        deadline
    };
    while readers > 0 {
        let left = wait_for_output.saturating_duration_since(Instant::now());
        match receiver.recv_timeout(left) {
            Ok((stream, bytes, cut)) => {
                outputs[stream as usize] = bytes;
                truncated |= cut;
                readers -= 1;
            }
            Err(RecvTimeoutError::Timeout) if !timed_out => {
                // The shell exited, but something it started still holds its output open.
                kill_group(pgid, &mut child);
                timed_out = true;
                note = Some(
                    "local-shell: the command exited but its output stayed open (a background \
                     process?) until the timeout",
                );
                wait_for_output = Instant::now() + KILL_GRACE;
            }
            Err(_) => {
                note = Some("local-shell: the output could not be read to its end");
                break;
            }
        }
    }
    let [stdout, stderr] = outputs;
    Ok(Outcome {
        status,
        timed_out,
        stdout,
        stderr,
        note,
        truncated,
    })
}

/// Read `pipe` to its end on a thread of its own, keeping at most `limit` bytes, and send them
/// on with whether there was more.
fn drain(
    pipe: Box<dyn Read + Send>,
    stream: Stream,
    limit: u64,
    sender: Sender<(Stream, Vec<u8>, bool)>,
) -> io::Result<()> {
    thread::Builder::new()
        .name("local-shell-output".into())
        .spawn(move || {
            // A read error ends the output early; what was read so far is still worth keeping.
            let (bytes, cut) = read_limited(pipe, limit, true, 0).unwrap_or_default();
            let _ = sender.send((stream, bytes, cut));
        })
        .map(drop)
}

/// Wait for `child` to exit, checking with growing pauses; `None` when `deadline` passes first.
fn wait_until(child: &mut Child, deadline: Instant) -> io::Result<Option<ExitStatus>> {
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(MAX_POLL);
    }
}

/// Kill the process group `pgid` that `child` leads, then reap `child`.
///
/// Linux does not hand out a process id while it is still some group's id, so the group kill
/// reaches only what the command started.
fn kill_group(pgid: u32, child: &mut Child) {
    // The group may be gone already (everything in it exited); that is what we wanted.
    if let Some(group) = i32::try_from(pgid).ok().and_then(Pid::from_raw) {
        let _ = kill_process_group(group, Signal::KILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use diffy_plugin_api::documents::sha256_hex;

    use super::*;

    fn shell(timeout_secs: i64) -> LocalShell {
        LocalShell::new(Options {
            timeout_secs,
            max_output_mib: 64,
        })
        .unwrap()
    }

    fn run(timeout_secs: i64, script: &str) -> Record {
        let targets = [TargetInfo::new("localhost")];
        let mut records = shell(timeout_secs)
            .get(&targets, &[Command::new("c", script)], None)
            .unwrap();
        assert_eq!(records.len(), 1);
        records.remove(0)
    }

    #[test]
    fn success_is_ok_with_output() {
        let record = run(10, "echo hello; echo oops >&2");
        assert_eq!(record.status, RecordStatus::Ok);
        assert_eq!(record.exit_code, Some(0));
        assert_eq!(record.stdout, "hello\n");
        assert_eq!(record.stderr, "oops\n");
        assert_eq!(record.sha256, sha256_hex(b"hello\n"));
        assert_eq!(record.target, "localhost");
        assert_eq!(record.command, "c");
        assert!(record.collected_at.ends_with('Z'));
    }

    #[test]
    fn failing_command_is_failed_with_its_exit_code() {
        let record = run(10, "echo partial; exit 3");
        assert_eq!(record.status, RecordStatus::Failed);
        assert_eq!(record.exit_code, Some(3));
        assert_eq!(record.stdout, "partial\n");
    }

    #[test]
    fn signal_is_failed() {
        let record = run(10, "kill -s TERM $$");
        assert_eq!(record.status, RecordStatus::Failed);
        assert_eq!(record.exit_code, None);
        assert!(record.stderr.contains("signal 15"), "{}", record.stderr);
    }

    #[test]
    fn slow_command_times_out_and_is_killed() {
        let started = Instant::now();
        let record = run(1, "echo started; sleep 5; echo finished");
        assert!(started.elapsed() < Duration::from_secs(4));
        assert_eq!(record.status, RecordStatus::Timeout);
        assert_eq!(record.stdout, "started\n");
        assert!(record.stderr.contains("timed out after 1 s"));
    }

    #[test]
    fn background_process_holding_output_times_out() {
        let started = Instant::now();
        let record = run(1, "sleep 5 & echo done");
        assert!(started.elapsed() < Duration::from_secs(4));
        assert_eq!(record.status, RecordStatus::Timeout);
        assert_eq!(record.stdout, "done\n");
    }

    #[test]
    fn large_outputs_on_both_streams_do_not_deadlock() {
        let record = run(
            20,
            "head -c 3000000 /dev/zero | tr '\\0' a; head -c 3000000 /dev/zero | tr '\\0' b >&2",
        );
        assert_eq!(record.status, RecordStatus::Ok);
        assert_eq!(record.stdout.len(), 3_000_000);
        assert_eq!(record.stderr.len(), 3_000_000);
    }

    #[test]
    fn non_utf8_output_is_converted_lossily_and_hashed_raw() {
        let record = run(10, "printf 'a\\377b'");
        assert_eq!(record.stdout, "a\u{fffd}b");
        assert_eq!(record.sha256, sha256_hex(b"a\xffb"));
    }

    #[test]
    fn other_hosts_get_error_records() {
        let mut remote = TargetInfo::new("web-1");
        remote.address = Some("10.0.0.9".into());
        let commands = [Command::new("a", "true"), Command::new("b", "true")];
        let records = shell(5).get(&[remote], &commands, None).unwrap();
        assert_eq!(records.len(), 2);
        for record in records {
            assert_eq!(record.status, RecordStatus::Error);
            assert!(record.stderr.contains("runs only on this host"));
        }
    }

    #[test]
    fn timeout_must_be_positive() {
        for timeout_secs in [0, -5] {
            let options = Options {
                timeout_secs,
                max_output_mib: 64,
            };
            assert!(LocalShell::new(options).is_err());
        }
    }
}
