//! The built-in local Port: Port's REST API as Ocean uses it, served over real HTTP, persisted in a
//! local data folder.
//!
//! It is the embedded default (a binary with no Port credentials talks to it) and the target of the
//! end-to-end tests. It serves the endpoints of the reference's minimal emulator list — token,
//! integration get/create/patch, provision-enabled, organization, bulk upsert with 207 partial
//! answers, search (`=`, `in`, `contains`, … on `$identifier`, `$blueprint`, `$datasource` and
//! properties, nested `and`/`or`), bulk delete — plus reading entities back
//! (`GET /v1/blueprints/{bp}/entities[/{id}]`) and what a Python Ocean integration calls besides:
//! resync state and resync request, kind examples, the paged listing of the entities one
//! integration wrote (`datasource-entities`), and ingest URLs for its logs and metrics (taken and
//! dropped). An entity's `$datasource` is the first word of the
//! writer's `User-Agent`, as Port derives it.

mod blueprints;
mod extras;
mod page;
mod search;
mod store;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::PortCredentials;
use crate::time::now_rfc3339;
use search::{Subject, matches};
use store::{EntityRefusal, Store};

const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// The built-in Port could not start.
#[derive(Debug, thiserror::Error)]
pub enum LocalPortError {
    /// The data folder cannot be created or used.
    #[error("built-in Port: cannot use data folder {path}: {source}")]
    DataDir {
        /// The folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The database cannot be opened (e.g. another process holds it).
    #[error(
        "built-in Port: cannot open {path}: {reason} (is another ocean-rs process using OCEAN__LOCAL_PORT__DATA_DIR?)"
    )]
    Storage {
        /// The database file.
        path: PathBuf,
        /// What redb said.
        reason: String,
    },
    /// The listen address cannot be bound.
    #[error(
        "built-in Port: cannot listen on {addr} (OCEAN__LOCAL_PORT__HOST/OCEAN__LOCAL_PORT__PORT): {source}"
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A write could not be persisted.
    #[error("built-in Port: {0}")]
    Write(String),
}

/// How to run the built-in Port.
#[derive(Debug, Clone)]
pub struct LocalPortOptions {
    /// Where entities and integration records are kept.
    pub data_dir: PathBuf,
    /// Listen address; port 0 picks a free one.
    pub addr: SocketAddr,
    /// Credentials to require at `POST /v1/auth/access_token`; `None` accepts any.
    pub credentials: Option<PortCredentials>,
}

struct Shared {
    store: Store,
    credentials: Option<PortCredentials>,
    tokens: Mutex<HashMap<String, Instant>>,
}

/// A running built-in Port.
pub struct LocalPort {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for LocalPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalPort")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// 500: the change could not be stored (nothing of it was kept).
fn unstored(e: impl std::fmt::Display) -> Response {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        e.to_string(),
    )
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"ok": false, "error": code, "message": message.into()})),
    )
        .into_response()
}

fn parse_body(body: &Bytes) -> Result<Value, Box<Response>> {
    serde_json::from_slice(body).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("body is not JSON: {e}"),
        ))
    })
}

/// `what` with an article: "a blueprint", "an action".
fn with_article(what: &str) -> String {
    let vowel = what.starts_with(['a', 'e', 'i', 'o', 'u']);
    format!("{} {what}", if vowel { "an" } else { "a" })
}

/// The body and its non-empty `identifier`: 400 when it is not JSON, 422 (`code`) without one.
fn identified(body: &Bytes, code: &str, what: &str) -> Result<(Value, String), Box<Response>> {
    let body = parse_body(body)?;
    let id = body
        .get("identifier")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| {
            Box::new(error(
                StatusCode::UNPROCESSABLE_ENTITY,
                code,
                format!("{} needs an `identifier`", with_article(what)),
            ))
        })?;
    Ok((body, id))
}

/// 409: creating `what` `id` again, which exists already, changes nothing.
fn taken(what: &str, id: &str) -> Response {
    error(
        StatusCode::CONFLICT,
        "identifier_taken",
        format!(
            "{} with identifier `{id}` already exists",
            with_article(what)
        ),
    )
}

/// The body as a JSON object: 400 when it is not JSON, 422 when it is not an object.
fn parse_object(body: &Bytes) -> Result<serde_json::Map<String, Value>, Box<Response>> {
    match parse_body(body)? {
        Value::Object(map) => Ok(map),
        _ => Err(Box::new(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "the body must be a JSON object",
        ))),
    }
}

fn flag(query: &HashMap<String, String>, name: &str, default: bool) -> bool {
    query.get(name).map_or(default, |v| v != "false")
}

