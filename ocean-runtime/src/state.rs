//! Building the shared state of `main!(state = path::to_fn)` once at start-up.
//!
//! The state fn may take no argument or one `Config<C>`, may be sync or `async`, and may return the
//! state or `Result<state, E>` with `E: Display`. `main!` cannot see the fn's signature, so the
//! four return shapes are told apart at the call site by method resolution on the concrete output
//! type (the "autoref" technique): the most specific shape wins.

use std::any::Any;
use std::cell::Cell;
use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::config::ConfigError;
use crate::extract::{Config, Shared};
use crate::integration_config::IntegrationVars;

/// Why the integration's state could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The state fn returned an error; its message (the fn's error type is only `Display`).
    #[error("{0}")]
    Failed(String),
    /// The state fn's output was taken twice (a bug in the generated code).
    #[error("the state was already taken")]
    AlreadyTaken,
}

/// The state, or why it could not be built.
pub(crate) type StateResult = Result<(Shared, &'static str), StateError>;

/// The future that builds the state (it runs on the main thread, so it need not be `Send`).
pub type StateFuture = Pin<Box<dyn Future<Output = StateResult>>>;

/// What `main!(state = …)` hands to the runtime: builds the state from the integration's variables.
pub type StateInit = fn(&IntegrationVars) -> Result<StateFuture, ConfigError>;

/// A state fn with no argument or a `Config<C>` argument.
pub trait StateFn<M> {
    /// What the fn returns.
    type Out;
    /// Calls the fn, loading its `Config<C>` argument first.
    ///
    /// # Errors
    /// The `Config<C>` argument cannot be loaded.
    fn call(self, vars: &IntegrationVars) -> Result<Self::Out, ConfigError>;
}

impl<F: FnOnce() -> O, O> StateFn<()> for F {
    type Out = O;
    fn call(self, _vars: &IntegrationVars) -> Result<O, ConfigError> {
        Ok(self())
    }
}

impl<F, O, C> StateFn<(C,)> for F
where
    F: FnOnce(Config<C>) -> O,
    C: DeserializeOwned + Send + Sync + 'static,
{
    type Out = O;
    fn call(self, vars: &IntegrationVars) -> Result<O, ConfigError> {
        Ok(self(Config::load(vars)?))
    }
}

/// The [`StateInit`] of a state fn, exactly as `main!(state = …)` builds it; for tests:
/// `TestApp::builder().state_init(ocean_runtime::state_init!(JiraClient::from_config))`.
#[macro_export]
macro_rules! state_init {
    ($f:path) => {{
        #[allow(clippy::needless_borrow)] // the references choose the fn's shape
        fn __ocean_state_init(
            vars: &$crate::__private::IntegrationVars,
        ) -> ::core::result::Result<$crate::__private::StateFuture, $crate::__private::ConfigError>
        {
            #[allow(unused_imports)]
            use $crate::__private::via::{
                Async as _, AsyncResult as _, Plain as _, SyncResult as _,
            };
            let out = $crate::__private::call_state($f, vars)?;
            ::core::result::Result::Ok((&&&&$crate::__private::StateOut::new(out)).ocean_state())
        }
        __ocean_state_init as $crate::__private::StateInit
    }};
}

/// Calls a state fn (with no argument or a `Config<C>` one).
///
/// # Errors
/// Its `Config<C>` argument cannot be loaded.
pub fn call_state<M, F: StateFn<M>>(f: F, vars: &IntegrationVars) -> Result<F::Out, ConfigError> {
    f.call(vars)
}

/// The state fn's output, waiting to be classified by [`via`]'s traits.
pub struct StateOut<O>(Cell<Option<O>>);

impl<O> std::fmt::Debug for StateOut<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateOut")
    }
}

impl<O> StateOut<O> {
    /// Wraps the output.
    pub fn new(out: O) -> Self {
        Self(Cell::new(Some(out)))
    }

    fn take(&self) -> Result<O, StateError> {
        self.0.take().ok_or(StateError::AlreadyTaken)
    }
}

fn shared<T: Send + Sync + 'static>(value: T) -> (Shared, &'static str) {
    (
        Arc::new(value) as Arc<dyn Any + Send + Sync>,
        std::any::type_name::<T>(),
    )
}

