//! The built-in local Port: Port's REST API as Ocean uses it, served over real HTTP, persisted in a
//! local data folder.
//!
//! It is the embedded default (a binary with no Port credentials talks to it) and the target of the
//! end-to-end tests. It serves the endpoints of the reference's minimal emulator list — token,
//! integration get/create/patch, provision-enabled, organization, bulk upsert with 207 partial
//! answers, search (`=`, `in`, `contains`, … on `$identifier`, `$blueprint`, `$datasource` and
//! properties, nested `and`/`or`), bulk delete — plus reading entities back
//! (`GET /v1/blueprints/{bp}/entities[/{id}]`) and what a Python Ocean integration calls besides:
//! resync state and resync request, kind examples, the paged listing of the entities one
//! integration wrote (`datasource-entities`), and ingest URLs for its logs and metrics (taken and
//! dropped). An entity's `$datasource` is the first word of the
//! writer's `User-Agent`, as Port derives it.
//!
//! In: HTTP requests with a bearer token (`auth`). Out: JSON answers in Port's shapes (`respond`),
//! each write answered only once it is durable (`persist`). The handlers live by resource
//! (`integrations`, `entities`, `blueprints`, `extras`); the rules every write obeys in `store`.

mod auth;
mod blueprints;
mod entities;
mod extras;
mod integrations;
mod page;
mod persist;
mod respond;
mod search;
mod store;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::http::StatusCode;
use axum::middleware;
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::PortCredentials;
use persist::Store;
use respond::error;

/// The built-in Port could not start.
///
/// Returned by [`LocalPort::start`](crate::LocalPort::start).
#[derive(Debug, thiserror::Error)]
pub enum LocalPortError {
    /// The data folder cannot be created or used.
    #[error("built-in Port: cannot use data folder {path}: {source}")]
    DataDir {
        /// The folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The database cannot be opened (e.g. another process holds it).
    #[error(
        "built-in Port: cannot open {path}: {reason} (is another ocean-rs process using OCEAN__LOCAL_PORT__DATA_DIR?)"
    )]
    Storage {
        /// The database file.
        path: PathBuf,
        /// What redb said.
        reason: String,
    },
    /// The listen address cannot be bound.
    #[error(
        "built-in Port: cannot listen on {addr} (OCEAN__LOCAL_PORT__HOST/OCEAN__LOCAL_PORT__PORT): {source}"
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A write could not be persisted.
    #[error("built-in Port: {0}")]
    Write(String),
}

/// How to run the built-in Port (see the example on [`LocalPort`]).
#[derive(Debug, Clone)]
pub struct LocalPortOptions {
    /// Where entities and integration records are kept.
    pub data_dir: PathBuf,
    /// Listen address; port 0 picks a free one.
    pub addr: SocketAddr,
    /// Credentials to require at `POST /v1/auth/access_token`; `None` accepts any.
    pub credentials: Option<PortCredentials>,
}

struct Shared {
    store: Store,
    credentials: Option<PortCredentials>,
    tokens: Mutex<HashMap<String, Instant>>,
}

