//! A small stand-in for Jira's REST API, started by the example when no `JIRA_URL` is configured
//! so that it runs out of the box: `GET`, `PUT` and `DELETE` on `/rest/api/2/issue/{key}` and
//! `/rest/api/2/project/{key}`, in memory, seeded with the issue and project of `samples/`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

#[derive(Default)]
struct Records {
    issues: HashMap<String, Value>,
    projects: HashMap<String, Value>,
}

type Shared = Arc<Mutex<Records>>;

/// A running demo upstream; it stops when dropped.
pub struct DemoJira {
    addr: SocketAddr,
    records: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for DemoJira {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoJira")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Drop for DemoJira {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(records: &Shared) -> std::sync::MutexGuard<'_, Records> {
    records.lock().unwrap_or_else(PoisonError::into_inner)
}

fn not_found(what: &str, key: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"errorMessages": [format!("{what} {key} does not exist")]})),
    )
        .into_response()
}

async fn get_issue(State(records): State<Shared>, Path(key): Path<String>) -> Response {
    match lock(&records).issues.get(&key) {
        Some(issue) => Json(issue.clone()).into_response(),
        None => not_found("issue", &key),
    }
}

/// Replaces the issue with the body (`{"fields": {...}}`); the key comes from the path.
async fn put_issue(
    State(records): State<Shared>,
    Path(key): Path<String>,
    Json(mut issue): Json<Value>,
) -> StatusCode {
    if let Some(obj) = issue.as_object_mut() {
        obj.insert("key".to_owned(), Value::String(key.clone()));
    }
    lock(&records).issues.insert(key, issue);
    StatusCode::NO_CONTENT
}

async fn delete_issue(State(records): State<Shared>, Path(key): Path<String>) -> StatusCode {
    match lock(&records).issues.remove(&key) {
        Some(_) => StatusCode::NO_CONTENT,
        None => StatusCode::NOT_FOUND,
    }
}

async fn get_project(State(records): State<Shared>, Path(key): Path<String>) -> Response {
    match lock(&records).projects.get(&key) {
        Some(project) => Json(project.clone()).into_response(),
        None => not_found("project", &key),
    }
}

async fn put_project(
    State(records): State<Shared>,
    Path(key): Path<String>,
    Json(mut project): Json<Value>,
) -> StatusCode {
    if let Some(obj) = project.as_object_mut() {
        obj.insert("key".to_owned(), Value::String(key.clone()));
    }
    lock(&records).projects.insert(key, project);
    StatusCode::NO_CONTENT
}

async fn delete_project(State(records): State<Shared>, Path(key): Path<String>) -> StatusCode {
    match lock(&records).projects.remove(&key) {
        Some(_) => StatusCode::NO_CONTENT,
        None => StatusCode::NOT_FOUND,
    }
}

impl DemoJira {
    /// Starts an empty demo upstream on a free loopback port.
    ///
    /// # Errors
    /// No loopback port could be bound.
    pub async fn empty() -> std::io::Result<Self> {
        let records: Shared = Arc::default();
        let app = axum::Router::new()
            .route(
                "/rest/api/2/issue/{key}",
                get(get_issue).put(put_issue).delete(delete_issue),
            )
            .route(
                "/rest/api/2/project/{key}",
                get(get_project).put(put_project).delete(delete_project),
            )
            .with_state(Arc::clone(&records));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "the demo Jira stopped");
            }
        });
        Ok(Self {
            addr,
            records,
            task,
        })
    }

    /// Starts the demo upstream holding the issue and the project of the example's samples.
    ///
    /// # Errors
    /// No loopback port could be bound.
    pub async fn start() -> std::io::Result<Self> {
        let demo = Self::empty().await?;
        let samples = [
            include_str!("../samples/issue_created.json"),
            include_str!("../samples/project_created.json"),
        ];
        for sample in samples {
            let Ok(event) = serde_json::from_str::<Value>(sample) else {
                continue;
            };
            if event["issue"].is_object() {
                demo.put_issue(event["issue"].clone());
            }
            if event["project"].is_object() {
                demo.put_project(event["project"].clone());
            }
        }
        Ok(demo)
    }

    /// The base URL (`http://127.0.0.1:…`).
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stores `issue` (which has its `key`), as if someone edited it in Jira.
    pub fn put_issue(&self, issue: Value) {
        if let Some(key) = issue["key"].as_str().map(str::to_owned) {
            lock(&self.records).issues.insert(key, issue);
        }
    }

    /// Stores `project` (which has its `key`).
    pub fn put_project(&self, project: Value) {
        if let Some(key) = project["key"].as_str().map(str::to_owned) {
            lock(&self.records).projects.insert(key, project);
        }
    }
}
