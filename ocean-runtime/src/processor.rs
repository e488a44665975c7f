//! The processor contract: what a processor is, what it returns, and how it is registered.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde_json::Value;

use crate::event::WebhookEvent;
use crate::extract::{Extensions, Requirement};
use crate::mapping::ResourceConfig;
use crate::retry::RetryPolicy;
use crate::verify::Authenticate;

/// A boxed, `Send` future: the return type of the processor trait's async methods (see the
/// example on [`WebhookProcessor`]).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a processor's handler found: third-party items to upsert and items to delete.
///
/// Items are raw third-party objects; the mapping of the matched resource turns them into entities.
/// Deleted items need only enough fields for the mapping to compute `identifier` and `blueprint`.
///
/// ```
/// use ocean_runtime::RawResults;
/// use serde_json::json;
///
/// let issue = json!({"key": "A-1", "fields": {"summary": "Broken"}});
/// let results = RawResults::updated([issue]);
/// assert_eq!(results.updated.len(), 1);
///
/// // A deletion needs only what the mapping reads for `identifier` and `blueprint`.
/// let gone = RawResults::deleted([json!({"key": "A-2"})]);
/// assert!(gone.updated.is_empty());
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawResults {
    /// Items that exist now; upserted if they pass the resource's selector.
    pub updated: Vec<Value>,
    /// Items that are gone; deleted from Port if they pass the resource's selector.
    pub deleted: Vec<Value>,
}

impl RawResults {
    /// Results with these items updated and nothing deleted.
    pub fn updated(items: impl IntoIterator<Item = Value>) -> Self {
        Self {
            updated: items.into_iter().collect(),
            deleted: Vec::new(),
        }
    }

    /// Results with these items deleted and nothing updated.
    pub fn deleted(items: impl IntoIterator<Item = Value>) -> Self {
        Self {
            updated: Vec::new(),
            deleted: items.into_iter().collect(),
        }
    }

    /// Results with nothing to do.
    #[must_use]
    pub fn none() -> Self {
        Self::default()
    }
}

/// Whether a failure may go away if the handler is called again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Transient (network error, upstream 429 or 5xx): retried by the processor's policy.
    Retryable,
    /// Final (bad payload, upstream 4xx, a bug): never retried.
    Permanent,
}

/// A processor failure, with whether retrying may help.
///
/// Retryable failures are retried by the processor's [`RetryPolicy`]; permanent ones go to the
/// dead letters at once. `?` converts `reqwest` errors (retryable when they are timeouts,
/// connection failures, 429 or 5xx), `serde_json` errors (permanent) and strings (permanent).
///
/// ```
/// use ocean_runtime::ProcessError;
///
/// fn check(status: u16) -> Result<(), ProcessError> {
///     match status {
///         200 => Ok(()),
///         404 => Err(ProcessError::permanent("the issue is gone")),
///         other => Err(ProcessError::from_status(other, "Jira answered")),
///     }
/// }
/// assert!(check(503).unwrap_err().is_retryable());
/// assert!(!check(404).unwrap_err().is_retryable());
/// ```
#[derive(Debug)]
pub struct ProcessError {
    retry: Retry,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl ProcessError {
    /// A failure that retrying may fix.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            retry: Retry::Retryable,
            message: message.into(),
            source: None,
        }
    }

    /// A failure that retrying cannot fix.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            retry: Retry::Permanent,
            message: message.into(),
            source: None,
        }
    }

    /// Attaches the underlying error.
    #[must_use]
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Whether the processor's retry policy applies to this failure.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        self.retry == Retry::Retryable
    }
}

impl fmt::Display for ProcessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ProcessError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<reqwest::Error> for ProcessError {
    /// Network failures, timeouts and the upstream statuses of
    /// [`is_retryable_status`](crate::retry::is_retryable_status) are retryable; anything else is not.
    fn from(err: reqwest::Error) -> Self {
        let retryable = err.is_timeout()
            || err.is_connect()
            || err.is_request()
            || err
                .status()
                .is_some_and(|s| crate::retry::is_retryable_status(s.as_u16()));
        let base = if retryable {
            Self::retryable("upstream request failed")
        } else {
            Self::permanent("upstream request failed")
        };
        base.with_source(err)
    }
}

