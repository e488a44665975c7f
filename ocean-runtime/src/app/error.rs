//! Why an app did not start.

use std::net::SocketAddr;

use crate::config::ConfigError;
use crate::local_port::LocalPortError;
use crate::port::PortError;
use crate::queue::{DiskQueueError, RedisQueueError};

/// The app could not start.
///
/// Returned when the app cannot start; the generated `main` prints it and exits non-zero (see
/// [`main!`](crate::main)).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The built-in Port could not start.
    #[error(transparent)]
    LocalPort(#[from] LocalPortError),
    /// The Port client could not be built.
    #[error(transparent)]
    Port(#[from] PortError),
    /// The default mapping file is unreadable or invalid.
    #[error("the default mapping ({path}) is invalid: {reason}")]
    DefaultMapping {
        /// Where it came from.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A default Port resource file (`blueprints.json`, …) is unreadable or invalid.
    #[error("the default Port resources are invalid: {0}")]
    DefaultResources(String),
    /// The built-in Port refused the integration's defaults.
    #[error("the built-in Port refused the integration's defaults: {0}")]
    Provision(PortError),
    /// The disk queue cannot be opened.
    #[error(transparent)]
    Queue(#[from] DiskQueueError),
    /// The Redis queue cannot be reached.
    #[error(transparent)]
    Redis(#[from] RedisQueueError),
    /// A setting (usually the integration's own) is missing or malformed.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The `main!(state = …)` fn failed.
    #[error("the integration's state could not be built: {0}")]
    State(#[from] crate::state::StateError),
    /// The upstream HTTP client could not be built (e.g. no TLS backend).
    #[error("cannot build the upstream HTTP client: {0}")]
    Upstream(#[source] reqwest::Error),
    /// A handler takes `State<T>` but the app has no state of that type.
    #[error(
        "processor `{processor}` takes `State<{type_name}>`, but no state of that type is built; \
         add `ocean_runtime::main!(state = path::to_fn)` with a fn returning `{type_name}` \
         (or give it to the test harness with `.state(…)`)"
    )]
    MissingState {
        /// The processor.
        processor: String,
        /// The state type it wants.
        type_name: String,
    },
    /// The webhook server cannot listen.
    #[error(
        "cannot listen on {addr} (OCEAN__APPLICATION__HOST/OCEAN__APPLICATION__PORT): {source}"
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}
