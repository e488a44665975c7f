//! The Port API client: token, bulk upsert, ownership search, bulk delete, integration record.
//!
//! One pooled HTTP client per process. The access token is fetched lazily, reused until shortly
//! before it expires, and refreshed once when Port answers 401. Transient failures (connection
//! errors and the statuses of [`is_retryable_status`](crate::retry::is_retryable_status)) are
//! retried with exponential backoff that honours `Retry-After`. Credentials Port refuses (a 401
//! that survives a token refresh, a 403, a refused token request) are remembered until a call
//! succeeds again; see [`PortClient::credentials_refused`].

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::metrics::Metrics;

mod batch;

pub(crate) use batch::UpsertBatcher;
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Mutex;

/// Splits entities into bulk requests of at most [`UPSERT_BATCH_MAX`] entities and about
/// [`UPSERT_BYTES_MAX`] bytes (an entity larger than that goes alone).
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
pub const UPSERT_BATCH_MAX: usize = 20;
/// Largest bulk upsert request body sent to Port, in bytes (Ocean's limit).
pub const UPSERT_BYTES_MAX: usize = 1024 * 1024;
/// Ocean's cap on identifiers per bulk delete request.
pub const DELETE_BATCH_MAX: usize = 100;
const RETRIES: u32 = 4;
const BODY_EXCERPT: usize = 500;

/// A Port call that failed.
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
pub struct PortClientConfig {
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
pub struct UpsertOptions {
    /// Merge into the stored entity (`enableMergeEntity`).
    pub merge: bool,
    /// Create placeholder related entities (`createMissingRelatedEntities`).
    pub create_missing_related_entities: bool,
}

/// An entity Port refused in a bulk upsert.
#[derive(Debug, Clone, PartialEq)]
pub struct EntityFailure {
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

struct Token {
    header: String,
    refresh_at: Instant,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenResponse {
    access_token: String,
    expires_in: u64,
    #[serde(default = "bearer")]
    token_type: String,
}

fn bearer() -> String {
    "Bearer".to_owned()
}

/// A client of one Port organisation, for one integration.
pub struct PortClient {
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

/// What the pipeline needs to know of a blueprint.
#[derive(Debug, Default)]
struct BlueprintFacts {
    /// `properties.<name>` and `relations.<name>` it requires.
    required: Arc<BTreeSet<String>>,
    /// The blueprints its relations point at.
    targets: BTreeSet<String>,
}

/// How long what a blueprint requires is remembered (Ocean's cache of `GET /v1/blueprints/{bp}`).
const BLUEPRINT_TTL: Duration = Duration::from_secs(120);

impl std::fmt::Debug for PortClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortClient")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

/// Longest wait Port can ask for (Ocean's cap).
const MAX_WAIT: Duration = Duration::from_secs(300);

/// How long Port asked to wait before the next call: `Retry-After`, else `x-ratelimit-reset`, each
/// read as Ocean reads them (seconds; a number over 10,000 is a Unix time) or as an HTTP date or
/// an ISO 8601 time; at most [`MAX_WAIT`].
pub(crate) fn retry_after(
    headers: &reqwest::header::HeaderMap,
    now: SystemTime,
) -> Option<Duration> {
    ["retry-after", "x-ratelimit-reset"]
        .iter()
        .find_map(|name| {
            let value = headers.get(*name)?.to_str().ok()?;
            parse_wait(value, now).map(|d| d.min(MAX_WAIT))
        })
}

fn parse_wait(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let until = |at: SystemTime| at.duration_since(now).unwrap_or_default();
    if let Ok(n) = value.parse::<f64>() {
        if !n.is_finite() || n < 0.0 {
            return None;
        }
        return Some(if n > 10_000.0 {
            until(UNIX_EPOCH + Duration::from_secs_f64(n))
        } else {
            Duration::from_secs_f64(n)
        });
    }
    httpdate::parse_http_date(value)
        .ok()
        .or_else(|| crate::time::parse_rfc3339(value))
        .map(until)
}

/// `base` ± 10 %, so that clients failing together do not retry together.
pub(crate) fn jittered(base: Duration) -> Duration {
    use std::hash::BuildHasher;
    // A fresh random-keyed hasher is random enough for spreading retries.
    let r = std::collections::hash_map::RandomState::new().hash_one(base);
    let unit = (r >> 11) as f64 / (1u64 << 53) as f64;
    base.mul_f64(0.9 + 0.2 * unit)
}

impl PortClient {
    /// A client for `config`.
    ///
    /// # Errors
    /// [`PortError::BaseUrl`] when the base URL does not parse.
    pub fn new(config: PortClientConfig) -> Result<Self, PortError> {
        let base = Url::parse(config.base_url.trim_end_matches('/'))
            .ok()
            .filter(|u| !u.cannot_be_a_base())
            .ok_or_else(|| PortError::BaseUrl(config.base_url.clone()))?;
        let permits = tokio::sync::Semaphore::new(config.max_concurrent_requests.max(1));
        let user_agent = format!(
            "port-ocean/{}/{}/{}",
            config.integration_type, config.integration_version, config.integration_identifier
        );
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|source| PortError::Transport {
                method: Method::GET,
                path: String::new(),
                source,
            })?;
        Ok(Self {
            http,
            base,
            config,
            user_agent,
            token: Mutex::new(None),
            metrics: None,
            throttled_until: std::sync::Mutex::new(None),
            blueprints: Mutex::new(HashMap::new()),
            refused: std::sync::Mutex::new(None),
            permits,
        })
    }

