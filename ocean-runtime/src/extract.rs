//! Handler arguments by type: what a `#[webhook_processor]` fn may take, in any order.
//!
//! | argument | what it is |
//! |---|---|
//! | `&WebhookEvent` | the event being processed |
//! | `&ResourceConfig` | the mapping resource this job produces entities for |
//! | `&JobContext` | all of the above plus the attempt number |
//! | [`Selector<T>`] | the resource's `selector` deserialized into `T` (checked when a mapping loads) |
//! | [`State<T>`] | the shared state built once at start-up by `main!(state = path::to_fn)` |
//! | [`Config<T>`] | the integration's own settings from `OCEAN__INTEGRATION__CONFIG__*` (checked at start-up) |
//!
//! Each is a [`FromJob`] implementation; the attribute calls `FromJob::from_job` for every argument.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::config::ConfigError;
use crate::event::WebhookEvent;
use crate::integration_config::IntegrationVars;
use crate::mapping::ResourceConfig;
use crate::processor::{JobContext, ProcessError};

/// A value shared with handlers: state or loaded integration config.
pub(crate) type Shared = Arc<dyn Any + Send + Sync>;

/// What a handler argument needs from the app, checked before any event is processed.
#[derive(Clone, Copy)]
pub enum Requirement {
    /// A `Selector<T>`: every mapping resource of the processor's kinds must have a selector that
    /// deserializes into `T`.
    Selector {
        /// `T`'s name, for messages.
        type_name: &'static str,
        /// Tries the deserialization; the error names the field.
        check: fn(&Value) -> Result<(), String>,
    },
    /// A `State<T>`: the app must hold a state of type `T`.
    State {
        /// `T`'s name, for messages.
        type_name: &'static str,
        /// `T`'s id.
        type_id: fn() -> TypeId,
    },
    /// A `Config<T>`: the integration's variables must deserialize into `T`.
    Config {
        /// `T`'s name, for messages.
        type_name: &'static str,
        /// `T`'s id.
        type_id: fn() -> TypeId,
        /// Loads `T` from the variables.
        load: fn(&IntegrationVars) -> Result<Shared, ConfigError>,
    },
}

impl fmt::Debug for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Selector { type_name, .. } => write!(f, "Selector<{type_name}>"),
            Self::State { type_name, .. } => write!(f, "State<{type_name}>"),
            Self::Config { type_name, .. } => write!(f, "Config<{type_name}>"),
        }
    }
}

/// The state and integration configs handlers can ask for, by type.
#[derive(Default, Clone)]
pub(crate) struct Extensions {
    states: HashMap<TypeId, Shared>,
    configs: HashMap<TypeId, Shared>,
}

impl fmt::Debug for Extensions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Extensions")
            .field("states", &self.states.len())
            .field("configs", &self.configs.len())
            .finish()
    }
}

impl Extensions {
    /// Adds a state value (replacing one of the same type).
    pub(crate) fn insert_state(&mut self, value: Shared) {
        self.states.insert((*value).type_id(), value);
    }

    /// Whether a state of this type is present.
    #[must_use]
    pub(crate) fn has_state(&self, type_id: TypeId) -> bool {
        self.states.contains_key(&type_id)
    }

    /// The state of type `T`.
    #[must_use]
    pub(crate) fn state<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.states
            .get(&TypeId::of::<T>())
            .and_then(|v| Arc::clone(v).downcast().ok())
    }

    /// Loads (once per type) the integration config a requirement asks for.
    ///
    /// # Errors
    /// A variable is missing or malformed.
    pub(crate) fn load_config(
        &mut self,
        type_id: TypeId,
        load: fn(&IntegrationVars) -> Result<Shared, ConfigError>,
        vars: &IntegrationVars,
    ) -> Result<(), ConfigError> {
        if let std::collections::hash_map::Entry::Vacant(slot) = self.configs.entry(type_id) {
            slot.insert(load(vars)?);
        }
        Ok(())
    }

    /// The integration config of type `T`, if loaded.
    #[must_use]
    pub(crate) fn config<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.configs
            .get(&TypeId::of::<T>())
            .and_then(|v| Arc::clone(v).downcast().ok())
    }
}

