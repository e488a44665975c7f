//! The runtime of ocean-rs: everything an integration needs besides its processors.
//!
//! An integration depends on this crate only. It writes `async fn`s annotated with
//! [`#[webhook_processor]`](webhook_processor), declares its kinds with [`kinds!`], and ends its
//! `main.rs` with [`main!`]. The runtime owns the rest: the webhook server, the queue and its
//! workers, the pipeline (select → authenticate → validate → handle with retries → map with jq →
//! upsert/delete in Port), the Port client, the built-in local Port, configuration and shutdown.

pub mod app;
mod cli;
pub mod config;
pub mod event;
pub mod extract;
mod group_commit;
pub mod integration_config;
pub mod local_port;
pub mod mapping;
pub mod metrics;
pub mod pipeline;
pub mod port;
pub mod processor;
mod provision;
pub mod queue;
pub mod registry;
pub mod retry;
mod run;
mod server;
mod spec;
pub mod state;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod time;
pub mod upstream;
pub mod verify;

#[cfg(test)]
mod arbitrary;

pub use app::{App, RunningApp, StartError};

/// Declares the mapping kinds this crate's processors produce. Call it once, at the crate root.
///
/// Every `kinds = [...]` of a `#[webhook_processor]` in the crate is checked against this list at
/// compile time; a kind missing from it is a compile error at the kind, with a "did you mean".
///
/// ```
/// ocean_runtime::kinds!["issue", "project"];
/// # fn main() {}
/// ```
pub use ocean_macros::kinds;

/// Generates `fn main` for an integration binary: settings from the environment, processors from
/// this binary, the built-in Port when no Port credentials are set; runs until SIGINT/SIGTERM.
///
/// If the crate has `.port/resources/port-app-config.yml`, it is compiled in as the default mapping.
///
/// `state = path::to_fn` builds the value handlers receive as [`State<T>`](extract::State), once,
/// before anything is served. The fn takes nothing or a [`Config<C>`](extract::Config), may be
/// `async`, and returns `T` or `Result<T, E>` with `E: Display`; an error stops start-up with its
/// message.
///
/// ```no_run
/// # use ocean_runtime::prelude::*;
/// #[derive(Deserialize)]
/// struct JiraConfig { jira_url: String }     // OCEAN__INTEGRATION__CONFIG__JIRA_URL
///
/// struct JiraClient { base: String }
///
/// impl JiraClient {
///     async fn from_config(config: Config<JiraConfig>) -> Result<Self, String> {
///         Ok(Self { base: config.jira_url.clone() })
///     }
/// }
///
/// ocean_runtime::main!(state = JiraClient::from_config);
/// ```
pub use ocean_macros::main;

