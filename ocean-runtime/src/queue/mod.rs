//! The event queue between ingress and the workers, with lease semantics.
//!
//! Ingress [`push`](EventQueue::push)es an event and answers the sender only once the backend holds
//! it. A worker [`pull`](EventQueue::pull)s a [`Lease`]; the event stays in the queue until the
//! worker [`ack`](EventQueue::ack)s it, or is put back with [`retry_later`](EventQueue::retry_later).

mod disk;
mod memory;

use std::sync::Arc;
use std::time::Duration;

pub use disk::{DiskQueue, DiskQueueError};
pub use memory::MemoryQueue;

use crate::event::WebhookEvent;
use crate::processor::BoxFuture;

/// An event handed to one worker until it acks it or puts it back.
#[derive(Debug, Clone)]
pub struct Lease {
    /// Arrival order, unique in the queue.
    pub seq: u64,
    /// The event.
    pub event: Arc<WebhookEvent>,
    /// How many times the event has been handed out, this time included.
    pub delivery: u32,
}

/// A job that failed for good (permanent error, retries used up, or time limit), kept with its
/// event so that an operator can inspect and replay it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DeadLetter {
    /// Assigned by the queue when stored.
    pub id: u64,
    /// The event's id (as answered to the sender).
    pub event_id: String,
    /// The path the event came in on.
    pub path: String,
    /// The processor whose job failed.
    pub processor: String,
    /// The mapping resource of the job.
    pub resource: usize,
    /// Its kind.
    pub kind: String,
    /// The last error.
    pub error: String,
    /// Handler calls made.
    pub attempts: u32,
    /// When it failed, in milliseconds since the Unix epoch.
    pub failed_at_ms: u64,
    /// The event as stored (see [`WebhookEvent::to_stored`]).
    pub event: serde_json::Value,
}

impl DeadLetter {
    /// The event, to process again.
    ///
    /// # Errors
    /// The stored event is unreadable.
    pub fn to_event(&self) -> Result<WebhookEvent, String> {
        let bytes = serde_json::to_vec(&self.event).map_err(|e| e.to_string())?;
        WebhookEvent::from_stored(&bytes)
    }
}

/// A queue operation that failed.
#[derive(Debug, thiserror::Error)]
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
    /// The lease is not held (already acked or put back).
    #[error("lease {0} is not held")]
    UnknownLease(u64),
    /// The durable store failed.
    #[error("the event queue could not store the change: {0}")]
    Storage(String),
}

/// A queue backend.
pub trait EventQueue: Send + Sync + 'static {
    /// Stores an event; when this returns `Ok` the event is held with the backend's durability.
    fn push(&self, event: WebhookEvent) -> BoxFuture<'_, Result<(), QueueError>>;

    /// Waits for the next event that is due and leases it; `None` once the queue is closed.
    fn pull(&self) -> BoxFuture<'_, Option<Lease>>;

    /// Removes a leased event for good.
    fn ack<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<(), QueueError>>;

    /// Puts a leased event back, to be handed out again after `delay`, in its arrival position.
    fn retry_later<'a>(
        &'a self,
        lease: &'a Lease,
        delay: Duration,
    ) -> BoxFuture<'a, Result<(), QueueError>>;

    /// Events held: waiting plus leased.
    fn depth(&self) -> usize;

    /// Stops handing out events; waiting `pull`s return `None`, `push` fails with [`QueueError::Closed`].
    fn close(&self);

    /// Whether [`close`](Self::close) was called.
    fn is_closed(&self) -> bool;

    /// Delivery ids accepted within `window` (key, event id, age), for deduplication after a
    /// restart; older ones are forgotten. Only durable backends remember any.
    fn recent_deliveries(&self, _window: Duration) -> Vec<(String, String, Duration)> {
        Vec::new()
    }

    /// Events dropped so far because a later event of their group superseded them.
    fn superseded(&self) -> u64 {
        0
    }

    /// When the oldest held event was received.
    fn oldest_received_at(&self) -> Option<std::time::SystemTime> {
        None
    }

    /// Whether held events survive a crash or restart.
    fn durable(&self) -> bool {
        false
    }

    /// Stores dead letters (their `id`s are assigned here) and acks the lease, together.
    fn ack_dead<'a>(
        &'a self,
        lease: &'a Lease,
        letters: Vec<DeadLetter>,
    ) -> BoxFuture<'a, Result<(), QueueError>>;

    /// Every dead letter, oldest first.
    fn dead_letters(&self) -> BoxFuture<'_, Result<Vec<DeadLetter>, QueueError>>;

    /// One dead letter, if there is one with this id.
    fn dead_letter(&self, id: u64) -> BoxFuture<'_, Result<Option<DeadLetter>, QueueError>> {
        Box::pin(async move { Ok(self.dead_letters().await?.into_iter().find(|d| d.id == id)) })
    }

    /// Removes one dead letter and returns it (`None` if there is no such id).
    fn remove_dead_letter(&self, id: u64) -> BoxFuture<'_, Result<Option<DeadLetter>, QueueError>>;

    /// Removes every dead letter; returns how many there were.
    fn purge_dead_letters(&self) -> BoxFuture<'_, Result<usize, QueueError>>;
}
