//! The workers: select processors → authorize → validate → handle (retry, timeout) → map → apply
//! to Port → ack.
//!
//! In: leases from the queue (an event in its envelope). Out: entities upserted and deleted in
//! Port (`apply`), dead letters for what failed for good, and an ack or a retry for every lease.

mod apply;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::join_all;
use ocean_jq::Input;
use tokio::sync::watch;
use tracing::Instrument;

use crate::envelope::Envelope;
use crate::extract::Extensions;
use crate::mapping::{CompiledMapping, MappingStore, ResourceConfig};
use crate::metrics::Metrics;
use crate::port::{PortClient, UpsertBatcher};
use crate::processor::{JobContext, ProcessError, RawResults};
use crate::queue::{DeadLetter, EventQueue, Lease, QueueError, ack_with};
use crate::registry::{RegisteredProcessor, Registry};

pub(crate) use apply::Applied;

/// What became of one event.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Jobs ran and their results were applied to Port.
    Applied(Applied),
    /// No processor selected the event (recorded, not retried).
    Unsupported,
    /// Processors selected the event but no mapping resource has their kinds.
    NoResource,
    /// No mapping is loaded yet; the event waits.
    NoMapping,
    /// Port could not be written to for now; the event waits and is processed again.
    PortUnavailable(String),
    /// The app is shutting down; the event's jobs were cancelled and it stays unacknowledged.
    Cancelled,
    /// The lease was lost (taken over by another replica, or not renewed in time); the event's
    /// jobs were cancelled and nothing was written for it here.
    LeaseLost,
}

impl Outcome {
    /// A short name for logs.
    fn label(&self) -> &'static str {
        match self {
            Self::Applied(_) => "applied",
            Self::Unsupported => "unsupported",
            Self::NoResource => "no resource",
            Self::NoMapping => "no mapping",
            Self::PortUnavailable(_) => "Port unavailable",
            Self::Cancelled => "cancelled",
            Self::LeaseLost => "lease lost",
        }
    }
}

/// The per-event processing, shared by all workers.
pub(crate) struct Pipeline {
    registry: Arc<Registry>,
    mapping: Arc<MappingStore>,
    /// Port writes; upserts of concurrent events share requests.
    port: Arc<UpsertBatcher>,
    job_timeout: Duration,
    extensions: Arc<Extensions>,
    cancel: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
    /// Events in a row that could not be applied because Port or the mapping was unavailable.
    unavailable: AtomicU32,
    /// Until when workers leave the queue alone: Port (or the mapping) is unavailable for every
    /// event, so cycling each queued event through a failed attempt would only burn CPU and logs.
    paused_until: std::sync::Mutex<Option<tokio::time::Instant>>,
    /// Mapping issues, counted and logged at a bounded rate.
    issue_log: apply::IssueLog,
}

/// Cancels the jobs in flight (their `on_cancel` hooks run) when the app stops.
#[derive(Debug)]
pub(crate) struct Canceller(watch::Sender<bool>);

impl Canceller {
    /// Cancels every job in flight and every job started from now on.
    pub(crate) fn cancel(&self) {
        self.0.send_replace(true);
    }
}

enum JobEnd {
    /// The job's result and how many times the handler was called.
    Done(Result<RawResults, ProcessError>, u32),
    Cancelled,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("job_timeout", &self.job_timeout)
            .finish_non_exhaustive()
    }
}

struct Job<'a> {
    processor: &'a RegisteredProcessor,
    resource: &'a ResourceConfig,
    index: usize,
}

/// The dead letter of a job that failed for good.
fn dead_letter(
    envelope: &Envelope,
    job: &Job<'_>,
    error: &ProcessError,
    attempts: u32,
) -> DeadLetter {
    let stored = crate::queue::stored_json(envelope);
    let event = &envelope.event;
    DeadLetter {
        id: 0,
        event_id: event.id().to_owned(),
        path: event.path().to_owned(),
        processor: job.processor.name().to_owned(),
        resource: job.index,
        kind: job.resource.kind.clone(),
        error: error.to_string(),
        attempts,
        failed_at_ms: crate::event::unix_ms(std::time::SystemTime::now()),
        event: stored,
        refused: Vec::new(),
    }
}

