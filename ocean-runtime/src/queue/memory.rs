//! A bounded in-memory queue: fastest, and loses everything on a crash (Ocean's behaviour).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::{DeadLetter, EventQueue, Lease, QueueError};
use crate::event::WebhookEvent;
use crate::processor::BoxFuture;

struct Entry {
    seq: u64,
    held: Held,
    delivery: u32,
    not_before: Option<Instant>,
}

/// What the queue keeps of an event in memory: all of it, or (for a durable backend holding the
/// event on disk) only what scheduling needs.
pub(crate) enum Held {
    /// The whole event.
    Event(Arc<WebhookEvent>),
    /// What scheduling needs; the event itself is read back when it is handed out.
    Stored(Box<Sched>),
}

/// The scheduling facts of a stored event.
pub(crate) struct Sched {
    group_keys: Box<[String]>,
    supersedable: bool,
    received_at: std::time::SystemTime,
}

impl Held {
    /// Keeps only the scheduling facts of `event`.
    pub(crate) fn stored(event: &WebhookEvent) -> Self {
        Self::Stored(Box::new(Sched {
            group_keys: event.group_keys().into(),
            supersedable: event.supersedable(),
            received_at: event.received_at(),
        }))
    }

    fn group_keys(&self) -> &[String] {
        match self {
            Self::Event(e) => e.group_keys(),
            Self::Stored(s) => &s.group_keys,
        }
    }

    fn supersedable(&self) -> bool {
        match self {
            Self::Event(e) => e.supersedable(),
            Self::Stored(s) => s.supersedable,
        }
    }

    fn received_at(&self) -> std::time::SystemTime {
        match self {
            Self::Event(e) => e.received_at(),
            Self::Stored(s) => s.received_at,
        }
    }

    fn event(&self) -> Option<Arc<WebhookEvent>> {
        match self {
            Self::Event(e) => Some(Arc::clone(e)),
            Self::Stored(_) => None,
        }
    }
}

/// An event handed out: its sequence number, delivery count and, unless only its scheduling
/// facts are held, the event.
pub(crate) struct Taken {
    pub(crate) seq: u64,
    pub(crate) delivery: u32,
    pub(crate) event: Option<Arc<WebhookEvent>>,
}

#[derive(Default)]
struct Inner {
    /// Waiting events in arrival (`seq`) order.
    waiting: VecDeque<Entry>,
    leased: HashMap<u64, Entry>,
    next_seq: u64,
    closed: bool,
    superseded: Vec<u64>,
    record_superseded: bool,
    superseded_count: u64,
}

/// A bounded in-memory [`EventQueue`].
pub struct MemoryQueue {
    inner: Mutex<Inner>,
    notify: Notify,
    capacity: usize,
    dead: Mutex<(u64, std::collections::BTreeMap<u64, DeadLetter>)>,
}

impl std::fmt::Debug for MemoryQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryQueue")
            .field("capacity", &self.capacity)
            .field("depth", &self.depth())
            .finish()
    }
}

impl MemoryQueue {
    /// A queue holding at most `capacity` events (waiting plus leased).
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            notify: Notify::new(),
            capacity,
            dead: Mutex::new((1, std::collections::BTreeMap::new())),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the first due event whose group keys are free, or says when the next one will be due.
    ///
    /// An event is held back while an event with one of its group keys is leased, or waits before
    /// it (including one waiting for a retry), so each group runs one at a time in arrival order.
    /// A supersedable event (its path's processors only need the latest of a group) is dropped
    /// instead when a later waiting event has the same group keys.
    fn try_take(&self) -> Result<Taken, Option<Instant>> {
        let mut inner = self.lock();
        loop {
            let (pos, next_due) = first_free(&inner, Instant::now());
            let Some(p) = pos else {
                return Err(next_due);
            };
            let superseded =
                {
                    let e = &inner.waiting[p];
                    let keys = e.held.group_keys();
                    e.held.supersedable()
                        && !keys.is_empty()
                        && inner.waiting.iter().skip(p + 1).any(|later| {
                            later.held.supersedable() && later.held.group_keys() == keys
                        })
                };
            let Some(mut entry) = inner.waiting.remove(p) else {
                return Err(next_due);
            };
            if superseded {
                tracing::debug!(seq = entry.seq, "superseded by a later event of its group");
                inner.superseded_count += 1;
                if inner.record_superseded {
                    inner.superseded.push(entry.seq);
                }
                continue;
            }
            entry.delivery += 1;
            entry.not_before = None;
            let taken = Taken {
                seq: entry.seq,
                delivery: entry.delivery,
                event: entry.held.event(),
            };
            inner.leased.insert(entry.seq, entry);
            return Ok(taken);
        }
    }