/// A type a handler can take as an argument.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an argument of a webhook processor",
    label = "unsupported argument type",
    note = "a webhook processor's arguments can be, in any order: `&WebhookEvent`, `&ResourceConfig`, \
            `&JobContext`, `Selector<T>`, `State<T>`, `Config<T>`"
)]
pub trait FromJob<'a>: Sized {
    /// Extracts the argument for one call of the handler.
    ///
    /// # Errors
    /// The value cannot be produced for this job (reported as the job's failure).
    fn from_job(job: &'a JobContext<'a>) -> Result<Self, ProcessError>;

    /// What the app must provide, checked at start-up or mapping load.
    #[must_use]
    fn requirement() -> Option<Requirement> {
        None
    }
}

impl<'a> FromJob<'a> for &'a WebhookEvent {
    fn from_job(job: &'a JobContext<'a>) -> Result<Self, ProcessError> {
        Ok(job.event())
    }
}

impl<'a> FromJob<'a> for &'a ResourceConfig {
    fn from_job(job: &'a JobContext<'a>) -> Result<Self, ProcessError> {
        Ok(job.resource())
    }
}

impl<'a> FromJob<'a> for &'a JobContext<'a> {
    fn from_job(job: &'a JobContext<'a>) -> Result<Self, ProcessError> {
        Ok(job)
    }
}

/// The matched resource's `selector` (the mapping's `selector:` block, `query` included)
/// deserialized into the author's type.
///
/// ```
/// use ocean_runtime::prelude::*;
///
/// #[derive(Deserialize)]
/// struct IssueSelector {
///     jql: Option<String>,
/// }
/// # ocean_runtime::kinds!["issue"];
/// #[webhook_processor(path = "/webhook", kinds = ["issue"])]
/// async fn issues(selector: Selector<IssueSelector>) -> Result<RawResults, ProcessError> {
///     let _jql: Option<&str> = selector.jql.as_deref();
///     Ok(RawResults::none())
/// }
/// # fn main() {}
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Selector<T>(pub T);

impl<T> Deref for Selector<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> Selector<T> {
    /// The selector value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

/// Deserializes a selector into `T`; the error names the field that does not fit.
///
/// # Errors
/// The selector does not deserialize into `T`.
pub(crate) fn selector_from_value<T: DeserializeOwned>(value: &Value) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            e.inner().to_string()
        } else {
            format!("field `{path}`: {}", e.inner())
        }
    })
}

impl<'a, T: DeserializeOwned + 'static> FromJob<'a> for Selector<T> {
    fn from_job(job: &'a JobContext<'a>) -> Result<Self, ProcessError> {
        let value = serde_json::to_value(&job.resource().selector)?;
        selector_from_value(&value).map(Selector).map_err(|e| {
            ProcessError::permanent(format!(
                "resources[{}].selector does not fit `{}`: {e}",
                job.resource_index(),
                std::any::type_name::<T>()
            ))
        })
    }

    fn requirement() -> Option<Requirement> {
        Some(Requirement::Selector {
            type_name: std::any::type_name::<T>(),
            check: |v| selector_from_value::<T>(v).map(drop),
        })
    }
}

/// Shared state built once at start-up by `ocean_runtime::main!(state = path::to_fn)` (see the
/// example on [`main!`](crate::main)), or the runtime's [`Upstream`](crate::Upstream) client.
/// A handler that takes a `State<T>` the app was not given is refused at start-up, naming `T`.
#[derive(Debug)]
pub struct State<T>(pub Arc<T>);

impl<T> Clone for State<T> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<T> Deref for State<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<'a, T: Send + Sync + 'static> FromJob<'a> for State<T> {
    fn from_job(job: &'a JobContext<'a>) -> Result<Self, ProcessError> {
        job.extensions().state::<T>().map(State).ok_or_else(|| {
            ProcessError::permanent(format!("no state of type `{}`", std::any::type_name::<T>()))
        })
    }

    fn requirement() -> Option<Requirement> {
        Some(Requirement::State {
            type_name: std::any::type_name::<T>(),
            type_id: TypeId::of::<T>,
        })
    }
}

