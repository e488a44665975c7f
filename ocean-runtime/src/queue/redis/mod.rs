//! The Redis queue: any number of replicas of one integration share one queue.
//!
//! Every state change is one Lua script (`lua/*.lua`, each with `lua/common.lua` in front), over
//! keys that all carry the integration's hash tag, `{ocean:<identifier>}:…`, so the scripts are
//! legal on Redis Cluster too; a cluster is recognised when connecting, and calls then go through
//! a cluster connection that routes them to the node owning the slot. The scripts keep per-group
//! order (a group's head is the first member of a lexicographically sorted set; an event runs only
//! when it heads all its groups), leases with fencing tokens and deadlines from Redis's clock,
//! supersession, delivery-id dedup, dead letters and the counters of `/metrics`.
//!
//! Pushes are batched: webhooks accepted while a push call is in flight are stored together by
//! the next call (one round trip and one doorbell for all of them), and each is answered 200 only
//! once that call returned.
//!
//! Each replica runs three background tasks beside its workers and the pusher:
//! - the renewer extends every lease this replica holds, in one script call, every third of the
//!   lease time; a lease found taken over, or not renewed before its deadline, is lost and its
//!   jobs are cancelled;
//! - the reaper clears expired leases (a replica that died or froze): the event goes back to the
//!   ready set at the head of its groups, or becomes a dead letter past the most takeovers;
//! - the doorbell listener wakes idle workers when a script says an event became ready (workers
//!   also look again at least every second, so a missed message only delays).
//!
//! Redis cannot fence what a job writes to Port. So a worker checks its lease locally before it
//! writes, by this process's monotonic clock, with a margin (see [`Lease::is_held`]).
//!
//! Files: this one holds the options, the handle and its [`EventQueue`] impl; `inner` what the
//! handle, workers and background tasks share and the calls that run each script; `scripts` the
//! Lua; `conn` the node-or-cluster connection; `reply` the reading of replies and records;
//! `dead_letters` the operator's dead-letter commands.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

mod conn;
mod dead_letters;
mod inner;
mod reply;
mod scripts;

use redis::Value;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::group_commit::StorageError;
use tokio::task::JoinHandle;

use super::{DeadLetter, DeliveryLog, EventQueue, Lease, Pushed, QueueError};
use crate::envelope::Envelope;
use crate::metrics::QueueGauges;
use crate::processor::BoxFuture;
use conn::Conn;
use inner::Inner;
use reply::{classify, int, items, text, unexpected};
use scripts::Scripts;

/// How idle workers look again at most this long after their last look, doorbell or not.
const POLL: Duration = Duration::from_secs(1);
/// Time limit of one Redis call.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);
/// Time limit of one connection attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Most events stored by one call of the push script: pushes that arrive while a call is in
/// flight go together in the next one.
const PUSH_BATCH: usize = 64;
/// Most bytes of records sent in one call of the push script (one larger event goes alone).
const PUSH_BATCH_BYTES: usize = 4 << 20;

/// The key names, in the order `lua/common.lua` reads them.
const KEY_NAMES: [&str; 16] = [
    "seq", "ev", "sched", "groups", "ready", "delayed", "lease", "expiry", "latest", "dlv", "dlvt",
    "dead", "deadseq", "fence", "all", "stats",
];

/// How to run a [`RedisQueue`].
#[derive(Debug, Clone)]
pub(crate) struct RedisOptions {
    /// `redis://[user:password@]host:port[/db]` or `rediss://…` (`OCEAN__QUEUE__REDIS_URL`).
    pub url: String,
    /// PEM file of the authorities a `rediss://` server is checked against instead of the public
    /// ones (`OCEAN__QUEUE__REDIS_CA_FILE`).
    pub ca_file: Option<std::path::PathBuf>,
    /// The integration identifier: the hash tag of every key.
    pub integration: String,
    /// Lease time (`OCEAN__QUEUE__LEASE_SECONDS`).
    pub lease: Duration,
    /// Takeovers after which an event becomes a dead letter (`OCEAN__QUEUE__MAX_TAKEOVERS`).
    pub max_takeovers: u32,
    /// How often expired leases are looked for (`OCEAN__QUEUE__REAPER_SECONDS`).
    pub reaper_period: Duration,
    /// Events the queue holds before ingress answers 503.
    pub capacity: usize,
    /// How long delivery ids are remembered.
    pub dedup_window: Duration,
    /// Connection attempts at start-up before giving up.
    pub connect_attempts: u32,
    /// Runs the renewer, reaper and doorbell (a replica); off for a one-shot command.
    pub background: bool,
}

