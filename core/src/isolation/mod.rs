//! Running a plugin out of process, in a sandbox, from the same library that runs in process.
//!
//! An isolated plugin is served by a child process: the `diffy` executable itself, started with a
//! hidden subcommand ([`runner`]), one per plugin per run, started the first time the plugin is
//! needed and reused for all its calls. The child enters the sandbox ([`sandbox`]) before it opens
//! the library, then answers the same calls the in-process boundary carries, as frames over a
//! socket pair ([`frames`]). Here is the host's side: the child, the calls waiting for their
//! answers, and what to say when the child dies or hangs.

pub mod frames;
pub mod runner;
pub mod sandbox;

use std::collections::HashMap;
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use diffy_plugin_api::{ComponentKind, Manifest};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::component::{CallFailure, ComponentHandle, Label, SharedInput, Transport};
use crate::error::{Error, Result};
use crate::loader::Verified;
use crate::services::HostServices;
use frames::{Header, Outcome, RunnerSpec};
pub use sandbox::{SandboxReport, SandboxStatus};

/// The hidden subcommand that makes `diffy` a plugin runner.
pub const RUNNER_COMMAND: &str = "__plugin-runner";

/// How a plugin runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Isolation {
    /// Loaded into the `diffy` process: fastest, and trusted with everything diffy can do.
    #[default]
    InProcess,
    /// Served by a sandboxed child process.
    Process,
}

impl Isolation {
    /// The spelling in listings.
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::InProcess => "in process",
            Isolation::Process => "isolated",
        }
    }
}

/// What a runner reported when its library loaded.
#[derive(Debug, Clone)]
pub struct Started {
    /// The sandbox, as the kernel enforced it.
    pub sandbox: SandboxReport,
    /// The library's manifest.
    pub manifest: Manifest,
    /// What the load verified, for the host's verification record.
    pub verified: Verified,
}

/// A plugin served by a sandboxed child process.
pub struct IsolatedPlugin {
    shared: Arc<Shared>,
    /// What the runner reported at start.
    pub started: Started,
    /// The runner's private temporary directory. The plugin owns it, not what its listener
    /// thread shares, so that it is removed when the plugin is dropped (after the runner is
    /// killed and reaped) even if the process ends before that thread has seen the runner go.
    _temp_dir: tempfile::TempDir,
}

struct Shared {
    plugin: String,
    writer: Mutex<UnixStream>,
    child: Mutex<Child>,
    pending: Mutex<HashMap<u64, Waiting>>,
    services: Mutex<HashMap<u64, HostServices>>,
    /// Why the child is gone, once it is.
    gone: Mutex<Option<String>>,
    next: AtomicU64,
    timeout: Option<Duration>,
}

/// A call waiting for its answer, and whose call it is (for the message if the child dies).
struct Waiting {
    answer: mpsc::SyncSender<Answer>,
    label: Label,
}

/// What a waiting call gets: the runner's answer, or the one line saying the runner is gone.
enum Answer {
    Frame(Outcome, Vec<u8>),
    Lost(String),
}

