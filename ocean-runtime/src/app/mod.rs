//! Wiring: the built-in Port (when no credentials are set), the Port client, the mapping, the queue,
//! the workers and the webhook server, started together and stopped together.
//!
//! In: [`Settings`](crate::Settings) and the registry of processors. Out: a running app whose
//! ingress URL, Port URL and queue depth can be read, and which stops in order (ingress, then the
//! workers after `OCEAN__MAX_WAIT_SECONDS_BEFORE_SHUTDOWN`, then the queue and the built-in Port).
//! `setup.rs` holds the start-up steps, `error.rs` why a start fails.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::Config;
use crate::extract::{Extensions, Requirement, Shared};
use crate::local_port::{LocalPort, LocalPortOptions};
use crate::mapping::{MappingSource, MappingStore};
use crate::metrics::Metrics;
use crate::pipeline::{Canceller, Pipeline};
use crate::port::{PortClient, PortClientConfig};
use crate::provision::provision;
use crate::queue::Backend;
use crate::registry::Registry;
use crate::server::{DEDUP_HEADERS, Dedup, Ingress, router};
use crate::state::StateInit;

mod error;
mod setup;

pub use error::StartError;
pub(crate) use setup::redis_options;
use setup::{
    defaults, mapping_check, open_queue, provision_failed, provision_until_done, seed_local_port,
};

/// How long cancelled jobs get to run their `on_cancel` hooks at shutdown.
const CANCEL_GRACE: Duration = Duration::from_secs(2);

/// An integration ready to start: settings plus processors. What the binary of
/// [`main!`](crate::main) and the harness of `testing::TestApp` run; not public API.
#[derive(Debug)]
pub struct App {
    config: Config,
    registry: Registry,
    extensions: Extensions,
    state_init: Option<StateInit>,
}

/// A started integration.
pub struct RunningApp {
    ingress_addr: SocketAddr,
    port_url: String,
    local_port: Option<LocalPort>,
    queue: Backend,
    stop_ingress: oneshot::Sender<()>,
    ingress: JoinHandle<()>,
    workers: Vec<JoinHandle<()>>,
    refresher: JoinHandle<()>,
    /// Provisioning of a real Port that failed at start-up and is being tried again.
    provisioner: Option<JoinHandle<()>>,
    shutdown_wait: Duration,
    canceller: Canceller,
}

impl std::fmt::Debug for RunningApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningApp")
            .field("ingress_addr", &self.ingress_addr)
            .field("port_url", &self.port_url)
            .finish_non_exhaustive()
    }
}

impl App {
    /// An app with these settings and processors.
    #[must_use]
    pub fn new(config: Config, registry: Registry) -> Self {
        Self {
            config,
            registry,
            extensions: Extensions::default(),
            state_init: None,
        }
    }

    /// Builds the handlers' `State<T>` at start-up with this fn (what `main!(state = …)` passes).
    #[must_use]
    pub fn state_init(mut self, init: StateInit) -> Self {
        self.state_init = Some(init);
        self
    }

    /// Adds a ready state value for `State<T>` handlers (keyed by its type).
    #[must_use]
    pub fn state(mut self, value: Shared) -> Self {
        self.extensions.insert_state(value);
        self
    }

    /// Binds verifier secrets, builds the state and loads the integration configs the handlers
    /// ask for; fails before anything is started.
    async fn prepare(&mut self, metrics: &Arc<Metrics>) -> Result<(), StartError> {
        self.registry.bind(&self.config.integration)?;
        // The upstream client handlers may take as `State<Upstream>`, unless the integration
        // gave its own.
        let upstream_type = std::any::TypeId::of::<crate::upstream::Upstream>();
        if !self.extensions.has_state(upstream_type) {
            let upstream = crate::upstream::Upstream::new(self.config.upstream)
                .map_err(StartError::Upstream)?
                .with_metrics(Arc::clone(metrics));
            self.extensions.insert_state(Arc::new(upstream));
        }
        if let Some(init) = self.state_init {
            let (value, type_name) = init(&self.config.integration)?.await?;
            tracing::debug!(state = type_name, "state built");
            self.extensions.insert_state(value);
        }
        for p in self.registry.all() {
            for req in p.requirements() {
                match *req {
                    Requirement::State { type_name, type_id } => {
                        if !self.extensions.has_state(type_id()) {
                            return Err(StartError::MissingState {
                                processor: p.name().to_owned(),
                                type_name: type_name.to_owned(),
                            });
                        }
                    }
                    Requirement::Config { type_id, load, .. } => {
                        self.extensions
                            .load_config(type_id(), load, &self.config.integration)?;
                    }
                    Requirement::Selector { .. } => {}
                }
            }
        }
        Ok(())
    }