fn datasource(headers: &HeaderMap) -> String {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.split_whitespace().next())
        .unwrap_or("unknown")
        .to_owned()
}

async fn require_token(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let valid = token.is_some_and(|t| {
        let tokens = shared.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        tokens
            .get(&t)
            .is_some_and(|expires| Instant::now() < *expires)
    });
    if valid {
        next.run(request).await
    } else {
        error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid `Authorization: Bearer <token>` header is required",
        )
    }
}

async fn access_token(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let body = match parse_body(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let id = body
        .get("clientId")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let secret = body
        .get("clientSecret")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let accepted = match &shared.credentials {
        Some(c) => c.client_id == id && c.client_secret == secret,
        None => !id.is_empty() && !secret.is_empty(),
    };
    if !accepted {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "clientId or clientSecret is wrong",
        );
    }
    let token = uuid::Uuid::new_v4().simple().to_string();
    shared
        .tokens
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(token.clone(), Instant::now() + TOKEN_LIFETIME);
    Json(json!({"ok": true, "accessToken": token, "expiresIn": TOKEN_LIFETIME.as_secs(), "tokenType": "Bearer"})).into_response()
}

async fn organization() -> Response {
    Json(json!({"ok": true, "organization": {"id": "org_local", "name": "ocean-rs local", "featureFlags": []}})).into_response()
}

async fn provision_enabled() -> Response {
    Json(json!({"ok": true, "integrations": []})).into_response()
}

async fn get_integration(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    match shared.store.read(|s| s.integrations.get(&id).cloned()) {
        Some(record) => Json(json!({"ok": true, "integration": record})).into_response(),
        None => no_integration(&id),
    }
}

/// 404: Port has no integration `id`.
fn no_integration(id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("integration `{id}` does not exist"),
    )
}

/// A new integration record, as Port creates one: its Port resources (blueprints…) not yet
/// initialised, and where its logs and metrics go (the built-in Port takes and drops them).
fn new_integration(id: &str, base: &str) -> Value {
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
fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("http://{host}")
}

/// Edits existing integration `id` with `edit` inside the store's write, so concurrent edits of
/// one record do not lose each other (404 when it does not exist).
async fn write_integration(
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
    match result {
        Ok(Ok(Some(record))) => Json(json!({"ok": true, "integration": record})).into_response(),
        Ok(Ok(None)) => no_integration(&id),
        Ok(Err(e)) => unstored(e),
        Err(e) => unstored(e),
    }
}

async fn create_integration(
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
    match result {
        Ok(Ok(Some(record))) => Json(json!({"ok": true, "integration": record})).into_response(),
        Ok(Ok(None)) => taken("integration", &id),
        Ok(Err(e)) => unstored(e),
        Err(e) => unstored(e),
    }
}

async fn patch_integration(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    match parse_object(&body) {
        Ok(fields) => write_integration(&shared, id, |r| r.extend(fields)).await,
        Err(r) => *r,
    }
}

