//! Scale-out benchmark: end-to-end events per second, from the first POST until every event's
//! entity is in Port, for replica processes sharing one `redis-server` (AOF, `appendfsync always`)
//! and one standalone built-in Port, beside one replica on the disk queue, all in one run.
//!
//! `cargo bench -p ocean-tests --bench replicas` (`REPLICAS_EVENTS`: events per run, default 3000;
//! `REPLICAS_RUNS`: runs of each setup, interleaved, default 3; `REPLICAS_CONNECTIONS`: concurrent
//! senders, default 64, spread evenly over the replicas; `REPLICAS_IN_FLIGHT`: events in flight
//! per replica, default the runtime's, 256).
//!
//! The replicas are `src/bin/replica.rs` processes; their `/webhook` processor and the mapping are
//! the end-to-end benchmark's Jira workload. Beside each figure: the Redis script calls per event
//! and their cost (`INFO commandstats`), and `redis-cli --latency` while the load runs.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ocean_runtime::testing::{RedisServer, TestBinary, drained, port_entities};

#[path = "common/jira.rs"]
mod jira;
#[path = "common/proc.rs"]
mod proc;
use proc::{env, median};

const REPLICA: &str = env!("CARGO_BIN_EXE_replica");
const WAIT: Duration = Duration::from_secs(300);

#[derive(Clone, Copy)]
struct Setup {
    name: &'static str,
    replicas: usize,
    redis: bool,
}

const SETUPS: [Setup; 3] = [
    Setup {
        name: "1 replica, disk queue",
        replicas: 1,
        redis: false,
    },
    Setup {
        name: "1 replica, redis queue",
        replicas: 1,
        redis: true,
    },
    Setup {
        name: "3 replicas, redis queue",
        replicas: 3,
        redis: true,
    },
];

struct Measure {
    events_per_s: f64,
    accepted_per_s: f64,
    /// Script calls per event and microseconds per call (Redis setups).
    scripts: Option<(f64, f64)>,
    /// `redis-cli --latency` while the load ran: average milliseconds.
    loaded_latency_ms: Option<f64>,
}

/// `redis-cli --latency --raw` (one second of `PING`s, then one line): the average round trip in
/// milliseconds.
fn redis_latency(port: u16) -> Option<f64> {
    let out = std::process::Command::new("timeout")
        .args(["5", "redis-cli", "-p", &port.to_string()])
        .args(["--latency", "--raw"])
        .output()
        .ok()?;
    // "min max avg samples"
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(2)?
        .parse()
        .ok()
}

/// Calls of `EVALSHA` and the microseconds Redis spent in them.
fn script_stats(port: u16) -> (f64, f64) {
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string(), "INFO", "commandstats"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:"))
        .unwrap_or_default();
    let field = |name: &str| {
        line.split(',')
            .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (field("calls"), field("usec"))
}

fn start_replica(
    dir: &Path,
    mapping: &str,
    i: usize,
    port_url: &str,
    redis: Option<&RedisServer>,
) -> TestBinary {
    let redis_url = redis.map(RedisServer::url).unwrap_or_default();
    let in_flight = env(
        "REPLICAS_IN_FLIGHT",
        ocean_runtime::DEFAULT_EVENTS_IN_FLIGHT,
    )
    .to_string();
    let mut vars = vec![
        ("OCEAN__MAX_EVENTS_IN_FLIGHT", in_flight.as_str()),
        ("OCEAN__PORT__CLIENT_ID", "bench"),
        ("OCEAN__PORT__CLIENT_SECRET", "bench"),
        ("OCEAN__PORT__BASE_URL", port_url),
        ("OCEAN__PORT_APP_CONFIG_FILE", mapping),
        ("OCEAN__INTEGRATION__IDENTIFIER", "bench"),
        ("RUST_LOG", "info"),
    ];
    if redis.is_some() {
        vars.push(("OCEAN__QUEUE__BACKEND", "redis"));
        vars.push(("OCEAN__QUEUE__REDIS_URL", redis_url.as_str()));
    }
    TestBinary::start(REPLICA, &dir.join(format!("replica-{i}")), &vars).expect("a replica starts")
}

async fn run(setup: Setup, index: usize, events: usize, connections: usize) -> Measure {
    let (dir, mapping) = jira::run_dir("replicas", index);
    let redis = setup.redis.then(|| RedisServer::start_durable().unwrap());
    let mut port = TestBinary::start_args(REPLICA, &["local-port"], &dir.join("port"), &[])
        .expect("the standalone built-in Port starts");
    let port_url = port.port_url();
    let mut replicas: Vec<TestBinary> = (0..setup.replicas)
        .map(|i| start_replica(&dir, &mapping, i, &port_url, redis.as_ref()))
        .collect();
    let urls: Vec<String> = replicas.iter_mut().map(TestBinary::ingress_url).collect();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()
        .unwrap();
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new((0..events).map(|n| jira::event(index, n)).collect());
    let before = redis.as_ref().map(|r| script_stats(r.port()));
    let latency = redis.as_ref().map(|r| {
        let port = r.port();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            redis_latency(port)
        })
    });

    let started = Instant::now();
    let webhooks: Vec<String> = urls
        .iter()
        .map(|u| format!("{u}/integration/webhook"))
        .collect();
    jira::post_all(&http, &webhooks, &bodies, connections).await;
    let accepted = started.elapsed();
    // Any replica reports the shared queue.
    drained(&http, &urls[0], WAIT).await.unwrap();
    let done = started.elapsed();

    let scripts = redis.as_ref().zip(before).map(|(r, (calls0, usec0))| {
        let (calls, usec) = script_stats(r.port());
        let calls = calls - calls0;
        (calls / events as f64, (usec - usec0) / calls.max(1.0))
    });
    let loaded_latency_ms = latency.and_then(|t| t.join().ok().flatten());
    let entities = port_entities(&http, &port_url, "jiraIssue")
        .await
        .unwrap()
        .len();
    assert_eq!(entities, events, "every event's entity is in Port");
    drop(replicas);
    drop(port);
    let _ = std::fs::remove_dir_all(&dir);
    Measure {
        events_per_s: events as f64 / done.as_secs_f64(),
        accepted_per_s: events as f64 / accepted.as_secs_f64(),
        scripts,
        loaded_latency_ms,
    }
}