/// The one dead letter of an event some of whose entities Port refused for good: it lists them with
/// Port's answers; replaying it runs the event again, which writes them.
fn refused_letter(envelope: &Envelope, delivery: u32, applied: &Applied) -> DeadLetter {
    let first = &applied.refused[0];
    let more = match applied.refused.len() {
        1 => String::new(),
        n => format!(" (and {} more)", n - 1),
    };
    let mut letter = DeadLetter::of_event(
        envelope,
        format!(
            "Port refused {} of the event's entities: {} `{}` of {}: {}{more}",
            applied.refused.len(),
            first.operation,
            first
                .identifier
                .as_str()
                .map_or_else(|| first.identifier.to_string(), str::to_owned),
            first.blueprint,
            first.reason
        ),
        delivery,
        crate::event::unix_ms(std::time::SystemTime::now()),
    );
    letter.refused.clone_from(&applied.refused);
    letter
}

/// The message a panic carried, when it is text.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(not text)")
}

/// Delay before an event that could not be applied is handed out again: 1 s doubling, at most 60 s.
fn redelivery_delay(delivery: u32) -> Duration {
    Duration::from_secs(1u64 << delivery.saturating_sub(1).min(6)).min(Duration::from_secs(60))
}

impl Pipeline {
    /// A pipeline over these parts; `job_timeout` bounds each processor job unless the processor sets its own.
    #[must_use]
    pub(crate) fn new(
        registry: Arc<Registry>,
        mapping: Arc<MappingStore>,
        port: Arc<PortClient>,
        job_timeout: Duration,
        extensions: Arc<Extensions>,
        metrics: Arc<Metrics>,
    ) -> (Self, Canceller) {
        let (tx, cancel) = watch::channel(false);
        (
            Self {
                registry,
                mapping,
                port: UpsertBatcher::new(port),
                job_timeout,
                extensions,
                cancel,
                metrics,
                unavailable: AtomicU32::new(0),
                paused_until: std::sync::Mutex::new(None),
                issue_log: apply::IssueLog::default(),
            },
            Canceller(tx),
        )
    }

