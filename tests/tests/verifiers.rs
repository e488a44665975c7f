//! Ingress verifiers: GitHub signatures with rotated secrets, and Standard Webhooks refusing
//! stale and forged deliveries; neither stores what it refuses.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use ocean_runtime::prelude::*;
use ocean_runtime::testing::eventually;
use ocean_runtime::testing::github_signature;

mod common;
use common::{WAIT, on};

ocean_runtime::kinds!["thing"];

// ---- Ingress verifiers ----

static SIGNED: Mutex<Vec<u64>> = Mutex::new(Vec::new());

#[webhook_processor(path = "/signed", kinds = ["thing"], authenticate = github(secret = "gh_secret"))]
async fn signed(event: &WebhookEvent) -> Result<RawResults, ProcessError> {
    SIGNED
        .lock()
        .unwrap()
        .push(event.payload()["n"].as_u64().unwrap_or(0));
    Ok(RawResults::none())
}

#[tokio::test]
async fn github_signatures_are_checked_at_ingress_with_rotated_secrets() {
    let app = on("/signed")
        .env(
            "OCEAN__INTEGRATION__CONFIG__GH_SECRET",
            "new-secret, old-secret",
        )
        .start()
        .await
        .unwrap();
    let send = |n: u64, secret: Option<&'static str>| {
        let app = &app;
        async move {
            let body = format!(r#"{{"n":{n}}}"#).into_bytes();
            let sig = secret.map(|s| github_signature(s, &body));
            let mut headers = vec![("content-type", "application/json")];
            if let Some(sig) = &sig {
                headers.push(("x-hub-signature-256", sig.as_str()));
            }
            app.post_raw("/signed", body.clone(), &headers)
                .await
                .unwrap()
        }
    };
    assert_eq!(send(1, Some("new-secret")).await.0, 200);
    assert_eq!(send(2, Some("old-secret")).await.0, 200, "rotated secret");
    let (status, body) = send(3, Some("guessed")).await;
    assert_eq!(status, 401);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("does not match the body"),
        "{body}"
    );
    let (status, body) = send(4, None).await;
    assert_eq!(status, 401);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("missing `x-hub-signature-256`"),
        "{body}"
    );
    assert_eq!(send(5, Some("new-secret")).await.0, 200);
    eventually("the three authentic deliveries", WAIT, || async {
        Ok::<_, ()>((SIGNED.lock().unwrap().len() >= 3).then_some(()))
    })
    .await;
    let mut seen = SIGNED.lock().unwrap().clone();
    seen.sort_unstable();
    assert_eq!(seen, [1, 2, 5], "refused deliveries were never processed");
    app.shutdown().await;

    let missing = on("/signed").start().await.unwrap_err().to_string();
    assert!(
        missing.starts_with("OCEAN__INTEGRATION__CONFIG__GH_SECRET must be set because processor `signed` authenticates with `github`"),
        "{missing}"
    );
}

static STANDARD_SEEN: AtomicUsize = AtomicUsize::new(0);

#[webhook_processor(
    path = "/standard",
    kinds = ["thing"],
    authenticate = standard_webhooks(secret = "sw_secret", tolerance = "5m"),
)]
async fn standard(_event: &WebhookEvent) -> Result<RawResults, ProcessError> {
    STANDARD_SEEN.fetch_add(1, Ordering::SeqCst);
    Ok(RawResults::none())
}

#[tokio::test]
async fn standard_webhooks_refuses_stale_and_forged_deliveries() {
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let app = on("/standard")
        .env(
            "OCEAN__INTEGRATION__CONFIG__SW_SECRET",
            format!("whsec_b2xk, {SECRET}"),
        )
        .start()
        .await
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let send = |id: &'static str, ts: u64, secret: &'static str| {
        let app = &app;
        async move {
            let body = br#"{"n":1}"#.to_vec();
            let sig =
                ocean_runtime::testing::standard_webhooks_signature(secret, id, ts, &body).unwrap();
            let ts = ts.to_string();
            app.post_raw(
                "/standard",
                body,
                &[
                    ("content-type", "application/json"),
                    ("webhook-id", id),
                    ("webhook-timestamp", &ts),
                    ("webhook-signature", &sig),
                ],
            )
            .await
            .unwrap()
        }
    };
    assert_eq!(
        send("msg_1", now, SECRET).await.0,
        200,
        "rotated: second secret"
    );
    let (status, body) = send("msg_2", now - 600, SECRET).await;
    assert_eq!(status, 401);
    assert!(
        body["error"].as_str().unwrap().contains("tolerance 300 s"),
        "{body}"
    );
    let (status, _) = send("msg_3", now, "whsec_AAAAAAAAAAAAAAAAAAAAAAAA").await;
    assert_eq!(status, 401);
    assert_eq!(send("msg_4", now, SECRET).await.0, 200);
    eventually("the two authentic deliveries", WAIT, || async {
        Ok::<_, ()>((STANDARD_SEEN.load(Ordering::SeqCst) >= 2).then_some(()))
    })
    .await;
    eventually("an empty queue", WAIT, || async {
        Ok::<_, ()>((app.queue_depth().await == 0).then_some(()))
    })
    .await;
    assert_eq!(
        STANDARD_SEEN.load(Ordering::SeqCst),
        2,
        "refused deliveries were not stored"
    );
    app.shutdown().await;
}
