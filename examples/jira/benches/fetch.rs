//! Fetch-heavy throughput: the example binary (disk queue, built-in Port) whose processors fetch
//! each issue from the demo Jira, which answers every `GET` after 100 ms. Events/s from the first
//! POST until every entity is in Port, and peak RSS, for several `OCEAN__EVENT_WORKERS_COUNT`s.
//!
//! `cargo bench -p ocean-example-jira --bench fetch` (`FETCH_EVENTS`, default 1000 distinct
//! issues; `FETCH_WORKERS`, default `1,8,64,256`; `FETCH_LATENCY_MS`, default 100).
//!
//! Each event holds a worker while its fetch waits, so events/s is bounded by workers / latency;
//! the table shows how far from that bound each setting runs.

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

use std::time::{Duration, Instant};

use ocean_runtime::testing::url_after;
use serde_json::json;

const CONNECTIONS: usize = 32;

struct Row {
    workers: usize,
    events_s: f64,
    bound: f64,
    peak_mb: f64,
}

async fn measure(workers: usize, events: usize, latency_ms: u64) -> Row {
    let dir = std::env::temp_dir().join(format!("ocean-fetch-{workers}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let latency = latency_ms.to_string();
    let mut binary = common::start_with(
        &dir,
        &[
            ("OCEAN__EVENT_WORKERS_COUNT", &workers.to_string()),
            ("OCEAN__INTEGRATION__CONFIG__DEMO_LATENCY_MS", &latency),
            ("OCEAN__UPSTREAM__MAX_CONCURRENCY", "1024"),
        ],
    );
    let demo = binary.line_with("demo Jira at ");
    let jira = url_after(&demo, "demo Jira at ").unwrap();
    let port = binary.port_url();
    let url = format!("{}/integration/webhook", binary.ingress_url());
    let client = reqwest::Client::new();
    for n in 0..events {
        let record = json!({"key": format!("F-{n}"), "fields": {"summary": format!("issue {n}"),
            "status": {"name": "To Do"}, "issuetype": {"name": "Bug"}, "project": {"key": "PROJ"}}});
        client
            .put(format!("{jira}/rest/api/2/issue/F-{n}"))
            .json(&record)
            .send()
            .await
            .unwrap();
    }
    let started = Instant::now();
    let per = events.div_ceil(CONNECTIONS);
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|c| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                for n in (c * per..(c + 1) * per).take_while(|n| *n < events) {
                    let r = client
                        .post(&url)
                        .json(&common::issue_created(&format!("F-{n}"), "stale"))
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
    let token = common::token(&client, &port).await;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let all = common::issues(&client, &port, &token).await;
        if all.values().filter(|t| t.starts_with("issue ")).count() >= events {
            break;
        }
        assert!(Instant::now() < deadline, "not every issue arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = started.elapsed().as_secs_f64();
    let peak = binary.memory_kb("VmHWM").unwrap_or(0);
    binary.signal_and_wait("-TERM").await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    Row {
        workers,
        events_s: events as f64 / took,
        bound: workers as f64 * 1000.0 / latency_ms as f64,
        peak_mb: peak as f64 / 1024.0,
    }
}

fn main() {
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let events: usize = env("FETCH_EVENTS", "1000").parse().unwrap();
    let latency_ms: u64 = env("FETCH_LATENCY_MS", "100").parse().unwrap();
    let workers: Vec<usize> = env("FETCH_WORKERS", "1,8,64,256")
        .split(',')
        .map(|w| w.trim().parse().unwrap())
        .collect();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let rows: Vec<Row> = runtime.block_on(async {
        let mut rows = Vec::new();
        for w in workers {
            // One worker at 100 ms takes 100 s per 1,000 events: fewer events for it.
            let n = if w == 1 { events.min(100) } else { events };
            rows.push(measure(w, n, latency_ms).await);
        }
        rows
    });
    println!(
        "\nfetch-heavy, {events} distinct issues, {latency_ms} ms per upstream GET, disk queue, built-in Port\n"
    );
    println!("| OCEAN__EVENT_WORKERS_COUNT | events/s | bound (workers / latency) | peak RSS |");
    println!("|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {:.0} | {:.0} | {:.0} MB |",
            r.workers, r.events_s, r.bound, r.peak_mb
        );
    }
}
