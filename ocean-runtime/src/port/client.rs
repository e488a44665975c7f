//! The client's transport (one pooled HTTP client, the token on every call, retries that honour
//! `Retry-After`, a bound on requests at once) and the Port API calls the runtime makes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use reqwest::{Method, StatusCode, Url};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::backoff::{MAX_WAIT, jittered, retry_after};
use super::{
    BODY_EXCERPT, DELETE_BATCH_MAX, EntityFailure, PortClient, PortClientConfig, PortError,
    RETRIES, UpsertOptions, batches,
};
use crate::metrics::Metrics;

impl PortClient {
    /// A client for `config`.
    ///
    /// # Errors
    /// [`PortError::BaseUrl`] when the base URL does not parse.
    pub(crate) fn new(config: PortClientConfig) -> Result<Self, PortError> {
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
    pub(crate) fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The integration's identifier in Port.
    #[must_use]
    pub(crate) fn integration_identifier(&self) -> &str {
        &self.config.integration_identifier
    }

    /// The base URL in use.
    #[must_use]
    pub(crate) fn base_url(&self) -> &str {
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

    /// One authenticated call with retries and one token refresh on 401.
    pub(super) async fn call(
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

    pub(super) async fn call_once(
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

    pub(super) async fn send(
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

    /// The integration record (`GET /v1/integration/{identifier}`), or `None` when Port has none.
    ///
    /// # Errors
    /// Any [`PortError`] except a 404.
    pub(crate) async fn integration(&self) -> Result<Option<Value>, PortError> {
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
    pub(crate) async fn create_integration(&self, record: &Value) -> Result<bool, PortError> {
        self.create_at(&["integration"], record).await
    }

    /// Changes fields of the integration record (`PATCH /v1/integration/{identifier}`).
    ///
    /// # Errors
    /// Any [`PortError`].
    pub(crate) async fn patch_integration(&self, fields: &Value) -> Result<(), PortError> {
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
    pub(crate) async fn patch_config(&self, config: &Value) -> Result<(), PortError> {
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
    pub(crate) async fn blueprint(&self, id: &str) -> Result<Option<Value>, PortError> {
        self.get_field(&["blueprints", id], "blueprint").await
    }

    /// Creates a blueprint (`POST /v1/blueprints`). `Ok(false)` when it exists already (409).
    ///
    /// # Errors
    /// Any other [`PortError`].
    pub(crate) async fn create_blueprint(&self, blueprint: &Value) -> Result<bool, PortError> {
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
    pub(crate) async fn patch_blueprint(&self, id: &str, fields: &Value) -> Result<(), PortError> {
        self.call(Method::PATCH, &["blueprints", id], &[], Some(fields), false)
            .await
            .map(drop)
    }

    /// Upserts entities of one blueprint, at most [`UPSERT_BATCH_MAX`](super::UPSERT_BATCH_MAX) entities and
    /// [`UPSERT_BYTES_MAX`](super::UPSERT_BYTES_MAX) bytes per request, and returns the entities Port refused (207 partial
    /// answers). A request Port finds too large (413) is split in halves and sent again; a single
    /// entity that is still too large is reported as refused.
    ///
    /// # Errors
    /// The first request that failed as a whole.
    pub(crate) async fn upsert_entities(
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
    pub(crate) async fn search_owned(
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
    pub(crate) async fn delete_entities(
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
