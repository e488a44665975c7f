//! What ingress promises: a repeated delivery id is processed once, and a full queue answers 503
//! and stores nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Mutex;

use ocean_runtime::prelude::*;
use ocean_runtime::testing::eventually;

mod common;
use common::{WAIT, on};

ocean_runtime::kinds!["thing"];

// ---- Delivery-id dedup ----

static DEDUP_SEEN: Mutex<Vec<u64>> = Mutex::new(Vec::new());

#[webhook_processor(path = "/dedup", kinds = ["thing"])]
async fn dedup(event: &WebhookEvent) -> Result<RawResults, ProcessError> {
    DEDUP_SEEN
        .lock()
        .unwrap()
        .push(event.payload()["n"].as_u64().unwrap_or(0));
    Ok(RawResults::none())
}

#[tokio::test]
async fn a_repeated_delivery_id_is_answered_200_and_processed_once() {
    let app = on("/dedup")
        .env("OCEAN__INGRESS__DEDUP_HEADERS", "X-Request-Id")
        .start()
        .await
        .unwrap();
    let post = |n: u64, header: &'static str, delivery: &'static str| {
        let app = &app;
        async move {
            let body = format!(r#"{{"n":{n}}}"#).into_bytes();
            app.post_raw(
                "/dedup",
                body,
                &[("content-type", "application/json"), (header, delivery)],
            )
            .await
            .unwrap()
        }
    };
    let (s1, first) = post(1, "X-GitHub-Delivery", "72d3162e").await;
    let (s2, again) = post(2, "X-GitHub-Delivery", "72d3162e").await;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["id"], first["id"], "the first delivery's event id");
    let (_, other) = post(3, "webhook-id", "msg_1").await;
    assert!(other.get("duplicate").is_none());
    let (_, named) = post(4, "X-Request-Id", "r-1").await;
    assert!(named.get("duplicate").is_none());
    let (_, named_again) = post(5, "X-Request-Id", "r-1").await;
    assert_eq!(named_again["duplicate"], true, "a header the author names");
    post(6, "X-GitHub-Delivery", "other").await;
    eventually("the distinct deliveries", WAIT, || async {
        Ok::<_, ()>((DEDUP_SEEN.lock().unwrap().len() >= 4).then_some(()))
    })
    .await;
    let mut seen = DEDUP_SEEN.lock().unwrap().clone();
    seen.sort_unstable();
    assert_eq!(seen, [1, 3, 4, 6]);
    app.shutdown().await;
}

// ---- A full queue stores nothing ----

fn full_gate() -> &'static tokio::sync::Semaphore {
    static GATE: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    GATE.get_or_init(|| tokio::sync::Semaphore::new(0))
}

static FULL_SEEN: Mutex<Vec<u64>> = Mutex::new(Vec::new());

#[webhook_processor(path = "/full", kinds = ["thing"])]
async fn full(event: &WebhookEvent) -> Result<RawResults, ProcessError> {
    let n = event.payload()["n"].as_u64().unwrap_or(0);
    FULL_SEEN.lock().unwrap().push(n);
    let _permit = full_gate().acquire().await.map_err(|e| e.to_string())?;
    Ok(RawResults::none())
}

#[tokio::test]
async fn a_full_queue_answers_503_with_retry_after_and_keeps_nothing() {
    let app = on("/full")
        .env("OCEAN__QUEUE__CAPACITY", "2")
        .env("OCEAN__EVENT_WORKERS_COUNT", "1")
        .start()
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let post = |n: u64| {
        http.post(format!("{}/integration/full", app.url()))
            .json(&json!({"n": n}))
            .send()
    };
    assert_eq!(post(1).await.unwrap().status(), 200);
    eventually("event 1 in flight", WAIT, || async {
        Ok::<_, ()>(FULL_SEEN.lock().unwrap().contains(&1).then_some(()))
    })
    .await;
    assert_eq!(post(2).await.unwrap().status(), 200);
    let refused = post(3).await.unwrap();
    assert_eq!(refused.status(), 503);
    assert_eq!(
        refused
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("1")
    );
    let body: Value = refused.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("full"), "{body}");
    assert_eq!(
        app.queue_depth().await,
        2,
        "the refused event was not stored"
    );
    full_gate().add_permits(10);
    eventually("the two accepted events", WAIT, || async {
        Ok::<_, ()>((app.queue_depth().await == 0).then_some(()))
    })
    .await;
    assert_eq!(FULL_SEEN.lock().unwrap().as_slice(), [1, 2]);
    app.shutdown().await;
}
