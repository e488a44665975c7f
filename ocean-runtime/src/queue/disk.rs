//! The durable queue (the default): every event is committed to an embedded redb database before
//! ingress answers 200, and removed only when a worker acks it. After a crash, the events still in
//! the database are processed again on the next start, in arrival order.
//!
//! Writes from all connections go to one writer thread that commits whatever has accumulated in
//! one transaction (group commit), so the cost of the fsync is shared by every event in the group
//! instead of being paid per event.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::sched::{Held, Scheduler};
use super::{DeadLetter, DeadLetterStore, DeliveryLog, EventQueue, Lease, Pushed, QueueError};
use crate::metrics::QueueGauges;
use serde_json::{Value, json};

use crate::envelope::{Envelope, RecordError};
use crate::group_commit::{Db, GroupWriter, StorageError};
use crate::processor::BoxFuture;

/// Events by sequence number.
const EVENTS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("events");
/// Delivery ids of accepted events: key → `{"id": event id, "at": ms since the epoch}`.
const DELIVERIES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("deliveries");
/// Dead letters by id.
const DEAD: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("dead_letters");

/// The queue's database cannot be opened or read (`OCEAN__QUEUE__PATH` on
/// [`Settings`](crate::Settings)).
#[derive(Debug, thiserror::Error)]
#[error("cannot open the event queue at {path} (OCEAN__QUEUE__PATH): {reason}")]
pub struct DiskQueueError {
    /// The database file.
    pub path: PathBuf,
    /// What went wrong.
    pub reason: String,
}

/// A delivery id and its record (`{"id": event id, "at": ms}`).
type Delivery = (String, Vec<u8>);

enum Op {
    /// An event, with its delivery id record when the sender gave one.
    Put(u64, Vec<u8>, Option<Delivery>),
    /// Forget delivery ids accepted before this time (ms since the epoch).
    PruneDeliveries(u64),
    Delete(u64),
    /// Ack an event and store its dead letters, in one transaction.
    AckDead(u64, Vec<(u64, Vec<u8>)>),
    /// Queue an event again and remove the dead letter it came from, in one transaction.
    Replay(u64, Vec<u8>, u64),
    DeleteDead(u64),
    PurgeDead,
}

fn commit(db: &Database, group: &[Op]) -> Result<(), redb::Error> {
    let mut txn = db.begin_write()?;
    // Only acks: no fsync of their own. They become durable with the next commit that stores an
    // event; a crash before that processes those events once more (at least once, never lost).
    if group.iter().all(|op| matches!(op, Op::Delete(_)))
        && let Err(e) = txn.set_durability(redb::Durability::None)
    {
        tracing::debug!(error = %e, "acks committed with full durability");
    }
    {
        let mut events = txn.open_table(EVENTS)?;
        let mut dead = txn.open_table(DEAD)?;
        let mut deliveries = txn.open_table(DELIVERIES)?;
        for op in group {
            match op {
                Op::Put(seq, bytes, delivery) => {
                    events.insert(*seq, bytes.as_slice())?;
                    if let Some((key, record)) = delivery {
                        deliveries.insert(key.as_str(), record.as_slice())?;
                    }
                }
                Op::PruneDeliveries(before) => {
                    deliveries.retain(|_, v| {
                        serde_json::from_slice::<Value>(v)
                            .ok()
                            .and_then(|r| r["at"].as_u64())
                            .is_some_and(|at| at >= *before)
                    })?;
                }
                Op::Delete(seq) => {
                    events.remove(*seq)?;
                }
                Op::AckDead(seq, letters) => {
                    for (id, bytes) in letters {
                        dead.insert(*id, bytes.as_slice())?;
                    }
                    events.remove(*seq)?;
                }
                Op::Replay(seq, bytes, id) => {
                    events.insert(*seq, bytes.as_slice())?;
                    dead.remove(*id)?;
                }
                Op::DeleteDead(id) => {
                    dead.remove(*id)?;
                }
                Op::PurgeDead => {
                    dead.retain(|_, _| false)?;
                }
            }
        }
    }
    txn.commit()?;
    Ok(())
}

