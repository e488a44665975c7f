//! The queue contract, run against every backend: memory, disk and Redis (a real `redis-server`
//! started for each test). Then what only a shared queue promises: fencing, takeover, renewal,
//! release and dedup across replicas.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use super::*;
use crate::event::WebhookEvent;
use crate::testing::RedisServer;

#[derive(Clone, Copy)]
enum Kind {
    Memory,
    Disk,
    Redis,
}

/// A backend and what keeps it alive.
struct Setup {
    backend: Backend,
    _redis: Option<RedisServer>,
    dir: Option<PathBuf>,
}

impl Drop for Setup {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn redis_options(server: &RedisServer, lease: Duration, background: bool) -> RedisOptions {
    RedisOptions {
        url: server.url(),
        ca_file: None,
        integration: "contract".to_owned(),
        lease,
        max_takeovers: 5,
        reaper_period: Duration::from_millis(50),
        capacity: 100,
        dedup_window: Duration::from_secs(60),
        connect_attempts: 1,
        background,
    }
}

async fn open(kind: Kind, capacity: usize) -> Setup {
    match kind {
        Kind::Memory => Setup {
            backend: Backend::new(MemoryQueue::new(capacity)),
            _redis: None,
            dir: None,
        },
        Kind::Disk => {
            let dir = std::env::temp_dir()
                .join(format!("ocean-contract-{}", uuid::Uuid::new_v4().simple()));
            Setup {
                backend: Backend::new(DiskQueue::open(&dir, capacity).unwrap()),
                _redis: None,
                dir: Some(dir),
            }
        }
        Kind::Redis => {
            let server = RedisServer::start().unwrap();
            let mut options = redis_options(&server, Duration::from_secs(5), true);
            options.capacity = capacity;
            Setup {
                backend: Backend::new(RedisQueue::connect(options).await.unwrap()),
                _redis: Some(server),
                dir: None,
            }
        }
    }
}

fn event(n: u32, keys: &[&str]) -> Envelope {
    let mut e = Envelope::new(
        WebhookEvent::new(
            format!("e{n}"),
            "/w",
            [("x-n".to_owned(), n.to_string())],
            format!("{{\"n\": {n}}}"),
        )
        .unwrap(),
    );
    e.schedule.group_keys = keys.iter().map(|k| (*k).to_owned()).collect();
    e
}

/// The next lease, or `None` when nothing is handed out within `wait`.
async fn pull_within(q: &dyn EventQueue, wait: Duration) -> Option<Lease> {
    tokio::time::timeout(wait, q.pull()).await.ok().flatten()
}

async fn pull(q: &dyn EventQueue) -> Lease {
    pull_within(q, Duration::from_secs(10))
        .await
        .expect("an event is handed out")
}

async fn depth(q: &dyn EventQueue) -> usize {
    q.stats().await.unwrap().depth
}

const NOTHING: Duration = Duration::from_millis(300);

async fn fifo_with_leases_acks_and_figures(kind: Kind) {
    let s = open(kind, 10).await;
    let q = &*s.backend.events;
    assert_eq!(q.push(event(1, &[])).await.unwrap(), Pushed::Queued);
    q.push(event(2, &[])).await.unwrap();
    let a = pull(q).await;
    let b = pull(q).await;
    assert_eq!((a.envelope.event.id(), b.envelope.event.id()), ("e1", "e2"));
    assert_eq!(
        a.envelope.event.raw_body(),
        b"{\"n\": 1}",
        "the body byte for byte"
    );
    assert_eq!(a.envelope.event.header("x-n"), Some("1"));
    assert_eq!(a.delivery, 1);
    let stats = q.stats().await.unwrap();
    assert_eq!(stats.depth, 2, "leased events still count");
    assert!(stats.oldest_age.is_some());
    q.ack(&a).await.unwrap();
    assert!(
        q.ack(&a).await.is_err(),
        "a settled lease cannot be settled again"
    );
    q.ack(&b).await.unwrap();
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.depth, stats.oldest_age), (0, None));
}