impl IsolatedPlugin {
    /// Start a runner for `spec`'s library and wait until it has loaded it in its sandbox. Calls
    /// that do not answer within `timeout` kill the runner.
    pub fn start(
        runner: &Path,
        mut spec: RunnerSpec,
        timeout: Option<Duration>,
    ) -> Result<IsolatedPlugin, String> {
        let temp_dir = tempfile::Builder::new()
            .prefix("diffy-isolated-")
            .tempdir()
            .map_err(|e| format!("cannot create the plugin's temporary directory: {e}"))?;
        spec.temp_dir = temp_dir.path().to_path_buf();
        std::fs::create_dir_all(&spec.data_dir).map_err(|e| {
            format!(
                "cannot create the plugin's data directory {}: {e}",
                spec.data_dir.display()
            )
        })?;
        let (mut child, stream) = spawn_runner(runner, &spec)?;
        let mut reader = stream
            .try_clone()
            .map_err(|e| format!("cannot use the runner's socket: {e}"))?;
        let mut writer = stream;
        // A library whose initialisers hang must not hang diffy: the handshake has a deadline.
        reader
            .set_read_timeout(timeout)
            .map_err(|e| format!("cannot use the runner's socket: {e}"))?;
        let start = Header::Start {
            v: frames::VERSION,
            spec: Box::new(spec.clone()),
        };
        let handshake = frames::write_frame(&mut writer, &start, b"")
            .map_err(|e| e.to_string())
            .and_then(|()| frames::read_frame(&mut reader).map_err(|e| e.to_string()));
        let started = match handshake {
            Ok(Some((
                Header::Started {
                    sandbox,
                    manifest,
                    verified,
                },
                _,
            ))) => Started {
                sandbox,
                manifest: *manifest,
                verified: *verified,
            },
            Ok(Some((Header::Failed, why))) => {
                let _ = child.wait();
                return Err(String::from_utf8_lossy(&why).into_owned());
            }
            _ => {
                kill_group(&mut child);
                let status = child.wait().ok();
                return Err(format!(
                    "the plugin runner did not load the library ({})",
                    describe_exit(status)
                ));
            }
        };
        reader
            .set_read_timeout(None)
            .map_err(|e| format!("cannot use the runner's socket: {e}"))?;
        let plugin = started.manifest.name.clone();
        tracing::info!(
            plugin = %plugin,
            pid = child.id(),
            sandbox = %started.sandbox,
            "started an isolated plugin"
        );
        let shared = Arc::new(Shared {
            plugin: plugin.clone(),
            writer: Mutex::new(writer),
            child: Mutex::new(child),
            pending: Mutex::new(HashMap::new()),
            services: Mutex::new(HashMap::new()),
            gone: Mutex::new(None),
            next: AtomicU64::new(1),
            timeout,
        });
        let listener = Arc::clone(&shared);
        std::thread::Builder::new()
            .name(format!("isolated {plugin}"))
            .spawn(move || listener.listen(reader))
            .map_err(|e| format!("cannot start a thread: {e}"))?;
        Ok(IsolatedPlugin {
            shared,
            started,
            _temp_dir: temp_dir,
        })
    }

    /// Load `spec`'s library in a sandboxed runner and report what it found, without serving
    /// anything: `plugin install --isolate` verifies a library this way, `plugin info` shows its
    /// sandbox.
    pub fn probe(runner: &Path, mut spec: RunnerSpec) -> Result<Started, String> {
        spec.probe = true;
        let plugin = IsolatedPlugin::start(runner, spec, None)?;
        Ok(plugin.started.clone())
    }

    /// Activate a component in the runner.
    pub fn activate(
        &self,
        kind: ComponentKind,
        name: &str,
        services: HostServices,
        options: &Map<String, Value>,
    ) -> Result<ComponentHandle> {
        let label = Label {
            plugin: self.shared.plugin.clone(),
            kind,
            name: name.to_string(),
        };
        let handle = self.shared.next.fetch_add(1, Ordering::Relaxed);
        self.shared.lock_services().insert(handle, services);
        let id = self.shared.next.fetch_add(1, Ordering::Relaxed);
        let header = Header::Activate {
            id,
            handle,
            kind,
            name: name.to_string(),
        };
        let options = serde_json::to_vec(options).expect("options serialise");
        self.shared
            .request(id, &header, &options, &label)
            .map_err(|failure| label.activation_failed(failure))?;
        let transport = Isolated {
            shared: Arc::clone(&self.shared),
            handle,
            label: label.clone(),
        };
        Ok(ComponentHandle::new(
            label,
            &self.started.manifest,
            Box::new(transport),
        ))
    }
}

impl Drop for IsolatedPlugin {
    fn drop(&mut self) {
        self.shared.stop("the run ended");
    }
}