    fn select<'a>(
        &'a self,
        envelope: &Envelope,
        payload: &Input<'_>,
        mapping: &'a CompiledMapping,
    ) -> Option<Vec<Job<'a>>> {
        let event = &envelope.event;
        let processors = self.registry.processors(event.path())?;
        let mut selected_any = false;
        let mut jobs = Vec::new();
        let authentic = |p: &&RegisteredProcessor| {
            let refused = envelope.unauthenticated().iter().any(|n| n == p.name());
            if refused {
                tracing::debug!(
                    processor = p.name(),
                    "its verifier refused the delivery; skipped"
                );
            }
            !refused
        };
        for processor in processors
            .iter()
            .filter(authentic)
            .filter(|p| p.selects(event, payload))
        {
            selected_any = true;
            let before = jobs.len();
            for kind in processor.kinds_for(event) {
                for (index, resource) in mapping.resources_of(&kind) {
                    jobs.push(Job {
                        processor,
                        resource,
                        index,
                    });
                }
            }
            if jobs.len() == before {
                tracing::info!(
                    processor = processor.name(),
                    "no mapping resource has this processor's kinds; skipped"
                );
            }
        }
        selected_any.then_some(jobs)
    }

    async fn run_job(&self, job: &Job<'_>, lease: &Lease, payload: &Input<'_>) -> JobEnd {
        let event = &lease.envelope.event;
        let p = job.processor.processor();
        let limit = p.timeout().unwrap_or(self.job_timeout);
        let first = JobContext::new(event, job.resource, job.index, 1, &self.extensions);
        let attempts = AtomicU32::new(0);
        let work = async {
            let checked = async {
                p.authorize(event).await?;
                job.processor.validate_payload(payload)?;
                p.validate(event)
            };
            if let Err(e) = checked.await {
                p.on_error(&first, &e).await;
                return Err(e);
            }
            p.before(&first).await;
            let policy = p.retry_policy();
            let mut retry = 0;
            loop {
                attempts.store(retry + 1, Ordering::Relaxed);
                let ctx =
                    JobContext::new(event, job.resource, job.index, retry + 1, &self.extensions);
                match p.handle(&ctx).await {
                    Ok(results) => {
                        p.after(&ctx, &results).await;
                        return Ok(results);
                    }
                    Err(e) => {
                        p.on_error(&ctx, &e).await;
                        match policy.delay(retry).filter(|_| e.is_retryable()) {
                            Some(delay) => {
                                tracing::warn!(attempt = retry + 1, delay_ms = delay.as_millis() as u64, error = %e, "handler failed; retrying");
                                self.metrics.retry(job.processor.name());
                                tokio::time::sleep(delay).await;
                                retry += 1;
                            }
                            None => return Err(e),
                        }
                    }
                }
            }
        };
        let span = tracing::info_span!("process", processor = job.processor.name(), kind = %job.resource.kind, resource = job.index);
        tracing::debug!(
            processor = job.processor.name(),
            resource = job.index,
            "job started"
        );
        let mut cancel = self.cancel.clone();
        let cancelled = async move {
            tokio::select! {
                _ = cancel.wait_for(|c| *c) => {}
                () = lease.lost() => {}
            }
        };
        // A panicking handler fails its job for good (a dead letter naming the panic) instead of
        // taking the worker down with the event's lease.
        let work = AssertUnwindSafe(work.instrument(span)).catch_unwind();
        tokio::select! {
            r = tokio::time::timeout(limit, work) => match r {
                Ok(Ok(result)) => JobEnd::Done(result, attempts.load(Ordering::Relaxed)),
                Ok(Err(panic)) => {
                    let e = ProcessError::permanent(format!(
                        "processor panicked: {}",
                        panic_message(&*panic)
                    ));
                    p.on_error(&first, &e).await;
                    JobEnd::Done(Err(e), attempts.load(Ordering::Relaxed))
                }
                Err(_) => {
                    p.on_cancel(event).await;
                    let e = ProcessError::permanent(format!(
                        "processor timed out after {:.1} s",
                        limit.as_secs_f64()
                    ));
                    p.on_error(&first, &e).await;
                    JobEnd::Done(Err(e), attempts.load(Ordering::Relaxed))
                }
            },
            () = cancelled => {
                p.on_cancel(event).await;
                JobEnd::Cancelled
            }
        }
    }

    /// Processes one leased event to the end: select, run the jobs concurrently, map, apply. The
    /// jobs are cancelled if the lease is lost, and nothing is written to Port unless the lease is
    /// still held just before.
    pub(crate) async fn process(&self, lease: &Lease) -> Outcome {
        let event = &lease.envelope.event;
        let Some(mapping) = self.mapping.current() else {
            return Outcome::NoMapping;
        };
        // Shared by every jq program of this event (matchers and validators): converted to jaq's
        // values at most once, and only if a program is outside the directly evaluated subset.
        let payload = Input::new(event.payload());
        let payload = &payload;
        let Some(jobs) = self.select(&lease.envelope, payload, &mapping) else {
            tracing::warn!(
                path = event.path(),
                "no processor selected the event (unsupported event)"
            );
            self.metrics.unsupported();
            return Outcome::Unsupported;
        };
        if jobs.is_empty() {
            return Outcome::NoResource;
        }
        let results = join_all(
            jobs.iter()
                .map(|job| async move { (job, self.run_job(job, lease, payload).await) }),
        )
        .await;
        let mut successes = Vec::new();
        let mut dead_letters = Vec::new();
        for (job, end) in results {
            match end {
                JobEnd::Done(Ok(raw), _) => {
                    self.metrics
                        .job(job.processor.name(), &job.resource.kind, "success");
                    successes.push((job.index, raw));
                }
                JobEnd::Done(Err(e), attempts) => {
                    self.metrics
                        .job(job.processor.name(), &job.resource.kind, "failure");
                    tracing::error!(processor = job.processor.name(), resource = job.index, attempts, error = %e, "job failed for good; kept as a dead letter");
                    dead_letters.push(dead_letter(&lease.envelope, job, &e, attempts));
                }
                JobEnd::Cancelled => {
                    self.metrics
                        .job(job.processor.name(), &job.resource.kind, "cancelled");
                    return if lease.is_held() {
                        Outcome::Cancelled
                    } else {
                        Outcome::LeaseLost
                    };
                }
            }
        }
        // Redis cannot fence writes to Port: a replica whose lease may have passed to another
        // writes nothing (checked by this process's clock, with a margin; see `Lease::is_held`).
        if !lease.is_held() {
            return Outcome::LeaseLost;
        }
        tracing::debug!(results = successes.len(), "jobs done; applying");
        match apply::apply(
            &self.port,
            &mapping,
            &successes,
            &self.issue_log,
            &self.metrics,
        )
        .await
        {
            Ok(mut applied) => {
                if !applied.refused.is_empty() {
                    dead_letters.push(refused_letter(&lease.envelope, lease.delivery, &applied));
                }
                applied.dead_letters = dead_letters;
                Outcome::Applied(applied)
            }
            // Unreachable, throttled, failing or refusing the credentials (which the client logs
            // with the variables to check): the event waits, and the workers pause.
            Err(e) => Outcome::PortUnavailable(e.to_string()),
        }
    }

    /// Runs one worker: pulls events until the queue closes, processes each, then acks it or puts it
    /// back for later when it could not be applied yet.
    ///
    /// While Port or the mapping is unavailable, workers pause (1 s doubling to 60 s, like an
    /// event's redelivery) instead of taking every queued event through a failed attempt; the
    /// events wait in the queue, and one attempt after each pause probes whether Port is back.
    pub(crate) async fn work(self: Arc<Self>, queue: Arc<dyn EventQueue>) {
        // The event leased together with the last ack, if the queue did (a shared queue).
        let mut next: Option<Lease> = None;
        loop {
            self.wait_while_paused().await;
            let lease = match next.take() {
                Some(lease) => lease,
                None => match queue.pull().await {
                    Some(lease) => lease,
                    None => break,
                },
            };
            let handled = AssertUnwindSafe(self.handle_lease(&*queue, &lease))
                .catch_unwind()
                .await;
            match handled {
                Ok(leased) => next = leased,
                Err(panic) => {
                    self.after_panic(&*queue, &lease, panic_message(&*panic))
                        .await;
                }
            }
        }
    }

    /// A panic outside every job (handlers' panics are caught in their jobs) would otherwise leave
    /// the event leased for good: it is kept as a dead letter naming the panic, and the worker
    /// goes on.
    async fn after_panic(&self, queue: &dyn EventQueue, lease: &Lease, message: &str) {
        let event = &lease.envelope.event;
        tracing::error!(
            event_id = event.id(),
            panic = message,
            "the worker panicked on this event; it is kept as a dead letter"
        );
        let letter = DeadLetter::of_event(
            &lease.envelope,
            format!("the worker panicked: {message}"),
            lease.delivery,
            crate::event::unix_ms(std::time::SystemTime::now()),
        );
        self.metrics.dead_letters(1);
        if let Err(e) = queue.ack_dead(lease, vec![letter]).await {
            tracing::error!(error = %e, "queue refused to keep the event as a dead letter");
        }
    }

    fn paused_until(&self) -> std::sync::MutexGuard<'_, Option<tokio::time::Instant>> {
        self.paused_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn wait_while_paused(&self) {
        let Some(until) = *self.paused_until() else {
            return;
        };
        let mut cancel = self.cancel.clone();
        tokio::select! {
            () = tokio::time::sleep_until(until) => {}
            _ = cancel.wait_for(|c| *c) => {}
        }
    }

    /// Records whether Port (and the mapping) could take the last event.
    fn port_available(&self, available: bool) {
        if available {
            if self.unavailable.swap(0, Ordering::Relaxed) > 0 {
                *self.paused_until() = None;
                tracing::info!("Port is available again; processing resumes");
            }
            return;
        }
        let failures = self.unavailable.fetch_add(1, Ordering::Relaxed) + 1;
        let pause = redelivery_delay(failures);
        *self.paused_until() = Some(tokio::time::Instant::now() + pause);
    }

    /// Processes and settles one lease; returns the next lease when the queue handed one out with
    /// the ack.
    async fn handle_lease(&self, queue: &dyn EventQueue, lease: &Lease) -> Option<Lease> {
        let span = tracing::info_span!(
            "event",
            event_id = lease.envelope.event.id(),
            path = lease.envelope.event.path(),
            delivery = lease.delivery
        );
        // Instrumented, not entered: a guard held across an await would leave the span entered on
        // whichever thread runs other tasks meanwhile.
        self.process_and_settle(queue, lease).instrument(span).await
    }

    async fn process_and_settle(&self, queue: &dyn EventQueue, lease: &Lease) -> Option<Lease> {
        let started = std::time::Instant::now();
        tracing::debug!(seq = lease.seq, "leased");
        let outcome = self.process(lease).await;
        tracing::debug!(outcome = outcome.label(), "processed; settling");
        self.port_available(!matches!(
            outcome,
            Outcome::NoMapping | Outcome::PortUnavailable(_)
        ));
        let later = match &outcome {
            Outcome::NoMapping => Some("no mapping is loaded yet".to_owned()),
            Outcome::PortUnavailable(e) => Some(e.clone()),
            Outcome::Applied(a) => {
                tracing::debug!(
                    upserted = a.upserted,
                    deleted = a.deleted,
                    failed = a.failed,
                    "event applied"
                );
                None
            }
            Outcome::Unsupported | Outcome::NoResource => None,
            Outcome::Cancelled => {
                tracing::warn!("cancelled by shutdown; the event is left unacknowledged");
                return None;
            }
            Outcome::LeaseLost => {
                tracing::warn!(
                    "the lease was lost; the event is left to the replica that takes it over"
                );
                queue.give_up(lease).await;
                return None;
            }
        };
        let dead_letters = match outcome {
            Outcome::Applied(a) => a.dead_letters,
            _ => Vec::new(),
        };
        let (result, next) = match later {
            Some(reason) => {
                let delay = redelivery_delay(lease.delivery);
                tracing::warn!(
                    reason,
                    delay_ms = delay.as_millis() as u64,
                    "event not applied; will process it again"
                );
                (queue.retry_later(lease, delay).await, None)
            }
            None => {
                self.metrics.dead_letters(dead_letters.len());
                if *self.cancel.borrow() {
                    // Shutting down: nothing more is leased to this worker.
                    (ack_with(queue, lease, dead_letters).await, None)
                } else {
                    queue.ack_and_lease_next(lease, dead_letters).await
                }
            }
        };
        self.metrics.processed(started.elapsed());
        match result {
            Ok(()) => {}
            // Logged by the queue; another replica holds the event now.
            Err(QueueError::Fenced(_)) => {}
            Err(e) => tracing::error!(error = %e, "queue refused to settle the event"),
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With no mapping loaded (as with Port down), workers pause after a failed attempt instead of
    /// taking every queued event through one.
    #[tokio::test(start_paused = true)]
    async fn workers_pause_while_nothing_can_be_applied() {
        #![allow(clippy::unwrap_used)]
        use crate::queue::MemoryQueue;
        let port = Arc::new(crate::port::test_client("http://127.0.0.1:9".into()));
        let mapping = Arc::new(MappingStore::new(crate::mapping::MappingSource::File(
            "/nonexistent/port-app-config.yml".into(),
        )));
        let (pipeline, _cancel) = Pipeline::new(
            Arc::new(Registry::default()),
            mapping,
            port,
            Duration::from_secs(5),
            Arc::new(Extensions::default()),
            Arc::new(Metrics::default()),
        );
        let pipeline = Arc::new(pipeline);
        let queue = Arc::new(MemoryQueue::new(100));
        for n in 0..20 {
            let e = crate::event::WebhookEvent::new(n.to_string(), "/w", [], "{}".to_owned());
            queue.push(Envelope::new(e.unwrap())).await.unwrap();
        }
        let workers: Vec<_> = (0..2)
            .map(|_| {
                tokio::spawn(Arc::clone(&pipeline).work(Arc::clone(&queue) as Arc<dyn EventQueue>))
            })
            .collect();
        // Half a second (of the paused clock) in: at most one attempt per worker, not 20.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let first = pipeline.unavailable.load(Ordering::Relaxed);
        assert!((1..=2).contains(&first), "{first} attempts");
        // The pause (1 s) ends once: at most one more attempt per worker; the next pause is 2 s.
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        let second = pipeline.unavailable.load(Ordering::Relaxed);
        assert!(
            second > first && second <= first + 2,
            "{first} then {second} attempts"
        );
        assert_eq!(queue.depth(), 20, "every event still queued");
        queue.close();
        for w in workers {
            w.abort();
        }
    }

    #[test]
    fn redelivery_backs_off_to_a_minute() {
        let d: Vec<_> = [1, 2, 3, 7, 8, 50]
            .iter()
            .map(|n| redelivery_delay(*n).as_secs())
            .collect();
        assert_eq!(d, [1, 2, 4, 60, 60, 60]);
    }
}
