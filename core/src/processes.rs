//! Nothing diffy starts outlives it: the processes diffy's plugins start, found through `/proc`
//! and ended, group by group (`SIGTERM`, then `SIGKILL` after a grace period).
//!
//! The host cannot ask an in-process plugin which processes it started (each plugin library
//! carries its own copy of `diffy-plugin-api`, so there is no registry they could share), so it
//! finds them itself:
//!
//! - diffy is a **child subreaper** ([`become_subreaper`]): a process whose parent exits is
//!   handed to diffy instead of init, so everything diffy or a plugin started stays among
//!   diffy's descendants, however it detached;
//! - when diffy exits or is told to stop (`SIGINT`, `SIGTERM`), [`end_descendants`] ends every
//!   descendant and the process group of each one that leads its own;
//! - when a call overruns its deadline, [`end_started_by`] ends what the thread that made the
//!   call started: Linux lists the children of each thread (`/proc/self/task/TID/children`), and
//!   every call runs on a thread of its own.
//!
//! A process is ended by signalling its process group when it leads one other than diffy's (the
//! bundled collections start every command as the leader of a new group, so a shell's own
//! children go too) and the process itself, each descendant found as well, with `SIGTERM`; what
//! is still there after [`GRACE`] gets `SIGKILL`.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

/// How long processes have, after `SIGTERM`, to exit before `SIGKILL`.
pub const GRACE: Duration = Duration::from_secs(2);

/// The longest pause between two looks at processes that were asked to exit.
const POLL: Duration = Duration::from_millis(20);

/// Make diffy the reaper of whatever its descendants leave behind (Linux; elsewhere nothing).
pub fn become_subreaper() {
    #[cfg(target_os = "linux")]
    {
        // Without it, a detached grandchild escapes to init; nothing else changes.
        let _ = rustix::process::set_child_subreaper(Some(rustix::process::getpid()));
    }
}

/// The thread calling this, as [`end_started_by`] names it.
pub fn current_thread() -> Pid {
    rustix::thread::gettid()
}

/// End every process the thread `thread` of this process started, with their descendants.
/// Returns how many processes were ended.
pub fn end_started_by(thread: Pid) -> usize {
    let mut pids = HashSet::new();
    for child in children(&format!(
        "/proc/self/task/{}/children",
        thread.as_raw_nonzero()
    )) {
        pids.insert(child);
        pids.extend(descendants(child));
    }
    end(&pids, false)
}

/// Kill `leader` and its process group at once (`SIGKILL`: it is not asked), then end its
/// descendants in other groups, which it can no longer replace. Returns how many of those were
/// ended.
pub fn kill_tree(leader: Pid) -> usize {
    let descendants: HashSet<Pid> = descendants(leader).into_iter().collect();
    let _ = rustix::process::kill_process_group(leader, Signal::KILL);
    let _ = rustix::process::kill_process(leader, Signal::KILL);
    end(&descendants, false)
}

/// End every descendant of diffy, and reap those that were its children. Returns how many
/// processes were ended.
pub fn end_descendants() -> usize {
    end(
        &descendants(rustix::process::getpid()).into_iter().collect(),
        true,
    )
}

/// Every descendant of `pid`, children first.
fn descendants(pid: Pid) -> Vec<Pid> {
    let mut found = Vec::new();
    let mut seen = HashSet::new();
    let mut queue = vec![pid];
    while let Some(parent) = queue.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", parent.as_raw_nonzero())) else {
            continue;
        };
        for task in tasks.flatten() {
            for child in children(&format!("{}/children", task.path().display())) {
                if seen.insert(child) {
                    found.push(child);
                    queue.push(child);
                }
            }
        }
    }
    found
}

/// The pids listed in a `children` file of `/proc` (none when it cannot be read).
fn children(file: &str) -> Vec<Pid> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|pid| pid.parse().ok().and_then(Pid::from_raw))
        .collect()
}

/// Whether `pid` is still running: it exists and is not a zombie waiting to be reaped.
fn running(pid: Pid) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", pid.as_raw_nonzero())) else {
        return false;
    };
    // `pid (comm) state …`: the name may hold anything, `)` included; the state follows the last.
    let state = stat
        .rfind(')')
        .and_then(|end| stat[end + 1..].split_whitespace().next());
    !matches!(state, Some("Z" | "X") | None)
}

/// Send `signal` to each of `pids` and to the group each leads, unless that group is diffy's own.
fn signal_all(pids: &HashSet<Pid>, signal: Signal) {
    let own_group = rustix::process::getpgrp();
    for &pid in pids {
        if rustix::process::getpgid(Some(pid)).is_ok_and(|group| group == pid && group != own_group)
        {
            let _ = rustix::process::kill_process_group(pid, signal);
        }
        let _ = rustix::process::kill_process(pid, signal);
    }
}

/// `SIGTERM` to `pids` (and their groups), then `SIGKILL` to what is left after [`GRACE`];
/// with `reap`, wait for diffy's own children among them. Returns how many there were.
fn end(pids: &HashSet<Pid>, reap: bool) -> usize {
    let pids: HashSet<Pid> = pids.iter().copied().filter(|&pid| running(pid)).collect();
    if pids.is_empty() {
        return 0;
    }
    tracing::debug!("ending {} process(es): {pids:?}", pids.len());
    signal_all(&pids, Signal::TERM);
    let deadline = Instant::now() + GRACE;
    loop {
        if reap {
            reap_children();
        }
        let left: HashSet<Pid> = pids.iter().copied().filter(|&pid| running(pid)).collect();
        if left.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            tracing::debug!("{} process(es) ignored SIGTERM: SIGKILL", left.len());
            signal_all(&left, Signal::KILL);
            break;
        }
        std::thread::sleep(POLL);
    }
    if reap {
        reap_children();
    }
    pids.len()
}

/// Reap every child of diffy that has exited (only when diffy is about to exit: a child a
/// component still waits for would be taken from it).
fn reap_children() {
    use rustix::process::{WaitOptions, waitpid};
    while let Ok(Some(_)) = waitpid(None, WaitOptions::NOHANG) {}
}