fn main() {
    let events = env("REPLICAS_EVENTS", 3000);
    let runs = env("REPLICAS_RUNS", 3).max(1);
    let connections = env("REPLICAS_CONNECTIONS", 64).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut results: Vec<Vec<Measure>> = SETUPS.iter().map(|_| Vec::new()).collect();
    runtime.block_on(async {
        // Interleaved, so that a slow minute of the shared machine hits every setup alike.
        for r in 0..runs {
            for (s, setup) in SETUPS.iter().enumerate() {
                let index = r * SETUPS.len() + s;
                results[s].push(run(*setup, index, events, connections).await);
            }
        }
    });
    let idle = {
        let server = RedisServer::start().unwrap();
        redis_latency(server.port())
    };
    println!(
        "\nend to end, {events} distinct events of {} bytes, {connections} senders, medians of {runs} runs\n",
        jira::event(0, 0).len()
    );
    println!(
        "| setup | visible in Port, events/s | vs 1 replica on disk | accepted/s | script calls per event | µs per script call | redis-cli --latency under load |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let base = median(results[0].iter().map(|m| m.events_per_s).collect());
    for (setup, ms) in SETUPS.iter().zip(&results) {
        let rate = median(ms.iter().map(|m| m.events_per_s).collect());
        let accepted = median(ms.iter().map(|m| m.accepted_per_s).collect());
        let scripts: Vec<(f64, f64)> = ms.iter().filter_map(|m| m.scripts).collect();
        let (calls, usec) = if scripts.is_empty() {
            ("-".to_owned(), "-".to_owned())
        } else {
            (
                format!("{:.2}", median(scripts.iter().map(|s| s.0).collect())),
                format!("{:.1}", median(scripts.iter().map(|s| s.1).collect())),
            )
        };
        let latencies: Vec<f64> = ms.iter().filter_map(|m| m.loaded_latency_ms).collect();
        let latency = if latencies.is_empty() {
            "-".to_owned()
        } else {
            format!("{:.2} ms", median(latencies))
        };
        println!(
            "| {} | {rate:.0} | {:.2}x | {accepted:.0} | {calls} | {usec} | {latency} |",
            setup.name,
            rate / base
        );
    }
    if let Some(ms) = idle {
        println!("\nredis-cli --latency, idle: {ms:.2} ms average");
    }
    println!("each run's events/s:");
    for (setup, ms) in SETUPS.iter().zip(&results) {
        let each: Vec<String> = ms
            .iter()
            .map(|m| format!("{:.0}", m.events_per_s))
            .collect();
        println!("  {}: {}", setup.name, each.join(", "));
    }
}
