//! Counters and histograms, served at `/metrics` in Prometheus' text format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histograms' buckets.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// A latency histogram with fixed buckets.
#[derive(Debug)]
struct Histogram {
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: BUCKETS.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_micros.fetch_add(
            u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (bound, count) in BUCKETS.iter().zip(&self.counts) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        let total = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {total}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {total}");
    }
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn bump<K: Ord>(map: &Mutex<BTreeMap<K, u64>>, key: K) {
    *locked(map).entry(key).or_default() += 1;
}

/// Escapes a label value.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Everything the runtime counts.
#[derive(Debug, Default)]
pub struct Metrics {
    received: AtomicU64,
    duplicates: AtomicU64,
    rejected: Mutex<BTreeMap<&'static str, u64>>,
    jobs: Mutex<BTreeMap<(String, String, &'static str), u64>>,
    retries: Mutex<BTreeMap<String, u64>>,
    dead_letters: AtomicU64,
    unsupported: AtomicU64,
    processing: Histogram,
    port_calls: Mutex<BTreeMap<(String, &'static str), u64>>,
    port_latency: Histogram,
    mapping_issues: Mutex<BTreeMap<IssueKey, u64>>,
    mapping_loads: Mutex<BTreeMap<&'static str, u64>>,
    upstream_calls: Mutex<BTreeMap<(String, String), u64>>,
    upstream_latency: Histogram,
    /// Waits for the rate limit by host: how many, and microseconds in all.
    upstream_waits: Mutex<BTreeMap<String, (u64, u64)>>,
}

/// Blueprint, field, kind, severity.
type IssueKey = (String, String, &'static str, &'static str);

/// Queue figures read at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueueGauges {
    /// Events held.
    pub depth: usize,
    /// Age of the oldest held event.
    pub oldest_age: Option<Duration>,
    /// Events dropped as superseded by a later event of their group.
    pub superseded: u64,
    /// Leases that expired and were taken over (shared queue).
    pub takeovers: u64,
    /// Events given up after too many takeovers, kept as dead letters (shared queue).
    pub given_up: u64,
    /// Settles this replica made with a stale fencing token, refused (shared queue).
    pub fenced: u64,
    /// Leases this replica lost while a job ran (shared queue).
    pub leases_lost: u64,
}

impl Metrics {
    /// The mapping was fetched (`outcome`: `applied` a new version, `unchanged`, `refused` a
    /// version that does not compile or fit, `unavailable` when it could not be fetched).
    pub fn mapping_load(&self, outcome: &'static str) {
        bump(&self.mapping_loads, outcome);
    }

    /// A webhook request reached a registered path.
    pub fn received(&self) {
        self.received.fetch_add(1, Ordering::Relaxed);
    }

    /// A delivery was refused (`reason`: `too_large`, `invalid_json`, `unauthorized`, `queue_full`…).
    pub fn rejected(&self, reason: &'static str) {
        bump(&self.rejected, reason);
    }

    /// A delivery id was seen again.
    pub fn duplicate(&self) {
        self.duplicates.fetch_add(1, Ordering::Relaxed);
    }

    /// A job ended (`outcome`: `success`, `failure`, `cancelled`).
    pub fn job(&self, processor: &str, kind: &str, outcome: &'static str) {
        bump(&self.jobs, (processor.to_owned(), kind.to_owned(), outcome));
    }

    /// A handler call is retried.
    pub fn retry(&self, processor: &str) {
        bump(&self.retries, processor.to_owned());
    }

