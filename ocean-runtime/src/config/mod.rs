//! Settings from the environment, with Ocean's names (`OCEAN__…`).
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `OCEAN__APPLICATION__HOST` | `127.0.0.1` | address the webhook server listens on |
//! | `OCEAN__APPLICATION__PORT` | `8000` | port of the webhook server (`0` picks a free one) |
//! | `OCEAN__PORT__CLIENT_ID`, `OCEAN__PORT__CLIENT_SECRET` | unset | Port credentials; unset means the built-in local Port |
//! | `OCEAN__PORT__BASE_URL` | `https://api.getport.io` | Port's API (ignored with the built-in Port) |
//! | `OCEAN__PORT__MAX_CONCURRENT_REQUESTS` | `16` | requests to Port at once at most (upserts of concurrent events share bulk requests of up to 20 entities) |
//! | `OCEAN__PORT__PORT_APP_CONFIG_CACHE_TTL` | `60` | seconds between mapping refreshes |
//! | `OCEAN__INTEGRATION__IDENTIFIER` | `my-<type>-integration` | the integration's identifier in Port |
//! | `OCEAN__INTEGRATION__TYPE` | `type` of `.port/spec.yaml`, else the binary's package name | the integration type |
//! | `OCEAN__MAX_EVENTS_IN_FLIGHT` | `256` | events processed at once (see below) |
//! | `OCEAN__EVENT_WORKERS_COUNT` | unset | Ocean's setting: when set, that many workers each process one event at a time (so that many events in flight), in place of `OCEAN__MAX_EVENTS_IN_FLIGHT`; setting both is an error |
//! | `OCEAN__MAX_EVENT_PROCESSING_SECONDS` | `90` | time limit of one processor job, retries included |
//! | `OCEAN__MAX_WAIT_SECONDS_BEFORE_SHUTDOWN` | `5` | how long shutdown waits for in-flight events |
//! | `OCEAN__PORT_APP_CONFIG_FILE` | unset | read the mapping from this file instead of Port |
//! | `OCEAN__RESOURCES_PATH` | `.port/resources` | folder holding the default `port-app-config.yml`, `blueprints.json`, `actions.json`, `scorecards.json` and `pages.json` (else the ones compiled in) |
//! | `OCEAN__INITIALIZE_PORT_RESOURCES` | `true` | create the default blueprints, actions, scorecards and pages in Port at the first start, as Ocean does |
//! | `OCEAN__INGRESS__DEDUP_WINDOW_SECONDS` | `3600` | a delivery id seen within this window is answered 200 and not queued again (`0` turns it off) |
//! | `OCEAN__INGRESS__DEDUP_HEADERS` | | more headers carrying a delivery id, comma-separated (always: `X-GitHub-Delivery`, `webhook-id`, `X-Gitlab-Event-UUID`, `X-Atlassian-Webhook-Identifier`) |
//! | `OCEAN__ADMIN__TOKEN` | unset | bearer token required by the `/admin/…` endpoints; unset, they answer only clients on a loopback address, and a non-loopback `OCEAN__APPLICATION__HOST` is refused at start-up |
//! | `OCEAN__ADMIN__ENABLED` | `true` | `false` serves no `/admin/…` endpoint at all (then no token is needed on any host) |
//! | `OCEAN__QUEUE__BACKEND` | `disk` | `disk` (events survive crashes), `memory` (fastest, lost on crash, as in Ocean) or `redis` (several replicas share one queue) |
//! | `OCEAN__QUEUE__REDIS_URL` | | with `redis`: `redis://[user:password@]host:port[/db]`, or `rediss://…` for TLS; a Redis Cluster is found out by itself, and several comma-separated URLs give more seed nodes |
//! | `OCEAN__QUEUE__REDIS_CA_FILE` | | with `rediss://`: PEM file of the authorities to trust instead of the public ones (a private CA) |
//! | `OCEAN__QUEUE__LEASE_SECONDS` | `15` | with `redis`: lease time; a dead replica's events are taken over after at most this plus the reaper period |
//! | `OCEAN__QUEUE__REAPER_SECONDS` | `1` | with `redis`: how often expired leases are looked for |
//! | `OCEAN__QUEUE__MAX_TAKEOVERS` | `5` | with `redis`: an event taken over more often becomes a dead letter |
//! | `OCEAN__QUEUE__PATH` | `.ocean/queue` | folder of the disk queue |
//! | `OCEAN__QUEUE__CAPACITY` | `100000` | events the queue holds before ingress answers 503 |
//! | `OCEAN__INGRESS__BODY_LIMIT_BYTES` | `1048576` | largest webhook body accepted (413 above) |
//! | `OCEAN__INGRESS__HEADER_TIMEOUT_SECONDS` | `10` | a connection that has not sent a whole request head this long after it opened (or after its last answer) is closed |
//! | `OCEAN__INGRESS__BODY_TIMEOUT_SECONDS` | `30` | a request whose body is not all read this long after its head is answered 408 |
//! | `OCEAN__INGRESS__IDLE_TIMEOUT_SECONDS` | `60` | a connection that moved no byte this long is closed (idle keep-alive, a stalled body) |
//! | `OCEAN__INGRESS__MAX_CONNECTIONS` | `1024` | open connections at most; one more is answered 503 and closed |
//! | `OCEAN__INGRESS__MAX_IN_FLIGHT` | `256` | webhooks being accepted at once at most; one more is answered 503 with `Retry-After` |
//! | `OCEAN__INGRESS__MAX_LAG_MS` | `500` | while the server's runtime runs this far behind (more arrives than the cores can take), new webhooks are answered 503 with `Retry-After` |
//! | `OCEAN__UPSTREAM__TIMEOUT_SECONDS` | `30` | time limit of one request of the upstream client ([`crate::upstream`]) |
//! | `OCEAN__UPSTREAM__MAX_RETRIES` | `5` | retries of a 429, a retryable 5xx, a timeout or a connection failure |
//! | `OCEAN__UPSTREAM__RATE_LIMIT` | unset | requests per host: `10/s`, `600/m`, `5000/h` |
//! | `OCEAN__UPSTREAM__MAX_CONCURRENCY` | `256` | requests per host at once (as many as events in flight by default; a rate limit is what protects an upstream) |
//! | `OCEAN__LOCAL_PORT__HOST` | `127.0.0.1` | address of the built-in Port |
//! | `OCEAN__LOCAL_PORT__PORT` | `5101` | port of the built-in Port (`0` picks a free one) |
//! | `OCEAN__LOCAL_PORT__DATA_DIR` | `.ocean/local-port` | where the built-in Port keeps its data |
//! | `OCEAN__INTEGRATION__CONFIG__<FIELD>` | | the integration's own settings, read into `Config<T>` (see [`crate::integration_config`]) |
//!
//! Events in flight: processors mostly wait on third-party APIs (a `GET` of the latest record takes
//! tens to hundreds of milliseconds), and a waiting event costs a small task and its body, not a
//! thread. 256 in flight keep a 100 ms upstream at about 2,500 events/s, while the per-host limits
//! of the upstream client (`OCEAN__UPSTREAM__…`) and of Port (`OCEAN__PORT__MAX_CONCURRENT_REQUESTS`)
//! bound what reaches each service. Per-group order holds at any setting: an event waits while an
//! earlier event of its group is in flight. `OCEAN__EVENT_WORKERS_COUNT=1` gives Ocean's strict
//! one-at-a-time processing.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::integration_config::IntegrationVars;

