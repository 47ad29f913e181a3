//! Ctrl-C and `SIGTERM` stop diffy and everything it started.
//!
//! `SIGINT` and `SIGTERM` are blocked before any other thread exists (so every thread inherits
//! the mask, and none is interrupted) and awaited on a thread of their own with `sigwait`; when
//! one arrives, the processes diffy and its plugins started are ended
//! ([`diffy_core::processes::end_descendants`]) and diffy exits with 128 + the signal's number,
//! as a shell reports a process a signal ended. Children do not inherit the mask: the standard
//! library clears it in every process it starts.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::signal::{SigSet, Signal};

/// Set once a signal has been received: diffy is stopping, and nothing more is printed.
static STOPPING: AtomicBool = AtomicBool::new(false);

/// If diffy is stopping, wait here for the exit that the signal thread makes: the work that
/// was under way must not print its result or exit with another status first.
pub fn wait_if_stopping() {
    while STOPPING.load(Ordering::SeqCst) {
        std::thread::park();
    }
}

/// Block `SIGINT` and `SIGTERM` and start the thread that waits for them. Call before any other
/// thread is started.
pub fn handle_termination() {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    if set.thread_block().is_err() {
        return;
    }
    let started = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let Ok(signal) = set.wait() else { return };
            STOPPING.store(true, Ordering::SeqCst);
            let ended = diffy_core::processes::end_descendants();
            let what = if ended == 0 {
                String::new()
            } else {
                format!("; ended {ended} process(es) it had started")
            };
            // Not eprintln!: a closed stderr must not keep diffy from exiting.
            let _ = writeln!(
                std::io::stderr(),
                "error: diffy stopped by {}{what}",
                signal.as_str()
            );
            std::process::exit(128 + signal as i32);
        });
    if started.is_err() {
        // No thread to wait for them: let the signals act as they would have.
        let _ = set.thread_unblock();
    }
}
