//! Several replicas share one queue on a real `redis-server` and one standalone built-in Port
//! (`replica local-port`): chaos with `kill -9`, a frozen replica fenced, a long job kept, SIGTERM
//! giving leases back, one delivery id posted 50 times, Redis restarted under load, dead letters
//! across replicas.
//!
//! The replicas are real processes of `src/bin/replica.rs`; each job reports its start to a
//! recorder served here, which is how per-group order is checked across processes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::BuildHasher;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::routing::post;
use ocean_runtime::testing::{RedisServer, TestBinary, eventually, local_port_token, metric};
use serde_json::{Value, json};

const REPLICA: &str = env!("CARGO_BIN_EXE_replica");
/// Lease time of the replicas, in seconds.
const LEASE: &str = "2";
const WAIT: Duration = Duration::from_secs(120);

/// The scenarios share the 2 cores: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const MAPPING: &str = r#"resources:
  - kind: item
    selector: {query: 'true'}
    port:
      entity:
        mappings:
          identifier: .group
          title: .group
          blueprint: '"item"'
          properties:
            n: .n
"#;

/// One job start: group, n, process id.
#[derive(Debug, Clone)]
struct Start {
    group: String,
    n: u64,
    pid: u64,
}

#[derive(Default)]
struct Recorder {
    starts: Mutex<Vec<Start>>,
    poisoned: Mutex<HashSet<String>>,
}

async fn record(State(rec): State<Arc<Recorder>>, Json(body): Json<Value>) -> Json<Value> {
    let group = body["group"].as_str().unwrap_or_default().to_owned();
    let fail = rec.poisoned.lock().unwrap().contains(&group);
    rec.starts.lock().unwrap().push(Start {
        group,
        n: body["n"].as_u64().unwrap_or(u64::MAX),
        pid: body["pid"].as_u64().unwrap_or(0),
    });
    Json(json!({"fail": fail}))
}

impl Recorder {
    fn starts(&self) -> Vec<Start> {
        self.starts.lock().unwrap().clone()
    }

    /// Per group, the `n`s in the order their jobs started.
    fn by_group(&self) -> BTreeMap<String, Vec<u64>> {
        let mut out: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for s in self.starts() {
            out.entry(s.group).or_default().push(s.n);
        }
        out
    }

    /// Panics when a group's job started for an event after one for a later event had started.
    fn assert_group_order(&self) {
        for (group, ns) in self.by_group() {
            let mut highest = 0;
            for n in &ns {
                assert!(
                    *n >= highest,
                    "group {group}: event {n} started after event {highest}: {ns:?}"
                );
                highest = *n;
            }
        }
    }
}

