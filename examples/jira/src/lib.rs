//! A Jira-like integration: Jira's issue and project webhooks keep `jiraIssue` and `jiraProject`
//! entities up to date. A webhook only says *which* issue or project changed; the processors fetch
//! the latest version from Jira's REST API, so an entity never goes back to an older state even
//! when webhooks arrive late or twice, and a deleted issue is deleted once Jira says 404. Because
//! each fetch gets the latest version, the processors are `latest_only`: of several queued events
//! of one issue, only the last is processed (one fetch instead of one per event during a burst).
//!
//! Run it against the built-in local Port (no configuration needed):
//!
//! ```text
//! cargo run -p ocean-example-jira
//! curl -s -X POST localhost:8000/integration/webhook -H 'content-type: application/json' \
//!      --data @examples/jira/samples/issue_created.json
//! ```
//!
//! With no `OCEAN__INTEGRATION__CONFIG__JIRA_URL`, the binary starts [`demo::DemoJira`], a small
//! stand-in for Jira's API on loopback holding the samples' issue and project, and logs its URL.
//!
//! The processors live in this library so that tests can run them in-process; `src/main.rs` only
//! mentions the crate (so the linker keeps its registrations) and calls
//! `ocean_runtime::main!(state = ocean_example_jira::Jira::connect)`.
//! The mapping is `.port/resources/port-app-config.yml`, compiled into the binary as its default.

use ocean_runtime::prelude::*;

pub mod demo;

ocean_runtime::kinds!["issue", "project"];

/// The integration's settings (`OCEAN__INTEGRATION__CONFIG__…`).
#[derive(Debug, serde::Deserialize)]
pub struct JiraSettings {
    /// `OCEAN__INTEGRATION__CONFIG__JIRA_URL`: Jira's base URL; unset starts the demo upstream.
    #[serde(default)]
    pub jira_url: Option<String>,
    /// `OCEAN__INTEGRATION__CONFIG__DEMO_LATENCY_MS`: with the demo upstream, milliseconds added to
    /// every `GET` (to play a slow Jira).
    #[serde(default)]
    pub demo_latency_ms: Option<u64>,
    /// `OCEAN__INTEGRATION__CONFIG__DEMO_ERROR_RATE`: with the demo upstream, the share of `GET`s
    /// (0 to 1) answered 429 with `Retry-After: 1`.
    #[serde(default)]
    pub demo_error_rate: Option<f64>,
}

impl JiraSettings {
    /// How the demo upstream should behave.
    ///
    /// # Errors
    /// The error rate is not between 0 and 1 (the message names its variable).
    pub fn demo_options(&self) -> Result<demo::DemoOptions, String> {
        let error_rate = self.demo_error_rate.unwrap_or(0.0);
        if !(0.0..=1.0).contains(&error_rate) {
            return Err(format!(
                "OCEAN__INTEGRATION__CONFIG__DEMO_ERROR_RATE must be between 0 and 1, not {error_rate}"
            ));
        }
        Ok(demo::DemoOptions {
            latency: std::time::Duration::from_millis(self.demo_latency_ms.unwrap_or(0)),
            error_rate,
        })
    }
}

/// Where Jira's REST API (`/rest/api/2`) is, shared by every processor; requests go through the
/// runtime's [`Upstream`] client (its retries on 429 and 5xx honouring `Retry-After`, its per-host
/// rate limit and concurrency cap, `OCEAN__UPSTREAM__…`).
#[derive(Debug)]
pub struct Jira {
    base: String,
    /// The demo upstream, when this client talks to it (kept running as long as the client).
    _demo: Option<demo::DemoJira>,
}

impl Jira {
    /// Connects to `jira_url`, or starts the demo upstream when it is unset.
    ///
    /// # Errors
    /// `jira_url` is not an `http(s)://` URL, or the demo upstream cannot bind a loopback port.
    pub async fn connect(settings: Config<JiraSettings>) -> Result<Self, String> {
        let (base, demo) = match &settings.jira_url {
            Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
                (url.trim_end_matches('/').to_owned(), None)
            }
            Some(other) => {
                return Err(format!(
                    "OCEAN__INTEGRATION__CONFIG__JIRA_URL must be an http(s):// URL, not {other:?}"
                ));
            }
            None => {
                let demo = demo::DemoJira::start_with(settings.demo_options()?)
                    .await
                    .map_err(|e| format!("cannot start the demo Jira: {e}"))?;
                tracing::info!(
                    "no OCEAN__INTEGRATION__CONFIG__JIRA_URL set: using the demo Jira at {}",
                    demo.url()
                );
                (demo.url(), Some(demo))
            }
        };
        Ok(Self { base, _demo: demo })
    }

    /// `GET /rest/api/2/{what}/{key}`: the record, or `None` when Jira answers 404.
    async fn get(
        &self,
        upstream: &Upstream,
        what: &str,
        key: &str,
    ) -> Result<Option<Value>, ProcessError> {
        let url = format!("{}/rest/api/2/{what}/{key}", self.base);
        let response = upstream.send(upstream.get(url)).await?;
        match response.status().as_u16() {
            404 => Ok(None),
            200 => Ok(Some(response.json().await?)),
            status => Err(ProcessError::from_status(status, "Jira answered")),
        }
    }
}

/// The record a webhook names, as Jira has it now: `updated` with Jira's copy, `deleted` (with the
/// webhook's copy) when the event is a deletion or Jira answers 404.
async fn latest(
    event: &WebhookEvent,
    jira: &Jira,
    upstream: &Upstream,
    what: &str,
    deleted_event: &str,
) -> Result<RawResults, ProcessError> {
    let sent = event.value_at(&format!("/{what}"))?;
    let key = event.str_at(&format!("/{what}/key"))?;
    if event.payload()["webhookEvent"] == deleted_event {
        return Ok(RawResults::deleted([sent.clone()]));
    }
    Ok(match jira.get(upstream, what, key).await? {
        Some(record) => RawResults::updated([record]),
        None => RawResults::deleted([sent.clone()]),
    })
}

/// Any `jira:issue_*` event: the issue as Jira has it now (deleted when Jira no longer has it).
#[webhook_processor(
    path = "/webhook",
    kinds = ["issue"],
    matches = r#".webhookEvent | startswith("jira:issue_")"#,
    group = ".issue.key",
    latest_only = true,
    retry(max = 3, initial = "500ms"),
)]
pub async fn issue_events(
    event: &WebhookEvent,
    jira: State<Jira>,
    upstream: State<Upstream>,
) -> Result<RawResults, ProcessError> {
    latest(event, &jira, &upstream, "issue", "jira:issue_deleted").await
}

/// Any `project_*` event: the project as Jira has it now (deleted when Jira no longer has it).
#[webhook_processor(
    path = "/webhook",
    kinds = ["project"],
    matches = r#".webhookEvent | startswith("project_")"#,
    group = ".project.key",
    latest_only = true,
    retry(max = 3, initial = "500ms"),
)]
pub async fn project_events(
    event: &WebhookEvent,
    jira: State<Jira>,
    upstream: State<Upstream>,
) -> Result<RawResults, ProcessError> {
    latest(event, &jira, &upstream, "project", "project_deleted").await
}