/// The four shapes; call as `(&&&&StateOut::new(out)).ocean_state()` with all four in scope.
pub mod via {
    use super::{Display, Future, StateError, StateFuture, StateOut, shared};

    /// `async fn … -> Result<T, E>`.
    pub trait AsyncResult {
        /// Builds the state.
        fn ocean_state(&self) -> StateFuture;
    }
    impl<F, T, E> AsyncResult for &&&StateOut<F>
    where
        F: Future<Output = Result<T, E>> + 'static,
        T: Send + Sync + 'static,
        E: Display,
    {
        fn ocean_state(&self) -> StateFuture {
            let fut = self.take();
            Box::pin(async move {
                fut?.await
                    .map(shared)
                    .map_err(|e| StateError::Failed(e.to_string()))
            })
        }
    }

    /// `async fn … -> T`.
    pub trait Async {
        /// Builds the state.
        fn ocean_state(&self) -> StateFuture;
    }
    impl<F, T> Async for &&StateOut<F>
    where
        F: Future<Output = T> + 'static,
        T: Send + Sync + 'static,
    {
        fn ocean_state(&self) -> StateFuture {
            let fut = self.take();
            Box::pin(async move { Ok(shared(fut?.await)) })
        }
    }

    /// `fn … -> Result<T, E>`.
    pub trait SyncResult {
        /// Builds the state.
        fn ocean_state(&self) -> StateFuture;
    }
    impl<T, E> SyncResult for &StateOut<Result<T, E>>
    where
        T: Send + Sync + 'static,
        E: Display,
    {
        fn ocean_state(&self) -> StateFuture {
            let out = self
                .take()
                .and_then(|r| r.map(shared).map_err(|e| StateError::Failed(e.to_string())));
            Box::pin(async move { out })
        }
    }

    /// `fn … -> T`.
    pub trait Plain {
        /// Builds the state.
        fn ocean_state(&self) -> StateFuture;
    }
    impl<T> Plain for StateOut<T>
    where
        T: Send + Sync + 'static,
    {
        fn ocean_state(&self) -> StateFuture {
            let out = self.take().map(shared);
            Box::pin(async move { out })
        }
    }
}

#[cfg(test)]
#[allow(clippy::needless_borrow)] // the extra references are how the shape is chosen
mod tests {
    use super::via::{Async, AsyncResult, Plain, SyncResult};
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Client(u32);

    fn plain() -> Client {
        Client(1)
    }
    fn fallible() -> Result<Client, String> {
        Err("no upstream".into())
    }
    async fn asynchronous() -> Client {
        Client(3)
    }
    async fn async_fallible(cfg: Config<Cfg>) -> Result<Client, std::io::Error> {
        Ok(Client(cfg.n))
    }
    #[derive(serde::Deserialize)]
    struct Cfg {
        n: u32,
    }

    async fn built(fut: StateFuture) -> Result<Client, StateError> {
        let (value, name) = fut.await?;
        assert!(name.ends_with("Client"), "{name}");
        let client = value.downcast::<Client>().expect("the state's type");
        Ok(Client(client.0))
    }

    #[tokio::test]
    async fn every_shape_of_state_fn_builds_or_explains() {
        let vars = IntegrationVars::from_vars([("OCEAN__INTEGRATION__CONFIG__N", "4")]);
        let a = (&&&&StateOut::new(call_state(plain, &vars).unwrap())).ocean_state();
        assert_eq!(built(a).await, Ok(Client(1)));
        let b = (&&&&StateOut::new(call_state(fallible, &vars).unwrap())).ocean_state();
        assert_eq!(
            built(b).await,
            Err(StateError::Failed("no upstream".to_owned()))
        );
        let c = (&&&&StateOut::new(call_state(asynchronous, &vars).unwrap())).ocean_state();
        assert_eq!(built(c).await, Ok(Client(3)));
        let d = (&&&&StateOut::new(call_state(async_fallible, &vars).unwrap())).ocean_state();
        assert_eq!(built(d).await, Ok(Client(4)));

        let empty = IntegrationVars::default();
        let err = call_state(async_fallible, &empty).map(drop).unwrap_err();
        assert!(
            err.to_string().contains("OCEAN__INTEGRATION__CONFIG__N"),
            "{err}"
        );
    }
}