impl From<serde_json::Error> for ProcessError {
    fn from(err: serde_json::Error) -> Self {
        Self::permanent("invalid JSON").with_source(err)
    }
}

impl From<String> for ProcessError {
    /// A plain message is a permanent failure; say [`ProcessError::retryable`] when it is not.
    fn from(message: String) -> Self {
        Self::permanent(message)
    }
}

impl From<&str> for ProcessError {
    /// A plain message is a permanent failure; say [`ProcessError::retryable`] when it is not.
    fn from(message: &str) -> Self {
        Self::permanent(message)
    }
}

impl ProcessError {
    /// A failure from an upstream HTTP status: 408, 429 and 5xx are retryable, others permanent.
    pub fn from_status(status: u16, message: impl Into<String>) -> Self {
        let message = format!("{} (HTTP {status})", message.into());
        if status == 408 || status == 429 || (500..600).contains(&status) {
            Self::retryable(message)
        } else {
            Self::permanent(message)
        }
    }

    /// The message, without the source.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// Says explicitly whether an error is worth retrying.
///
/// ```
/// use ocean_runtime::{ProcessError, ResultExt};
///
/// fn parse(text: &str) -> Result<u32, ProcessError> {
///     text.parse::<u32>().permanent("the payload's count")
/// }
/// let e = parse("many").unwrap_err();
/// assert!(!e.is_retryable());
/// assert_eq!(e.message(), "the payload's count");
/// ```
pub trait ResultExt<T> {
    /// Any error is retryable.
    ///
    /// # Errors
    /// The error, as a retryable [`ProcessError`].
    fn retryable(self, context: &str) -> Result<T, ProcessError>;
    /// Any error is permanent.
    ///
    /// # Errors
    /// The error, as a permanent [`ProcessError`].
    fn permanent(self, context: &str) -> Result<T, ProcessError>;
}

impl<T, E: std::error::Error + Send + Sync + 'static> ResultExt<T> for Result<T, E> {
    fn retryable(self, context: &str) -> Result<T, ProcessError> {
        self.map_err(|e| ProcessError::retryable(context).with_source(e))
    }
    fn permanent(self, context: &str) -> Result<T, ProcessError> {
        self.map_err(|e| ProcessError::permanent(context).with_source(e))
    }
}

/// One job: a processor run for one event against one matching mapping resource. Handlers and
/// the `before`, `after` and `on_error` hooks take it.
///
/// ```
/// use ocean_runtime::prelude::*;
/// # ocean_runtime::kinds!["issue"];
///
/// async fn log_attempt(job: &JobContext<'_>) {
///     tracing::info!(event = job.event().id(), attempt = job.attempt(), "starting");
/// }
///
/// #[webhook_processor(path = "/webhook", kinds = ["issue"], before = log_attempt)]
/// async fn issues(job: &JobContext<'_>) -> Result<RawResults, ProcessError> {
///     Ok(RawResults::updated([job.event().value_at("/issue")?.clone()]))
/// }
/// # fn main() {}
/// ```
#[derive(Debug)]
pub struct JobContext<'a> {
    event: &'a WebhookEvent,
    resource: &'a ResourceConfig,
    resource_index: usize,
    attempt: u32,
    extensions: &'a Extensions,
}

impl<'a> JobContext<'a> {
    /// A job for `event` against `resources[resource_index]` of the mapping; `attempt` counts from 1.
    #[must_use]
    pub(crate) fn new(
        event: &'a WebhookEvent,
        resource: &'a ResourceConfig,
        resource_index: usize,
        attempt: u32,
        extensions: &'a Extensions,
    ) -> Self {
        Self {
            event,
            resource,
            resource_index,
            attempt,
            extensions,
        }
    }

