#![allow(dead_code)]

//! The benchmarks' Jira-like workload: issue webhooks of about 2 KB, the example's mapping, and
//! the senders that post them.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::json;

/// A fresh folder for run `index` of `bench`, holding [`MAPPING`] as `mapping.yml`; and that
/// file's path, for `OCEAN__PORT_APP_CONFIG_FILE`.
#[allow(clippy::unwrap_used)]
pub(crate) fn run_dir(bench: &str, index: usize) -> (PathBuf, String) {
    let dir = std::env::temp_dir()
        .join(format!("ocean-bench-{bench}-{}", std::process::id()))
        .join(index.to_string());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mapping = dir.join("mapping.yml");
    std::fs::write(&mapping, MAPPING).unwrap();
    let mapping = mapping.display().to_string();
    (dir, mapping)
}

/// The Jira example's mapping of issues.
pub(crate) const MAPPING: &str = r#"
deleteDependentEntities: true
createMissingRelatedEntities: true
enableMergeEntity: true
resources:
  - kind: issue
    selector:
      query: '.fields.issuetype.name != "Sub-task"'
    port:
      entity:
        mappings:
          identifier: .key
          title: .fields.summary
          blueprint: '"jiraIssue"'
          properties:
            status: .fields.status.name
            issueType: .fields.issuetype.name
            priority: .fields.priority.name
            assignee: .fields.assignee.emailAddress
            labels: .fields.labels
            created: .fields.created
            updated: .fields.updated
          relations:
            project: .fields.project.key
"#;

/// A Jira `jira:issue_updated` webhook of about 2 KB, distinct for each `run` and `n` (issue key
/// `R<run>-<n>`).
pub(crate) fn event(run: usize, n: usize) -> Vec<u8> {
    let key = format!("R{run}-{n}");
    serde_json::to_vec(&json!({
        "webhookEvent": "jira:issue_updated",
        "timestamp": 1_763_884_800_000_u64 + n as u64,
        "issue": {"key": key, "self": format!("https://jira.example/rest/api/2/issue/{n}"), "fields": {
            "summary": format!("Checkout fails on Safari ({n})"),
            "description": "x".repeat(1400),
            "status": {"name": "In Progress"}, "issuetype": {"name": "Bug"},
            "priority": {"name": "High"}, "labels": ["web", "checkout"],
            "assignee": {"emailAddress": "dev@example.com"},
            "created": "2026-11-20T10:00:00.000+0000", "updated": "2026-11-23T10:00:00.000+0000",
            "project": {"key": "R"}
        }}
    }))
    .unwrap()
}

/// Posts every body once with `connections` concurrent senders, sender `c` to `urls[c % n]`, and
/// returns when all were answered (each must be 200).
pub(crate) async fn post_all(
    http: &reqwest::Client,
    urls: &[String],
    bodies: &Arc<Vec<Vec<u8>>>,
    connections: usize,
) {
    let senders: Vec<_> = (0..connections)
        .map(|c| {
            let url = urls[c % urls.len()].clone();
            let (http, bodies) = (http.clone(), Arc::clone(bodies));
            tokio::spawn(async move {
                for body in bodies.iter().skip(c).step_by(connections) {
                    let r = http
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200);
                }
            })
        })
        .collect();
    for s in senders {
        s.await.unwrap();
    }
}
