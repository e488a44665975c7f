//! The Port API client: token, bulk upsert, ownership search, bulk delete, integration record.
//!
//! One pooled HTTP client per process. The access token is fetched lazily, reused until shortly
//! before it expires, and refreshed once when Port answers 401. Transient failures (connection
//! errors and the statuses of [`is_retryable_status`](crate::retry::is_retryable_status)) are
//! retried with exponential backoff that honours `Retry-After`. Credentials Port refuses (a 401
//! that survives a token refresh, a 403, a refused token request) are remembered until a call
//! succeeds again; see [`PortClient::credentials_refused`].
//!
//! In: the pipeline's upserts and deletes (through `batch`, which shares bulk requests between
//! events), provisioning and the mapping's reads. Out: HTTP to Port's API. The folder:
//! `client` (transport and the API calls), `auth` (the token and refused credentials), `backoff`
//! (what Port asks to wait, jitter), `blueprints` (what a blueprint requires, cached), `batch`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use crate::metrics::Metrics;

mod batch;

pub(crate) use batch::UpsertBatcher;
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;
use tokio::sync::Mutex;

/// Splits entities into bulk requests of at most [`UPSERT_BATCH_MAX`] entities and about
/// [`UPSERT_BYTES_MAX`] bytes (an entity larger than that goes alone).
#[cfg(test)]
use serde_json::json;

mod auth;
mod backoff;
mod blueprints;
mod client;

use auth::Token;
pub(crate) use backoff::{jittered, retry_after};
use blueprints::BlueprintFacts;

fn batches(entities: &[Value]) -> Vec<&[Value]> {
    const ENVELOPE: usize = r#"{"entities":[]}"#.len();
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, ENVELOPE);
    for (i, entity) in entities.iter().enumerate() {
        let size = serde_json::to_vec(entity).map_or(0, |v| v.len()) + 1;
        let full = i - start == UPSERT_BATCH_MAX || bytes + size > UPSERT_BYTES_MAX;
        if i > start && full {
            out.push(&entities[start..i]);
            (start, bytes) = (i, ENVELOPE);
        }
        bytes += size;
    }
    if start < entities.len() {
        out.push(&entities[start..]);
    }
    out
}

/// Port's limit on entities per bulk upsert request.
pub(crate) const UPSERT_BATCH_MAX: usize = 20;
/// Largest bulk upsert request body sent to Port, in bytes (Ocean's limit).
pub(crate) const UPSERT_BYTES_MAX: usize = 1024 * 1024;
/// Ocean's cap on identifiers per bulk delete request.
pub(crate) const DELETE_BATCH_MAX: usize = 100;
const RETRIES: u32 = 4;
const BODY_EXCERPT: usize = 500;

/// A Port call that failed.
///
/// A write that fails for good this way is kept as a dead letter quoting it (see `dead-letters` in
/// [`main!`](crate::main)'s binary).
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// Port could not be reached or the connection broke.
    #[error("cannot reach Port ({method} {path}): {source}")]
    Transport {
        /// HTTP method.
        method: Method,
        /// API path.
        path: String,
        /// The transport error.
        source: reqwest::Error,
    },
    /// Port answered with an error status.
    #[error("Port answered {status} to {method} {path}: {body}")]
    Status {
        /// HTTP method.
        method: Method,
        /// API path.
        path: String,
        /// The status.
        status: StatusCode,
        /// The start of the response body.
        body: String,
    },
    /// Port's answer did not have the expected shape.
    #[error("unexpected answer from Port to {path}: {reason}")]
    Decode {
        /// API path.
        path: String,
        /// What was wrong.
        reason: String,
    },
    /// The base URL is not a URL.
    #[error("OCEAN__PORT__BASE_URL `{0}` is not a valid base URL")]
    BaseUrl(String),
    /// A request that also carried other events' entities failed (upserts are batched across
    /// events); every event in it gets the same error.
    #[error("{0}")]
    Shared(Arc<PortError>),
}

impl PortError {
    /// Whether trying again later may succeed: network failures and the statuses of
    /// [`is_retryable_status`](crate::retry::is_retryable_status).
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Transport { .. } => true,
            Self::Status { status, .. } => crate::retry::is_retryable_status(status.as_u16()),
            Self::Decode { .. } | Self::BaseUrl(_) => false,
            Self::Shared(e) => e.is_transient(),
        }
    }

    /// Whether Port refused this integration's credentials or their rights (a 401 that a fresh
    /// token did not cure, a 403, or a refused token request): an operator's problem, not the
    /// event's.
    #[must_use]
    pub fn is_credentials(&self) -> bool {
        match self {
            Self::Status { status, path, .. } => {
                matches!(status.as_u16(), 401 | 403)
                    || (path.ends_with(TOKEN_PATH) && status.is_client_error())
            }
            Self::Shared(e) => e.is_credentials(),
            _ => false,
        }
    }

    /// The HTTP status Port answered, if it answered.
    #[must_use]
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(status.as_u16()),
            Self::Shared(e) => e.status(),
            _ => None,
        }
    }
}

