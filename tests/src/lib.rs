//! Shared helpers for the end-to-end tests: Jira-like payloads and the example's mapping.

use serde_json::{Value, json};

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
