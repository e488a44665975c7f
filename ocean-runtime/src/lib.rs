//! The runtime of ocean-rs: everything an integration needs besides its processors.
//!
//! # The model
//!
//! An integration is a binary that keeps Port's catalog up to date from webhooks. Its author writes
//! plain `async fn`s and annotates each with [`#[webhook_processor]`](webhook_processor): the path
//! it listens on, the mapping kinds it produces, a jq `matches` filter, and optionally a `group`
//! key for ordering, retries, a timeout, a verifier and hooks. [`kinds!`] declares the kinds once
//! per crate, and [`main!`] writes `fn main`. Mistakes the macros can see are compile errors.
//!
//! A handler takes what it needs by type, in any order: the [`WebhookEvent`], the
//! [`ResourceConfig`] and [`JobContext`] of the job, a typed [`Selector<T>`](Selector) of the
//! mapping resource, shared [`State<T>`](State) (such as the [`Upstream`] HTTP client), or the
//! integration's own [`Config<T>`](Config). It returns [`RawResults`]: raw records to upsert or
//! delete, which the mapping turns into Port entities with jq. A [`ProcessError`] says whether
//! to retry.
//!
//! The runtime does the rest, in this order: the webhook is verified, stored durably and answered
//! 200; a worker selects the processors, runs each job (with retries and a timeout), maps the
//! results and writes them to Port; the event is acknowledged once Port confirmed them, or kept
//! as a dead letter. Events sharing a group key run one at a time, in arrival order. Settings come
//! from `OCEAN__…` variables ([`Settings`]); without Port credentials, the built-in
//! [`LocalPort`] stands in for Port.
//!
//! ```no_run
//! use ocean_runtime::prelude::*;
//!
//! ocean_runtime::kinds!["issue"];
//!
//! #[webhook_processor(path = "/webhook", kinds = ["issue"], matches = ".issue != null")]
//! async fn issues(event: &WebhookEvent) -> Result<RawResults, ProcessError> {
//!     Ok(RawResults::updated([event.value_at("/issue")?.clone()]))
//! }
//!
//! // …and, at the end of `main.rs`: `ocean_runtime::main!();`
//! # fn main() {}
//! ```
//!
//! [`prelude`] is what a processor module imports; [`error`] holds every error type; `testing`
//! (the `testing` feature) runs an integration in tests. `ARCHITECTURE.md` in the repository shows
//! where each part lives, and `public-api.txt` lists this crate's public surface.

mod app;
mod cli;
mod config;
mod envelope;
mod event;
mod extract;
mod group_commit;
mod integration_config;
mod local_port;
mod mapping;
mod metrics;
mod pipeline;
mod port;
mod processor;
mod provision;
mod queue;
mod registry;
mod retry;
mod run;
mod server;
mod spec;
mod state;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod time;
mod upstream;
mod verify;

#[cfg(test)]
mod arbitrary;

pub use config::{Config as Settings, DEFAULT_EVENTS_IN_FLIGHT};
pub use event::WebhookEvent;
pub use extract::{Config, Selector, State};
pub use local_port::{LocalPort, LocalPortOptions};
pub use mapping::ResourceConfig;
pub use processor::{
    BoxFuture, JobContext, ProcessError, RawResults, Registration, ResultExt, WebhookProcessor,
};
pub use retry::{RetryPolicy, is_retryable_status};
pub use upstream::{Rate, Upstream, UpstreamSettings};

/// Every error type of the crate, for matching on causes.
pub mod error {
    pub use crate::app::StartError;
    pub use crate::config::ConfigError;
    pub use crate::envelope::RecordError;
    pub use crate::event::InvalidJson;
    pub use crate::group_commit::StorageError;
    pub use crate::local_port::LocalPortError;
    pub use crate::port::PortError;
    pub use crate::queue::QueueError;
    pub use crate::queue::disk::DiskQueueError;
    pub use crate::queue::redis::RedisQueueError;
    pub use crate::registry::RegistryError;
    pub use crate::state::StateError;
}

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
/// `state = path::to_fn` builds the value handlers receive as [`State<T>`](State), once,
/// before anything is served. The fn takes nothing or a [`Config<C>`](Config), may be
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
///
/// A crate that knows the runtime under another path (a company facade that re-exports it, a
/// renamed dependency) says where it is with `crate`, here and on every `#[webhook_processor]`:
/// `my_facade::ocean::main!(crate = "my_facade::ocean")`. Generated code names nothing of the
/// runtime outside that path's `__private` module.
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
/// | `crate` | `"my_facade::ocean"` | where the runtime is, for a crate that reaches it through a facade or under another name (default `::ocean_runtime`); `main!` takes it too |
///
/// A verifier's `secret` names an integration config field: `secret = "gh_secret"` reads
/// `OCEAN__INTEGRATION__CONFIG__GH_SECRET` (comma-separated for rotation; default field
/// `webhook_secret`). Durations are written `"500ms"`, `"30s"`, `"2m"`, `"1h"` or `"1m30s"`.
///
/// The fn's arguments are taken by type, in any order: `&WebhookEvent`,
/// `&ResourceConfig`, `&JobContext`, [`Selector<T>`](Selector),
/// [`State<T>`](State), [`Config<T>`](Config). It returns
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
/// a missing `path` or `kinds`, a bad `path`, empty or repeated kinds, a bad duration, and two
/// processors of one module with the same `name` on the same `path` (rustc says "the name
/// `duplicate_processor_name_…` is defined multiple times" at the second `name`; across modules
/// the app refuses the pair when it starts).
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
    pub use crate::app::{App, RunningApp};
    pub use crate::config::{ConfigError, IntegrationInfo};
    pub use crate::event::WebhookEvent;
    pub use crate::extract::{FromJob, IntoResults, Probe, ProbeKnown, ProbeUnknown, Requirement};
    pub use crate::integration_config::IntegrationVars;
    pub use crate::mapping::PortAppConfig;
    pub use crate::mapping::compiled::{
        CompiledMapping, Entity, IssueKind, MappedItems, MappingError, MappingIssue,
    };
    pub use crate::processor::{
        BoxFuture, JobContext, ProcessError, RawResults, Registration, WebhookProcessor,
    };
    pub use crate::registry::Registry;
    pub use crate::retry::RetryPolicy;
    pub use crate::run::run_main;
    pub use crate::state::{StateFuture, StateInit, StateOut, call_state, via};
    pub use crate::verify::{AuthOutcome, Authenticate};
    pub use crate::{global_allocator, state_init};
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