/// A running built-in Port: what a binary without Port credentials writes to, and what
/// `ocean-example-jira local-port` serves on its own. Tests start one to have Port on loopback.
///
/// ```no_run
/// use ocean_runtime::{LocalPort, LocalPortOptions};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let port = LocalPort::start(LocalPortOptions {
///     data_dir: "/tmp/my-port".into(),
///     addr: "127.0.0.1:0".parse()?,
///     credentials: None, // any client id and secret get a token
/// })
/// .await?;
/// let entities = reqwest::get(format!("{}/v1/blueprints/service/entities", port.base_url())).await?;
/// assert_eq!(entities.status(), 401, "every /v1 route wants a token");
/// port.shutdown().await;
/// # Ok(())
/// # }
/// ```
pub struct LocalPort {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for LocalPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalPort")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

fn router(shared: Arc<Shared>) -> Router {
    let authed = Router::new()
        .route("/v1/organization", get(integrations::organization))
        .route("/v1/integration", post(integrations::create_integration))
        .route(
            "/v1/integration/provision-enabled",
            get(integrations::provision_enabled),
        )
        .route(
            "/v1/integration/{id}",
            get(integrations::get_integration).patch(integrations::patch_integration),
        )
        .route(
            "/v1/integration/{id}/config",
            axum::routing::patch(integrations::patch_integration_config),
        )
        .route(
            "/v1/integration/{id}/resync-state",
            axum::routing::patch(integrations::patch_resync_state),
        )
        .route(
            "/v1/integration/{id}/resync-request",
            get(integrations::resync_request),
        )
        .route(
            "/v1/integration/{id}/kinds/{kind}/examples",
            post(integrations::kind_examples),
        )
        .route(
            "/v1/blueprints/entities/datasource-entities",
            post(integrations::datasource_entities),
        )
        .route(
            "/v1/blueprints",
            get(blueprints::list).post(blueprints::create),
        )
        .route(
            "/v1/blueprints/{bp}",
            get(blueprints::get_one)
                .patch(blueprints::patch)
                .delete(blueprints::delete),
        )
        .route(
            "/v1/blueprints/{bp}/entities",
            get(entities::list_entities).post(entities::single_upsert),
        )
        .route(
            "/v1/blueprints/{bp}/entities/bulk",
            post(entities::bulk_upsert),
        )
        .route("/v1/actions", post(extras::create_action))
        .route("/v1/actions/{id}", get(extras::get_action))
        .route(
            "/v1/blueprints/{bp}/scorecards",
            post(extras::create_scorecard),
        )
        .route(
            "/v1/blueprints/{bp}/scorecards/{id}",
            get(extras::get_scorecard),
        )
        .route("/v1/pages", post(extras::create_page))
        .route("/v1/pages/{id}", get(extras::get_page))
        .route(
            "/v1/blueprints/{bp}/entities/{id}",
            get(entities::get_entity).delete(entities::delete_entity),
        )
        .route(
            "/v1/blueprints/{bp}/bulk/entities/delete",
            post(entities::bulk_delete),
        )
        .route("/v1/entities/search", post(entities::search_entities))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&shared),
            auth::require_token,
        ));
    Router::new()
        .route("/", get(page::index))
        .route("/ui/blueprints/{bp}", get(page::blueprint))
        .route("/v1/auth/access_token", post(auth::access_token))
        .route("/ingest/{*rest}", axum::routing::any(integrations::ingest))
        .merge(authed)
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint in the built-in Port",
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(16 * 1024 * 1024))
        .with_state(shared)
}

impl LocalPort {
    /// Opens the data folder, binds the address and starts serving.
    ///
    /// # Errors
    /// The data folder or the address cannot be used.
    pub async fn start(options: LocalPortOptions) -> Result<Self, LocalPortError> {
        let store = Store::open(&options.data_dir)?;
        let listener = tokio::net::TcpListener::bind(options.addr)
            .await
            .map_err(|source| LocalPortError::Bind {
                addr: options.addr,
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| LocalPortError::Bind {
                addr: options.addr,
                source,
            })?;
        let shared = Arc::new(Shared {
            store,
            credentials: options.credentials,
            tokens: Mutex::new(HashMap::new()),
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let app = router(Arc::clone(&shared));
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "built-in Port stopped");
            }
        });
        Ok(Self {
            addr,
            shared,
            stop: Some(stop),
            task,
        })
    }

    /// The base URL to give a Port client, e.g. `http://127.0.0.1:5101`.
    #[must_use]
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Creates or updates integration `identifier` with this mapping (`config`) and type.
    ///
    /// # Errors
    /// The record could not be persisted.
    pub async fn seed_integration(
        &self,
        identifier: &str,
        app_type: &str,
        version: &str,
        config: Value,
    ) -> Result<(), LocalPortError> {
        let patch = json!({"config": config, "installationAppType": app_type, "version": version});
        let id = identifier.to_owned();
        let base = self.base_url();
        self.shared
            .store
            .write(|s, changes| {
                let mut record = s
                    .integrations
                    .get(&id)
                    .cloned()
                    .unwrap_or_else(|| integrations::new_integration(&id, &base));
                if let (Some(obj), Some(patch)) = (record.as_object_mut(), patch.as_object()) {
                    obj.extend(patch.clone());
                }
                s.put_integration(&id, record, changes)
            })
            .await
            .map_err(|e| LocalPortError::Write(e.to_string()))?
            .map_err(LocalPortError::Write)
    }

    /// Stops serving and waits for in-flight requests.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

#[cfg(test)]
mod harness;
