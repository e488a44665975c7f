//! Latency at a steady rate, black box: an open-loop sender posts distinct Jira-like issue events
//! at 500 per second for 20 s (each at its scheduled time, whether or not earlier ones were
//! answered) to the app on its defaults (disk queue, built-in Port) in its own process, whose
//! `/webhook` processor maps the payload. For each event: the time from its POST to its entity
//! being written in the built-in Port.
//!
//! `cargo bench -p ocean-tests --bench latency` (`LATENCY_RATE`, events/s, default 500;
//! `LATENCY_SECONDS`, default 20; `LATENCY_RUNS`, default 3).
//!
//! "Written" is the entity's `updatedAt`, which the built-in Port stamps when it applies the
//! upsert (then commits it, with an fsync, before it answers); the sender stamps the POST's start.
//! Both read this machine's clock, to the millisecond.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ocean_runtime::testing::{TestBinary, drained, port_entities};

#[path = "common/jira.rs"]
mod jira;
#[path = "common/proc.rs"]
mod proc;
use proc::{env, median};

const REPLICA: &str = env!("CARGO_BIN_EXE_replica");

struct Run {
    p50: f64,
    p99: f64,
    max: f64,
    answer_p99: f64,
    late_sends: usize,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn run(index: usize, rate: usize, seconds: usize) -> Run {
    let (dir, mapping) = jira::run_dir("latency", index);
    let mut app = TestBinary::start(
        REPLICA,
        &dir.join("app"),
        &[("OCEAN__PORT_APP_CONFIG_FILE", mapping.as_str())],
    )
    .expect("the app starts");
    let ingress = app.ingress_url();
    let port_url = app.port_url();
    let url = Arc::new(format!("{ingress}/integration/webhook"));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let events = rate * seconds;
    let every = Duration::from_secs(1) / u32::try_from(rate).unwrap();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut late_sends = 0;
    let mut sends = Vec::with_capacity(events);
    for n in 0..events {
        tick.tick().await;
        if started.elapsed() > every * u32::try_from(n).unwrap() + Duration::from_millis(5) {
            late_sends += 1;
        }
        let (client, url) = (client.clone(), Arc::clone(&url));
        let body = jira::event(index, n);
        sends.push(tokio::spawn(async move {
            let sent = SystemTime::now();
            let at = Instant::now();
            let r = client
                .post(url.as_str())
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "event {n}");
            (sent, at.elapsed())
        }));
    }
    let mut sent = Vec::with_capacity(events);
    for s in sends {
        sent.push(s.await.unwrap());
    }
    drained(&client, &ingress, Duration::from_secs(120))
        .await
        .unwrap();
    let entities = port_entities(&client, &port_url, "jiraIssue")
        .await
        .unwrap();
    assert_eq!(entities.len(), events, "every event's entity is in Port");
    let mut latencies = Vec::with_capacity(events);
    for e in &entities {
        let id = e["identifier"].as_str().unwrap();
        let n: usize = id.rsplit_once('-').unwrap().1.parse().unwrap();
        let written: jiff::Timestamp = e["updatedAt"].as_str().unwrap().parse().unwrap();
        let sent_at = jiff::Timestamp::try_from(sent[n].0).unwrap();
        let ms = written.duration_since(sent_at).as_secs_f64() * 1000.0;
        latencies.push(ms.max(0.0));
    }
    latencies.sort_by(f64::total_cmp);
    let mut answers: Vec<f64> = sent.iter().map(|(_, d)| d.as_secs_f64() * 1000.0).collect();
    answers.sort_by(f64::total_cmp);
    drop(app);
    let _ = std::fs::remove_dir_all(&dir);
    Run {
        p50: percentile(&latencies, 0.5),
        p99: percentile(&latencies, 0.99),
        max: latencies[latencies.len() - 1],
        answer_p99: percentile(&answers, 0.99),
        late_sends,
    }
}

fn main() {
    let rate = env("LATENCY_RATE", 500).max(1);
    let seconds = env("LATENCY_SECONDS", 20).max(1);
    let runs = env("LATENCY_RUNS", 3).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let results: Vec<Run> = runtime.block_on(async {
        let mut out = Vec::new();
        for i in 0..runs {
            out.push(run(i, rate, seconds).await);
        }
        out
    });
    println!(
        "\nlatency, open loop: {rate} events/s for {seconds} s, events of {} bytes, the app on its defaults (disk queue, built-in Port)\n",
        jira::event(0, 0).len()
    );
    println!(
        "| run | POST → entity written: p50 | p99 | max | 200 answered: p99 | sends more than 5 ms late |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for (i, r) in results.iter().enumerate() {
        println!(
            "| {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {} |",
            i + 1,
            r.p50,
            r.p99,
            r.max,
            r.answer_p99,
            r.late_sends
        );
    }
    println!(
        "\nmedian p99: {:.1} ms (target: at most 50 ms)",
        median(results.iter().map(|r| r.p99).collect())
    );
}
