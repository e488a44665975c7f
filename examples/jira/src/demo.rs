//! A small stand-in for Jira's REST API, started by the example when no `JIRA_URL` is configured
//! so that it runs out of the box: `GET`, `PUT` and `DELETE` on `/rest/api/2/issue/{key}` and
//! `/rest/api/2/project/{key}`, in memory, seeded with the issue and project of `samples/`.
//!
//! It can play a slow, flaky Jira ([`DemoOptions`]): a latency added to every `GET`, and a share of
//! `GET`s answered `429 Too Many Requests` with `Retry-After: 1`, spread evenly (no randomness, so
//! runs compare). It counts the `GET`s of each record, for benchmarks and tests.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

/// Records by (`issue` or `project`, key).
type Records = Arc<Mutex<HashMap<(String, String), Value>>>;

/// How the demo upstream behaves.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DemoOptions {
    /// Added before every `GET` is answered
    /// (`OCEAN__INTEGRATION__CONFIG__DEMO_LATENCY_MS`).
    pub latency: Duration,
    /// Share of `GET`s answered 429 with `Retry-After: 1`, from 0 to 1
    /// (`OCEAN__INTEGRATION__CONFIG__DEMO_ERROR_RATE`).
    pub error_rate: f64,
}

/// What the handlers share.
#[derive(Default)]
struct Shared {
    records: Records,
    options: DemoOptions,
    /// `GET`s so far, for spreading the errors.
    gets: AtomicU64,
    /// `GET`s by (`issue` or `project`, key), refused ones included.
    fetches: Mutex<HashMap<(String, String), u64>>,
}

type Handle = Arc<Shared>;

/// The record types the demo serves.
const TYPES: [&str; 2] = ["issue", "project"];

/// A running demo upstream; it stops when dropped.
pub struct DemoJira {
    addr: SocketAddr,
    shared: Handle,
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn unknown(what: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"errorMessages": [format!("no resource type {what}")]})),
    )
        .into_response()
}

async fn read(State(shared): State<Handle>, Path((what, key)): Path<(String, String)>) -> Response {
    if !TYPES.contains(&what.as_str()) {
        return unknown(&what);
    }
    *lock(&shared.fetches)
        .entry((what.clone(), key.clone()))
        .or_default() += 1;
    if !shared.options.latency.is_zero() {
        tokio::time::sleep(shared.options.latency).await;
    }
    // The n-th GET is refused when the running count of refusals `floor(n * rate)` goes up.
    let n = shared.gets.fetch_add(1, Ordering::Relaxed) + 1;
    let rate = shared.options.error_rate;
    if rate > 0.0 && ((n as f64) * rate).floor() > (((n - 1) as f64) * rate).floor() {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            Json(json!({"errorMessages": ["rate limit exceeded (demo)"]})),
        )
            .into_response();
    }
    match lock(&shared.records).get(&(what.clone(), key.clone())) {
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
    State(shared): State<Handle>,
    Path((what, key)): Path<(String, String)>,
    Json(mut record): Json<Value>,
) -> Response {
    if !TYPES.contains(&what.as_str()) {
        return unknown(&what);
    }
    if let Some(obj) = record.as_object_mut() {
        obj.insert("key".to_owned(), Value::String(key.clone()));
    }
    lock(&shared.records).insert((what, key), record);
    StatusCode::NO_CONTENT.into_response()
}

async fn remove(
    State(shared): State<Handle>,
    Path((what, key)): Path<(String, String)>,
) -> StatusCode {
    match lock(&shared.records).remove(&(what, key)) {
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
        Self::empty_with(DemoOptions::default()).await
    }

    /// Starts an empty demo upstream that behaves as `options` say.
    ///
    /// # Errors
    /// No loopback port could be bound.
    pub async fn empty_with(options: DemoOptions) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            options,
            ..Shared::default()
        });
        let app = axum::Router::new()
            .route(
                "/rest/api/2/{what}/{key}",
                get(read).put(write).delete(remove),
            )
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "the demo Jira stopped");
            }
        });
        Ok(Self { addr, shared, task })
    }

    /// Starts the demo upstream holding the issue and the project of the example's samples.
    ///
    /// # Errors
    /// No loopback port could be bound.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_with(DemoOptions::default()).await
    }

    /// [`DemoJira::start`], behaving as `options` say.
    ///
    /// # Errors
    /// No loopback port could be bound.
    pub async fn start_with(options: DemoOptions) -> std::io::Result<Self> {
        let demo = Self::empty_with(options).await?;
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
            lock(&self.shared.records).insert((what.to_owned(), key), record);
        }
    }

    /// How many `GET`s record `key` of type `what` has had (refused ones included).
    #[must_use]
    pub fn fetches(&self, what: &str, key: &str) -> u64 {
        lock(&self.shared.fetches)
            .get(&(what.to_owned(), key.to_owned()))
            .copied()
            .unwrap_or(0)
    }
}
