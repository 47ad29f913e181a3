//! The conversation between the host and an isolated plugin's runner: length-prefixed frames over
//! an anonymous socket pair (no port, no path anyone else could reach).
//!
//! A frame is a self-describing JSON header (its `op` says what it is, `v` the protocol version)
//! and a payload of raw bytes — the call's document, carried as it is rather than escaped inside
//! the header:
//!
//! ```text
//! u32 header length (little endian) | u32 payload length | header (JSON) | payload
//! ```
//!
//! The calls are those of the in-process boundary (`docs/abi.md`): activate a component, call one
//! of its methods by name with a document, release it; host services flow the other way.

use std::io::{self, IoSlice, Read, Write};
use std::path::PathBuf;

use diffy_plugin_api::{ComponentKind, Manifest, Permission};
use serde::{Deserialize, Serialize};

use super::sandbox::SandboxReport;
use crate::component::{CallFailure, LinePart};
use crate::loader::Verified;

/// The protocol version; a runner refuses a conversation of another version. Version 2 added
/// records kept in the runner (`keep_answer`, `parts`).
pub const VERSION: u32 = 2;

/// How much each side reads from the socket at once: the headers and small answers of many
/// frames in one `read`, where reading each frame's prefix, header and payload was three.
pub const READ_BUFFER: usize = 64 << 10;

/// The largest header a reader accepts.
const MAX_HEADER: u32 = 1 << 20;

/// What the runner needs to start: which library to load, with which checks, in which sandbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunnerSpec {
    /// The plugin's registered name, which the manifest must say too (none when installing).
    pub name: Option<String>,
    /// The library to load.
    pub library: PathBuf,
    /// The path to name in messages, when not the library's (an archive it came from).
    pub shown_as: Option<PathBuf>,
    /// The digest recorded at install time, for installed plugins.
    pub sha256: Option<String>,
    /// What an earlier load of this file verified, so the runner may skip those checks.
    pub previous: Option<Verified>,
    /// The permissions the sandbox grants: the ones the host's cached manifest declares.
    pub permissions: Vec<Permission>,
    /// The plugin's data directory (writable in the sandbox).
    pub data_dir: PathBuf,
    /// A private temporary directory (writable in the sandbox).
    pub temp_dir: PathBuf,
    /// Load, report and exit: for `plugin install --isolate` and `plugin info`.
    pub probe: bool,
}

/// How a call or a service ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The payload is the answer's document.
    Ok,
    /// The payload is an error message.
    Error,
    /// The payload is a panic's message.
    Panicked,
    /// The payload says which method is missing.
    NoSuchMethod,
    /// An outcome of a newer protocol; read as an error.
    #[serde(other)]
    Unknown,
}

impl Outcome {
    /// The outcome and payload of a transport's answer.
    pub fn of(answer: Result<Vec<u8>, CallFailure>) -> (Outcome, Vec<u8>) {
        match answer {
            Ok(document) => (Outcome::Ok, document),
            Err(CallFailure::Error(m) | CallFailure::Lost(m)) => (Outcome::Error, m.into_bytes()),
            Err(CallFailure::Panicked(m)) => (Outcome::Panicked, m.into_bytes()),
            Err(CallFailure::NoSuchMethod(m)) => (Outcome::NoSuchMethod, m.into_bytes()),
        }
    }

    /// The transport's answer for this outcome and payload.
    pub fn answer(self, payload: Vec<u8>) -> Result<Vec<u8>, CallFailure> {
        let text = || String::from_utf8_lossy(&payload).into_owned();
        match self {
            Outcome::Ok => Ok(payload),
            Outcome::Panicked => Err(CallFailure::Panicked(text())),
            Outcome::NoSuchMethod => Err(CallFailure::NoSuchMethod(text())),
            Outcome::Error | Outcome::Unknown => Err(CallFailure::Error(text())),
        }
    }
}