    /// The app's state and integration configs (what `State<T>` and `Config<T>` read).
    #[must_use]
    pub(crate) fn extensions(&self) -> &'a Extensions {
        self.extensions
    }

    /// The event being processed.
    #[must_use]
    pub fn event(&self) -> &'a WebhookEvent {
        self.event
    }

    /// The mapping resource this job produces entities for.
    #[must_use]
    pub fn resource(&self) -> &'a ResourceConfig {
        self.resource
    }

    /// Position of the resource in the mapping's `resources` list.
    #[must_use]
    pub fn resource_index(&self) -> usize {
        self.resource_index
    }

    /// Which call of the handler this is: 1 for the first, 2 for the first retry…
    #[must_use]
    pub fn attempt(&self) -> u32 {
        self.attempt
    }
}

/// A webhook processor: decides whether an event concerns it and turns it into raw results.
///
/// `#[webhook_processor]` implements this for a plain `async fn`; implement it by hand for full
/// control and register it with [`register!`](crate::register) and a [`Registration`]:
///
/// ```
/// use ocean_runtime::prelude::*;
/// use ocean_runtime::{BoxFuture, JobContext, Registration};
///
/// struct Echo;
///
/// impl WebhookProcessor for Echo {
///     fn should_process(&self, event: &WebhookEvent) -> bool {
///         event.payload().get("id").is_some()
///     }
///     fn handle<'a>(&'a self, job: &'a JobContext<'a>) -> BoxFuture<'a, Result<RawResults, ProcessError>> {
///         Box::pin(async move { Ok(RawResults::updated([job.event().payload().clone()])) })
///     }
/// }
///
/// ocean_runtime::register!(Registration::new("/echo", "echo", &["thing"], &Echo).matches(".id != null"));
/// # fn main() {}
/// ```
pub trait WebhookProcessor: Send + Sync + 'static {
    /// A routing filter run after the registration's `matches` expression (both must pass).
    fn should_process(&self, _event: &WebhookEvent) -> bool {
        true
    }

    /// The mapping kinds this event affects; `None` means the registration's `kinds`. Kinds not in
    /// the registration's `kinds` are ignored (with a warning).
    fn matching_kinds(&self, _event: &WebhookEvent) -> Option<Vec<String>> {
        None
    }

    /// Decides whether this job may run, e.g. by a token inside the payload. Run once per job
    /// before the handler; a refusal is permanent and never retried. Ocean calls this check
    /// `authenticate`; here that name belongs to the ingress verifiers of
    /// [`Registration::authenticate`], which check signatures over the raw body before the event is
    /// even queued.
    fn authorize<'a>(
        &'a self,
        _event: &'a WebhookEvent,
    ) -> BoxFuture<'a, Result<(), ProcessError>> {
        Box::pin(async { Ok(()) })
    }

    /// Checks the payload's shape. Run once per job before the handler; never retried.
    ///
    /// # Errors
    /// A [`ProcessError`] saying what is wrong with the payload.
    fn validate(&self, _event: &WebhookEvent) -> Result<(), ProcessError> {
        Ok(())
    }

    /// Fetches what changed and returns the raw items to upsert and delete.
    fn handle<'a>(
        &'a self,
        job: &'a JobContext<'a>,
    ) -> BoxFuture<'a, Result<RawResults, ProcessError>>;

    /// How retryable failures of [`handle`](Self::handle) are retried.
    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy::OCEAN
    }

    /// A per-job time limit overriding `OCEAN__MAX_EVENT_PROCESSING_SECONDS`.
    fn timeout(&self) -> Option<Duration> {
        None
    }

    /// Called once per job after authentication and validation, before the first handler call.
    fn before<'a>(&'a self, _job: &'a JobContext<'a>) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }

    /// Called once per job after the handler succeeded, with its results.
    fn after<'a>(
        &'a self,
        _job: &'a JobContext<'a>,
        _results: &'a RawResults,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }

    /// Called for every failure of the job (each failed attempt, a validation failure, a timeout).
    fn on_error<'a>(
        &'a self,
        _job: &'a JobContext<'a>,
        _error: &'a ProcessError,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }

    /// Called when the job is cancelled: it ran out of time or the app is shutting down.
    fn on_cancel<'a>(&'a self, _event: &'a WebhookEvent) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}

