//! The upstream HTTP client of processors: per-host rate limits, concurrency caps, retries and
//! metrics. Everything an author reads is on [`Upstream`].

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tracing::Instrument;

use crate::metrics::Metrics;
use crate::processor::ProcessError;

/// A rate: `count` requests per `per`, as `OCEAN__UPSTREAM__RATE_LIMIT` writes it.
///
/// ```
/// use std::time::Duration;
/// use ocean_runtime::Rate;
///
/// let github: Rate = "5000/h".parse()?;
/// assert_eq!((github.count.get(), github.per), (5000, Duration::from_secs(3600)));
/// assert!("ten/s".parse::<Rate>().is_err());
/// # Ok::<(), String>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests allowed per period (also the burst).
    pub count: NonZeroU32,
    /// The period: a second, a minute or an hour.
    pub per: Duration,
}

impl std::str::FromStr for Rate {
    type Err = String;

    /// `10/s`, `600/m`, `5000/h` (also `/second`, `/minute`, `/hour`).
    fn from_str(text: &str) -> Result<Self, String> {
        let (count, unit) = text
            .split_once('/')
            .ok_or("expected <count>/<s|m|h>, e.g. `10/s` or `5000/h`")?;
        let count: NonZeroU32 = count
            .trim()
            .parse()
            .map_err(|_| format!("`{}` is not a positive whole number", count.trim()))?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            other => return Err(format!("unknown period `{other}`; expected s, m or h")),
        };
        Ok(Self { count, per })
    }
}

/// The `OCEAN__UPSTREAM__…` settings, for an integration that builds its own [`Upstream`] (e.g. in
/// its `main!(state = …)` fn) instead of taking the runtime's.
///
/// ```
/// use std::time::Duration;
/// use ocean_runtime::{Upstream, UpstreamSettings};
///
/// let settings = UpstreamSettings {
///     timeout: Duration::from_secs(10),
///     rate: Some("10/s".parse()?),
///     ..UpstreamSettings::default()
/// };
/// let jira = Upstream::new(settings)?;
/// assert_eq!(jira.settings().max_retries, 5);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamSettings {
    /// Time limit of one request (`OCEAN__UPSTREAM__TIMEOUT_SECONDS`).
    pub timeout: Duration,
    /// Retries after the first attempt (`OCEAN__UPSTREAM__MAX_RETRIES`).
    pub max_retries: u32,
    /// Requests per host per period (`OCEAN__UPSTREAM__RATE_LIMIT`), unlimited when `None`.
    pub rate: Option<Rate>,
    /// Requests per host at once (`OCEAN__UPSTREAM__MAX_CONCURRENCY`).
    pub max_concurrency: usize,
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            max_retries: 5,
            rate: None,
            max_concurrency: crate::config::DEFAULT_EVENTS_IN_FLIGHT,
        }
    }
}

/// What one host is allowed.
struct Host {
    limiter: Option<DefaultDirectRateLimiter>,
    slots: Semaphore,
    /// Until when the host asked for no requests at all.
    paused_until: Mutex<Option<Instant>>,
}

impl Host {
    fn pause(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut paused = self
            .paused_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if paused.is_none_or(|p| p < until) {
            *paused = Some(until);
        }
    }

    fn paused(&self) -> Option<Instant> {
        self.paused_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .filter(|t| *t > Instant::now())
    }
}

struct Inner {
    http: reqwest::Client,
    settings: UpstreamSettings,
    hosts: Mutex<HashMap<String, Arc<Host>>>,
    metrics: Option<Arc<Metrics>>,
}

