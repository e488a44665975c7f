//! Fetch-heavy throughput: the example binary on its defaults (disk queue, built-in Port, 256
//! events in flight) whose processors fetch each issue from the demo Jira, which answers every
//! `GET` after 100 ms. Events/s from the first POST until every entity is in Port, and the binary's
//! peak RSS; the same in Ocean's one-event-per-worker mode (`OCEAN__EVENT_WORKERS_COUNT=8` and
//! `=1`), and on the defaults against a flaky Jira (1 % of answers `429` with `Retry-After: 1`).
//!
//! `cargo bench -p ocean-example-jira --bench fetch` (`FETCH_EVENTS`, default 5000 distinct issues
//! (Ocean's modes take at most 800 and 100: their rate is bounded by workers / latency);
//! `FETCH_LATENCY_MS`, default 100; `FETCH_ERROR_RATE`, default 0.01; `FETCH_ROWS`, default
//! `default,workers-8,workers-1,flaky`).
//!
//! Each issue's webhook carries a stale summary; the entity must hold the record's, which proves
//! it was fetched. The demo Jira and the built-in Port run in the binary's process, so its RSS
//! counts them too.

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

use ocean_runtime::testing::{drained, metric, metrics_of, url_after};
use serde_json::json;

const CONNECTIONS: usize = 32;

struct Row {
    name: String,
    events: usize,
    events_s: f64,
    peak_mb: f64,
    fetches: f64,
    throttled: f64,
}

/// Puts `events` issue records (`F-<n>`, summary `issue <n>`) in the demo Jira at `jira`.
pub async fn seed(client: &reqwest::Client, jira: &str, events: usize) {
    for n in 0..events {
        let record = json!({"key": format!("F-{n}"), "fields": {"summary": format!("issue {n}"),
            "status": {"name": "To Do"}, "issuetype": {"name": "Bug"}, "project": {"key": "PROJ"}}});
        let r = client
            .put(format!("{jira}/rest/api/2/issue/F-{n}"))
            .json(&record)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "seeding F-{n}: {}", r.status());
    }
}

async fn measure(row: &str, events: usize, latency_ms: u64, error_rate: f64) -> Row {
    let dir = std::env::temp_dir().join(format!("ocean-fetch-{row}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let latency = latency_ms.to_string();
    let errors = error_rate.to_string();
    let mut vars = vec![
        (
            "OCEAN__INTEGRATION__CONFIG__DEMO_LATENCY_MS",
            latency.as_str(),
        ),
        (
            "OCEAN__INTEGRATION__CONFIG__DEMO_ERROR_RATE",
            errors.as_str(),
        ),
    ];
    let (name, events) = match row {
        "workers-8" => {
            vars.push(("OCEAN__EVENT_WORKERS_COUNT", "8"));
            (
                "OCEAN__EVENT_WORKERS_COUNT=8 (Ocean's mode)",
                events.min(800),
            )
        }
        "workers-1" => {
            vars.push(("OCEAN__EVENT_WORKERS_COUNT", "1"));
            (
                "OCEAN__EVENT_WORKERS_COUNT=1 (Ocean's mode)",
                events.min(100),
            )
        }
        "flaky" => ("defaults, flaky Jira", events),
        _ => ("defaults (256 in flight)", events),
    };
    let mut binary = common::start_with(&dir, &vars);
    let demo = binary.line_with("demo Jira at ");
    let jira = url_after(&demo, "demo Jira at ").unwrap();
    let port = binary.port_url();
    let ingress = binary.ingress_url();
    let url = format!("{ingress}/integration/webhook");
    let client = reqwest::Client::new();
    seed(&client, &jira, events).await;
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
    drained(&client, &ingress, Duration::from_secs(600))
        .await
        .unwrap();
    let took = started.elapsed().as_secs_f64();
    let peak = binary.memory_kb("VmHWM").unwrap_or(0);
    // Outside the timing: nothing lost, and every entity holds the fetched record.
    let token = common::token(&client, &port).await;
    let all = common::issues(&client, &port, &token).await;
    for n in 0..events {
        assert_eq!(
            all.get(&format!("F-{n}")).map(String::as_str),
            Some(format!("issue {n}").as_str()),
            "F-{n} holds the fetched record"
        );
    }
    let text = metrics_of(&client, &ingress).await.unwrap();
    let host = reqwest::Url::parse(&jira).unwrap();
    let host = host.host_str().unwrap();
    let series = |status: &str| {
        metric(
            &text,
            &format!("ocean_upstream_requests_total{{host=\"{host}\",status=\"{status}\"}}"),
        )
    };
    binary.signal_and_wait("-TERM").await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    Row {
        name: name.to_owned(),
        events,
        events_s: events as f64 / took,
        peak_mb: peak as f64 / 1024.0,
        fetches: series("200"),
        throttled: series("429"),
    }
}

fn main() {
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let events: usize = env("FETCH_EVENTS", "5000").parse().unwrap();
    let latency_ms: u64 = env("FETCH_LATENCY_MS", "100").parse().unwrap();
    let error_rate: f64 = env("FETCH_ERROR_RATE", "0.01").parse().unwrap();
    let rows = env("FETCH_ROWS", "default,workers-8,workers-1,flaky");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let rows: Vec<Row> = runtime.block_on(async {
        let mut out = Vec::new();
        for row in rows.split(',').map(str::trim) {
            let errors = if row == "flaky" { error_rate } else { 0.0 };
            out.push(measure(row, events, latency_ms, errors).await);
        }
        out
    });
    println!(
        "\nfetch-heavy: {latency_ms} ms per upstream GET, disk queue, built-in Port; flaky: {:.1} % of answers 429 with Retry-After: 1\n",
        error_rate * 100.0
    );
    println!(
        "| setting | issues | events/s | peak RSS | upstream 200s | upstream 429s (retried) |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {:.0} | {:.0} MB | {:.0} | {:.0} |",
            r.name, r.events, r.events_s, r.peak_mb, r.fetches, r.throttled
        );
    }
}
