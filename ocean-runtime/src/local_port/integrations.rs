//! Integration records (`/v1/integration…`): create, read, patch, config, resync state and
//! request, kind examples; the organization and provisioning answers; the paged listing of the
//! entities one integration wrote (`datasource-entities`); and the ingest URLs (taken, dropped).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};

use super::Shared;
use super::respond::{error, parse_body, parse_object, taken, unstored};
use crate::group_commit::StorageError;
use crate::time::now_rfc3339;

pub(super) async fn organization() -> Response {
    Json(json!({"ok": true, "organization": {"id": "org_local", "name": "ocean-rs local", "featureFlags": []}})).into_response()
}

pub(super) async fn provision_enabled() -> Response {
    Json(json!({"ok": true, "integrations": []})).into_response()
}

pub(super) async fn get_integration(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Response {
    match shared.store.read(|s| s.integrations.get(&id).cloned()) {
        Some(record) => Json(json!({"ok": true, "integration": record})).into_response(),
        None => no_integration(&id),
    }
}

/// 404: Port has no integration `id`.
pub(super) fn no_integration(id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("integration `{id}` does not exist"),
    )
}

/// A new integration record, as Port creates one: its Port resources (blueprints…) not yet
/// initialised, and where its logs and metrics go (the built-in Port takes and drops them).
pub(super) fn new_integration(id: &str, base: &str) -> Value {
    let ingest = |what: &str| json!({"ingestUrl": format!("{base}/ingest/{what}/{id}")});
    json!({
        "identifier": id,
        "installationId": id,
        "installationType": "OnPrem",
        "installationAppType": null,
        "version": null,
        "config": {},
        "changelogDestination": {},
        "actionsProcessingEnabled": false,
        "incrementalSyncEnabled": false,
        "processingMode": "dsp",
        "arePortResourcesInitialized": false,
        "logAttributes": ingest("logs"),
        "metricAttributes": ingest("metrics"),
        "ingestAttributes": ingest("data"),
        "createdAt": now_rfc3339(),
    })
}

/// `http://{Host}`, the base URL the client reached the built-in Port at.
pub(super) fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("http://{host}")
}

/// The answer to a write of an integration record: the record as stored, `absent` when the write
/// found nothing to do, 500 when it could not be stored.
fn written(
    result: Result<Result<Option<Value>, String>, StorageError>,
    absent: impl FnOnce() -> Response,
) -> Response {
    match result {
        Ok(Ok(Some(record))) => Json(json!({"ok": true, "integration": record})).into_response(),
        Ok(Ok(None)) => absent(),
        Ok(Err(e)) => unstored(e),
        Err(e) => unstored(e),
    }
}

/// Edits existing integration `id` with `edit` inside the store's write, so concurrent edits of
/// one record do not lose each other (404 when it does not exist).
pub(super) async fn write_integration(
    shared: &Shared,
    id: String,
    edit: impl FnOnce(&mut serde_json::Map<String, Value>),
) -> Response {
    let result = shared
        .store
        .write(|s, changes| {
            let Some(mut record) = s.integrations.get(&id).cloned() else {
                return Ok(None);
            };
            if let Some(obj) = record.as_object_mut() {
                edit(obj);
                obj.insert("updatedAt".to_owned(), Value::String(now_rfc3339()));
            }
            s.put_integration(&id, record.clone(), changes)
                .map(|()| Some(record))
        })
        .await;
    written(result, || no_integration(&id))
}

pub(super) async fn create_integration(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = match parse_body(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let (Some(id), Value::Object(fields)) = (
        body.get("installationId")
            .and_then(Value::as_str)
            .map(str::to_owned),
        body,
    ) else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "`installationId` is required",
        );
    };
    // As Port: creating an identifier that exists is a conflict and changes nothing (two replicas
    // starting at once create one integration). Checked inside the write, so it is atomic.
    let base = base_url(&headers);
    let result = shared
        .store
        .write(|s, changes| {
            if s.integrations.contains_key(&id) {
                return Ok(None);
            }
            let mut record = new_integration(&id, &base);
            if let Some(obj) = record.as_object_mut() {
                obj.extend(fields);
                obj.insert("updatedAt".to_owned(), Value::String(now_rfc3339()));
            }
            s.put_integration(&id, record.clone(), changes)
                .map(|()| Some(record))
        })
        .await;
    written(result, || taken("integration", &id))
}

pub(super) async fn patch_integration(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    match parse_object(&body) {
        Ok(fields) => write_integration(&shared, id, |r| r.extend(fields)).await,
        Err(r) => *r,
    }
}

pub(super) async fn patch_integration_config(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let body = match parse_body(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let Some(config) = body.get("config").cloned() else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "`config` is required",
        );
    };
    write_integration(&shared, id, |r| {
        r.insert("config".to_owned(), config);
    })
    .await
}

