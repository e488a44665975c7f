//! End-to-end benchmark: events per second from the first POST until every event's entity is in
//! the built-in Port, for distinct Jira-like issue events of about 2 KB, on the defaults (disk queue,
//! 8 event workers, the built-in Port on loopback with its own durable store).
//!
//! `cargo bench -p ocean-tests --bench e2e` (`E2E_EVENTS`: events per run, default 5000;
//! `E2E_RUNS`: runs, default 3; `E2E_CONNECTIONS`: concurrent senders, default 64).
//!
//! The processor is the Jira example's issue processor as far as Port sees it (payload → the
//! example's mapping: title, 7 properties, a relation), and each event is acknowledged only after
//! Port confirmed its upsert, so "queue empty" means "every entity visible". The entities are then
//! read back and counted (outside the timing).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use ocean_runtime::prelude::*;
use ocean_runtime::testing::TestApp;

#[path = "common/jira.rs"]
mod jira;
use jira::{MAPPING, event};

ocean_runtime::global_allocator!();
ocean_runtime::kinds!["issue"];

#[webhook_processor(
    path = "/webhook",
    kinds = ["issue"],
    matches = r#".webhookEvent | startswith("jira:issue_")"#,
    group = ".issue.key",
)]
async fn issues(event: &WebhookEvent) -> Result<RawResults, ProcessError> {
    Ok(RawResults::updated([event.value_at("/issue")?.clone()]))
}

struct Run {
    events_per_s: f64,
    accepted_per_s: f64,
}

async fn run(index: usize, events: usize, connections: usize) -> Run {
    let app = TestApp::builder()
        .paths(&["/webhook"])
        .mapping(MAPPING)
        .env("OCEAN__APPLICATION__LOG_LEVEL", "warn")
        .start()
        .await
        .unwrap();
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new((0..events).map(|n| event(index, n)).collect());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()
        .unwrap();
    let url = format!("{}/integration/webhook", app.url());
    let started = Instant::now();
    jira::post_all(&client, &[url], &bodies, connections).await;
    let accepted = started.elapsed();
    // Every event is acked only once Port confirmed its entity.
    let deadline = Instant::now() + Duration::from_secs(120);
    while app.queue_depth().await > 0 {
        assert!(Instant::now() < deadline, "events still queued after 120 s");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let done = started.elapsed();
    let entities = app.entities("jiraIssue").await.unwrap();
    assert_eq!(entities.len(), events, "every event's entity is in Port");
    let sample = entities
        .iter()
        .find(|e| e["identifier"] == format!("R{index}-7"))
        .expect("entity R-7");
    assert_eq!(sample["properties"]["status"], "In Progress");
    assert_eq!(sample["relations"]["project"], "R");
    app.shutdown().await;
    Run {
        events_per_s: events as f64 / done.as_secs_f64(),
        accepted_per_s: events as f64 / accepted.as_secs_f64(),
    }
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let events = env("E2E_EVENTS", 5000);
    let runs = env("E2E_RUNS", 3);
    let connections = env("E2E_CONNECTIONS", 64);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let results: Vec<Run> = runtime.block_on(async {
        let mut out = Vec::new();
        for i in 0..runs {
            out.push(run(i, events, connections).await);
        }
        out
    });
    println!(
        "\nend to end, {events} distinct events of {} bytes, {connections} senders, disk queue, built-in Port\n",
        event(0, 0).len()
    );
    println!("| run | accepted/s | visible in Port, events/s |");
    println!("|---:|---:|---:|");
    for (i, r) in results.iter().enumerate() {
        println!(
            "| {} | {:.0} | {:.0} |",
            i + 1,
            r.accepted_per_s,
            r.events_per_s
        );
    }
    let mut rates: Vec<f64> = results.iter().map(|r| r.events_per_s).collect();
    rates.sort_by(f64::total_cmp);
    println!("\nmedian: {:.0} events/s", rates[rates.len() / 2]);
}
