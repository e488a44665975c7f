//! A burst: 10,000 updates over 100 issues, posted as fast as 100 senders can (one per issue, each
//! update written to the upstream record before its webhook is sent), to the example binary on its
//! defaults, whose processors fetch the latest record from a demo Jira answering every `GET` after
//! 100 ms. The processors are `latest_only`, so an issue's waiting webhooks collapse into one fetch.
//!
//! `cargo bench -p ocean-example-jira --bench burst` (`BURST_ISSUES`, default 100;
//! `BURST_UPDATES`, per issue, default 100; `BURST_LATENCY_MS`, default 100; `BURST_RUNS`,
//! default 3).
//!
//! Reported: the burst's duration (first POST to last 200), the upstream fetches per issue (the
//! most any issue had, against the bound of one per round trip during the burst plus one), and the
//! time from the first POST until every entity in Port holds its issue's last version, read from
//! the demo Jira itself. The demo Jira runs in this process, so that its fetch counts can be read.

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

use std::sync::Arc;
use std::time::{Duration, Instant};

use ocean_example_jira::demo::{DemoJira, DemoOptions};
use serde_json::json;

struct Run {
    burst_s: f64,
    converged_s: f64,
    max_fetches: u64,
    mean_fetches: f64,
    bound: f64,
}

fn record(key: &str, version: usize) -> serde_json::Value {
    json!({"key": key, "fields": {"summary": format!("{key} v{version}"),
        "status": {"name": "In Progress"}, "issuetype": {"name": "Bug"}, "project": {"key": "PROJ"}}})
}

async fn run(index: usize, issues: usize, updates: usize, latency: Duration) -> Run {
    let demo = Arc::new(
        DemoJira::empty_with(DemoOptions {
            latency,
            error_rate: 0.0,
        })
        .await
        .unwrap(),
    );
    let keys: Vec<String> = (0..issues).map(|k| format!("B{index}-{k}")).collect();
    for key in &keys {
        demo.put("issue", record(key, 0));
    }
    let dir = std::env::temp_dir().join(format!("ocean-burst-{index}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let jira = demo.url();
    let (mut binary, ingress, port) = common::ready_with(
        &dir,
        &[("OCEAN__INTEGRATION__CONFIG__JIRA_URL", jira.as_str())],
    );
    let url = format!("{ingress}/integration/webhook");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(issues)
        .build()
        .unwrap();
    let started = Instant::now();
    let senders: Vec<_> = keys
        .iter()
        .map(|key| {
            let (client, url, demo, key) = (client.clone(), url.clone(), demo.clone(), key.clone());
            tokio::spawn(async move {
                for v in 1..=updates {
                    demo.put("issue", record(&key, v));
                    let r = client
                        .post(&url)
                        .json(&common::issue_created(&key, "stale"))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200, "{key} v{v}");
                }
            })
        })
        .collect();
    for s in senders {
        s.await.unwrap();
    }
    let burst = started.elapsed();
    // Until every entity holds what the upstream holds now (each issue's last version).
    let token = common::token(&client, &port).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let all = common::issues(&client, &port, &token).await;
        let done = keys
            .iter()
            .all(|k| all.get(k).map(String::as_str) == Some(format!("{k} v{updates}").as_str()));
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "entities not at their last version after 120 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let converged = started.elapsed();
    let fetches: Vec<u64> = keys.iter().map(|k| demo.fetches("issue", k)).collect();
    binary.signal_and_wait("-TERM").await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    Run {
        burst_s: burst.as_secs_f64(),
        converged_s: converged.as_secs_f64(),
        max_fetches: fetches.iter().copied().max().unwrap_or(0),
        mean_fetches: fetches.iter().sum::<u64>() as f64 / fetches.len() as f64,
        bound: burst.as_secs_f64() / latency.as_secs_f64() + 1.0,
    }
}

fn main() {
    let env = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let issues = env("BURST_ISSUES", 100);
    let updates = env("BURST_UPDATES", 100);
    let latency = Duration::from_millis(env("BURST_LATENCY_MS", 100) as u64);
    let runs = env("BURST_RUNS", 3).max(1);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let results: Vec<Run> = runtime.block_on(async {
        let mut out = Vec::new();
        for i in 0..runs {
            out.push(run(i, issues, updates, latency).await);
        }
        out
    });
    println!(
        "\nburst: {} updates over {issues} issues, {} ms per upstream GET, the example on its defaults\n",
        issues * updates,
        latency.as_millis()
    );
    println!(
        "| run | burst | updates/s | fetches per issue: most / mean | bound (burst / round trip + 1) | every entity at its last version after |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for (i, r) in results.iter().enumerate() {
        println!(
            "| {} | {:.2} s | {:.0} | {} / {:.1} | {:.1} | {:.2} s |",
            i + 1,
            r.burst_s,
            (issues * updates) as f64 / r.burst_s,
            r.max_fetches,
            r.mean_fetches,
            r.bound,
            r.converged_s
        );
    }
}
