//! The authoring surface at run time: the DESIGN.md §1 example against an upstream on loopback,
//! and the start-up checks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query};
use ocean_runtime::prelude::*;
use ocean_runtime::testing::{TestApp, eventually};

mod common;
use common::WAIT;

ocean_runtime::kinds!["issue"];

// ---- The DESIGN.md §1 example, verbatim apart from the path ----

#[derive(Deserialize)]
struct IssueSelector {
    jql: Option<String>,
}

#[derive(Deserialize)]
struct JiraConfig {
    jira_url: String,
}

/// A small Jira client: `GET {jira_url}/rest/api/3/issue/{key}?jql=…`.
struct JiraClient {
    http: reqwest::Client,
    base: String,
}

impl JiraClient {
    async fn from_config(config: Config<JiraConfig>) -> Result<Self, String> {
        if !config.jira_url.starts_with("http://") {
            return Err(format!(
                "jira_url must be an http:// URL, not {:?}",
                config.jira_url
            ));
        }
        Ok(Self {
            http: reqwest::Client::new(),
            base: config.jira_url.trim_end_matches('/').to_owned(),
        })
    }

    async fn issue(&self, key: &str, jql: Option<&str>) -> Result<Option<Value>, ProcessError> {
        let mut request = self
            .http
            .get(format!("{}/rest/api/3/issue/{key}", self.base));
        if let Some(jql) = jql {
            request = request.query(&[("jql", jql)]);
        }
        let response = request.send().await?;
        match response.status().as_u16() {
            404 => Ok(None),
            200 => Ok(Some(response.json().await?)),
            status => Err(ProcessError::from_status(status, "Jira answered")),
        }
    }
}

#[webhook_processor(
    path = "/design",
    kinds = ["issue"],
    matches = r#".webhookEvent | startswith("jira:issue_")"#,
    group = ".issue.key",
)]
async fn issue_events(
    event: &WebhookEvent,
    selector: Selector<IssueSelector>,
    jira: State<JiraClient>,
) -> Result<RawResults, ProcessError> {
    let key = event.str_at("/issue/key")?;
    if event.payload()["webhookEvent"] == "jira:issue_deleted" {
        return Ok(RawResults::deleted([event.payload()["issue"].clone()]));
    }
    Ok(match jira.issue(key, selector.jql.as_deref()).await? {
        Some(issue) => RawResults::updated([issue]),
        None => RawResults::deleted([event.payload()["issue"].clone()]),
    })
}

const DESIGN_MAPPING: &str = r#"
resources:
  - kind: issue
    selector:
      query: 'true'
      jql: 'project = PROJ'
    port:
      entity:
        mappings:
          identifier: .key
          title: .fields.summary
          blueprint: '"jiraIssue"'
          properties:
            status: .fields.status.name
"#;

/// A Jira emulator on loopback: the issues it holds and the `jql` each request carried.
#[derive(Clone, Default)]
struct Upstream {
    issues: Arc<Mutex<HashMap<String, Value>>>,
    jql_seen: Arc<Mutex<Vec<String>>>,
}

impl Upstream {
    async fn start(&self) -> String {
        let state = self.clone();
        let app = axum::Router::new().route(
            "/rest/api/3/issue/{key}",
            axum::routing::get(
                move |Path(key): Path<String>, Query(q): Query<HashMap<String, String>>| {
                    let state = state.clone();
                    async move {
                        if let Some(jql) = q.get("jql") {
                            state.jql_seen.lock().unwrap().push(jql.clone());
                        }
                        match state.issues.lock().unwrap().get(&key) {
                            Some(issue) => axum::Json(issue.clone()).into_response(),
                            None => axum::http::StatusCode::NOT_FOUND.into_response(),
                        }
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }
}

use axum::response::IntoResponse;

fn design_app(jira_url: Option<&str>) -> ocean_runtime::testing::TestAppBuilder {
    let mut b = TestApp::builder()
        .paths(&["/design"])
        .mapping(DESIGN_MAPPING)
        .state_init(ocean_runtime::state_init!(JiraClient::from_config));
    if let Some(url) = jira_url {
        b = b.env("OCEAN__INTEGRATION__CONFIG__JIRA_URL", url);
    }
    b
}

#[tokio::test]
async fn design_example_fetches_the_latest_issue_with_its_typed_selector_and_state() {
    let upstream = Upstream::default();
    upstream.issues.lock().unwrap().insert(
        "PROJ-7".into(),
        json!({"key": "PROJ-7", "fields": {"summary": "Fresh title", "status": {"name": "Done"}}}),
    );
    let url = upstream.start().await;
    let app = design_app(Some(&url)).start().await.unwrap();

    let stale = json!({"webhookEvent": "jira:issue_updated",
                       "issue": {"key": "PROJ-7", "fields": {"summary": "stale"}}});
    let (status, _) = app.post("/design", &stale).await.unwrap();
    assert_eq!(status, 200);
    let entity = eventually("PROJ-7 from upstream", WAIT, || async {
        app.entity("jiraIssue", "PROJ-7").await
    })
    .await;
    assert_eq!(
        entity["title"], "Fresh title",
        "fetched, not the stale payload"
    );
    assert_eq!(entity["properties"]["status"], "Done");
    assert_eq!(
        upstream.jql_seen.lock().unwrap().as_slice(),
        ["project = PROJ"],
        "the selector's jql reached the handler"
    );

    upstream.issues.lock().unwrap().clear();
    app.post("/design", &stale).await.unwrap();
    eventually("PROJ-7 gone once upstream lost it", WAIT, || async {
        app.entity("jiraIssue", "PROJ-7")
            .await
            .map(|e| e.is_none().then_some(()))
    })
    .await;
    app.shutdown().await;
}

#[tokio::test]
async fn start_up_names_what_is_missing() {
    let no_var = design_app(None).start().await.unwrap_err().to_string();
    assert!(
        no_var.starts_with("OCEAN__INTEGRATION__CONFIG__JIRA_URL must be set"),
        "{no_var}"
    );

    let bad_state = design_app(Some("ftp://jira"))
        .start()
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        bad_state,
        "the integration's state could not be built: jira_url must be an http:// URL, not \"ftp://jira\""
    );

    let no_state = TestApp::builder()
        .paths(&["/design"])
        .mapping(DESIGN_MAPPING)
        .env("OCEAN__INTEGRATION__CONFIG__JIRA_URL", "http://127.0.0.1:9")
        .start()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        no_state.starts_with("processor `issue_events` takes `State<authoring::JiraClient>`"),
        "{no_state}"
    );
    assert!(
        no_state.contains("main!(state = path::to_fn)"),
        "{no_state}"
    );
}

#[tokio::test]
async fn a_mapping_whose_selector_does_not_fit_the_handler_is_not_put_in_force() {
    let app = design_app(Some("http://127.0.0.1:9"))
        .mapping(DESIGN_MAPPING.replace("'project = PROJ'", "42"))
        .start()
        .await
        .unwrap();
    let ready = reqwest::get(format!("{}/health/ready", app.url()))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503, "no mapping in force");
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["reason"], "no mapping is loaded yet");
    app.shutdown().await;
}