/// Up to this many queued events are kept whole in memory; past it, only their scheduling facts
/// (about 150 bytes each instead of several KB), so a long outage of Port does not fill memory.
const HOT_EVENTS: usize = 1024;

/// Page cache of the queue's database: the events are read back at most once, so a small one does.
const CACHE_BYTES: usize = 4 * 1024 * 1024;

/// A redb error of this database.
fn db_error(e: impl Into<redb::Error>) -> StorageError {
    StorageError::db(WHAT, e)
}

/// A dead letter that does not encode or decode.
fn letter_error(e: serde_json::Error) -> StorageError {
    StorageError::Record(RecordError::Malformed(Arc::new(e)))
}

fn now_ms() -> u64 {
    crate::event::unix_ms(std::time::SystemTime::now())
}

/// The database's name in errors and logs.
const WHAT: &str = "event queue";

/// The durable [`EventQueue`]: redb on disk, scheduling in memory.
pub(crate) struct DiskQueue {
    sched: Scheduler,
    writer: GroupWriter<Op>,
    db: Arc<Db>,
    next_seq: AtomicU64,
    next_dead: AtomicU64,
    path: PathBuf,
    /// The dedup window in ms, once ingress has asked for the recent deliveries (0 before).
    dedup_window_ms: AtomicU64,
    /// When delivery ids older than the window were last removed.
    pruned_at_ms: AtomicU64,
}

impl std::fmt::Debug for DiskQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskQueue")
            .field("path", &self.path)
            .field("depth", &self.sched.depth())
            .finish()
    }
}

impl DiskQueue {
    /// Opens (or creates) the queue in folder `dir` and takes up the events left by the last run.
    ///
    /// # Errors
    /// The folder or database cannot be created or read.
    pub(crate) fn open(dir: &Path, capacity: usize) -> Result<Self, DiskQueueError> {
        let path = dir.join("queue.redb");
        let fail = |reason: String| DiskQueueError {
            path: path.clone(),
            reason,
        };
        std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
        let db = Db::open(&path, CACHE_BYTES).map_err(|e| fail(e.to_string()))?;
        let handle = db.get().map_err(|e| fail(e.to_string()))?;
        let sched = Scheduler::new(capacity);
        let mut next = 0;
        let mut restored = 0usize;
        {
            let txn = handle.begin_write().map_err(|e| fail(e.to_string()))?;
            txn.open_table(EVENTS).map_err(|e| fail(e.to_string()))?;
            txn.open_table(DEAD).map_err(|e| fail(e.to_string()))?;
            txn.open_table(DELIVERIES)
                .map_err(|e| fail(e.to_string()))?;
            txn.commit().map_err(|e| fail(e.to_string()))?;
            let read = handle.begin_read().map_err(|e| fail(e.to_string()))?;
            let table = read.open_table(EVENTS).map_err(|e| fail(e.to_string()))?;
            for row in table.iter().map_err(|e| fail(e.to_string()))? {
                let (seq, bytes) = row.map_err(|e| fail(e.to_string()))?;
                let seq = seq.value();
                next = next.max(seq + 1);
                match Envelope::from_record(bytes.value()) {
                    Ok(event) => {
                        let held = if restored < HOT_EVENTS {
                            Held::Event(Arc::new(event))
                        } else {
                            Held::stored(&event)
                        };
                        let _ = sched.insert(seq, held, true);
                        restored += 1;
                    }
                    Err(e) => {
                        tracing::error!(seq, error = %e, "unreadable event in the queue; left in place");
                    }
                }
            }
        }
        let next_dead = {
            let read = handle.begin_read().map_err(|e| fail(e.to_string()))?;
            let table = read.open_table(DEAD).map_err(|e| fail(e.to_string()))?;
            let last = table.last().map_err(|e| fail(e.to_string()))?;
            last.map_or(1, |(k, _)| k.value() + 1)
        };
        if restored > 0 {
            tracing::info!(
                events = restored,
                "taking up the events the last run left unacknowledged"
            );
        }
        drop(handle);
        let db = Arc::new(db);
        let writer =
            GroupWriter::spawn(WHAT, Arc::clone(&db), commit).map_err(|e| fail(e.to_string()))?;
        Ok(Self {
            sched,
            writer,
            db,
            next_seq: AtomicU64::new(next),
            next_dead: AtomicU64::new(next_dead),
            path,
            dedup_window_ms: AtomicU64::new(0),
            pruned_at_ms: AtomicU64::new(0),
        })
    }

