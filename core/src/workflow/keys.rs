//! Persistence keys and run ids. Keys are built from ids percent-encoded, so that a target key
//! that is a path stays one key segment and no key holds a control character.

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

/// What a key segment encodes: `/` (the separator), `%` (the escape), control characters and,
/// as every percent-encoding does, bytes outside ASCII.
const KEY_SEGMENT: &AsciiSet = &CONTROLS.add(b'%').add(b'/');

/// `text` as one segment of a persistence key.
pub fn key_segment(text: &str) -> String {
    utf8_percent_encode(text, KEY_SEGMENT).to_string()
}

/// `baseline/<key>/`
pub fn baseline_prefix(key: &str) -> String {
    format!("baseline/{}/", key_segment(key))
}

/// A run id from the current time: `20261121T235959Z`.
pub(super) fn timestamp_id() -> String {
    jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%SZ")
        .to_string()
}

/// The current time in RFC 3339, whole seconds, UTC: `2026-11-21T23:59:59Z`.
pub(super) fn now_rfc3339() -> String {
    format!("{:.0}", jiff::Timestamp::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_stay_one_segment() {
        assert_eq!(key_segment("/tmp/fleet%1"), "%2Ftmp%2Ffleet%251");
    }

    #[test]
    fn times_are_whole_seconds_in_utc() {
        let now = now_rfc3339();
        assert_eq!(now.len(), "2026-11-21T23:59:59Z".len(), "{now}");
        assert!(now.ends_with('Z'));
        assert_eq!(timestamp_id().len(), "20261121T235959Z".len());
    }
}
