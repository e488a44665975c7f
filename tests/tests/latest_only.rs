//! `latest_only`: of several waiting events of a group, only the latest is processed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Mutex;

use ocean_runtime::prelude::*;
use ocean_runtime::testing::eventually;

mod common;
use common::{WAIT, on};

ocean_runtime::kinds!["thing"];

// ---- Fetch-latest processors ----

static LATEST_SEEN: Mutex<Vec<u64>> = Mutex::new(Vec::new());

fn gate() -> &'static tokio::sync::Semaphore {
    static GATE: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    GATE.get_or_init(|| tokio::sync::Semaphore::new(0))
}

#[webhook_processor(path = "/latest", kinds = ["thing"], group = ".key", latest_only = true)]
async fn latest(event: &WebhookEvent) -> Result<RawResults, ProcessError> {
    let n = event.payload()["n"].as_u64().unwrap_or(0);
    LATEST_SEEN.lock().unwrap().push(n);
    if n == 1 {
        // Hold the group busy until the test has queued more events behind this one.
        let _permit = gate().acquire().await.map_err(|e| e.to_string())?;
    }
    Ok(RawResults::none())
}

#[tokio::test]
async fn of_several_waiting_events_of_a_group_only_the_latest_is_processed() {
    let app = on("/latest").start().await.unwrap();
    let seen = || LATEST_SEEN.lock().unwrap().clone();
    app.post("/latest", &json!({"key": "K", "n": 1}))
        .await
        .unwrap();
    eventually("event 1 in flight", WAIT, || async {
        Ok::<_, ()>(seen().contains(&1).then_some(()))
    })
    .await;
    for n in 2..=4 {
        app.post("/latest", &json!({"key": "K", "n": n}))
            .await
            .unwrap();
    }
    app.post("/latest", &json!({"key": "M", "n": 5}))
        .await
        .unwrap();
    eventually("another group meanwhile", WAIT, || async {
        Ok::<_, ()>(seen().contains(&5).then_some(()))
    })
    .await;
    gate().add_permits(1);
    eventually("the latest of group K", WAIT, || async {
        Ok::<_, ()>(seen().contains(&4).then_some(()))
    })
    .await;
    eventually("the queue to empty", WAIT, || async {
        Ok::<_, ()>((app.queue_depth().await == 0).then_some(()))
    })
    .await;
    assert_eq!(seen(), [1, 5, 4], "2 and 3 were superseded by 4");
    let metrics = app.metrics().await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l == "ocean_events_superseded_total 2"),
        "{metrics}"
    );
    app.shutdown().await;
}