/// An HTTP client for processors' calls to their upstream API (Jira, GitHub…), what Ocean's
/// `http_async_client` gives its integrations, with the limits a production integration needs.
///
/// Handlers take it as [`State<Upstream>`](crate::State): the runtime builds one from
/// the `OCEAN__UPSTREAM__…` settings unless the integration provides its own. Per host (and port):
///
/// - at most `OCEAN__UPSTREAM__RATE_LIMIT` requests (`10/s`, `600/m`, `5000/h` as GitHub counts;
///   unset: no limit), through a [`governor`] rate limiter;
/// - at most `OCEAN__UPSTREAM__MAX_CONCURRENCY` requests at once (default 256, as many as the events in flight);
/// - 429s, retryable 5xx ([`is_retryable_status`](crate::is_retryable_status)),
///   timeouts and connection failures are retried up to `OCEAN__UPSTREAM__MAX_RETRIES` times (default
///   5), waiting what `Retry-After` or `X-RateLimit-Reset` says, else 0.2 s doubling with ±10 %
///   jitter. Such a wait pauses the whole host, not just the request that was told;
/// - an answer with `X-RateLimit-Remaining: 0` pauses the host until its `X-RateLimit-Reset`;
/// - each request times out after `OCEAN__UPSTREAM__TIMEOUT_SECONDS` (default 30) and runs in an
///   `upstream` tracing span.
///
/// `ocean_upstream_requests_total{host,status}`, `ocean_upstream_request_seconds` and
/// `ocean_upstream_rate_limit_waits_total{host}` / `…_wait_seconds_total{host}` count what it does.
///
/// ```no_run
/// use ocean_runtime::prelude::*;
/// # ocean_runtime::kinds!["issue"];
///
/// #[webhook_processor(path = "/webhook", kinds = ["issue"])]
/// async fn issues(event: &WebhookEvent, upstream: State<Upstream>) -> Result<RawResults, ProcessError> {
///     let key = event.str_at("/issue/key")?;
///     let answer = upstream
///         .send(upstream.get(format!("https://jira.example.com/rest/api/2/issue/{key}")))
///         .await?;
///     Ok(RawResults::updated([answer.error_for_status()?.json::<Value>().await?]))
/// }
/// # fn main() {}
/// ```
///
/// Cheap to clone; clones share their limits.
#[derive(Clone)]
pub struct Upstream {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

/// The delay before retry `attempt` (0 first) when the answer says nothing: 0.2 s doubling, at
/// most 30 s, ±10 %.
fn backoff(attempt: u32) -> Duration {
    crate::port::jittered(
        Duration::from_millis(200u64 << attempt.min(10)).min(Duration::from_secs(30)),
    )
}

impl Upstream {
    /// A client with these settings.
    ///
    /// # Errors
    /// The HTTP client could not be built (e.g. no TLS roots).
    pub fn new(settings: UpstreamSettings) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .pool_max_idle_per_host(settings.max_concurrency)
            .build()?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                settings,
                hosts: Mutex::new(HashMap::new()),
                metrics: None,
            }),
        })
    }

    /// Counts its requests in `metrics` (the runtime's own client does).
    #[must_use]
    pub fn with_metrics(self, metrics: Arc<Metrics>) -> Self {
        let inner = Inner {
            http: self.inner.http.clone(),
            settings: self.inner.settings,
            hosts: Mutex::new(HashMap::new()),
            metrics: Some(metrics),
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The settings in force.
    #[must_use]
    pub fn settings(&self) -> UpstreamSettings {
        self.inner.settings
    }

    /// A `GET` to build on (headers, query, auth); send it with [`send`](Self::send).
    pub fn get(&self, url: impl reqwest::IntoUrl) -> reqwest::RequestBuilder {
        self.inner.http.get(url)
    }

    /// Any request to build on; send it with [`send`](Self::send).
    pub fn request(
        &self,
        method: reqwest::Method,
        url: impl reqwest::IntoUrl,
    ) -> reqwest::RequestBuilder {
        self.inner.http.request(method, url)
    }

    fn host(&self, key: &str) -> Arc<Host> {
        let mut hosts = self
            .inner
            .hosts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let settings = self.inner.settings;
        Arc::clone(hosts.entry(key.to_owned()).or_insert_with(|| {
            Arc::new(Host {
                limiter: settings.rate.and_then(|rate| {
                    let quota =
                        Quota::with_period(rate.per / rate.count.get())?.allow_burst(rate.count);
                    Some(RateLimiter::direct(quota))
                }),
                slots: Semaphore::new(settings.max_concurrency.max(1)),
                paused_until: Mutex::new(None),
            })
        }))
    }

    /// Sends `request` within the host's limits, retrying what may succeed later (see
    /// [`Upstream`]). Any answer that is not retried is returned as it is, a 404 or a 400 included.
    ///
    /// # Errors
    /// A retryable failure (status, timeout, connection) still failing after the retries, as a
    /// retryable [`ProcessError`] (so the processor's own retry policy applies next); a request
    /// that could not be built or sent at all, as a permanent one.
    pub async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ProcessError> {
        let request = request
            .build()
            .map_err(|e| ProcessError::permanent("invalid upstream request").with_source(e))?;
        let url = request.url();
        let host_key = format!(
            "{}:{}",
            url.host_str().unwrap_or_default(),
            url.port_or_known_default().unwrap_or_default()
        );
        let host_label = url.host_str().unwrap_or_default().to_owned();
        let host = self.host(&host_key);
        let max_retries = self.inner.settings.max_retries;
        let mut attempt = 0;
        loop {
            let this = request.try_clone().ok_or_else(|| {
                ProcessError::permanent(
                    "an upstream request with a streaming body cannot be retried; send the body from memory",
                )
            })?;
            let last = attempt >= max_retries;
            if let Some(until) = host.paused() {
                tokio::time::sleep_until(until).await;
            }
            let slot = host
                .slots
                .acquire()
                .await
                .map_err(|_| ProcessError::permanent("the upstream client is shutting down"))?;
            if let Some(limiter) = &host.limiter
                && limiter.check().is_err()
            {
                let waited = Instant::now();
                limiter.until_ready().await;
                if let Some(m) = &self.inner.metrics {
                    m.upstream_wait(&host_label, waited.elapsed());
                }
            }
            let span = tracing::debug_span!(
                "upstream",
                method = %this.method(),
                host = %host_label,
                path = this.url().path(),
                attempt = attempt + 1
            );
            let started = Instant::now();
            let result = self.inner.http.execute(this).instrument(span).await;
            let took = started.elapsed();
            if let Some(m) = &self.inner.metrics {
                let status = match &result {
                    Ok(r) => r.status().as_str().to_owned(),
                    Err(e) if e.is_timeout() => "timeout".to_owned(),
                    Err(_) => "transport".to_owned(),
                };
                m.upstream_call(&host_label, &status, took);
            }
            let retry_in = match result {
                Ok(response) if crate::retry::is_retryable_status(response.status().as_u16()) => {
                    let told = crate::port::retry_after(response.headers(), SystemTime::now());
                    if let Some(wait) = told {
                        host.pause(wait);
                    }
                    if last {
                        return Err(ProcessError::retryable(format!(
                            "{host_label} answered {} to {} attempts",
                            response.status(),
                            attempt + 1
                        )));
                    }
                    told.unwrap_or_else(|| backoff(attempt))
                }
                Ok(response) => {
                    let headers = response.headers();
                    if headers
                        .get("x-ratelimit-remaining")
                        .is_some_and(|v| v.as_bytes() == b"0")
                        && let Some(wait) = crate::port::retry_after(headers, SystemTime::now())
                    {
                        tracing::info!(host = %host_label, wait_ms = wait.as_millis() as u64, "upstream rate limit used up; pausing the host until it resets");
                        host.pause(wait);
                    }
                    return Ok(response);
                }
                Err(e) if !last && (e.is_timeout() || e.is_connect() || e.is_request()) => {
                    tracing::debug!(host = %host_label, error = %e, "upstream request failed");
                    backoff(attempt)
                }
                Err(e) => return Err(ProcessError::from(e)),
            };
            tracing::warn!(host = %host_label, attempt = attempt + 1, delay_ms = retry_in.as_millis() as u64, "upstream request failed; retrying");
            drop(slot);
            tokio::time::sleep(retry_in).await;
            attempt += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// What the test upstream saw: when each request came, and the most at once.
    #[derive(Default)]
    struct Seen {
        at: Mutex<Vec<std::time::Instant>>,
        now: AtomicUsize,
        most: AtomicUsize,
    }

    /// A status and headers, for request `n` (from 0).
    type Answer = fn(usize) -> (u16, Vec<(&'static str, String)>);

    /// A loopback upstream answering request `n` (from 0) with `answer(n)` after `delay`.
    async fn upstream(answer: Answer, delay: Duration) -> (String, Arc<Seen>) {
        let seen = Arc::new(Seen::default());
        let app = axum::Router::new().fallback({
            let seen = Arc::clone(&seen);
            move || {
                let seen = Arc::clone(&seen);
                async move {
                    let n = {
                        let mut at = seen.at.lock().unwrap();
                        at.push(std::time::Instant::now());
                        at.len() - 1
                    };
                    let now = seen.now.fetch_add(1, Ordering::SeqCst) + 1;
                    seen.most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(delay).await;
                    seen.now.fetch_sub(1, Ordering::SeqCst);
                    let (status, headers) = answer(n);
                    let mut response =
                        (StatusCode::from_u16(status).unwrap(), format!("answer {n}"))
                            .into_response();
                    for (name, value) in headers {
                        response.headers_mut().insert(name, value.parse().unwrap());
                    }
                    response
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/x", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, seen)
    }

    fn client(settings: UpstreamSettings) -> (Upstream, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::default());
        let client = Upstream::new(settings)
            .unwrap()
            .with_metrics(Arc::clone(&metrics));
        (client, metrics)
    }

    #[tokio::test]
    async fn a_429_is_retried_after_its_retry_after_and_pauses_the_host() {
        let (url, seen) = upstream(
            |n| match n {
                0 => (429, vec![("retry-after", "1".to_owned())]),
                _ => (200, vec![]),
            },
            Duration::ZERO,
        )
        .await;
        let (up, metrics) = client(UpstreamSettings::default());
        let answer = up.send(up.get(&url)).await.unwrap();
        assert_eq!(answer.status(), 200);
        let at = seen.at.lock().unwrap().clone();
        assert_eq!(at.len(), 2);
        assert!(
            at[1] - at[0] >= Duration::from_millis(950),
            "{:?}",
            at[1] - at[0]
        );
        let text = metrics.render(crate::metrics::QueueGauges::default());
        assert!(
            text.contains(r#"ocean_upstream_requests_total{host="127.0.0.1",status="429"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"ocean_upstream_requests_total{host="127.0.0.1",status="200"} 1"#),
            "{text}"
        );
    }

    #[tokio::test]
    async fn server_errors_are_retried_with_backoff_and_end_as_a_retryable_error() {
        let (url, seen) = upstream(|_| (503, vec![]), Duration::ZERO).await;
        let (up, _) = client(UpstreamSettings {
            max_retries: 2,
            ..UpstreamSettings::default()
        });
        let err = up.send(up.get(&url)).await.unwrap_err();
        assert!(err.is_retryable(), "{err}");
        let at = seen.at.lock().unwrap().clone();
        assert_eq!(at.len(), 3, "the first attempt and 2 retries");
        // 0.2 s then 0.4 s, ±10 %.
        assert!(at[1] - at[0] >= Duration::from_millis(170));
        assert!(at[2] - at[1] >= Duration::from_millis(350));
    }

    #[tokio::test]
    async fn other_answers_come_back_as_they_are_without_retries() {
        for status in [200, 404, 400, 501] {
            let (url, seen) = match status {
                200 => upstream(|_| (200, vec![]), Duration::ZERO).await,
                404 => upstream(|_| (404, vec![]), Duration::ZERO).await,
                400 => upstream(|_| (400, vec![]), Duration::ZERO).await,
                _ => upstream(|_| (501, vec![]), Duration::ZERO).await,
            };
            let (up, _) = client(UpstreamSettings::default());
            let answer = up.send(up.get(&url)).await.unwrap();
            assert_eq!(answer.status().as_u16(), status);
            assert_eq!(seen.at.lock().unwrap().len(), 1, "{status} sent once");
        }
    }

    /// 20 requests at 10/s: the first 10 at once (the burst), the next 10 one every 100 ms.
    #[tokio::test]
    async fn the_rate_limit_holds_over_a_bounded_run_and_its_waits_are_counted() {
        let (url, seen) = upstream(|_| (200, vec![]), Duration::ZERO).await;
        let (up, metrics) = client(UpstreamSettings {
            rate: Some("10/s".parse().unwrap()),
            ..UpstreamSettings::default()
        });
        let started = std::time::Instant::now();
        let sends: Vec<_> = (0..20)
            .map(|_| {
                let (up, url) = (up.clone(), url.clone());
                tokio::spawn(async move { up.send(up.get(&url)).await.map(|r| r.status()) })
            })
            .collect();
        for s in sends {
            assert_eq!(s.await.unwrap().unwrap(), 200);
        }
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(900),
            "20 requests at 10/s took {took:?}"
        );
        // A burst of 10, then 10 per second: no window of length w holds more than 10 + 10 w
        // requests (one more for timing at the edges).
        let at = seen.at.lock().unwrap().clone();
        for w in [0.25, 0.5, 0.75] {
            let window = Duration::from_secs_f64(w);
            for (i, first) in at.iter().enumerate() {
                let within = at[i..].iter().filter(|t| **t - *first < window).count();
                let most = 10 + (10.0 * w) as usize + 1;
                assert!(within <= most, "{within} requests within {w} s");
            }
        }
        let text = metrics.render(crate::metrics::QueueGauges::default());
        let waits = crate::testing::metric(
            &text,
            r#"ocean_upstream_rate_limit_waits_total{host="127.0.0.1"}"#,
        );
        assert!(waits >= 9.0, "{waits} waits counted");
    }

    #[tokio::test]
    async fn no_more_than_the_cap_are_sent_at_once() {
        let (url, seen) = upstream(|_| (200, vec![]), Duration::from_millis(50)).await;
        let (up, _) = client(UpstreamSettings {
            max_concurrency: 3,
            ..UpstreamSettings::default()
        });
        let sends: Vec<_> = (0..12)
            .map(|_| {
                let (up, url) = (up.clone(), url.clone());
                tokio::spawn(async move { up.send(up.get(&url)).await.is_ok() })
            })
            .collect();
        for s in sends {
            assert!(s.await.unwrap());
        }
        assert_eq!(seen.most.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_used_up_rate_limit_pauses_the_host_until_it_resets() {
        let (url, seen) = upstream(
            |n| match n {
                0 => (
                    200,
                    vec![
                        ("x-ratelimit-remaining", "0".to_owned()),
                        ("x-ratelimit-reset", "1".to_owned()),
                    ],
                ),
                _ => (200, vec![]),
            },
            Duration::ZERO,
        )
        .await;
        let (up, _) = client(UpstreamSettings::default());
        up.send(up.get(&url)).await.unwrap();
        up.send(up.get(&url)).await.unwrap();
        let at = seen.at.lock().unwrap().clone();
        assert!(
            at[1] - at[0] >= Duration::from_millis(950),
            "{:?}",
            at[1] - at[0]
        );
    }

    #[test]
    fn rates_parse_per_second_minute_and_hour() {
        let r: Rate = "5000/h".parse().unwrap();
        assert_eq!((r.count.get(), r.per), (5000, Duration::from_secs(3600)));
        assert_eq!(
            "10 / s".parse::<Rate>().unwrap().per,
            Duration::from_secs(1)
        );
        for bad in ["0/s", "ten/s", "10", "10/d"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
    }
}
