//! Timestamps as Port and HTTP write them, through `jiff`: no calendar arithmetic of our own.

use std::time::SystemTime;

/// An RFC 3339 instant with its offset: `2026-11-23T10:00:00Z`, `2026-11-23T10:00:00.5+01:00`.
/// `None` for anything else, a time without an offset included.
pub(crate) fn parse_rfc3339(value: &str) -> Option<SystemTime> {
    value
        .trim()
        .parse::<jiff::Timestamp>()
        .ok()
        .map(SystemTime::from)
}

/// Now, as RFC 3339 UTC with milliseconds (`2026-12-03T10:00:00.123Z`), as Port writes its
/// timestamps.
pub(crate) fn now_rfc3339() -> String {
    format_rfc3339(SystemTime::now())
}

/// `at` as RFC 3339 UTC with milliseconds; the Unix epoch for a time `jiff` cannot hold.
pub(crate) fn format_rfc3339(at: SystemTime) -> String {
    let at = jiff::Timestamp::try_from(at).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    format!("{at:.3}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn offsets_and_fractions_are_read() {
        let at = |s| parse_rfc3339(s).map(|t| t.duration_since(UNIX_EPOCH).unwrap());
        assert_eq!(
            at("2026-11-23T10:00:00Z"),
            Some(Duration::from_secs(1_795_428_000))
        );
        assert_eq!(
            at("2026-11-23T11:00:00.5+01:00"),
            Some(Duration::from_millis(1_795_428_000_500))
        );
        assert_eq!(
            at("2026-11-23T08:30:00-01:30"),
            Some(Duration::from_secs(1_795_428_000))
        );
        assert_eq!(at("1970-01-01T00:00:00Z"), Some(Duration::ZERO));
        for bad in [
            "",
            "soon",
            "2026-13-01T00:00:00Z",
            "2026-11-23T10:00:00",
            "2026-11-23",
        ] {
            assert_eq!(at(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn now_is_utc_with_milliseconds_and_reads_back() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_428_000_123);
        assert_eq!(format_rfc3339(t), "2026-11-23T10:00:00.123Z");
        let exact = UNIX_EPOCH + Duration::from_secs(1_795_428_000);
        assert_eq!(format_rfc3339(exact), "2026-11-23T10:00:00.000Z");
        let now = now_rfc3339();
        assert_eq!(now.len(), 24, "{now}");
        assert!(parse_rfc3339(&now).is_some(), "{now}");
    }
}