    /// Counts every call in `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The integration's identifier in Port.
    #[must_use]
    pub fn integration_identifier(&self) -> &str {
        &self.config.integration_identifier
    }

    /// The base URL in use.
    #[must_use]
    pub fn base_url(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().push("v1").extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    fn ua(&self, entity_op: bool) -> String {
        let suffix = if entity_op { "/exporter" } else { "" };
        format!(
            "{}{suffix} ocean-rs/{}",
            self.user_agent,
            env!("CARGO_PKG_VERSION")
        )
    }

    async fn token(&self, force: bool) -> Result<String, PortError> {
        let mut slot = self.token.lock().await;
        if !force && let Some(t) = slot.as_ref().filter(|t| Instant::now() < t.refresh_at) {
            return Ok(t.header.clone());
        }
        let body =
            json!({"clientId": self.config.client_id, "clientSecret": self.config.client_secret});
        let value = self
            .send(
                Method::POST,
                &["auth", "access_token"],
                &[],
                Some(&body),
                None,
                false,
            )
            .await?;
        let t: TokenResponse = serde_json::from_value(value).map_err(|e| PortError::Decode {
            path: TOKEN_PATH.to_owned(),
            reason: e.to_string(),
        })?;
        let life = Duration::from_secs(t.expires_in);
        let header = format!("{} {}", t.token_type, t.access_token);
        *slot = Some(Token {
            header: header.clone(),
            refresh_at: Instant::now() + life - life.min(Duration::from_secs(60)) / 2,
        });
        Ok(header)
    }

    /// Why Port refuses this integration's credentials, when its last answer did (see
    /// [`PortError::is_credentials`]); `None` once a call succeeds again. Readiness is false
    /// meanwhile, and the pipeline's workers pause with the events left queued.
    #[must_use]
    pub fn credentials_refused(&self) -> Option<String> {
        self.refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map(|(why, _)| why.clone())
    }

    /// Records how the last authenticated call ended, for [`credentials_refused`](Self::credentials_refused).
    fn note_credentials(&self, result: &Result<Value, PortError>, entity_op: bool) {
        let mut slot = self
            .refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let refusal = match result {
            Ok(_) if slot.as_ref().is_some_and(|(_, op)| *op != entity_op) => return,
            Ok(_) => None,
            Err(e) if e.is_credentials() => Some(format!(
                "Port refuses this integration's credentials ({e}); check OCEAN__PORT__CLIENT_ID and OCEAN__PORT__CLIENT_SECRET, and that they may write to OCEAN__PORT__BASE_URL ({})",
                self.base_url()
            )),
            // Any other failure says nothing new about the credentials.
            Err(_) => return,
        };
        match (&*slot, &refusal) {
            (None, Some(why)) => tracing::error!("{why}"),
            (Some(_), None) => tracing::info!("Port accepts the credentials again"),
            _ => {}
        }
        *slot = refusal.map(|why| (why, entity_op));
    }

    /// One authenticated call with retries and one token refresh on 401.
    async fn call(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&Value>,
        entity_op: bool,
    ) -> Result<Value, PortError> {
        let result = self
            .call_once(method, segments, query, body, entity_op)
            .await;
        self.note_credentials(&result, entity_op);
        result
    }

    async fn call_once(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&Value>,
        entity_op: bool,
    ) -> Result<Value, PortError> {
        let auth = self.token(false).await?;
        match self
            .send(
                method.clone(),
                segments,
                query,
                body,
                Some(&auth),
                entity_op,
            )
            .await
        {
            Err(PortError::Status {
                status: StatusCode::UNAUTHORIZED,
                ..
            }) => {
                tracing::info!("Port answered 401; refreshing the access token once");
                let auth = self.token(true).await?;
                self.send(method, segments, query, body, Some(&auth), entity_op)
                    .await
            }
            other => other,
        }
    }

    async fn send(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&Value>,
        auth: Option<&str>,
        entity_op: bool,
    ) -> Result<Value, PortError> {
        let url = self.url(segments, query);
        let path = url.path().to_owned();
        let mut attempt = 0;
        loop {
            // Port's `Retry-After` holds for the whole client, not just the call it answered.
            let throttled = *self
                .throttled_until
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(until) = throttled.filter(|t| *t > Instant::now()) {
                tokio::time::sleep_until(until.into()).await;
            }
            let mut req = self
                .http
                .request(method.clone(), url.clone())
                .header(reqwest::header::USER_AGENT, self.ua(entity_op));
            if let Some(auth) = auth {
                req = req.header(reqwest::header::AUTHORIZATION, auth);
            }
            if let Some(body) = body {
                req = req.json(body);
            }
            // Closed never: the semaphore lives as long as the client.
            let permit = self.permits.acquire().await.ok();
            let started = Instant::now();
            let result = req.send().await;
            if let Some(m) = &self.metrics {
                let outcome = match &result {
                    Ok(r) if r.status().is_success() => "2xx",
                    Ok(r) if r.status().is_client_error() => "4xx",
                    Ok(_) => "5xx",
                    Err(_) => "transport",
                };
                m.port_call(method.as_str(), outcome, started.elapsed());
            }
            let (error, wait) = match result {
                Ok(resp) if resp.status().is_success() => {
                    tracing::debug!(%method, %path, status = resp.status().as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "port call");
                    let bytes = resp.bytes().await.map_err(|source| PortError::Transport {
                        method: method.clone(),
                        path: path.clone(),
                        source,
                    })?;
                    if bytes.is_empty() {
                        return Ok(Value::Null);
                    }
                    return serde_json::from_slice(&bytes).map_err(|e| PortError::Decode {
                        path,
                        reason: e.to_string(),
                    });
                }
                Ok(resp) => {
                    let status = resp.status();
                    let wait = retry_after(resp.headers(), SystemTime::now());
                    let text = resp.text().await.unwrap_or_default();
                    let body: String = text.chars().take(BODY_EXCERPT).collect();
                    (
                        PortError::Status {
                            method: method.clone(),
                            path: path.clone(),
                            status,
                            body,
                        },
                        wait,
                    )
                }
                Err(source) => (
                    PortError::Transport {
                        method: method.clone(),
                        path: path.clone(),
                        source,
                    },
                    None,
                ),
            };
            let retry = error.is_transient();
            if !retry || attempt >= RETRIES {
                return Err(error);
            }
            let backoff = jittered(Duration::from_millis(300u64 << attempt.min(10)).min(MAX_WAIT));
            let delay = wait.unwrap_or(backoff);
            if let Some(wait) = wait {
                let until = Instant::now() + wait;
                let mut throttled = self
                    .throttled_until
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if throttled.is_none_or(|t| t < until) {
                    *throttled = Some(until);
                }
            }
            tracing::warn!(%method, %path, attempt = attempt + 1, delay_ms = delay.as_millis() as u64, error = %error, "Port call failed; retrying");
            drop(permit);
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// The fields blueprint `blueprint` requires, as `properties.<name>` (its schema's `required`)
    /// and `relations.<name>` (relations with `required: true`), read with
    /// `GET /v1/blueprints/{blueprint}` and remembered for 120 s. Empty when Port has no such
    /// blueprint or cannot be asked (that is logged at debug level).
    pub async fn required_fields(&self, blueprint: &str) -> Arc<BTreeSet<String>> {
        Arc::clone(&self.blueprint_facts(blueprint).await.required)
    }

    /// Whether an entity of blueprint `source` may have a relation to one of `target` (one of its
    /// relations is declared with that target); read and remembered like
    /// [`required_fields`](Self::required_fields), `false` when Port cannot say.
    pub async fn relates_to(&self, source: &str, target: &str) -> bool {
        self.blueprint_facts(source).await.targets.contains(target)
    }

    async fn blueprint_facts(&self, blueprint: &str) -> Arc<BlueprintFacts> {
        let mut cache = self.blueprints.lock().await;
        if let Some((at, facts)) = cache.get(blueprint)
            && at.elapsed() < BLUEPRINT_TTL
        {
            return Arc::clone(facts);
        }
        let mut required = BTreeSet::new();
        let mut targets = BTreeSet::new();
        match self
            .call(Method::GET, &["blueprints", blueprint], &[], None, false)
            .await
        {
            Ok(v) => {
                let bp = &v["blueprint"];
                if let Some(names) = bp["schema"]["required"].as_array() {
                    required.extend(
                        names
                            .iter()
                            .filter_map(Value::as_str)
                            .map(|p| format!("properties.{p}")),
                    );
                }
                for (name, relation) in bp["relations"].as_object().into_iter().flatten() {
                    if relation["required"] == Value::Bool(true) {
                        required.insert(format!("relations.{name}"));
                    }
                    if let Some(target) = relation["target"].as_str() {
                        targets.insert(target.to_owned());
                    }
                }
            }
            Err(e) => tracing::debug!(blueprint, error = %e, "cannot read the blueprint"),
        }
        let facts = Arc::new(BlueprintFacts {
            required: Arc::new(required),
            targets,
        });
        cache.insert(blueprint.to_owned(), (Instant::now(), Arc::clone(&facts)));
        facts
    }

    /// The integration record (`GET /v1/integration/{identifier}`), or `None` when Port has none.
    ///
    /// # Errors
    /// Any [`PortError`] except a 404.
    pub async fn integration(&self) -> Result<Option<Value>, PortError> {
        let id = self.config.integration_identifier.clone();
        self.get_field(&["integration", &id], "integration").await
    }

    /// `field` of what `GET /v1/<segments>` answers; `None` on a 404.
    async fn get_field(&self, segments: &[&str], field: &str) -> Result<Option<Value>, PortError> {
        match self.call(Method::GET, segments, &[], None, false).await {
            Ok(v) => Ok(v.get(field).cloned()),
            Err(PortError::Status {
                status: StatusCode::NOT_FOUND,
                ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates the integration record (`POST /v1/integration`). `Ok(false)` when Port answers
    /// 409: it exists already (another replica created it first).
    ///
    /// # Errors
    /// Any other [`PortError`].
    pub async fn create_integration(&self, record: &Value) -> Result<bool, PortError> {
        self.create_at(&["integration"], record).await
    }

    /// Changes fields of the integration record (`PATCH /v1/integration/{identifier}`).
    ///
    /// # Errors
    /// Any [`PortError`].
    pub async fn patch_integration(&self, fields: &Value) -> Result<(), PortError> {
        let id = self.config.integration_identifier.clone();
        self.call(
            Method::PATCH,
            &["integration", &id],
            &[],
            Some(fields),
            false,
        )
        .await
        .map(drop)
    }

    /// Sets the integration's mapping (`PATCH /v1/integration/{identifier}/config`).
    ///
    /// # Errors
    /// Any [`PortError`].
    pub async fn patch_config(&self, config: &Value) -> Result<(), PortError> {
        let id = self.config.integration_identifier.clone();
        let body = serde_json::json!({ "config": config });
        self.call(
            Method::PATCH,
            &["integration", &id, "config"],
            &[],
            Some(&body),
            false,
        )
        .await
        .map(drop)
    }

    /// Blueprint `id` (`GET /v1/blueprints/{id}`), or `None` when Port has none.
    ///
    /// # Errors
    /// Any [`PortError`] except a 404.
    pub async fn blueprint(&self, id: &str) -> Result<Option<Value>, PortError> {
        self.get_field(&["blueprints", id], "blueprint").await
    }

    /// Creates a blueprint (`POST /v1/blueprints`). `Ok(false)` when it exists already (409).
    ///
    /// # Errors
    /// Any other [`PortError`].
    pub async fn create_blueprint(&self, blueprint: &Value) -> Result<bool, PortError> {
        self.create_at(&["blueprints"], blueprint).await
    }

    /// Creates what `POST /v1/<segments>` creates (an action, a scorecard, a page). `Ok(false)`
    /// when it exists already (409).
    ///
    /// # Errors
    /// Any other [`PortError`].
    pub(crate) async fn create_at(
        &self,
        segments: &[&str],
        body: &Value,
    ) -> Result<bool, PortError> {
        match self
            .call(Method::POST, segments, &[], Some(body), false)
            .await
        {
            Ok(_) => Ok(true),
            Err(PortError::Status {
                status: StatusCode::CONFLICT,
                ..
            }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Changes fields of blueprint `id` (`PATCH /v1/blueprints/{id}`).
    ///
    /// # Errors
    /// Any [`PortError`].
    pub async fn patch_blueprint(&self, id: &str, fields: &Value) -> Result<(), PortError> {
        self.call(Method::PATCH, &["blueprints", id], &[], Some(fields), false)
            .await
            .map(drop)
    }

    /// Upserts entities of one blueprint, at most [`UPSERT_BATCH_MAX`] entities and
    /// [`UPSERT_BYTES_MAX`] bytes per request, and returns the entities Port refused (207 partial
    /// answers). A request Port finds too large (413) is split in halves and sent again; a single
    /// entity that is still too large is reported as refused.
    ///
    /// # Errors
    /// The first request that failed as a whole.
    pub async fn upsert_entities(
        &self,
        blueprint: &str,
        entities: &[Value],
        options: UpsertOptions,
    ) -> Result<Vec<EntityFailure>, PortError> {
        let merge = options.merge.to_string();
        let missing = options.create_missing_related_entities.to_string();
        let query = [
            ("upsert", "true"),
            ("merge", merge.as_str()),
            ("create_missing_related_entities", missing.as_str()),
            ("validation_only", "false"),
            ("ocean_info_event_type", "http_request"),
        ];
        let mut failures = Vec::new();
        // Batches still to send, last first.
        let mut todo: Vec<&[Value]> = batches(entities).into_iter().rev().collect();
        while let Some(chunk) = todo.pop() {
            let body = json!({ "entities": chunk });
            let answer = match self
                .call(
                    Method::POST,
                    &["blueprints", blueprint, "entities", "bulk"],
                    &query,
                    Some(&body),
                    true,
                )
                .await
            {
                Ok(answer) => answer,
                Err(PortError::Status {
                    status: StatusCode::PAYLOAD_TOO_LARGE,
                    ..
                }) if chunk.len() > 1 => {
                    let (a, b) = chunk.split_at(chunk.len() / 2);
                    todo.push(b);
                    todo.push(a);
                    continue;
                }
                Err(PortError::Status {
                    status: StatusCode::PAYLOAD_TOO_LARGE,
                    ..
                }) => {
                    failures.push(EntityFailure {
                        identifier: chunk[0].get("identifier").cloned().unwrap_or(Value::Null),
                        message: "the entity is too large for Port (413)".to_owned(),
                        status: Some(413),
                    });
                    continue;
                }
                Err(e) => return Err(e),
            };
            for err in answer
                .get("errors")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let index = err
                    .get("index")
                    .and_then(Value::as_u64)
                    .and_then(|i| usize::try_from(i).ok());
                let identifier = index
                    .and_then(|i| chunk.get(i))
                    .and_then(|e| e.get("identifier").cloned());
                failures.push(EntityFailure::from_answer(err, identifier));
            }
        }
        Ok(failures)
    }

    /// Which of `identifiers` of `blueprint` exist in Port and were written by this integration: one
    /// search for the whole list.
    ///
    /// # Errors
    /// The search failed.
    pub async fn search_owned(
        &self,
        blueprint: &str,
        identifiers: &[String],
    ) -> Result<Vec<String>, PortError> {
        if identifiers.is_empty() {
            return Ok(Vec::new());
        }
        let body = json!({
            "combinator": "and",
            "rules": [
                {"property": "$blueprint", "operator": "=", "value": blueprint},
                {"property": "$identifier", "operator": "in", "value": identifiers},
                {"property": "$datasource", "operator": "contains", "value": format!("port-ocean/{}/", self.config.integration_type)},
                {"property": "$datasource", "operator": "contains", "value": format!("/{}/exporter", self.config.integration_identifier)},
            ]
        });
        let query = [
            ("exclude_calculated_properties", "true"),
            ("include", "identifier"),
            ("include", "blueprint"),
        ];
        let answer = self
            .call(
                Method::POST,
                &["entities", "search"],
                &query,
                Some(&body),
                true,
            )
            .await?;
        let entities = answer
            .get("entities")
            .and_then(Value::as_array)
            .ok_or_else(|| PortError::Decode {
                path: "/v1/entities/search".to_owned(),
                reason: "no `entities` array".to_owned(),
            })?;
        Ok(entities
            .iter()
            .filter_map(|e| {
                e.get("identifier")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .collect())
    }

    /// Deletes entities of one blueprint, [`DELETE_BATCH_MAX`] per request. Returns the identifiers
    /// Port says it deleted, and the ones it refused with its reasons (e.g. an entity others
    /// depend on, with `delete_dependents` false).
    ///
    /// # Errors
    /// The first request that failed.
    pub async fn delete_entities(
        &self,
        blueprint: &str,
        identifiers: &[String],
        delete_dependents: bool,
    ) -> Result<(Vec<String>, Vec<EntityFailure>), PortError> {
        let dependents = delete_dependents.to_string();
        let query = [
            ("delete_dependents", dependents.as_str()),
            ("ocean_info_event_type", "http_request"),
        ];
        let mut deleted = Vec::new();
        let mut refused = Vec::new();
        for chunk in identifiers.chunks(DELETE_BATCH_MAX) {
            let body = json!({ "entities": chunk });
            let answer = self
                .call(
                    Method::POST,
                    &["blueprints", blueprint, "bulk", "entities", "delete"],
                    &query,
                    Some(&body),
                    true,
                )
                .await?;
            deleted.extend(
                answer
                    .get("deletedEntities")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_owned)),
            );
            refused.extend(
                answer
                    .get("errors")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|err| EntityFailure::from_answer(err, None)),
            );
        }
        Ok((deleted, refused))
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
    use super::*;
    use axum::response::IntoResponse;
    use std::sync::atomic::{AtomicUsize, Ordering};

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
