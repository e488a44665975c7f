//! End-to-end: real HTTP on loopback into the app, Jira-like processors (`ocean_tests`), the
//! built-in Port.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use ocean_runtime::testing::{TestApp, eventually};
use ocean_tests::{JIRA_MAPPING, issue_event};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(15);

async fn app() -> TestApp {
    TestApp::builder()
        .mapping(JIRA_MAPPING)
        .start()
        .await
        .expect("app starts")
}

async fn issue(app: &TestApp, key: &str) -> Option<Value> {
    app.entity("jiraIssue", key)
        .await
        .expect("built-in Port answers")
}

#[tokio::test]
async fn created_updated_deleted_round_trip() {
    let app = app().await;

    let (status, body) = app
        .post(
            "/webhook",
            &issue_event("created", "PROJ-1", "First", "To Do", "Bug"),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok");
    assert!(
        body["id"].as_str().is_some_and(|id| id.len() == 36),
        "{body}"
    );
    let created = eventually("PROJ-1 to be created", WAIT, || async {
        app.entity("jiraIssue", "PROJ-1").await
    })
    .await;
    assert_eq!(created["title"], "First");
    assert_eq!(created["properties"]["status"], "To Do");
    assert_eq!(created["properties"]["issueType"], "Bug");
    assert_eq!(created["properties"]["assignee"], "dana@example.com");
    assert_eq!(created["properties"]["labels"], json!(["a"]));
    assert_eq!(created["relations"]["project"], "PROJ");

    app.post(
        "/webhook",
        &issue_event("updated", "PROJ-1", "Renamed", "Done", "Bug"),
    )
    .await
    .unwrap();
    let updated = eventually("PROJ-1 to be updated", WAIT, || async {
        Ok::<_, ocean_runtime::testing::TestError>(
            issue(&app, "PROJ-1")
                .await
                .filter(|e| e["title"] == "Renamed"),
        )
    })
    .await;
    assert_eq!(updated["properties"]["status"], "Done");
    assert_eq!(
        updated["createdAt"], created["createdAt"],
        "an update keeps the creation time"
    );

    app.post(
        "/webhook",
        &issue_event("deleted", "PROJ-1", "Renamed", "Done", "Bug"),
    )
    .await
    .unwrap();
    eventually("PROJ-1 to be deleted", WAIT, || async {
        Ok::<_, ocean_runtime::testing::TestError>(
            issue(&app, "PROJ-1").await.is_none().then_some(()),
        )
    })
    .await;
    app.shutdown().await;
}

#[tokio::test]
async fn an_update_the_selector_rejects_deletes_the_entity() {
    let app = app().await;
    app.post(
        "/webhook",
        &issue_event("created", "PROJ-7", "Task", "To Do", "Task"),
    )
    .await
    .unwrap();
    eventually("PROJ-7 to be created", WAIT, || async {
        app.entity("jiraIssue", "PROJ-7").await
    })
    .await;
    // The mapping's selector drops sub-tasks: the updated item fails it, so the entity is deleted.
    app.post(
        "/webhook",
        &issue_event("updated", "PROJ-7", "Task", "To Do", "Sub-task"),
    )
    .await
    .unwrap();
    eventually("PROJ-7 to be deleted", WAIT, || async {
        Ok::<_, ocean_runtime::testing::TestError>(
            issue(&app, "PROJ-7").await.is_none().then_some(()),
        )
    })
    .await;
    app.shutdown().await;
}

#[tokio::test]
async fn events_no_processor_matches_change_nothing() {
    // One worker processes events in arrival order: once the marker is in, the event before it is done.
    let app = TestApp::builder()
        .mapping(JIRA_MAPPING)
        .env("OCEAN__EVENT_WORKERS_COUNT", "1")
        .start()
        .await
        .unwrap();
    app.post(
        "/webhook",
        &issue_event("created", "PROJ-2", "Keep", "To Do", "Bug"),
    )
    .await
    .unwrap();
    eventually("PROJ-2 to be created", WAIT, || async {
        app.entity("jiraIssue", "PROJ-2").await
    })
    .await;
    let before = app.entities("jiraIssue").await.unwrap();

    let mut unmatched = issue_event("updated", "PROJ-2", "Changed", "Done", "Bug");
    unmatched["webhookEvent"] = json!("sprint_started");
    let (status, _) = app.post("/webhook", &unmatched).await.unwrap();
    assert_eq!(status, 200, "an event no processor wants is still accepted");
    app.post(
        "/webhook",
        &json!({"webhookEvent": "project_created", "project": {"key": "MARK", "name": "marker"}}),
    )
    .await
    .unwrap();
    eventually("the marker project", WAIT, || async {
        app.entity("jiraProject", "MARK").await
    })
    .await;

    assert_eq!(app.entities("jiraIssue").await.unwrap(), before);
    app.shutdown().await;
}

#[tokio::test]
async fn malformed_requests_are_refused_with_a_json_reason_and_not_queued() {
    let app = app().await;
    let (status, body) = app
        .post_raw(
            "/webhook",
            b"{not json".to_vec(),
            &[("content-type", "application/json")],
        )
        .await
        .unwrap();
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("not valid JSON"),
        "{body}"
    );

    let (status, body) = app.post("/nowhere", &json!({})).await.unwrap();
    assert_eq!(status, 404);
    assert!(
        body["error"].as_str().unwrap().contains("/nowhere"),
        "{body}"
    );

    let big = vec![b' '; 1024 * 1024 + 1];
    let (status, body) = app.post_raw("/webhook", big, &[]).await.unwrap();
    assert_eq!(status, 413, "{body}");

    let resp = reqwest::get(format!("{}/integration/webhook", app.url()))
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(app.queue_depth().await, 0);
    app.shutdown().await;
}

