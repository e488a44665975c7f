//! Dead letters: failed jobs and panicking handlers are kept, replayed and purged.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::Ordering;

use ocean_runtime::prelude::*;
use ocean_runtime::testing::eventually;

mod common;
use common::{WAIT, on};

ocean_runtime::kinds!["thing"];

// ---- Dead letters ----

static DLQ_FIXED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[webhook_processor(path = "/dlq", kinds = ["thing"], retry(max = 1, initial = "10ms"))]
async fn fragile(event: &WebhookEvent) -> Result<RawResults, ProcessError> {
    if !DLQ_FIXED.load(Ordering::SeqCst) {
        return Err(ProcessError::retryable("upstream keeps failing"));
    }
    Ok(RawResults::updated([event.payload().clone()]))
}

#[tokio::test]
async fn failed_jobs_become_dead_letters_that_can_be_replayed_and_purged() {
    let app = on("/dlq")
        .env("OCEAN__ADMIN__TOKEN", "admin-secret")
        .start()
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let admin = |method: reqwest::Method, path: &str| {
        http.request(method, format!("{}/admin/dead-letters{path}", app.url()))
            .bearer_auth("admin-secret")
    };
    let unauthorized = http
        .get(format!("{}/admin/dead-letters", app.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);

    assert_eq!(
        app.post("/dlq", &json!({"id": "t-1"})).await.unwrap().0,
        200
    );
    let letters = eventually("a dead letter", WAIT, || async {
        let body: Value = admin(reqwest::Method::GET, "").send().await?.json().await?;
        let letters = body["deadLetters"].as_array().cloned().unwrap_or_default();
        Ok::<_, reqwest::Error>((!letters.is_empty()).then_some(letters))
    })
    .await;
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter["processor"], "fragile");
    assert_eq!(letter["attempts"], 2, "first call and one retry");
    assert_eq!(letter["error"], "upstream keeps failing");
    assert_eq!(letter["kind"], "thing");
    assert_eq!(app.queue_depth().await, 0, "the event was acked");
    assert_eq!(app.entity("thing", "t-1").await.unwrap(), None);

    DLQ_FIXED.store(true, Ordering::SeqCst);
    let id = letter["id"].as_u64().unwrap();
    let replay = admin(reqwest::Method::POST, &format!("/{id}/replay"))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 200);
    eventually("t-1 after the replay", WAIT, || async {
        app.entity("thing", "t-1").await
    })
    .await;
    let body: Value = admin(reqwest::Method::GET, "")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["deadLetters"], json!([]));
    let missing = admin(reqwest::Method::POST, &format!("/{id}/replay"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    DLQ_FIXED.store(false, Ordering::SeqCst);
    for id in ["t-2", "t-3"] {
        app.post("/dlq", &json!({"id": id})).await.unwrap();
    }
    eventually("two dead letters", WAIT, || async {
        let body: Value = admin(reqwest::Method::GET, "").send().await?.json().await?;
        Ok::<_, reqwest::Error>(
            (body["deadLetters"].as_array().map_or(0, Vec::len) == 2).then_some(()),
        )
    })
    .await;
    let purged: Value = admin(reqwest::Method::DELETE, "")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(purged["purged"], 2);
    app.shutdown().await;
}

#[webhook_processor(path = "/panics", kinds = ["thing"])]
async fn panicky(event: &WebhookEvent) -> Result<RawResults, ProcessError> {
    if event.payload()["panic"] == true {
        panic!("handler bug on {}", event.payload()["id"]);
    }
    Ok(RawResults::updated([event.payload().clone()]))
}

#[tokio::test]
async fn a_panicking_handler_becomes_a_dead_letter_and_its_worker_goes_on() {
    let app = on("/panics")
        .env("OCEAN__EVENT_WORKERS_COUNT", "1")
        .env("OCEAN__ADMIN__TOKEN", "admin-secret")
        .start()
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let posted = app
        .post("/panics", &json!({"id": "p-1", "panic": true}))
        .await
        .unwrap();
    assert_eq!(posted.0, 200);
    // Posted again until accepted, as a sender does after a 503: in a debug build, the panic's
    // backtrace can stall this test's one runtime thread long enough for ingress to shed the next
    // webhook (the lag probe sees the stall).
    eventually("p-2 accepted", WAIT, || async {
        let (status, _) = app.post("/panics", &json!({"id": "p-2"})).await?;
        Ok::<_, ocean_runtime::testing::TestError>((status == 200).then_some(()))
    })
    .await;
    // The only worker survived the panic: the next event is applied.
    eventually("p-2 applied by the same worker", WAIT, || async {
        app.entity("thing", "p-2").await
    })
    .await;
    let body: Value = http
        .get(format!("{}/admin/dead-letters", app.url()))
        .bearer_auth("admin-secret")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let letters = body["deadLetters"].as_array().cloned().unwrap_or_default();
    assert_eq!(letters.len(), 1, "{body}");
    assert_eq!(letters[0]["processor"], "panicky");
    assert_eq!(
        letters[0]["error"],
        "processor panicked: handler bug on \"p-1\""
    );
    // Both settled (p-2's ack follows its entity by a moment).
    eventually("an empty queue", WAIT, || async {
        Ok::<_, ()>((app.queue_depth().await == 0).then_some(()))
    })
    .await;
    app.shutdown().await;
}
