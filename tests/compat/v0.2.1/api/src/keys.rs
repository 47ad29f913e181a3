//! Persistence keys: the names under which diffy saves what its jobs produce (since 0.2.1 as
//! functions; the layout itself is that of 0.2.0).
//!
//! | key | what |
//! |---|---|
//! | `baseline/<key>/<command>` | the baseline taken under a target key, one record per command |
//! | `run/<run>` | a run of `diffy new analysis`: a [`RunInfo`](crate::RunInfo) |
//! | `records/<run>/<target>/<command>` | the record of one command on one target in that run |
//! | `report/<run>` | the run's report |
//!
//! Each `<…>` is one *segment*: the id percent-encoded ([`segment`]), so that a target key that
//! is a path (`/srv/evidence`) stays one segment and no segment is `.`, `..` or holds a control
//! character. [`decode_segment`] gives the id back.

use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};

/// What a segment encodes: `/` (the separator), `%` (the escape), control characters and, as
/// every percent-encoding does, bytes outside ASCII.
const SEGMENT: &AsciiSet = &CONTROLS.add(b'%').add(b'/');

/// `id` as one key segment: `/`, `%`, control characters and bytes outside ASCII
/// percent-encoded, and `.` and `..` spelled `%2E` and `%2E%2E`, so that no segment reads as a
/// path step. The empty id stays empty: the host refuses empty ids before it builds a key.
///
/// ```
/// use diffy_plugin_api::keys::segment;
/// assert_eq!(segment("/srv/fleet%1"), "%2Fsrv%2Ffleet%251");
/// assert_eq!(segment(".."), "%2E%2E");
/// ```
pub fn segment(id: &str) -> String {
    match id {
        "." => "%2E".to_string(),
        ".." => "%2E%2E".to_string(),
        _ => utf8_percent_encode(id, SEGMENT).to_string(),
    }
}

/// The id a key segment encodes, or `None` when it is not valid percent-encoded UTF-8.
pub fn decode_segment(segment: &str) -> Option<String> {
    percent_decode_str(segment)
        .decode_utf8()
        .ok()
        .map(|id| id.into_owned())
}

/// `baseline/<key>/`: the prefix of every record of the baseline saved under target key `key`.
pub fn baseline_prefix(key: &str) -> String {
    format!("baseline/{}/", segment(key))
}

/// `baseline/<key>/<command>`.
pub fn baseline_key(key: &str, command: &str) -> String {
    format!("{}{}", baseline_prefix(key), segment(command))
}

/// `run/<run>`.
pub fn run_key(run: &str) -> String {
    format!("run/{}", segment(run))
}

/// `records/<run>/<target>/<command>`.
pub fn record_key(run: &str, target: &str, command: &str) -> String {
    format!(
        "records/{}/{}/{}",
        segment(run),
        segment(target),
        segment(command)
    )
}

/// `report/<run>`.
pub fn report_key(run: &str) -> String {
    format!("report/{}", segment(run))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_round_trip_and_never_read_as_path_steps() {
        for id in [
            "/tmp/fleet%1",
            "web 1",
            "日本",
            ".",
            "..",
            "...",
            "a\nb",
            "x.y",
        ] {
            let encoded = segment(id);
            assert!(!encoded.contains('/'), "{encoded}");
            assert!(!matches!(encoded.as_str(), "." | ".."), "{encoded}");
            assert!(encoded.is_ascii() && !encoded.contains(char::is_control));
            assert_eq!(decode_segment(&encoded).as_deref(), Some(id));
        }
        assert_eq!(decode_segment("%FF"), None);
    }

    #[test]
    fn keys_have_the_documented_layout() {
        assert_eq!(baseline_key("/srv/x", "ps"), "baseline/%2Fsrv%2Fx/ps");
        assert_eq!(run_key("r1"), "run/r1");
        assert_eq!(record_key("r1", "web/1", "ps"), "records/r1/web%2F1/ps");
        assert_eq!(report_key("r1"), "report/r1");
    }
}