/// Turns a plain `async fn` into a registered webhook processor.
///
/// | key | value | meaning |
/// |---|---|---|
/// | `path` | `"/webhook"` | served at `POST /integration/webhook`; several processors may share it |
/// | `kinds` | `["issue"]` | the mapping kinds it produces; each must be declared in [`kinds!`] |
/// | `matches` | jq | selects the processor when true for the payload (checked at compile time) |
/// | `name` | `"issues"` | unique on its path; default the fn's name |
/// | `group` | jq | ordering key: events with the same key run one at a time, in arrival order |
/// | `latest_only` | `true` | with `group`: of several waiting events of a group only the latest is processed (for processors that fetch the current state); needs every processor of the path to say so |
/// | `validate` | jq or `path::to_fn` | a predicate over the payload, or `fn(&WebhookEvent) -> Result<(), E>`; failures are permanent |
/// | `authenticate` | verifier or `path::to_fn` | checked at ingress over the raw body (401): `github(secret = "…")`, `jira(secret = "…")`, `token(header = "…", secret = "…")`, `standard_webhooks(secret = "…", tolerance = "5m")`, or `fn(&WebhookEvent) -> bool` / `Result<(), E>` |
/// | `retry(…)` | `max = 3, initial = "1s", max_delay = "30s", base = 2` | backoff for retryable failures (these are Ocean's defaults) |
/// | `timeout` | `"90s"` | time limit of one job, retries included (default `OCEAN__MAX_EVENT_PROCESSING_SECONDS`) |
/// | `should_process` | `path::to_fn` | `fn(&WebhookEvent) -> bool`, after `matches` |
/// | `matching_kinds` | `path::to_fn` | `fn(&WebhookEvent) -> impl IntoIterator<Item: ToString>`, a subset of `kinds` |
/// | `before` / `after` | `path::to_fn` | `async fn(&JobContext<'_>)` / `async fn(&JobContext<'_>, &RawResults)` |
/// | `on_error` | `path::to_fn` | `async fn(&JobContext<'_>, &ProcessError)`, for every failure |
/// | `on_cancel` | `path::to_fn` | `async fn(&WebhookEvent)`, when the job times out or the app stops |
///
/// A verifier's `secret` names an integration config field: `secret = "gh_secret"` reads
/// `OCEAN__INTEGRATION__CONFIG__GH_SECRET` (comma-separated for rotation; default field
/// `webhook_secret`). Durations are written `"500ms"`, `"30s"`, `"2m"`, `"1h"` or `"1m30s"`.
///
/// The fn's arguments are taken by type, in any order (see [`extract`]): `&WebhookEvent`,
/// `&ResourceConfig`, `&JobContext`, [`Selector<T>`](extract::Selector),
/// [`State<T>`](extract::State), [`Config<T>`](extract::Config). It returns
/// `Result<RawResults, E>` for any `E: Into<ProcessError>`.
///
/// ```
/// use ocean_runtime::prelude::*;
///
/// ocean_runtime::kinds!["issue"];
///
/// #[derive(Deserialize)]
/// struct IssueSelector { jql: Option<String> }
///
/// #[webhook_processor(
///     path = "/webhook",
///     kinds = ["issue"],
///     matches = r#".webhookEvent | startswith("jira:issue_")"#,
///     group = ".issue.key",
///     validate = ".issue.key != null",
///     authenticate = jira(secret = "jira_webhook_secret"),
///     retry(max = 5, initial = "500ms"),
///     timeout = "30s",
/// )]
/// async fn issue_events(
///     event: &WebhookEvent,
///     selector: Selector<IssueSelector>,
/// ) -> Result<RawResults, ProcessError> {
///     let _jql = selector.jql.as_deref();
///     let issue = event.value_at("/issue")?.clone();
///     if event.payload()["webhookEvent"] == "jira:issue_deleted" {
///         return Ok(RawResults::deleted([issue]));
///     }
///     Ok(RawResults::updated([issue]))
/// }
/// # fn main() {}
/// ```
///
/// Mistakes are compile errors at the offending token: an undeclared kind (with "did you mean"),
/// a jq error in `matches`, `group` or `validate` (with its column), a fn that is not `async`,
/// takes `self` or is generic, an unsupported argument or return type, an unknown or repeated key,
/// a missing `path` or `kinds`, a bad `path`, empty or repeated kinds, a bad duration.
pub use ocean_macros::webhook_processor;

/// What a processor module needs: `use ocean_runtime::prelude::*;`.
pub mod prelude {
    pub use crate::event::WebhookEvent;
    pub use crate::extract::{Config, Selector, State};
    pub use crate::mapping::ResourceConfig;
    pub use crate::processor::{JobContext, ProcessError, RawResults, ResultExt, WebhookProcessor};
    pub use crate::upstream::Upstream;
    pub use crate::webhook_processor;
    pub use serde::Deserialize;
    pub use serde_json::{Value, json};
}

#[doc(hidden)]
pub mod __private {
    pub use crate::config::{ConfigError, IntegrationInfo};
    pub use crate::event::WebhookEvent;
    pub use crate::extract::{FromJob, IntoResults, Probe, ProbeKnown, ProbeUnknown, Requirement};
    pub use crate::integration_config::IntegrationVars;
    pub use crate::processor::{
        BoxFuture, JobContext, ProcessError, RawResults, Registration, WebhookProcessor,
    };
    pub use crate::retry::RetryPolicy;
    pub use crate::run::run_main;
    pub use crate::state::{StateFuture, StateInit, StateOut, call_state, via};
    pub use crate::verify::{AuthOutcome, Authenticate};
    pub use core::time::Duration;
    pub use inventory;
    #[cfg(feature = "mimalloc")]
    pub use mimalloc::MiMalloc;
    pub use ocean_macros::__unknown_kind as unknown_kind;
}

/// Installs the allocator of ocean-rs binaries as the `#[global_allocator]`: mimalloc with the
/// default `mimalloc` feature, nothing (the system allocator) without it. `main!` calls it.
///
/// On the 2-core development machine, mimalloc raised webhook acceptance by about 40% and the
/// memory queue's share of a bare axum handler's throughput from 0.6x to 0.9x (`BENCHMARKS.md`):
/// the system allocator's arena locks were contended by the threads that pass each request along.
/// A binary with its own global allocator turns off this crate's default features.
#[cfg(feature = "mimalloc")]
#[macro_export]
macro_rules! global_allocator {
    () => {
        #[global_allocator]
        static OCEAN_GLOBAL_ALLOCATOR: $crate::__private::MiMalloc = $crate::__private::MiMalloc;
    };
}

/// Installs the allocator of ocean-rs binaries as the `#[global_allocator]`: with the default
/// `mimalloc` feature turned off, as here, it installs nothing and the system allocator stays.
#[cfg(not(feature = "mimalloc"))]
#[macro_export]
macro_rules! global_allocator {
    () => {};
}
