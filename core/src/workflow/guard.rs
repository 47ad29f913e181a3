//! Component calls under a deadline: each guarded component runs its calls on a thread of its
//! own, so a call that never returns costs one timeout and a clear error instead of the run.

use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use crate::component::{Label, Typed};
use crate::error::{Error, Result};
use crate::processes;
use rustix::process::Pid;

/// How much longer a guard waits for a transport that ends overruns itself.
const TRANSPORT_GRACE: Duration = Duration::from_secs(1);

type Job = Box<dyn FnOnce() + Send>;

/// An activated component whose calls run on a thread of its own, so a call that never returns
/// costs one timeout and a clear error instead of the whole run.
pub(super) struct Guarded<H> {
    handle: Arc<H>,
    pub(super) label: Label,
    jobs: mpsc::Sender<Job>,
    timeout: Duration,
    /// The thread the calls run on: what it started is ended when a call overruns.
    thread: Pid,
}

impl<H: Send + Sync + 'static> Guarded<H> {
    /// Guard `handle`'s calls with `timeout`. When its transport ends overruns itself (an
    /// isolated plugin's runner is killed at the deadline), the guard waits a moment longer, so
    /// that the transport's ending — and its message — comes first.
    pub(super) fn new(handle: H, timeout: Duration) -> Result<Self>
    where
        H: Typed,
    {
        let label = handle.component().label.clone();
        let timeout = if handle.component().ends_overruns() {
            timeout + TRANSPORT_GRACE
        } else {
            timeout
        };
        let (jobs, queue) = mpsc::channel::<Job>();
        let (thread_sender, thread) = mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name(format!("{} {}", label.kind, label.name))
            .spawn(move || {
                let _ = thread_sender.send(processes::current_thread());
                queue.into_iter().for_each(|job| job());
            })
            .map_err(|e| Error::Failure(format!("cannot start a thread: {e}")))?;
        let thread = thread
            .recv()
            .map_err(|_| Error::Failure("the component's thread did not start".into()))?;
        Ok(Guarded {
            handle: Arc::new(handle),
            label,
            jobs,
            timeout,
            thread,
        })
    }

    /// Run `f` on the component's thread and wait at most the timeout for its answer.
    pub(super) fn call<T: Send + 'static>(
        &self,
        what: &str,
        f: impl FnOnce(&H) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.start(what, f).wait()
    }

    /// Start `f` on the component's thread and return at once; [`Pending::wait`] waits at most
    /// the timeout, counted from now, for its answer. Calls run one after another, in order.
    pub(super) fn start<T: Send + 'static>(
        &self,
        what: &str,
        f: impl FnOnce(&H) -> Result<T> + Send + 'static,
    ) -> Pending<T> {
        let (answer, receiver) = mpsc::sync_channel(1);
        let handle = Arc::clone(&self.handle);
        let timed_out = format!(
            "plugin {} {} {} did not return from {what} within {}s",
            self.label.plugin,
            self.label.kind,
            self.label.name,
            self.timeout.as_secs_f64()
        );
        let sent = self.jobs.send(Box::new(move || {
            let _ = answer.send(f(&handle));
        }));
        Pending {
            receiver: sent.is_ok().then_some(receiver),
            deadline: Instant::now() + self.timeout,
            timed_out,
            thread: self.thread,
        }
    }

    /// The guarded component.
    pub(super) fn component(&self) -> &crate::component::ComponentHandle
    where
        H: Typed,
    {
        self.handle.component()
    }

    pub(super) fn malformed(&self, fault: String) -> Error {
        Error::Plugin(format!(
            "plugin {} returned a malformed document from {} {}: {fault}",
            self.label.plugin, self.label.kind, self.label.name
        ))
    }
}

/// A call started with [`Guarded::start`].
pub(super) struct Pending<T> {
    receiver: Option<mpsc::Receiver<Result<T>>>,
    deadline: Instant,
    /// What the timeout's error says, before what was killed.
    timed_out: String,
    /// The component's thread, whose processes are ended when the call is abandoned.
    thread: Pid,
}

impl<T> Pending<T> {
    /// The call's answer, or the timeout's error once its deadline has passed.
    pub(super) fn wait(self) -> Result<T> {
        let timed_out = |ended: usize| {
            Error::Plugin(format!(
                "{}{}",
                self.timed_out,
                super::collect::killed(ended)
            ))
        };
        let Some(receiver) = &self.receiver else {
            return Err(timed_out(0));
        };
        let left = self.deadline.saturating_duration_since(Instant::now());
        receiver
            .recv_timeout(left)
            // The call is abandoned; what it started must not outlive it.
            .map_err(|_| timed_out(processes::end_started_by(self.thread)))?
    }
}
