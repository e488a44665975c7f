//! The event queue between ingress and the workers, with lease semantics, and the two stores that
//! live beside it: dead letters and the delivery log.
//!
//! Three interfaces, each implemented by every backend:
//!
//! - [`EventQueue`], the queue proper. Ingress [`push`](EventQueue::push)es an event and answers
//!   the sender only once the backend holds it. A worker [`pull`](EventQueue::pull)s a [`Lease`];
//!   the event stays in the queue until the worker [`ack`](EventQueue::ack)s it, puts it back with
//!   [`retry_later`](EventQueue::retry_later), or acks it with dead letters
//!   ([`ack_dead`](EventQueue::ack_dead)). Events sharing a group key are handed out one at a time,
//!   in arrival order.
//! - [`DeadLetterStore`]: jobs that failed for good, to list, inspect, replay and purge.
//! - [`DeliveryLog`]: the delivery ids accepted recently, so that a redelivery is recognised after a
//!   restart. A backend shared by several replicas records delivery ids inside
//!   [`push`](EventQueue::push) instead (one atomic step), and answers [`Pushed::Duplicate`].
//!
//! Backends: [`MemoryQueue`] (fastest, lost on a crash), [`DiskQueue`] (the default: redb, group
//! commits) and [`RedisQueue`] (several replicas share one queue; leases carry a fencing token).
//! Memory and disk share one scheduling core (`sched`); Redis schedules inside Lua scripts.

pub(crate) mod disk;
mod memory;
pub(crate) mod redis;
mod sched;

#[cfg(test)]
mod contract;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

pub(crate) use crate::envelope::RecordError;
pub(crate) use crate::group_commit::StorageError;
pub(crate) use disk::{DiskQueue, DiskQueueError};
pub(crate) use memory::MemoryQueue;
pub(crate) use redis::redact as redact_url;
pub(crate) use redis::{RedisOptions, RedisQueue, RedisQueueError};

use crate::envelope::Envelope;
use crate::metrics::QueueGauges;
use crate::processor::BoxFuture;

/// What a networked lease shares with its holder's renewal loop: whether it is still held.
#[derive(Debug)]
pub(crate) struct Hold {
    /// Becomes `true` once the lease is lost (taken over, or not renewed in time).
    lost: tokio::sync::watch::Sender<bool>,
    /// Until when the holder may act on the lease, by this process's monotonic clock.
    valid_until: Mutex<Instant>,
}

impl Hold {
    pub(crate) fn new(valid_until: Instant) -> Arc<Self> {
        Arc::new(Self {
            lost: tokio::sync::watch::Sender::new(false),
            valid_until: Mutex::new(valid_until),
        })
    }

    pub(crate) fn extend(&self, until: Instant) {
        *self
            .valid_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = until;
    }

    pub(crate) fn valid_until(&self) -> Instant {
        *self
            .valid_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks the lease lost; its jobs are cancelled.
    pub(crate) fn lose(&self) {
        self.lost.send_replace(true);
    }

    pub(crate) fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }
}

/// An event handed to one worker until it settles it (ack, retry later, dead letter).
#[derive(Debug, Clone)]
pub(crate) struct Lease {
    /// Arrival order, unique in the queue.
    pub seq: u64,
    /// The event with its scheduling facts.
    pub envelope: Arc<Envelope>,
    /// How many times the event has been handed out, this time included.
    pub delivery: u32,
    /// The fencing token: a settle carrying an older token than the queue's is refused
    /// ([`QueueError::Fenced`]). Always 0 for a queue inside one process.
    pub token: u64,
    hold: Option<Arc<Hold>>,
}

impl Lease {
    /// A lease of a queue inside this process: held until settled.
    #[must_use]
    pub(crate) fn local(seq: u64, envelope: Arc<Envelope>, delivery: u32) -> Self {
        Self {
            seq,
            envelope,
            delivery,
            token: 0,
            hold: None,
        }
    }

    pub(crate) fn networked(
        seq: u64,
        envelope: Arc<Envelope>,
        delivery: u32,
        token: u64,
        hold: Arc<Hold>,
    ) -> Self {
        Self {
            seq,
            envelope,
            delivery,
            token,
            hold: Some(hold),
        }
    }

