//! The webhook server: `POST /integration/<path>` for every registered path, health and readiness.
//!
//! In: HTTP requests. Out: events in their envelope (verified, grouped, deduplicated) pushed to
//! the queue, each answered 200 once it is stored; refusals answered with a status and a JSON
//! reason. `serve.rs` owns the accept loop and connection limits, `dedup.rs` the delivery ids.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use serde_json::json;

use crate::envelope::{Envelope, Schedule};
use crate::event::WebhookEvent;
use crate::mapping::MappingStore;
use crate::metrics::{Metrics, QueueGauges};
use crate::queue::{Backend, Pushed, QueueError};
use crate::registry::{RegisteredProcessor, Registry};

mod dedup;
mod lag;
mod serve;

pub(crate) use dedup::{DEFAULT_HEADERS as DEDUP_HEADERS, Dedup, Seen};
pub(crate) use lag::Lag;
pub(crate) use serve::{listen, serve};

/// What the webhook routes need.
pub(crate) struct Ingress {
    pub(crate) registry: Arc<Registry>,
    pub(crate) queue: Backend,
    pub(crate) mapping: Arc<MappingStore>,
    pub(crate) body_limit: usize,
    /// Bearer token the admin endpoints require, if set; without one they answer loopback
    /// clients only.
    pub(crate) admin_token: Option<String>,
    /// Whether the admin endpoints are served at all.
    pub(crate) admin_enabled: bool,
    /// How long a request body may take to arrive.
    pub(crate) body_timeout: std::time::Duration,
    /// Webhooks being accepted at once (`OCEAN__INGRESS__MAX_IN_FLIGHT` permits).
    pub(crate) in_flight: tokio::sync::Semaphore,
    /// How far behind the runtime is, and past what new webhooks are refused.
    pub(crate) lag: Arc<Lag>,
    pub(crate) max_lag: std::time::Duration,
    /// Delivery ids already accepted.
    pub(crate) dedup: Dedup,
    /// Counters.
    pub(crate) metrics: Arc<Metrics>,
    /// The Port client, whose refused credentials make the app unready.
    pub(crate) port: Arc<crate::port::PortClient>,
}

/// Event ids: a random prefix drawn once per process and a counter (no system call per event).
fn next_event_id() -> String {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEED: OnceLock<(u64, u64)> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let (high, low) = *SEED.get_or_init(|| uuid::Uuid::new_v4().as_u64_pair());
    // XOR with a fixed random value keeps the ids distinct and makes them look random.
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    uuid::Uuid::from_u64_pair(high, low ^ n).to_string()
}

fn reject(status: StatusCode, reason: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"status": "error", "error": reason.into()})),
    )
        .into_response()
}

fn too_large(limit: usize) -> Response {
    reject(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("body is larger than {limit} bytes (OCEAN__INGRESS__BODY_LIMIT_BYTES)"),
    )
}

fn is_length_limit(err: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}

