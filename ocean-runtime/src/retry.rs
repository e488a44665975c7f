//! The retry policy of a processor's handler, and the one rule for which HTTP statuses are worth
//! trying again (used by the Port client, the pipeline and processors' upstream errors alike).

use ocean_jq::spec::retry as spec;
use std::time::Duration;

/// Whether an HTTP answer with this status may succeed when the same request is sent again: 408
/// (request timeout), 429 (rate limited) and every 5xx except 501 (not implemented) and 505
/// (version not supported). The Port client retries these within a call; an event whose Port write
/// still ends on one waits in the queue; a processor's upstream error with one is retryable.
///
/// ```
/// use ocean_runtime::is_retryable_status;
/// assert!(is_retryable_status(503) && is_retryable_status(429));
/// assert!(!is_retryable_status(404) && !is_retryable_status(501));
/// ```
#[must_use]
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429) || ((500..600).contains(&status) && !matches!(status, 501 | 505))
}

/// How a failed handler is retried: exponential backoff with a cap, for retryable errors only.
///
/// The default is Ocean's: 3 retries after the first attempt (4 calls at most), first delay 1 s,
/// each next delay multiplied by 2, no delay longer than 30 s. Unlike Ocean, whose counter is bumped
/// before the delay is computed (so its sleeps are 2, 4, 8 s), the first retry here waits `initial`
/// (1, 2, 4 s), which is what the setting's name says.
///
/// A processor sets it with `retry(max = 5, initial = "500ms")` on
/// [`#[webhook_processor]`](crate::webhook_processor), or from
/// [`WebhookProcessor::retry_policy`](crate::WebhookProcessor::retry_policy).
///
/// ```
/// use std::time::Duration;
/// use ocean_runtime::RetryPolicy;
///
/// let ocean = RetryPolicy::OCEAN;
/// assert_eq!(ocean.delay(0), Some(Duration::from_secs(1)));
/// assert_eq!(ocean.delay(2), Some(Duration::from_secs(4)));
/// assert_eq!(ocean.delay(3), None, "three retries, then the dead letters");
///
/// let patient = RetryPolicy { max_retries: 10, ..RetryPolicy::OCEAN };
/// assert_eq!(patient.delay(9), Some(Duration::from_secs(30)), "capped at max_delay");
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Delay before the first retry.
    pub initial: Duration,
    /// Upper bound of any one delay.
    pub max_delay: Duration,
    /// Factor between consecutive delays.
    pub base: f64,
}

impl RetryPolicy {
    /// Ocean's defaults: 3 retries, 1 s initial delay, 30 s cap, base 2.
    pub const OCEAN: Self = Self {
        max_retries: spec::MAX,
        initial: Duration::from_millis(spec::INITIAL_MS),
        max_delay: Duration::from_millis(spec::MAX_DELAY_MS),
        base: spec::BASE,
    };

    /// No retries at all.
    pub const NEVER: Self = Self {
        max_retries: 0,
        ..Self::OCEAN
    };

    /// The delay before retry number `retry` (0 for the first retry), or `None` when retries are used up.
    #[must_use]
    pub fn delay(&self, retry: u32) -> Option<Duration> {
        if retry >= self.max_retries {
            return None;
        }
        let factor = self.base.powi(i32::try_from(retry).unwrap_or(i32::MAX));
        let secs = self.initial.as_secs_f64() * factor;
        let capped = if secs.is_finite() {
            secs.min(self.max_delay.as_secs_f64())
        } else {
            self.max_delay.as_secs_f64()
        };
        Some(Duration::from_secs_f64(capped.max(0.0)))
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::OCEAN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ocean_default_delays_then_gives_up() {
        let p = RetryPolicy::OCEAN;
        let delays: Vec<_> = (0..4).map(|n| p.delay(n)).collect();
        assert_eq!(
            delays,
            vec![
                Some(Duration::from_secs(1)),
                Some(Duration::from_secs(2)),
                Some(Duration::from_secs(4)),
                None
            ]
        );
    }

    #[test]
    fn delays_are_capped() {
        let p = RetryPolicy {
            max_retries: 100,
            ..RetryPolicy::OCEAN
        };
        assert_eq!(p.delay(5), Some(Duration::from_secs(30)));
        assert_eq!(p.delay(99), Some(Duration::from_secs(30)));
    }

    #[test]
    fn never_retries() {
        assert_eq!(RetryPolicy::NEVER.delay(0), None);
    }
}