async fn a_group_runs_one_at_a_time_in_arrival_order_and_a_retry_keeps_its_place(kind: Kind) {
    let s = open(kind, 10).await;
    let q = &*s.backend.events;
    q.push(event(1, &["p:A"])).await.unwrap();
    q.push(event(2, &["p:A"])).await.unwrap();
    q.push(event(3, &["p:B"])).await.unwrap();
    q.push(event(4, &["p:A", "p:B"])).await.unwrap();
    q.push(event(5, &[])).await.unwrap();
    let first = pull(q).await;
    let second = pull(q).await;
    let third = pull(q).await;
    assert_eq!(
        [
            first.envelope.event.id(),
            second.envelope.event.id(),
            third.envelope.event.id()
        ],
        ["e1", "e3", "e5"],
        "2 waits for 1, 4 waits for 2 and 3"
    );
    assert!(
        pull_within(q, NOTHING).await.is_none(),
        "nothing else is free"
    );
    q.retry_later(&first, Duration::from_millis(400))
        .await
        .unwrap();
    q.ack(&second).await.unwrap();
    assert!(
        pull_within(q, Duration::from_millis(150)).await.is_none(),
        "2 and 4 still wait behind 1's retry"
    );
    let again = pull(q).await;
    assert_eq!((again.envelope.event.id(), again.delivery), ("e1", 2));
    q.ack(&again).await.unwrap();
    let next = pull(q).await;
    assert_eq!(next.envelope.event.id(), "e2");
    assert!(pull_within(q, NOTHING).await.is_none(), "4 waits for 2");
    q.ack(&next).await.unwrap();
    let last = pull(q).await;
    assert_eq!(last.envelope.event.id(), "e4");
    q.ack(&last).await.unwrap();
    q.ack(&third).await.unwrap();
    assert_eq!(depth(q).await, 0);
}

async fn only_the_latest_of_a_supersedable_group_is_handed_out(kind: Kind) {
    let s = open(kind, 10).await;
    let q = &*s.backend.events;
    for (n, key, sup) in [
        (1, "A", true),
        (2, "A", true),
        (3, "B", true),
        (4, "A", true),
        (5, "C", false),
        (6, "C", false),
    ] {
        let mut e = event(n, &[key]);
        e.schedule.supersedable = sup;
        q.push(e).await.unwrap();
    }
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(pull(q).await.envelope.event.id().to_owned());
    }
    ids.sort();
    assert_eq!(ids, ["e3", "e4", "e5"], "1 and 2 superseded by 4");
    let stats = q.stats().await.unwrap();
    assert_eq!(stats.superseded, 2);
    assert_eq!(stats.depth, 4, "3, 4, 5 leased and 6 waiting");
}

fn letter(envelope: &Envelope, error: &str) -> DeadLetter {
    let event = &envelope.event;
    DeadLetter {
        id: 0,
        event_id: event.id().to_owned(),
        path: event.path().to_owned(),
        processor: "p".into(),
        resource: 0,
        kind: "issue".into(),
        error: error.into(),
        attempts: 3,
        failed_at_ms: 1,
        event: stored_json(envelope),
        refused: Vec::new(),
    }
}

async fn dead_letters_are_kept_with_the_ack_and_replayed_once(kind: Kind) {
    let s = open(kind, 10).await;
    let (q, dead) = (&*s.backend.events, &*s.backend.dead_letters);
    q.push(event(1, &["g"])).await.unwrap();
    let a = pull(q).await;
    q.ack_dead(
        &a,
        vec![letter(&a.envelope, "first"), letter(&a.envelope, "second")],
    )
    .await
    .unwrap();
    assert_eq!(
        depth(q).await,
        0,
        "the event was acked with its dead letters"
    );
    let all = dead.list().await.unwrap();
    assert_eq!(
        all.iter().map(|d| d.error.as_str()).collect::<Vec<_>>(),
        ["first", "second"]
    );
    let first = all[0].id;
    assert_eq!(dead.get(first).await.unwrap().unwrap().event_id, "e1");
    let back = all[0].to_envelope().unwrap();
    assert_eq!(back.event.raw_body(), b"{\"n\": 1}");
    assert!(dead.replay(first, back.clone()).await.unwrap());
    assert!(
        !dead.replay(first, back).await.unwrap(),
        "a dead letter is replayed once"
    );
    let replayed = pull(q).await;
    assert_eq!(replayed.envelope.event.id(), "e1");
    assert_eq!(replayed.envelope.group_keys(), ["g"]);
    q.ack(&replayed).await.unwrap();
    let second = all[1].id;
    assert_eq!(
        dead.remove(second).await.unwrap().map(|d| d.id),
        Some(second)
    );
    assert_eq!(dead.remove(second).await.unwrap(), None);
    q.push(event(2, &[])).await.unwrap();
    let b = pull(q).await;
    q.ack_dead(&b, vec![letter(&b.envelope, "third")])
        .await
        .unwrap();
    assert!(
        dead.list().await.unwrap()[0].id > second,
        "ids are not reused"
    );
    assert_eq!(dead.purge().await.unwrap(), 1);
    assert!(dead.list().await.unwrap().is_empty());
}