async fn webhook(
    State(ingress): State<Arc<Ingress>>,
    Path(rest): Path<String>,
    request: Request,
) -> Response {
    let path = format!("/{rest}");
    if ingress.registry.processors(&path).is_none() {
        return reject(
            StatusCode::NOT_FOUND,
            format!("no webhook processor is registered on `{path}`"),
        );
    }
    ingress.metrics.received();
    // Beyond this many webhooks being accepted at once, the excess is refused at once rather than
    // queued in memory: a flood gets 503s, and what was acknowledged stays bounded.
    let Ok(_accepting) = ingress.in_flight.try_acquire() else {
        return overloaded(
            &ingress,
            "too many webhooks are being accepted at once (OCEAN__INGRESS__MAX_IN_FLIGHT); try again",
        );
    };
    let lag = ingress.lag.current();
    if lag > ingress.max_lag {
        return overloaded(
            &ingress,
            &format!(
                "the server is overloaded: it runs {} ms behind (over OCEAN__INGRESS__MAX_LAG_MS); try again",
                lag.as_millis()
            ),
        );
    }
    if request.method() != Method::POST {
        let mut r = reject(
            StatusCode::METHOD_NOT_ALLOWED,
            "webhooks are delivered with POST",
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return r;
    }
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > ingress.body_limit) {
        ingress.metrics.rejected("too_large");
        return too_large(ingress.body_limit);
    }
    let read = axum::body::to_bytes(Body::new(body), ingress.body_limit);
    let Ok(read) = tokio::time::timeout(ingress.body_timeout, read).await else {
        ingress.metrics.rejected("body_timeout");
        return reject(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the body did not arrive within {} s (OCEAN__INGRESS__BODY_TIMEOUT_SECONDS)",
                ingress.body_timeout.as_secs_f64()
            ),
        );
    };
    let bytes = match read {
        Ok(b) => b,
        Err(e) if is_length_limit(&e) => {
            ingress.metrics.rejected("too_large");
            return too_large(ingress.body_limit);
        }
        Err(e) => {
            return reject(
                StatusCode::BAD_REQUEST,
                format!("could not read the body: {e}"),
            );
        }
    };
    let headers = parts.headers.iter().map(|(k, v)| {
        (
            k.as_str().to_owned(),
            String::from_utf8_lossy(v.as_bytes()).into_owned(),
        )
    });
    let id = next_event_id();
    // A body read from the connection may share (and keep alive) a larger read buffer; a queued
    // event holds its own exact copy.
    let bytes = bytes::Bytes::copy_from_slice(&bytes);
    let event = match WebhookEvent::new(id.clone(), path, headers, bytes) {
        Ok(e) => e,
        Err(e) => {
            ingress.metrics.rejected("invalid_json");
            return reject(StatusCode::BAD_REQUEST, e.to_string());
        }
    };
    let processors = ingress
        .registry
        .processors(event.path())
        .unwrap_or_default();
    let unauthenticated = match authenticate(processors, &event) {
        Ok(refused) => refused,
        Err(reason) => {
            tracing::info!(
                path = event.path(),
                reason,
                "delivery refused by the path's verifiers"
            );
            return reject(StatusCode::UNAUTHORIZED, reason);
        }
    };
    let mut keys: Vec<String> = if processors.iter().any(RegisteredProcessor::has_group) {
        let payload = ocean_jq::Input::new(event.payload());
        processors
            .iter()
            .filter_map(|p| p.group_key(&payload))
            .collect()
    } else {
        Vec::new()
    };
    keys.sort_unstable();
    keys.dedup();
    // Supersedable only when every processor of the path just needs the latest event of a group.
    let supersedable = !keys.is_empty() && processors.iter().all(RegisteredProcessor::latest_only);
    // A shared queue checks delivery ids itself, in the same step that stores the event, so that
    // a redelivery to another replica is recognised; otherwise this process's memory does.
    let shared = ingress.queue.events.shared();
    let delivery = if shared {
        ingress.dedup.key(&event)
    } else {
        match ingress.dedup.check(&event) {
            Seen::New(key) => key,
            Seen::Duplicate(first) => return duplicate(&ingress, &first),
            Seen::InFlight => {
                let mut r = reject(
                    StatusCode::CONFLICT,
                    "the same delivery is being accepted by another request",
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                return r;
            }
        }
    };
    let envelope = Envelope {
        event,
        schedule: Schedule {
            group_keys: keys,
            supersedable,
            delivery_key: delivery.clone(),
            unauthenticated,
        },
    };
    let pushed = ingress.queue.events.push(envelope).await;
    if !shared {
        match &pushed {
            Ok(_) => ingress.dedup.accepted(delivery, &id),
            Err(_) => ingress.dedup.refused(delivery),
        }
    }
    match pushed {
        Ok(Pushed::Queued) => {
            tracing::debug!(event_id = id, "event queued");
            // The id is a UUID: nothing in it needs escaping.
            (
                [(header::CONTENT_TYPE, "application/json")],
                format!(r#"{{"status":"ok","id":"{id}"}}"#),
            )
                .into_response()
        }
        Ok(Pushed::Duplicate(first)) => duplicate(&ingress, &first),
        Err(e) => {
            ingress.metrics.rejected(match e {
                QueueError::Full { .. } => "queue_full",
                QueueError::Closed => "shutting_down",
                QueueError::Unavailable(_) => "queue_unavailable",
                _ => "storage",
            });
            let mut r = reject(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
    }
}

/// 503 with `Retry-After: 1`: more is arriving than the server can take now.
fn overloaded(ingress: &Ingress, reason: &str) -> Response {
    ingress.metrics.rejected("overloaded");
    let mut r = reject(StatusCode::SERVICE_UNAVAILABLE, reason);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

fn duplicate(ingress: &Ingress, first: &str) -> Response {
    ingress.metrics.duplicate();
    tracing::debug!(event_id = first, "duplicate delivery; already queued");
    Json(json!({"status": "ok", "id": first, "duplicate": true})).into_response()
}

/// Runs the verifiers of the path's processors over the raw delivery. The delivery is refused when
/// every processor has a verifier and none accepts it; otherwise the processors whose verifier
/// refused it are returned, to be recorded beside the event; they skip it.
fn authenticate(
    processors: &[RegisteredProcessor],
    event: &WebhookEvent,
) -> Result<Vec<String>, String> {
    let mut refused = Vec::new();
    let mut reasons = Vec::new();
    let mut open = false;
    for p in processors {
        match p.verifier() {
            None => open = true,
            Some(v) => match v.verify(event) {
                Ok(()) => open = true,
                Err(reason) => {
                    reasons.push(format!("{} ({}): {reason}", p.name(), v.name()));
                    refused.push(p.name().to_owned());
                }
            },
        }
    }
    if !open {
        return Err(format!(
            "the delivery is not authentic: {}",
            reasons.join("; ")
        ));
    }
    Ok(refused)
}

async fn metrics(State(ingress): State<Arc<Ingress>>) -> Response {
    let gauges = match ingress.queue.events.stats().await {
        Ok(g) => g,
        Err(e) => {
            tracing::debug!(error = %e, "queue figures unavailable for /metrics");
            QueueGauges::default()
        }
    };
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        ingress.metrics.render(gauges),
    )
        .into_response()
}

async fn live() -> Response {
    Json(json!({"status": "healthy", "check": "live"})).into_response()
}

async fn ready(State(ingress): State<Arc<Ingress>>) -> Response {
    let reason = if let Err(e) = ingress.queue.events.health().await {
        Some(e.to_string())
    } else if let Some(why) = ingress.port.credentials_refused() {
        Some(why)
    } else if ingress.mapping.current().is_none() {
        Some("no mapping is loaded yet".to_owned())
    } else {
        None
    };
    match reason {
        None => Json(json!({"status": "healthy", "check": "ready"})).into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unhealthy", "check": "ready", "reason": reason})),
        )
            .into_response(),
    }
}

fn storage_error(e: &QueueError) -> Response {
    let status = match e {
        QueueError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    reject(status, e.to_string())
}

async fn list_dead(State(ingress): State<Arc<Ingress>>) -> Response {
    match ingress.queue.dead_letters.list().await {
        Ok(all) => {
            let shown: Vec<_> = all.iter().map(crate::queue::DeadLetter::redacted).collect();
            Json(json!({"status": "ok", "deadLetters": shown})).into_response()
        }
        Err(e) => storage_error(&e),
    }
}

async fn get_dead(State(ingress): State<Arc<Ingress>>, Path(id): Path<u64>) -> Response {
    match ingress.queue.dead_letters.get(id).await {
        Ok(Some(d)) => Json(json!({"status": "ok", "deadLetter": d.redacted()})).into_response(),
        Ok(None) => reject(StatusCode::NOT_FOUND, format!("no dead letter {id}")),
        Err(e) => storage_error(&e),
    }
}

async fn delete_dead(State(ingress): State<Arc<Ingress>>, Path(id): Path<u64>) -> Response {
    match ingress.queue.dead_letters.remove(id).await {
        Ok(Some(_)) => Json(json!({"status": "ok", "deleted": id})).into_response(),
        Ok(None) => reject(StatusCode::NOT_FOUND, format!("no dead letter {id}")),
        Err(e) => storage_error(&e),
    }
}

async fn purge_dead(State(ingress): State<Arc<Ingress>>) -> Response {
    match ingress.queue.dead_letters.purge().await {
        Ok(n) => Json(json!({"status": "ok", "purged": n})).into_response(),
        Err(e) => storage_error(&e),
    }
}

/// Puts a dead letter's event back in the queue (through the whole pipeline) and removes it, in
/// one step where the backend allows it.
async fn replay_dead(State(ingress): State<Arc<Ingress>>, Path(id): Path<u64>) -> Response {
    let letter = match ingress.queue.dead_letters.get(id).await {
        Ok(l) => l,
        Err(e) => return storage_error(&e),
    };
    let Some(letter) = letter else {
        return reject(StatusCode::NOT_FOUND, format!("no dead letter {id}"));
    };
    let envelope = match letter.to_envelope() {
        Ok(e) => e,
        Err(e) => {
            return reject(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("dead letter {id} holds an unreadable event: {e}"),
            );
        }
    };
    let event = &envelope.event;
    if ingress.registry.processors(event.path()).is_none() {
        return reject(
            StatusCode::CONFLICT,
            format!("no processor is registered on `{}` any more", event.path()),
        );
    }
    let event_id = event.id().to_owned();
    match ingress.queue.dead_letters.replay(id, envelope).await {
        Ok(true) => {
            Json(json!({"status": "ok", "replayed": id, "eventId": event_id})).into_response()
        }
        Ok(false) => reject(StatusCode::NOT_FOUND, format!("no dead letter {id}")),
        Err(e @ (QueueError::Full { .. } | QueueError::Closed)) => {
            reject(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
        Err(e) => storage_error(&e),
    }
}

/// Fetches the mapping now instead of waiting for the refresh timer; a bad version is refused
/// (422, with the reason) and the one in force keeps serving.
async fn reload_mapping(State(ingress): State<Arc<Ingress>>) -> Response {
    match ingress.mapping.reload().await {
        Ok(changed) => {
            if changed {
                tracing::info!("new mapping version in force (reloaded on demand)");
            }
            Json(json!({"status": "ok", "changed": changed})).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "mapping reload refused; the previous version stays in force");
            reject(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
        }
    }
}

/// Whether an admin request may go on: with a token, it must bear it (compared in constant time,
/// over digests so that not even its length leaks); without one, it must come from a loopback
/// address.
fn admin_allowed(
    token: Option<&str>,
    peer: Option<std::net::SocketAddr>,
    authorization: Option<&str>,
) -> Result<(), (StatusCode, &'static str)> {
    use sha2::Digest;
    let Some(token) = token else {
        return if peer.is_some_and(|p| crate::config::is_loopback(p.ip())) {
            Ok(())
        } else {
            Err((
                StatusCode::FORBIDDEN,
                "admin endpoints answer only loopback clients unless OCEAN__ADMIN__TOKEN is set",
            ))
        };
    };
    let given = authorization.and_then(|v| v.strip_prefix("Bearer "));
    let matches = given.is_some_and(|g| {
        let (g, t) = (sha2::Sha256::digest(g), sha2::Sha256::digest(token));
        bool::from(subtle::ConstantTimeEq::ct_eq(g.as_slice(), t.as_slice()))
    });
    if matches {
        Ok(())
    } else {
        Err((
            StatusCode::UNAUTHORIZED,
            "admin endpoints need `Authorization: Bearer <OCEAN__ADMIN__TOKEN>`",
        ))
    }
}

async fn admin_auth(
    State(ingress): State<Arc<Ingress>>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0);
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match admin_allowed(ingress.admin_token.as_deref(), peer, authorization) {
        Ok(()) => next.run(request).await,
        Err((status, reason)) => reject(status, reason),
    }
}

/// Turns the plain-text refusals of axum's extractors (a path that is not UTF-8, an id that is not
/// a number…) into the JSON every other refusal has.
async fn json_errors(response: Response) -> Response {
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    if !(plain && (response.status().is_client_error() || response.status().is_server_error())) {
        return response;
    }
    let status = response.status();
    let text = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    reject(status, text)
}

/// The ingress router.
pub(crate) fn router(ingress: Arc<Ingress>) -> Router {
    let base = Router::new()
        .route("/integration/{*path}", any(webhook))
        .route("/health/live", get(live))
        .route("/metrics", get(metrics))
        .route("/health/ready", get(ready))
        .fallback(|| async {
            reject(
                StatusCode::NOT_FOUND,
                "not found; webhooks are served under /integration/",
            )
        });
    if !ingress.admin_enabled {
        return base
            .layer(axum::middleware::map_response(json_errors))
            .with_state(ingress);
    }
    let admin = Router::new()
        .route("/admin/dead-letters", get(list_dead).delete(purge_dead))
        .route(
            "/admin/dead-letters/{id}",
            get(get_dead).delete(delete_dead),
        )
        .route(
            "/admin/dead-letters/{id}/replay",
            axum::routing::post(replay_dead),
        )
        .route("/admin/mapping/reload", axum::routing::post(reload_mapping))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&ingress),
            admin_auth,
        ));
    base.merge(admin)
        .layer(axum::middleware::map_response(json_errors))
        .with_state(ingress)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_token_only_loopback_clients_reach_the_admin_endpoints() {
        let at = |a: &str| a.parse::<std::net::SocketAddr>().ok();
        for local in [
            "127.0.0.1:5000",
            "127.9.9.9:1",
            "[::1]:5000",
            "[::ffff:127.0.0.1]:80",
        ] {
            assert_eq!(admin_allowed(None, at(local), None), Ok(()), "{local}");
        }
        for remote in ["10.0.0.7:5000", "[2001:db8::1]:443", "[::ffff:10.0.0.1]:80"] {
            let refused = admin_allowed(None, at(remote), Some("Bearer anything"));
            assert_eq!(
                refused.map_err(|e| e.0),
                Err(StatusCode::FORBIDDEN),
                "{remote}"
            );
        }
        assert!(
            admin_allowed(None, None, None).is_err(),
            "no peer known: refused"
        );
    }

    #[test]
    fn with_a_token_every_client_must_bear_it() {
        let remote = "10.0.0.7:5000".parse().ok();
        let local = "127.0.0.1:5000".parse().ok();
        assert_eq!(
            admin_allowed(Some("t0ken"), remote, Some("Bearer t0ken")),
            Ok(())
        );
        for wrong in [
            None,
            Some("Bearer t0ke"),
            Some("Bearer t0ken2"),
            Some("t0ken"),
            Some("Bearer "),
        ] {
            for peer in [remote, local] {
                assert_eq!(
                    admin_allowed(Some("t0ken"), peer, wrong).map_err(|e| e.0),
                    Err(StatusCode::UNAUTHORIZED),
                    "{wrong:?}"
                );
            }
        }
    }
}
