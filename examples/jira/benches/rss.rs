//! Peak memory of the example binary while 100,000 events of about 2 KB wait in its queue.
//!
//! `cargo bench -p ocean-example-jira --bench rss` (`RSS_EVENTS`, default 100000; `RSS_BACKENDS`,
//! default `disk,memory`).
//!
//! Port is down (its URL points at a closed loopback port), so nothing can be applied and every
//! accepted event stays queued, as during a Port outage. The binary's peak resident set size
//! (`VmHWM` in `/proc/<pid>/status`) is read once every event is accepted.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs,
    dead_code,
    unreachable_pub
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use serde_json::json;

const CONNECTIONS: usize = 32;

fn body(n: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "webhookEvent": "jira:issue_updated",
        "issue": {"key": format!("PROJ-{n}"), "fields": {
            "summary": format!("Issue number {n}"), "description": "x".repeat(1700),
            "status": {"name": "To Do"}, "issuetype": {"name": "Bug"}, "project": {"key": "PROJ"}
        }}
    }))
    .unwrap()
}

struct Row {
    backend: String,
    idle_mb: f64,
    peak_mb: f64,
    accept_s: f64,
}

async fn measure(backend: &str, events: usize) -> Row {
    let dir = std::env::temp_dir().join(format!("ocean-rss-{}-{}", backend, std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // A port nobody listens on: bind, note it, close.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut binary = common::start_with(
        &dir,
        &[
            ("OCEAN__PORT__CLIENT_ID", "id"),
            ("OCEAN__PORT__CLIENT_SECRET", "secret"),
            ("OCEAN__PORT__BASE_URL", &format!("http://{dead}")),
            ("OCEAN__QUEUE__BACKEND", backend),
            ("OCEAN__QUEUE__CAPACITY", &(events + 1).to_string()),
            ("OCEAN__APPLICATION__LOG_LEVEL", "info"),
        ],
    );
    let url = format!("{}/integration/webhook", binary.ingress_url());
    let idle = binary.memory_kb("VmRSS").unwrap();
    let client = reqwest::Client::new();
    let started = Instant::now();
    let per = events.div_ceil(CONNECTIONS);
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|c| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                for n in (c * per..(c + 1) * per).take_while(|n| *n < events) {
                    let r = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body(n))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200, "event {n}");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let accept_s = started.elapsed().as_secs_f64();
    let peak = binary.memory_kb("VmHWM").unwrap();
    binary.signal_and_wait("-TERM").await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    Row {
        backend: backend.to_owned(),
        idle_mb: idle as f64 / 1024.0,
        peak_mb: peak as f64 / 1024.0,
        accept_s,
    }
}

fn main() {
    let events: usize = std::env::var("RSS_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let backends = std::env::var("RSS_BACKENDS").unwrap_or_else(|_| "disk,memory".into());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let rows: Vec<Row> = runtime.block_on(async {
        let mut rows = Vec::new();
        for backend in backends.split(',').map(str::trim) {
            rows.push(measure(backend, events).await);
        }
        rows
    });
    println!(
        "\nexample binary, {events} events of {} bytes queued while Port is down\n",
        body(0).len()
    );
    println!("| queue | RSS at start | peak RSS | accepting all took |");
    println!("|---|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {:.1} MB | {:.1} MB | {:.1} s |",
            r.backend, r.idle_mb, r.peak_mb, r.accept_s
        );
    }
}