/// The integration's own settings, deserialized from `OCEAN__INTEGRATION__CONFIG__*` at start-up
/// (field names are lower-cased, values read as YAML scalars); a missing or malformed variable stops start-up, naming it.
///
/// ```
/// use ocean_runtime::prelude::*;
/// # ocean_runtime::kinds!["issue"];
///
/// #[derive(Deserialize)]
/// struct JiraConfig {
///     jira_url: String,          // OCEAN__INTEGRATION__CONFIG__JIRA_URL
///     page_size: Option<u32>,    // OCEAN__INTEGRATION__CONFIG__PAGE_SIZE, may be unset
/// }
///
/// #[webhook_processor(path = "/webhook", kinds = ["issue"])]
/// async fn issues(event: &WebhookEvent, config: Config<JiraConfig>) -> Result<RawResults, ProcessError> {
///     let _url = format!("{}/rest/api/3/issue/{}", config.jira_url, event.str_at("/issue/key")?);
///     Ok(RawResults::none())
/// }
/// # fn main() {}
/// ```
#[derive(Debug)]
pub struct Config<T>(pub Arc<T>);

impl<T> Clone for Config<T> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<T> Deref for Config<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned + Send + Sync + 'static> Config<T> {
    /// Reads `T` from the integration's variables.
    ///
    /// # Errors
    /// A variable is missing or malformed; the error names it.
    pub fn load(vars: &IntegrationVars) -> Result<Self, ConfigError> {
        vars.deserialize().map(|v| Self(Arc::new(v)))
    }
}

impl<'a, T: DeserializeOwned + Send + Sync + 'static> FromJob<'a> for Config<T> {
    fn from_job(job: &'a JobContext<'a>) -> Result<Self, ProcessError> {
        job.extensions().config::<T>().map(Config).ok_or_else(|| {
            ProcessError::permanent(format!(
                "integration config `{}` was not loaded",
                std::any::type_name::<T>()
            ))
        })
    }

    fn requirement() -> Option<Requirement> {
        Some(Requirement::Config {
            type_name: std::any::type_name::<T>(),
            type_id: TypeId::of::<T>,
            load: |vars| vars.deserialize::<T>().map(|v| Arc::new(v) as Shared),
        })
    }
}

/// Asks argument type `T` for its requirement without demanding `T: FromJob` (the handler's
/// extraction already reports an unsupported type; this keeps it from being reported twice).
/// Call as `(&&Probe::<T>::new()).requirement()` with [`ProbeKnown`] and [`ProbeUnknown`] in scope.
#[derive(Debug)]
pub struct Probe<T>(std::marker::PhantomData<fn() -> T>);

impl<T> Probe<T> {
    /// A probe for `T`.
    #[must_use]
    pub const fn new() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<T> Default for Probe<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// The probe for a supported argument type.
pub trait ProbeKnown {
    /// `T`'s requirement.
    fn requirement(&self) -> Option<Requirement>;
}

impl<T: FromJob<'static>> ProbeKnown for &Probe<T> {
    fn requirement(&self) -> Option<Requirement> {
        T::requirement()
    }
}

/// The probe for an unsupported argument type (already a compile error elsewhere).
pub trait ProbeUnknown {
    /// Nothing.
    fn requirement(&self) -> Option<Requirement>;
}

impl<T> ProbeUnknown for Probe<T> {
    fn requirement(&self) -> Option<Requirement> {
        None
    }
}

/// What a handler returns: `Result<RawResults, E>` for any `E: Into<ProcessError>`.
#[diagnostic::on_unimplemented(
    message = "a webhook processor must return `Result<RawResults, E>` with `E: Into<ProcessError>`, not `{Self}`",
    label = "unsupported return type",
    note = "for your own error type, implement `From<YourError> for ProcessError` and say whether it is retryable"
)]
pub trait IntoResults {
    /// The handler's outcome in the pipeline's terms.
    ///
    /// # Errors
    /// The handler's error, converted.
    fn into_results(self) -> Result<crate::processor::RawResults, ProcessError>;
}

impl<E: Into<ProcessError>> IntoResults for Result<crate::processor::RawResults, E> {
    fn into_results(self) -> Result<crate::processor::RawResults, ProcessError> {
        self.map_err(Into::into)
    }
}