/// The Redis queue could not start.
///
/// The Redis queue could not start (`OCEAN__QUEUE__BACKEND=redis` on
/// [`Settings`](crate::Settings)).
#[derive(Debug, thiserror::Error)]
pub enum RedisQueueError {
    /// The URL does not parse.
    #[error("OCEAN__QUEUE__REDIS_URL is not a Redis URL ({url}): {reason}")]
    Url {
        /// The URL, without its password.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The certificate authorities' file cannot be read or used.
    #[error("OCEAN__QUEUE__REDIS_CA_FILE ({path}) cannot be used: {reason}")]
    CaFile {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// Redis did not answer.
    #[error(
        "cannot reach Redis at {url} (OCEAN__QUEUE__REDIS_URL) after {attempts} attempts: {reason}"
    )]
    Unreachable {
        /// The URL, without its password.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        reason: String,
    },
}

/// `url` (or each of comma-separated URLs) without its password.
pub(crate) fn redact(url: &str) -> String {
    if url.contains(',') {
        return url
            .split(',')
            .map(|u| redact(u.trim()))
            .collect::<Vec<_>>()
            .join(",");
    }
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "(unparsable URL)".to_owned(),
    }
}

/// The shared [`EventQueue`] on Redis (see the module documentation).
pub(crate) struct RedisQueue {
    inner: Arc<Inner>,
    /// To the pusher task, which stores concurrent pushes together.
    pushes: mpsc::Sender<PushRequest>,
    /// The pusher task; it outlives [`EventQueue::release`], which stops the others.
    pusher: JoinHandle<()>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// One event for the pusher: the script's arguments for it, and where its answer goes.
struct PushRequest {
    /// Record, event id, delivery key, supersedable, group count, groups.
    args: Vec<Vec<u8>>,
    reply: oneshot::Sender<Result<Value, QueueError>>,
}

impl PushRequest {
    fn bytes(&self) -> usize {
        self.args.iter().map(Vec::len).sum()
    }
}

/// The same failure again, for each event of a batch.
fn again(e: &QueueError) -> QueueError {
    e.clone()
}

impl std::fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue")
            .field("url", &redact(&self.inner.opts.url))
            .field("replica", &self.inner.replica)
            .finish_non_exhaustive()
    }
}

impl Drop for RedisQueue {
    fn drop(&mut self) {
        self.pusher.abort();
        for task in self.tasks().drain(..) {
            task.abort();
        }
    }
}

fn replica_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty() && !h.contains(char::is_whitespace))
        .unwrap_or_else(|| "replica".to_owned());
    let tag = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}/{}/{}", std::process::id(), &tag[..6])
}

