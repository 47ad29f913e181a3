//! RFC 3339 timestamps (UTC, whole seconds) for [`Record::collected_at`].
//!
//! [`Record::collected_at`]: diffy_plugin_api::Record::collected_at

use std::time::{SystemTime, UNIX_EPOCH};

/// `time` as `YYYY-MM-DDTHH:MM:SSZ`. Times before 1970 (a file's clock gone wrong) are shown as
/// the epoch.
pub(crate) fn rfc3339(time: SystemTime) -> String {
    let timestamp =
        jiff::Timestamp::try_from(time.max(UNIX_EPOCH)).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    format!("{timestamp:.0}")
}

/// The current time, as [`rfc3339`].
pub(crate) fn now() -> String {
    rfc3339(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn formats_known_instants() {
        let at = |secs| rfc3339(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(at(4_102_444_799), "2099-12-31T23:59:59Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH - Duration::from_secs(5)),
            "1970-01-01T00:00:00Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_millis(1_763_683_199_999)),
            "2025-11-20T23:59:59Z",
            "fractions are cut, not rounded"
        );
    }
}
