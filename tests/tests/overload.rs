//! Overload against a real integration process (the `replica` binary on its defaults: disk queue,
//! built-in Port): an open-loop flood at about three times what the process accepted in a
//! closed-loop probe. Every request gets 200 or 503 with `Retry-After` (none hangs, the process
//! stays up), its peak RSS stays bounded, and every event answered 200 ends up in Port.
//!
//! Bounded: a 1 s probe, then at most 30,000 requests over at most 3 s.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ocean_runtime::testing::{TestBinary, eventually, metric, metrics_of, port_entities};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

const REPLICA: &str = env!("CARGO_BIN_EXE_replica");
const FLOOD_MAX: usize = 30_000;
const FLOOD_FOR: Duration = Duration::from_secs(3);
/// Peak resident memory allowed to the process under the flood.
const RSS_MAX_KB: u64 = 256 * 1024;

#[derive(Default)]
struct Tally {
    accepted: Mutex<Vec<String>>,
    refused: AtomicUsize,
    /// Answers other than 200 and 503-with-Retry-After-and-a-JSON-reason, or none within 10 s.
    wrong: Mutex<Vec<String>>,
    /// Slowest answer, in milliseconds.
    slowest_ms: AtomicUsize,
}

/// Idle keep-alive connections to the app.
type Pool = Arc<std::sync::Mutex<Vec<TcpStream>>>;

/// One request over a raw connection: its status, whether it had `Retry-After`, its body, and
/// whether the server keeps the connection.
async fn exchange(
    stream: &mut TcpStream,
    request: &[u8],
) -> std::io::Result<(u16, bool, Vec<u8>, bool)> {
    stream.write_all(request).await?;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let keep = !head.contains("connection: close");
    Ok((
        status,
        head.contains("retry-after:"),
        buf[head_end..head_end + length].to_vec(),
        keep,
    ))
}

