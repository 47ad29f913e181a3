//! What a job's names must be, and run ids. Keys themselves are built by
//! `diffy_plugin_api::keys` (ids percent-encoded, one segment each), so any target key, target id
//! or command id fits in one; what could still go wrong is refused here, before anything runs.

use crate::error::{Error, Result};

/// The longest incident id: a ticket reference, not a description.
pub const MAX_INCIDENT_CHARS: usize = 128;

/// The longest target key (a host name, a path, an inventory): the persistence shortens long
/// ones where it must, so this only keeps listings readable.
pub const MAX_TARGET_KEY_CHARS: usize = 4096;

/// Refuse a target key that no job can use: empty, `.` or `..` (which name no target on their
/// own: `./` or an absolute path does), too long, or holding a control character.
pub(super) fn check_target_key(key: &str) -> Result<()> {
    if matches!(key, "." | "..") {
        return Err(Error::Usage(format!(
            "invalid target key {key:?}: name the directory as {key}/ or by an absolute path"
        )));
    }
    check_name("target key", key, MAX_TARGET_KEY_CHARS)
}

/// Refuse an incident id that cannot group runs: empty, too long, or holding a control character.
pub(super) fn check_incident(incident: Option<&str>) -> Result<()> {
    incident.map_or(Ok(()), |id| {
        check_name("incident id", id, MAX_INCIDENT_CHARS)
    })
}

fn check_name(what: &str, name: &str, max_chars: usize) -> Result<()> {
    let fault = if name.trim().is_empty() {
        Some("is empty".to_string())
    } else if name.chars().any(char::is_control) {
        Some("holds a control character".to_string())
    } else if name.chars().count() > max_chars {
        Some(format!(
            "is {} characters long; the limit is {max_chars}",
            name.chars().count()
        ))
    } else {
        None
    };
    match fault {
        Some(fault) => Err(Error::Usage(format!(
            "invalid {what} {:?}: it {fault}",
            excerpt(name)
        ))),
        None => Ok(()),
    }
}

/// The first 40 characters of `name`, for a message.
fn excerpt(name: &str) -> String {
    match name.char_indices().nth(40) {
        Some((end, _)) => format!("{}…", &name[..end]),
        None => name.to_string(),
    }
}

/// A new run id: the time to the millisecond and 32 random bits, `20261122T084057.123Z-5f0c9a2e`,
/// so ids sort by time and two runs started in the same millisecond still differ. The
/// persistence creates each run exclusively, so even that collision would be caught.
pub(super) fn new_run_id() -> String {
    let time = jiff::Timestamp::now().strftime("%Y%m%dT%H%M%S%.3fZ");
    // Without the system's randomness (it does not fail on Linux), the time's nanoseconds.
    let random =
        getrandom::u32().unwrap_or_else(|_| jiff::Timestamp::now().subsec_nanosecond() as u32);
    format!("{time}-{random:08x}")
}

/// The current time in RFC 3339, whole seconds, UTC: `2026-11-21T23:59:59Z`.
pub(super) fn now_rfc3339() -> String {
    format!("{:.0}", jiff::Timestamp::now())
}

/// The current time in RFC 3339 with milliseconds, UTC: `2026-11-21T23:59:59.123Z`.
pub(super) fn now_rfc3339_millis() -> String {
    format!("{:.3}", jiff::Timestamp::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_whole_seconds_in_utc() {
        let now = now_rfc3339();
        assert_eq!(now.len(), "2026-11-21T23:59:59Z".len(), "{now}");
        assert!(now.ends_with('Z'));
        assert_eq!(now_rfc3339_millis().len(), "2026-11-21T23:59:59.123Z".len());
    }

    #[test]
    fn run_ids_sort_by_time_and_differ() {
        let ids: Vec<String> = (0..50).map(|_| new_run_id()).collect();
        assert_eq!(
            ids[0].len(),
            "20261122T084057.123Z-5f0c9a2e".len(),
            "{}",
            ids[0]
        );
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 50, "ids repeat: {ids:?}");
        assert!(ids.windows(2).all(|w| w[0][..20] <= w[1][..20]));
    }

    #[test]
    fn unusable_names_are_refused() {
        assert!(check_target_key("/srv/evidence").is_ok());
        assert!(check_target_key("./").is_ok());
        assert!(check_target_key(&"日".repeat(80)).is_ok());
        for bad in ["", "  ", ".", "..", "a\nb", "\u{1b}[31m"] {
            assert!(check_target_key(bad).is_err(), "{bad:?}");
        }
        assert!(check_incident(None).is_ok());
        assert!(check_incident(Some("IR-2026-0042")).is_ok());
        let long = "x".repeat(251);
        let error = check_incident(Some(&long)).unwrap_err().to_string();
        assert!(
            error.contains("251 characters long; the limit is 128"),
            "{error}"
        );
    }
}