async fn a_full_queue_refuses_and_a_closed_one_wakes_its_pullers(kind: Kind) {
    let s = open(kind, 1).await;
    let q = Arc::clone(&s.backend.events);
    q.push(event(1, &[])).await.unwrap();
    assert!(matches!(
        q.push(event(2, &[])).await,
        Err(QueueError::Full { capacity: 1 })
    ));
    assert_eq!(depth(&*q).await, 1, "the refused event was not stored");
    let lease = pull(&*q).await;
    q.ack(&lease).await.unwrap();
    let waiter = tokio::spawn({
        let q = Arc::clone(&q);
        async move { q.pull().await.is_none() }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    q.close();
    assert!(
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap()
    );
    assert!(matches!(
        q.push(event(3, &[])).await,
        Err(QueueError::Closed)
    ));
}

macro_rules! for_each_backend {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Kind::Memory).await })*
        }
        mod disk {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Kind::Disk).await })*
        }
        mod redis {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Kind::Redis).await })*
        }
    };
}

for_each_backend!(
    fifo_with_leases_acks_and_figures,
    a_group_runs_one_at_a_time_in_arrival_order_and_a_retry_keeps_its_place,
    only_the_latest_of_a_supersedable_group_is_handed_out,
    dead_letters_are_kept_with_the_ack_and_replayed_once,
    a_full_queue_refuses_and_a_closed_one_wakes_its_pullers,
);

