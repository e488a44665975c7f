//! What the replica's handle, its workers and its background tasks share: the connection, the
//! scripts, the leases held, and the calls that run each script.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::{Script, Value};
use tokio::sync::{Notify, mpsc};

use super::conn::Conn;
use super::reply::{classify, hex, int, items, letter_error, text, unexpected};
use super::scripts::Scripts;
use super::{
    CONNECT_TIMEOUT, POLL, PUSH_BATCH, PUSH_BATCH_BYTES, PushRequest, RedisOptions, again, redact,
};
use crate::envelope::Envelope;
use crate::queue::{DeadLetter, Hold, Lease, QueueError};

/// A lease this replica holds.
pub(super) struct Held {
    pub(super) token: u64,
    pub(super) hold: Arc<Hold>,
}

pub(super) struct Inner {
    pub(super) conn: Conn,
    pub(super) client: redis::Client,
    pub(super) keys: Vec<String>,
    pub(super) bell: String,
    pub(super) replica: String,
    pub(super) opts: RedisOptions,
    pub(super) scripts: Scripts,
    pub(super) held: Mutex<HashMap<u64, Held>>,
    pub(super) wake: Notify,
    /// Held by the one idle worker that asks Redis for an event; the other idle workers queue
    /// behind it instead of each polling Redis (hundreds of workers would otherwise poll at once).
    pub(super) waiter: tokio::sync::Mutex<()>,
    pub(super) closed: AtomicBool,
    /// Whether the last call reached Redis (for logging an outage once).
    pub(super) reachable: AtomicBool,
    /// Settles refused because the lease was taken over.
    pub(super) fenced: AtomicU64,
    /// Leases lost while a job ran.
    pub(super) lost: AtomicU64,
}