/// `PATCH /v1/integration/{id}/resync-state`: the state of the integration's last resync.
pub(super) async fn patch_resync_state(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let mut state = match parse_object(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    state.insert("updatedAt".to_owned(), Value::String(now_rfc3339()));
    write_integration(&shared, id, |r| {
        r.insert("resyncState".to_owned(), Value::Object(state));
    })
    .await
}

/// `GET /v1/integration/{id}/resync-request`: when a resync was last asked for in Port's UI
/// (never, here: the record's creation).
pub(super) async fn resync_request(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Response {
    match shared.store.read(|s| s.integrations.get(&id).cloned()) {
        Some(record) => {
            let at = record
                .pointer("/resyncRequest/updatedAt")
                .or_else(|| record.get("createdAt"))
                .cloned()
                .unwrap_or(Value::Null);
            Json(json!({"ok": true, "request": {"updatedAt": at}})).into_response()
        }
        None => no_integration(&id),
    }
}

/// `POST /v1/integration/{id}/kinds/{kind}/examples`: raw examples of a kind, for Port's mapping
/// editor; the latest ones are kept on the record.
pub(super) async fn kind_examples(
    State(shared): State<Arc<Shared>>,
    Path((id, kind)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let body = match parse_body(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let Some(examples) = body.get("examples").filter(|e| e.is_array()).cloned() else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "`examples` must be an array",
        );
    };
    write_integration(&shared, id, |r| {
        let all = r.entry("kindExamples").or_insert_with(|| json!({}));
        if let Some(all) = all.as_object_mut() {
            all.insert(kind, examples);
        }
    })
    .await
}

/// The logs, metrics and data an integration ships to its record's ingest URLs: taken and dropped.
pub(super) async fn ingest() -> Response {
    Json(json!({"ok": true})).into_response()
}

/// `POST /v1/blueprints/entities/datasource-entities`: the entities whose `$datasource` starts with
/// `datasource_prefix` and ends with `datasource_suffix` (what an integration wrote), optionally
/// only those created `before` a time (a resync's start: what existed before it, which Ocean compares
/// with what the resync produced), `limit` per page (at most 5,000) after cursor `from`.
pub(super) async fn datasource_entities(
    State(shared): State<Arc<Shared>>,
    body: Bytes,
) -> Response {
    let body = match parse_body(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let text = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or("");
    let (prefix, suffix) = (text("datasource_prefix"), text("datasource_suffix"));
    if prefix.is_empty() && suffix.is_empty() {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "`datasource_prefix` or `datasource_suffix` is required",
        );
    }
    let limit = body
        .get("limit")
        .and_then(Value::as_u64)
        .map_or(5000, |l| l.clamp(1, 5000)) as usize;
    let before = match body.get("before") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_str().and_then(crate::time::parse_rfc3339) {
            Some(t) => Some(t),
            None => {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_body",
                    "`before` must be an ISO 8601 time",
                );
            }
        },
    };
    // The cursor is the last entity of the previous page, `<blueprint>/<identifier>`.
    let from = match body.get("from").and_then(Value::as_str) {
        Some(c) => match c.split_once('/') {
            Some((bp, id)) => Some((bp.to_owned(), id.to_owned())),
            None => {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_body",
                    "`from` is not a cursor this Port gave",
                );
            }
        },
        None => None,
    };
    let (entities, next) = shared.store.read(|s| {
        let range = match &from {
            Some(key) => s.entities.range((
                std::ops::Bound::Excluded(key.clone()),
                std::ops::Bound::Unbounded,
            )),
            None => s.entities.range(..),
        };
        let mut out = Vec::new();
        let mut last: Option<&(String, String)> = None;
        let mut next = None;
        for (key, stored) in range {
            let owned =
                stored.datasource.starts_with(prefix) && stored.datasource.ends_with(suffix);
            let stale = before.is_none_or(|before| {
                stored.entity["createdAt"]
                    .as_str()
                    .and_then(crate::time::parse_rfc3339)
                    .is_some_and(|at| at < before)
            });
            if owned && stale {
                if out.len() == limit {
                    next = last.map(|(bp, id)| format!("{bp}/{id}"));
                    break;
                }
                out.push(stored.entity.clone());
                last = Some(key);
            }
        }
        (out, next)
    });
    Json(json!({"ok": true, "entities": entities, "next": next})).into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use axum::http::StatusCode;
    use serde_json::{Value, json};

    use super::super::harness::Harness;

    #[tokio::test]
    async fn an_integration_is_created_once_and_edited_in_place() {
        let port = Harness::new("integrations-create").await;
        let (status, body) = port
            .call("POST", "/v1/integration", Some(json!({"title": "x"})))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["message"], "`installationId` is required");
        let create = json!({"installationId": "jira-1", "installationAppType": "jira"});
        let (status, body) = port
            .call("POST", "/v1/integration", Some(create.clone()))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let record = &body["integration"];
        assert_eq!(record["installationAppType"], "jira");
        assert_eq!(record["arePortResourcesInitialized"], false);
        assert_eq!(
            record["logAttributes"]["ingestUrl"],
            "http://port.test/ingest/logs/jira-1"
        );
        // A second create is a conflict and changes nothing.
        let again = json!({"installationId": "jira-1", "installationAppType": "other"});
        let (status, body) = port.call("POST", "/v1/integration", Some(again)).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(body["error"], "identifier_taken");
        let (status, body) = port
            .call(
                "PATCH",
                "/v1/integration/jira-1",
                Some(json!({"version": "2"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["integration"]["version"], "2");
        let (status, body) = port
            .call(
                "PATCH",
                "/v1/integration/jira-1/config",
                Some(json!({"config": {"resources": []}})),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["integration"]["config"], json!({"resources": []}));
        let (_, body) = port.call("GET", "/v1/integration/jira-1", None).await;
        assert_eq!(body["integration"]["installationAppType"], "jira");
        assert_eq!(body["integration"]["version"], "2");
        let (status, body) = port.call("GET", "/v1/integration/nope", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["message"], "integration `nope` does not exist");
        let (status, _) = port
            .call("PATCH", "/v1/integration/nope", Some(json!({"a": 1})))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = port
            .call("PATCH", "/v1/integration/jira-1/config", Some(json!({})))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    }

    #[tokio::test]
    async fn resync_state_request_and_kind_examples_are_kept_on_the_record() {
        let port = Harness::new("integrations-resync").await;
        let create = json!({"installationId": "i"});
        port.call("POST", "/v1/integration", Some(create)).await;
        let (status, body) = port
            .call(
                "PATCH",
                "/v1/integration/i/resync-state",
                Some(json!({"status": "completed"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let state = &body["integration"]["resyncState"];
        assert_eq!(state["status"], "completed");
        assert!(state["updatedAt"].is_string());
        let (_, body) = port
            .call("GET", "/v1/integration/i/resync-request", None)
            .await;
        let (_, record) = port.call("GET", "/v1/integration/i", None).await;
        assert_eq!(
            body["request"]["updatedAt"],
            record["integration"]["createdAt"]
        );
        let (status, _) = port
            .call(
                "POST",
                "/v1/integration/i/kinds/issue/examples",
                Some(json!({"examples": {"a": 1}})),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        let (status, body) = port
            .call(
                "POST",
                "/v1/integration/i/kinds/issue/examples",
                Some(json!({"examples": [{"key": "A-1"}]})),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body["integration"]["kindExamples"]["issue"],
            json!([{"key": "A-1"}])
        );
    }

    #[tokio::test]
    async fn datasource_entities_pages_through_what_one_integration_wrote() {
        let port = Harness::new("integrations-datasource").await;
        let entities: Vec<Value> = (0..5)
            .map(|i| json!({"identifier": format!("e{i}"), "properties": {}}))
            .collect();
        let (status, _) = port
            .call(
                "POST",
                "/v1/blueprints/thing/entities/bulk",
                Some(json!({ "entities": entities })),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        // One entity written by someone else.
        let (status, _) = port
            .raw(
                "POST",
                "/v1/blueprints/thing/entities",
                Some(json!({"identifier": "other"})),
                &[
                    ("authorization", &format!("Bearer {}", port_token(&port))),
                    ("user-agent", "someone-else/1"),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let page = |from: Option<&str>| {
            let mut ask = json!({"datasource_prefix": "port-ocean/jira/", "limit": 2});
            if let Some(from) = from {
                ask["from"] = json!(from);
            }
            port.call(
                "POST",
                "/v1/blueprints/entities/datasource-entities",
                Some(ask),
            )
        };
        let mut seen = Vec::new();
        let mut from: Option<String> = None;
        for _ in 0..5 {
            let (status, body) = page(from.as_deref()).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            for e in body["entities"].as_array().unwrap() {
                seen.push(e["identifier"].as_str().unwrap().to_owned());
            }
            match body["next"].as_str() {
                Some(next) => from = Some(next.to_owned()),
                None => break,
            }
        }
        assert_eq!(seen, ["e0", "e1", "e2", "e3", "e4"]);
        // Nothing was created before the epoch.
        let (_, body) = port
            .call(
                "POST",
                "/v1/blueprints/entities/datasource-entities",
                Some(json!({"datasource_suffix": "exporter", "before": "1970-01-02T00:00:00Z"})),
            )
            .await;
        assert_eq!(body["entities"], json!([]));
        for (ask, why) in [
            (
                json!({}),
                "`datasource_prefix` or `datasource_suffix` is required",
            ),
            (
                json!({"datasource_prefix": "p", "before": "yesterday"}),
                "`before` must be an ISO 8601 time",
            ),
            (
                json!({"datasource_prefix": "p", "from": "nocursor"}),
                "`from` is not a cursor this Port gave",
            ),
        ] {
            let (status, body) = port
                .call(
                    "POST",
                    "/v1/blueprints/entities/datasource-entities",
                    Some(ask),
                )
                .await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
            assert_eq!(body["message"], why);
        }
    }

    fn port_token(port: &Harness) -> String {
        port.shared
            .tokens
            .lock()
            .unwrap()
            .keys()
            .next()
            .cloned()
            .unwrap()
    }
}