mod env;

/// Events processed at once unless `OCEAN__MAX_EVENTS_IN_FLIGHT` or `OCEAN__EVENT_WORKERS_COUNT`
/// says otherwise; the table on [`Settings`](crate::Settings) says how to choose.
pub const DEFAULT_EVENTS_IN_FLIGHT: usize = 256;

/// A setting that is missing or malformed; always names the variable.
///
/// Returned when a setting of [`Settings`](crate::Settings) or an integration
/// [`Config<T>`](crate::Config) is malformed; it names the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The value does not parse.
    #[error("{var}={value:?} is invalid: {reason}")]
    Invalid {
        /// The variable.
        var: String,
        /// Its value.
        value: String,
        /// What was expected.
        reason: String,
    },
    /// A variable that another one makes necessary is unset.
    #[error("{var} must be set because {because}")]
    Missing {
        /// The missing variable.
        var: String,
        /// Why it is needed.
        because: String,
    },
}

impl ConfigError {
    /// `OCEAN__QUEUE__BACKEND=redis` without `OCEAN__QUEUE__REDIS_URL`.
    pub(crate) fn redis_url_missing() -> Self {
        Self::Missing {
            var: "OCEAN__QUEUE__REDIS_URL".to_owned(),
            because: "OCEAN__QUEUE__BACKEND is `redis`".to_owned(),
        }
    }
}

