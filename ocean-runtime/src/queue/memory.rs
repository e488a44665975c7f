//! A bounded in-memory queue: fastest, and loses everything on a crash (Ocean's behaviour).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::sched::{Held, Scheduler};
use super::{DeadLetter, DeadLetterStore, DeliveryLog, EventQueue, Lease, Pushed, QueueError};
use crate::envelope::Envelope;
use crate::metrics::QueueGauges;
use crate::processor::BoxFuture;

/// A bounded in-memory [`EventQueue`].
pub(crate) struct MemoryQueue {
    sched: Scheduler,
    dead: Mutex<(u64, BTreeMap<u64, DeadLetter>)>,
}

impl std::fmt::Debug for MemoryQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryQueue")
            .field("capacity", &self.sched.capacity())
            .field("depth", &self.sched.depth())
            .finish()
    }
}

impl MemoryQueue {
    /// A queue holding at most `capacity` events (waiting plus leased).
    #[must_use]
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            sched: Scheduler::new(capacity),
            dead: Mutex::new((1, BTreeMap::new())),
        }
    }

    /// Events held: waiting plus leased.
    #[cfg(test)]
    #[must_use]
    pub(crate) fn depth(&self) -> usize {
        self.sched.depth()
    }

    fn dead(&self) -> std::sync::MutexGuard<'_, (u64, BTreeMap<u64, DeadLetter>)> {
        self.dead.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn enqueue(&self, event: Envelope) -> Result<(), QueueError> {
        let seq = self.sched.next_seq();
        self.sched.insert(seq, Held::Event(Arc::new(event)), false)
    }
}

impl EventQueue for MemoryQueue {
    fn push(&self, event: Envelope) -> BoxFuture<'_, Result<Pushed, QueueError>> {
        let result = self.enqueue(event).map(|()| Pushed::Queued);
        Box::pin(async move { result })
    }

    fn pull(&self) -> BoxFuture<'_, Option<Lease>> {
        Box::pin(async move {
            loop {
                let taken = self.sched.take().await?;
                // Superseded events need no clean-up here: nothing is stored elsewhere.
                let _ = self.sched.take_superseded();
                match taken.event {
                    Some(event) => return Some(Lease::local(taken.seq, event, taken.delivery)),
                    // Only a durable backend inserts stored events, and it reads them back itself.
                    None => {
                        tracing::error!(
                            seq = taken.seq,
                            "event without its body in the memory queue; dropped"
                        );
                        self.sched.forget(taken.seq);
                    }
                }
            }
        })
    }

    fn ack<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<(), QueueError>> {
        let result = self.sched.ack(lease.seq);
        Box::pin(async move { result })
    }

    fn retry_later<'a>(
        &'a self,
        lease: &'a Lease,
        delay: Duration,
    ) -> BoxFuture<'a, Result<(), QueueError>> {
        let result = self.sched.retry_later(lease.seq, delay);
        Box::pin(async move { result })
    }

    fn ack_dead<'a>(
        &'a self,
        lease: &'a Lease,
        letters: Vec<DeadLetter>,
    ) -> BoxFuture<'a, Result<(), QueueError>> {
        let result = self.sched.ack(lease.seq).map(|()| {
            let mut dead = self.dead();
            for mut letter in letters {
                letter.id = dead.0;
                dead.0 += 1;
                dead.1.insert(letter.id, letter);
            }
        });
        Box::pin(async move { result })
    }

    fn stats(&self) -> BoxFuture<'_, Result<QueueGauges, QueueError>> {
        let gauges = self.sched.gauges();
        Box::pin(async move { Ok(gauges) })
    }

    fn close(&self) {
        self.sched.close();
    }

    fn is_closed(&self) -> bool {
        self.sched.is_closed()
    }
}

impl DeadLetterStore for MemoryQueue {
    fn list(&self) -> BoxFuture<'_, Result<Vec<DeadLetter>, QueueError>> {
        let all = self.dead().1.values().cloned().collect();
        Box::pin(async move { Ok(all) })
    }

    fn remove(&self, id: u64) -> BoxFuture<'_, Result<Option<DeadLetter>, QueueError>> {
        let removed = self.dead().1.remove(&id);
        Box::pin(async move { Ok(removed) })
    }

    fn purge(&self) -> BoxFuture<'_, Result<usize, QueueError>> {
        let mut dead = self.dead();
        let n = dead.1.len();
        dead.1.clear();
        Box::pin(async move { Ok(n) })
    }

    fn replay(&self, id: u64, event: Envelope) -> BoxFuture<'_, Result<bool, QueueError>> {
        let result = {
            let mut dead = self.dead();
            if dead.1.contains_key(&id) {
                self.enqueue(event).map(|()| dead.1.remove(&id).is_some())
            } else {
                Ok(false)
            }
        };
        Box::pin(async move { result })
    }
}

/// Remembers nothing across restarts: ingress deduplicates in memory.
impl DeliveryLog for MemoryQueue {}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u32) -> Envelope {
        Envelope::new(
            crate::event::WebhookEvent::new(n.to_string(), "/w", [], format!("{{\"n\":{n}}}"))
                .unwrap(),
        )
    }

    // The rest of the queue's behaviour is checked for every backend in `queue::contract`.

    #[tokio::test(start_paused = true)]
    async fn retry_later_waits_and_keeps_arrival_order() {
        let q = MemoryQueue::new(10);
        q.push(event(1)).await.unwrap();
        let a = q.pull().await.unwrap();
        q.push(event(2)).await.unwrap();
        q.retry_later(&a, Duration::from_secs(5)).await.unwrap();
        // Event 1 is not due yet, so event 2 goes first.
        let b = q.pull().await.unwrap();
        assert_eq!(b.envelope.event.id(), "2");
        let started = tokio::time::Instant::now();
        let again = q.pull().await.unwrap();
        assert_eq!((again.envelope.event.id(), again.delivery), ("1", 2));
        assert!(started.elapsed() >= Duration::from_secs(4));
    }
}