/// Posts one distinct issue event over a pooled (or new) connection and records the answer.
async fn send(addr: &str, pool: &Pool, key: String, tally: &Tally) {
    let body = serde_json::to_vec(&ocean_tests::issue_event(
        "created", &key, "flood", "To Do", "Bug",
    ))
    .unwrap();
    let mut request = format!(
        "POST /integration/webhook HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    let started = Instant::now();
    let pooled = pool.lock().unwrap().pop();
    let result = tokio::time::timeout(Duration::from_secs(10), async {
        let mut stream = match pooled {
            Some(s) => s,
            None => TcpStream::connect(addr).await?,
        };
        let answer = exchange(&mut stream, &request).await?;
        Ok::<_, std::io::Error>((stream, answer))
    })
    .await;
    let took = usize::try_from(started.elapsed().as_millis()).unwrap_or(usize::MAX);
    tally.slowest_ms.fetch_max(took, Ordering::Relaxed);
    match result {
        Ok(Ok((stream, (status, retry_after, body, keep)))) => {
            if keep {
                pool.lock().unwrap().push(stream);
            }
            let reason: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            match status {
                200 => tally.accepted.lock().await.push(key),
                503 if retry_after && reason["error"].is_string() => {
                    tally.refused.fetch_add(1, Ordering::Relaxed);
                }
                _ => tally.wrong.lock().await.push(format!("{status}: {reason}")),
            }
        }
        Ok(Err(e)) => tally.wrong.lock().await.push(e.to_string()),
        Err(_) => tally
            .wrong
            .lock()
            .await
            .push("no answer within 10 s".to_owned()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_at_three_times_capacity_gets_503s_and_loses_nothing_acknowledged() {
    let (dir, mapping) = ocean_tests::folder_with_jira_mapping("overload").unwrap();
    let mut app = TestBinary::start(
        REPLICA,
        &dir,
        &[("OCEAN__PORT_APP_CONFIG_FILE", mapping.as_str())],
    )
    .unwrap();
    let base = app.ingress_url();
    let addr = base.trim_start_matches("http://").to_owned();
    let pool: Pool = Pool::default();
    let tally = Arc::new(Tally::default());

    // Closed-loop probe: 32 senders for 1 s.
    let probe_start = Instant::now();
    let sent = Arc::new(AtomicUsize::new(0));
    let senders: Vec<_> = (0..32)
        .map(|_| {
            let (addr, pool, tally, sent) = (
                addr.clone(),
                Arc::clone(&pool),
                Arc::clone(&tally),
                Arc::clone(&sent),
            );
            tokio::spawn(async move {
                while probe_start.elapsed() < Duration::from_secs(1) {
                    let n = sent.fetch_add(1, Ordering::Relaxed);
                    send(&addr, &pool, format!("P-{n}"), &tally).await;
                }
            })
        })
        .collect();
    for s in senders {
        s.await.unwrap();
    }
    let capacity = tally.accepted.lock().await.len() as f64 / probe_start.elapsed().as_secs_f64();
    assert!(capacity > 0.0, "the probe got no 200");

    // Open loop at three times that: requests leave on a clock, whatever the answers.
    let rate = capacity * 3.0;
    let total = ((rate * FLOOD_FOR.as_secs_f64()) as usize).min(FLOOD_MAX);
    let every = Duration::from_secs_f64(FLOOD_FOR.as_secs_f64() / total as f64);
    let flood_start = tokio::time::Instant::now();
    let mut flood = Vec::with_capacity(total);
    for n in 0..total {
        tokio::time::sleep_until(flood_start + every * n as u32).await;
        let (addr, pool, tally) = (addr.clone(), Arc::clone(&pool), Arc::clone(&tally));
        flood.push(tokio::spawn(async move {
            send(&addr, &pool, format!("F-{n}"), &tally).await;
        }));
    }
    let flood_took = flood_start.elapsed();
    for f in flood {
        f.await.unwrap();
    }
    let accepted: BTreeSet<String> = tally.accepted.lock().await.iter().cloned().collect();
    let refused = tally.refused.load(Ordering::Relaxed);
    let wrong = tally.wrong.lock().await.clone();
    let peak = app.memory_kb("VmHWM").unwrap_or(0);
    pool.lock().unwrap().clear();
    let http = reqwest::Client::new();
    let text = eventually("the metrics", Duration::from_secs(10), || async {
        metrics_of(&http, &base).await.map(Some)
    })
    .await;
    let overloaded = metric(
        &text,
        r#"ocean_webhooks_rejected_total{reason="overloaded"}"#,
    );
    let connections = metric(
        &text,
        r#"ocean_webhooks_rejected_total{reason="too_many_connections"}"#,
    );
    println!(
        "probe: {capacity:.0} req/s accepted; flood: {total} requests sent in {flood_took:.2?} ({:.0}/s); in all {} accepted, {refused} refused with 503 (the app counted {overloaded} over its in-flight or lag limits, {connections} over its connection cap), slowest answer {} ms, peak RSS {} MiB",
        total as f64 / flood_took.as_secs_f64(),
        accepted.len(),
        tally.slowest_ms.load(Ordering::Relaxed),
        peak / 1024
    );
    assert!(
        wrong.is_empty(),
        "{} requests neither 200 nor 503: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    assert!(
        refused > 0,
        "a flood at three times capacity was all accepted"
    );
    assert!(peak > 0 && peak < RSS_MAX_KB, "peak RSS {peak} KiB");
    // The flood's idle connections are closed, so that they leave room under the cap.
    pool.lock().unwrap().clear();
    let live = reqwest::get(format!("{base}/health/live")).await.unwrap();
    assert_eq!(live.status(), 200, "the process is still up");

    // Every event answered 200 is processed and in Port.
    let metrics_url = format!("{base}/metrics");
    eventually(
        "every accepted event processed",
        Duration::from_secs(120),
        || {
            let (metrics_url, want) = (metrics_url.clone(), accepted.len() as f64);
            async move {
                let text = reqwest::get(&metrics_url).await?.text().await?;
                let done = metric(&text, "ocean_queue_depth") == 0.0
                    && metric(&text, "ocean_event_processing_seconds_count") >= want;
                Ok::<_, reqwest::Error>(done.then_some(()))
            }
        },
    )
    .await;
    let in_port: BTreeSet<String> =
        port_entities(&reqwest::Client::new(), &app.port_url(), "jiraIssue")
            .await
            .unwrap()
            .iter()
            .filter_map(|e| e["identifier"].as_str().map(str::to_owned))
            .collect();
    let missing: Vec<_> = accepted.difference(&in_port).take(5).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not in Port: {missing:?}"
    );
    drop(app);
    let _ = std::fs::remove_dir_all(&dir);
}
