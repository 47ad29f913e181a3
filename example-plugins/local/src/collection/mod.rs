//! The Collection components: `local-shell` runs commands on this machine, `evidence-dir` replays
//! outputs saved earlier. Both return one [`Record`] per target and command, and report a command
//! that failed as a failed record, never as an error of the whole call.

pub(crate) mod evidence;
pub(crate) mod shell;

use std::io::{self, Read};

use diffy_plugin_api::anyhow::bail;
use diffy_plugin_api::documents::sha256_hex;
use diffy_plugin_api::{OptionSpec, OptionType, Record, RecordStatus, Result};

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

/// The default of the `max_output_mib` option: the most output kept of one record.
pub(crate) const DEFAULT_MAX_OUTPUT_MIB: i64 = 64;

/// The `max_output_mib` option, which both collections have.
pub(crate) fn max_output_option() -> OptionSpec {
    OptionSpec::new(
        "max_output_mib",
        OptionType::Integer,
        "The most output kept of one record, in MiB: more is cut, and the record marked truncated",
    )
    .default_value(DEFAULT_MAX_OUTPUT_MIB)
}

pub(crate) fn default_max_output_mib() -> i64 {
    DEFAULT_MAX_OUTPUT_MIB
}

/// The `max_output_mib` option in bytes; it must be at least 1.
pub(crate) fn max_output_bytes(mib: i64) -> Result<u64> {
    match u64::try_from(mib) {
        Ok(mib @ 1..=4096) => Ok(mib << 20),
        _ => bail!("option max_output_mib must be from 1 to 4096, not {mib}"),
    }
}

/// At most `limit` bytes of `reader`, and whether it held more. With `drain`, the rest is read and
/// dropped (a pipe must be emptied, or its writer blocks); without, one byte more is enough to
/// know. Never holds more than `limit` bytes. `expected` is how many bytes it likely holds (a
/// file's size): room for them up front turns a dozen growing reads into two.
pub(crate) fn read_limited(
    mut reader: impl Read,
    limit: u64,
    drain: bool,
    expected: u64,
) -> io::Result<(Vec<u8>, bool)> {
    let mut kept = Vec::with_capacity(usize::try_from(expected.min(limit)).unwrap_or(0) + 1);
    (&mut reader).take(limit).read_to_end(&mut kept)?;
    if (kept.len() as u64) < limit {
        return Ok((kept, false));
    }
    let more = if drain {
        io::copy(&mut reader, &mut io::sink())? > 0
    } else {
        reader.read(&mut [0u8])? > 0
    };
    Ok((kept, more))
}

/// The line a collection adds to a truncated record's stderr.
pub(crate) fn truncation_note(collection: &str, limit: u64) -> String {
    format!(
        "{collection}: output cut at {} MiB (option max_output_mib)",
        limit >> 20
    )
}
