//! End-to-end benchmark, black box: events per second from the first POST until every event's
//! entity is visible in the built-in Port, for distinct Jira-like issue events of about 2 KB, with
//! the app on its defaults (disk queue, built-in Port, 256 events in flight) in its own process and
//! the sender in this one. In the same run, and with the same sender, a bare axum server that only
//! parses the JSON: the ratio between the two is the figure to read.
//!
//! `cargo bench -p ocean-tests --bench e2e` (`E2E_EVENTS`: events per run, default 20000;
//! `E2E_RUNS`: runs, default 3; `E2E_CONNECTIONS`: concurrent senders, default 64; `E2E_APP_BIN`:
//! another build of the app to measure, e.g. an older commit's `replica`, for an A/B run).
//!
//! The app is `src/bin/replica.rs`, whose `/webhook` processor maps the payload's issue with the
//! Jira example's mapping (title, 7 properties, a relation); the baseline is `src/bin/bare.rs`.
//! Each event is acknowledged only after Port confirmed its upsert, so an empty queue means every
//! entity is visible; the entities are then read back and counted (outside the timing).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use ocean_runtime::testing::{TestBinary, drained, port_entities};

#[path = "common/jira.rs"]
mod jira;
#[path = "common/proc.rs"]
mod proc;
use proc::{cpu, env, median};

const REPLICA: &str = env!("CARGO_BIN_EXE_replica");
const BARE: &str = env!("CARGO_BIN_EXE_bare");

struct Run {
    bare_per_s: f64,
    accepted_per_s: f64,
    visible_per_s: f64,
    /// CPU seconds of the sender (this process) and of the app, ocean-rs run.
    sender_cpu: f64,
    app_cpu: f64,
    /// The same for the bare run.
    bare_sender_cpu: f64,
    bare_app_cpu: f64,
    seconds: f64,
}

fn http(connections: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()
        .unwrap()
}

async fn run(index: usize, events: usize, connections: usize) -> Run {
    let (dir, mapping) = jira::run_dir("e2e", index);
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new((0..events).map(|n| jira::event(index, n)).collect());

    // The baseline, with a client of its own (no warm connections carried over).
    let mut bare = TestBinary::start(BARE, &dir.join("bare"), &[]).expect("the bare server starts");
    let url = format!("{}/integration/webhook", bare.ingress_url());
    let client = http(connections);
    let (self0, app0) = (cpu(None), cpu(Some(bare.pid())));
    let started = Instant::now();
    jira::post_all(&client, &[url], &bodies, connections).await;
    let bare_time = started.elapsed();
    let (bare_sender_cpu, bare_app_cpu) = (
        (cpu(None) - self0).as_secs_f64(),
        (cpu(Some(bare.pid())) - app0).as_secs_f64(),
    );
    drop(bare);

    let app_bin = std::env::var("E2E_APP_BIN").unwrap_or_else(|_| REPLICA.to_owned());
    let mut app = TestBinary::start(
        &app_bin,
        &dir.join("app"),
        &[
            ("OCEAN__PORT_APP_CONFIG_FILE", mapping.as_str()),
            ("RUST_LOG", "info"),
        ],
    )
    .expect("the app starts");
    let ingress = app.ingress_url();
    let port_url = app.port_url();
    let url = format!("{ingress}/integration/webhook");
    let client = http(connections);
    let (self0, app0) = (cpu(None), cpu(Some(app.pid())));
    let started = Instant::now();
    jira::post_all(&client, &[url], &bodies, connections).await;
    let accepted = started.elapsed();
    drained(&client, &ingress, Duration::from_secs(300))
        .await
        .unwrap();
    let done = started.elapsed();
    let (sender_cpu, app_cpu) = (
        (cpu(None) - self0).as_secs_f64(),
        (cpu(Some(app.pid())) - app0).as_secs_f64(),
    );
    let entities = port_entities(&client, &port_url, "jiraIssue")
        .await
        .unwrap();
    assert_eq!(entities.len(), events, "every event's entity is in Port");
    let sample = entities
        .iter()
        .find(|e| e["identifier"] == format!("R{index}-7"))
        .expect("entity R-7");
    assert_eq!(sample["properties"]["status"], "In Progress");
    assert_eq!(sample["relations"]["project"], "R");
    drop(app);
    let _ = std::fs::remove_dir_all(&dir);
    Run {
        bare_per_s: events as f64 / bare_time.as_secs_f64(),
        accepted_per_s: events as f64 / accepted.as_secs_f64(),
        visible_per_s: events as f64 / done.as_secs_f64(),
        sender_cpu,
        app_cpu,
        bare_sender_cpu,
        bare_app_cpu,
        seconds: done.as_secs_f64(),
    }
}

fn main() {
    let events = env("E2E_EVENTS", 20_000);
    let runs = env("E2E_RUNS", 3).max(1);
    let connections = env("E2E_CONNECTIONS", 64).max(1);
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
        "\nend to end, black box: {events} distinct events of {} bytes, {connections} senders in \
         their own process; the app on its defaults (disk queue, built-in Port)\n",
        jira::event(0, 0).len()
    );
    println!(
        "| run | bare axum, req/s | ocean-rs accepted/s (durable ingest) | ocean-rs visible in Port, events/s | visible vs bare | CPU s, bare run: sender / server | CPU s, ocean-rs run: sender / app |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for (i, r) in results.iter().enumerate() {
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.2}x | {:.1} / {:.1} | {:.1} / {:.1} (in {:.1} s) |",
            i + 1,
            r.bare_per_s,
            r.accepted_per_s,
            r.visible_per_s,
            r.visible_per_s / r.bare_per_s,
            r.bare_sender_cpu,
            r.bare_app_cpu,
            r.sender_cpu,
            r.app_cpu,
            r.seconds,
        );
    }
    let ratio = median(
        results
            .iter()
            .map(|r| r.visible_per_s / r.bare_per_s)
            .collect(),
    );
    let visible = median(results.iter().map(|r| r.visible_per_s).collect());
    let accepted = median(results.iter().map(|r| r.accepted_per_s).collect());
    let bare = median(results.iter().map(|r| r.bare_per_s).collect());
    let app_cpu_us = median(
        results
            .iter()
            .map(|r| r.app_cpu * 1e6 / events as f64)
            .collect(),
    );
    println!(
        "\nmedians: bare {bare:.0} req/s; ocean-rs accepted {accepted:.0}/s, visible {visible:.0} events/s, \
         {app_cpu_us:.0} µs of app CPU per event; visible vs bare {ratio:.2}x (target: at least 0.20x)"
    );
}