/// Where access tokens come from.
const TOKEN_PATH: &str = "/v1/auth/access_token";

/// Where Port is and who this integration is.
#[derive(Debug, Clone)]
pub(crate) struct PortClientConfig {
    /// Base URL, e.g. `https://api.getport.io`.
    pub base_url: String,
    /// `OCEAN__PORT__CLIENT_ID`.
    pub client_id: String,
    /// `OCEAN__PORT__CLIENT_SECRET`.
    pub client_secret: String,
    /// `OCEAN__INTEGRATION__IDENTIFIER`.
    pub integration_identifier: String,
    /// `OCEAN__INTEGRATION__TYPE`.
    pub integration_type: String,
    /// The integration's version.
    pub integration_version: String,
    /// Requests to Port at once at most (`OCEAN__PORT__MAX_CONCURRENT_REQUESTS`); more wait.
    pub max_concurrent_requests: usize,
}

/// Request options for upserts, from the mapping.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UpsertOptions {
    /// Merge into the stored entity (`enableMergeEntity`).
    pub merge: bool,
    /// Create placeholder related entities (`createMissingRelatedEntities`).
    pub create_missing_related_entities: bool,
}

/// An entity Port refused in a bulk upsert.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EntityFailure {
    /// The entity's identifier as sent.
    pub identifier: Value,
    /// Port's reason.
    pub message: String,
    /// The status Port gave for this entity (`statusCode` of its error), when it gave one.
    pub status: Option<u16>,
}

impl EntityFailure {
    /// The failure one element of `errors` in a bulk answer describes; `identifier` when the
    /// element does not name its entity.
    fn from_answer(err: &Value, identifier: Option<Value>) -> Self {
        Self {
            identifier: identifier
                .or_else(|| err.get("identifier").cloned())
                .unwrap_or(Value::Null),
            message: err
                .get("message")
                .or_else(|| err.get("error"))
                .and_then(Value::as_str)
                .unwrap_or("refused")
                .to_owned(),
            status: err
                .get("statusCode")
                .and_then(Value::as_u64)
                .and_then(|s| u16::try_from(s).ok()),
        }
    }
}

/// A client of one Port organisation, for one integration.
pub(crate) struct PortClient {
    http: reqwest::Client,
    base: Url,
    config: PortClientConfig,
    user_agent: String,
    token: Mutex<Option<Token>>,
    metrics: Option<Arc<Metrics>>,
    /// Until when Port asked (with `Retry-After`) for no calls at all.
    throttled_until: std::sync::Mutex<Option<Instant>>,
    /// What each blueprint requires and relates to, and when that was read.
    blueprints: Mutex<HashMap<String, (Instant, Arc<BlueprintFacts>)>>,
    /// Why Port refused the credentials, and whether for an entity operation; until a call of
    /// the same class succeeds (a mapping read that works does not clear a refused write).
    refused: std::sync::Mutex<Option<(String, bool)>>,
    /// Bounds the requests on their way to Port.
    permits: tokio::sync::Semaphore,
}

impl std::fmt::Debug for PortClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortClient")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

/// Serves `app` (a stand-in for Port) on loopback and returns a test client of it.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) async fn serve_test_port(app: axum::Router) -> PortClient {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    test_client(format!("http://{addr}"))
}

/// `POST /v1/auth/access_token` of a stand-in Port: the same token, valid an hour, every time.
#[cfg(test)]
pub(crate) fn test_token_route() -> axum::routing::MethodRouter {
    axum::routing::post(|| async { axum::Json(json!({"accessToken": "t", "expiresIn": 3600})) })
}

/// A client of a Port at `base_url`, with test credentials and identity.
#[cfg(test)]
pub(crate) fn test_client(base_url: String) -> PortClient {
    #[allow(clippy::expect_used)]
    PortClient::new(PortClientConfig {
        base_url,
        client_id: "id".into(),
        client_secret: "secret".into(),
        integration_identifier: "i".into(),
        integration_type: "t".into(),
        integration_version: "0".into(),
        max_concurrent_requests: 16,
    })
    .expect("a test base URL parses")
}

