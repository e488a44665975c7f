//! How long to wait before calling Port again: what Port asks for (`Retry-After`,
//! `x-ratelimit-reset`) and jittered exponential backoff.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Longest wait Port can ask for (Ocean's cap).
pub(super) const MAX_WAIT: Duration = Duration::from_secs(300);

/// How long Port asked to wait before the next call: `Retry-After`, else `x-ratelimit-reset`, each
/// read as Ocean reads them (seconds; a number over 10,000 is a Unix time) or as an HTTP date or
/// an ISO 8601 time; at most [`MAX_WAIT`].
pub(crate) fn retry_after(
    headers: &reqwest::header::HeaderMap,
    now: SystemTime,
) -> Option<Duration> {
    ["retry-after", "x-ratelimit-reset"]
        .iter()
        .find_map(|name| {
            let value = headers.get(*name)?.to_str().ok()?;
            parse_wait(value, now).map(|d| d.min(MAX_WAIT))
        })
}

pub(super) fn parse_wait(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let until = |at: SystemTime| at.duration_since(now).unwrap_or_default();
    if let Ok(n) = value.parse::<f64>() {
        if !n.is_finite() || n < 0.0 {
            return None;
        }
        return Some(if n > 10_000.0 {
            until(UNIX_EPOCH + Duration::from_secs_f64(n))
        } else {
            Duration::from_secs_f64(n)
        });
    }
    httpdate::parse_http_date(value)
        .ok()
        .or_else(|| crate::time::parse_rfc3339(value))
        .map(until)
}

/// `base` ± 10 %, so that clients failing together do not retry together.
pub(crate) fn jittered(base: Duration) -> Duration {
    use std::hash::BuildHasher;
    // A fresh random-keyed hasher is random enough for spreading retries.
    let r = std::collections::hash_map::RandomState::new().hash_one(base);
    let unit = (r >> 11) as f64 / (1u64 << 53) as f64;
    base.mul_f64(0.9 + 0.2 * unit)
}
