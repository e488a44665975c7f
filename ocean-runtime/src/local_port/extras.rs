//! `POST /v1/actions`, `POST /v1/blueprints/{bp}/scorecards` and `POST /v1/pages`, with a `GET` of
//! each by identifier: what an integration's first start creates beside its blueprints. They are
//! kept and served back (409 for an identifier that exists), not run or evaluated.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::Shared;
use super::respond::{error, identified, taken, unstored};

/// Stores `body` under `prefix/<identifier>`; `field` is the answer's key (`action`, …).
async fn create(shared: &Shared, prefix: String, field: &'static str, body: &Bytes) -> Response {
    let (body, id) = match identified(body, "invalid_body", field) {
        Ok(found) => found,
        Err(r) => return *r,
    };
    let key = format!("{prefix}/{id}");
    let result = shared
        .store
        .write(|s, changes| {
            if s.extras.contains_key(&key) {
                return Ok(None);
            }
            s.put_extra(&key, body.clone(), changes).map(|()| Some(()))
        })
        .await;
    match result {
        Ok(Ok(Some(()))) => Json(json!({"ok": true, field: body})).into_response(),
        Ok(Ok(None)) => taken(field, &id),
        Ok(Err(e)) => unstored(e),
        Err(e) => unstored(e),
    }
}

fn read(shared: &Shared, key: &str, field: &'static str) -> Response {
    match shared.store.read(|s| s.extras.get(key).cloned()) {
        Some(record) => Json(json!({"ok": true, field: record})).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{field} `{key}` was not found"),
        ),
    }
}

pub(super) async fn create_action(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    create(&shared, "actions".to_owned(), "action", &body).await
}

pub(super) async fn get_action(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Response {
    read(&shared, &format!("actions/{id}"), "action")
}

pub(super) async fn create_scorecard(
    State(shared): State<Arc<Shared>>,
    Path(bp): Path<String>,
    body: Bytes,
) -> Response {
    if shared.store.read(|s| !s.blueprints.contains_key(&bp)) {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("blueprint with identifier `{bp}` was not found"),
        );
    }
    create(&shared, format!("scorecards/{bp}"), "scorecard", &body).await
}

pub(super) async fn get_scorecard(
    State(shared): State<Arc<Shared>>,
    Path((bp, id)): Path<(String, String)>,
) -> Response {
    read(&shared, &format!("scorecards/{bp}/{id}"), "scorecard")
}

pub(super) async fn create_page(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    create(&shared, "pages".to_owned(), "page", &body).await
}

pub(super) async fn get_page(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Response {
    read(&shared, &format!("pages/{id}"), "page")
}
