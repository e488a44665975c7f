//! Entities: bulk upsert (207 with the refused ones), single upsert, read, list, delete one, bulk
//! delete, and search.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};

use super::Shared;
use super::respond::{datasource, error, flag, parse_body, unstored};
use super::search::{Subject, matches};
use super::store::EntityRefusal;

pub(super) fn refusal_json(identifier: &Value, index: usize, r: &EntityRefusal) -> Value {
    json!({"identifier": identifier, "index": index, "statusCode": r.status, "error": r.error, "message": r.message})
}

pub(super) async fn bulk_upsert(
    State(shared): State<Arc<Shared>>,
    Path(blueprint): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut body = match parse_body(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let Some(Value::Array(entities)) = body.get_mut("entities").map(Value::take) else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "`entities` must be an array",
        );
    };
    if entities.len() > crate::port::UPSERT_BATCH_MAX {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "too_many_entities",
            format!(
                "at most {} entities per request",
                crate::port::UPSERT_BATCH_MAX
            ),
        );
    }
    let merge = flag(&query, "merge", false);
    let create_missing = flag(&query, "create_missing_related_entities", false);
    let source = datasource(&headers);
    let result = shared
        .store
        .write(|s, changes| {
            let mut ok = Vec::new();
            let mut errors = Vec::new();
            for (index, entity) in entities.iter().enumerate() {
                match s.upsert_with(&blueprint, entity, merge, create_missing, &source, changes) {
                    Ok((identifier, created)) => ok.push(
                        json!({"identifier": identifier, "index": index, "created": created}),
                    ),
                    Err(r) => {
                        let id = entity.get("identifier").cloned().unwrap_or(Value::Null);
                        let id = if id.is_string() {
                            id
                        } else {
                            Value::String("unknown".to_owned())
                        };
                        errors.push(refusal_json(&id, index, &r));
                    }
                }
            }
            (ok, errors)
        })
        .await;
    match result {
        Ok((ok, errors)) => {
            let status = if errors.is_empty() {
                StatusCode::OK
            } else {
                StatusCode::MULTI_STATUS
            };
            (
                status,
                Json(json!({"ok": true, "entities": ok, "errors": errors})),
            )
                .into_response()
        }
        Err(e) => unstored(e),
    }
}

/// 404: blueprint `blueprint` has no entity `id`.
fn no_entity(blueprint: &str, id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("entity `{id}` of blueprint `{blueprint}` does not exist"),
    )
}

pub(super) async fn single_upsert(
    State(shared): State<Arc<Shared>>,
    Path(blueprint): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let entity = match parse_body(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let merge = flag(&query, "merge", false);
    let create_missing = flag(&query, "create_missing_related_entities", false);
    let source = datasource(&headers);
    let result = shared
        .store
        .write(|s, changes| {
            s.upsert_with(&blueprint, &entity, merge, create_missing, &source, changes)
                .map(|(id, _)| {
                    s.entities
                        .get(&(blueprint.clone(), id))
                        .map(|st| st.entity.clone())
                })
        })
        .await;
    match result {
        Ok(Ok(entity)) => Json(json!({"ok": true, "entity": entity})).into_response(),
        Ok(Err(r)) => error(
            StatusCode::from_u16(r.status).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY),
            r.error,
            r.message,
        ),
        Err(e) => unstored(e),
    }
}

pub(super) async fn list_entities(
    State(shared): State<Arc<Shared>>,
    Path(blueprint): Path<String>,
) -> Response {
    let entities: Vec<Value> = shared.store.read(|s| {
        s.entities_of(&blueprint)
            .map(|(_, st)| st.entity.clone())
            .collect()
    });
    Json(json!({"ok": true, "entities": entities})).into_response()
}

pub(super) async fn get_entity(
    State(shared): State<Arc<Shared>>,
    Path((blueprint, id)): Path<(String, String)>,
) -> Response {
    match shared.store.read(|s| {
        s.entities
            .get(&(blueprint.clone(), id.clone()))
            .map(|st| st.entity.clone())
    }) {
        Some(entity) => Json(json!({"ok": true, "entity": entity})).into_response(),
        None => no_entity(&blueprint, &id),
    }
}