async fn patch_integration_config(
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
async fn patch_resync_state(
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
async fn resync_request(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
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
async fn kind_examples(
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
async fn ingest() -> Response {
    Json(json!({"ok": true})).into_response()
}

/// `POST /v1/blueprints/entities/datasource-entities`: the entities whose `$datasource` starts with
/// `datasource_prefix` and ends with `datasource_suffix` (what an integration wrote), optionally
/// only those created `before` a time (a resync's start: what existed before it, which Ocean compares
/// with what the resync produced), `limit` per page (at most 5,000) after cursor `from`.
async fn datasource_entities(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
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

fn refusal_json(identifier: &Value, index: usize, r: &EntityRefusal) -> Value {
    json!({"identifier": identifier, "index": index, "statusCode": r.status, "error": r.error, "message": r.message})
}

async fn bulk_upsert(
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

async fn single_upsert(
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

async fn list_entities(
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

async fn get_entity(
    State(shared): State<Arc<Shared>>,
    Path((blueprint, id)): Path<(String, String)>,
) -> Response {
    match shared.store.read(|s| {
        s.entities
            .get(&(blueprint.clone(), id.clone()))
            .map(|st| st.entity.clone())
    }) {
        Some(entity) => Json(json!({"ok": true, "entity": entity})).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("entity `{id}` of blueprint `{blueprint}` does not exist"),
        ),
    }
}

async fn delete_entity(
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
            None => error(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("entity `{id}` of blueprint `{blueprint}` does not exist"),
            ),
        },
        Err(e) => unstored(e),
    }
}

async fn bulk_delete(
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

async fn search_entities(State(shared): State<Arc<Shared>>, request: Request) -> Response {
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

fn router(shared: Arc<Shared>) -> Router {
    let authed = Router::new()
        .route("/v1/organization", get(organization))
        .route("/v1/integration", post(create_integration))
        .route("/v1/integration/provision-enabled", get(provision_enabled))
        .route(
            "/v1/integration/{id}",
            get(get_integration).patch(patch_integration),
        )
        .route(
            "/v1/integration/{id}/config",
            axum::routing::patch(patch_integration_config),
        )
        .route(
            "/v1/integration/{id}/resync-state",
            axum::routing::patch(patch_resync_state),
        )
        .route("/v1/integration/{id}/resync-request", get(resync_request))
        .route(
            "/v1/integration/{id}/kinds/{kind}/examples",
            post(kind_examples),
        )
        .route(
            "/v1/blueprints/entities/datasource-entities",
            post(datasource_entities),
        )
        .route(
            "/v1/blueprints",
            get(blueprints::list).post(blueprints::create),
        )
        .route(
            "/v1/blueprints/{bp}",
            get(blueprints::get_one)
                .patch(blueprints::patch)
                .delete(blueprints::delete),
        )
        .route(
            "/v1/blueprints/{bp}/entities",
            get(list_entities).post(single_upsert),
        )
        .route("/v1/blueprints/{bp}/entities/bulk", post(bulk_upsert))
        .route("/v1/actions", post(extras::create_action))
        .route("/v1/actions/{id}", get(extras::get_action))
        .route(
            "/v1/blueprints/{bp}/scorecards",
            post(extras::create_scorecard),
        )
        .route(
            "/v1/blueprints/{bp}/scorecards/{id}",
            get(extras::get_scorecard),
        )
        .route("/v1/pages", post(extras::create_page))
        .route("/v1/pages/{id}", get(extras::get_page))
        .route(
            "/v1/blueprints/{bp}/entities/{id}",
            get(get_entity).delete(delete_entity),
        )
        .route(
            "/v1/blueprints/{bp}/bulk/entities/delete",
            post(bulk_delete),
        )
        .route("/v1/entities/search", post(search_entities))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&shared),
            require_token,
        ));
    Router::new()
        .route("/", get(page::index))
        .route("/ui/blueprints/{bp}", get(page::blueprint))
        .route("/v1/auth/access_token", post(access_token))
        .route("/ingest/{*rest}", axum::routing::any(ingest))
        .merge(authed)
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint in the built-in Port",
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(16 * 1024 * 1024))
        .with_state(shared)
}

impl LocalPort {
    /// Opens the data folder, binds the address and starts serving.
    ///
    /// # Errors
    /// The data folder or the address cannot be used.
    pub async fn start(options: LocalPortOptions) -> Result<Self, LocalPortError> {
        let store = Store::open(&options.data_dir)?;
        let listener = tokio::net::TcpListener::bind(options.addr)
            .await
            .map_err(|source| LocalPortError::Bind {
                addr: options.addr,
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| LocalPortError::Bind {
                addr: options.addr,
                source,
            })?;
        let shared = Arc::new(Shared {
            store,
            credentials: options.credentials,
            tokens: Mutex::new(HashMap::new()),
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let app = router(Arc::clone(&shared));
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "built-in Port stopped");
            }
        });
        Ok(Self {
            addr,
            shared,
            stop: Some(stop),
            task,
        })
    }

    /// The base URL to give a Port client, e.g. `http://127.0.0.1:5101`.
    #[must_use]
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Creates or updates integration `identifier` with this mapping (`config`) and type.
    ///
    /// # Errors
    /// The record could not be persisted.
    pub async fn seed_integration(
        &self,
        identifier: &str,
        app_type: &str,
        version: &str,
        config: Value,
    ) -> Result<(), LocalPortError> {
        let patch = json!({"config": config, "installationAppType": app_type, "version": version});
        let id = identifier.to_owned();
        let base = self.base_url();
        self.shared
            .store
            .write(|s, changes| {
                let mut record = s
                    .integrations
                    .get(&id)
                    .cloned()
                    .unwrap_or_else(|| new_integration(&id, &base));
                if let (Some(obj), Some(patch)) = (record.as_object_mut(), patch.as_object()) {
                    obj.extend(patch.clone());
                }
                s.put_integration(&id, record, changes)
            })
            .await
            .map_err(|e| LocalPortError::Write(e.to_string()))?
            .map_err(LocalPortError::Write)
    }

    /// Stops serving and waits for in-flight requests.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}