    /// Whether this worker may still act on the event: always for a queue inside this process; for
    /// a shared queue, until the lease is lost or its renewal is overdue (then another replica may
    /// take the event over, so this one must not write its results).
    #[must_use]
    pub(crate) fn is_held(&self) -> bool {
        self.hold
            .as_ref()
            .is_none_or(|h| !h.is_lost() && Instant::now() < h.valid_until())
    }

    /// Resolves once the lease is lost (never for a queue inside this process).
    pub(crate) async fn lost(&self) {
        match &self.hold {
            Some(hold) => {
                let mut rx = hold.lost.subscribe();
                let _ = rx.wait_for(|lost| *lost).await;
            }
            None => std::future::pending().await,
        }
    }
}

/// A job that failed for good (permanent error, retries used up, time limit), or an event taken
/// over too often, kept with its event so that an operator can inspect and replay it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct DeadLetter {
    /// Assigned by the store.
    pub id: u64,
    /// The event's id (as answered to the sender).
    pub event_id: String,
    /// The path the event came in on.
    pub path: String,
    /// The processor whose job failed (empty for an event the queue gave up on).
    pub processor: String,
    /// The mapping resource of the job.
    pub resource: usize,
    /// Its kind (empty for an event the queue gave up on).
    pub kind: String,
    /// The last error.
    pub error: String,
    /// Handler calls made (deliveries, for an event the queue gave up on).
    pub attempts: u32,
    /// When it failed, in milliseconds since the Unix epoch.
    pub failed_at_ms: u64,
    /// The event as stored: its id, path, headers, body and scheduling facts, as JSON.
    pub event: serde_json::Value,
    /// The entities Port refused for good, when that is why the event is here (its other changes
    /// were written). Replaying the event writes them again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<RefusedEntity>,
}

/// Whether a header may carry a secret: credentials (`authorization`, `proxy-authorization`,
/// `cookie`, `set-cookie`) or a name containing `signature`, `token`, `secret`, `password`,
/// `api-key`/`apikey` or `auth` (`X-Hub-Signature-256`, `X-Gitlab-Token`, `webhook-signature`…).
#[must_use]
pub(crate) fn is_secret_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    matches!(name.as_str(), "cookie" | "set-cookie")
        || [
            "auth",
            "signature",
            "token",
            "secret",
            "password",
            "api-key",
            "apikey",
            "api_key",
        ]
        .iter()
        .any(|part| name.contains(part))
}

/// An entity that Port refused for good, as kept in its event's [`DeadLetter`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct RefusedEntity {
    /// Its blueprint.
    pub blueprint: String,
    /// Its identifier as sent.
    pub identifier: serde_json::Value,
    /// `upsert` or `delete`.
    pub operation: String,
    /// Port's status: the entity's own (`statusCode`) when Port refused it alone in an answer
    /// that accepted the others (a 207), or that of the request Port refused as a whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Port's answer.
    pub reason: String,
}

impl DeadLetter {
    /// The event with its scheduling facts, to process again.
    ///
    /// # Errors
    /// The stored event is unreadable.
    pub(crate) fn to_envelope(&self) -> Result<Envelope, RecordError> {
        let bytes = serde_json::to_vec(&self.event)
            .map_err(|e| RecordError::Malformed(std::sync::Arc::new(e)))?;
        Envelope::from_stored(&bytes)
    }

    /// A copy to show (over HTTP or the CLI), in which the values of secret-bearing headers
    /// (see [`is_secret_header`]) read `[redacted]`. The stored letter stays byte-exact, so that a
    /// replay still carries the signature its verifier checks.
    #[must_use]
    pub(crate) fn redacted(&self) -> Self {
        let mut shown = self.clone();
        if let Some(headers) = shown
            .event
            .get_mut("headers")
            .and_then(serde_json::Value::as_array_mut)
        {
            for pair in headers {
                let secret = pair
                    .get(0)
                    .and_then(serde_json::Value::as_str)
                    .is_some_and(is_secret_header);
                if secret && let Some(value) = pair.get_mut(1) {
                    *value = serde_json::Value::String("[redacted]".to_owned());
                }
            }
        }
        shown
    }