    /// Removes the delivery ids received more than `window_ms` before `now` (in the background).
    fn prune_deliveries(&self, now: u64, window_ms: u64) {
        self.pruned_at_ms.store(now, Ordering::Relaxed);
        let _ = self
            .writer
            .submit_detached(Op::PruneDeliveries(now.saturating_sub(window_ms)));
    }

    /// `table` in a read transaction of its own.
    fn read_table<K: redb::Key + 'static, V: redb::Value + 'static>(
        &self,
        table: TableDefinition<'_, K, V>,
    ) -> Result<redb::ReadOnlyTable<K, V>, StorageError> {
        self.db
            .get()?
            .begin_read()
            .map_err(db_error)?
            .open_table(table)
            .map_err(db_error)
    }

    /// Reads a queued event back.
    fn load(&self, seq: u64) -> Result<Envelope, StorageError> {
        let bytes = self
            .read_table(EVENTS)?
            .get(seq)
            .map_err(db_error)?
            .ok_or_else(|| StorageError::NotFound(format!("queued event {seq}")))?;
        Ok(Envelope::from_record(bytes.value())?)
    }

    async fn write(&self, op: Op) -> Result<(), StorageError> {
        self.writer.write(op).await
    }
}

impl DiskQueue {
    /// Events held: waiting plus leased.
    #[cfg(test)]
    #[must_use]
    pub(crate) fn depth(&self) -> usize {
        self.sched.depth()
    }

    /// The record of `event` and, when it has a delivery id, that id's record.
    fn encode(&self, event: &Envelope) -> Result<(Vec<u8>, Option<Delivery>), QueueError> {
        let bytes = event.to_record().map_err(StorageError::from)?;
        let delivery = event.delivery_key().map(|key| {
            let now = now_ms();
            // Ids outside the window are forgotten once per window, not only at start.
            let window_ms = self.dedup_window_ms.load(Ordering::Relaxed);
            if window_ms > 0
                && now.saturating_sub(self.pruned_at_ms.load(Ordering::Relaxed)) >= window_ms
            {
                self.prune_deliveries(now, window_ms);
            }
            let record = json!({"id": event.event.id(), "at": now});
            (key.to_owned(), record.to_string().into_bytes())
        });
        Ok((bytes, delivery))
    }

    /// Hands a committed event to the scheduler; when it no longer fits (filled up or closed while
    /// committing), the stored copy is removed and the sender is told to retry.
    async fn schedule(&self, seq: u64, event: Envelope) -> Result<(), QueueError> {
        // A short queue keeps whole events, so handing one out costs nothing; past that, only
        // what scheduling needs stays in memory and the event is read back when handed out.
        let held = if self.sched.depth() < HOT_EVENTS {
            Held::Event(Arc::new(event))
        } else {
            Held::stored(&event)
        };
        if let Err(e) = self.sched.insert(seq, held, false) {
            let _ = self.write(Op::Delete(seq)).await;
            return Err(e);
        }
        Ok(())
    }
}