/// Whether `ip` only reaches this machine (`127.0.0.0/8`, `::1`, or `::ffff:127.x.y.z`).
#[must_use]
pub(crate) fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// The integration built into this binary: its package name and version (filled in by `main!`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntegrationInfo {
    /// Default integration type (`OCEAN__INTEGRATION__TYPE`).
    pub name: &'static str,
    /// The integration's version, reported to Port in the user agent.
    pub version: &'static str,
    /// The default mapping compiled into the binary, if the crate has `.port/resources/port-app-config.yml`.
    pub default_mapping: Option<&'static str>,
    /// The default Port resources compiled into the binary: (file name, contents) of the crate's
    /// `.port/resources/{blueprints,actions,scorecards,pages}.json` that exist (checked to be
    /// JSON when compiled).
    pub default_resources: &'static [(&'static str, &'static str)],
    /// Ocean's integration spec compiled into the binary, if the crate has `.port/spec.yaml`.
    pub spec: Option<&'static str>,
}

/// Where queued events are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueBackend {
    /// An embedded database: events survive crashes (the default).
    Disk,
    /// Memory only: fastest, lost on a crash (Ocean's behaviour).
    Memory,
    /// Redis, shared by several replicas.
    Redis,
}

/// A secret setting: `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// Port credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct PortCredentials {
    /// `OCEAN__PORT__CLIENT_ID`.
    pub client_id: String,
    /// `OCEAN__PORT__CLIENT_SECRET`.
    pub client_secret: String,
}

impl std::fmt::Debug for PortCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortCredentials")
            .field("client_id", &self.client_id)
            .field("client_secret", &"***")
            .finish()
    }
}

/// What the webhook server allows its clients (the `OCEAN__INGRESS__…` limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngressLimits {
    /// Time for a whole request head, from the connection's opening or its last answer.
    pub header_timeout: Duration,
    /// Time for a whole request body, from the end of its head.
    pub body_timeout: Duration,
    /// Time a connection may move no byte at all.
    pub idle_timeout: Duration,
    /// Open connections at most.
    pub max_connections: usize,
    /// Webhooks being accepted (read, checked, stored) at once at most.
    pub max_in_flight: usize,
    /// How far behind the runtime may run before new webhooks are refused.
    pub max_lag: Duration,
}

impl Default for IngressLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
            max_in_flight: 256,
            max_lag: Duration::from_millis(500),
        }
    }
}

