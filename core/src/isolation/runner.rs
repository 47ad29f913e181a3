//! The runner: the child side of an isolated plugin. `diffy` starts its own executable with a
//! hidden subcommand whose standard input is one end of a socket pair; the runner reads what to
//! load, enters the sandbox, loads the library with the same loader and checks as the host, and
//! serves the host's calls — each on a thread of its pool, so a slow call does not hold up the
//! others — until the host hangs up.

use std::collections::HashMap;
use std::io::BufReader;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use super::frames::{self, Header, Outcome, RunnerSpec, VERSION};
use super::sandbox::{self, Places};
use crate::component::{CallFailure, KeptHead, KeptRecords, LinePart, Transport};
use crate::loader::{self, Expectation, LoadedLibrary};
use crate::records::RawRecord;
use crate::services::ServiceProvider;
use diffy_plugin_api::protocol;

/// Serve the host on standard input until it hangs up; returns the process exit code.
pub fn serve() -> u8 {
    let stream = match std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map(UnixStream::from)
    {
        Ok(stream) => stream,
        Err(e) => {
            eprintln!("error: the plugin runner needs its socket on standard input: {e}");
            return 2;
        }
    };
    let writer = match stream.try_clone() {
        Ok(writer) => Arc::new(Mutex::new(writer)),
        Err(e) => {
            eprintln!("error: the plugin runner cannot use its socket: {e}");
            return 2;
        }
    };
    let mut reader = stream;
    let send = |header: &Header, payload: &[u8]| {
        let mut writer = writer.lock().unwrap_or_else(|p| p.into_inner());
        frames::write_frame(&mut *writer, header, payload)
    };
    let spec = match frames::read_frame(&mut reader) {
        Ok(Some((Header::Start { v, spec }, _))) if v == VERSION => spec,
        Ok(Some((Header::Start { v, .. }, _))) => {
            let _ = send(
                &Header::Failed,
                format!("the runner speaks protocol {VERSION}, not {v}").as_bytes(),
            );
            return 2;
        }
        _ => return 2,
    };
    let library = match start(&spec) {
        Ok((library, sandbox)) => {
            let started = Header::Started {
                sandbox,
                manifest: Box::new(library.manifest.clone()),
                verified: Box::new(library.verified.clone()),
            };
            if send(&started, b"").is_err() {
                return 2;
            }
            library
        }
        Err(message) => {
            let _ = send(&Header::Failed, message.as_bytes());
            return 2;
        }
    };
    if spec.probe {
        return 0;
    }
    let library = Arc::new(library);
    Server {
        library,
        writer,
        components: Mutex::new(HashMap::new()),
        services: Arc::new(PendingServices::default()),
        kept_answers: Mutex::new(HashMap::new()),
    }
    .run(reader)
}

/// Enter the sandbox, then load the library.
fn start(spec: &RunnerSpec) -> Result<(LoadedLibrary, sandbox::SandboxReport), String> {
    let places = Places {
        library: &spec.library,
        data_dir: &spec.data_dir,
        temp_dir: &spec.temp_dir,
    };
    let report = sandbox::enter(&places, &spec.permissions)?;
    let expect = Expectation {
        name: spec.name.as_deref(),
        sha256: spec.sha256.as_deref(),
        previous: spec.previous.as_ref(),
        shown_as: spec.shown_as.as_deref(),
    };
    let library = loader::load(&spec.library, expect)?;
    Ok((library, report))
}

type Writer = Arc<Mutex<UnixStream>>;

/// Where the host's answer to one service call goes.
type AnswerSlot = mpsc::SyncSender<(Outcome, Vec<u8>)>;

/// Service calls of this runner's components waiting for the host's answer, by id.
#[derive(Default)]
struct PendingServices {
    next: AtomicU64,
    waiting: Mutex<HashMap<u64, AnswerSlot>>,
}

/// A component's host services, forwarded to the host over the socket.
struct ForwardedServices {
    handle: u64,
    writer: Writer,
    pending: Arc<PendingServices>,
}