#[cfg(test)]
mod tests {
    use super::backoff::{MAX_WAIT, parse_wait};
    use super::*;
    use axum::response::IntoResponse;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, UNIX_EPOCH};

    fn entity(id: usize, size: usize) -> Value {
        json!({"identifier": format!("e{id}"), "blueprint": "b", "properties": {"pad": "x".repeat(size)}})
    }

    #[test]
    fn batches_respect_count_and_bytes() {
        let small: Vec<Value> = (0..45).map(|i| entity(i, 10)).collect();
        let sizes: Vec<usize> = batches(&small).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, [20, 20, 5]);
        let big: Vec<Value> = (0..5).map(|i| entity(i, 400 * 1024)).collect();
        let sizes: Vec<usize> = batches(&big).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, [2, 2, 1], "at most 1 MiB per request");
        let huge = [entity(0, 2 * 1024 * 1024), entity(1, 10)];
        let sizes: Vec<usize> = batches(&huge).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, [1, 1], "an oversized entity goes alone");
        assert!(batches(&[]).is_empty());
    }

    #[tokio::test]
    async fn no_more_requests_than_the_setting_are_sent_at_once() {
        static NOW: AtomicUsize = AtomicUsize::new(0);
        static MOST: AtomicUsize = AtomicUsize::new(0);
        let app = axum::Router::new()
            .route("/v1/auth/access_token", test_token_route())
            .route(
                "/v1/blueprints/{id}",
                axum::routing::get(|| async {
                    let now = NOW.fetch_add(1, Ordering::SeqCst) + 1;
                    MOST.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    NOW.fetch_sub(1, Ordering::SeqCst);
                    axum::Json(json!({"blueprint": {"identifier": "b"}}))
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let mut config = test_client(format!("http://{addr}")).config;
        config.max_concurrent_requests = 3;
        let port = PortClient::new(config).unwrap();
        let calls = (0..12).map(|i| port.blueprint(if i % 2 == 0 { "a" } else { "b" }));
        for answer in futures_util::future::join_all(calls).await {
            assert!(answer.unwrap().is_some());
        }
        assert_eq!(
            MOST.load(Ordering::SeqCst),
            3,
            "at most 3 at once, and 3 were"
        );
    }

    #[tokio::test]
    async fn a_413_splits_the_request_until_port_accepts_it() {
        const LIMIT: usize = 3_000;
        static REQUESTS: AtomicUsize = AtomicUsize::new(0);
        let app = axum::Router::new()
            .route("/v1/auth/access_token", test_token_route())
            .route(
                "/v1/blueprints/{bp}/entities/bulk",
                axum::routing::post(|body: bytes::Bytes| async move {
                    REQUESTS.fetch_add(1, Ordering::SeqCst);
                    if body.len() > LIMIT {
                        return axum::http::StatusCode::PAYLOAD_TOO_LARGE.into_response();
                    }
                    axum::Json(json!({"entities": [], "errors": []})).into_response()
                }),
            );
        let client = serve_test_port(app).await;
        // 8 entities of ~600 bytes: 8 → 4+4 (too large) → 2+2+2+2 accepted; one of 5 KB is refused alone.
        let mut entities: Vec<Value> = (0..8).map(|i| entity(i, 550)).collect();
        entities.push(entity(99, 5_000));
        let failures = client
            .upsert_entities(
                "b",
                &entities,
                UpsertOptions {
                    merge: true,
                    create_missing_related_entities: true,
                },
            )
            .await
            .unwrap();
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert_eq!(failures[0].identifier, "e99");
        assert!(failures[0].message.contains("413"));
        assert_eq!(REQUESTS.load(Ordering::SeqCst), 1 + 2 + 4 + 1 + 1);
    }

    #[test]
    fn waits_port_asks_for_are_read_in_every_form_ocean_reads() {
        let now = UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        let wait = |v: &str| parse_wait(v, now);
        assert_eq!(wait("2"), Some(Duration::from_secs(2)));
        assert_eq!(wait(" 1.5 "), Some(Duration::from_millis(1500)));
        assert_eq!(
            wait("1795000030"),
            Some(Duration::from_secs(30)),
            "a Unix time"
        );
        assert_eq!(wait("1794999000"), Some(Duration::ZERO), "already past");
        // 1_795_000_000 is 2026-11-18T11:06:40Z.
        assert_eq!(
            wait("Wed, 18 Nov 2026 11:07:40 GMT"),
            Some(Duration::from_secs(60)),
            "an HTTP date"
        );
        assert_eq!(wait("2026-11-18T11:06:45Z"), Some(Duration::from_secs(5)));
        assert_eq!(
            wait("2026-11-18T12:06:50.5+01:00"),
            Some(Duration::from_millis(10_500)),
            "ISO 8601 with an offset and a fraction"
        );
        assert_eq!(wait("soon"), None);
        assert_eq!(wait("-3"), None);
        assert_eq!(wait("2026-13-18T11:06:45Z"), None);
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("x-ratelimit-reset", "7".parse().unwrap());
        assert_eq!(
            retry_after(&headers, now),
            Some(Duration::from_secs(7)),
            "x-ratelimit-reset when there is no Retry-After"
        );
        headers.insert("retry-after", "100000000000".parse().unwrap());
        assert_eq!(retry_after(&headers, now), Some(MAX_WAIT), "capped");
    }

    #[test]
    fn backoff_is_spread_by_ten_percent() {
        let base = Duration::from_millis(1000);
        let spread: Vec<Duration> = (0..200).map(|_| jittered(base)).collect();
        assert!(
            spread
                .iter()
                .all(|d| *d >= base.mul_f64(0.9) && *d <= base.mul_f64(1.1))
        );
        let distinct: std::collections::BTreeSet<_> = spread.iter().collect();
        assert!(distinct.len() > 100, "{} distinct delays", distinct.len());
    }

    /// A Port that counts token requests and answers every `GET /v1/blueprints/{bp}` with
    /// `status`, recording the `Authorization` header of each.
    async fn port_answering(
        status: u16,
        first_token_life: u64,
    ) -> (
        PortClient,
        Arc<std::sync::Mutex<Vec<String>>>,
        Arc<AtomicUsize>,
    ) {
        let tokens = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (t, s) = (Arc::clone(&tokens), Arc::clone(&seen));
        let app =
            axum::Router::new()
                .route(
                    "/v1/auth/access_token",
                    axum::routing::post(move || {
                        let n = t.fetch_add(1, Ordering::SeqCst) + 1;
                        let life = if n == 1 { first_token_life } else { 3600 };
                        async move {
                            axum::Json(json!({"accessToken": format!("t{n}"), "expiresIn": life}))
                        }
                    }),
                )
                .route(
                    "/v1/blueprints/{bp}",
                    axum::routing::get(move |headers: axum::http::HeaderMap| {
                        let auth = headers
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        s.lock().unwrap().push(auth);
                        async move {
                            (
                                axum::http::StatusCode::from_u16(status).unwrap(),
                                axum::Json(
                                    json!({"ok": status < 400, "blueprint": {"identifier": "b"}}),
                                ),
                            )
                        }
                    }),
                );
        (serve_test_port(app).await, seen, tokens)
    }

    #[tokio::test]
    async fn client_errors_are_not_retried() {
        // 500 is retried like every 5xx but 501 and 505 (`retry::is_retryable_status`).
        for status in [400, 404, 422, 501] {
            let (client, seen, _) = port_answering(status, 3600).await;
            let err = client
                .call(Method::GET, &["blueprints", "b"], &[], None, false)
                .await
                .unwrap_err();
            assert!(
                matches!(&err, PortError::Status { status: s, .. } if s.as_u16() == status),
                "{err}"
            );
            assert_eq!(seen.lock().unwrap().len(), 1, "{status} was sent once");
        }
    }

    #[tokio::test]
    async fn a_token_is_renewed_before_it_expires_not_after_a_401() {
        // The first token expires at once, so the next call takes a new one first; the second
        // lives an hour and is reused.
        let (client, seen, tokens) = port_answering(200, 0).await;
        for _ in 0..3 {
            client
                .call(Method::GET, &["blueprints", "b"], &[], None, false)
                .await
                .unwrap();
        }
        assert_eq!(tokens.load(Ordering::SeqCst), 2);
        assert_eq!(
            *seen.lock().unwrap(),
            ["Bearer t1", "Bearer t2", "Bearer t2"],
            "no call was made with an expired token"
        );
    }

    #[tokio::test]
    async fn what_a_blueprint_requires_is_read_once_and_cached() {
        let (client, seen, _) = port_answering(200, 3600).await;
        for _ in 0..3 {
            assert!(client.required_fields("b").await.is_empty());
        }
        assert_eq!(seen.lock().unwrap().len(), 1, "cached for 120 s");
    }
}