/// Two replicas on one Redis: `frozen` has no renewer (as if stopped), `live` renews and reaps.
async fn replicas(lease: Duration, max_takeovers: u32) -> (RedisServer, RedisQueue, RedisQueue) {
    let server = RedisServer::start().unwrap();
    let mut frozen = redis_options(&server, lease, false);
    frozen.max_takeovers = max_takeovers;
    let mut live = redis_options(&server, lease, true);
    live.max_takeovers = max_takeovers;
    let frozen = RedisQueue::connect(frozen).await.unwrap();
    let live = RedisQueue::connect(live).await.unwrap();
    (server, frozen, live)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settle_with_a_stale_token_is_refused_and_the_event_keeps_its_place() {
    let (_server, frozen, live) = replicas(Duration::from_millis(500), 5).await;
    frozen.push(event(1, &["g"])).await.unwrap();
    live.push(event(2, &["g"])).await.unwrap();
    let stale = pull(&frozen).await;
    assert_eq!(stale.envelope.event.id(), "e1");
    // Not renewed: the live replica's reaper takes it over, at the head of its group.
    let taken = pull(&live).await;
    assert_eq!((taken.envelope.event.id(), taken.delivery), ("e1", 2));
    assert!(taken.token > stale.token);
    assert!(!stale.is_held(), "the frozen holder knows by its own clock");
    for refused in [
        frozen.ack(&stale).await,
        frozen.retry_later(&stale, Duration::ZERO).await,
        frozen
            .ack_dead(&stale, vec![letter(&stale.envelope, "x")])
            .await,
    ] {
        assert!(matches!(refused, Err(QueueError::Fenced(_))), "{refused:?}");
    }
    assert!(
        live.list().await.unwrap().is_empty(),
        "the refused dead letter was not kept"
    );
    assert_eq!(depth(&live).await, 2, "nothing changed");
    assert!(
        pull_within(&live, NOTHING).await.is_none(),
        "2 still waits behind 1"
    );
    live.ack(&taken).await.unwrap();
    assert_eq!(pull(&live).await.envelope.event.id(), "e2");
    let stats = live.stats().await.unwrap();
    assert_eq!(stats.takeovers, 1);
    assert_eq!(frozen.stats().await.unwrap().fenced, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_lease_outlives_several_lease_periods() {
    let (_server, _frozen, live) = replicas(Duration::from_millis(400), 5).await;
    live.push(event(1, &["g"])).await.unwrap();
    let lease = pull(&live).await;
    // Time passing is what is tested here: three lease periods and a half.
    tokio::time::sleep(Duration::from_millis(1400)).await;
    assert!(lease.is_held());
    assert_eq!(live.stats().await.unwrap().takeovers, 0);
    live.ack(&lease).await.unwrap();
    assert_eq!(depth(&live).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_taken_over_too_often_becomes_a_dead_letter() {
    let (_server, frozen, live) = replicas(Duration::from_millis(300), 1).await;
    frozen.push(event(1, &["g"])).await.unwrap();
    frozen.push(event(2, &["g"])).await.unwrap();
    let first = pull(&frozen).await;
    let second = pull(&frozen).await;
    assert_eq!(
        (first.envelope.event.id(), second.envelope.event.id()),
        ("e1", "e1")
    );
    assert_eq!(second.delivery, 2);
    // The second takeover is one too many: a dead letter, and the group moves on.
    let next = pull(&live).await;
    assert_eq!(next.envelope.event.id(), "e2");
    let letters = live.list().await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].event_id, "e1");
    assert!(
        letters[0].error.contains("taken over 2 times"),
        "{letters:?}"
    );
    let back = letters[0].to_envelope().unwrap();
    assert_eq!(back.event.raw_body(), b"{\"n\": 1}");
    assert_eq!(live.stats().await.unwrap().given_up, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_lease_is_taken_up_at_once_and_a_delivery_id_is_accepted_once() {
    let (_server, frozen, live) = replicas(Duration::from_secs(30), 5).await;
    frozen.push(event(1, &["g"])).await.unwrap();
    let held = pull(&frozen).await;
    frozen.release().await;
    let taken = pull_within(&live, Duration::from_secs(2))
        .await
        .expect("taken up long before the 30 s lease would expire");
    assert_eq!((taken.envelope.event.id(), taken.delivery), ("e1", 2));
    assert!(matches!(
        frozen.ack(&held).await,
        Err(QueueError::Fenced(_))
    ));
    assert_eq!(live.stats().await.unwrap().takeovers, 0);

    let mut first = event(7, &[]);
    first.schedule.delivery_key = Some("/w\u{1f}webhook-id\u{1f}d-7".into());
    let mut again = event(8, &[]);
    again.schedule.delivery_key = first.delivery_key().map(str::to_owned);
    assert_eq!(frozen.push(first).await.unwrap(), Pushed::Queued);
    assert_eq!(
        live.push(again).await.unwrap(),
        Pushed::Duplicate("e7".into()),
        "a redelivery to another replica is recognised"
    );
    assert_eq!(depth(&live).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_past_its_validity_is_given_back_not_renewed() {
    let (_server, _frozen, live) = replicas(Duration::from_millis(600), 5).await;
    live.push(event(1, &["g"])).await.unwrap();
    let stalled = pull(&live).await;
    // As after a stall of this process longer than the renewals' margin: by its own clock the
    // lease may be another replica's now, so its worker stops; the renewer must not revive it.
    stalled
        .hold
        .as_ref()
        .unwrap()
        .extend(std::time::Instant::now());
    assert!(!stalled.is_held());
    let again = pull_within(&live, Duration::from_secs(2))
        .await
        .expect("given back at once, not held until it expires");
    assert_eq!((again.envelope.event.id(), again.delivery), ("e1", 2));
    assert!(matches!(
        live.ack(&stalled).await,
        Err(QueueError::Fenced(_))
    ));
    live.ack(&again).await.unwrap();
    assert_eq!(live.stats().await.unwrap().takeovers, 0);

    // A worker that gives up on its lease gives it back too.
    live.push(event(2, &["g"])).await.unwrap();
    let abandoned = pull(&live).await;
    live.give_up(&abandoned).await;
    let retaken = pull_within(&live, Duration::from_secs(2)).await.unwrap();
    assert_eq!((retaken.envelope.event.id(), retaken.delivery), ("e2", 2));
    assert_eq!(live.stats().await.unwrap().leases_lost, 2);
}

/// Calls of `EVALSHA` Redis has served so far.
async fn script_calls(server: &RedisServer) -> u64 {
    let client = ::redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = ::redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pushes_share_script_calls_and_each_gets_its_own_answer() {
    const KEYS: u32 = 60;
    let (server, a, b) = replicas(Duration::from_secs(5), 5).await;
    let (a, b) = (Arc::new(a), Arc::new(b));
    let before = script_calls(&server).await;
    // Every delivery posted 3 times at once, to either replica.
    let pushes: Vec<_> = (0..3)
        .flat_map(|round| (0..KEYS).map(move |n| (round, n)))
        .map(|(round, n)| {
            let q = Arc::clone(if (n + round) % 2 == 0 { &a } else { &b });
            tokio::spawn(async move {
                let mut e = event(n * 10 + round, &[]);
                e.schedule.delivery_key = Some(format!("d-{n}"));
                (n, round, q.push(e).await.unwrap())
            })
        })
        .collect();
    let mut answers = Vec::new();
    for p in pushes {
        answers.push(p.await.unwrap());
    }
    let calls = script_calls(&server).await - before;
    for n in 0..KEYS {
        let of_key: Vec<_> = answers.iter().filter(|(k, _, _)| *k == n).collect();
        let queued: Vec<u32> = of_key
            .iter()
            .filter(|(_, _, p)| *p == Pushed::Queued)
            .map(|(_, r, _)| *r)
            .collect();
        assert_eq!(queued.len(), 1, "delivery d-{n}: {of_key:?}");
        let first = format!("e{}", n * 10 + queued[0]);
        for (_, round, pushed) in &of_key {
            if *round != queued[0] {
                assert_eq!(pushed, &Pushed::Duplicate(first.clone()), "d-{n}");
            }
        }
    }
    assert_eq!(depth(&*a).await, KEYS as usize);
    assert!(
        calls < u64::from(KEYS) * 3,
        "{calls} script calls for {} pushes: concurrent pushes were not batched",
        KEYS * 3
    );
}

/// Runs `openssl` with `args` in `dir`.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let done = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(done.status.success(), "openssl {args:?}: {done:?}");
}

/// A certificate authority and a server certificate for 127.0.0.1 that it signed, made with the
/// `openssl` command: (authority, server certificate, server key), as paths.
fn certificates(dir: &std::path::Path) -> (String, String, String) {
    std::fs::create_dir_all(dir).unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        dir,
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-days",
                "1",
                "-subj",
                "/CN=ocean test CA",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ],
            &["-addext", "basicConstraints=critical,CA:TRUE"],
            &["-addext", "keyUsage=critical,keyCertSign"],
        ]
        .concat(),
    );
    openssl(
        dir,
        &[
            &["req"][..],
            &ec,
            &[
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-out",
            "server.pem",
            "-extfile",
            "server.ext",
        ],
    );
    let path = |name: &str| dir.join(name).display().to_string();
    (path("ca.pem"), path("server.pem"), path("server.key"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_a_user_and_password_in_the_url() {
    let dir = std::env::temp_dir().join(format!("ocean-tls-{}", uuid::Uuid::new_v4().simple()));
    let (ca, cert, key) = certificates(&dir);
    let tls_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let server = RedisServer::start_with(&[
        "--tls-port",
        &tls_port,
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        &ca,
        "--tls-auth-clients",
        "no",
        "--user",
        "ocean",
        "on",
        ">s3cret",
        "~*",
        "&*",
        "+@all",
    ])
    .unwrap();
    let connect = |url: String, ca_file: Option<&str>| {
        let mut options = redis_options(&server, Duration::from_secs(5), true);
        options.url = url;
        options.ca_file = ca_file.map(PathBuf::from);
        RedisQueue::connect(options)
    };
    let url = |password: &str| format!("rediss://ocean:{password}@127.0.0.1:{tls_port}");
    // A certificate that no public authority signed is refused; the message names the variable
    // and hides the password.
    let untrusted = connect(url("s3cret"), None).await.unwrap_err().to_string();
    assert!(
        untrusted.contains("OCEAN__QUEUE__REDIS_URL") && !untrusted.contains("s3cret"),
        "{untrusted}"
    );
    // An authorities' file that does not exist is named.
    let missing = connect(url("s3cret"), Some("/nonexistent/ca.pem"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        missing.starts_with("OCEAN__QUEUE__REDIS_CA_FILE (/nonexistent/ca.pem)"),
        "{missing}"
    );
    // Trusting the server's authority: a wrong password is refused, and hidden too.
    let refused = connect(url("not-it"), Some(&ca))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("OCEAN__QUEUE__REDIS_URL") && !refused.contains("not-it"),
        "{refused}"
    );
    assert!(refused.to_lowercase().contains("pass"), "{refused}");
    // The right user and password over verified TLS: the queue works.
    let queue = connect(url("s3cret"), Some(&ca)).await.unwrap();
    queue.push(event(1, &["g"])).await.unwrap();
    let lease = pull(&queue).await;
    assert_eq!(lease.envelope.event.id(), "e1");
    queue.ack(&lease).await.unwrap();
    assert_eq!(depth(&queue).await, 0);
    drop(queue);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_leases_the_next_event_in_the_same_call() {
    let (_server, other, q) = replicas(Duration::from_secs(5), 5).await;
    for (n, group) in [(1, "a"), (2, "a"), (3, "b")] {
        q.push(event(n, &[group])).await.unwrap();
    }
    let first = pull(&q).await;
    assert_eq!(first.envelope.event.id(), "e1");
    let (acked, next) = q.ack_and_lease_next(&first, Vec::new()).await;
    acked.unwrap();
    // e2 became ready with e1's ack; e3 was ready before: the lowest sequence number comes first.
    let second = next.expect("the next ready event, leased with the ack");
    assert_eq!((second.envelope.event.id(), second.delivery), ("e2", 1));
    assert!(second.is_held());
    // The lease is this replica's: another replica gets the other event, and settles of the
    // leased one work.
    let third = pull_within(&other, Duration::from_secs(2)).await.unwrap();
    assert_eq!(third.envelope.event.id(), "e3");
    other.ack(&third).await.unwrap();
    let (acked, next) = q.ack_and_lease_next(&second, Vec::new()).await;
    acked.unwrap();
    assert!(next.is_none(), "nothing is left to lease");
    assert_eq!(depth(&q).await, 0);
    // A closed replica leases nothing more with its acks.
    q.push(event(4, &["c"])).await.unwrap();
    q.push(event(5, &["d"])).await.unwrap();
    let fourth = pull(&q).await;
    q.close();
    let (acked, next) = q.ack_and_lease_next(&fourth, Vec::new()).await;
    acked.unwrap();
    assert!(next.is_none());
    assert_eq!(depth(&q).await, 1);
}

/// A Redis Cluster of three primaries on loopback, each a `redis-server` with its own folder,
/// joined with `redis-cli --cluster create`; returns once every node reports the cluster ok.
fn redis_cluster() -> Vec<RedisServer> {
    let nodes: Vec<RedisServer> = (0..3)
        .map(|_| {
            RedisServer::start_with(&["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"])
                .unwrap()
        })
        .collect();
    let addresses: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port()))
        .collect();
    let created = std::process::Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&addresses)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .unwrap();
    assert!(created.status.success(), "{created:?}");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    for node in &nodes {
        loop {
            let info = std::process::Command::new("redis-cli")
                .args(["-p", &node.port().to_string(), "CLUSTER", "INFO"])
                .output()
                .unwrap();
            if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the cluster never formed"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    nodes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_runs_unchanged_on_a_redis_cluster() {
    let nodes = redis_cluster();
    // One replica seeded by each node: at most one of them is the node that owns the
    // integration's slot, so the others work only if calls are routed by the cluster.
    let mut replicas = Vec::new();
    for node in &nodes {
        let mut options = redis_options(node, Duration::from_secs(5), true);
        options.capacity = 1000;
        replicas.push(RedisQueue::connect(options).await.unwrap());
    }
    let mut n = 0;
    for (i, q) in replicas.iter().enumerate() {
        for group in ["a", "b"] {
            n += 1;
            let mut e = event(n, &[group]);
            e.schedule.delivery_key = Some(format!("d-{n}"));
            assert_eq!(q.push(e).await.unwrap(), Pushed::Queued, "replica {i}");
        }
    }
    // A redelivery through another seed is recognised.
    let mut again = event(99, &["a"]);
    again.schedule.delivery_key = Some("d-1".to_owned());
    assert_eq!(
        replicas[2].push(again).await.unwrap(),
        Pushed::Duplicate("e1".into())
    );
    // Group order across replicas: a, then b interleaved as pushed.
    let mut seen = Vec::new();
    for i in 0..6 {
        let q = &replicas[i % 3];
        let lease = pull_within(q, Duration::from_secs(5))
            .await
            .expect("an event is ready");
        seen.push(lease.envelope.event.id().to_owned());
        if i == 0 {
            // A dead letter through one seed, listed and replayed through another.
            q.ack_dead(&lease, vec![letter(&lease.envelope, "boom")])
                .await
                .unwrap();
        } else {
            q.ack(&lease).await.unwrap();
        }
    }
    assert_eq!(seen, ["e1", "e2", "e3", "e4", "e5", "e6"]);
    let letters = replicas[1].list().await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].error, "boom");
    assert!(
        replicas[2]
            .replay(letters[0].id, letters[0].to_envelope().unwrap())
            .await
            .unwrap()
    );
    let replayed = pull_within(&replicas[0], Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(replayed.envelope.event.id(), "e1");
    replicas[0].ack(&replayed).await.unwrap();
    assert_eq!(depth(&replicas[1]).await, 0);
    assert_eq!(replicas[2].purge().await.unwrap(), 0);
}