    /// Dead letters were stored.
    pub fn dead_letters(&self, n: usize) {
        self.dead_letters.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// No processor took an event.
    pub fn unsupported(&self) {
        self.unsupported.fetch_add(1, Ordering::Relaxed);
    }

    /// An event was processed (from lease to settle).
    pub fn processed(&self, took: Duration) {
        self.processing.observe(took);
    }

    /// A Port API call ended (`outcome`: `2xx`, `4xx`, `5xx`, `transport`).
    pub fn port_call(&self, method: &str, outcome: &'static str, took: Duration) {
        bump(&self.port_calls, (method.to_owned(), outcome));
        self.port_latency.observe(took);
    }

    /// A request of the upstream client ended (`status`: the HTTP status, `timeout` or
    /// `transport`).
    pub fn upstream_call(&self, host: &str, status: &str, took: Duration) {
        bump(&self.upstream_calls, (host.to_owned(), status.to_owned()));
        self.upstream_latency.observe(took);
    }

    /// A request of the upstream client waited `took` for the host's rate limit.
    pub fn upstream_wait(&self, host: &str, took: Duration) {
        let mut waits = locked(&self.upstream_waits);
        let entry = waits.entry(host.to_owned()).or_default();
        entry.0 += 1;
        entry.1 += u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
    }

    /// A mapping issue on `field` of an entity of `blueprint`: `kind` is `null`, `failed` or
    /// `skipped`, `severity` `error` (a field the blueprint requires) or `warning`.
    pub fn mapping_issue(
        &self,
        blueprint: &str,
        field: &str,
        kind: &'static str,
        severity: &'static str,
    ) {
        bump(
            &self.mapping_issues,
            (blueprint.to_owned(), field.to_owned(), kind, severity),
        );
    }

    /// The text exposition.
    #[must_use]
    pub fn render(&self, queue: QueueGauges) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        counter(
            &mut out,
            "ocean_webhooks_received_total",
            "Webhook requests on registered paths.",
            self.received.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP ocean_webhooks_rejected_total Deliveries refused, by reason.\n# TYPE ocean_webhooks_rejected_total counter"
        );
        for (reason, n) in locked(&self.rejected).iter() {
            let _ = writeln!(
                out,
                "ocean_webhooks_rejected_total{{reason=\"{reason}\"}} {n}"
            );
        }
        counter(
            &mut out,
            "ocean_webhooks_duplicate_total",
            "Deliveries answered as duplicates of an accepted delivery id.",
            self.duplicates.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP ocean_queue_depth Events held by the queue (waiting and in flight).\n# TYPE ocean_queue_depth gauge\nocean_queue_depth {}",
            queue.depth
        );
        let _ = writeln!(
            out,
            "# HELP ocean_queue_oldest_event_age_seconds Age of the oldest held event.\n# TYPE ocean_queue_oldest_event_age_seconds gauge\nocean_queue_oldest_event_age_seconds {}",
            queue.oldest_age.map_or(0.0, |d| d.as_secs_f64())
        );
        counter(
            &mut out,
            "ocean_events_superseded_total",
            "Events dropped because a later event of their group made them unnecessary (latest_only).",
            queue.superseded,
        );
        counter(
            &mut out,
            "ocean_queue_takeovers_total",
            "Leases that expired (their replica died or stalled) and whose events were taken over.",
            queue.takeovers,
        );
        counter(
            &mut out,
            "ocean_queue_given_up_total",
            "Events taken over more than OCEAN__QUEUE__MAX_TAKEOVERS times, kept as dead letters.",
            queue.given_up,
        );
        counter(
            &mut out,
            "ocean_queue_fenced_settles_total",
            "Settles by this replica refused because its lease had been taken over.",
            queue.fenced,
        );
        counter(
            &mut out,
            "ocean_queue_leases_lost_total",
            "Leases this replica lost while a job ran (its jobs were cancelled, not acknowledged).",
            queue.leases_lost,
        );
        let _ = writeln!(
            out,
            "# HELP ocean_jobs_total Processor jobs, by processor, kind and outcome.\n# TYPE ocean_jobs_total counter"
        );
        for ((p, k, o), n) in locked(&self.jobs).iter() {
            let _ = writeln!(
                out,
                "ocean_jobs_total{{processor=\"{}\",kind=\"{}\",outcome=\"{o}\"}} {n}",
                label(p),
                label(k)
            );
        }
        let _ = writeln!(
            out,
            "# HELP ocean_job_retries_total Handler calls retried, by processor.\n# TYPE ocean_job_retries_total counter"
        );
        for (p, n) in locked(&self.retries).iter() {
            let _ = writeln!(
                out,
                "ocean_job_retries_total{{processor=\"{}\"}} {n}",
                label(p)
            );
        }
        counter(
            &mut out,
            "ocean_dead_letters_total",
            "Jobs that failed for good and were kept as dead letters.",
            self.dead_letters.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP ocean_mapping_issues_total Mapped fields that came out null or failed, and items skipped, by blueprint, field, kind and severity.\n# TYPE ocean_mapping_issues_total counter"
        );
        for ((b, f, k, s), n) in locked(&self.mapping_issues).iter() {
            let _ = writeln!(
                out,
                "ocean_mapping_issues_total{{blueprint=\"{}\",field=\"{}\",kind=\"{k}\",severity=\"{s}\"}} {n}",
                label(b),
                label(f)
            );
        }
        let _ = writeln!(
            out,
            "# HELP ocean_mapping_loads_total Mapping fetches, by outcome (applied, unchanged, refused, unavailable).\n# TYPE ocean_mapping_loads_total counter"
        );
        for (outcome, n) in locked(&self.mapping_loads).iter() {
            let _ = writeln!(
                out,
                "ocean_mapping_loads_total{{outcome=\"{outcome}\"}} {n}"
            );
        }
        counter(
            &mut out,
            "ocean_events_unsupported_total",
            "Events no processor took.",
            self.unsupported.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP ocean_event_processing_seconds Time from lease to settle of an event.\n# TYPE ocean_event_processing_seconds histogram"
        );
        self.processing
            .render(&mut out, "ocean_event_processing_seconds", "");
        let _ = writeln!(
            out,
            "# HELP ocean_port_requests_total Port API calls, by method and outcome.\n# TYPE ocean_port_requests_total counter"
        );
        for ((m, o), n) in locked(&self.port_calls).iter() {
            let _ = writeln!(
                out,
                "ocean_port_requests_total{{method=\"{}\",outcome=\"{o}\"}} {n}",
                label(m)
            );
        }
        let _ = writeln!(
            out,
            "# HELP ocean_port_request_seconds Port API call latency.\n# TYPE ocean_port_request_seconds histogram"
        );
        self.port_latency
            .render(&mut out, "ocean_port_request_seconds", "");
        let _ = writeln!(
            out,
            "# HELP ocean_upstream_requests_total Requests of the upstream client, by host and status.\n# TYPE ocean_upstream_requests_total counter"
        );
        for ((host, status), n) in locked(&self.upstream_calls).iter() {
            let _ = writeln!(
                out,
                "ocean_upstream_requests_total{{host=\"{}\",status=\"{}\"}} {n}",
                label(host),
                label(status)
            );
        }
        let _ = writeln!(
            out,
            "# HELP ocean_upstream_request_seconds Upstream request latency.\n# TYPE ocean_upstream_request_seconds histogram"
        );
        self.upstream_latency
            .render(&mut out, "ocean_upstream_request_seconds", "");
        let waits = locked(&self.upstream_waits);
        let _ = writeln!(
            out,
            "# HELP ocean_upstream_rate_limit_waits_total Upstream requests that waited for their host's rate limit.\n# TYPE ocean_upstream_rate_limit_waits_total counter"
        );
        for (host, (n, _)) in waits.iter() {
            let _ = writeln!(
                out,
                "ocean_upstream_rate_limit_waits_total{{host=\"{}\"}} {n}",
                label(host)
            );
        }
        let _ = writeln!(
            out,
            "# HELP ocean_upstream_rate_limit_wait_seconds_total Time spent waiting for the rate limit.\n# TYPE ocean_upstream_rate_limit_wait_seconds_total counter"
        );
        for (host, (_, micros)) in waits.iter() {
            let _ = writeln!(
                out,
                "ocean_upstream_rate_limit_wait_seconds_total{{host=\"{}\"}} {}",
                label(host),
                *micros as f64 / 1e6
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_labels_and_cumulative_buckets() {
        let m = Metrics::default();
        m.received();
        m.received();
        m.rejected("invalid_json");
        m.job("issue\"events", "issue", "success");
        m.processed(Duration::from_millis(3));
        m.processed(Duration::from_millis(40));
        let text = m.render(QueueGauges {
            depth: 5,
            oldest_age: Some(Duration::from_secs(2)),
            superseded: 3,
            ..Default::default()
        });
        for line in [
            "ocean_webhooks_received_total 2",
            "ocean_webhooks_rejected_total{reason=\"invalid_json\"} 1",
            "ocean_jobs_total{processor=\"issue\\\"events\",kind=\"issue\",outcome=\"success\"} 1",
            "ocean_queue_depth 5",
            "ocean_events_superseded_total 3",
            "ocean_queue_oldest_event_age_seconds 2",
            "ocean_event_processing_seconds_bucket{le=\"0.0025\"} 0",
            "ocean_event_processing_seconds_bucket{le=\"0.005\"} 1",
            "ocean_event_processing_seconds_bucket{le=\"0.05\"} 2",
            "ocean_event_processing_seconds_bucket{le=\"+Inf\"} 2",
            "ocean_event_processing_seconds_count 2",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
    }
}