impl ServiceProvider for ForwardedServices {
    fn call(&self, service: &str, input: &[u8]) -> Result<Vec<u8>, CallFailure> {
        let id = self.pending.next.fetch_add(1, Ordering::Relaxed);
        let (answer, wait) = mpsc::sync_channel(1);
        self.pending
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, answer);
        let header = Header::Service {
            id,
            handle: self.handle,
            service: service.to_string(),
        };
        let sent = {
            let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            frames::write_frame(&mut *writer, &header, input)
        };
        if let Err(e) = sent {
            return Err(CallFailure::Lost(format!("the host is gone: {e}")));
        }
        match wait.recv() {
            Ok((outcome, payload)) => outcome.answer(payload),
            Err(_) => Err(CallFailure::Lost("the host is gone".into())),
        }
    }
}

struct Server {
    library: Arc<LoadedLibrary>,
    writer: Writer,
    components: Mutex<HashMap<u64, Arc<dyn Transport>>>,
    services: Arc<PendingServices>,
    /// Answers kept for the batches still to be put together here (`keep_answer`), checked to
    /// be records as JSON Lines.
    kept_answers: Mutex<HashMap<u64, KeptAnswer>>,
}

impl Server {
    fn run(self, reader: UnixStream) -> u8 {
        let mut reader = BufReader::with_capacity(frames::READ_BUFFER, reader);
        let server = Arc::new(self);
        let workers = Workers::default();
        // Inputs sent once for several calls, with how many calls are still to take them.
        let mut kept_inputs = KeptInputs::new();
        loop {
            let (header, payload) = match frames::read_frame(&mut reader) {
                Ok(Some(frame)) => frame,
                // The host hung up (or died): there is no one left to serve.
                Ok(None) | Err(_) => return 0,
            };
            match header {
                Header::Activate {
                    id,
                    handle,
                    kind,
                    name,
                } => {
                    let server = Arc::clone(&server);
                    workers.run(move || {
                        let services = Box::new(ForwardedServices {
                            handle,
                            writer: Arc::clone(&server.writer),
                            pending: Arc::clone(&server.services),
                        });
                        let activated = server
                            .library
                            .activate_transport(kind, &name, services, &payload);
                        let answer = activated.map(|transport| {
                            server
                                .components
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .insert(handle, Arc::from(transport));
                            Vec::new()
                        });
                        server.answer(id, answer);
                    });
                }
                Header::Keep { kept, uses, parts } => {
                    if uses > 0 {
                        let input = match parts {
                            None => Ok(payload),
                            Some(parts) => server.compose(&payload, &parts),
                        };
                        kept_inputs.insert(kept, (input.map(Arc::new), uses));
                    }
                }
                Header::Call {
                    id,
                    handle,
                    method,
                    kept,
                    keep_answer,
                } => {
                    let component = server
                        .components
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get(&handle)
                        .cloned();
                    let input = match kept {
                        None => Some(Ok(Arc::new(payload))),
                        Some(kept) => take_kept(&mut kept_inputs, kept),
                    };
                    let server = Arc::clone(&server);
                    workers.run(move || {
                        let answer = match (component, input) {
                            (Some(component), Some(Ok(input))) => component.call(&method, &input),
                            (None, _) => Err(CallFailure::Error(format!("no component {handle}"))),
                            (_, Some(Err(why))) => Err(CallFailure::Error(why)),
                            (_, None) => Err(CallFailure::Error(format!(
                                "no document {kept:?} was kept for this call"
                            ))),
                        };
                        let answer = match keep_answer {
                            Some(keep) => answer.map(|records| server.keep_records(keep, records)),
                            None => answer,
                        };
                        server.answer(id, answer);
                    });
                }
                Header::Release { handle } => {
                    server
                        .components
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&handle);
                }
                Header::ServiceAnswer { id, outcome } => {
                    let waiting = server
                        .services
                        .waiting
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&id);
                    if let Some(waiting) = waiting {
                        let _ = waiting.send((outcome, payload));
                    }
                }
                // Frames only a runner sends; a host never does.
                Header::Start { .. }
                | Header::Started { .. }
                | Header::Failed
                | Header::Answer { .. }
                | Header::Service { .. } => return 2,
            }
        }
    }

    /// Keep `answer`, records as JSON Lines, as `keep` once checked; what was kept, as JSON.
    fn keep_records(&self, keep: u64, answer: Vec<u8>) -> Vec<u8> {
        let kept = check_records(answer);
        let heads = match kept {
            Ok((text, heads)) => {
                let answer = KeptAnswer {
                    text,
                    lines: heads.len(),
                };
                self.kept_answers
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(keep, answer);
                KeptRecords {
                    records: heads,
                    malformed: None,
                }
            }
            Err(why) => KeptRecords {
                records: Vec::new(),
                malformed: Some(why),
            },
        };
        serde_json::to_vec(&heads).expect("kept records serialise")
    }

    /// The batch that `parts` describe, put together from `payload` and the kept answers.
    fn compose(&self, payload: &[u8], parts: &[LinePart]) -> Result<Vec<u8>, String> {
        let mut kept = self.kept_answers.lock().unwrap_or_else(|p| p.into_inner());
        compose(&mut kept, payload, parts)
    }

    fn answer(&self, id: u64, answer: Result<Vec<u8>, CallFailure>) {
        let (outcome, payload) = Outcome::of(answer);
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        // A host that is gone cannot be told; the read loop ends when it notices.
        let _ = frames::write_frame(&mut *writer, &Header::Answer { id, outcome }, &payload);
    }
}

