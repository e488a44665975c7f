//! Hand-written processors, retries and timeouts, in-process over loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use ocean_runtime::prelude::*;
use ocean_runtime::testing::{TestApp, TestError, eventually};
use ocean_runtime::{BoxFuture, JobContext, Registration, RetryPolicy};
use serde_json::json;

const MAPPING: &str = r#"
resources:
  - kind: thing
    selector:
      query: 'true'
    port:
      entity:
        mappings:
          identifier: .id
          title: .name
          blueprint: '"thing"'
          properties:
            attempt: .attempt
"#;
const WAIT: Duration = Duration::from_secs(15);

/// Fails with a retryable error until its third call.
struct Flaky {
    calls: AtomicU32,
}

impl WebhookProcessor for Flaky {
    fn should_process(&self, event: &WebhookEvent) -> bool {
        event.payload()["type"] == "flaky"
    }

    fn handle<'a>(
        &'a self,
        job: &'a JobContext<'a>,
    ) -> BoxFuture<'a, Result<RawResults, ProcessError>> {
        Box::pin(async move {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            if n < 3 {
                return Err(ProcessError::retryable(format!("upstream busy (call {n})")));
            }
            let mut item = job.event().payload().clone();
            item["attempt"] = json!(job.attempt());
            Ok(RawResults::updated([item]))
        })
    }

    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            initial: Duration::from_millis(10),
            ..RetryPolicy::OCEAN
        }
    }
}

static FLAKY: Flaky = Flaky {
    calls: AtomicU32::new(0),
};

ocean_runtime::register!(Registration::new("/custom", "flaky", &["thing"], &FLAKY));

/// Fails permanently: must be called exactly once.
struct Broken {
    calls: AtomicU32,
}

impl WebhookProcessor for Broken {
    fn handle<'a>(
        &'a self,
        _job: &'a JobContext<'a>,
    ) -> BoxFuture<'a, Result<RawResults, ProcessError>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            Err(ProcessError::permanent("bad payload"))
        })
    }
}

static BROKEN: Broken = Broken {
    calls: AtomicU32::new(0),
};

ocean_runtime::register!(
    Registration::new("/custom", "broken", &["thing"], &BROKEN).matches(r#".type == "broken""#)
);

/// Never finishes: the job timeout must end it.
struct Stuck;

impl WebhookProcessor for Stuck {
    fn handle<'a>(
        &'a self,
        _job: &'a JobContext<'a>,
    ) -> BoxFuture<'a, Result<RawResults, ProcessError>> {
        Box::pin(std::future::pending())
    }

    fn timeout(&self) -> Option<Duration> {
        Some(Duration::from_millis(200))
    }
}

ocean_runtime::register!(Registration::new("/stuck", "stuck", &["thing"], &Stuck));

ocean_runtime::kinds!["thing"];

/// A macro processor next to the hand-written ones: also on `/custom`, selected by `matches`.
#[webhook_processor(path = "/custom", kinds = ["thing"], matches = r#".type == "plain""#)]
async fn plain(event: &WebhookEvent) -> Result<RawResults, ProcessError> {
    Ok(RawResults::updated([event.payload().clone()]))
}

#[tokio::test]
async fn retryable_failures_are_retried_and_permanent_ones_are_not() {
    let app = TestApp::builder().mapping(MAPPING).start().await.unwrap();
    app.post(
        "/custom",
        &json!({"type": "flaky", "id": "f1", "name": "Flaky"}),
    )
    .await
    .unwrap();
    let entity = eventually("f1", WAIT, || async { app.entity("thing", "f1").await }).await;
    assert_eq!(
        entity["properties"]["attempt"], 3,
        "the third call succeeded"
    );
    assert_eq!(FLAKY.calls.load(Ordering::SeqCst), 3);

    app.post("/custom", &json!({"type": "broken", "id": "b1"}))
        .await
        .unwrap();
    app.post(
        "/custom",
        &json!({"type": "plain", "id": "p1", "name": "Plain"}),
    )
    .await
    .unwrap();
    eventually("p1", WAIT, || async { app.entity("thing", "p1").await }).await;
    eventually("the queue to drain", WAIT, || async {
        Ok::<_, TestError>((app.queue_depth().await == 0).then_some(()))
    })
    .await;
    assert_eq!(
        BROKEN.calls.load(Ordering::SeqCst),
        1,
        "permanent errors are not retried"
    );
    assert_eq!(app.entity("thing", "b1").await.unwrap(), None);
    app.shutdown().await;
}

#[tokio::test]
async fn a_stuck_job_is_ended_by_its_timeout() {
    let app = TestApp::builder().mapping(MAPPING).start().await.unwrap();
    app.post("/stuck", &json!({"id": "s1"})).await.unwrap();
    // The event is settled (acked) once the 200 ms job timeout fires.
    eventually("the stuck event to be settled", WAIT, || async {
        Ok::<_, TestError>((app.queue_depth().await == 0).then_some(()))
    })
    .await;
    assert_eq!(app.entity("thing", "s1").await.unwrap(), None);
    app.shutdown().await;
}