/// Every setting of the runtime, read from the environment with Ocean's names (`OCEAN__…`).
///
/// | variable | default | meaning |
/// |---|---|---|
/// | `OCEAN__APPLICATION__HOST` | `127.0.0.1` | address the webhook server listens on |
/// | `OCEAN__APPLICATION__PORT` | `8000` | port of the webhook server (`0` picks a free one) |
/// | `OCEAN__PORT__CLIENT_ID`, `OCEAN__PORT__CLIENT_SECRET` | unset | Port credentials; unset means the built-in local Port |
/// | `OCEAN__PORT__BASE_URL` | `https://api.getport.io` | Port's API (ignored with the built-in Port) |
/// | `OCEAN__PORT__MAX_CONCURRENT_REQUESTS` | `16` | requests to Port at once at most (upserts of concurrent events share bulk requests of up to 20 entities) |
/// | `OCEAN__PORT__PORT_APP_CONFIG_CACHE_TTL` | `60` | seconds between mapping refreshes |
/// | `OCEAN__INTEGRATION__IDENTIFIER` | `my-<type>-integration` | the integration's identifier in Port |
/// | `OCEAN__INTEGRATION__TYPE` | `type` of `.port/spec.yaml`, else the binary's package name | the integration type |
/// | `OCEAN__MAX_EVENTS_IN_FLIGHT` | `256` | events processed at once (see below) |
/// | `OCEAN__EVENT_WORKERS_COUNT` | unset | Ocean's setting: when set, that many workers each process one event at a time (so that many events in flight), in place of `OCEAN__MAX_EVENTS_IN_FLIGHT`; setting both is an error |
/// | `OCEAN__MAX_EVENT_PROCESSING_SECONDS` | `90` | time limit of one processor job, retries included |
/// | `OCEAN__MAX_WAIT_SECONDS_BEFORE_SHUTDOWN` | `5` | how long shutdown waits for in-flight events |
/// | `OCEAN__PORT_APP_CONFIG_FILE` | unset | read the mapping from this file instead of Port |
/// | `OCEAN__RESOURCES_PATH` | `.port/resources` | folder holding the default `port-app-config.yml`, `blueprints.json`, `actions.json`, `scorecards.json` and `pages.json` (else the ones compiled in) |
/// | `OCEAN__INITIALIZE_PORT_RESOURCES` | `true` | create the default blueprints, actions, scorecards and pages in Port at the first start, as Ocean does |
/// | `OCEAN__INGRESS__DEDUP_WINDOW_SECONDS` | `3600` | a delivery id seen within this window is answered 200 and not queued again (`0` turns it off) |
/// | `OCEAN__INGRESS__DEDUP_HEADERS` | | more headers carrying a delivery id, comma-separated (always: `X-GitHub-Delivery`, `webhook-id`, `X-Gitlab-Event-UUID`, `X-Atlassian-Webhook-Identifier`) |
/// | `OCEAN__ADMIN__TOKEN` | unset | bearer token required by the `/admin/…` endpoints; unset, they answer only clients on a loopback address, and a non-loopback `OCEAN__APPLICATION__HOST` is refused at start-up |
/// | `OCEAN__ADMIN__ENABLED` | `true` | `false` serves no `/admin/…` endpoint at all (then no token is needed on any host) |
/// | `OCEAN__QUEUE__BACKEND` | `disk` | `disk` (events survive crashes), `memory` (fastest, lost on crash, as in Ocean) or `redis` (several replicas share one queue) |
/// | `OCEAN__QUEUE__REDIS_URL` | | with `redis`: `redis://[user:password@]host:port[/db]`, or `rediss://…` for TLS; a Redis Cluster is found out by itself, and several comma-separated URLs give more seed nodes |
/// | `OCEAN__QUEUE__REDIS_CA_FILE` | | with `rediss://`: PEM file of the authorities to trust instead of the public ones (a private CA) |
/// | `OCEAN__QUEUE__LEASE_SECONDS` | `15` | with `redis`: lease time; a dead replica's events are taken over after at most this plus the reaper period |
/// | `OCEAN__QUEUE__REAPER_SECONDS` | `1` | with `redis`: how often expired leases are looked for |
/// | `OCEAN__QUEUE__MAX_TAKEOVERS` | `5` | with `redis`: an event taken over more often becomes a dead letter |
/// | `OCEAN__QUEUE__PATH` | `.ocean/queue` | folder of the disk queue |
/// | `OCEAN__QUEUE__CAPACITY` | `100000` | events the queue holds before ingress answers 503 |
/// | `OCEAN__INGRESS__BODY_LIMIT_BYTES` | `1048576` | largest webhook body accepted (413 above) |
/// | `OCEAN__INGRESS__HEADER_TIMEOUT_SECONDS` | `10` | a connection that has not sent a whole request head this long after it opened (or after its last answer) is closed |
/// | `OCEAN__INGRESS__BODY_TIMEOUT_SECONDS` | `30` | a request whose body is not all read this long after its head is answered 408 |
/// | `OCEAN__INGRESS__IDLE_TIMEOUT_SECONDS` | `60` | a connection that moved no byte this long is closed (idle keep-alive, a stalled body) |
/// | `OCEAN__INGRESS__MAX_CONNECTIONS` | `1024` | open connections at most; one more is answered 503 and closed |
/// | `OCEAN__INGRESS__MAX_IN_FLIGHT` | `256` | webhooks being accepted at once at most; one more is answered 503 with `Retry-After` |
/// | `OCEAN__INGRESS__MAX_LAG_MS` | `500` | while the server's runtime runs this far behind (more arrives than the cores can take), new webhooks are answered 503 with `Retry-After` |
/// | `OCEAN__UPSTREAM__TIMEOUT_SECONDS` | `30` | time limit of one request of the upstream client ([`Upstream`](crate::Upstream)) |
/// | `OCEAN__UPSTREAM__MAX_RETRIES` | `5` | retries of a 429, a retryable 5xx, a timeout or a connection failure |
/// | `OCEAN__UPSTREAM__RATE_LIMIT` | unset | requests per host: `10/s`, `600/m`, `5000/h` |
/// | `OCEAN__UPSTREAM__MAX_CONCURRENCY` | `256` | requests per host at once (as many as events in flight by default; a rate limit is what protects an upstream) |
/// | `OCEAN__LOCAL_PORT__HOST` | `127.0.0.1` | address of the built-in Port |
/// | `OCEAN__LOCAL_PORT__PORT` | `5101` | port of the built-in Port (`0` picks a free one) |
/// | `OCEAN__LOCAL_PORT__DATA_DIR` | `.ocean/local-port` | where the built-in Port keeps its data |
/// | `OCEAN__INTEGRATION__CONFIG__<FIELD>` | | the integration's own settings, read into [`Config<T>`](crate::Config) |
///
/// Events in flight: processors mostly wait on third-party APIs (a `GET` of the latest record takes
/// tens to hundreds of milliseconds), and a waiting event costs a small task and its body, not a
/// thread. 256 in flight keep a 100 ms upstream at about 2,500 events/s, while the per-host limits
/// of the upstream client (`OCEAN__UPSTREAM__…`) and of Port (`OCEAN__PORT__MAX_CONCURRENT_REQUESTS`)
/// bound what reaches each service. Per-group order holds at any setting: an event waits while an
/// earlier event of its group is in flight. `OCEAN__EVENT_WORKERS_COUNT=1` gives Ocean's strict
/// one-at-a-time processing.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Address of the webhook server.
    pub host: IpAddr,
    /// Port of the webhook server; 0 picks a free one.
    pub port: u16,
    /// Port credentials; `None` runs against the built-in local Port.
    pub credentials: Option<PortCredentials>,
    /// Port's API base URL.
    pub port_base_url: String,
    /// How often the mapping is refreshed.
    pub mapping_refresh: Duration,
    /// The integration's identifier.
    pub integration_identifier: String,
    /// The integration type.
    pub integration_type: String,
    /// The integration's title in Port (`title` of `.port/spec.yaml`).
    pub integration_title: Option<String>,
    /// The integration's version.
    pub integration_version: String,
    /// Requests to Port at once at most.
    pub port_max_concurrent_requests: usize,
    /// Events processed at once (`OCEAN__MAX_EVENTS_IN_FLIGHT`, or Ocean's
    /// `OCEAN__EVENT_WORKERS_COUNT` when that is set).
    pub events_in_flight: usize,
    /// Time limit of one processor job.
    pub job_timeout: Duration,
    /// How long shutdown waits for in-flight events.
    pub shutdown_wait: Duration,
    /// An explicit mapping file (read instead of Port's integration record).
    pub mapping_file: Option<PathBuf>,
    /// Folder of the default `port-app-config.yml`.
    pub resources_path: PathBuf,
    /// The default mapping compiled into the binary.
    pub default_mapping: Option<&'static str>,
    /// The default Port resources compiled in (see [`IntegrationInfo::default_resources`]).
    pub default_resources: &'static [(&'static str, &'static str)],
    /// Whether the default Port resources (blueprints, actions, scorecards, pages) are created
    /// in Port at the first start (`OCEAN__INITIALIZE_PORT_RESOURCES`).
    pub initialize_port_resources: bool,
    /// Bearer token of the admin endpoints.
    pub admin_token: Option<Secret>,
    /// Whether the admin endpoints are served (`OCEAN__ADMIN__ENABLED`).
    pub admin_enabled: bool,
    /// Limits on the webhook server's clients.
    pub ingress: IngressLimits,
    /// The upstream client's settings.
    pub upstream: crate::upstream::UpstreamSettings,
    /// Queue backend.
    pub queue_backend: QueueBackend,
    /// Folder of the disk queue.
    pub queue_path: PathBuf,
    /// Queue capacity.
    pub queue_capacity: usize,
    /// The Redis queue's URL (may hold a password).
    pub redis_url: Option<Secret>,
    /// PEM file of the certificate authorities a `rediss://` server is checked against, instead
    /// of the public ones.
    pub redis_ca_file: Option<PathBuf>,
    /// Lease time of the Redis queue.
    pub lease: Duration,
    /// How often the Redis queue looks for expired leases.
    pub reaper_period: Duration,
    /// Takeovers after which an event becomes a dead letter.
    pub max_takeovers: u32,
    /// Largest accepted webhook body, in bytes.
    pub body_limit: usize,
    /// How long delivery ids are remembered.
    pub dedup_window: Duration,
    /// Extra headers carrying a delivery id (lower case).
    pub dedup_headers: Vec<String>,
    /// Address of the built-in Port.
    pub local_port_host: IpAddr,
    /// Port of the built-in Port; 0 picks a free one.
    pub local_port_port: u16,
    /// Data folder of the built-in Port.
    pub local_port_data_dir: PathBuf,
    /// The integration's own variables (`OCEAN__INTEGRATION__CONFIG__…`).
    pub integration: IntegrationVars,
}