/// A call's work, run on one of the [`Workers`].
type Job = Box<dyn FnOnce() + Send>;

/// The threads that run the host's calls. A call goes to an idle thread, or to a new one when
/// every thread is busy, so a slow call never holds up another (a component may wait on a host
/// service while its next call arrives), and a run of thousands of calls starts only as many
/// threads as were ever busy at once, not one per call.
struct Workers {
    jobs: mpsc::Sender<Job>,
    shared: Arc<WorkerQueue>,
}

struct WorkerQueue {
    jobs: Mutex<mpsc::Receiver<Job>>,
    /// Threads waiting for a job and not yet promised one.
    idle: AtomicUsize,
}

impl Default for Workers {
    fn default() -> Self {
        let (jobs, queue) = mpsc::channel();
        Workers {
            jobs,
            shared: Arc::new(WorkerQueue {
                jobs: Mutex::new(queue),
                idle: AtomicUsize::new(0),
            }),
        }
    }
}

impl Workers {
    /// Run `job` on an idle thread, or on a new one when none is idle.
    fn run(&self, job: impl FnOnce() + Send + 'static) {
        let claimed_idle = self
            .shared
            .idle
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |idle| {
                idle.checked_sub(1)
            })
            .is_ok();
        if !claimed_idle {
            let shared = Arc::clone(&self.shared);
            let started = std::thread::Builder::new()
                .name("call".into())
                .spawn(move || shared.serve());
            if started.is_err() {
                // No thread to be had: run the call here. The reader waits for it, which is
                // slower (and a call that needs a host service answered fails), but not lost.
                job();
                return;
            }
        }
        // Each job queued has a thread promised to it, idle or new; the receiver outlives the
        // sender, held by every thread.
        let _ = self.jobs.send(Box::new(job));
    }
}

