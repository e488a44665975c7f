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

/// Records by (`issue` or `project`, key).
type Shared = Arc<Mutex<HashMap<(String, String), Value>>>;

/// The record types the demo serves.
const TYPES: [&str; 2] = ["issue", "project"];

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

fn lock(records: &Shared) -> std::sync::MutexGuard<'_, HashMap<(String, String), Value>> {
    records.lock().unwrap_or_else(PoisonError::into_inner)
}

fn unknown(what: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"errorMessages": [format!("no resource type {what}")]})),
    )
        .into_response()
}

async fn read(
    State(records): State<Shared>,
    Path((what, key)): Path<(String, String)>,
) -> Response {
    if !TYPES.contains(&what.as_str()) {
        return unknown(&what);
    }
    match lock(&records).get(&(what.clone(), key.clone())) {
        Some(record) => Json(record.clone()).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"errorMessages": [format!("{what} {key} does not exist")]})),
        )
            .into_response(),
    }
}

/// Replaces the record with the body (e.g. `{"fields": {...}}`); the key comes from the path.
async fn write(
    State(records): State<Shared>,
    Path((what, key)): Path<(String, String)>,
    Json(mut record): Json<Value>,
) -> Response {
    if !TYPES.contains(&what.as_str()) {
        return unknown(&what);
    }
    if let Some(obj) = record.as_object_mut() {
        obj.insert("key".to_owned(), Value::String(key.clone()));
    }
    lock(&records).insert((what, key), record);
    StatusCode::NO_CONTENT.into_response()
}

async fn remove(
    State(records): State<Shared>,
    Path((what, key)): Path<(String, String)>,
) -> StatusCode {
    match lock(&records).remove(&(what, key)) {
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
                "/rest/api/2/{what}/{key}",
                get(read).put(write).delete(remove),
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
            for what in TYPES {
                demo.put(what, event[what].clone());
            }
        }
        Ok(demo)
    }

    /// The base URL (`http://127.0.0.1:…`).
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stores a record of type `what` (`issue` or `project`) under its `key`, as if someone edited
    /// it in Jira; a record without a key is ignored.
    pub fn put(&self, what: &str, record: Value) {
        if let Some(key) = record["key"].as_str().map(str::to_owned) {
            lock(&self.records).insert((what.to_owned(), key), record);
        }
    }
}
