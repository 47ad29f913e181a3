//! Running one `ssh` process to its end or to its deadline.
//!
//! The process gets a process group of its own (ssh may start a `ProxyCommand` or a `ProxyJump`
//! ssh, which must go with it), stdin closed, and stdout and stderr drained by two threads at once
//! so that neither pipe can fill while we wait on the other. Each stream keeps at most
//! [`MAX_OUTPUT`] bytes and drains the rest, so a hostile host cannot exhaust our memory. When the
//! deadline passes the whole group is killed; a [`Group`] guard kills it on every other way out.

use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::process::{self, Child, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process_group};

/// The most bytes kept of each of a command's output streams.
pub(crate) const MAX_OUTPUT: usize = 64 << 20;

/// How long to wait for the output pipes to close once the process has been killed.
const KILL_GRACE: Duration = Duration::from_secs(2);

/// The longest pause between two checks of a running process.
const MAX_POLL: Duration = Duration::from_millis(20);

/// How one process ended.
#[derive(Debug)]
pub(crate) struct Finished {
    /// How it exited; `None` when it was killed at its deadline.
    pub(crate) status: Option<ExitStatus>,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
    /// Whether an output stream was cut at [`MAX_OUTPUT`].
    pub(crate) truncated: bool,
    pub(crate) elapsed: Duration,
}

impl Finished {
    /// ssh's stderr as text.
    pub(crate) fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// A spawned process leading its own group, which is killed when this guard is dropped before
/// [`Group::reap`].
pub(crate) struct Group {
    child: Child,
    reaped: bool,
}

impl Group {
    /// Spawn `command` in a process group of its own, stdin closed; the caller sets stdout and
    /// stderr.
    pub(crate) fn spawn(command: &mut process::Command) -> io::Result<Group> {
        let child = command.stdin(Stdio::null()).process_group(0).spawn()?;
        Ok(Group {
            child,
            reaped: false,
        })
    }

    /// Kill the whole group. The child leads it, so its pid is the group's id, and Linux does not
    /// hand out a pid that is still some group's id: this reaches only what ssh started.
    pub(crate) fn kill(&mut self) {
        let _ = kill_process_group(Pid::from_child(&self.child), Signal::KILL);
        let _ = self.child.kill();
    }

    /// Wait for the child to exit, checking with growing pauses; `None` when `deadline` passes
    /// first.
    pub(crate) fn wait_until(&mut self, deadline: Instant) -> io::Result<Option<ExitStatus>> {
        let mut pause = Duration::from_millis(1);
        loop {
            if let Some(status) = self.child.try_wait()? {
                self.reaped = true;
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

    /// Wait for the child (killed or exited) and mark it reaped.
    pub(crate) fn reap(&mut self) -> io::Result<ExitStatus> {
        let status = self.child.wait()?;
        self.reaped = true;
        Ok(status)
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if !self.reaped {
            self.kill();
            let _ = self.child.wait();
        }
    }
}

/// Run `command` with stdin closed until it exits or `timeout` passes.
pub(crate) fn run(command: &mut process::Command, timeout: Duration) -> io::Result<Finished> {
    let started = Instant::now();
    let deadline = started + timeout;
    let mut group = Group::spawn(command.stdout(Stdio::piped()).stderr(Stdio::piped()))?;
    let stdout = drain(group.child.stdout.take())?;
    let stderr = drain(group.child.stderr.take())?;

    let status = group.wait_until(deadline)?;
    if status.is_none() {
        group.kill();
        group.reap()?;
    }
    // ssh has exited (or was killed): its pipes close at once unless a proxy it started still
    // holds them, and that proxy goes with the group when the grace runs out.
    let outputs_until = Instant::now() + KILL_GRACE;
    let stdout = collect(stdout, outputs_until);
    let stderr = collect(stderr, outputs_until);
    if stdout.is_none() || stderr.is_none() {
        // Something of the group still holds a pipe, so the group still exists: end it.
        group.kill();
    }
    let (stdout, cut_stdout) = stdout.unwrap_or((Vec::new(), true));
    let (stderr, cut_stderr) = stderr.unwrap_or((Vec::new(), true));
    Ok(Finished {
        status,
        stdout,
        stderr,
        truncated: cut_stdout || cut_stderr,
        elapsed: started.elapsed(),
    })
}

/// One stream's bytes and whether they were cut, sent once the stream ends.
type Output = Receiver<(Vec<u8>, bool)>;

/// Read `pipe` to its end on a thread of its own.
fn drain(pipe: Option<impl Read + Send + 'static>) -> io::Result<Output> {
    let (sender, receiver) = mpsc::channel();
    let Some(mut pipe) = pipe else {
        let _ = sender.send((Vec::new(), false));
        return Ok(receiver);
    };
    thread::Builder::new()
        .name("diffy-ssh-output".into())
        .spawn(move || {
            let mut kept = Vec::new();
            // A read error ends the output early; what was read so far is still worth keeping.
            let _ = (&mut pipe).take(MAX_OUTPUT as u64).read_to_end(&mut kept);
            let truncated = kept.len() == MAX_OUTPUT
                && io::copy(&mut pipe, &mut io::sink()).is_ok_and(|more| more > 0);
            let _ = sender.send((kept, truncated));
        })?;
    Ok(receiver)
}

/// The stream's bytes, or `None` when it has not ended by `until`.
fn collect(output: Output, until: Instant) -> Option<(Vec<u8>, bool)> {
    output
        .recv_timeout(until.saturating_duration_since(Instant::now()))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, timeout_ms: u64) -> Finished {
        let mut command = process::Command::new("sh");
        command.args(["-c", script]);
        run(&mut command, Duration::from_millis(timeout_ms)).unwrap()
    }

    #[test]
    fn both_streams_and_the_status() {
        let finished = sh("echo out; echo err >&2; exit 3", 5_000);
        assert_eq!(finished.status.and_then(|s| s.code()), Some(3));
        assert_eq!(finished.stdout, b"out\n");
        assert_eq!(finished.stderr_text(), "err\n");
        assert!(!finished.truncated && finished.status.is_some());
    }

    #[test]
    fn the_deadline_kills_the_whole_group() {
        let started = Instant::now();
        let finished = sh("sleep 30 & echo started; wait", 300);
        assert!(finished.status.is_none());
        assert_eq!(finished.stdout, b"started\n");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