impl Inner {
    pub(super) fn held(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Held>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records whether Redis answered, logging the start and the end of an outage once.
    pub(super) fn reached<T>(&self, result: Result<T, QueueError>) -> Result<T, QueueError> {
        match &result {
            Err(QueueError::Unavailable(e)) => {
                if self.reachable.swap(false, Ordering::Relaxed) {
                    tracing::error!(error = %e, url = %redact(&self.opts.url), "Redis is unreachable; webhooks are refused with 503 and workers pause until it is back");
                }
            }
            _ => {
                if !self.reachable.swap(true, Ordering::Relaxed) {
                    tracing::info!("Redis is reachable again; work resumes");
                }
            }
        }
        result
    }

    /// Runs a script over every key, with the doorbell channel and then `args`.
    pub(super) async fn run(&self, script: &Script, args: &[&[u8]]) -> Result<Value, QueueError> {
        let mut invocation = script.prepare_invoke();
        for key in &self.keys {
            invocation.key(key);
        }
        invocation.arg(&self.bell);
        for arg in args {
            invocation.arg(*arg);
        }
        let mut conn = self.conn.clone();
        let result = invocation
            .invoke_async::<Value>(&mut conn)
            .await
            .map_err(|e| classify(&e));
        self.reached(result)
    }

    pub(super) fn lease_ms(&self) -> String {
        self.opts.lease.as_millis().to_string()
    }

    /// How long after a renewal was sent the lease may be acted on: the lease time less a fifth,
    /// so that a write started just before the deadline does not outlive it.
    pub(super) fn validity(&self) -> Duration {
        self.opts.lease - self.opts.lease / 5
    }

    pub(super) async fn reserve(&self) -> Result<Result<Lease, Option<Duration>>, QueueError> {
        let sent_at = Instant::now();
        let answer = self
            .run(
                &self.scripts.reserve,
                &[self.replica.as_bytes(), self.lease_ms().as_bytes()],
            )
            .await?;
        self.leased(&items(answer), sent_at)
    }

    /// Reads what `lease_next` (in `lua/common.lua`) answered, sent at `sent_at`: a lease, now
    /// held (and renewed) by this replica, or when to look again.
    pub(super) fn leased(
        &self,
        parts: &[Value],
        sent_at: Instant,
    ) -> Result<Result<Lease, Option<Duration>>, QueueError> {
        match parts.first().and_then(text).as_deref() {
            Some("none") => {
                let due = parts.get(1).and_then(int).unwrap_or(-1);
                Ok(Err(u64::try_from(due).ok().map(Duration::from_millis)))
            }
            Some("lease") => {
                let field = |i: usize| {
                    parts
                        .get(i)
                        .and_then(int)
                        .and_then(|n| u64::try_from(n).ok())
                };
                let (Some(seq), Some(token), Some(delivery)) = (field(1), field(2), field(3))
                else {
                    return Err(unexpected("lease", &parts));
                };
                let hold = Hold::new(sent_at + self.validity());
                self.held().insert(
                    seq,
                    Held {
                        token,
                        hold: Arc::clone(&hold),
                    },
                );
                let record = match parts.get(4) {
                    Some(Value::BulkString(b)) => b.as_slice(),
                    _ => &[],
                };
                match Envelope::from_record(record) {
                    Ok(event) => Ok(Ok(Lease::networked(
                        seq,
                        Arc::new(event),
                        u32::try_from(delivery).unwrap_or(u32::MAX),
                        token,
                        hold,
                    ))),
                    Err(e) => {
                        // Not renewed: the lease expires, and after the most takeovers the record
                        // is kept as a dead letter, byte for byte.
                        tracing::error!(seq, error = %e, "unreadable event in the Redis queue; left to expire into a dead letter");
                        self.held().remove(&seq);
                        Ok(Err(Some(POLL)))
                    }
                }
            }
            _ => Err(unexpected("lease", &parts)),
        }
    }

    /// Runs a settle script for `lease` and returns its answer (`ok`, or an array starting with
    /// `ok`); while Redis is unreachable and the lease still valid, it is tried again. A refused
    /// (fenced) settle changes nothing.
    pub(super) async fn settle(
        &self,
        lease: &Lease,
        script: &Script,
        extra: &[&[u8]],
    ) -> Result<Vec<Value>, QueueError> {
        let seq = lease.seq.to_string();
        let token = lease.token.to_string();
        let mut args: Vec<&[u8]> = vec![seq.as_bytes(), token.as_bytes()];
        args.extend_from_slice(extra);
        let mut pause = Duration::from_millis(50);
        let result = loop {
            match self.run(script, &args).await {
                Ok(answer) => {
                    let parts = items(answer);
                    match parts.first().and_then(text).as_deref() {
                        Some("ok") => break Ok(parts),
                        Some("fenced") => {
                            self.fenced.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(
                                seq = lease.seq,
                                event_id = lease.envelope.event.id(),
                                "settle refused: the lease was taken over by another replica"
                            );
                            break Err(QueueError::Fenced(lease.seq));
                        }
                        _ => break Err(unexpected("settle", &Value::Array(parts))),
                    }
                }
                Err(QueueError::Unavailable(_)) if lease.is_held() => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                Err(e) => break Err(e),
            }
        };
        // Settled, refused or given up: this replica stops renewing it either way (an unsettled
        // event's lease expires and another replica takes it over).
        self.held().remove(&lease.seq);
        result
    }

    /// Acks `lease` with its dead letters; with `next`, leases this replica the next ready
    /// event in the same script call.
    pub(super) async fn ack_leasing(
        &self,
        lease: &Lease,
        letters: &[DeadLetter],
        next: bool,
    ) -> (Result<(), QueueError>, Option<Lease>) {
        let encoded = match letters
            .iter()
            .map(serde_json::to_vec)
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(encoded) => encoded,
            Err(e) => return (Err(QueueError::Storage(letter_error(e))), None),
        };
        let lease_ms = self.lease_ms();
        let replica: &[u8] = if next { self.replica.as_bytes() } else { b"" };
        let mut args: Vec<&[u8]> = vec![replica, lease_ms.as_bytes()];
        args.extend(encoded.iter().map(Vec::as_slice));
        let sent_at = Instant::now();
        match self.settle(lease, &self.scripts.ack, &args).await {
            Ok(parts) if parts.len() > 1 => match self.leased(&parts[1..], sent_at) {
                Ok(Ok(next)) => (Ok(()), Some(next)),
                Ok(Err(_)) => (Ok(()), None),
                Err(e) => {
                    // Acked all the same; the lease, if any, expires and is taken over.
                    tracing::warn!(error = %e, "acked, but the next lease could not be read");
                    (Ok(()), None)
                }
            },
            Ok(_) => (Ok(()), None),
            Err(e) => (Err(e), None),
        }
    }