/// A frame's header. Host → runner: `start`, `activate`, `call`, `release`, `service_answer`;
/// runner → host: `started`, `failed`, `answer`, `service`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Header {
    /// The first frame: the protocol version and what to load.
    Start {
        /// [`VERSION`].
        v: u32,
        /// What to load and how to sandbox it.
        spec: Box<RunnerSpec>,
    },
    /// Activate a component; the payload is its options. `handle` is chosen by the host.
    Activate {
        /// The request's id, repeated by the answer.
        id: u64,
        /// The handle the component will be known by.
        handle: u64,
        /// Its kind.
        kind: ComponentKind,
        /// Its name.
        name: String,
    },
    /// Call a method; the payload is its input document, unless the call names a kept one.
    Call {
        /// The request's id, repeated by the answer.
        id: u64,
        /// The component.
        handle: u64,
        /// The method.
        method: String,
        /// The input, when it is a document sent before with [`Header::Keep`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kept: Option<u64>,
        /// Keep the answer — records as JSON Lines, a collection's `get_lines` — in the runner
        /// under this id, and answer only their [`KeptRecords`]: the records reach the
        /// persistence and the analysis of the same runner without crossing the socket twice.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        keep_answer: Option<u64>,
    },
    /// Keep the payload, the input of `uses` calls that name it, sent before them: a batch of
    /// records for both the persistence and the analysis crosses the socket once.
    Keep {
        /// The document's id, unique within the runner.
        kept: u64,
        /// How many calls will name it; it is dropped once they all have.
        uses: u32,
        /// When set, the document is a batch of JSON Lines to put together here: the payload's
        /// first line, then each part in order, from the payload's following lines or from the
        /// answers kept with `keep_answer` (each dropped once a batch took its records: a
        /// target's records go in one batch).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parts: Option<Vec<LinePart>>,
    },
    /// Release a component.
    Release {
        /// The component.
        handle: u64,
    },
    /// The host's answer to a service call; the payload is the service's answer.
    ServiceAnswer {
        /// The service call's id.
        id: u64,
        /// How it ended.
        outcome: Outcome,
    },
    /// The library is loaded, in its sandbox.
    Started {
        /// The sandbox, as the kernel enforced it.
        sandbox: SandboxReport,
        /// The library's manifest.
        manifest: Box<Manifest>,
        /// What the load verified, for the host's record.
        verified: Box<Verified>,
    },
    /// The library could not be loaded (or the runner could not start); the payload says why.
    Failed,
    /// The answer to `activate` or `call`; the payload is the document or the message.
    Answer {
        /// The request's id.
        id: u64,
        /// How it ended.
        outcome: Outcome,
    },
    /// A component calls a host service; the payload is the service's input.
    Service {
        /// The service call's id, repeated by the answer.
        id: u64,
        /// The calling component.
        handle: u64,
        /// The service.
        service: String,
    },
}