    /// Starts everything; returns once the webhook server is listening.
    ///
    /// # Errors
    /// A part could not start; nothing is left running.
    pub async fn start(mut self) -> Result<RunningApp, StartError> {
        let metrics = Arc::new(Metrics::default());
        self.prepare(&metrics).await?;
        let registry = Arc::new(self.registry);
        let extensions = Arc::new(self.extensions);
        let config = self.config;
        let defaults = defaults(&config)?;
        let (local_port, base_url, client_id, client_secret) = match &config.credentials {
            Some(c) => (
                None,
                config.port_base_url.clone(),
                c.client_id.clone(),
                c.client_secret.clone(),
            ),
            None => {
                let addr = SocketAddr::new(config.local_port_host, config.local_port_port);
                let local = LocalPort::start(LocalPortOptions {
                    data_dir: config.local_port_data_dir.clone(),
                    addr,
                    credentials: None,
                })
                .await?;
                tracing::info!(
                    "no Port credentials set (OCEAN__PORT__CLIENT_ID, OCEAN__PORT__CLIENT_SECRET): using the built-in local Port at {} (data in {})",
                    local.base_url(),
                    config.local_port_data_dir.display()
                );
                if let Err(e) = seed_local_port(&config, &local, &defaults).await {
                    local.shutdown().await;
                    return Err(e);
                }
                let url = local.base_url();
                (Some(local), url, "local".to_owned(), "local".to_owned())
            }
        };
        let client = PortClient::new(PortClientConfig {
            base_url: base_url.clone(),
            client_id,
            client_secret,
            integration_identifier: config.integration_identifier.clone(),
            integration_type: config.integration_type.clone(),
            integration_version: config.integration_version.clone(),
            max_concurrent_requests: config.port_max_concurrent_requests,
        });
        let port = match client {
            Ok(client) => Arc::new(client.with_metrics(Arc::clone(&metrics))),
            Err(e) => {
                // Every failure after the built-in Port started stops it again.
                if let Some(local) = local_port {
                    local.shutdown().await;
                }
                return Err(e.into());
            }
        };
        let source = match &config.mapping_file {
            Some(path) => MappingSource::File(path.clone()),
            None => MappingSource::Port(Arc::clone(&port)),
        };
        let mapping = Arc::new(
            MappingStore::new(source)
                .with_check(mapping_check(Arc::clone(&registry)))
                .with_metrics(Arc::clone(&metrics)),
        );
        // Port gets the integration's defaults before the first mapping load: the built-in Port
        // must take them (it is this process's own); a real Port that cannot yet is tried again in
        // the background.
        let mut provisioner = None;
        if let Err(e) = provision(&port, &defaults).await {
            if let Some(local) = local_port {
                local.shutdown().await;
                return Err(StartError::Provision(e));
            }
            provision_failed(&e, Duration::from_secs(1));
            provisioner = Some(tokio::spawn(provision_until_done(
                Arc::clone(&port),
                defaults,
                Arc::clone(&mapping),
            )));
        }
        match mapping.reload().await {
            Ok(_) => tracing::info!("mapping loaded"),
            Err(e) => {
                tracing::warn!(error = %e, "no mapping loaded yet; events are kept until one loads")
            }
        }
        let queue = match open_queue(&config).await {
            Ok(q) => q,
            Err(e) => {
                if let Some(p) = &provisioner {
                    p.abort();
                }
                if let Some(local) = local_port {
                    local.shutdown().await;
                }
                return Err(e);
            }
        };
        let (pipeline, canceller) = Pipeline::new(
            Arc::clone(&registry),
            Arc::clone(&mapping),
            Arc::clone(&port),
            config.job_timeout,
            extensions,
            Arc::clone(&metrics),
        );
        let pipeline = Arc::new(pipeline);
        let workers = (0..config.events_in_flight)
            .map(|_| tokio::spawn(Arc::clone(&pipeline).work(Arc::clone(&queue.events))))
            .collect();
        let refresher = tokio::spawn({
            let mapping = Arc::clone(&mapping);
            let every = config.mapping_refresh.max(Duration::from_secs(1));
            async move {
                let mut tick = tokio::time::interval_at(Instant::now() + every, every);
                loop {
                    tick.tick().await;
                    match mapping.reload().await {
                        Ok(true) => tracing::info!("new mapping version in force"),
                        Ok(false) => {}
                        Err(e) => {
                            tracing::error!(error = %e, "mapping refresh failed; the previous version stays in force")
                        }
                    }
                }
            }
        });
        let addr = SocketAddr::new(config.host, config.port);
        let listener =
            match crate::server::listen(addr).and_then(|l| l.local_addr().map(|a| (l, a))) {
                Ok(pair) => pair,
                Err(source) => {
                    refresher.abort();
                    if let Some(p) = &provisioner {
                        p.abort();
                    }
                    queue.events.close();
                    queue.events.release().await;
                    if let Some(local) = local_port {
                        local.shutdown().await;
                    }
                    return Err(StartError::Bind { addr, source });
                }
            };
        let (listener, ingress_addr) = listener;
        let dedup = Dedup::new(
            DEDUP_HEADERS
                .iter()
                .map(|h| (*h).to_owned())
                .chain(config.dedup_headers.iter().cloned())
                .collect(),
            config.dedup_window,
        );
        dedup.preload(queue.deliveries.recent(config.dedup_window).await);
        let serve_metrics = Arc::clone(&metrics);
        let ingress = Arc::new(Ingress {
            registry: Arc::clone(&registry),
            queue: queue.clone(),
            mapping,
            body_limit: config.body_limit,
            admin_token: config.admin_token.as_ref().map(|s| s.0.clone()),
            admin_enabled: config.admin_enabled,
            body_timeout: config.ingress.body_timeout,
            in_flight: tokio::sync::Semaphore::new(config.ingress.max_in_flight),
            lag: crate::server::Lag::start(),
            max_lag: config.ingress.max_lag,
            dedup,
            metrics,
            port,
        });
        let (stop_ingress, stopped) = oneshot::channel::<()>();
        let app = router(ingress);
        let limits = config.ingress;
        let drain = config.shutdown_wait;
        let ingress = tokio::spawn(async move {
            crate::server::serve(listener, app, limits, serve_metrics, drain, async {
                let _ = stopped.await;
            })
            .await;
        });
        let paths: Vec<String> = registry
            .paths()
            .map(|p| format!("/integration{p}"))
            .collect();
        tracing::info!(
            events_in_flight = config.events_in_flight,
            "listening on http://{ingress_addr} for {}",
            paths.join(", ")
        );
        Ok(RunningApp {
            ingress_addr,
            port_url: base_url,
            local_port,
            queue,
            stop_ingress,
            ingress,
            workers,
            refresher,
            provisioner,
            shutdown_wait: config.shutdown_wait,
            canceller,
        })
    }
}