impl EventQueue for DiskQueue {
    fn push(&self, event: Envelope) -> BoxFuture<'_, Result<Pushed, QueueError>> {
        Box::pin(async move {
            self.sched.has_room()?;
            let (bytes, delivery) = self.encode(&event)?;
            let seq = self.next_seq.fetch_add(1, Ordering::SeqCst);
            self.write(Op::Put(seq, bytes, delivery))
                .await
                .map_err(QueueError::Storage)?;
            self.schedule(seq, event).await.map(|()| Pushed::Queued)
        })
    }

    fn pull(&self) -> BoxFuture<'_, Option<Lease>> {
        Box::pin(async move {
            loop {
                let taken = self.sched.take().await;
                for seq in self.sched.take_superseded() {
                    let _ = self.writer.submit_detached(Op::Delete(seq));
                }
                let taken = taken?;
                let event = match taken.event {
                    Some(event) => event,
                    None => match self.load(taken.seq) {
                        Ok(event) => Arc::new(event),
                        Err(e) => {
                            // Left on disk (a later start tries again), out of this run's way.
                            tracing::error!(seq = taken.seq, error = %e, "cannot read a queued event back; left in place");
                            self.sched.forget(taken.seq);
                            continue;
                        }
                    },
                };
                return Some(Lease::local(taken.seq, event, taken.delivery));
            }
        })
    }

    fn ack<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<(), QueueError>> {
        // The delete is committed by the writer without waiting for it (see `commit`).
        let result = self
            .writer
            .submit_detached(Op::Delete(lease.seq))
            .map_err(QueueError::Storage)
            .and_then(|()| self.sched.ack(lease.seq));
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
        Box::pin(async move {
            let mut rows = Vec::with_capacity(letters.len());
            for mut letter in letters {
                letter.id = self.next_dead.fetch_add(1, Ordering::SeqCst);
                let bytes = serde_json::to_vec(&letter).map_err(letter_error)?;
                rows.push((letter.id, bytes));
            }
            self.write(Op::AckDead(lease.seq, rows))
                .await
                .map_err(QueueError::Storage)?;
            self.sched.ack(lease.seq)
        })
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

    fn durable(&self) -> bool {
        true
    }
}

impl DeliveryLog for DiskQueue {
    fn recent(&self, window: Duration) -> BoxFuture<'_, Vec<(String, String, Duration)>> {
        let now = now_ms();
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
        self.dedup_window_ms.store(window_ms, Ordering::Relaxed);
        self.prune_deliveries(now, window_ms);
        let read = || -> Result<Vec<(String, String, Duration)>, StorageError> {
            let mut out = Vec::new();
            for row in self.read_table(DELIVERIES)?.iter().map_err(db_error)? {
                let (k, v) = row.map_err(db_error)?;
                let Ok(record) = serde_json::from_slice::<Value>(v.value()) else {
                    continue;
                };
                let (Some(id), Some(at)) = (record["id"].as_str(), record["at"].as_u64()) else {
                    continue;
                };
                let age = Duration::from_millis(now.saturating_sub(at));
                if age < window {
                    out.push((k.value().to_owned(), id.to_owned(), age));
                }
            }
            Ok(out)
        };
        let recent = read().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read the remembered delivery ids");
            Vec::new()
        });
        Box::pin(async move { recent })
    }
}