    pub(super) async fn renewer(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.opts.lease / 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.renew_once().await;
        }
    }

    pub(super) async fn renew_once(&self) {
        let now = Instant::now();
        let (overdue, snapshot): (Vec<_>, Vec<_>) = self
            .held()
            .iter()
            .map(|(seq, h)| (*seq, h.token, Arc::clone(&h.hold)))
            .partition(|(_, _, hold)| now >= hold.valid_until());
        // Past its validity by this process's clock, a lease may already be another replica's, and
        // its worker may have given up on it: renewing it could keep it here for good with nobody
        // working on it. It is lost here and given back instead.
        if !overdue.is_empty() {
            for (seq, _, hold) in &overdue {
                self.lose(*seq, hold, "it was not renewed in time");
            }
            let pairs: Vec<(u64, u64)> = overdue.iter().map(|(s, t, _)| (*s, *t)).collect();
            if let Err(e) = self.give_back(&pairs).await {
                tracing::warn!(error = %e, "cannot give overdue leases back; they expire instead");
            }
        }
        if snapshot.is_empty() {
            return;
        }
        let sent_at = Instant::now();
        let strings: Vec<String> = snapshot
            .iter()
            .flat_map(|(seq, token, _)| [seq.to_string(), token.to_string()])
            .collect();
        let mut args: Vec<&[u8]> = vec![];
        let lease_ms = self.lease_ms();
        args.push(lease_ms.as_bytes());
        args.extend(strings.iter().map(String::as_bytes));
        match self.run(&self.scripts.renew, &args).await {
            Ok(answer) => {
                let fenced: Vec<u64> = items(answer)
                    .iter()
                    .filter_map(|v| int(v).and_then(|n| u64::try_from(n).ok()))
                    .collect();
                for (seq, _, hold) in &snapshot {
                    if fenced.contains(seq) {
                        self.lose(*seq, hold, "it was taken over by another replica");
                    } else {
                        hold.extend(sent_at + self.validity());
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, leases = snapshot.len(), "cannot renew this replica's leases");
            }
        }
    }

    /// Gives leases back at once (those still carrying these tokens): their events are ready
    /// again at the head of their groups. Returns how many were given back.
    pub(super) async fn give_back(&self, pairs: &[(u64, u64)]) -> Result<i64, QueueError> {
        if pairs.is_empty() {
            return Ok(0);
        }
        let strings: Vec<String> = pairs
            .iter()
            .flat_map(|(seq, token)| [seq.to_string(), token.to_string()])
            .collect();
        let args: Vec<&[u8]> = strings.iter().map(String::as_bytes).collect();
        let answer = self.run(&self.scripts.release, &args).await?;
        Ok(int(&answer).unwrap_or(0))
    }

    pub(super) fn lose(&self, seq: u64, hold: &Hold, why: &str) {
        let removed = self.held().remove(&seq).is_some();
        if removed {
            self.lost.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                seq,
                replica = %self.replica,
                "lease lost because {why}; its jobs are cancelled and it is not acknowledged here"
            );
        }
        hold.lose();
    }

    pub(super) async fn reaper(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.opts.reaper_period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let max = self.opts.max_takeovers.to_string();
        loop {
            tick.tick().await;
            let Ok(answer) = self.run(&self.scripts.reap, &[max.as_bytes()]).await else {
                continue;
            };
            for entry in items(answer) {
                let parts = items(entry);
                let seq = parts.first().and_then(int).unwrap_or(-1);
                let holder = parts.get(1).and_then(text).unwrap_or_default();
                let holder = holder.split_once(' ').map_or("", |(_, r)| r).to_owned();
                match parts.get(2).and_then(text).as_deref() {
                    Some("dead") => tracing::error!(
                        seq,
                        former_holder = %holder,
                        max_takeovers = self.opts.max_takeovers,
                        "an event's lease expired once too often; it is kept as a dead letter"
                    ),
                    _ => tracing::warn!(
                        seq,
                        former_holder = %holder,
                        "a lease expired (its replica died or stalled); the event is taken over at the head of its groups"
                    ),
                }
            }
        }
    }

    /// Stores pushed events: each call of the push script takes every push waiting (up to
    /// [`PUSH_BATCH`] events and [`PUSH_BATCH_BYTES`]), so that concurrent webhooks share one
    /// round trip and one doorbell, as the disk queue's writes share one fsync.
    pub(super) async fn pusher(self: Arc<Self>, mut requests: mpsc::Receiver<PushRequest>) {
        let mut waiting = Vec::with_capacity(PUSH_BATCH);
        while requests.recv_many(&mut waiting, PUSH_BATCH).await > 0 {
            let mut rest = waiting.drain(..).peekable();
            while rest.peek().is_some() {
                let mut batch = Vec::new();
                let mut bytes = 0;
                while let Some(next) =
                    rest.next_if(|r| batch.is_empty() || bytes + r.bytes() <= PUSH_BATCH_BYTES)
                {
                    bytes += next.bytes();
                    batch.push(next);
                }
                self.push_batch(batch).await;
            }
        }
    }

    pub(super) async fn push_batch(&self, batch: Vec<PushRequest>) {
        let window = self.opts.dedup_window.as_millis().to_string();
        let capacity = self.opts.capacity.to_string();
        let mut args: Vec<&[u8]> = vec![window.as_bytes(), capacity.as_bytes()];
        for r in &batch {
            args.extend(r.args.iter().map(Vec::as_slice));
        }
        let answers = match self.run(&self.scripts.push, &args).await {
            Ok(Value::Array(answers)) if answers.len() == batch.len() => Ok(answers),
            Ok(other) => Err(unexpected("push", &other)),
            Err(e) => Err(e),
        };
        match answers {
            Ok(answers) => {
                for (r, answer) in batch.into_iter().zip(answers) {
                    // A sender that went away (its client hung up) still had its event stored.
                    let _ = r.reply.send(Ok(answer));
                }
            }
            Err(e) => {
                for r in batch {
                    let _ = r.reply.send(Err(again(&e)));
                }
            }
        }
    }

    pub(super) async fn doorbell(self: Arc<Self>) {
        let mut pause = Duration::from_millis(100);
        loop {
            let connected = tokio::time::timeout(CONNECT_TIMEOUT, async {
                let mut pubsub = self.client.get_async_pubsub().await?;
                pubsub.subscribe(&self.bell).await?;
                Ok::<_, redis::RedisError>(pubsub)
            })
            .await;
            match connected {
                Ok(Ok(mut pubsub)) => {
                    pause = Duration::from_millis(100);
                    // Anything may have become ready while not listening.
                    self.wake.notify_one();
                    let mut messages = pubsub.on_message();
                    while let Some(message) = messages.next().await {
                        // The message is how many events became ready: as many idle workers wake.
                        let ready = message
                            .get_payload::<String>()
                            .ok()
                            .and_then(|n| n.parse::<usize>().ok())
                            .unwrap_or(1);
                        for _ in 0..ready.clamp(1, PUSH_BATCH) {
                            self.wake.notify_one();
                        }
                    }
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "doorbell: cannot subscribe"),
                Err(_) => tracing::debug!("doorbell: subscribing timed out"),
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }

    pub(super) fn event_args(event: &Envelope) -> (String, Vec<String>) {
        let groups = event.group_keys().iter().map(|g| hex(g)).collect();
        let sup = if event.supersedable() { "1" } else { "0" };
        (sup.to_owned(), groups)
    }
}
