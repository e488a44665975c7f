//! The example's real binary, as the README runs it: it starts on the built-in Port with no
//! configuration, says so first, processes a webhook over loopback HTTP, and stops cleanly on
//! SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::token;
use ocean_runtime::testing::{eventually, url_after};
use serde_json::Value;

/// How long the binary gets to process a webhook.
const WAIT: Duration = Duration::from_secs(30);

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
    let issue = || common::entity(&client, &port, &token, "jiraIssue", "PROJ-1");
    let entity = eventually("PROJ-1 to appear", WAIT, issue).await;
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
    let followed = eventually("PROJ-1 to follow Jira", WAIT, || async {
        let entity = issue().await?;
        Ok::<_, reqwest::Error>(entity.filter(|e| e["title"] == "Edited in Jira"))
    })
    .await;
    assert_eq!(followed["properties"]["status"], "Done");
    // Gone from Jira: the next webhook deletes the entity.
    let gone = client
        .delete(format!("{jira}/rest/api/2/issue/PROJ-1"))
        .send()
        .await
        .unwrap();
    assert!(gone.status().is_success());
    assert_eq!(post(updated).await.unwrap().status(), 200);
    eventually("PROJ-1 to be deleted", WAIT, || async {
        Ok::<_, reqwest::Error>(issue().await?.is_none().then_some(()))
    })
    .await;

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

    let listed = eventually("a dead letter", WAIT, || async {
        let listed = cli(&data, &port, &["dead-letters", "list"]);
        let any = listed["deadLetters"]
            .as_array()
            .is_some_and(|l| !l.is_empty());
        Ok::<_, std::convert::Infallible>(any.then_some(listed))
    })
    .await;
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