    /// Sequence numbers of events dropped as superseded since the last call (recorded only for
    /// a durable backend, which must delete them too).
    pub(crate) fn take_superseded(&self) -> Vec<u64> {
        std::mem::take(&mut self.lock().superseded)
    }

    /// Records superseded events for [`take_superseded`](Self::take_superseded).
    pub(crate) fn record_superseded(&self) {
        self.lock().record_superseded = true;
    }

    /// Events dropped as superseded so far.
    #[must_use]
    pub fn superseded_count(&self) -> u64 {
        self.lock().superseded_count
    }
}

/// The first waiting event that is due and whose group keys are free, and the earliest time a
/// free but not yet due event will be.
fn first_free(inner: &Inner, now: Instant) -> (Option<usize>, Option<Instant>) {
    let mut next_due: Option<Instant> = None;
    let mut busy: HashSet<&str> = inner
        .leased
        .values()
        .flat_map(|e| e.held.group_keys())
        .map(String::as_str)
        .collect();
    let pos = inner.waiting.iter().position(|e| {
        let keys = e.held.group_keys();
        let free = !keys.iter().any(|k| busy.contains(k.as_str()));
        let due = match e.not_before {
            Some(t) if t > now => {
                if free {
                    next_due = Some(next_due.map_or(t, |n| n.min(t)));
                }
                false
            }
            _ => true,
        };
        if free && due {
            return true;
        }
        busy.extend(keys.iter().map(String::as_str));
        false
    });
    (pos, next_due)
}

impl MemoryQueue {
    /// Adds an event under a sequence number chosen by the caller (a durable backend that keeps
    /// its own numbering); `force` ignores the capacity (events reloaded after a restart).
    pub(crate) fn insert(&self, seq: u64, held: Held, force: bool) -> Result<(), QueueError> {
        let result = {
            let mut inner = self.lock();
            match self.room(&inner) {
                Err(QueueError::Full { .. }) if force => Ok(()),
                other => other,
            }
            .map(|()| {
                inner.next_seq = inner.next_seq.max(seq + 1);
                let at = inner.waiting.partition_point(|e| e.seq < seq);
                inner.waiting.insert(
                    at,
                    Entry {
                        seq,
                        held,
                        delivery: 0,
                        not_before: None,
                    },
                );
            })
        };
        if result.is_ok() {
            self.notify.notify_one();
        }
        result
    }

    /// Whether another event fits.
    pub(crate) fn has_room(&self) -> Result<(), QueueError> {
        self.room(&self.lock())
    }

    fn room(&self, inner: &Inner) -> Result<(), QueueError> {
        if inner.closed {
            Err(QueueError::Closed)
        } else if inner.waiting.len() + inner.leased.len() >= self.capacity {
            Err(QueueError::Full {
                capacity: self.capacity,
            })
        } else {
            Ok(())
        }
    }
}

impl MemoryQueue {
    /// Waits for the next event that may be handed out (`None` once the queue is closed).
    pub(crate) async fn take(&self) -> Option<Taken> {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_closed() {
                return None;
            }
            match self.try_take() {
                Ok(taken) => return Some(taken),
                Err(None) => notified.await,
                Err(Some(due)) => {
                    let _ = tokio::time::timeout_at(due, notified).await;
                }
            }
        }
    }

    /// Forgets a handed-out event without telling a durable backend (which decides itself).
    pub(crate) fn forget(&self, seq: u64) {
        self.lock().leased.remove(&seq);
    }
}