impl RunningApp {
    /// The webhook server's address.
    #[must_use]
    pub fn ingress_addr(&self) -> SocketAddr {
        self.ingress_addr
    }

    /// The webhook server's base URL, e.g. `http://127.0.0.1:8000`.
    #[must_use]
    pub fn ingress_url(&self) -> String {
        format!("http://{}", self.ingress_addr)
    }

    /// The Port API in use (the built-in Port's URL when no credentials are set).
    #[must_use]
    pub fn port_url(&self) -> &str {
        &self.port_url
    }

    /// Events held by the queue (waiting plus in flight); for a shared queue, by every replica.
    /// 0 when the queue cannot be asked.
    pub async fn queue_depth(&self) -> usize {
        self.queue.events.stats().await.map_or(0, |s| s.depth)
    }

    /// Stops accepting webhooks and lets this process's work finish within
    /// `OCEAN__MAX_WAIT_SECONDS_BEFORE_SHUTDOWN`: for a queue of its own, what is queued and in
    /// flight; for a shared queue, only its own jobs in flight (the other replicas go on with the
    /// rest). Then it cancels what still runs, gives back the leases it still holds, and stops the
    /// workers and the built-in Port.
    pub async fn shutdown(self) {
        let deadline = Instant::now() + self.shutdown_wait;
        let _ = self.stop_ingress.send(());
        let _ = self.ingress.await;
        let events = &self.queue.events;
        let depth = || async { events.stats().await.map_or(0, |s| s.depth) };
        if !events.shared() {
            while depth().await > 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let left = depth().await;
            if left > 0 && events.durable() {
                tracing::info!(
                    events = left,
                    "shutdown wait is over; events still queued are kept for the next start"
                );
            } else if left > 0 {
                tracing::warn!(
                    events = left,
                    "shutdown wait is over; events still queued are dropped (memory queue)"
                );
            }
        }
        events.close();
        let aborts: Vec<_> = self.workers.iter().map(JoinHandle::abort_handle).collect();
        let mut workers = futures_util::future::join_all(self.workers);
        if tokio::time::timeout_at(deadline, &mut workers)
            .await
            .is_err()
        {
            // Jobs still running: cancel them so their `on_cancel` hooks run, then stop waiting.
            self.canceller.cancel();
            if tokio::time::timeout(CANCEL_GRACE, &mut workers)
                .await
                .is_err()
            {
                aborts.iter().for_each(tokio::task::AbortHandle::abort);
            }
        }
        events.release().await;
        self.refresher.abort();
        if let Some(p) = &self.provisioner {
            p.abort();
        }
        if let Some(local) = self.local_port {
            local.shutdown().await;
        }
        tracing::info!("stopped");
    }
}