impl DeadLetterStore for DiskQueue {
    fn list(&self) -> BoxFuture<'_, Result<Vec<DeadLetter>, QueueError>> {
        let read = || -> Result<Vec<DeadLetter>, StorageError> {
            let mut out = Vec::new();
            for row in self.read_table(DEAD)?.iter().map_err(db_error)? {
                let (_, v) = row.map_err(db_error)?;
                out.push(serde_json::from_slice(v.value()).map_err(letter_error)?);
            }
            Ok(out)
        };
        let result = read().map_err(QueueError::Storage);
        Box::pin(async move { result })
    }

    fn remove(&self, id: u64) -> BoxFuture<'_, Result<Option<DeadLetter>, QueueError>> {
        Box::pin(async move {
            let found = self.get(id).await?;
            if found.is_some() {
                self.write(Op::DeleteDead(id))
                    .await
                    .map_err(QueueError::Storage)?;
            }
            Ok(found)
        })
    }

    fn purge(&self) -> BoxFuture<'_, Result<usize, QueueError>> {
        Box::pin(async move {
            let n = self.list().await?.len();
            self.write(Op::PurgeDead)
                .await
                .map_err(QueueError::Storage)?;
            Ok(n)
        })
    }

    fn replay(&self, id: u64, event: Envelope) -> BoxFuture<'_, Result<bool, QueueError>> {
        Box::pin(async move {
            if self.get(id).await?.is_none() {
                return Ok(false);
            }
            self.sched.has_room()?;
            let bytes = event.to_record().map_err(StorageError::from)?;
            let seq = self.next_seq.fetch_add(1, Ordering::SeqCst);
            self.write(Op::Replay(seq, bytes, id))
                .await
                .map_err(QueueError::Storage)?;
            // Committed with the dead letter's removal: past the capacity if need be, and kept on
            // disk for the next start if the queue closed meanwhile.
            if let Err(e) = self.sched.insert(seq, Held::stored(&event), true) {
                tracing::info!(seq, error = %e, "replayed event kept on disk for the next start");
            }
            Ok(true)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::WebhookEvent;

    fn dir() -> PathBuf {
        std::env::temp_dir().join(format!("ocean-queue-{}", uuid::Uuid::new_v4().simple()))
    }

    fn event(n: u32, key: &str) -> Envelope {
        let mut e = Envelope::new(
            WebhookEvent::new(
                format!("e{n}"),
                "/w",
                [("x-delivery".to_owned(), n.to_string())],
                format!("{{\"n\":{n}}}"),
            )
            .unwrap(),
        );
        e.schedule.group_keys = vec![key.to_owned()];
        e
    }

    fn stored_deliveries(q: &DiskQueue) -> Vec<String> {
        let txn = q.db.get().unwrap().begin_read().unwrap();
        let table = txn.open_table(DELIVERIES).unwrap();
        table
            .iter()
            .unwrap()
            .map(|row| row.unwrap().0.value().to_owned())
            .collect()
    }

    #[tokio::test]
    async fn delivery_ids_older_than_the_window_are_forgotten_while_running() {
        let dir = dir();
        let q = DiskQueue::open(&dir, 100).unwrap();
        // Ingress asks once at start; that sets the window.
        assert!(q.recent(Duration::from_millis(20)).await.is_empty());
        let mut first = event(0, "p:A");
        first.schedule.delivery_key = Some("d-0".into());
        q.push(first).await.unwrap();
        assert_eq!(stored_deliveries(&q), ["d-0"]);
        // Later deliveries, once the window has passed, remove the old id.
        let mut n = 0;
        crate::testing::eventually("d-0 to be pruned", Duration::from_secs(5), || {
            n += 1;
            let mut e = event(n, "p:B");
            e.schedule.delivery_key = Some(format!("d-{n}"));
            let q = &q;
            async move {
                q.push(e).await.map_err(|e| e.to_string())?;
                // The prune is committed with the next awaited write (this push's or a later one).
                let ids = stored_deliveries(q);
                Ok::<_, String>((!ids.iter().any(|k| k == "d-0")).then_some(ids))
            }
        })
        .await;
    }

    #[tokio::test]
    async fn a_long_queue_keeps_events_on_disk_and_hands_them_out_whole() {
        let dir = dir();
        let q = DiskQueue::open(&dir, 5000).unwrap();
        let n = u32::try_from(HOT_EVENTS).unwrap() + 20;
        for i in 0..n {
            q.push(event(i, &format!("p:{i}"))).await.unwrap();
        }
        for i in 0..n {
            let lease = q.pull().await.unwrap();
            assert_eq!(lease.envelope.event.id(), format!("e{i}"));
            assert_eq!(lease.envelope.event.payload()["n"], i);
            assert_eq!(lease.envelope.group_keys(), [format!("p:{i}")]);
            assert_eq!(
                lease.envelope.event.header("x-delivery"),
                Some(i.to_string().as_str())
            );
            q.ack(&lease).await.unwrap();
        }
        assert_eq!(q.depth(), 0);
    }

    #[tokio::test]
    async fn unacked_events_survive_a_reopen_in_order_with_their_details() {
        let dir = dir();
        {
            let q = DiskQueue::open(&dir, 10).unwrap();
            for n in 1..=3 {
                q.push(event(n, "p:A")).await.unwrap();
            }
            let first = q.pull().await.unwrap();
            q.ack(&first).await.unwrap();
            let _second_leased_but_not_acked = q.pull().await.unwrap();
        }
        // The writer thread of the first queue may still hold the file briefly.
        let q = crate::testing::eventually("the queue to reopen", Duration::from_secs(5), || {
            let dir = dir.clone();
            async move { Ok::<_, DiskQueueError>(Some(DiskQueue::open(&dir, 10)?)) }
        })
        .await;
        assert_eq!(q.depth(), 2);
        let a = q.pull().await.unwrap();
        assert_eq!(a.envelope.event.id(), "e2");
        assert_eq!(a.envelope.event.header("x-delivery"), Some("2"));
        assert_eq!(a.envelope.group_keys(), ["p:A"]);
        assert_eq!(a.envelope.event.payload()["n"], 2);
        q.ack(&a).await.unwrap();
        let b = q.pull().await.unwrap();
        assert_eq!(b.envelope.event.id(), "e3");
        q.push(event(4, "p:B")).await.unwrap();
        let c = q.pull().await.unwrap();
        assert!(c.seq > b.seq, "numbering continues after a restart");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn letter(envelope: &Envelope) -> DeadLetter {
        let event = &envelope.event;
        DeadLetter {
            id: 0,
            event_id: event.id().to_owned(),
            path: event.path().to_owned(),
            processor: "p".into(),
            resource: 0,
            kind: "issue".into(),
            error: "bad payload".into(),
            attempts: 1,
            failed_at_ms: 1,
            event: serde_json::from_slice(&envelope.to_stored().unwrap()).unwrap(),
            refused: Vec::new(),
        }
    }

    #[tokio::test]
    async fn dead_letters_are_kept_with_the_ack_and_survive_a_reopen() {
        let dir = dir();
        {
            let q = DiskQueue::open(&dir, 10).unwrap();
            q.push(event(1, "k")).await.unwrap();
            q.push(event(2, "k")).await.unwrap();
            let a = q.pull().await.unwrap();
            q.ack_dead(&a, vec![letter(&a.envelope), letter(&a.envelope)])
                .await
                .unwrap();
            assert_eq!(q.depth(), 1);
        }
        let q = crate::testing::eventually("the queue to reopen", Duration::from_secs(5), || {
            let dir = dir.clone();
            async move { Ok::<_, DiskQueueError>(Some(DiskQueue::open(&dir, 10)?)) }
        })
        .await;
        assert_eq!(q.depth(), 1, "the dead-lettered event was acked");
        let letters = q.list().await.unwrap();
        assert_eq!(letters.iter().map(|d| d.id).collect::<Vec<_>>(), [1, 2]);
        let back = letters[0].to_envelope().unwrap();
        assert_eq!(
            (back.event.id(), back.event.payload()["n"].as_u64()),
            ("e1", Some(1))
        );
        assert_eq!(
            DeadLetterStore::remove(&q, 1).await.unwrap().map(|d| d.id),
            Some(1)
        );
        assert_eq!(DeadLetterStore::remove(&q, 1).await.unwrap(), None);
        let b = q.pull().await.unwrap();
        q.ack_dead(&b, vec![letter(&b.envelope)]).await.unwrap();
        assert_eq!(
            q.list().await.unwrap().last().map(|d| d.id),
            Some(3),
            "ids go on"
        );
        assert_eq!(q.purge().await.unwrap(), 2);
        assert!(q.list().await.unwrap().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_full_queue_refuses_and_keeps_nothing() {
        let dir = dir();
        let q = DiskQueue::open(&dir, 1).unwrap();
        q.push(event(1, "k")).await.unwrap();
        assert!(matches!(
            q.push(event(2, "k")).await,
            Err(QueueError::Full { capacity: 1 })
        ));
        drop(q);
        let q = crate::testing::eventually("the queue to reopen", Duration::from_secs(5), || {
            let dir = dir.clone();
            async move { Ok::<_, DiskQueueError>(Some(DiskQueue::open(&dir, 10)?)) }
        })
        .await;
        assert_eq!(q.depth(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