    /// The dead letter of an event the queue gave up on (no processor's job failed).
    pub(crate) fn of_event(
        envelope: &Envelope,
        error: String,
        attempts: u32,
        failed_at_ms: u64,
    ) -> Self {
        Self {
            id: 0,
            event_id: envelope.event.id().to_owned(),
            path: envelope.event.path().to_owned(),
            processor: String::new(),
            resource: 0,
            kind: String::new(),
            error,
            attempts,
            failed_at_ms,
            event: stored_json(envelope),
            refused: Vec::new(),
        }
    }
}

/// Acks `lease`, storing its dead letters with it when there are any.
pub(crate) async fn ack_with<Q: EventQueue + ?Sized>(
    queue: &Q,
    lease: &Lease,
    letters: Vec<DeadLetter>,
) -> Result<(), QueueError> {
    if letters.is_empty() {
        queue.ack(lease).await
    } else {
        queue.ack_dead(lease, letters).await
    }
}

/// The event as [`DeadLetter::event`] holds it.
pub(crate) fn stored_json(envelope: &Envelope) -> serde_json::Value {
    envelope
        .to_stored()
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(serde_json::Value::Null)
}

/// A queue operation that failed.
///
/// The cause of a webhook answered 503 or a worker that could not settle an event; see
/// `OCEAN__QUEUE__BACKEND` on [`Settings`](crate::Settings).
#[derive(Debug, Clone, thiserror::Error)]
pub enum QueueError {
    /// The queue holds as many events as it may.
    #[error("the event queue is full ({capacity} events)")]
    Full {
        /// The configured capacity.
        capacity: usize,
    },
    /// The queue was closed for shutdown.
    #[error("the event queue is closed")]
    Closed,
    /// The lease is not held (already settled).
    #[error("lease {0} is not held")]
    UnknownLease(u64),
    /// The lease was taken over by another replica (its fencing token is stale); the settle was
    /// refused and changed nothing.
    #[error("the lease of event {0} was taken over by another replica; the settle was refused")]
    Fenced(u64),
    /// The durable store failed.
    #[error("the event queue could not store the change: {0}")]
    Storage(#[from] StorageError),
    /// The backend cannot be reached for now (e.g. Redis is down); nothing was changed.
    #[error("the event queue is unavailable: {0}")]
    Unavailable(String),
}

/// What [`EventQueue::push`] did with an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Stored.
    Queued,
    /// Not stored: the same delivery id was accepted within the window, as this event id.
    Duplicate(String),
}