/// Redis, a standalone built-in Port, the recorder and the replicas.
struct Cluster {
    redis: RedisServer,
    _port: TestBinary,
    port_url: String,
    recorder: Arc<Recorder>,
    recorder_url: String,
    replicas: Vec<Option<TestBinary>>,
    urls: Arc<RwLock<Vec<Option<String>>>>,
    /// Lease time of the replicas started from now on, in seconds.
    lease: &'static str,
    dir: PathBuf,
    http: reqwest::Client,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Cluster {
    async fn start(replicas: usize, redis: RedisServer) -> Self {
        let dir = std::env::temp_dir()
            .join(format!("ocean-scale-{}", std::process::id()))
            .join(format!("{}", redis.port()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("mapping.yml"), MAPPING).unwrap();
        let mut port = TestBinary::start_args(REPLICA, &["local-port"], &dir.join("port"), &[])
            .expect("the standalone built-in Port starts");
        let port_url = port.port_url();
        let recorder = Arc::new(Recorder::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let recorder_url = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .route("/start", post(record))
            .with_state(Arc::clone(&recorder));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let mut cluster = Self {
            redis,
            _port: port,
            port_url,
            recorder,
            recorder_url,
            replicas: Vec::new(),
            urls: Arc::new(RwLock::new(Vec::new())),
            lease: LEASE,
            dir,
            http: reqwest::Client::new(),
        };
        for _ in 0..replicas {
            cluster.add_replica();
        }
        cluster
    }

    /// Starts replica `i` (again) and waits until it listens.
    fn launch(&mut self, i: usize) {
        let mapping = self.dir.join("mapping.yml").display().to_string();
        let redis_url = self.redis.url();
        let vars = [
            ("OCEAN__QUEUE__BACKEND", "redis"),
            ("OCEAN__QUEUE__REDIS_URL", redis_url.as_str()),
            ("OCEAN__QUEUE__LEASE_SECONDS", self.lease),
            ("OCEAN__QUEUE__REAPER_SECONDS", "0.2"),
            ("OCEAN__PORT__CLIENT_ID", "replica"),
            ("OCEAN__PORT__CLIENT_SECRET", "replica"),
            ("OCEAN__PORT__BASE_URL", self.port_url.as_str()),
            ("OCEAN__PORT_APP_CONFIG_FILE", mapping.as_str()),
            ("OCEAN__INTEGRATION__IDENTIFIER", "scale-test"),
            (
                "OCEAN__INTEGRATION__CONFIG__RECORDER_URL",
                self.recorder_url.as_str(),
            ),
            ("OCEAN__MAX_WAIT_SECONDS_BEFORE_SHUTDOWN", "2"),
            ("RUST_LOG", "info,ocean_runtime=debug"),
        ];
        let mut replica = TestBinary::start(REPLICA, &self.dir.join(format!("replica-{i}")), &vars)
            .expect("a replica starts");
        let url = replica.ingress_url();
        self.replicas[i] = Some(replica);
        self.urls.write().unwrap()[i] = Some(url);
    }

    /// Starts one more replica; returns its index.
    fn add_replica(&mut self) -> usize {
        self.replicas.push(None);
        self.urls.write().unwrap().push(None);
        let i = self.replicas.len() - 1;
        self.launch(i);
        i
    }

    fn replica(&self, i: usize) -> &TestBinary {
        self.replicas[i].as_ref().unwrap()
    }

    fn url(&self, i: usize) -> String {
        self.urls.read().unwrap()[i].clone().unwrap()
    }

    /// `kill -9`s replica `i` and starts it again.
    async fn kill_and_restart(&mut self, i: usize) {
        self.urls.write().unwrap()[i] = None;
        if let Some(mut r) = self.replicas[i].take() {
            r.signal_and_wait("-KILL").await.unwrap();
        }
        self.launch(i);
    }

    async fn metrics(&self, i: usize) -> String {
        self.http
            .get(format!("{}/metrics", self.url(i)))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Every `item` in the Port: group → n.
    async fn items(&self) -> Result<HashMap<String, u64>, reqwest::Error> {
        let token = local_port_token(&self.http, &self.port_url).await.unwrap();
        let body: Value = self
            .http
            .get(format!("{}/v1/blueprints/item/entities", self.port_url))
            .bearer_auth(token)
            .send()
            .await?
            .json()
            .await?;
        Ok(body["entities"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                (
                    e["identifier"].as_str().unwrap_or_default().to_owned(),
                    e["properties"]["n"].as_u64().unwrap_or(u64::MAX),
                )
            })
            .collect())
    }

    /// Waits until the shared queue is empty (as replica `live` reports it); on time-out, prints
    /// what Redis holds and the replicas' warnings before failing.
    async fn drained(&mut self, live: usize) {
        let deadline = Instant::now() + WAIT;
        loop {
            let text = self.metrics(live).await;
            if metric(&text, "ocean_queue_depth") == 0.0 {
                return;
            }
            if Instant::now() > deadline {
                self.dump();
                panic!("the shared queue did not drain in {WAIT:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Prints Redis's view of the queue and every warning or error the replicas logged.
    fn dump(&mut self) {
        let port = self.redis.port().to_string();
        let cli = |args: &[&str]| {
            std::process::Command::new("redis-cli")
                .args(["-p", &port])
                .args(args)
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default()
        };
        let key = |name: &str| format!("{{ocean:scale-test}}:{name}");
        eprintln!(
            "held: {}",
            cli(&["ZRANGE", &key("all"), "0", "20", "WITHSCORES"])
        );
        eprintln!("ready: {}", cli(&["ZRANGE", &key("ready"), "0", "-1"]));
        eprintln!(
            "delayed: {}",
            cli(&["ZRANGE", &key("delayed"), "0", "-1", "WITHSCORES"])
        );
        eprintln!("leases: {}", cli(&["HGETALL", &key("lease")]));
        eprintln!(
            "expiry: {}",
            cli(&["ZRANGE", &key("expiry"), "0", "-1", "WITHSCORES"])
        );
        eprintln!("sched: {}", cli(&["HGETALL", &key("sched")]));
        eprintln!(
            "groups (first 20): {}",
            cli(&["ZRANGE", &key("groups"), "0", "19"])
        );
        // The events still leased, and every line the replicas logged about them.
        let leased = cli(&["HKEYS", &key("lease")]);
        let mut ids = Vec::new();
        for seq in leased.split_whitespace() {
            let record = cli(&["HGET", &key("ev"), seq]);
            if let Some(id) = record
                .split("\"id\":\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
            {
                eprintln!("leased seq {seq}: event {id}");
                ids.push(id.to_owned());
            }
        }
        for (i, r) in self.replicas.iter_mut().enumerate() {
            if let Some(r) = r {
                for line in r.log().iter().filter(|l| {
                    l.contains("WARN") && !l.contains("a lease expired")
                        || l.contains("ERROR")
                        || l.contains("panicked")
                        || ids.iter().any(|id| l.contains(id.as_str()))
                }) {
                    eprintln!("replica {i}: {line}");
                }
                let log = r.log();
                for line in &log[log.len().saturating_sub(15)..] {
                    eprintln!("replica {i} (last lines): {line}");
                }
            }
        }
    }
}

fn item(group: &str, n: u64) -> Value {
    json!({"group": group, "n": n})
}

/// Posts one delivery (with a delivery id) to any live replica until one answers 200; a refused
/// or failed attempt is sent again, as a webhook sender does.
async fn deliver(
    http: &reqwest::Client,
    urls: &RwLock<Vec<Option<String>>>,
    body: &Value,
    delivery: &str,
) -> Value {
    let deadline = Instant::now() + WAIT;
    let mut attempt: u64 = 0;
    loop {
        attempt += 1;
        let live: Vec<String> = urls.read().unwrap().iter().flatten().cloned().collect();
        if !live.is_empty() {
            let pick = std::collections::hash_map::RandomState::new().hash_one(attempt);
            let url = &live[usize::try_from(pick % live.len() as u64).unwrap()];
            let sent = http
                .post(format!("{url}/integration/items"))
                .header("webhook-id", delivery)
                .json(body)
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            if let Ok(r) = sent
                && r.status() == 200
            {
                return r.json().await.unwrap_or(Value::Null);
            }
        }
        assert!(Instant::now() < deadline, "{delivery} was never accepted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_killed_under_load_lose_nothing_and_keep_group_order() {
    const GROUPS: u64 = 100;
    const PER_GROUP: u64 = 50;
    const KILLS: usize = 5;
    let _one = ONE_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(3, RedisServer::start().unwrap()).await;
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let senders: Vec<_> = (0..GROUPS)
        .map(|g| {
            let (http, urls, acked) = (
                cluster.http.clone(),
                Arc::clone(&cluster.urls),
                Arc::clone(&acked),
            );
            tokio::spawn(async move {
                let group = format!("g{g}");
                for n in 0..PER_GROUP {
                    deliver(&http, &urls, &item(&group, n), &format!("{group}-{n}")).await;
                    acked.lock().unwrap().insert((group.clone(), n));
                }
            })
        })
        .collect();
    for k in 0..KILLS {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let victim = (std::collections::hash_map::RandomState::new().hash_one(k) % 3) as usize;
        cluster.kill_and_restart(victim).await;
    }
    for s in senders {
        s.await.unwrap();
    }
    cluster.drained(0).await;
    let items = eventually("every group at its last event", WAIT, || async {
        let items = cluster.items().await?;
        let done = (0..GROUPS).all(|g| items.get(&format!("g{g}")) == Some(&(PER_GROUP - 1)));
        Ok::<_, reqwest::Error>(done.then_some(items))
    })
    .await;
    assert_eq!(items.len(), GROUPS as usize);
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), (GROUPS * PER_GROUP) as usize);
    let starts = cluster.recorder.starts();
    let started: HashSet<(String, u64)> = starts.iter().map(|s| (s.group.clone(), s.n)).collect();
    for a in &acked {
        assert!(
            started.contains(a),
            "acknowledged {a:?} was never processed"
        );
    }
    cluster.recorder.assert_group_order();
    // A killed replica's events in flight run again elsewhere: at most one per group (a group
    // runs one event at a time), and at most its events in flight.
    let in_flight = ocean_runtime::DEFAULT_EVENTS_IN_FLIGHT.min(GROUPS as usize);
    let duplicates = starts.len() - started.len();
    assert!(
        duplicates <= in_flight * KILLS,
        "{duplicates} events processed twice, more than {in_flight} in flight × {KILLS} kills"
    );
    let pids: HashSet<u64> = starts.iter().map(|s| s.pid).collect();
    assert!(pids.len() >= 3, "work was shared: {} processes", pids.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_replica_is_fenced_and_a_long_job_is_not_taken_over() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(1, RedisServer::start().unwrap()).await;
    let a = cluster.replica(0).pid();
    // A job of 3 lease periods, renewed all along: started once, never taken over.
    let mut long = item("long", 0);
    long["sleep_ms"] = json!(6000);
    deliver(&cluster.http, &cluster.urls, &long, "long-0").await;
    eventually("the long job to finish", WAIT, || async {
        Ok::<_, reqwest::Error>(cluster.items().await?.contains_key("long").then_some(()))
    })
    .await;
    // Acked too (an unacked event would be taken over once this replica is frozen below).
    cluster.drained(0).await;
    assert_eq!(
        cluster.recorder.by_group()["long"],
        [0],
        "the long job ran once"
    );
    let text = cluster.metrics(0).await;
    assert_eq!(metric(&text, "ocean_queue_takeovers_total"), 0.0);
    // Then a job frozen past its lease.
    let mut slow = item("f", 0);
    slow["sleep_ms"] = json!(1500);
    deliver(&cluster.http, &cluster.urls, &slow, "f-0").await;
    deliver(&cluster.http, &cluster.urls, &item("f", 1), "f-1").await;
    eventually("f/0 to start on the first replica", WAIT, || async {
        let started = cluster
            .recorder
            .starts()
            .iter()
            .any(|s| s.group == "f" && s.pid == u64::from(a));
        Ok::<_, ()>(started.then_some(()))
    })
    .await;
    cluster.replica(0).signal("-STOP").unwrap();
    cluster.add_replica();
    let b = u64::from(cluster.replica(1).pid());
    eventually(
        "the second replica to take f over and finish it",
        WAIT,
        || async {
            let f = cluster
                .recorder
                .by_group()
                .get("f")
                .cloned()
                .unwrap_or_default();
            let items = cluster.items().await?;
            Ok::<_, reqwest::Error>(
                (f.last() == Some(&1) && items.get("f") == Some(&1)).then_some(()),
            )
        },
    )
    .await;
    assert!(
        cluster
            .recorder
            .starts()
            .iter()
            .any(|s| s.group == "f" && s.n == 0 && s.pid == b),
        "f/0 was taken over at the head of its group"
    );
    cluster.replica(0).signal("-CONT").unwrap();
    eventually(
        "the thawed replica to find its lease lost",
        WAIT,
        || async {
            let text = cluster.metrics(0).await;
            Ok::<_, ()>((metric(&text, "ocean_queue_leases_lost_total") >= 1.0).then_some(()))
        },
    )
    .await;
    cluster.drained(1).await;
    assert_eq!(
        cluster.items().await.unwrap().get("f"),
        Some(&1),
        "the fenced replica wrote nothing over the later event"
    );
    cluster.recorder.assert_group_order();
    assert_eq!(
        cluster.recorder.by_group()["long"],
        [0],
        "the long job still ran once"
    );
    let text = cluster.metrics(1).await;
    assert_eq!(
        metric(&text, "ocean_queue_takeovers_total"),
        1.0,
        "only the frozen job was taken over"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_gives_a_replicas_leases_back_at_once() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(0, RedisServer::start().unwrap()).await;
    // Leases far longer than the test: a takeover by expiry would come too late to pass.
    cluster.lease = "60";
    let a = cluster.add_replica();
    let pid_a = u64::from(cluster.replica(a).pid());
    let mut long = item("term", 0);
    long["sleep_ms"] = json!(120_000);
    deliver(&cluster.http, &cluster.urls, &long, "term-0").await;
    eventually(
        "the long job to start on the first replica",
        WAIT,
        || async {
            let started = cluster.recorder.starts().iter().any(|s| s.pid == pid_a);
            Ok::<_, ()>(started.then_some(()))
        },
    )
    .await;
    let b = cluster.add_replica();
    let pid_b = u64::from(cluster.replica(b).pid());
    // SIGTERM: its job gets OCEAN__MAX_WAIT_SECONDS_BEFORE_SHUTDOWN (2 s), is cancelled, and the
    // lease goes back. The replica does not wait for the shared queue, which still holds the event.
    cluster.urls.write().unwrap()[a] = None;
    let stopping = Instant::now();
    let status = cluster.replicas[a]
        .as_mut()
        .unwrap()
        .signal_and_wait("-TERM")
        .await
        .unwrap();
    let stopped_in = stopping.elapsed();
    assert!(status.success(), "{status}");
    assert!(
        stopped_in < Duration::from_secs(15),
        "stopped in {stopped_in:?}, not bounded by its own jobs"
    );
    let log = cluster.replicas[a].as_mut().unwrap().log().join("\n");
    assert!(log.contains("leases given back"), "{log}");
    eventually(
        "the second replica to take the event up",
        Duration::from_secs(20),
        || async {
            let started = cluster
                .recorder
                .starts()
                .iter()
                .any(|s| s.group == "term" && s.pid == pid_b);
            Ok::<_, ()>(started.then_some(()))
        },
    )
    .await;
    assert!(
        stopping.elapsed() < Duration::from_secs(30),
        "taken up after {:?}: the lease expired instead of being given back",
        stopping.elapsed()
    );
    let text = cluster.metrics(b).await;
    assert_eq!(
        metric(&text, "ocean_queue_takeovers_total"),
        0.0,
        "given back, not taken over"
    );
    assert_eq!(metric(&text, "ocean_queue_depth"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_delivery_posted_50_times_to_3_replicas_is_processed_once() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(3, RedisServer::start().unwrap()).await;
    let posts: Vec<_> = (0..50)
        .map(|i| {
            let (http, url) = (cluster.http.clone(), cluster.url(i % 3));
            tokio::spawn(async move {
                let r = http
                    .post(format!("{url}/integration/items"))
                    .header("webhook-id", "same-delivery")
                    .json(&item("d", 0))
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                (status, r.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let mut ids = HashSet::new();
    for p in posts {
        let (status, body) = p.await.unwrap();
        assert_eq!(status, 200, "{body}");
        ids.insert(body["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1, "every answer names the one accepted event");
    eventually("the event to be applied", WAIT, || async {
        Ok::<_, reqwest::Error>(cluster.items().await?.contains_key("d").then_some(()))
    })
    .await;
    cluster.drained(2).await;
    assert_eq!(cluster.recorder.by_group()["d"], [0], "processed once");
    let mut duplicates = 0.0;
    for i in 0..3 {
        duplicates += metric(&cluster.metrics(i).await, "ocean_webhooks_duplicate_total");
    }
    assert_eq!(duplicates, 49.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_under_load_loses_nothing_acknowledged_and_never_acks_while_down() {
    const GROUPS: u64 = 10;
    const PER_GROUP: u64 = 60;
    let _one = ONE_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(2, RedisServer::start_durable().unwrap()).await;
    // (sent, answered, status) of every attempt.
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let senders: Vec<_> = (0..GROUPS)
        .map(|g| {
            let (http, urls, attempts, acked) = (
                cluster.http.clone(),
                Arc::clone(&cluster.urls),
                Arc::clone(&attempts),
                Arc::clone(&acked),
            );
            tokio::spawn(async move {
                let group = format!("r{g}");
                for n in 0..PER_GROUP {
                    let deadline = Instant::now() + WAIT;
                    loop {
                        let url = urls.read().unwrap()[usize::try_from(n % 2).unwrap()]
                            .clone()
                            .unwrap();
                        let sent = Instant::now();
                        let status = http
                            .post(format!("{url}/integration/items"))
                            .header("webhook-id", format!("{group}-{n}"))
                            .json(&item(&group, n))
                            .send()
                            .await
                            .map_or(0, |r| r.status().as_u16());
                        attempts
                            .lock()
                            .unwrap()
                            .push((sent, Instant::now(), status));
                        if status == 200 {
                            acked.lock().unwrap().insert((group.clone(), n));
                            break;
                        }
                        assert!(Instant::now() < deadline, "{group}-{n} never accepted");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        })
        .collect();
    eventually("some events to be accepted", WAIT, || async {
        Ok::<_, ()>((acked.lock().unwrap().len() >= 100).then_some(()))
    })
    .await;
    cluster.redis.kill();
    let down = Instant::now();
    eventually("ingress to refuse while Redis is down", WAIT, || async {
        let refused = attempts
            .lock()
            .unwrap()
            .iter()
            .any(|(s, _, st)| *s > down && *st == 503);
        Ok::<_, ()>(refused.then_some(()))
    })
    .await;
    let text = cluster
        .http
        .get(format!("{}/health/ready", cluster.url(0)))
        .send()
        .await
        .unwrap();
    assert_eq!(text.status(), 503, "not ready while Redis is down");
    let up = Instant::now();
    cluster.redis.restart().unwrap();
    for s in senders {
        s.await.unwrap();
    }
    let attempts = attempts.lock().unwrap().clone();
    assert!(
        !attempts
            .iter()
            .any(|(sent, answered, status)| *status == 200 && *sent > down && *answered < up),
        "a delivery was acknowledged while Redis was down"
    );
    cluster.drained(0).await;
    eventually("every group at its last event", WAIT, || async {
        let items = cluster.items().await?;
        let done = (0..GROUPS).all(|g| items.get(&format!("r{g}")) == Some(&(PER_GROUP - 1)));
        Ok::<_, reqwest::Error>(done.then_some(()))
    })
    .await;
    let started: HashSet<(String, u64)> = cluster
        .recorder
        .starts()
        .iter()
        .map(|s| (s.group.clone(), s.n))
        .collect();
    for a in acked.lock().unwrap().iter() {
        assert!(started.contains(a), "acknowledged {a:?} was lost");
    }
    cluster.recorder.assert_group_order();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_written_by_one_replica_are_replayed_from_another() {
    let _one = ONE_AT_A_TIME.lock().await;
    let cluster = Cluster::start(2, RedisServer::start().unwrap()).await;
    cluster
        .recorder
        .poisoned
        .lock()
        .unwrap()
        .insert("poison".to_owned());
    deliver(&cluster.http, &cluster.urls, &item("poison", 7), "poison-7").await;
    let letters = eventually("a dead letter", WAIT, || async {
        let answer: Value = cluster
            .http
            .get(format!("{}/admin/dead-letters", cluster.url(1)))
            .send()
            .await?
            .json()
            .await?;
        let letters = answer["deadLetters"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        Ok::<_, reqwest::Error>((!letters.is_empty()).then_some(letters))
    })
    .await;
    assert_eq!(letters.len(), 1);
    assert!(
        letters[0]["error"].as_str().unwrap().contains("poisoned"),
        "{letters:?}"
    );
    let id = letters[0]["id"].as_u64().unwrap();
    // The CLI, with no replica answering on its address, reads the same dead letter from Redis.
    let redis_url = cluster.redis.url();
    let listed = std::process::Command::new(REPLICA)
        .args(["dead-letters", "list"])
        .env_clear()
        .env("OCEAN__APPLICATION__PORT", "9")
        .env("OCEAN__QUEUE__BACKEND", "redis")
        .env("OCEAN__QUEUE__REDIS_URL", &redis_url)
        .env("OCEAN__INTEGRATION__IDENTIFIER", "scale-test")
        .output()
        .unwrap();
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed["deadLetters"][0]["id"], id);
    cluster.recorder.poisoned.lock().unwrap().clear();
    let replayed = cluster
        .http
        .post(format!("{}/admin/dead-letters/{id}/replay", cluster.url(0)))
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), 200);
    eventually("the replayed event to be applied", WAIT, || async {
        Ok::<_, reqwest::Error>((cluster.items().await?.get("poison") == Some(&7)).then_some(()))
    })
    .await;
    let again = cluster
        .http
        .post(format!("{}/admin/dead-letters/{id}/replay", cluster.url(1)))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404, "replayed once");
}
