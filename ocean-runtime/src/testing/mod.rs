//! A harness for integration tests: the real app, the built-in Port and real HTTP on loopback.
//!
//! ```no_run
//! use ocean_runtime::testing::{TestApp, eventually};
//! use serde_json::json;
//! use std::time::Duration;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let app = TestApp::builder().mapping(include_str!("../../../examples/jira/.port/resources/port-app-config.yml")).start().await?;
//! let (status, _) = app.post("/webhook", &json!({"webhookEvent": "jira:issue_created"})).await?;
//! assert_eq!(status, 200);
//! let entity = eventually("the issue to appear", Duration::from_secs(10), || app.entity("jiraIssue", "PROJ-1")).await;
//! app.shutdown().await;
//! # Ok(()) }
//! ```

mod binary;
mod redis_server;

pub use binary::{TestBinary, url_after};
pub use redis_server::RedisServer;

pub use crate::verify::{github_signature, standard_webhooks_signature};

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::app::{App, RunningApp, StartError};
use crate::config::{Config, ConfigError, IntegrationInfo};
use crate::extract::Shared;
use crate::processor::Registration;
use crate::registry::{Registry, RegistryError};
use crate::state::StateInit;

/// The harness could not start the app or talk to it.
///
/// Returned by the requests of [`TestApp`].
#[derive(Debug, thiserror::Error)]
pub enum TestError {
    /// Bad settings.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No usable processors.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The app did not start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// An HTTP call failed.
    #[error(transparent)]
    Http(#[from] reqwest::Error),
    /// The temporary folder could not be prepared.
    #[error("test folder: {0}")]
    Io(#[from] std::io::Error),
    /// The built-in Port answered something unexpected.
    #[error("unexpected answer from the built-in Port: {0}")]
    Unexpected(String),
    /// A mapping given to [`TestApp::set_mapping`] is not a port app config.
    #[error("mapping: {0}")]
    Mapping(String),
}

/// Settings for a [`TestApp`].
#[derive(Debug)]
pub struct TestAppBuilder {
    mapping: Option<String>,
    env: Vec<(String, String)>,
    registry: Option<Registry>,
    paths: Option<Vec<String>>,
    data_dir: Option<PathBuf>,
    states: Vec<Shared>,
    state_init: Option<StateInit>,
}

/// A running app on free loopback ports with its own built-in Port in a temporary folder.
///
/// See [the module example](crate::testing).
#[derive(Debug)]
pub struct TestApp {
    app: RunningApp,
    /// The integration's identifier (its record in the built-in Port).
    integration: String,
    dir: PathBuf,
    keep_dir: bool,
    http: reqwest::Client,
}

impl TestAppBuilder {
    /// The mapping (port-app-config YAML) seeded into the built-in Port.
    #[must_use]
    pub fn mapping(mut self, yaml: impl Into<String>) -> Self {
        self.mapping = Some(yaml.into());
        self
    }

    /// Sets an `OCEAN__…` variable for this app only.
    #[must_use]
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Uses these processors instead of the ones registered in the test binary.
    #[must_use]
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Uses only the registered processors on these paths (a test binary collects every processor
    /// it links; this keeps one test's processors and their start-up checks out of another's app).
    #[must_use]
    pub fn paths(mut self, paths: &[&str]) -> Self {
        self.paths = Some(paths.iter().map(|p| (*p).to_owned()).collect());
        self
    }

    /// Builds the state like `main!(state = …)`: pass `ocean_runtime::state_init!(path::to_fn)`.
    #[must_use]
    pub fn state_init(mut self, init: StateInit) -> Self {
        self.state_init = Some(init);
        self
    }

    /// Gives handlers taking `State<T>` this value (`T` is the value's type).
    #[must_use]
    pub fn state<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.states.push(std::sync::Arc::new(value));
        self
    }

    /// Keeps the built-in Port's data in `dir` (not removed at shutdown), e.g. to test a restart.
    #[must_use]
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Starts the app.
    ///
    /// # Errors
    /// Settings, processors, the folder or the start-up failed.
    pub async fn start(self) -> Result<TestApp, TestError> {
        let keep_dir = self.data_dir.is_some();
        let dir = self.data_dir.unwrap_or_else(|| {
            std::env::temp_dir().join(format!("ocean-test-{}", uuid::Uuid::new_v4().simple()))
        });
        let resources = dir.join("resources");
        std::fs::create_dir_all(&resources)?;
        if let Some(mapping) = &self.mapping {
            std::fs::write(resources.join("port-app-config.yml"), mapping)?;
        }
        let mut vars: Vec<(String, String)> = vec![
            ("OCEAN__APPLICATION__PORT".into(), "0".into()),
            ("OCEAN__LOCAL_PORT__PORT".into(), "0".into()),
            (
                "OCEAN__LOCAL_PORT__DATA_DIR".into(),
                dir.join("port").display().to_string(),
            ),
            (
                "OCEAN__RESOURCES_PATH".into(),
                resources.display().to_string(),
            ),
            (
                "OCEAN__QUEUE__PATH".into(),
                dir.join("queue").display().to_string(),
            ),
        ];
        vars.extend(self.env);
        let info = IntegrationInfo {
            name: "test",
            version: "0.0.0",
            default_mapping: None,
            default_resources: &[],
            spec: None,
        };
        let config = Config::from_vars(info, vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
        let registry = match (self.registry, &self.paths) {
            (Some(r), _) => r,
            (None, None) => Registry::from_inventory()?,
            (None, Some(paths)) => Registry::from_registrations(
                inventory::iter::<Registration>().filter(|r| paths.iter().any(|p| p == r.path)),
            )?,
        };
        let integration = config.integration_identifier.clone();
        let mut app = App::new(config, registry);
        if let Some(init) = self.state_init {
            app = app.state_init(init);
        }
        for state in self.states {
            app = app.state(state);
        }
        let app = app.start().await?;
        Ok(TestApp {
            app,
            integration,
            dir,
            keep_dir,
            http: reqwest::Client::new(),
        })
    }
}

impl TestApp {
    /// A builder with no mapping and default settings.
    #[must_use]
    pub fn builder() -> TestAppBuilder {
        TestAppBuilder {
            mapping: None,
            env: Vec::new(),
            registry: None,
            paths: None,
            data_dir: None,
            states: Vec::new(),
            state_init: None,
        }
    }

    /// The webhook server's base URL.
    #[must_use]
    pub fn url(&self) -> String {
        self.app.ingress_url()
    }

    /// The built-in Port's base URL.
    #[must_use]
    pub fn port_url(&self) -> &str {
        self.app.port_url()
    }

    /// The folder holding this app's data.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Posts a JSON webhook to `/integration{path}`; returns the status and the JSON answer.
    ///
    /// # Errors
    /// The request failed.
    pub async fn post(&self, path: &str, body: &Value) -> Result<(u16, Value), TestError> {
        self.post_raw(
            path,
            serde_json::to_vec(body).unwrap_or_default(),
            &[("content-type", "application/json")],
        )
        .await
    }

    /// Posts raw bytes with these headers to `/integration{path}`.
    ///
    /// # Errors
    /// The request failed.
    pub async fn post_raw(
        &self,
        path: &str,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> Result<(u16, Value), TestError> {
        let mut req = self
            .http
            .post(format!("{}/integration{path}", self.url()))
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let body = resp.json().await.unwrap_or(Value::Null);
        Ok((status, body))
    }

    /// An `Authorization` header value for the built-in Port (`Bearer …`).
    ///
    /// # Errors
    /// The built-in Port did not answer with a token.
    pub async fn port_token(&self) -> Result<String, TestError> {
        Ok(format!(
            "Bearer {}",
            local_port_token(&self.http, self.port_url()).await?
        ))
    }

    /// The built-in Port's URL with these path segments (each percent-encoded).
    fn port_endpoint(&self, segments: &[&str]) -> Result<reqwest::Url, TestError> {
        let mut url = reqwest::Url::parse(self.port_url())
            .map_err(|e| TestError::Unexpected(e.to_string()))?;
        url.path_segments_mut()
            .map_err(|()| TestError::Unexpected("base URL".to_owned()))?
            .extend(segments);
        Ok(url)
    }

    /// Creates a blueprint in the built-in Port (`POST /v1/blueprints`).
    ///
    /// # Errors
    /// The request failed or the built-in Port refused the blueprint.
    pub async fn create_blueprint(&self, blueprint: &Value) -> Result<(), TestError> {
        self.http
            .post(self.port_endpoint(&["v1", "blueprints"])?)
            .header("authorization", self.port_token().await?)
            .json(blueprint)
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    /// Replaces the mapping in the integration's record in the built-in Port
    /// (`PATCH /v1/integration/{id}/config`), as an operator editing it in Port does; the app
    /// takes it up on its next refresh. The YAML is only parsed, not compiled, so a version with a
    /// bad jq expression can be set too.
    ///
    /// # Errors
    /// The YAML is not a port app config, or the request failed.
    pub async fn set_mapping(&self, yaml: &str) -> Result<(), TestError> {
        let config = crate::mapping::PortAppConfig::from_yaml(yaml)
            .map_err(|e| TestError::Mapping(e.to_string()))?;
        let config = serde_json::to_value(config).map_err(|e| TestError::Mapping(e.to_string()))?;
        let url = self.port_endpoint(&["v1", "integration", &self.integration, "config"])?;
        self.http
            .patch(url)
            .header("authorization", self.port_token().await?)
            .json(&json!({ "config": config }))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    /// Reads one entity from the built-in Port over HTTP; `None` when it does not exist.
    ///
    /// # Errors
    /// The request failed or the answer was not Port's.
    pub async fn entity(
        &self,
        blueprint: &str,
        identifier: &str,
    ) -> Result<Option<Value>, TestError> {
        let url = self.port_endpoint(&["v1", "blueprints", blueprint, "entities", identifier])?;
        let resp = self
            .http
            .get(url)
            .header("authorization", self.port_token().await?)
            .send()
            .await?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let answer: Value = resp.error_for_status()?.json().await?;
        answer
            .get("entity")
            .cloned()
            .map(Some)
            .ok_or_else(|| TestError::Unexpected(answer.to_string()))
    }

    /// Reads every entity of a blueprint from the built-in Port over HTTP.
    ///
    /// # Errors
    /// The request failed or the answer was not Port's.
    pub async fn entities(&self, blueprint: &str) -> Result<Vec<Value>, TestError> {
        port_entities(&self.http, self.port_url(), blueprint).await
    }

    /// The app's `/metrics` text.
    ///
    /// # Errors
    /// The request failed.
    pub async fn metrics(&self) -> Result<String, TestError> {
        metrics_of(&self.http, &self.url()).await
    }

    /// Events the queue still holds.
    pub async fn queue_depth(&self) -> usize {
        self.app.queue_depth().await
    }

    /// Shuts the app down and removes its temporary folder.
    pub async fn shutdown(self) {
        self.app.shutdown().await;
        if !self.keep_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The value of one series in a Prometheus text (`series` is the metric name with its labels, as
/// printed, e.g. `ocean_mapping_loads_total{outcome="refused"}`); 0 when it is not there yet.
#[must_use]
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// The `/metrics` text of the ocean-rs app or binary at `base_url` (its webhook server).
///
/// # Errors
/// The request failed.
///
/// Parse a series from the text with [`metric`].
pub async fn metrics_of(http: &reqwest::Client, base_url: &str) -> Result<String, TestError> {
    Ok(http
        .get(format!("{base_url}/metrics"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?)
}

/// Waits until the ocean-rs binary listening at `ingress_url` reports an empty queue on
/// `/metrics`, polling every 10 ms for at most `wait`. An event is acknowledged only once Port
/// confirmed its entities, so they are all visible then.
///
/// # Errors
/// A request failed, or the queue still held events after `wait` ([`TestError::Unexpected`]
/// with the depth).
pub async fn drained(
    http: &reqwest::Client,
    ingress_url: &str,
    wait: Duration,
) -> Result<(), TestError> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let depth = metric(&metrics_of(http, ingress_url).await?, "ocean_queue_depth");
        if depth == 0.0 {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(TestError::Unexpected(format!(
                "{depth} events still queued after {wait:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An access token from the built-in Port at `port_url` (which gives one for any non-empty id
/// and secret, as Port does for valid ones).
///
/// # Errors
/// The request failed or the answer had no token.
///
/// Read what was written with [`port_entities`].
pub async fn local_port_token(http: &reqwest::Client, port_url: &str) -> Result<String, TestError> {
    let answer: Value = http
        .post(format!("{port_url}/v1/auth/access_token"))
        .json(&json!({"clientId": "test", "clientSecret": "test"}))
        .send()
        .await?
        .json()
        .await?;
    answer
        .get("accessToken")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| TestError::Unexpected(answer.to_string()))
}

/// Every entity of `blueprint` in the built-in Port at `port_url` (with a token of its own).
///
/// # Errors
/// The request failed or the answer was not Port's.
///
/// Authenticates with [`local_port_token`].
pub async fn port_entities(
    http: &reqwest::Client,
    port_url: &str,
    blueprint: &str,
) -> Result<Vec<Value>, TestError> {
    let mut url =
        reqwest::Url::parse(port_url).map_err(|e| TestError::Unexpected(e.to_string()))?;
    url.path_segments_mut()
        .map_err(|()| TestError::Unexpected("base URL".to_owned()))?
        .extend(["v1", "blueprints", blueprint, "entities"]);
    let answer: Value = http
        .get(url)
        .bearer_auth(local_port_token(http, port_url).await?)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    answer
        .get("entities")
        .and_then(Value::as_array)
        .cloned()
        .ok_or_else(|| TestError::Unexpected(answer.to_string()))
}

/// Polls `check` every 20 ms until it yields `Some`, and returns that value.
///
/// # Panics
/// When `timeout` passes first, naming `what` (this is a test helper).
///
/// See [the module example](crate::testing).
pub async fn eventually<T, E, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    E: std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, E>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match check().await {
            Ok(Some(v)) => return v,
            Ok(None) => {}
            Err(e) => last_error = Some(format!("{e:?}")),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what} (last error: {last_error:?})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