/// The send buffer asked for on each end of a runner's socket.
const SOCKET_BUFFER: usize = 4 << 20;

/// Start `diffy <RUNNER_COMMAND>` with one end of a socket pair as its standard input. Its
/// standard output and error are diffy's, so what a CLI plugin prints reaches the user.
fn spawn_runner(runner: &Path, spec: &RunnerSpec) -> Result<(Child, UnixStream), String> {
    let (ours, theirs) =
        UnixStream::pair().map_err(|e| format!("cannot create the runner's socket: {e}"))?;
    for end in [&ours, &theirs] {
        // A larger buffer lets a batch of records cross in a few wake-ups of the reader instead
        // of one per 208 KiB (the usual default). The kernel caps it at `net.core.wmem_max`, and
        // a refusal only costs speed.
        let _ = rustix::net::sockopt::set_socket_send_buffer_size(end, SOCKET_BUFFER);
    }
    // The plugin's name is in the runner's argv only so that `ps` says whose runner it is.
    let child = Command::new(runner)
        .arg(RUNNER_COMMAND)
        .arg(spec.name.as_deref().unwrap_or("(being installed)"))
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
        .env("TMPDIR", &spec.temp_dir)
        // Its own process group, so that killing it takes whatever it started along.
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start the plugin runner {}: {e}", runner.display()))?;
    Ok((child, ours))
}

