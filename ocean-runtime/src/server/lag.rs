//! How far behind the webhook server's runtime is: a probe asks to be woken every 10 ms and
//! measures how late it is. Under a CPU overload (more requests than the cores can take) the
//! lateness grows with the backlog of ready tasks; past `OCEAN__INGRESS__MAX_LAG_MS`, new
//! webhooks are answered 503 at once (cheaper than accepting them), which keeps the lateness, the
//! answers' latency and memory bounded instead of letting every client wait longer and longer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::Instant;

/// How often the probe asks to be woken.
const TICK: Duration = Duration::from_millis(10);

/// The runtime's lateness, smoothed: a late wake-up counts at once, and the estimate then halves
/// every 30 ms or so while wake-ups are on time.
#[derive(Debug, Default)]
pub(crate) struct Lag {
    micros: AtomicU64,
}

impl Lag {
    /// A gauge with its probe running on the current runtime; the probe ends once the gauge is
    /// dropped.
    pub(crate) fn start() -> Arc<Self> {
        let lag = Arc::new(Self::default());
        let weak: Weak<Self> = Arc::downgrade(&lag);
        tokio::spawn(async move {
            let mut expected = Instant::now() + TICK;
            loop {
                tokio::time::sleep_until(expected).await;
                let now = Instant::now();
                let Some(lag) = weak.upgrade() else { break };
                let late =
                    u64::try_from(now.duration_since(expected).as_micros()).unwrap_or(u64::MAX);
                let previous = lag.micros.load(Ordering::Relaxed);
                lag.micros
                    .store(late.max(previous - previous / 5), Ordering::Relaxed);
                expected = now + TICK;
            }
        });
        lag
    }

    /// The current estimate.
    pub(crate) fn current(&self) -> Duration {
        Duration::from_micros(self.micros.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A runtime thread blocked for 300 ms shows as lag, which fades once it runs freely again.
    #[tokio::test(flavor = "current_thread")]
    async fn a_blocked_runtime_shows_as_lag_that_fades() {
        let lag = Lag::start();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            lag.current() < Duration::from_millis(100),
            "{:?}",
            lag.current()
        );
        std::thread::sleep(Duration::from_millis(300));
        // The probe runs as soon as this task lets it; the highest estimate seen is the lateness.
        let mut seen = Duration::ZERO;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(1)).await;
            seen = seen.max(lag.current());
        }
        assert!(seen >= Duration::from_millis(250), "{seen:?}");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while lag.current() >= Duration::from_millis(50) {
            assert!(
                std::time::Instant::now() < deadline,
                "the lag does not fade"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
