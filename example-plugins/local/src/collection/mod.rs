//! The Collection components: `local-shell` runs commands on this machine, `evidence-dir` replays
//! outputs saved earlier. Both return one [`Record`] per target and command, and report a command
//! that failed as a failed record, never as an error of the whole call.

pub(crate) mod evidence;
pub(crate) mod shell;

use diffy_plugin_api::documents::sha256_hex;
use diffy_plugin_api::{Record, RecordStatus};

use crate::timestamp;

/// A record for a command that could not be run (or replayed) at all; `reason` goes to stderr.
fn error_record(target: &str, command: &str, reason: String) -> Record {
    Record {
        collected_at: timestamp::now(),
        stderr: reason,
        ..Record::new(target, command, RecordStatus::Error, String::new())
    }
}

/// Raw output as text (lossily, when it is not UTF-8) and the SHA-256 of the raw bytes. Valid
/// UTF-8, the usual case, is taken over without a copy.
fn text_and_digest(bytes: Vec<u8>) -> (String, String) {
    let digest = sha256_hex(&bytes);
    (text(bytes), digest)
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