impl Shared {
    fn lock_services(&self) -> std::sync::MutexGuard<'_, HashMap<u64, HostServices>> {
        self.services.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Waiting>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Send a request and wait for its answer (at most the timeout, after which the runner is
    /// killed).
    fn request(
        &self,
        id: u64,
        header: &Header,
        payload: &[u8],
        label: &Label,
    ) -> Result<Vec<u8>, CallFailure> {
        self.request_with(id, label, |writer| {
            frames::write_frame(writer, header, payload)
        })
    }

    /// Send request `id` with `write`, which writes its frames under the writer's lock, and wait
    /// for its answer.
    fn request_with(
        &self,
        id: u64,
        label: &Label,
        write: impl FnOnce(&mut UnixStream) -> std::io::Result<()>,
    ) -> Result<Vec<u8>, CallFailure> {
        let (answer, wait) = mpsc::sync_channel(1);
        {
            // Registered before the frame leaves, and checked for a dead runner under the same
            // lock the listener takes to fail everything: no answer can be lost between the two.
            let mut pending = self.lock_pending();
            if let Some(why) = self.gone.lock().unwrap_or_else(|p| p.into_inner()).clone() {
                return Err(CallFailure::Lost(self.lost(&why, label)));
            }
            pending.insert(
                id,
                Waiting {
                    answer,
                    label: label.clone(),
                },
            );
        }
        let sent = {
            let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            write(&mut writer)
        };
        if sent.is_err() {
            // The listener notices the runner is gone and answers every waiting call.
            tracing::debug!("cannot write to the runner of {}", self.plugin);
        }
        let answer = match self.timeout {
            Some(timeout) => wait.recv_timeout(timeout).map_err(|e| match e {
                mpsc::RecvTimeoutError::Timeout => Some(timeout),
                mpsc::RecvTimeoutError::Disconnected => None,
            }),
            None => wait.recv().map_err(|_| None),
        };
        match answer {
            Ok(Answer::Frame(outcome, payload)) => outcome.answer(payload),
            Ok(Answer::Lost(message)) => Err(CallFailure::Lost(message)),
            Err(Some(timeout)) => {
                let why = format!(
                    "hung in {} {}: no answer within {}s; its process was killed",
                    label.kind,
                    label.name,
                    timeout.as_secs_f64()
                );
                self.stop(&why);
                Err(CallFailure::Lost(format!(
                    "plugin {} (isolated) {why}",
                    self.plugin
                )))
            }
            Err(None) => {
                let why = self
                    .gone
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone()
                    .unwrap_or_else(|| "went away".into());
                Err(CallFailure::Lost(self.lost(&why, label)))
            }
        }
    }

    /// The one line for a call that the runner's death cut short.
    fn lost(&self, why: &str, label: &Label) -> String {
        format!(
            "plugin {} (isolated) {why} in {} {}",
            self.plugin, label.kind, label.name
        )
    }

    /// Read the runner's frames until it is gone: answers go to their waiting calls, service
    /// calls to the component's host services.
    fn listen(self: Arc<Self>, reader: UnixStream) {
        let mut reader = std::io::BufReader::with_capacity(frames::READ_BUFFER, reader);
        loop {
            match frames::read_frame(&mut reader) {
                Ok(Some((Header::Answer { id, outcome }, payload))) => {
                    if let Some(waiting) = self.lock_pending().remove(&id) {
                        let _ = waiting.answer.send(Answer::Frame(outcome, payload));
                    }
                }
                Ok(Some((
                    Header::Service {
                        id,
                        handle,
                        service,
                    },
                    payload,
                ))) => {
                    let services = self.lock_services().get(&handle).cloned();
                    let answer = match services {
                        Some(services) => services.call(&service, &payload),
                        None => Err(CallFailure::Error(format!("no component {handle}"))),
                    };
                    let (outcome, payload) = Outcome::of(answer);
                    let header = Header::ServiceAnswer { id, outcome };
                    let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
                    let _ = frames::write_frame(&mut *writer, &header, &payload);
                }
                // A runner that sends nonsense is treated as one that died.
                Ok(Some(_)) | Ok(None) | Err(_) => break,
            }
        }
        // A runner that stopped talking is done: end what is left of it before reaping it.
        let status = {
            let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
            let exited = child.try_wait().ok().flatten();
            if exited.is_none() {
                std::thread::sleep(Duration::from_millis(50));
            }
            match child.try_wait().ok().flatten() {
                Some(status) => Some(status),
                None => {
                    kill_group(&mut child);
                    child.wait().ok()
                }
            }
        };
        let why = match status {
            Some(status) if status.signal().is_some() || !status.success() => {
                format!("crashed: {}", describe_exit(Some(status)))
            }
            _ => "exited".to_string(),
        };
        self.fail_all(&why);
    }

    /// Mark the runner gone and answer every waiting call with `why`.
    fn fail_all(&self, why: &str) {
        let mut pending = self.lock_pending();
        let mut gone = self.gone.lock().unwrap_or_else(|p| p.into_inner());
        if gone.is_none() {
            *gone = Some(why.to_string());
        }
        let why = gone.clone().unwrap_or_default();
        drop(gone);
        for (_, waiting) in pending.drain() {
            let message = self.lost(&why, &waiting.label);
            let _ = waiting.answer.send(Answer::Lost(message));
        }
    }

    /// Kill the runner's process group, for good: a hang, or the end of the run.
    fn stop(&self, why: &str) {
        {
            let mut gone = self.gone.lock().unwrap_or_else(|p| p.into_inner());
            if gone.is_none() {
                *gone = Some(why.to_string());
            }
        }
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        kill_group(&mut child);
        let _ = child.wait();
    }
}

/// Kill the runner and everything in its process group, then what it started in groups of
/// their own (the commands of an isolated collection).
fn kill_group(child: &mut Child) {
    if let Some(group) = i32::try_from(child.id())
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        crate::processes::kill_tree(group);
    }
    let _ = child.kill();
}

/// A component served by a runner.
struct Isolated {
    shared: Arc<Shared>,
    handle: u64,
    label: Label,
}

impl Isolated {
    fn send_call(
        &self,
        method: &str,
        input: &[u8],
        keep_answer: Option<u64>,
    ) -> Result<Vec<u8>, CallFailure> {
        let id = self.shared.next.fetch_add(1, Ordering::Relaxed);
        let header = Header::Call {
            id,
            handle: self.handle,
            method: method.to_string(),
            kept: None,
            keep_answer,
        };
        self.shared.request(id, &header, input, &self.label)
    }
}

