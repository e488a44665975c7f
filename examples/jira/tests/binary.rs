//! The example's real binary, as the README runs it: it starts on the built-in Port with no
//! configuration, says so first, processes a webhook over loopback HTTP, and stops cleanly on
//! SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::token;
use ocean_runtime::testing::url_after;
use serde_json::Value;

#[tokio::test]
async fn runs_out_of_the_box_on_the_built_in_port() {
    let data = std::env::temp_dir().join(format!("ocean-example-jira-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let mut binary = common::start(&data);

    let first = binary.line_with("");
    assert!(
        first.contains("using the built-in local Port at http://"),
        "first log line names the built-in Port: {first}"
    );
    let port = url_after(&first, "built-in local Port at ").unwrap();
    let listening = binary.line_with("listening on http://");
    let ingress = url_after(&listening, "listening on ").unwrap();

    let client = reqwest::Client::new();
    let sample = include_str!("../samples/issue_created.json");
    let accepted = client
        .post(format!("{ingress}/integration/webhook"))
        .header("content-type", "application/json")
        .body(sample)
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 200);
    let accepted: Value = accepted.json().await.unwrap();
    assert_eq!(accepted["status"], "ok");

    let token = token(&client, &port).await;
    let entity_url = format!("{port}/v1/blueprints/jiraIssue/entities/PROJ-1");
    let deadline = Instant::now() + Duration::from_secs(30);
    let entity = loop {
        let response = client
            .get(&entity_url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        if response.status() == 200 {
            let body: Value = response.json().await.unwrap();
            break body["entity"].clone();
        }
        assert!(Instant::now() < deadline, "PROJ-1 never appeared");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(entity["title"], "Checkout fails on Safari");
    assert_eq!(entity["properties"]["status"], "To Do");
    assert_eq!(entity["relations"]["project"], "PROJ");

    let status = binary.signal_and_wait("-TERM").await.unwrap();
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    let _ = std::fs::remove_dir_all(&data);
}

/// Runs `<binary> dead-letters …` with the test's settings and returns its JSON answer.
fn cli(data: &std::path::Path, port: &str, args: &[&str]) -> Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ocean-example-jira"))
        .args(args)
        .env_clear()
        .env("OCEAN__APPLICATION__PORT", port)
        .env("OCEAN__QUEUE__PATH", data.join("queue"))
        .env("OCEAN__ADMIN__TOKEN", "ops")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn dead_letters_are_listed_online_and_offline_from_the_cli() {
    let data = std::env::temp_dir().join(format!("ocean-example-dlq-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let mut binary = common::start_with(&data, &[("OCEAN__ADMIN__TOKEN", "ops")]);
    let listening = binary.line_with("listening on http://");
    let ingress = url_after(&listening, "listening on ").unwrap();
    let port = ingress.rsplit(':').next().unwrap().to_owned();

    let client = reqwest::Client::new();
    let broken = serde_json::json!({"webhookEvent": "jira:issue_created", "issue": {"fields": {}}});
    let accepted = client
        .post(format!("{ingress}/integration/webhook"))
        .json(&broken)
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 200);

    let deadline = Instant::now() + Duration::from_secs(30);
    let listed = loop {
        let listed = cli(&data, &port, &["dead-letters", "list"]);
        if listed["deadLetters"]
            .as_array()
            .is_some_and(|l| !l.is_empty())
        {
            break listed;
        }
        assert!(Instant::now() < deadline, "no dead letter: {listed}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let letter = &listed["deadLetters"][0];
    assert_eq!(letter["processor"], "issue_events");
    assert_eq!(letter["error"], "payload has no value at `/issue/key`");
    assert_eq!(letter["attempts"], 1, "permanent errors are not retried");

    assert!(binary.signal_and_wait("-TERM").await.unwrap().success());
    let offline = cli(&data, &port, &["dead-letters", "show", "1"]);
    assert_eq!(offline["deadLetter"]["event"]["id"], letter["event"]["id"]);
    let purged = cli(&data, &port, &["dead-letters", "purge"]);
    assert_eq!(purged["purged"], 1);
    let _ = std::fs::remove_dir_all(&data);
}
