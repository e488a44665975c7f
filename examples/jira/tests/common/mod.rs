//! Running the example's real binary in tests (with `ocean_runtime::testing::TestBinary`), sending
//! it webhooks and reading the built-in Port.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unreachable_pub)]

use ocean_runtime::testing::TestBinary;
use serde_json::{Value, json};

/// The example's binary with its own data folder and extra variables.
pub fn start_with(data_dir: &std::path::Path, vars: &[(&str, &str)]) -> TestBinary {
    TestBinary::start(env!("CARGO_BIN_EXE_ocean-example-jira"), data_dir, vars)
        .expect("the example binary starts")
}

pub fn start(data_dir: &std::path::Path) -> TestBinary {
    start_with(data_dir, &[])
}

/// Starts the binary and waits until it listens: (binary, webhook URL, built-in Port URL).
pub fn ready(data_dir: &std::path::Path) -> (TestBinary, String, String) {
    ready_with(data_dir, &[])
}

/// [`ready`] with extra variables.
pub fn ready_with(
    data_dir: &std::path::Path,
    vars: &[(&str, &str)],
) -> (TestBinary, String, String) {
    let mut binary = start_with(data_dir, vars);
    let port = binary.port_url();
    let ingress = binary.ingress_url();
    (binary, ingress, port)
}

pub async fn token(client: &reqwest::Client, port: &str) -> String {
    ocean_runtime::testing::local_port_token(client, port)
        .await
        .unwrap()
}

/// One entity from the built-in Port; `None` when it does not exist.
pub async fn entity(
    client: &reqwest::Client,
    port: &str,
    token: &str,
    blueprint: &str,
    identifier: &str,
) -> Result<Option<Value>, reqwest::Error> {
    let response = client
        .get(format!(
            "{port}/v1/blueprints/{blueprint}/entities/{identifier}"
        ))
        .bearer_auth(token)
        .send()
        .await?;
    if response.status() == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    let body: Value = response.error_for_status()?.json().await?;
    Ok(Some(body["entity"].clone()))
}

/// A Jira `issue_created` webhook for `key` with summary `summary`.
pub fn issue_created(key: &str, summary: &str) -> Value {
    json!({
        "webhookEvent": "jira:issue_created",
        "issue": {"key": key, "fields": {
            "summary": summary,
            "status": {"name": "To Do"},
            "issuetype": {"name": "Bug"},
            "project": {"key": "PROJ"}
        }}
    })
}

/// Every `jiraIssue` in the built-in Port: identifier → title.
pub async fn issues(
    client: &reqwest::Client,
    port: &str,
    token: &str,
) -> std::collections::HashMap<String, String> {
    let body: Value = client
        .get(format!("{port}/v1/blueprints/jiraIssue/entities"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["identifier"].as_str().unwrap().to_owned(),
                e["title"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}
