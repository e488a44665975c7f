//! The runtime of ocean-rs: everything an integration needs besides its processors.
//!
//! An integration depends on this crate only. It writes `async fn`s annotated with
//! [`#[webhook_processor]`](webhook_processor), declares its kinds with [`kinds!`], and ends its
//! `main.rs` with [`main!`]. The runtime owns the rest: the webhook server, the queue and its
//! workers, the pipeline (select → authenticate → validate → handle with retries → map with jq →
//! upsert/delete in Port), the Port client, the built-in local Port, configuration and shutdown.

pub mod app;
pub mod config;
pub mod event;
pub mod extract;
pub mod integration_config;
pub mod local_port;
pub mod mapping;
pub mod pipeline;
pub mod port;
pub mod processor;
pub mod queue;
pub mod registry;
pub mod retry;
mod run;
mod server;
pub mod state;
pub mod testing;
pub mod verify;

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
/// ```no_run
/// ocean_runtime::main!();
/// ```
pub use ocean_macros::main;

/// Turns an `async fn(&WebhookEvent) -> Result<RawResults, ProcessError>` into a registered
/// webhook processor.
///
/// Keys: `path` (under `/integration`, starts with `/`), `kinds` (declared with [`kinds!`]) and
/// optionally `matches`, a jq expression over the payload that selects the processor (checked at
/// compile time), and `name` (default: the fn's name).
///
/// ```
/// use ocean_runtime::prelude::*;
///
/// ocean_runtime::kinds!["issue"];
///
/// #[webhook_processor(path = "/webhook", kinds = ["issue"], matches = r#".webhookEvent | startswith("jira:issue_")"#)]
/// async fn issue_events(event: &WebhookEvent) -> Result<RawResults, ProcessError> {
///     let issue = event.value_at("/issue")?.clone();
///     if event.payload()["webhookEvent"] == "jira:issue_deleted" {
///         return Ok(RawResults::deleted([issue]));
///     }
///     Ok(RawResults::updated([issue]))
/// }
/// # fn main() {}
/// ```
pub use ocean_macros::webhook_processor;

/// What a processor module needs: `use ocean_runtime::prelude::*;`.
pub mod prelude {
    pub use crate::event::WebhookEvent;
    pub use crate::extract::{Config, Selector, State};
    pub use crate::mapping::ResourceConfig;
    pub use crate::processor::{JobContext, ProcessError, RawResults, ResultExt, WebhookProcessor};
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
    pub use ocean_macros::__unknown_kind as unknown_kind;
}
