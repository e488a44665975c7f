//! Nothing acknowledged is lost: events answered 200 are in the built-in Port after `kill -9` or
//! SIGTERM and a restart (disk queue, the default). The issues live in a demo Jira run by the test
//! (so it outlives the binary), each put there before its webhook is sent, as Jira does.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{issue_created, issues, token};
use ocean_example_jira::demo::DemoJira;

/// Events posted per run; bounded so the test stays well under a minute in debug builds.
const EVENTS: usize = 2000;
/// Concurrent senders.
const SENDERS: usize = 16;

/// Posts `EVENTS` distinct issue events from `SENDERS` tasks until told to stop or done; returns
/// the acknowledged ones (key → summary).
async fn flood(ingress: String, jira: Arc<DemoJira>, acked: Arc<Mutex<HashMap<String, String>>>) {
    let client = reqwest::Client::new();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tasks: Vec<_> = (0..SENDERS)
        .map(|_| {
            let (client, ingress, acked, next, jira) = (
                client.clone(),
                ingress.clone(),
                Arc::clone(&acked),
                Arc::clone(&next),
                Arc::clone(&jira),
            );
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if i >= EVENTS {
                        break;
                    }
                    let key = format!("CRASH-{i}");
                    let summary = format!("summary {i}");
                    let event = issue_created(&key, &summary);
                    jira.put("issue", event["issue"].clone());
                    let sent = client
                        .post(format!("{ingress}/integration/webhook"))
                        .json(&event)
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status() == 200 => {
                            acked.lock().unwrap().insert(key, summary);
                        }
                        // The process is gone: stop sending.
                        Err(_) => break,
                        Ok(_) => {}
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
}

async fn lost_nothing_after(signal: &str) {
    let data = std::env::temp_dir().join(format!(
        "ocean-crash-{}-{}",
        signal.trim_start_matches('-'),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&data);
    let jira = Arc::new(DemoJira::empty().await.unwrap());
    let vars = [("OCEAN__INTEGRATION__CONFIG__JIRA_URL", jira.url())];
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (mut binary, ingress, _) = common::ready_with(&data, &vars);

    let acked = Arc::new(Mutex::new(HashMap::new()));
    let sender = tokio::spawn(flood(ingress, Arc::clone(&jira), Arc::clone(&acked)));
    // Stop the process in the middle of the load: once half the events are acknowledged.
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < EVENTS / 2 {
        assert!(Instant::now() < deadline, "events were not acknowledged");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    binary.signal_and_wait(signal).await.unwrap();
    sender.await.unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= EVENTS / 2);

    let (mut binary, _, port) = common::ready_with(&data, &vars);
    let client = reqwest::Client::new();
    let token = token(&client, &port).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    let stored = loop {
        let stored = issues(&client, &port, &token).await;
        if acked.keys().all(|k| stored.contains_key(k)) {
            break stored;
        }
        assert!(
            Instant::now() < deadline,
            "after {signal} and a restart, {} of {} acknowledged events are missing",
            acked.keys().filter(|k| !stored.contains_key(*k)).count(),
            acked.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for (key, summary) in &acked {
        assert_eq!(&stored[key], summary, "{key} as its event says");
    }
    binary.signal_and_wait("-TERM").await.unwrap();
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_no_acknowledged_event() {
    lost_nothing_after("-KILL").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_loses_no_acknowledged_event() {
    lost_nothing_after("-TERM").await;
}
