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

    // Its log names the demo Jira it started, then the built-in Port, before it listens.
    let demo = binary.line_with("");
    assert!(
        demo.contains("using the demo Jira at http://"),
        "first log line names the demo Jira: {demo}"
    );
    let first = binary.line_with("built-in local Port at http://");
    assert!(first.contains("no Port credentials set"), "{first}");
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

    // Someone edits the issue in Jira; the webhook's own copy is already stale. The entity
    // follows Jira.
    let jira = url_after(&demo, "demo Jira at ").unwrap();
    let edited = client
        .put(format!("{jira}/rest/api/2/issue/PROJ-1"))
        .json(&serde_json::json!({"fields": {
            "summary": "Edited in Jira", "status": {"name": "Done"},
            "issuetype": {"name": "Bug"}, "project": {"key": "PROJ"}
        }}))
        .send()
        .await
        .unwrap();
    assert!(edited.status().is_success());
    let updated = include_str!("../samples/issue_updated.json");
    let post = |body: &'static str| {
        client
            .post(format!("{ingress}/integration/webhook"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    assert_eq!(post(updated).await.unwrap().status(), 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let body: Value = client
            .get(&entity_url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if body["entity"]["title"] == "Edited in Jira" {
            assert_eq!(body["entity"]["properties"]["status"], "Done");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "PROJ-1 never followed Jira: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Gone from Jira: the next webhook deletes the entity.
    let gone = client
        .delete(format!("{jira}/rest/api/2/issue/PROJ-1"))
        .send()
        .await
        .unwrap();
    assert!(gone.status().is_success());
    assert_eq!(post(updated).await.unwrap().status(), 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    while client
        .get(&entity_url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .status()
        != 404
    {
        assert!(Instant::now() < deadline, "PROJ-1 was not deleted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

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
