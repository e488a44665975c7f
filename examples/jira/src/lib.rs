//! A Jira-like integration: Jira's issue and project webhooks keep `jiraIssue` and `jiraProject`
//! entities up to date.
//!
//! Run it against the built-in local Port (no configuration needed):
//!
//! ```text
//! cargo run -p ocean-example-jira
//! curl -s -X POST localhost:8000/integration/webhook -H 'content-type: application/json' \
//!      --data @examples/jira/samples/issue_created.json
//! ```
//!
//! The processors live in this library so that tests can run them in-process; `src/main.rs` only
//! mentions the crate (so the linker keeps its registrations) and calls `ocean_runtime::main!()`.
//! The mapping is `.port/resources/port-app-config.yml`, compiled into the binary as its default.

use ocean_runtime::prelude::*;

ocean_runtime::kinds!["issue", "project"];

/// `jira:issue_created` and `jira:issue_updated` upsert the issue; `jira:issue_deleted` deletes it.
#[webhook_processor(
    path = "/webhook",
    kinds = ["issue"],
    matches = r#".webhookEvent | startswith("jira:issue_")"#,
    group = ".issue.key",
)]
pub async fn issue_events(event: &WebhookEvent) -> Result<RawResults, ProcessError> {
    event.str_at("/issue/key")?;
    let issue = event.value_at("/issue")?.clone();
    Ok(if event.payload()["webhookEvent"] == "jira:issue_deleted" {
        RawResults::deleted([issue])
    } else {
        RawResults::updated([issue])
    })
}

/// `project_created` and `project_updated` upsert the project; `project_deleted` deletes it.
#[webhook_processor(
    path = "/webhook",
    kinds = ["project"],
    matches = r#".webhookEvent | startswith("project_")"#,
    group = ".project.key",
)]
pub async fn project_events(event: &WebhookEvent) -> Result<RawResults, ProcessError> {
    event.str_at("/project/key")?;
    let project = event.value_at("/project")?.clone();
    Ok(if event.payload()["webhookEvent"] == "project_deleted" {
        RawResults::deleted([project])
    } else {
        RawResults::updated([project])
    })
}