#[tokio::test]
async fn health_and_readiness() {
    let app = app().await;
    let live: Value = reqwest::get(format!("{}/health/live", app.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(live, json!({"status": "healthy", "check": "live"}));
    let ready = reqwest::get(format!("{}/health/ready", app.url()))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    app.shutdown().await;

    // With no mapping anywhere the app runs but is not ready, and keeps events for later.
    let app = TestApp::builder().start().await.unwrap();
    let ready = reqwest::get(format!("{}/health/ready", app.url()))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["reason"], "no mapping is loaded yet");
    let (status, _) = app
        .post(
            "/webhook",
            &issue_event("created", "PROJ-3", "x", "To Do", "Bug"),
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(app.queue_depth().await, 1);
    app.shutdown().await;
}

#[tokio::test]
async fn the_built_in_port_keeps_entities_across_restarts() {
    let dir = std::env::temp_dir().join(format!("ocean-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let app = TestApp::builder()
        .mapping(JIRA_MAPPING)
        .data_dir(&dir)
        .start()
        .await
        .unwrap();
    app.post(
        "/webhook",
        &issue_event("created", "PROJ-4", "Persisted", "To Do", "Bug"),
    )
    .await
    .unwrap();
    eventually("PROJ-4 to be created", WAIT, || async {
        app.entity("jiraIssue", "PROJ-4").await
    })
    .await;
    app.shutdown().await;

    let app = TestApp::builder()
        .mapping(JIRA_MAPPING)
        .data_dir(&dir)
        .start()
        .await
        .unwrap();
    let entity = app
        .entity("jiraIssue", "PROJ-4")
        .await
        .unwrap()
        .expect("entity survives the restart");
    assert_eq!(entity["title"], "Persisted");
    app.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn deletes_spare_entities_this_integration_does_not_own() {
    let app = app().await;
    // Another writer (its own user agent, hence another datasource) creates PROJ-5 directly in Port.
    let http = reqwest::Client::new();
    let auth = app.port_token().await.unwrap();
    let resp = http
        .post(format!(
            "{}/v1/blueprints/jiraIssue/entities/bulk?upsert=true",
            app.port_url()
        ))
        .header("authorization", &auth)
        .header("user-agent", "port-ocean/other/1.0/someone-else/exporter")
        .json(&json!({"entities": [{"identifier": "PROJ-5", "title": "Not ours"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    app.post(
        "/webhook",
        &issue_event("deleted", "PROJ-5", "Not ours", "Done", "Bug"),
    )
    .await
    .unwrap();
    app.post(
        "/webhook",
        &issue_event("created", "PROJ-6", "Ours", "To Do", "Bug"),
    )
    .await
    .unwrap();
    app.post(
        "/webhook",
        &issue_event("deleted", "PROJ-6", "Ours", "To Do", "Bug"),
    )
    .await
    .unwrap();
    eventually("the queue to drain", WAIT, || async {
        Ok::<_, ()>((app.queue_depth().await == 0).then_some(()))
    })
    .await;
    assert_eq!(issue(&app, "PROJ-5").await.unwrap()["title"], "Not ours");
    app.shutdown().await;
}

#[tokio::test]
async fn metrics_count_deliveries_jobs_and_port_calls() {
    let app = app().await;
    app.post(
        "/webhook",
        &issue_event("created", "MET-1", "Metrics", "To Do", "Bug"),
    )
    .await
    .unwrap();
    let (status, _) = app
        .post_raw("/webhook", b"{not json".to_vec(), &[])
        .await
        .unwrap();
    assert_eq!(status, 400);
    eventually("MET-1", WAIT, || app.entity("jiraIssue", "MET-1")).await;
    let text = eventually("the job to be counted", WAIT, || async {
        let text = app.metrics().await?;
        // The job is counted when it ends, the event's latency once it is acked.
        let counted = text.contains(
            "ocean_jobs_total{processor=\"issue_events\",kind=\"issue\",outcome=\"success\"} 1",
        ) && text
            .lines()
            .any(|l| l == "ocean_event_processing_seconds_count 1");
        Ok::<_, ocean_runtime::testing::TestError>(counted.then_some(text))
    })
    .await;
    for line in [
        "ocean_webhooks_received_total 2",
        "ocean_webhooks_rejected_total{reason=\"invalid_json\"} 1",
        "ocean_event_processing_seconds_count 1",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("ocean_port_requests_total{method=\"POST\",outcome=\"2xx\"}")),
        "{text}"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn a_redelivery_after_a_restart_is_still_recognised() {
    let dir = std::env::temp_dir().join(format!("ocean-e2e-dedup-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let body =
        serde_json::to_vec(&issue_event("created", "DUP-1", "Once", "To Do", "Bug")).unwrap();
    let headers = [
        ("content-type", "application/json"),
        ("x-github-delivery", "6f1c2e9a"),
    ];
    let app = TestApp::builder()
        .mapping(JIRA_MAPPING)
        .data_dir(&dir)
        .start()
        .await
        .unwrap();
    let (status, first) = app
        .post_raw("/webhook", body.clone(), &headers)
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(first.get("duplicate").is_none());
    app.shutdown().await;

    let app = TestApp::builder()
        .mapping(JIRA_MAPPING)
        .data_dir(&dir)
        .start()
        .await
        .unwrap();
    let (status, again) = app.post_raw("/webhook", body, &headers).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(again["duplicate"], true, "{again}");
    assert_eq!(again["id"], first["id"]);
    app.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn the_built_in_port_has_a_read_only_html_page() {
    let app = app().await;
    app.post(
        "/webhook",
        &issue_event("created", "WEB-1", "<b>Escaped</b> title", "To Do", "Bug"),
    )
    .await
    .unwrap();
    eventually("WEB-1", WAIT, || app.entity("jiraIssue", "WEB-1")).await;
    let index = reqwest::get(format!("{}/", app.port_url())).await.unwrap();
    assert_eq!(index.status(), 200);
    assert!(
        index.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let index = index.text().await.unwrap();
    assert!(
        index.contains("<a href=\"/ui/blueprints/jiraIssue\">jiraIssue</a></td><td>1</td>"),
        "{index}"
    );
    let list = reqwest::get(format!("{}/ui/blueprints/jiraIssue", app.port_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(list.contains("<td>WEB-1</td>"), "{list}");
    assert!(list.contains("&lt;b&gt;Escaped&lt;/b&gt; title"), "{list}");
    assert!(!list.contains("<b>Escaped</b>"), "titles are escaped");
    app.shutdown().await;
}

#[tokio::test]
async fn once_blueprints_exist_the_built_in_port_refuses_entities_of_unknown_ones() {
    // One worker: the project event is processed before the issue event that follows it.
    let app = TestApp::builder()
        .mapping(JIRA_MAPPING)
        .env("OCEAN__EVENT_WORKERS_COUNT", "1")
        .start()
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let auth = app.port_token().await.unwrap();
    let blueprints = format!("{}/v1/blueprints", app.port_url());
    let status = |r: reqwest::Response| r.status().as_u16();

    let missing = http
        .get(format!("{blueprints}/jiraIssue"))
        .header("authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(status(missing), 404);
    let create = || {
        http.post(&blueprints)
            .header("authorization", &auth)
            .json(&json!({"identifier": "jiraIssue", "title": "Jira Issue", "schema": {"properties": {}}}))
            .send()
    };
    assert_eq!(status(create().await.unwrap()), 200);
    assert_eq!(status(create().await.unwrap()), 409, "identifier taken");
    let patched: Value = http
        .patch(format!("{blueprints}/jiraIssue"))
        .header("authorization", &auth)
        .json(&json!({"title": "Issue"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(patched["blueprint"]["title"], "Issue");
    assert_eq!(patched["blueprint"]["identifier"], "jiraIssue");

    // jiraProject is not a blueprint: its entity is refused; the issue after it goes in.
    let project = json!({"webhookEvent": "project_created",
                         "project": {"key": "NOPE", "name": "No blueprint", "self": "x"}});
    app.post("/webhook", &project).await.unwrap();
    app.post(
        "/webhook",
        &issue_event("created", "BP-1", "Has a blueprint", "To Do", "Bug"),
    )
    .await
    .unwrap();
    eventually("BP-1", WAIT, || app.entity("jiraIssue", "BP-1")).await;
    assert_eq!(app.entity("jiraProject", "NOPE").await.unwrap(), None);

    let busy = http
        .delete(format!("{blueprints}/jiraIssue"))
        .header("authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(
        status(busy),
        409,
        "a blueprint with entities is not deleted"
    );
    let listed: Value = http
        .get(&blueprints)
        .header("authorization", &auth)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["blueprints"].as_array().map(Vec::len), Some(1));
    app.shutdown().await;
}

#[tokio::test]
async fn the_mapping_reloads_on_demand_and_a_bad_version_is_refused() {
    let dir = std::env::temp_dir().join(format!("ocean-e2e-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("port-app-config.yml");
    std::fs::write(&file, JIRA_MAPPING).unwrap();
    let app = TestApp::builder()
        .env("OCEAN__PORT_APP_CONFIG_FILE", file.display().to_string())
        .env("OCEAN__EVENT_WORKERS_COUNT", "1")
        .start()
        .await
        .unwrap();
    let reload = || async {
        let r = reqwest::Client::new()
            .post(format!("{}/admin/mapping/reload", app.url()))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    let title = |key: &'static str, expected: &'static str| {
        let app = &app;
        async move {
            eventually(expected, WAIT, || async move {
                let e = app.entity("jiraIssue", key).await?;
                Ok::<_, ocean_runtime::testing::TestError>(
                    e.filter(|e| e["title"] == expected).map(drop),
                )
            })
            .await;
        }
    };
    app.post(
        "/webhook",
        &issue_event("created", "RL-1", "From summary", "To Do", "Bug"),
    )
    .await
    .unwrap();
    title("RL-1", "From summary").await;

    std::fs::write(
        &file,
        JIRA_MAPPING.replace("title: .fields.summary", "title: .key"),
    )
    .unwrap();
    assert_eq!(
        reload().await,
        (200, json!({"status": "ok", "changed": true}))
    );
    assert_eq!(
        reload().await.1["changed"],
        false,
        "same file, same version"
    );
    app.post(
        "/webhook",
        &issue_event("updated", "RL-1", "ignored", "To Do", "Bug"),
    )
    .await
    .unwrap();
    title("RL-1", "RL-1").await;

    std::fs::write(
        &file,
        JIRA_MAPPING.replace("title: .fields.summary", "title: .fields |"),
    )
    .unwrap();
    let (status, body) = reload().await;
    assert_eq!(status, 422);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("resources[1].port.entity.mappings.title"),
        "{body}"
    );
    app.post(
        "/webhook",
        &issue_event("created", "RL-2", "still new mapping", "To Do", "Bug"),
    )
    .await
    .unwrap();
    title("RL-2", "RL-2").await;
    app.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}