impl WorkerQueue {
    /// Take jobs until the runner's reader is gone.
    fn serve(&self) {
        loop {
            let job = self.jobs.lock().unwrap_or_else(|p| p.into_inner()).recv();
            match job {
                Ok(job) => job(),
                Err(_) => return,
            }
            self.idle.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// The batch of JSON Lines that `parts` describe: the payload's head line, then each part's
/// lines, from the payload or from the answers kept (each dropped once taken from).
fn compose(
    kept: &mut HashMap<u64, KeptAnswer>,
    payload: &[u8],
    parts: &[LinePart],
) -> Result<Vec<u8>, String> {
    let text = std::str::from_utf8(payload).map_err(|e| format!("a batch: {e}"))?;
    let (head, rest) = text
        .split_once('\n')
        .ok_or_else(|| "a batch without its head line".to_string())?;
    let mut sent = protocol::record_lines(rest);
    let mut out = Vec::with_capacity(payload.len());
    protocol::push_record_line(&mut out, head);
    for part in parts {
        match *part {
            LinePart::Sent { count } => {
                for _ in 0..count {
                    let line = sent
                        .next()
                        .ok_or("a batch with fewer lines than its parts")?;
                    protocol::push_record_line(&mut out, line);
                }
            }
            LinePart::Kept {
                answer,
                first,
                count,
            } => {
                let kept = kept
                    .get(&answer)
                    .ok_or_else(|| format!("no answer {answer} is kept for a batch"))?;
                if first == 0 && count == kept.lines {
                    // The whole answer, the usual case: no need to find its line ends.
                    out.extend_from_slice(kept.text.as_bytes());
                    continue;
                }
                let mut lines = protocol::record_lines(&kept.text).skip(first);
                for _ in 0..count {
                    let line = lines
                        .next()
                        .ok_or_else(|| format!("the kept answer {answer} is shorter"))?;
                    protocol::push_record_line(&mut out, line);
                }
            }
        }
    }
    // A target's records travel in one batch: no later batch takes from these answers.
    for part in parts {
        if let LinePart::Kept { answer, .. } = part {
            kept.remove(answer);
        }
    }
    Ok(out)
}

/// An answer kept for a batch: records as JSON Lines, each line ended by `\n`.
struct KeptAnswer {
    text: String,
    /// How many lines it has.
    lines: usize,
}

/// Records as JSON Lines, each line checked to be a record as the host checks those it receives
/// (`RawRecord::from_line`): the text and each record's head, or why they are not records.
fn check_records(answer: Vec<u8>) -> Result<(String, Vec<KeptHead>), String> {
    let mut text = String::from_utf8(answer).map_err(|e| e.utf8_error().to_string())?;
    let heads = protocol::record_lines(&text)
        .enumerate()
        .map(|(index, line)| {
            RawRecord::check_line(line).map_err(|e| format!("record {index}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n'); // the last line's end, which `record_lines` does not require
    }
    Ok((text, heads))
}

/// Inputs kept for later calls, by id: the input (or why it could not be put together), and how
/// many calls are still to take it.
type KeptInputs = HashMap<u64, (Result<Arc<Vec<u8>>, String>, u32)>;

/// The kept input `kept` for one more call; dropped once its last call took it.
fn take_kept(kept_inputs: &mut KeptInputs, kept: u64) -> Option<Result<Arc<Vec<u8>>, String>> {
    let (input, uses) = kept_inputs.get_mut(&kept)?;
    let input = input.clone();
    *uses -= 1;
    if *uses == 0 {
        kept_inputs.remove(&kept);
    }
    Some(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finished_threads_take_the_next_calls_and_a_busy_one_holds_up_none() {
        let workers = Workers::default();
        let (done, finished) = mpsc::channel();
        // A call that stays busy until told to finish…
        let (release, hold) = mpsc::channel::<()>();
        let first = done.clone();
        workers.run(move || {
            let _ = hold.recv();
            let _ = first.send(std::thread::current().id());
        });
        // …does not hold up the calls after it, which run one after another on a second thread.
        let mut threads = Vec::new();
        for _ in 0..20 {
            let done = done.clone();
            workers.run(move || {
                let _ = done.send(std::thread::current().id());
            });
            threads.push(finished.recv().unwrap());
            // The thread counts itself idle just after its call: wait for that, or the next call
            // may rightly start another.
            while workers.shared.idle.load(Ordering::Acquire) == 0 {
                std::thread::yield_now();
            }
        }
        release.send(()).unwrap();
        let held = finished.recv().unwrap();
        threads.dedup();
        assert_eq!(threads.len(), 1, "calls in turn reuse one thread");
        assert!(
            !threads.contains(&held),
            "the busy call kept its own thread"
        );
    }

    fn record(target: &str) -> String {
        format!(
            r#"{{"target":"{target}","command":"c","status":"ok","collected_at":"t","stdout":"x"}}"#
        )
    }

    #[test]
    fn a_batch_is_put_together_from_the_lines_sent_and_the_answers_kept() {
        let answer = |text: String| {
            let (text, heads) = check_records(text.into_bytes()).unwrap();
            KeptAnswer {
                text,
                lines: heads.len(),
            }
        };
        let mut kept = HashMap::from([
            (1, answer(format!("{}\n{}\n", record("a"), record("b")))),
            // Without its last line end: the runner adds it.
            (2, answer(record("c"))),
            (3, answer(format!("{}\n{}\n", record("d"), record("e")))),
            (4, answer(format!("{}\n", record("unused")))),
        ]);
        let payload = format!("{{\"run\":\"r\"}}\n{}\n", record("here"));
        let parts = [
            LinePart::Kept {
                answer: 1,
                first: 1,
                count: 1,
            },
            LinePart::Sent { count: 1 },
            LinePart::Kept {
                answer: 2,
                first: 0,
                count: 1,
            },
            LinePart::Kept {
                answer: 3,
                first: 0,
                count: 2,
            },
        ];
        let batch = compose(&mut kept, payload.as_bytes(), &parts).unwrap();
        let expected = format!(
            "{{\"run\":\"r\"}}\n{}\n{}\n{}\n{}\n{}\n",
            record("b"),
            record("here"),
            record("c"),
            record("d"),
            record("e")
        );
        assert_eq!(String::from_utf8(batch).unwrap(), expected);
        assert_eq!(
            kept.keys().collect::<Vec<_>>(),
            [&4],
            "the answers taken from are dropped"
        );
        // Parts that name more than there is are an error, not a short batch.
        for parts in [
            vec![LinePart::Sent { count: 2 }],
            vec![LinePart::Kept {
                answer: 4,
                first: 0,
                count: 2,
            }],
            vec![LinePart::Kept {
                answer: 1,
                first: 0,
                count: 1,
            }],
        ] {
            assert!(
                compose(&mut kept, payload.as_bytes(), &parts).is_err(),
                "{parts:?}"
            );
        }
    }

    #[test]
    fn answers_are_checked_before_they_are_kept() {
        let answer = format!("{}\n{}\n", record("a"), record("b"));
        let (text, heads) = check_records(answer.clone().into_bytes()).unwrap();
        assert_eq!(text, answer);
        let targets: Vec<&str> = heads.iter().map(|h| h.target.as_str()).collect();
        assert_eq!(targets, ["a", "b"]);
        assert_eq!(heads[1].len, record("b").len());
        let bad = format!("{}\n{{\"target\":\"b\"}}\n", record("a"));
        let why = check_records(bad.into_bytes()).unwrap_err();
        assert!(why.starts_with("record 1: missing field"), "{why}");
        assert!(check_records(vec![0xff, b'\n']).is_err());
    }

    #[test]
    fn a_kept_input_serves_its_uses_then_goes() {
        let mut kept = KeptInputs::from([(4, (Ok(Arc::new(b"batch".to_vec())), 2))]);
        assert_eq!(
            take_kept(&mut kept, 4).unwrap().unwrap().as_slice(),
            &b"batch"[..]
        );
        assert!(kept.contains_key(&4));
        assert!(take_kept(&mut kept, 4).is_some());
        assert!(kept.is_empty(), "dropped after its last use");
        assert!(take_kept(&mut kept, 4).is_none());
    }
}