/// The queue proper.
pub(crate) trait EventQueue: Send + Sync + 'static {
    /// Stores an event; when this returns `Ok(Pushed::Queued)` the event is held with the
    /// backend's durability.
    fn push(&self, envelope: Envelope) -> BoxFuture<'_, Result<Pushed, QueueError>>;

    /// Waits for the next event that is due and leases it; `None` once the queue is closed.
    fn pull(&self) -> BoxFuture<'_, Option<Lease>>;

    /// Removes a leased event for good.
    fn ack<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<(), QueueError>>;

    /// Puts a leased event back, to be handed out again after `delay`, at the head of its groups.
    fn retry_later<'a>(
        &'a self,
        lease: &'a Lease,
        delay: Duration,
    ) -> BoxFuture<'a, Result<(), QueueError>>;

    /// Stores dead letters (their `id`s are assigned by the store) and acks the lease, together.
    fn ack_dead<'a>(
        &'a self,
        lease: &'a Lease,
        letters: Vec<DeadLetter>,
    ) -> BoxFuture<'a, Result<(), QueueError>>;

    /// Acks `lease` (with its dead letters, if any) and, where the backend can do both in one
    /// step, leases the next due event to the caller: a worker's settle and next pull share one
    /// round trip to a shared queue. `None` when nothing was leased (the caller pulls as usual).
    fn ack_and_lease_next<'a>(
        &'a self,
        lease: &'a Lease,
        letters: Vec<DeadLetter>,
    ) -> BoxFuture<'a, (Result<(), QueueError>, Option<Lease>)> {
        Box::pin(async move { (ack_with(self, lease, letters).await, None) })
    }

    /// Depth, oldest event's age and counters, as the backend sees them (for a shared backend,
    /// the same figures on every replica).
    fn stats(&self) -> BoxFuture<'_, Result<QueueGauges, QueueError>>;

    /// Whether the backend can be used now (`Err` with the reason when not).
    fn health(&self) -> BoxFuture<'_, Result<(), QueueError>> {
        Box::pin(async move {
            if self.is_closed() {
                Err(QueueError::Closed)
            } else {
                Ok(())
            }
        })
    }

    /// Stops handing out events; waiting `pull`s return `None`, `push` fails with [`QueueError::Closed`].
    fn close(&self);

    /// Whether [`close`](Self::close) was called.
    fn is_closed(&self) -> bool;

    /// Whether held events survive a crash or restart of this process.
    fn durable(&self) -> bool {
        false
    }

    /// Whether several replicas share this queue: shutdown then does not wait for it to drain.
    fn shared(&self) -> bool {
        false
    }

    /// Gives one lease back without settling it, when its worker stopped working on the event
    /// because the lease may have passed to another replica ([`Lease::is_held`] turned false):
    /// the event is handed out again unless another replica holds it already. Nothing to do for a
    /// queue inside one process, whose leases are always held.
    fn give_up<'a>(&'a self, _lease: &'a Lease) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }

    /// Gives back, at once, the leases this process still holds (shutdown, after its own jobs
    /// stopped), so that other replicas take the events up without waiting for the leases to
    /// expire. Nothing to do for a queue inside one process.
    fn release(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// Dead letters, shared by every replica of a shared backend.
pub(crate) trait DeadLetterStore: Send + Sync + 'static {
    /// Every dead letter, oldest first.
    fn list(&self) -> BoxFuture<'_, Result<Vec<DeadLetter>, QueueError>>;

    /// One dead letter, if there is one with this id.
    fn get(&self, id: u64) -> BoxFuture<'_, Result<Option<DeadLetter>, QueueError>> {
        Box::pin(async move { Ok(self.list().await?.into_iter().find(|d| d.id == id)) })
    }

    /// Removes one dead letter and returns it (`None` if there is no such id).
    fn remove(&self, id: u64) -> BoxFuture<'_, Result<Option<DeadLetter>, QueueError>>;

    /// Removes every dead letter; returns how many there were.
    fn purge(&self) -> BoxFuture<'_, Result<usize, QueueError>>;

    /// Queues `event` (read from dead letter `id`) again and removes the dead letter, in one step
    /// where the backend allows it; `Ok(false)` when the dead letter was gone (replayed or deleted
    /// meanwhile), and then nothing is queued.
    fn replay(&self, id: u64, envelope: Envelope) -> BoxFuture<'_, Result<bool, QueueError>>;
}

/// Delivery ids accepted recently, for deduplication after a restart.
pub(crate) trait DeliveryLog: Send + Sync + 'static {
    /// Delivery ids accepted within `window` (key, event id, age); older ones are forgotten.
    /// Only a durable backend that leaves deduplication to ingress remembers any.
    fn recent(&self, _window: Duration) -> BoxFuture<'_, Vec<(String, String, Duration)>> {
        Box::pin(async { Vec::new() })
    }
}

/// One backend seen through its three interfaces.
#[derive(Clone)]
pub(crate) struct Backend {
    /// The queue proper.
    pub events: Arc<dyn EventQueue>,
    /// Its dead letters.
    pub dead_letters: Arc<dyn DeadLetterStore>,
    /// Its delivery log.
    pub deliveries: Arc<dyn DeliveryLog>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("durable", &self.events.durable())
            .field("shared", &self.events.shared())
            .finish_non_exhaustive()
    }
}

impl Backend {
    /// A backend implementing all three interfaces.
    #[must_use]
    pub(crate) fn new<Q: EventQueue + DeadLetterStore + DeliveryLog>(queue: Q) -> Self {
        let queue = Arc::new(queue);
        Self {
            events: Arc::clone(&queue) as Arc<dyn EventQueue>,
            dead_letters: Arc::clone(&queue) as Arc<dyn DeadLetterStore>,
            deliveries: queue,
        }
    }
}