fn no_requirements() -> Vec<Requirement> {
    Vec::new()
}

/// A processor's registration: where it listens, what it produces and its options.
///
/// Only `'static` data and a `'static` processor, so that it can be submitted at compile time;
/// build it with the `const` methods below.
#[non_exhaustive]
pub struct Registration {
    /// The path under `/integration`, starting with `/` (e.g. `/webhook`).
    pub path: &'static str,
    /// Unique among the processors of `path`.
    pub name: &'static str,
    /// The mapping kinds this processor produces.
    pub kinds: &'static [&'static str],
    /// A jq expression over the payload; the processor is selected only when it yields true.
    pub matches: Option<&'static str>,
    /// A jq expression over the payload giving the event's ordering key for this processor: events
    /// with the same key are processed one at a time, in arrival order.
    pub group: Option<&'static str>,
    /// A jq predicate over the payload; a false result fails the job permanently (not retried).
    pub validate: Option<&'static str>,
    /// Only the latest event of a `group` needs processing (the processor fetches the current
    /// state upstream); earlier waiting events of the group are dropped as superseded.
    pub latest_only: bool,
    /// A signature verifier run at ingress.
    pub authenticate: Option<Authenticate>,
    /// What the handler's arguments need from the app (state, integration config, selector type).
    pub requirements: fn() -> Vec<Requirement>,
    /// The processor itself.
    pub processor: &'static dyn WebhookProcessor,
}

impl Registration {
    /// A registration with no options.
    #[must_use]
    pub const fn new(
        path: &'static str,
        name: &'static str,
        kinds: &'static [&'static str],
        processor: &'static dyn WebhookProcessor,
    ) -> Self {
        Self {
            path,
            name,
            kinds,
            matches: None,
            group: None,
            validate: None,
            latest_only: false,
            authenticate: None,
            requirements: no_requirements,
            processor,
        }
    }

    /// Sets the `matches` jq expression.
    #[must_use]
    pub const fn matches(mut self, jq: &'static str) -> Self {
        self.matches = Some(jq);
        self
    }

    /// Sets the `group` jq expression.
    #[must_use]
    pub const fn group(mut self, jq: &'static str) -> Self {
        self.group = Some(jq);
        self
    }

    /// Sets the `validate` jq predicate.
    #[must_use]
    pub const fn validate(mut self, jq: &'static str) -> Self {
        self.validate = Some(jq);
        self
    }

    /// Keeps only the latest waiting event of a group (see [`Registration::latest_only`]).
    #[must_use]
    pub const fn latest_only(mut self) -> Self {
        self.latest_only = true;
        self
    }

    /// Sets the ingress verifier.
    #[must_use]
    pub const fn authenticate(mut self, verifier: Authenticate) -> Self {
        self.authenticate = Some(verifier);
        self
    }

    /// Sets what the handler's arguments need.
    #[must_use]
    pub const fn requirements(mut self, requirements: fn() -> Vec<Requirement>) -> Self {
        self.requirements = requirements;
        self
    }
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration")
            .field("path", &self.path)
            .field("name", &self.name)
            .field("kinds", &self.kinds)
            .field("matches", &self.matches)
            .field("group", &self.group)
            .field("validate", &self.validate)
            .field("authenticate", &self.authenticate)
            .finish_non_exhaustive()
    }
}

inventory::collect!(Registration);

/// Registers a hand-written processor: `ocean_runtime::register!(Registration::new(…));`.
#[macro_export]
macro_rules! register {
    ($registration:expr $(,)?) => {
        $crate::__private::inventory::submit! { $registration }
    };
}
