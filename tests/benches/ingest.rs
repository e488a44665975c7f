//! Ingest benchmark: webhook acceptance throughput and latency at 64 connections, for the memory,
//! disk and Redis queues, against a bare axum handler that only parses the JSON, all in one run.
//!
//! `cargo bench -p ocean-tests --bench ingest` (`INGEST_REQUESTS`: requests per variant, default
//! 20000; `INGEST_WORKERS`: event workers, default 8; `INGEST_BACKENDS`: which queues, default
//! `memory,disk,redis,redis-volatile`; the Redis variants start their own `redis-server` on
//! loopback, with AOF and `appendfsync always`, or with no persistence). Workers run during the
//! measurement and settle every event (the benchmark's processor matches nothing, so each event
//! costs a lease, a jq match and an ack), sharing the 2 cores with ingress and the load generator.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use ocean_runtime::prelude::*;
use ocean_runtime::testing::{RedisServer, TestApp};

ocean_runtime::kinds!["thing"];

#[webhook_processor(path = "/bench", kinds = ["thing"], matches = ".never == true")]
async fn bench(_event: &WebhookEvent) -> Result<RawResults, ProcessError> {
    Ok(RawResults::none())
}

// The allocator the binaries of `main!` get, for the baseline and ocean-rs alike.
ocean_runtime::global_allocator!();

const CONNECTIONS: usize = 64;

struct Run {
    name: &'static str,
    throughput: f64,
    p50: Duration,
    p99: Duration,
}

fn body() -> Vec<u8> {
    // About 2 KB, shaped like a Jira issue webhook.
    let description = "x".repeat(1500);
    serde_json::to_vec(&json!({
        "webhookEvent": "jira:issue_updated",
        "timestamp": 1_763_884_800_000_u64,
        "issue": {"key": "PROJ-1", "fields": {
            "summary": "Checkout fails on Safari", "description": description,
            "status": {"name": "In Progress"}, "issuetype": {"name": "Bug"},
            "priority": {"name": "High"}, "labels": ["web", "checkout"],
            "project": {"key": "PROJ"}
        }}
    }))
    .unwrap()
}

async fn load(name: &'static str, url: String, requests: usize) -> Run {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONNECTIONS)
        .build()
        .unwrap();
    let body = Arc::new(body());
    // Warm the connections.
    for _ in 0..CONNECTIONS {
        let r = client
            .post(&url)
            .header("content-type", "application/json")
            .body(body.as_ref().clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{name}");
    }
    let per_task = requests / CONNECTIONS;
    let started = Instant::now();
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (client, url, body) = (client.clone(), url.clone(), Arc::clone(&body));
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_task);
                for _ in 0..per_task {
                    let t = Instant::now();
                    let r = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.as_ref().clone())
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200);
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::with_capacity(requests);
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed();
    all.sort_unstable();
    Run {
        name,
        throughput: all.len() as f64 / elapsed.as_secs_f64(),
        p50: all[all.len() / 2],
        p99: all[all.len() * 99 / 100],
    }
}

async fn baseline(requests: usize) -> Run {
    let app = axum::Router::new().route(
        "/integration/bench",
        axum::routing::post(|body: axum::body::Bytes| async move {
            match serde_json::from_slice::<Value>(&body) {
                Ok(_) => axum::Json(json!({"status": "ok"})),
                Err(_) => axum::Json(json!({"status": "error"})),
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let run = load(
        "bare axum (parse JSON only)",
        format!("http://{addr}/integration/bench"),
        requests,
    )
    .await;
    server.abort();
    run
}

async fn ocean(name: &'static str, backend: &str, requests: usize) -> Run {
    // The Redis variants run their own redis-server: with AOF and `appendfsync always` (nothing
    // acknowledged lost on a Redis crash, the disk queue's promise) or with no persistence.
    let redis = match backend {
        "redis" => Some(RedisServer::start_durable().unwrap()),
        "redis-volatile" => Some(RedisServer::start().unwrap()),
        _ => None,
    };
    let (backend, url) = match &redis {
        Some(r) => ("redis", r.url()),
        None => (backend, String::new()),
    };
    let app = TestApp::builder()
        .paths(&["/bench"])
        .mapping(
            "resources:\n  - kind: thing\n    selector: {query: 'true'}\n    port: {entity: {mappings: {identifier: .id, blueprint: '\"thing\"'}}}\n",
        )
        .env("OCEAN__QUEUE__BACKEND", backend)
        .env("OCEAN__QUEUE__REDIS_URL", url)
        .env("OCEAN__APPLICATION__LOG_LEVEL", "warn")
        .env("OCEAN__EVENT_WORKERS_COUNT", std::env::var("INGEST_WORKERS").unwrap_or_else(|_| "8".into()))
        .start()
        .await
        .unwrap();
    let run = load(name, format!("{}/integration/bench", app.url()), requests).await;
    app.shutdown().await;
    if let Some(r) = &redis {
        // Where Redis's time went: calls and microseconds per call of each script command.
        let stats = std::process::Command::new("redis-cli")
            .args(["-p", &r.port().to_string(), "INFO", "commandstats"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for line in stats.lines().filter(|l| l.starts_with("cmdstat_eval")) {
            println!("{name}: {}", line.trim());
        }
    }
    run
}

fn main() {
    let requests: usize = std::env::var("INGEST_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // `INGEST_BACKENDS=disk` (or `memory`) measures one backend, e.g. under a profiler.
    let backends = std::env::var("INGEST_BACKENDS")
        .unwrap_or_else(|_| "memory,disk,redis,redis-volatile".into());
    let runs = runtime.block_on(async {
        let mut runs = vec![baseline(requests).await];
        for backend in backends.split(',').map(str::trim) {
            let name = match backend {
                "memory" => "ocean-rs, memory queue",
                "disk" => "ocean-rs, disk queue",
                "redis" => "ocean-rs, redis queue (AOF, fsync always)",
                "redis-volatile" => "ocean-rs, redis queue (no persistence)",
                other => panic!(
                    "INGEST_BACKENDS: unknown backend `{other}` (memory, disk, redis, redis-volatile)"
                ),
            };
            runs.push(ocean(name, backend, requests).await);
        }
        runs
    });
    let base = runs[0].throughput;
    println!(
        "\ningest, {CONNECTIONS} connections, {} requests of {} bytes per variant\n",
        requests / CONNECTIONS * CONNECTIONS,
        body().len()
    );
    println!("| variant | req/s | vs baseline | p50 | p99 |");
    println!("|---|---:|---:|---:|---:|");
    for r in &runs {
        println!(
            "| {} | {:.0} | {:.2}x | {:.2} ms | {:.2} ms |",
            r.name,
            r.throughput,
            r.throughput / base,
            r.p50.as_secs_f64() * 1e3,
            r.p99.as_secs_f64() * 1e3
        );
    }
}