impl EventQueue for MemoryQueue {
    fn push(&self, event: WebhookEvent) -> BoxFuture<'_, Result<(), QueueError>> {
        let seq = {
            let mut inner = self.lock();
            let seq = inner.next_seq;
            inner.next_seq += 1;
            seq
        };
        let result = self.insert(seq, Held::Event(Arc::new(event)), false);
        Box::pin(async move { result })
    }

    fn pull(&self) -> BoxFuture<'_, Option<Lease>> {
        Box::pin(async move {
            loop {
                let taken = self.take().await?;
                match taken.event {
                    Some(event) => {
                        return Some(Lease {
                            seq: taken.seq,
                            event,
                            delivery: taken.delivery,
                        });
                    }
                    // Only a durable backend inserts stored events, and it reads them back itself.
                    None => {
                        tracing::error!(
                            seq = taken.seq,
                            "event without its body in the memory queue; dropped"
                        );
                        self.forget(taken.seq);
                    }
                }
            }
        })
    }

    fn ack<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<(), QueueError>> {
        let result = match self.lock().leased.remove(&lease.seq) {
            Some(entry) => {
                if !entry.held.group_keys().is_empty() {
                    // Events of its groups may be free now.
                    self.notify.notify_one();
                }
                Ok(())
            }
            None => Err(QueueError::UnknownLease(lease.seq)),
        };
        Box::pin(async move { result })
    }

    fn retry_later<'a>(
        &'a self,
        lease: &'a Lease,
        delay: Duration,
    ) -> BoxFuture<'a, Result<(), QueueError>> {
        let result = {
            let mut inner = self.lock();
            match inner.leased.remove(&lease.seq) {
                Some(mut entry) => {
                    entry.not_before = Some(Instant::now() + delay);
                    let at = inner.waiting.partition_point(|e| e.seq < entry.seq);
                    inner.waiting.insert(at, entry);
                    Ok(())
                }
                None => Err(QueueError::UnknownLease(lease.seq)),
            }
        };
        self.notify.notify_one();
        Box::pin(async move { result })
    }

    fn depth(&self) -> usize {
        let inner = self.lock();
        inner.waiting.len() + inner.leased.len()
    }

    fn close(&self) {
        self.lock().closed = true;
        self.notify.notify_waiters();
    }

    fn is_closed(&self) -> bool {
        self.lock().closed
    }

    fn superseded(&self) -> u64 {
        self.superseded_count()
    }

    fn oldest_received_at(&self) -> Option<std::time::SystemTime> {
        let inner = self.lock();
        inner
            .waiting
            .iter()
            .chain(inner.leased.values())
            .map(|e| e.held.received_at())
            .min()
    }

    fn ack_dead<'a>(
        &'a self,
        lease: &'a Lease,
        letters: Vec<DeadLetter>,
    ) -> BoxFuture<'a, Result<(), QueueError>> {
        {
            let mut dead = self.dead.lock().unwrap_or_else(PoisonError::into_inner);
            for mut letter in letters {
                letter.id = dead.0;
                dead.0 += 1;
                dead.1.insert(letter.id, letter);
            }
        }
        self.ack(lease)
    }

    fn dead_letters(&self) -> BoxFuture<'_, Result<Vec<DeadLetter>, QueueError>> {
        let all = self
            .dead
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .1
            .values()
            .cloned()
            .collect();
        Box::pin(async move { Ok(all) })
    }

    fn remove_dead_letter(&self, id: u64) -> BoxFuture<'_, Result<Option<DeadLetter>, QueueError>> {
        let removed = self
            .dead
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .1
            .remove(&id);
        Box::pin(async move { Ok(removed) })
    }

    fn purge_dead_letters(&self) -> BoxFuture<'_, Result<usize, QueueError>> {
        let mut dead = self.dead.lock().unwrap_or_else(PoisonError::into_inner);
        let n = dead.1.len();
        dead.1.clear();
        Box::pin(async move { Ok(n) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u32) -> WebhookEvent {
        WebhookEvent::new(n.to_string(), "/w", [], format!("{{\"n\":{n}}}")).unwrap()
    }

    #[tokio::test]
    async fn fifo_with_lease_and_ack() {
        let q = MemoryQueue::new(10);
        q.push(event(1)).await.unwrap();
        q.push(event(2)).await.unwrap();
        let a = q.pull().await.unwrap();
        let b = q.pull().await.unwrap();
        assert_eq!((a.event.id(), b.event.id()), ("1", "2"));
        assert_eq!(q.depth(), 2, "leased events still count");
        q.ack(&a).await.unwrap();
        assert!(matches!(q.ack(&a).await, Err(QueueError::UnknownLease(_))));
        q.ack(&b).await.unwrap();
        assert_eq!(q.depth(), 0);
    }

    #[tokio::test]
    async fn full_queue_refuses() {
        let q = MemoryQueue::new(1);
        q.push(event(1)).await.unwrap();
        assert!(matches!(
            q.push(event(2)).await,
            Err(QueueError::Full { capacity: 1 })
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_later_waits_and_keeps_arrival_order() {
        let q = MemoryQueue::new(10);
        q.push(event(1)).await.unwrap();
        let a = q.pull().await.unwrap();
        q.push(event(2)).await.unwrap();
        q.retry_later(&a, Duration::from_secs(5)).await.unwrap();
        // Event 1 is not due yet, so event 2 goes first.
        let b = q.pull().await.unwrap();
        assert_eq!(b.event.id(), "2");
        let started = Instant::now();
        let again = q.pull().await.unwrap();
        assert_eq!((again.event.id(), again.delivery), ("1", 2));
        assert!(started.elapsed() >= Duration::from_secs(4));
    }

    #[tokio::test]
    async fn close_wakes_pullers() {
        let q = Arc::new(MemoryQueue::new(10));
        let waiter = tokio::spawn({
            let q = Arc::clone(&q);
            async move { q.pull().await.is_none() }
        });
        tokio::task::yield_now().await;
        q.close();
        assert!(waiter.await.unwrap());
        assert!(matches!(q.push(event(1)).await, Err(QueueError::Closed)));
    }

    fn grouped(n: u32, keys: &[&str]) -> WebhookEvent {
        let mut e = event(n);
        e.set_group_keys(keys.iter().map(|k| (*k).to_owned()).collect());
        e
    }

    #[tokio::test(start_paused = true)]
    async fn a_group_runs_one_at_a_time_in_arrival_order() {
        let q = MemoryQueue::new(10);
        q.push(grouped(1, &["p:A"])).await.unwrap();
        q.push(grouped(2, &["p:A"])).await.unwrap();
        q.push(grouped(3, &["p:B"])).await.unwrap();
        q.push(grouped(4, &["p:A", "p:B"])).await.unwrap();
        q.push(event(5)).await.unwrap();
        let first = q.pull().await.unwrap();
        let second = q.pull().await.unwrap();
        let third = q.pull().await.unwrap();
        assert_eq!(
            [first.event.id(), second.event.id(), third.event.id()],
            ["1", "3", "5"],
            "2 waits for 1, 4 waits for 2 and 3"
        );
        assert!(q.try_take().is_err(), "nothing else is free");
        q.retry_later(&first, Duration::from_secs(5)).await.unwrap();
        assert!(q.try_take().is_err(), "2 still waits behind 1's retry");
        q.ack(&second).await.unwrap();
        let again = q.pull().await.unwrap();
        assert_eq!((again.event.id(), again.delivery), ("1", 2));
        q.ack(&again).await.unwrap();
        let next = q.pull().await.unwrap();
        assert_eq!(next.event.id(), "2");
        assert!(q.try_take().is_err(), "4 waits for 2");
        q.ack(&next).await.unwrap();
        assert_eq!(q.pull().await.unwrap().event.id(), "4");
    }

    #[tokio::test]
    async fn only_the_latest_of_a_supersedable_group_is_handed_out() {
        let q = MemoryQueue::new(10);
        q.record_superseded();
        for (n, key, sup) in [
            (1, "A", true),
            (2, "A", true),
            (3, "B", true),
            (4, "A", true),
            (5, "C", false),
            (6, "C", false),
        ] {
            let mut e = grouped(n, &[key]);
            e.set_supersedable(sup);
            q.push(e).await.unwrap();
        }
        let ids: Vec<String> = [
            q.pull().await.unwrap(),
            q.pull().await.unwrap(),
            q.pull().await.unwrap(),
        ]
        .iter()
        .map(|l| l.event.id().to_owned())
        .collect();
        assert_eq!(
            ids,
            ["3", "4", "5"],
            "1 and 2 superseded by 4; C is not supersedable"
        );
        assert_eq!(q.take_superseded(), [0, 1]);
        assert_eq!(q.superseded_count(), 2);
        assert_eq!(q.depth(), 4);
    }
}
