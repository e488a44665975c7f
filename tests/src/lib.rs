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