impl Transport for Isolated {
    fn call(&self, method: &str, input: &[u8]) -> Result<Vec<u8>, CallFailure> {
        self.send_call(method, input, None)
    }

    fn call_keeping(&self, method: &str, input: &[u8], keep: u64) -> Result<Vec<u8>, CallFailure> {
        self.send_call(method, input, Some(keep))
    }

    fn call_shared(
        &self,
        method: &str,
        input: &[u8],
        shared: &SharedInput,
    ) -> Result<Vec<u8>, CallFailure> {
        let id = self.shared.next.fetch_add(1, Ordering::Relaxed);
        let header = Header::Call {
            id,
            handle: self.handle,
            method: method.to_string(),
            kept: Some(shared.id),
            keep_answer: None,
        };
        self.shared.request_with(id, &self.label, |writer| {
            // Decided under the writer's lock: the input is on its way before any call naming it.
            if !shared.sent.swap(true, Ordering::Relaxed) {
                let keep = Header::Keep {
                    kept: shared.id,
                    uses: shared.uses,
                    parts: shared.parts.clone(),
                };
                frames::write_frame(writer, &keep, input)?;
            }
            frames::write_frame(writer, &header, b"")
        })
    }

    fn served_by(&self) -> Option<usize> {
        Some(Arc::as_ptr(&self.shared) as usize)
    }

    fn ends_overruns(&self) -> bool {
        self.shared.timeout.is_some()
    }
}

impl Drop for Isolated {
    fn drop(&mut self) {
        let release = Header::Release {
            handle: self.handle,
        };
        let mut writer = self.shared.writer.lock().unwrap_or_else(|p| p.into_inner());
        let _ = frames::write_frame(&mut *writer, &release, b"");
        drop(writer);
        self.shared.lock_services().remove(&self.handle);
    }
}

/// `SIGSEGV`, `exit status 3`, …
fn describe_exit(status: Option<ExitStatus>) -> String {
    let Some(status) = status else {
        return "stopped".to_string();
    };
    if let Some(signal) = status.signal() {
        return match signal_name(signal) {
            Some(name) => name.to_string(),
            None => format!("signal {signal}"),
        };
    }
    match status.code() {
        Some(code) => format!("exit status {code}"),
        None => "stopped".to_string(),
    }
}

/// The names of the signals a crashing plugin dies of, with what each usually means.
fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        4 => "SIGILL",
        6 => "SIGABRT (an abort, a stack overflow or memory exhausted)",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        15 => "SIGTERM",
        24 => "SIGXCPU (its CPU time limit)",
        25 => "SIGXFSZ",
        31 => "SIGSYS",
        _ => return None,
    })
}

/// The spec of a runner for a known plugin: the library, the checks the loader makes in process,
/// and the permissions the host's cached manifest grants.
pub fn spec_for(
    plugin: &crate::known::KnownPlugin,
    data_dir: PathBuf,
    previous: Option<Verified>,
) -> RunnerSpec {
    RunnerSpec {
        name: Some(plugin.name.clone()),
        library: plugin.library.clone(),
        shown_as: None,
        sha256: plugin.sha256.clone(),
        previous,
        permissions: plugin
            .manifest
            .as_ref()
            .map(|m| m.permissions.clone())
            .unwrap_or_default(),
        data_dir,
        temp_dir: PathBuf::new(),
        probe: false,
    }
}

/// An error from starting a plugin's runner, as the loader's are: naming plugin and library.
pub fn start_error(plugin: &crate::known::KnownPlugin, why: String) -> Error {
    Error::Plugin(format!(
        "plugin {} ({}, isolated): {why}",
        plugin.name,
        plugin.library.display()
    ))
}
