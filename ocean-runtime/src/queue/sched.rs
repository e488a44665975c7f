//! The scheduling core shared by the memory and disk queues: arrival order, per-group order,
//! retries in place, supersession (`latest_only`) and capacity, all in this process's memory.
//!
//! In: events with a sequence number ([`Scheduler::insert`]). Out: the next event that may run
//! ([`Scheduler::take`]), then its settle ([`Scheduler::ack`], [`Scheduler::retry_later`]). The
//! backend decides what it keeps of an event ([`Held`]) and where it stores it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::QueueError;
use crate::envelope::Envelope;

struct Entry {
    seq: u64,
    held: Held,
    delivery: u32,
    not_before: Option<Instant>,
}

/// What the scheduler keeps of an event: all of it, or (for a durable backend holding the event on
/// disk) only what scheduling needs.
pub(crate) enum Held {
    /// The whole event.
    Event(Arc<Envelope>),
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
    pub(crate) fn stored(event: &Envelope) -> Self {
        Self::Stored(Box::new(Sched {
            group_keys: event.group_keys().into(),
            supersedable: event.supersedable(),
            received_at: event.event.received_at(),
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
            Self::Event(e) => e.event.received_at(),
            Self::Stored(s) => s.received_at,
        }
    }

    fn event(&self) -> Option<Arc<Envelope>> {
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
    pub(crate) event: Option<Arc<Envelope>>,
}

#[derive(Default)]
struct Inner {
    /// Waiting events in arrival (`seq`) order.
    waiting: VecDeque<Entry>,
    leased: HashMap<u64, Entry>,
    /// The group keys of the leased events, each with how many leased events hold it (kept with
    /// `leased`, so that finding the next free event does not walk every leased event).
    busy: HashMap<String, usize>,
    next_seq: u64,
    closed: bool,
    superseded: Vec<u64>,
    superseded_count: u64,
}

impl Inner {
    fn lease(&mut self, entry: Entry) {
        for key in entry.held.group_keys() {
            *self.busy.entry(key.clone()).or_default() += 1;
        }
        self.leased.insert(entry.seq, entry);
    }

    fn unlease(&mut self, seq: u64) -> Option<Entry> {
        let entry = self.leased.remove(&seq)?;
        for key in entry.held.group_keys() {
            if let Some(n) = self.busy.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    self.busy.remove(key);
                }
            }
        }
        Some(entry)
    }
}

/// The scheduling core (see the module documentation).
pub(crate) struct Scheduler {
    inner: Mutex<Inner>,
    notify: Notify,
    capacity: usize,
}

impl Scheduler {
    /// A scheduler holding at most `capacity` events (waiting plus leased).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            notify: Notify::new(),
            capacity,
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next sequence number.
    pub(crate) fn next_seq(&self) -> u64 {
        let mut inner = self.lock();
        let seq = inner.next_seq;
        inner.next_seq += 1;
        seq
    }

    /// Takes the first due event whose group keys are free, or says when the next one will be due.
    ///
    /// An event is held back while an event with one of its group keys is leased, or waits before
    /// it (including one waiting for a retry), so each group runs one at a time in arrival order.
    /// A supersedable event (its path's processors only need the latest of a group) is dropped
    /// instead when a later waiting event has the same group keys.
    pub(crate) fn try_take(&self) -> Result<Taken, Option<Instant>> {
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
                inner.superseded.push(entry.seq);
                continue;
            }
            entry.delivery += 1;
            entry.not_before = None;
            let taken = Taken {
                seq: entry.seq,
                delivery: entry.delivery,
                event: entry.held.event(),
            };
            inner.lease(entry);
            return Ok(taken);
        }
    }

    /// Sequence numbers of events dropped as superseded since the last call (a durable backend
    /// deletes them too).
    pub(crate) fn take_superseded(&self) -> Vec<u64> {
        std::mem::take(&mut self.lock().superseded)
    }

    /// Events dropped as superseded so far.
    pub(crate) fn superseded_count(&self) -> u64 {
        self.lock().superseded_count
    }

    /// Adds an event under `seq`; `force` ignores the capacity (events reloaded after a restart).
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

    /// Waits for the next event that may be handed out (`None` once closed).
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

    /// Forgets a handed-out event without settling it (it could not be read back).
    pub(crate) fn forget(&self, seq: u64) {
        self.lock().unlease(seq);
    }

    /// Removes a handed-out event for good.
    ///
    /// # Errors
    /// [`QueueError::UnknownLease`] when `seq` is not handed out.
    pub(crate) fn ack(&self, seq: u64) -> Result<(), QueueError> {
        match self.lock().unlease(seq) {
            Some(entry) => {
                if !entry.held.group_keys().is_empty() {
                    // Events of its groups may be free now.
                    self.notify.notify_one();
                }
                Ok(())
            }
            None => Err(QueueError::UnknownLease(seq)),
        }
    }

    /// Puts a handed-out event back in its arrival position, due after `delay`.
    ///
    /// # Errors
    /// [`QueueError::UnknownLease`] when `seq` is not handed out.
    pub(crate) fn retry_later(&self, seq: u64, delay: Duration) -> Result<(), QueueError> {
        let result = {
            let mut inner = self.lock();
            match inner.unlease(seq) {
                Some(mut entry) => {
                    entry.not_before = Some(Instant::now() + delay);
                    let at = inner.waiting.partition_point(|e| e.seq < entry.seq);
                    inner.waiting.insert(at, entry);
                    Ok(())
                }
                None => Err(QueueError::UnknownLease(seq)),
            }
        };
        self.notify.notify_one();
        result
    }

    /// Events held: waiting plus handed out.
    pub(crate) fn depth(&self) -> usize {
        let inner = self.lock();
        inner.waiting.len() + inner.leased.len()
    }

    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.notify.notify_waiters();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// When the oldest held event was received.
    pub(crate) fn oldest_received_at(&self) -> Option<std::time::SystemTime> {
        let inner = self.lock();
        inner
            .waiting
            .iter()
            .chain(inner.leased.values())
            .map(|e| e.held.received_at())
            .min()
    }

    /// The figures of `/metrics`.
    pub(crate) fn gauges(&self) -> crate::metrics::QueueGauges {
        crate::metrics::QueueGauges {
            depth: self.depth(),
            oldest_age: self.oldest_received_at().and_then(|t| t.elapsed().ok()),
            superseded: self.superseded_count(),
            ..Default::default()
        }
    }
}

/// The first waiting event that is due and whose group keys are free, and the earliest time a
/// free but not yet due event will be.
fn first_free(inner: &Inner, now: Instant) -> (Option<usize>, Option<Instant>) {
    let mut next_due: Option<Instant> = None;
    // Keys of earlier waiting events that are not handed out now: later events of those groups
    // wait behind them.
    let mut behind: HashSet<&str> = HashSet::new();
    let pos = inner.waiting.iter().position(|e| {
        let keys = e.held.group_keys();
        let free = !keys
            .iter()
            .any(|k| inner.busy.contains_key(k) || behind.contains(k.as_str()));
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
        behind.extend(keys.iter().map(String::as_str));
        false
    });
    (pos, next_due)
}
