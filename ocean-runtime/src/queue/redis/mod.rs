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

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Script, Value};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::event::RecordError;
use crate::group_commit::StorageError;
use tokio::task::JoinHandle;

use super::{
    DeadLetter, DeadLetterStore, DeliveryLog, EventQueue, Hold, Lease, Pushed, QueueError,
};
use crate::event::WebhookEvent;
use crate::metrics::QueueGauges;
use crate::processor::BoxFuture;

/// The connection every call goes through: one server (reconnecting), or a Redis Cluster (routing
/// each call to the node that owns the integration's hash slot, following its moves).
#[derive(Clone)]
enum Conn {
    Node(ConnectionManager),
    Cluster(ClusterConnection),
}

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, Value> {
        match self {
            Self::Node(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Node(c) => c.req_packed_commands(cmd, offset, count),
            Self::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Node(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

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

macro_rules! script {
    ($file:literal) => {
        concat!(include_str!("lua/common.lua"), include_str!($file))
    };
}

struct Scripts {
    push: Script,
    replay: Script,
    reserve: Script,
    ack: Script,
    retry: Script,
    renew: Script,
    reap: Script,
    release: Script,
    stats: Script,
}

impl Scripts {
    fn new() -> Self {
        Self {
            push: Script::new(script!("lua/push.lua")),
            replay: Script::new(script!("lua/replay.lua")),
            reserve: Script::new(script!("lua/reserve.lua")),
            ack: Script::new(script!("lua/ack.lua")),
            retry: Script::new(script!("lua/retry.lua")),
            renew: Script::new(script!("lua/renew.lua")),
            reap: Script::new(script!("lua/reap.lua")),
            release: Script::new(script!("lua/release.lua")),
            stats: Script::new(script!("lua/stats.lua")),
        }
    }
}

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

fn hex(s: &str) -> String {
    use std::fmt::Write as _;
    s.bytes()
        .fold(String::with_capacity(s.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Okay => Some("OK".to_owned()),
        _ => None,
    }
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        other => text(other)?.parse().ok(),
    }
}

fn items(v: Value) -> Vec<Value> {
    match v {
        Value::Array(items) => items,
        other => vec![other],
    }
}

fn unexpected(what: &str, v: &impl std::fmt::Debug) -> QueueError {
    QueueError::Storage(StorageError::Unexpected {
        script: what.to_owned(),
        answer: format!("{v:?}"),
    })
}

/// A dead letter that does not encode or decode.
fn letter_error(e: serde_json::Error) -> StorageError {
    StorageError::Record(RecordError::Malformed(Arc::new(e)))
}

/// What the last call said about Redis.
fn classify(e: &redis::RedisError) -> QueueError {
    if e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
    {
        QueueError::Unavailable(e.to_string())
    } else {
        QueueError::Storage(StorageError::Redis(Arc::new(e.clone())))
    }
}

/// A dead letter as stored: the JSON of [`DeadLetter`], or (for an event the reaper gave up on)
/// `T`, a JSON line with the error, then the event's record.
fn parse_letter(id: u64, bytes: &[u8]) -> Result<DeadLetter, StorageError> {
    if let Some(rest) = bytes.strip_prefix(b"T") {
        let nl = rest
            .iter()
            .position(|b| *b == b'\n')
            .ok_or(RecordError::Truncated)?;
        let meta: serde_json::Value = serde_json::from_slice(&rest[..nl]).map_err(letter_error)?;
        let event = WebhookEvent::from_record(&rest[nl + 1..])?;
        let mut letter = DeadLetter::of_event(
            &event,
            meta["error"].as_str().unwrap_or_default().to_owned(),
            u32::try_from(meta["attempts"].as_u64().unwrap_or(0)).unwrap_or(u32::MAX),
            meta["failed_at_ms"].as_u64().unwrap_or(0),
        );
        letter.id = id;
        return Ok(letter);
    }
    let mut letter: DeadLetter = serde_json::from_slice(bytes).map_err(letter_error)?;
    letter.id = id;
    Ok(letter)
}

/// The dead letter stored under `id`, if any.
fn stored_letter(id: u64, bytes: Option<Vec<u8>>) -> Result<Option<DeadLetter>, QueueError> {
    bytes
        .map(|b| parse_letter(id, &b).map_err(QueueError::Storage))
        .transpose()
}

/// A lease this replica holds.
struct Held {
    token: u64,
    hold: Arc<Hold>,
}

struct Inner {
    conn: Conn,
    client: redis::Client,
    keys: Vec<String>,
    bell: String,
    replica: String,
    opts: RedisOptions,
    scripts: Scripts,
    held: Mutex<HashMap<u64, Held>>,
    wake: Notify,
    /// Held by the one idle worker that asks Redis for an event; the other idle workers queue
    /// behind it instead of each polling Redis (hundreds of workers would otherwise poll at once).
    waiter: tokio::sync::Mutex<()>,
    closed: AtomicBool,
    /// Whether the last call reached Redis (for logging an outage once).
    reachable: AtomicBool,
    /// Settles refused because the lease was taken over.
    fenced: AtomicU64,
    /// Leases lost while a job ran.
    lost: AtomicU64,
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

impl Inner {
    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Held>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records whether Redis answered, logging the start and the end of an outage once.
    fn reached<T>(&self, result: Result<T, QueueError>) -> Result<T, QueueError> {
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
    async fn run(&self, script: &Script, args: &[&[u8]]) -> Result<Value, QueueError> {
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

    fn lease_ms(&self) -> String {
        self.opts.lease.as_millis().to_string()
    }

    /// How long after a renewal was sent the lease may be acted on: the lease time less a fifth,
    /// so that a write started just before the deadline does not outlive it.
    fn validity(&self) -> Duration {
        self.opts.lease - self.opts.lease / 5
    }

    async fn reserve(&self) -> Result<Result<Lease, Option<Duration>>, QueueError> {
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
    fn leased(
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
                match WebhookEvent::from_record(record) {
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
    async fn settle(
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
                                event_id = lease.event.id(),
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
    async fn ack_leasing(
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

    async fn renewer(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.opts.lease / 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.renew_once().await;
        }
    }

    async fn renew_once(&self) {
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
    async fn give_back(&self, pairs: &[(u64, u64)]) -> Result<i64, QueueError> {
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

    fn lose(&self, seq: u64, hold: &Hold, why: &str) {
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

    async fn reaper(self: Arc<Self>) {
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
    async fn pusher(self: Arc<Self>, mut requests: mpsc::Receiver<PushRequest>) {
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

    async fn push_batch(&self, batch: Vec<PushRequest>) {
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

    async fn doorbell(self: Arc<Self>) {
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

    fn event_args(event: &WebhookEvent) -> (String, Vec<String>) {
        let groups = event.group_keys().iter().map(|g| hex(g)).collect();
        let sup = if event.supersedable() { "1" } else { "0" };
        (sup.to_owned(), groups)
    }
}

impl EventQueue for RedisQueue {
    fn push(&self, event: WebhookEvent) -> BoxFuture<'_, Result<Pushed, QueueError>> {
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
                event.id().as_bytes().to_vec(),
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

impl DeadLetterStore for RedisQueue {
    fn list(&self) -> BoxFuture<'_, Result<Vec<DeadLetter>, QueueError>> {
        Box::pin(async move {
            let mut conn = self.inner.conn.clone();
            let all: HashMap<u64, Vec<u8>> = redis::cmd("HGETALL")
                .arg(&self.inner.keys[11])
                .query_async(&mut conn)
                .await
                .map_err(|e| classify(&e))?;
            let mut letters = all
                .into_iter()
                .map(|(id, bytes)| parse_letter(id, &bytes).map_err(QueueError::Storage))
                .collect::<Result<Vec<_>, _>>()?;
            letters.sort_by_key(|l| l.id);
            Ok(letters)
        })
    }

    fn get(&self, id: u64) -> BoxFuture<'_, Result<Option<DeadLetter>, QueueError>> {
        Box::pin(async move {
            let mut conn = self.inner.conn.clone();
            let bytes: Option<Vec<u8>> = redis::cmd("HGET")
                .arg(&self.inner.keys[11])
                .arg(id)
                .query_async(&mut conn)
                .await
                .map_err(|e| classify(&e))?;
            stored_letter(id, bytes)
        })
    }

    fn remove(&self, id: u64) -> BoxFuture<'_, Result<Option<DeadLetter>, QueueError>> {
        Box::pin(async move {
            let mut conn = self.inner.conn.clone();
            let key = &self.inner.keys[11];
            let (bytes, _): (Option<Vec<u8>>, i64) = redis::pipe()
                .atomic()
                .hget(key, id)
                .hdel(key, id)
                .query_async(&mut conn)
                .await
                .map_err(|e| classify(&e))?;
            stored_letter(id, bytes)
        })
    }

    fn purge(&self) -> BoxFuture<'_, Result<usize, QueueError>> {
        Box::pin(async move {
            let mut conn = self.inner.conn.clone();
            let key = &self.inner.keys[11];
            let (n, _): (usize, i64) = redis::pipe()
                .atomic()
                .hlen(key)
                .del(key)
                .query_async(&mut conn)
                .await
                .map_err(|e| classify(&e))?;
            Ok(n)
        })
    }

    fn replay(&self, id: u64, event: WebhookEvent) -> BoxFuture<'_, Result<bool, QueueError>> {
        Box::pin(async move {
            let inner = &self.inner;
            let record = event.to_record().map_err(StorageError::from)?;
            let (sup, groups) = Inner::event_args(&event);
            let id = id.to_string();
            let capacity = inner.opts.capacity.to_string();
            let mut args: Vec<&[u8]> =
                vec![id.as_bytes(), &record, capacity.as_bytes(), sup.as_bytes()];
            args.extend(groups.iter().map(String::as_bytes));
            let answer = inner.run(&inner.scripts.replay, &args).await?;
            match text(&answer).as_deref() {
                Some("ok") => Ok(true),
                Some("gone") => Ok(false),
                Some("full") => Err(QueueError::Full {
                    capacity: inner.opts.capacity,
                }),
                _ => Err(unexpected("replay", &answer)),
            }
        })
    }
}

/// Delivery ids are kept in Redis and checked inside [`EventQueue::push`].
impl DeliveryLog for RedisQueue {}
