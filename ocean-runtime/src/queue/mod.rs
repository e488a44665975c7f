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

    /// Whether held events survive a crash or restart.
    fn durable(&self) -> bool {
        false
    }
}
