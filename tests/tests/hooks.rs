//! What the attribute sets for each job: validate, retry options and the hooks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Mutex;

use ocean_runtime::prelude::*;
use ocean_runtime::testing::eventually;

mod common;
use common::{WAIT, on};

ocean_runtime::kinds!["thing"];

// ---- validate, retry options and hooks ----

static HOOKS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn log(entry: String) {
    HOOKS.lock().unwrap().push(entry);
}

mod hooks {
    use super::*;

    pub(super) async fn before(job: &JobContext<'_>) {
        log(format!("before {}", job.event().payload()["n"]));
    }
    pub(super) async fn after(job: &JobContext<'_>, results: &RawResults) {
        log(format!(
            "after {} attempt {} updated {}",
            job.event().payload()["n"],
            job.attempt(),
            results.updated.len()
        ));
    }
    pub(super) async fn on_error(job: &JobContext<'_>, error: &ProcessError) {
        log(format!(
            "error {} attempt {}: {}",
            job.event().payload()["n"],
            job.attempt(),
            error.message()
        ));
    }
    pub(super) fn wanted(event: &WebhookEvent) -> bool {
        event.payload()["skip"] != true
    }
}

#[webhook_processor(
    path = "/hooks",
    kinds = ["thing"],
    validate = ".n != null",
    retry(max = 2, initial = "10ms", max_delay = "20ms"),
    should_process = hooks::wanted,
    before = hooks::before,
    after = hooks::after,
    on_error = hooks::on_error,
)]
async fn hooked(job: &JobContext<'_>, event: &WebhookEvent) -> Result<RawResults, ProcessError> {
    if event.payload()["n"] == 1 && job.attempt() == 1 {
        return Err(ProcessError::retryable("upstream hiccup"));
    }
    Ok(RawResults::none())
}

#[tokio::test]
async fn validate_retry_and_hooks_follow_the_attribute() {
    let app = on("/hooks")
        .env("OCEAN__EVENT_WORKERS_COUNT", "1")
        .start()
        .await
        .unwrap();
    for body in [
        json!({"n": 1, "id": "a"}),
        json!({"id": "no-n"}),
        json!({"n": 2, "skip": true, "id": "b"}),
        json!({"n": 3, "id": "c"}),
    ] {
        assert_eq!(app.post("/hooks", &body).await.unwrap().0, 200);
    }
    eventually("the last event's after hook", WAIT, || async {
        Ok::<_, ()>(
            HOOKS
                .lock()
                .unwrap()
                .iter()
                .any(|e| e.starts_with("after 3"))
                .then_some(()),
        )
    })
    .await;
    assert_eq!(
        HOOKS.lock().unwrap().as_slice(),
        [
            "before 1",
            "error 1 attempt 1: upstream hiccup",
            "after 1 attempt 2 updated 0",
            "error null attempt 1: the payload fails `validate`: .n != null",
            "before 3",
            "after 3 attempt 1 updated 0",
        ]
    );
    app.shutdown().await;
}
