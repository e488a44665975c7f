//! `GET/POST /v1/blueprints`, `GET/PATCH/DELETE /v1/blueprints/{id}`. Once a blueprint exists,
//! entities of blueprints that do not are refused (404), as Port does.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Shared;
use super::respond::{error, identified, parse_object, taken, unstored};
use crate::group_commit::StorageError;
use crate::time::now_rfc3339;

fn not_found(id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("blueprint with identifier `{id}` was not found"),
    )
}

fn stored(result: Result<Result<Response, String>, StorageError>) -> Response {
    match result {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => unstored(e),
        Err(e) => unstored(e),
    }
}

pub(super) async fn list(State(shared): State<Arc<Shared>>) -> Response {
    let all: Vec<Value> = shared
        .store
        .read(|s| s.blueprints.values().cloned().collect());
    Json(json!({"ok": true, "blueprints": all})).into_response()
}

pub(super) async fn get_one(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    match shared.store.read(|s| s.blueprints.get(&id).cloned()) {
        Some(bp) => Json(json!({"ok": true, "blueprint": bp})).into_response(),
        None => not_found(&id),
    }
}

pub(super) async fn create(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let (mut body, id) = match identified(&body, "invalid_blueprint", "blueprint") {
        Ok(found) => found,
        Err(r) => return *r,
    };
    if let Some(obj) = body.as_object_mut() {
        let now = Value::String(now_rfc3339());
        obj.insert("createdAt".to_owned(), now.clone());
        obj.insert("updatedAt".to_owned(), now);
    }
    stored(
        shared
            .store
            .write(|s, changes| {
                if s.blueprints.contains_key(&id) {
                    return Ok(taken("blueprint", &id));
                }
                s.put_blueprint(&id, body.clone(), changes)?;
                Ok(Json(json!({"ok": true, "blueprint": body})).into_response())
            })
            .await,
    )
}

pub(super) async fn patch(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let patch = match parse_object(&body) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    stored(
        shared
            .store
            .write(|s, changes| {
                let Some(mut bp) = s.blueprints.get(&id).cloned() else {
                    return Ok(not_found(&id));
                };
                if let Some(obj) = bp.as_object_mut() {
                    obj.extend(patch);
                    obj.insert("identifier".to_owned(), Value::String(id.clone()));
                    obj.insert("updatedAt".to_owned(), Value::String(now_rfc3339()));
                }
                s.put_blueprint(&id, bp.clone(), changes)?;
                Ok(Json(json!({"ok": true, "blueprint": bp})).into_response())
            })
            .await,
    )
}

pub(super) async fn delete(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let result = shared
        .store
        .write(|s, changes| {
            if s.entities_of(&id).next().is_some() {
                return Err(true);
            }
            Ok(s.delete_blueprint(&id, changes))
        })
        .await;
    match result {
        Ok(Ok(true)) => Json(json!({"ok": true})).into_response(),
        Ok(Ok(false)) => not_found(&id),
        Ok(Err(_)) => error(
            StatusCode::CONFLICT,
            "has_entities",
            format!("blueprint `{id}` still has entities; delete them first"),
        ),
        Err(e) => unstored(e),
    }
}