impl RedisQueue {
    /// Connects (retrying a bounded number of times) and, for a replica, starts the renewer, the
    /// reaper and the doorbell listener.
    ///
    /// # Errors
    /// The URL is malformed, or Redis did not answer within the attempts.
    pub(crate) async fn connect(opts: RedisOptions) -> Result<Self, RedisQueueError> {
        let shown = redact(&opts.url);
        let url_error = |reason: String| RedisQueueError::Url {
            url: shown.clone(),
            reason,
        };
        // Several comma-separated URLs are the seed nodes of a Redis Cluster; the first one also
        // tells whether the server is a cluster at all.
        let urls: Vec<&str> = opts
            .url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect();
        let Some(first) = urls.first().copied() else {
            return Err(url_error("no URL".to_owned()));
        };
        // The URL alone first, so that its mistakes are reported as the URL's.
        for url in &urls {
            redis::Client::open(*url).map_err(|e| url_error(e.to_string()))?;
        }
        let ca_error = |path: &std::path::Path, reason: String| RedisQueueError::CaFile {
            path: path.display().to_string(),
            reason,
        };
        // The private authority's file and its PEM, when one is set.
        let certificates = opts
            .ca_file
            .as_deref()
            .map(|path| {
                std::fs::read(path)
                    .map(|pem| (path, pem))
                    .map_err(|e| ca_error(path, e.to_string()))
            })
            .transpose()?;
        let tls = |pem: &Vec<u8>| redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem.clone()),
        };
        let client = match &certificates {
            Some((path, pem)) => redis::Client::build_with_tls(first, tls(pem))
                .map_err(|e| ca_error(path, e.to_string()))?,
            None => redis::Client::open(first).map_err(|e| url_error(e.to_string()))?,
        };
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(3)
            .set_max_delay(Duration::from_secs(2));
        let attempts = opts.connect_attempts.max(1);
        let unreachable = |reason: String| RedisQueueError::Unreachable {
            url: shown.clone(),
            attempts,
            reason,
        };
        let mut attempt = 0;
        let (node, cluster) = loop {
            attempt += 1;
            let tried = async {
                let mut conn =
                    ConnectionManager::new_with_config(client.clone(), config.clone()).await?;
                // A user whose ACL forbids INFO is taken to be on a single server.
                let info = match redis::cmd("INFO")
                    .arg("cluster")
                    .query_async::<String>(&mut conn)
                    .await
                {
                    Ok(info) => info,
                    Err(e) if e.code() == Some("NOPERM") => String::new(),
                    Err(e) => return Err(e),
                };
                Ok((conn, info.contains("cluster_enabled:1")))
            };
            match tokio::time::timeout(CONNECT_TIMEOUT * 4, tried).await {
                Ok(Ok(found)) => break found,
                Ok(Err(e)) if attempt >= attempts => return Err(unreachable(e.to_string())),
                Err(_) if attempt >= attempts => return Err(unreachable("timed out".to_owned())),
                Ok(Err(e)) => {
                    tracing::warn!(url = %shown, attempt, error = %e, "Redis does not answer yet; trying again");
                }
                Err(_) => {
                    tracing::warn!(url = %shown, attempt, "Redis does not answer yet (timed out); trying again");
                }
            }
            tokio::time::sleep(Duration::from_millis(500) * attempt).await;
        };
        let conn = if cluster {
            let mut builder = ClusterClient::builder(urls.iter().copied())
                .connection_timeout(CONNECT_TIMEOUT)
                .response_timeout(RESPONSE_TIMEOUT)
                .retries(3);
            if let Some((_, pem)) = &certificates {
                builder = builder.certs(tls(pem));
            }
            let cluster = builder.build().map_err(|e| url_error(e.to_string()))?;
            let connected =
                tokio::time::timeout(CONNECT_TIMEOUT * 4, cluster.get_async_connection())
                    .await
                    .map_err(|_| unreachable("timed out joining the cluster".to_owned()))?
                    .map_err(|e| unreachable(e.to_string()))?;
            drop(node);
            Conn::Cluster(connected)
        } else {
            Conn::Node(node)
        };
        let tag = opts.integration.replace(['{', '}'], "_");
        let keys = KEY_NAMES
            .iter()
            .map(|n| format!("{{ocean:{tag}}}:{n}"))
            .collect();
        let inner = Arc::new(Inner {
            conn,
            client,
            keys,
            bell: format!("{{ocean:{tag}}}:bell"),
            replica: replica_name(),
            scripts: Scripts::new(),
            held: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            waiter: tokio::sync::Mutex::new(()),
            closed: AtomicBool::new(false),
            reachable: AtomicBool::new(true),
            fenced: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            opts,
        });
        let (pushes, requests) = mpsc::channel(PUSH_BATCH * 16);
        let pusher = tokio::spawn(Arc::clone(&inner).pusher(requests));
        let tasks = if inner.opts.background {
            tracing::info!(
                replica = %inner.replica,
                url = %shown,
                lease_s = inner.opts.lease.as_secs_f64(),
                cluster,
                "event queue on Redis, shared with the other replicas"
            );
            vec![
                tokio::spawn(Arc::clone(&inner).renewer()),
                tokio::spawn(Arc::clone(&inner).reaper()),
                tokio::spawn(Arc::clone(&inner).doorbell()),
            ]
        } else {
            Vec::new()
        };
        Ok(Self {
            inner,
            pushes,
            pusher,
            tasks: Mutex::new(tasks),
        })
    }

    fn tasks(&self) -> std::sync::MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl EventQueue for RedisQueue {
    fn push(&self, event: Envelope) -> BoxFuture<'_, Result<Pushed, QueueError>> {
        Box::pin(async move {
            let inner = &self.inner;
            if inner.closed.load(Ordering::Relaxed) {
                return Err(QueueError::Closed);
            }
            let record = event.to_record().map_err(StorageError::from)?;
            let (sup, groups) = Inner::event_args(&event);
            let key = if inner.opts.dedup_window.is_zero() {
                ""
            } else {
                event.delivery_key().unwrap_or("")
            };
            let mut args = vec![
                record,
                event.event.id().as_bytes().to_vec(),
                key.as_bytes().to_vec(),
                sup.into_bytes(),
                groups.len().to_string().into_bytes(),
            ];
            args.extend(groups.into_iter().map(String::into_bytes));
            let (reply, answer) = oneshot::channel();
            self.pushes
                .send(PushRequest { args, reply })
                .await
                .map_err(|_| QueueError::Closed)?;
            let answer = answer
                .await
                .map_err(|_| QueueError::Unavailable("the pusher task stopped".to_owned()))??;
            let answer = items(answer);
            match answer.first().and_then(text).as_deref() {
                Some("ok") => Ok(Pushed::Queued),
                Some("dup") => Ok(Pushed::Duplicate(
                    answer.get(1).and_then(text).unwrap_or_default(),
                )),
                Some("full") => Err(QueueError::Full {
                    capacity: inner.opts.capacity,
                }),
                _ => Err(unexpected("push", &answer)),
            }
        })
    }

    fn pull(&self) -> BoxFuture<'_, Option<Lease>> {
        Box::pin(async move {
            let inner = &self.inner;
            let mut pause = Duration::from_millis(100);
            // Released with the lease, so that the next idle worker asks at once.
            let _turn = inner.waiter.lock().await;
            loop {
                let notified = inner.wake.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if inner.closed.load(Ordering::Relaxed) {
                    return None;
                }
                let wait = match inner.reserve().await {
                    Ok(Ok(lease)) => return Some(lease),
                    Ok(Err(due)) => {
                        pause = Duration::from_millis(100);
                        due.map_or(POLL, |d| d.min(POLL))
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot lease an event; waiting");
                        pause = (pause * 2).min(Duration::from_secs(5));
                        // A doorbell must not cut the back-off short while Redis is down.
                        tokio::time::sleep(pause).await;
                        continue;
                    }
                };
                let _ = tokio::time::timeout(wait, notified).await;
            }
        })
    }

    fn ack<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<(), QueueError>> {
        Box::pin(async move { self.inner.ack_leasing(lease, &[], false).await.0 })
    }

    fn retry_later<'a>(
        &'a self,
        lease: &'a Lease,
        delay: Duration,
    ) -> BoxFuture<'a, Result<(), QueueError>> {
        Box::pin(async move {
            let delay = delay.as_millis().to_string();
            self.inner
                .settle(lease, &self.inner.scripts.retry, &[delay.as_bytes()])
                .await
                .map(drop)
        })
    }

    fn ack_dead<'a>(
        &'a self,
        lease: &'a Lease,
        letters: Vec<DeadLetter>,
    ) -> BoxFuture<'a, Result<(), QueueError>> {
        Box::pin(async move { self.inner.ack_leasing(lease, &letters, false).await.0 })
    }

    fn ack_and_lease_next<'a>(
        &'a self,
        lease: &'a Lease,
        letters: Vec<DeadLetter>,
    ) -> BoxFuture<'a, (Result<(), QueueError>, Option<Lease>)> {
        let next = !self.inner.closed.load(Ordering::Relaxed);
        Box::pin(async move { self.inner.ack_leasing(lease, &letters, next).await })
    }

    fn stats(&self) -> BoxFuture<'_, Result<QueueGauges, QueueError>> {
        Box::pin(async move {
            let inner = &self.inner;
            let answer = inner.run(&inner.scripts.stats, &[]).await?;
            let parts = items(answer);
            let n = |i: usize| parts.get(i).and_then(int).unwrap_or(0);
            Ok(QueueGauges {
                depth: usize::try_from(n(0)).unwrap_or(0),
                oldest_age: u64::try_from(n(1)).ok().map(Duration::from_millis),
                superseded: u64::try_from(n(2)).unwrap_or(0),
                takeovers: u64::try_from(n(3)).unwrap_or(0),
                given_up: u64::try_from(n(4)).unwrap_or(0),
                fenced: inner.fenced.load(Ordering::Relaxed),
                leases_lost: inner.lost.load(Ordering::Relaxed),
            })
        })
    }

    fn health(&self) -> BoxFuture<'_, Result<(), QueueError>> {
        Box::pin(async move {
            if self.is_closed() {
                return Err(QueueError::Closed);
            }
            let mut conn = self.inner.conn.clone();
            let result = redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .map(|_| ())
                .map_err(|e| classify(&e));
            self.inner.reached(result)
        })
    }

    fn close(&self) {
        self.inner.closed.store(true, Ordering::Relaxed);
        self.inner.wake.notify_waiters();
    }

    fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Relaxed)
    }

    fn durable(&self) -> bool {
        true
    }

    fn shared(&self) -> bool {
        true
    }

    fn release(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let inner = &self.inner;
            let held: Vec<(u64, u64)> = inner
                .held()
                .drain()
                .map(|(seq, h)| {
                    h.hold.lose();
                    (seq, h.token)
                })
                .collect();
            if !held.is_empty() {
                match inner.give_back(&held).await {
                    Ok(n) => {
                        tracing::info!(released = n, "leases given back for the other replicas")
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot give the leases back; they expire instead")
                    }
                }
            }
            for task in self.tasks().drain(..) {
                task.abort();
            }
        })
    }

    fn give_up<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let inner = &self.inner;
            let held = inner
                .held()
                .get(&lease.seq)
                .map(|h| (h.token, Arc::clone(&h.hold)));
            let Some((token, hold)) = held else {
                // Already lost (taken over, or given back by the renewer).
                return;
            };
            inner.lose(lease.seq, &hold, "its worker gave it up");
            if let Err(e) = inner.give_back(&[(lease.seq, token)]).await {
                tracing::warn!(seq = lease.seq, error = %e, "cannot give the lease back; it expires instead");
            }
        })
    }
}

/// Delivery ids are kept in Redis and checked inside [`EventQueue::push`].
impl DeliveryLog for RedisQueue {}
