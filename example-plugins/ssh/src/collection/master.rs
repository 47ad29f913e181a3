//! One SSH connection per host, shared by all its commands: an OpenSSH control master.
//!
//! `ssh -f -N -o ControlMaster=yes` logs in and returns once the master is ready, its exit
//! status and stderr saying whether it could (the backgrounded master keeps that stderr open, so
//! it goes to a file rather than a pipe we would wait on). Each command is then its own session
//! on that connection, with its own exit status, stdout and stderr. The master is ended on every
//! way out of [`Master`]: `ssh -O exit`, then its process group is killed if it is still there.
//! Should diffy itself be killed first, the master's short `ControlPersist` ends it soon after.

use std::fs::File;
use std::path::PathBuf;
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process_group, test_kill_process};

use super::argv::Invocation;
use super::failure::Failure;
use super::process::{self, Group};

/// How long `-O check` and `-O exit` may take (they only talk to the local socket).
const CONTROL_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the master gets to leave after `-O exit` before its group is killed.
const EXIT_GRACE: Duration = Duration::from_secs(1);

/// A running control master.
pub(crate) struct Master<'a> {
    invocation: &'a Invocation<'a>,
    /// The master's pid, which is also its process group's (it starts a session of its own).
    pid: Option<Pid>,
    /// How long logging in took.
    pub(crate) login: Duration,
}

impl<'a> Master<'a> {
    /// Log in and start the master; `log` receives ssh's stderr.
    pub(crate) fn start(invocation: &'a Invocation<'a>, log: PathBuf) -> Result<Self, Failure> {
        let started = Instant::now();
        let stderr = File::create(&log)
            .map_err(|e| Failure::Ssh(format!("cannot create {}: {e}", log.display())))?;
        let mut command = invocation.master();
        command.stdout(Stdio::null()).stderr(stderr);
        let mut launcher = Group::spawn(&mut command).map_err(|e| spawn_failure(&e))?;
        let deadline = started + invocation.login_deadline();
        let status = launcher
            .wait_until(deadline)
            .map_err(|e| Failure::Ssh(format!("cannot wait for ssh: {e}")))?;
        let Some(status) = status else {
            launcher.kill();
            let _ = launcher.reap();
            // Should the master have gone to the background just now, it must not stay.
            let _ = process::run(&mut invocation.control("exit"), CONTROL_TIMEOUT);
            return Err(Failure::TimedOut(format!(
                "no SSH login within {} s",
                invocation.login_deadline().as_secs()
            )));
        };
        if !status.success() {
            let said = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(match status.code() {
                Some(_) => Failure::from_ssh_stderr(&said),
                None => Failure::Ssh(format!("ssh was killed by a signal: {said}")),
            });
        }
        // From here on, the master is ended by `drop`, whatever happens.
        let mut master = Master {
            invocation,
            pid: None,
            login: started.elapsed(),
        };
        master.pid = Some(master.check()?);
        Ok(master)
    }

    /// The master's pid, if it is still running (`ssh -O check`).
    pub(crate) fn check(&self) -> Result<Pid, Failure> {
        let finished = process::run(&mut self.invocation.control("check"), CONTROL_TIMEOUT)
            .map_err(|e| spawn_failure(&e))?;
        let said = finished.stderr_text();
        said.split_once("pid=")
            .and_then(|(_, rest)| rest.split(')').next())
            .and_then(|pid| pid.parse().ok())
            .and_then(Pid::from_raw)
            .filter(|_| finished.status.is_some_and(|s| s.success()))
            .ok_or_else(|| Failure::Unreachable(format!("the connection is gone: {}", said.trim())))
    }
}

impl Drop for Master<'_> {
    fn drop(&mut self) {
        let _ = process::run(&mut self.invocation.control("exit"), CONTROL_TIMEOUT);
        let Some(pid) = self.pid else {
            return;
        };
        let deadline = Instant::now() + EXIT_GRACE;
        while test_kill_process(pid).is_ok() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        if test_kill_process(pid).is_ok() {
            let _ = kill_process_group(pid, Signal::KILL);
        }
    }
}

fn spawn_failure(error: &std::io::Error) -> Failure {
    if error.kind() == std::io::ErrorKind::NotFound {
        Failure::Ssh("the ssh client is not installed (no ssh on PATH)".into())
    } else {
        Failure::Ssh(format!("cannot run ssh: {error}"))
    }
}