impl Config {
    /// The default mapping text: `<resources path>/port-app-config.yml` (or `.yaml`, `.json`) if present,
    /// else the one compiled into the binary.
    ///
    /// # Errors
    /// The file exists but cannot be read.
    pub fn default_mapping_text(&self) -> std::io::Result<Option<String>> {
        for name in [
            "port-app-config.yml",
            "port-app-config.yaml",
            "port-app-config.json",
        ] {
            let path = self.resources_path.join(name);
            if path.is_file() {
                return std::fs::read_to_string(path).map(Some);
            }
        }
        Ok(self.default_mapping.map(str::to_owned))
    }

    /// A default Port resource file (`blueprints.json`, `actions.json`, …): the one in the
    /// resources folder when it exists, else the one compiled in; with its path for messages.
    ///
    /// # Errors
    /// The file exists but cannot be read.
    pub fn default_resource_text(&self, name: &str) -> std::io::Result<Option<(String, String)>> {
        let path = self.resources_path.join(name);
        if path.is_file() {
            let text = std::fs::read_to_string(&path)?;
            return Ok(Some((path.display().to_string(), text)));
        }
        Ok(self
            .default_resources
            .iter()
            .find(|(file, _)| *file == name)
            .map(|(_, text)| (format!(".port/resources/{name}"), (*text).to_owned())))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_network_address_without_an_admin_token_is_refused_naming_both_variables() {
        let vars = |extra: &[(&'static str, &'static str)]| {
            let mut v = vec![("OCEAN__APPLICATION__HOST", "0.0.0.0")];
            v.extend_from_slice(extra);
            v
        };
        let err = Config::from_vars(INFO, vars(&[])).unwrap_err().to_string();
        assert!(
            err.contains("OCEAN__ADMIN__TOKEN") && err.contains("OCEAN__APPLICATION__HOST=0.0.0.0"),
            "{err}"
        );
        assert!(err.contains("OCEAN__ADMIN__ENABLED=false"), "{err}");
        let with_token = Config::from_vars(INFO, vars(&[("OCEAN__ADMIN__TOKEN", "t")]));
        assert!(with_token.is_ok());
        let without_admin = Config::from_vars(INFO, vars(&[("OCEAN__ADMIN__ENABLED", "false")]));
        assert!(without_admin.is_ok_and(|c| !c.admin_enabled));
        let loopback = Config::from_vars(INFO, [("OCEAN__APPLICATION__HOST", "::1")]);
        assert!(loopback.is_ok());
    }

    #[test]
    fn ingress_timeouts_must_be_positive() {
        let err = Config::from_vars(INFO, [("OCEAN__INGRESS__HEADER_TIMEOUT_SECONDS", "0")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("OCEAN__INGRESS__HEADER_TIMEOUT_SECONDS"),
            "{err}"
        );
        let c = Config::from_vars(INFO, [("OCEAN__INGRESS__IDLE_TIMEOUT_SECONDS", "2.5")]).unwrap();
        assert_eq!(c.ingress.idle_timeout, Duration::from_millis(2500));
        assert_eq!(c.ingress.header_timeout, Duration::from_secs(10));
    }

    use super::*;

    const INFO: IntegrationInfo = IntegrationInfo {
        name: "Jira",
        version: "1.2.3",
        default_mapping: None,
        default_resources: &[],
        spec: None,
    };

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_vars(INFO, vars.iter().copied())
    }

    #[test]
    fn defaults_follow_ocean() {
        let c = config(&[]).unwrap();
        assert_eq!(c.port, 8000);
        assert_eq!(c.host, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(c.integration_type, "jira");
        assert_eq!(c.integration_identifier, "my-jira-integration");
        assert_eq!(c.job_timeout, Duration::from_secs(90));
        assert_eq!(c.shutdown_wait, Duration::from_secs(5));
        assert_eq!(c.events_in_flight, DEFAULT_EVENTS_IN_FLIGHT);
        assert!(c.credentials.is_none());
    }

    #[test]
    fn ocean_workers_count_sets_events_in_flight() {
        let c = config(&[("OCEAN__EVENT_WORKERS_COUNT", "3")]).unwrap();
        assert_eq!(c.events_in_flight, 3);
        let c = config(&[("OCEAN__MAX_EVENTS_IN_FLIGHT", "1000")]).unwrap();
        assert_eq!(c.events_in_flight, 1000);
        let e = config(&[
            ("OCEAN__EVENT_WORKERS_COUNT", "3"),
            ("OCEAN__MAX_EVENTS_IN_FLIGHT", "1000"),
        ])
        .unwrap_err();
        let e = e.to_string();
        assert!(
            e.contains("OCEAN__EVENT_WORKERS_COUNT") && e.contains("OCEAN__MAX_EVENTS_IN_FLIGHT"),
            "{e}"
        );
    }

    #[test]
    fn errors_name_the_variable() {
        let e = config(&[("OCEAN__APPLICATION__PORT", "eighty")]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("OCEAN__APPLICATION__PORT=\"eighty\" is invalid"),
            "{e}"
        );
        let e = config(&[("OCEAN__EVENT_WORKERS_COUNT", "0")]).unwrap_err();
        assert!(e.to_string().contains("OCEAN__EVENT_WORKERS_COUNT"), "{e}");
        let e = config(&[("OCEAN__MAX_EVENTS_IN_FLIGHT", "lots")]).unwrap_err();
        assert!(e.to_string().contains("OCEAN__MAX_EVENTS_IN_FLIGHT"), "{e}");
        let e = config(&[("OCEAN__MAX_EVENT_PROCESSING_SECONDS", "-1")]).unwrap_err();
        assert!(
            e.to_string()
                .contains("OCEAN__MAX_EVENT_PROCESSING_SECONDS"),
            "{e}"
        );
        let e = config(&[("OCEAN__PORT__BASE_URL", "api.getport.io")]).unwrap_err();
        assert!(e.to_string().contains("OCEAN__PORT__BASE_URL"), "{e}");
    }

    #[test]
    fn half_credentials_name_the_missing_half() {
        let e = config(&[("OCEAN__PORT__CLIENT_ID", "id")]).unwrap_err();
        assert_eq!(
            e,
            ConfigError::Missing {
                var: "OCEAN__PORT__CLIENT_SECRET".to_owned(),
                because: "OCEAN__PORT__CLIENT_ID is set".to_owned()
            }
        );
        let c = config(&[
            ("OCEAN__PORT__CLIENT_ID", "id"),
            ("OCEAN__PORT__CLIENT_SECRET", "s"),
        ])
        .unwrap();
        assert_eq!(c.credentials.unwrap().client_id, "id");
    }

    #[test]
    fn the_redis_queue_needs_a_redis_url_and_hides_its_password() {
        let e = config(&[("OCEAN__QUEUE__BACKEND", "redis")]).unwrap_err();
        assert_eq!(
            e,
            ConfigError::Missing {
                var: "OCEAN__QUEUE__REDIS_URL".to_owned(),
                because: "OCEAN__QUEUE__BACKEND is `redis`".to_owned()
            }
        );
        let e = config(&[
            ("OCEAN__QUEUE__BACKEND", "redis"),
            ("OCEAN__QUEUE__REDIS_URL", "http://u:hunter2@127.0.0.1:6379"),
        ])
        .unwrap_err();
        assert!(e.to_string().starts_with("OCEAN__QUEUE__REDIS_URL="), "{e}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let c = config(&[
            ("OCEAN__QUEUE__BACKEND", "redis"),
            (
                "OCEAN__QUEUE__REDIS_URL",
                "rediss://u:hunter2@127.0.0.1:6379/2",
            ),
        ])
        .unwrap();
        assert_eq!(c.queue_backend, QueueBackend::Redis);
        assert_eq!(c.lease, Duration::from_secs(15));
        assert_eq!(c.max_takeovers, 5);
        assert!(!format!("{c:?}").contains("hunter2"));
        let e = config(&[("OCEAN__QUEUE__LEASE_SECONDS", "0.1")]).unwrap_err();
        assert!(e.to_string().contains("OCEAN__QUEUE__LEASE_SECONDS"), "{e}");
        // The seed nodes of a cluster; each must be a Redis URL.
        let c = config(&[
            ("OCEAN__QUEUE__BACKEND", "redis"),
            (
                "OCEAN__QUEUE__REDIS_URL",
                "redis://10.0.0.1:6379, redis://10.0.0.2:6379",
            ),
        ])
        .unwrap();
        assert_eq!(c.queue_backend, QueueBackend::Redis);
        let e = config(&[
            ("OCEAN__QUEUE__BACKEND", "redis"),
            (
                "OCEAN__QUEUE__REDIS_URL",
                "redis://u:hunter2@10.0.0.1:6379,10.0.0.2:6379",
            ),
        ])
        .unwrap_err();
        assert!(e.to_string().starts_with("OCEAN__QUEUE__REDIS_URL="), "{e}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        // A private authority only makes sense for TLS.
        let e = config(&[
            ("OCEAN__QUEUE__BACKEND", "redis"),
            ("OCEAN__QUEUE__REDIS_URL", "redis://127.0.0.1:6379"),
            ("OCEAN__QUEUE__REDIS_CA_FILE", "/etc/ocean/ca.pem"),
        ])
        .unwrap_err();
        assert!(
            e.to_string().starts_with("OCEAN__QUEUE__REDIS_CA_FILE="),
            "{e}"
        );
        let c = config(&[
            ("OCEAN__QUEUE__BACKEND", "redis"),
            ("OCEAN__QUEUE__REDIS_URL", "rediss://127.0.0.1:6379"),
            ("OCEAN__QUEUE__REDIS_CA_FILE", "/etc/ocean/ca.pem"),
        ])
        .unwrap();
        assert_eq!(
            c.redis_ca_file.as_deref(),
            Some(std::path::Path::new("/etc/ocean/ca.pem"))
        );
    }

    #[test]
    fn the_spec_names_the_type_and_title_and_requires_its_settings() {
        let info = IntegrationInfo {
            spec: Some(
                "type: jira\ntitle: Jira Cloud\nconfigurations:\n  - name: jiraHost\n    required: true\n",
            ),
            ..INFO
        };
        let e = Config::from_vars(info, []).unwrap_err();
        assert_eq!(
            e,
            ConfigError::Missing {
                var: "OCEAN__INTEGRATION__CONFIG__JIRA_HOST".to_owned(),
                because: ".port/spec.yaml marks `jiraHost` required".to_owned()
            }
        );
        let c = Config::from_vars(
            info,
            [("OCEAN__INTEGRATION__CONFIG__JIRA_HOST", "https://j")],
        )
        .unwrap();
        assert_eq!(c.integration_type, "jira");
        assert_eq!(c.integration_identifier, "my-jira-integration");
        assert_eq!(c.integration_title.as_deref(), Some("Jira Cloud"));
        let c = Config::from_vars(
            info,
            [
                ("OCEAN__INTEGRATION__CONFIG__JIRA_HOST", "https://j"),
                ("OCEAN__INTEGRATION__TYPE", "custom"),
            ],
        )
        .unwrap();
        assert_eq!(c.integration_type, "custom", "the variable wins");
    }

    #[test]
    fn secrets_are_not_printed() {
        let c = config(&[
            ("OCEAN__PORT__CLIENT_ID", "id"),
            ("OCEAN__PORT__CLIENT_SECRET", "hunter2"),
        ])
        .unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
