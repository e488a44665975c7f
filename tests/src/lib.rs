//! Shared helpers for the end-to-end tests: Jira-like processors that map straight from the
//! payload (the framework's tests need no upstream; the Jira example fetches from one), Jira-like
//! payloads and the example's mapping.

use ocean_runtime::prelude::*;

ocean_runtime::kinds!["issue", "project"];

/// `jira:issue_*` webhooks: the payload's issue, deleted on `jira:issue_deleted`.
#[webhook_processor(
    path = "/webhook",
    kinds = ["issue"],
    matches = r#".webhookEvent | startswith("jira:issue_")"#,
    group = ".issue.key",
)]
pub async fn issue_events(event: &WebhookEvent) -> Result<RawResults, ProcessError> {
    let issue = event.value_at("/issue")?.clone();
    Ok(if event.payload()["webhookEvent"] == "jira:issue_deleted" {
        RawResults::deleted([issue])
    } else {
        RawResults::updated([issue])
    })
}

/// `project_*` webhooks: the payload's project, deleted on `project_deleted`.
#[webhook_processor(
    path = "/webhook",
    kinds = ["project"],
    matches = r#".webhookEvent | startswith("project_")"#,
    group = ".project.key",
)]
pub async fn project_events(event: &WebhookEvent) -> Result<RawResults, ProcessError> {
    let project = event.value_at("/project")?.clone();
    Ok(if event.payload()["webhookEvent"] == "project_deleted" {
        RawResults::deleted([project])
    } else {
        RawResults::updated([project])
    })
}

/// The Jira example's mapping, as shipped in `examples/jira/.port/resources`.
pub const JIRA_MAPPING: &str =
    include_str!("../../examples/jira/.port/resources/port-app-config.yml");

/// A Jira issue webhook (`jira:issue_<action>`) for `key` with a summary, status and type.
#[must_use]
pub fn issue_event(
    action: &str,
    key: &str,
    summary: &str,
    status: &str,
    issue_type: &str,
) -> Value {
    json!({
        "webhookEvent": format!("jira:issue_{action}"),
        "issue": {
            "key": key,
            "fields": {
                "summary": summary,
                "status": {"name": status},
                "issuetype": {"name": issue_type},
                "priority": {"name": "Medium"},
                "assignee": {"emailAddress": "dana@example.com"},
                "labels": ["a"],
                "project": {"key": key.split('-').next().unwrap_or(key)},
            }
        }
    })
}

/// Sends a request a test proxy received on to `upstream` (the same method, path, query, headers
/// and body) and answers with what came back: status, body and content type; 502 with the reason
/// when the upstream cannot be reached.
pub async fn pass_through(
    http: &reqwest::Client,
    upstream: &str,
    parts: &axum::http::request::Parts,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", axum::http::uri::PathAndQuery::as_str);
    let mut request = http
        .request(parts.method.clone(), format!("{upstream}{path}"))
        .body(body);
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            request = request.header(name, value);
        }
    }
    let answered = async {
        let answer = request.send().await?;
        let status = answer.status();
        let content_type = answer.headers().get("content-type").cloned();
        Ok::<_, reqwest::Error>((status, content_type, answer.bytes().await?))
    };
    match answered.await {
        Ok((status, content_type, bytes)) => {
            let mut response = (status, bytes).into_response();
            if let Some(ct) = content_type {
                response.headers_mut().insert("content-type", ct);
            }
            response
        }
        Err(e) => (axum::http::StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

/// A fresh folder for a test process (`ocean-<name>-<pid>` under the temporary folder) holding
/// the Jira mapping; returns the folder and the mapping file's path, for
/// `OCEAN__PORT_APP_CONFIG_FILE`.
///
/// # Errors
/// The folder or the file cannot be written.
pub fn folder_with_jira_mapping(name: &str) -> std::io::Result<(std::path::PathBuf, String)> {
    let dir = std::env::temp_dir().join(format!("ocean-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let mapping = dir.join("mapping.yml");
    std::fs::write(&mapping, JIRA_MAPPING)?;
    Ok((dir, mapping.display().to_string()))
}