pub(super) async fn delete_entity(
    State(shared): State<Arc<Shared>>,
    Path((blueprint, id)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let dependents = flag(&query, "delete_dependents", false);
    let ids = [id.clone()];
    match shared
        .store
        .write(|s, changes| s.delete_many(&blueprint, &ids, dependents, changes))
        .await
    {
        Ok((deleted, _)) if !deleted.is_empty() => Json(json!({"ok": true})).into_response(),
        Ok((_, refused)) => match refused.into_iter().next() {
            Some((_, r)) => error(
                StatusCode::from_u16(r.status).unwrap_or(StatusCode::CONFLICT),
                r.error,
                r.message,
            ),
            None => no_entity(&blueprint, &id),
        },
        Err(e) => unstored(e),
    }
}

pub(super) async fn bulk_delete(
    State(shared): State<Arc<Shared>>,
    Path(blueprint): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let dependents = flag(&query, "delete_dependents", false);
    let body = match parse_body(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let Some(ids) = body.get("entities").and_then(Value::as_array) else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "`entities` must be an array of identifiers",
        );
    };
    let ids: Vec<String> = ids
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    let result = shared
        .store
        .write(|s, changes| s.delete_many(&blueprint, &ids, dependents, changes))
        .await;
    match result {
        Ok((deleted, refused)) => {
            let errors: Vec<Value> = refused
                .iter()
                .filter_map(|(id, r)| {
                    let index = ids.iter().position(|i| i == id)?;
                    Some(refusal_json(&Value::String(id.clone()), index, r))
                })
                .collect();
            Json(json!({"ok": true, "deletedEntities": deleted, "errors": errors})).into_response()
        }
        Err(e) => unstored(e),
    }
}