/// Write one frame: its prefix and header in one buffer, the payload as it is, handed to the
/// kernel together (`writev`) so that a small frame is one system call and a large payload is
/// not copied first.
pub fn write_frame(writer: &mut impl Write, header: &Header, payload: &[u8]) -> io::Result<()> {
    let too_long = |what| io::Error::new(io::ErrorKind::InvalidInput, format!("{what} too long"));
    let payload_len = u32::try_from(payload.len()).map_err(|_| too_long("frame payload"))?;
    let mut head = vec![0u8; 8];
    serde_json::to_writer(&mut head, header).expect("headers serialise");
    let header_len = u32::try_from(head.len() - 8).map_err(|_| too_long("frame header"))?;
    head[..4].copy_from_slice(&header_len.to_le_bytes());
    head[4..8].copy_from_slice(&payload_len.to_le_bytes());
    let mut slices = [IoSlice::new(&head), IoSlice::new(payload)];
    let mut unsent = &mut slices[..];
    while !unsent.is_empty() {
        match writer.write_vectored(unsent) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => IoSlice::advance_slices(&mut unsent, written),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    writer.flush()
}

/// Read one frame; `Ok(None)` at a clean end of the stream.
pub fn read_frame(reader: &mut impl Read) -> io::Result<Option<(Header, Vec<u8>)>> {
    let mut prefix = [0u8; 8];
    match reader.read_exact(&mut prefix) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let header_len = u32::from_le_bytes(prefix[..4].try_into().expect("4 bytes"));
    let payload_len = u32::from_le_bytes(prefix[4..].try_into().expect("4 bytes"));
    if header_len > MAX_HEADER {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a frame header of {header_len} bytes"),
        ));
    }
    let mut header = vec![0u8; header_len as usize];
    reader.read_exact(&mut header)?;
    let mut payload = vec![0u8; payload_len as usize];
    reader.read_exact(&mut payload)?;
    let header = serde_json::from_slice(&header)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("a frame header: {e}")))?;
    Ok(Some((header, payload)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_with_raw_payloads() {
        let mut wire = Vec::new();
        let call = Header::Call {
            id: 7,
            handle: 2,
            method: "run".into(),
            kept: None,
            keep_answer: Some(5),
        };
        write_frame(&mut wire, &call, br#"{"a":"\n"}"#).unwrap();
        write_frame(&mut wire, &Header::Release { handle: 2 }, b"").unwrap();
        let keep = Header::Keep {
            kept: 3,
            uses: 2,
            parts: Some(vec![
                LinePart::Sent { count: 1 },
                LinePart::Kept {
                    answer: 5,
                    first: 0,
                    count: 2,
                },
            ]),
        };
        write_frame(&mut wire, &keep, b"[]").unwrap();
        let shared = Header::Call {
            id: 8,
            handle: 2,
            method: "feed_lines".into(),
            kept: Some(3),
            keep_answer: None,
        };
        write_frame(&mut wire, &shared, b"").unwrap();
        let mut reader = wire.as_slice();
        let (header, payload) = read_frame(&mut reader).unwrap().unwrap();
        assert!(
            matches!(header, Header::Call { id: 7, handle: 2, ref method, kept: None, keep_answer: Some(5) } if method == "run")
        );
        assert_eq!(payload, br#"{"a":"\n"}"#);
        assert!(matches!(
            read_frame(&mut reader).unwrap(),
            Some((Header::Release { handle: 2 }, _))
        ));
        assert!(matches!(
            read_frame(&mut reader).unwrap(),
            Some((Header::Keep { kept: 3, uses: 2, parts: Some(ref parts) }, ref payload))
                if payload == b"[]" && parts.len() == 2
        ));
        assert!(matches!(
            read_frame(&mut reader).unwrap(),
            Some((Header::Call { kept: Some(3), .. }, ref payload)) if payload.is_empty()
        ));
        assert!(read_frame(&mut reader).unwrap().is_none(), "a clean end");
    }

    /// A writer that takes at most a few bytes a call, as a full socket may.
    struct Trickle(Vec<u8>);

    impl Write for Trickle {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            let n = bytes.len().min(3);
            self.0.extend_from_slice(&bytes[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_frame_written_a_few_bytes_at_a_time_arrives_whole() {
        let mut wire = Trickle(Vec::new());
        let payload = b"a payload longer than one write".repeat(5);
        write_frame(&mut wire, &Header::Release { handle: 9 }, &payload).unwrap();
        write_frame(&mut wire, &Header::Failed, b"").unwrap();
        let mut reader = wire.0.as_slice();
        assert!(matches!(
            read_frame(&mut reader).unwrap(),
            Some((Header::Release { handle: 9 }, ref read)) if *read == payload
        ));
        assert!(
            matches!(read_frame(&mut reader).unwrap(), Some((Header::Failed, ref read)) if read.is_empty())
        );
        assert!(read_frame(&mut reader).unwrap().is_none());
    }

    #[test]
    fn a_truncated_or_oversized_frame_is_an_error() {
        let mut wire = Vec::new();
        write_frame(&mut wire, &Header::Failed, b"why").unwrap();
        assert!(read_frame(&mut &wire[..wire.len() - 1]).is_err());
        let mut huge = (MAX_HEADER + 1).to_le_bytes().to_vec();
        huge.extend_from_slice(&0u32.to_le_bytes());
        assert!(read_frame(&mut huge.as_slice()).is_err());
    }
}
