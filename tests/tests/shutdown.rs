//! Graceful shutdown: cancelled jobs run `on_cancel`, and their events stay for the next start.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};

use ocean_runtime::prelude::*;
use ocean_runtime::testing::eventually;

mod common;
use common::{WAIT, on};

ocean_runtime::kinds!["thing"];

// ---- Graceful shutdown: cancelled jobs run on_cancel and their events stay for the next start ----

static CANCEL_STARTED: AtomicUsize = AtomicUsize::new(0);
static CANCELLED: AtomicUsize = AtomicUsize::new(0);

async fn cancelled(_event: &WebhookEvent) {
    CANCELLED.fetch_add(1, Ordering::SeqCst);
}

#[webhook_processor(path = "/stuck", kinds = ["thing"], on_cancel = cancelled)]
async fn never_ends(_event: &WebhookEvent) -> Result<RawResults, ProcessError> {
    CANCEL_STARTED.fetch_add(1, Ordering::SeqCst);
    std::future::pending().await
}

#[tokio::test]
async fn shutdown_cancels_in_flight_jobs_and_keeps_their_events() {
    let dir = std::env::temp_dir().join(format!("ocean-cancel-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let start = || {
        on("/stuck")
            .data_dir(&dir)
            .env("OCEAN__MAX_WAIT_SECONDS_BEFORE_SHUTDOWN", "0.2")
            .start()
    };
    let app = start().await.unwrap();
    app.post("/stuck", &json!({"id": "s-1"})).await.unwrap();
    eventually("the job to start", WAIT, || async {
        Ok::<_, ()>((CANCEL_STARTED.load(Ordering::SeqCst) == 1).then_some(()))
    })
    .await;
    app.shutdown().await;
    assert_eq!(CANCELLED.load(Ordering::SeqCst), 1, "on_cancel ran");

    let app = start().await.unwrap();
    assert_eq!(
        app.queue_depth().await,
        1,
        "the cancelled event is back after a restart"
    );
    eventually("the job to start again", WAIT, || async {
        Ok::<_, ()>((CANCEL_STARTED.load(Ordering::SeqCst) == 2).then_some(()))
    })
    .await;
    app.shutdown().await;
    assert_eq!(CANCELLED.load(Ordering::SeqCst), 2);
    let _ = std::fs::remove_dir_all(&dir);
}