pub(super) async fn search_entities(
    State(shared): State<Arc<Shared>>,
    request: Request,
) -> Response {
    let includes: Vec<String> = request
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.strip_prefix("include="))
        .map(str::to_owned)
        .collect();
    let body = match axum::body::to_bytes(request.into_body(), 16 * 1024 * 1024).await {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_body", e.to_string()),
    };
    let query = match parse_body(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let found: Result<Vec<Value>, String> = shared.store.read(|s| {
        let mut out = Vec::new();
        for stored in s.entities.values() {
            if matches(
                &query,
                &Subject {
                    entity: &stored.entity,
                    datasource: &stored.datasource,
                },
            )? {
                out.push(stored.entity.clone());
            }
        }
        Ok(out)
    });
    match found {
        Ok(entities) => {
            let entities: Vec<Value> = if includes.is_empty() {
                entities
            } else {
                entities
                    .into_iter()
                    .map(|e| {
                        includes
                            .iter()
                            .filter_map(|k| e.get(k).map(|v| (k.clone(), v.clone())))
                            .collect()
                    })
                    .collect()
            };
            Json(json!({"ok": true, "entities": entities})).into_response()
        }
        Err(e) => error(StatusCode::BAD_REQUEST, "invalid_search_query", e),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use axum::http::StatusCode;
    use serde_json::{Value, json};

    use super::super::harness::Harness;
    use crate::port::UPSERT_BATCH_MAX;

    const BULK: &str = "/v1/blueprints/service/entities/bulk";

    #[tokio::test]
    async fn a_bulk_upsert_answers_207_with_the_refused_ones() {
        let port = Harness::new("entities-bulk").await;
        let (status, body) = port.call("POST", BULK, Some(json!({"entities": {}}))).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["message"], "`entities` must be an array");
        let too_many: Vec<Value> = (0..=UPSERT_BATCH_MAX)
            .map(|i| json!({"identifier": format!("s{i}")}))
            .collect();
        let (status, body) = port
            .call("POST", BULK, Some(json!({ "entities": too_many })))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["error"], "too_many_entities");
        let mixed = json!({"entities": [
            {"identifier": "api", "properties": {"tier": 1}},
            {"identifier": "bad id!", "properties": {}},
            {"properties": {}},
        ]});
        let (status, body) = port.call("POST", BULK, Some(mixed)).await;
        assert_eq!(status, StatusCode::MULTI_STATUS, "{body}");
        assert_eq!(
            body["entities"],
            json!([{"identifier": "api", "index": 0, "created": true}])
        );
        let errors = body["errors"].as_array().unwrap();
        assert_eq!(errors.len(), 2);
        assert_eq!(
            (&errors[0]["identifier"], &errors[0]["index"]),
            (&json!("bad id!"), &json!(1))
        );
        assert_eq!(
            (&errors[1]["identifier"], &errors[1]["index"]),
            (&json!("unknown"), &json!(2))
        );
        // Again: updated, not created; the entity carries its writer's datasource.
        let again = json!({"entities": [{"identifier": "api", "properties": {"tier": 2}}]});
        let (status, body) = port.call("POST", BULK, Some(again)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["entities"][0]["created"], false);
        let (_, body) = port
            .call("GET", "/v1/blueprints/service/entities/api", None)
            .await;
        assert_eq!(body["entity"]["properties"]["tier"], 2);
        let stored = port.shared.store.read(|s| {
            s.entities
                .get(&("service".to_owned(), "api".to_owned()))
                .map(|st| st.datasource.clone())
        });
        assert_eq!(stored.as_deref(), Some(super::super::harness::AGENT));
    }

    #[tokio::test]
    async fn one_entity_is_written_read_listed_and_deleted() {
        let port = Harness::new("entities-one").await;
        let url = "/v1/blueprints/service/entities";
        let (status, body) = port
            .call(
                "POST",
                url,
                Some(json!({"identifier": "web", "title": "Web"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["entity"]["title"], "Web");
        let (status, body) = port
            .call("POST", url, Some(json!({"identifier": ""})))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let (_, body) = port.call("GET", url, None).await;
        assert_eq!(body["entities"].as_array().map(Vec::len), Some(1));
        let (status, _) = port.call("DELETE", &format!("{url}/web"), None).await;
        assert_eq!(status, StatusCode::OK);
        let (status, body) = port.call("GET", &format!("{url}/web"), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(
            body["message"],
            "entity `web` of blueprint `service` does not exist"
        );
        let (status, _) = port.call("DELETE", &format!("{url}/web"), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn a_bulk_delete_removes_the_listed_identifiers() {
        let port = Harness::new("entities-bulk-delete").await;
        let entities: Vec<Value> = ["a", "b", "c"]
            .iter()
            .map(|id| json!({ "identifier": id }))
            .collect();
        port.call("POST", BULK, Some(json!({ "entities": entities })))
            .await;
        let delete = "/v1/blueprints/service/bulk/entities/delete";
        let (status, _) = port
            .call("POST", delete, Some(json!({"entities": "a"})))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        let (status, body) = port
            .call("POST", delete, Some(json!({"entities": ["a", "c", "zz"]})))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["deletedEntities"], json!(["a", "c"]));
        let (_, body) = port
            .call("GET", "/v1/blueprints/service/entities", None)
            .await;
        assert_eq!(body["entities"][0]["identifier"], "b");
        assert_eq!(body["entities"].as_array().map(Vec::len), Some(1));
    }

    #[tokio::test]
    async fn search_filters_and_projects() {
        let port = Harness::new("entities-search").await;
        let entities = json!({"entities": [
            {"identifier": "a", "title": "A", "properties": {"tier": 1}},
            {"identifier": "b", "title": "B", "properties": {"tier": 2}},
        ]});
        port.call("POST", BULK, Some(entities)).await;
        let query = json!({"combinator": "and", "rules": [
            {"property": "tier", "operator": "=", "value": 2},
        ]});
        let (status, body) = port
            .call(
                "POST",
                "/v1/entities/search?include=identifier&include=title",
                Some(query),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["entities"], json!([{"identifier": "b", "title": "B"}]));
        let (status, body) = port
            .call(
                "POST",
                "/v1/entities/search",
                Some(json!({"rules": [{"operator": "~~"}]})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"], "invalid_search_query");
    }
}
