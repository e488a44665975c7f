//! Reading [`Config`] from `OCEAN__…` variables: each value parsed, checked against the others,
//! and refused with the variable's name.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use super::{
    Config, ConfigError, DEFAULT_EVENTS_IN_FLIGHT, IngressLimits, IntegrationInfo, PortCredentials,
    QueueBackend, Secret, is_loopback,
};
use crate::integration_config::IntegrationVars;

struct Env<F>(F);

impl<F: Fn(&str) -> Option<String>> Env<F> {
    fn raw(&self, var: &str) -> Option<String> {
        (self.0)(var)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    fn parse<T: FromStr>(&self, var: &str, default: T, expected: &str) -> Result<T, ConfigError> {
        match self.raw(var) {
            None => Ok(default),
            Some(value) => value.parse().map_err(|_| ConfigError::Invalid {
                var: var.to_owned(),
                reason: format!("expected {expected}"),
                value,
            }),
        }
    }

    fn seconds(&self, var: &str, default: f64) -> Result<Duration, ConfigError> {
        let secs: f64 = self.parse(var, default, "a number of seconds")?;
        Duration::try_from_secs_f64(secs).map_err(|_| ConfigError::Invalid {
            var: var.to_owned(),
            value: secs.to_string(),
            reason: "expected a non-negative number of seconds".to_owned(),
        })
    }

    /// A number of seconds that must be more than zero.
    fn timeout(&self, var: &str, default: Duration) -> Result<Duration, ConfigError> {
        let d = self.seconds(var, default.as_secs_f64())?;
        if d.is_zero() {
            return Err(ConfigError::Invalid {
                var: var.to_owned(),
                value: "0".to_owned(),
                reason: "must be more than 0 seconds".to_owned(),
            });
        }
        Ok(d)
    }

    fn positive(&self, var: &str, default: usize) -> Result<usize, ConfigError> {
        let n: usize = self.parse(var, default, "a positive whole number")?;
        if n == 0 {
            return Err(ConfigError::Invalid {
                var: var.to_owned(),
                value: "0".to_owned(),
                reason: "must be at least 1".to_owned(),
            });
        }
        Ok(n)
    }
}

impl Config {
    /// Reads the settings from the process environment.
    ///
    /// # Errors
    /// The first setting that is malformed, by name.
    pub fn from_env(info: IntegrationInfo) -> Result<Self, ConfigError> {
        let vars: Vec<(String, String)> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        Self::from_vars(info, vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    /// Reads the settings from `vars` (name, value); a later pair overrides an earlier one.
    ///
    /// # Errors
    /// The first setting that is malformed, by name.
    pub fn from_vars<'a>(
        info: IntegrationInfo,
        vars: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, ConfigError> {
        let map: BTreeMap<&str, &str> = vars.into_iter().collect();
        let integration = IntegrationVars::from_vars(map.iter().map(|(k, v)| (*k, *v)));
        let spec = match info.spec {
            Some(text) => crate::spec::check(text, &integration)?,
            None => crate::spec::Spec::default(),
        };
        let env = Env(|k: &str| map.get(k).map(|v| (*v).to_owned()));
        let localhost = IpAddr::from([127, 0, 0, 1]);
        let client_id = env.raw("OCEAN__PORT__CLIENT_ID");
        let client_secret = env.raw("OCEAN__PORT__CLIENT_SECRET");
        let credentials = match (client_id, client_secret) {
            (Some(client_id), Some(client_secret)) => Some(PortCredentials {
                client_id,
                client_secret,
            }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::Missing {
                    var: "OCEAN__PORT__CLIENT_SECRET".to_owned(),
                    because: "OCEAN__PORT__CLIENT_ID is set".to_owned(),
                });
            }
            (None, Some(_)) => {
                return Err(ConfigError::Missing {
                    var: "OCEAN__PORT__CLIENT_ID".to_owned(),
                    because: "OCEAN__PORT__CLIENT_SECRET is set".to_owned(),
                });
            }
        };
        let integration_type = env
            .raw("OCEAN__INTEGRATION__TYPE")
            .or_else(|| spec.kind.clone())
            .unwrap_or_else(|| info.name.to_ascii_lowercase());
        let integration_identifier = env
            .raw("OCEAN__INTEGRATION__IDENTIFIER")
            .unwrap_or_else(|| format!("my-{integration_type}-integration"));
        let port_base_url = env
            .raw("OCEAN__PORT__BASE_URL")
            .unwrap_or_else(|| "https://api.getport.io".to_owned());
        if !(port_base_url.starts_with("http://") || port_base_url.starts_with("https://")) {
            return Err(ConfigError::Invalid {
                var: "OCEAN__PORT__BASE_URL".to_owned(),
                value: port_base_url,
                reason: "expected an http:// or https:// URL".to_owned(),
            });
        }
        let queue_backend = match env.raw("OCEAN__QUEUE__BACKEND").as_deref() {
            None | Some("disk") => QueueBackend::Disk,
            Some("memory") => QueueBackend::Memory,
            Some("redis") => QueueBackend::Redis,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    var: "OCEAN__QUEUE__BACKEND".to_owned(),
                    value: other.to_owned(),
                    reason: "expected `disk`, `memory` or `redis`".to_owned(),
                });
            }
        };
        let redis_url = env.raw("OCEAN__QUEUE__REDIS_URL");
        match &redis_url {
            Some(url)
                if !url.split(',').all(|u| {
                    let u = u.trim();
                    u.starts_with("redis://") || u.starts_with("rediss://")
                }) =>
            {
                return Err(ConfigError::Invalid {
                    var: "OCEAN__QUEUE__REDIS_URL".to_owned(),
                    value: crate::queue::redact_url(url),
                    reason: "expected a redis:// or rediss:// URL, or several separated by commas (the seed nodes of a Redis Cluster)".to_owned(),
                });
            }
            None if queue_backend == QueueBackend::Redis => {
                return Err(ConfigError::redis_url_missing());
            }
            _ => {}
        }
        let redis_ca_file = env.raw("OCEAN__QUEUE__REDIS_CA_FILE").map(PathBuf::from);
        if let Some(ca) = &redis_ca_file
            && !redis_url
                .as_ref()
                .is_some_and(|u| u.starts_with("rediss://"))
        {
            return Err(ConfigError::Invalid {
                var: "OCEAN__QUEUE__REDIS_CA_FILE".to_owned(),
                value: ca.display().to_string(),
                reason: "it is used only with a rediss:// OCEAN__QUEUE__REDIS_URL".to_owned(),
            });
        }
        let lease = env.seconds("OCEAN__QUEUE__LEASE_SECONDS", 15.0)?;
        if lease < Duration::from_millis(300) {
            return Err(ConfigError::Invalid {
                var: "OCEAN__QUEUE__LEASE_SECONDS".to_owned(),
                value: lease.as_secs_f64().to_string(),
                reason: "must be at least 0.3 seconds".to_owned(),
            });
        }
        let reaper_period = env.seconds("OCEAN__QUEUE__REAPER_SECONDS", 1.0)?;
        if reaper_period < Duration::from_millis(10) {
            return Err(ConfigError::Invalid {
                var: "OCEAN__QUEUE__REAPER_SECONDS".to_owned(),
                value: reaper_period.as_secs_f64().to_string(),
                reason: "must be at least 0.01 seconds".to_owned(),
            });
        }
        let host: IpAddr = env.parse("OCEAN__APPLICATION__HOST", localhost, "an IP address")?;
        let admin_token = env.raw("OCEAN__ADMIN__TOKEN").map(Secret);
        let admin_enabled = env.parse("OCEAN__ADMIN__ENABLED", true, "`true` or `false`")?;
        if admin_enabled && admin_token.is_none() && !is_loopback(host) {
            return Err(ConfigError::Missing {
                var: "OCEAN__ADMIN__TOKEN".to_owned(),
                because: format!(
                    "OCEAN__APPLICATION__HOST={host} is not a loopback address and the /admin/… endpoints (dead letters with their headers, replay, purge) must not be open to the network; or set OCEAN__ADMIN__ENABLED=false to serve none"
                ),
            });
        }
        let defaults = IngressLimits::default();
        let ingress = IngressLimits {
            header_timeout: env.timeout(
                "OCEAN__INGRESS__HEADER_TIMEOUT_SECONDS",
                defaults.header_timeout,
            )?,
            body_timeout: env.timeout(
                "OCEAN__INGRESS__BODY_TIMEOUT_SECONDS",
                defaults.body_timeout,
            )?,
            idle_timeout: env.timeout(
                "OCEAN__INGRESS__IDLE_TIMEOUT_SECONDS",
                defaults.idle_timeout,
            )?,
            max_connections: env
                .positive("OCEAN__INGRESS__MAX_CONNECTIONS", defaults.max_connections)?,
            max_in_flight: env.positive("OCEAN__INGRESS__MAX_IN_FLIGHT", defaults.max_in_flight)?,
            max_lag: Duration::from_millis(
                u64::try_from(env.positive(
                    "OCEAN__INGRESS__MAX_LAG_MS",
                    usize::try_from(defaults.max_lag.as_millis()).unwrap_or(500),
                )?)
                .unwrap_or(u64::MAX),
            ),
        };
        let events_in_flight = match (
            env.raw("OCEAN__EVENT_WORKERS_COUNT"),
            env.raw("OCEAN__MAX_EVENTS_IN_FLIGHT"),
        ) {
            (Some(workers), Some(_)) => {
                return Err(ConfigError::Invalid {
                    var: "OCEAN__EVENT_WORKERS_COUNT".to_owned(),
                    value: workers,
                    reason: "set either it (Ocean's one event per worker) or \
                             OCEAN__MAX_EVENTS_IN_FLIGHT, not both"
                        .to_owned(),
                });
            }
            (Some(_), None) => env.positive("OCEAN__EVENT_WORKERS_COUNT", 1)?,
            _ => env.positive("OCEAN__MAX_EVENTS_IN_FLIGHT", DEFAULT_EVENTS_IN_FLIGHT)?,
        };
        let upstream_defaults = crate::upstream::UpstreamSettings::default();
        let upstream = crate::upstream::UpstreamSettings {
            timeout: env.timeout(
                "OCEAN__UPSTREAM__TIMEOUT_SECONDS",
                upstream_defaults.timeout,
            )?,
            max_retries: env.parse(
                "OCEAN__UPSTREAM__MAX_RETRIES",
                upstream_defaults.max_retries,
                "a whole number",
            )?,
            rate: match env.raw("OCEAN__UPSTREAM__RATE_LIMIT") {
                None => None,
                Some(value) => Some(value.parse().map_err(|reason| ConfigError::Invalid {
                    var: "OCEAN__UPSTREAM__RATE_LIMIT".to_owned(),
                    value,
                    reason,
                })?),
            },
            max_concurrency: env.positive(
                "OCEAN__UPSTREAM__MAX_CONCURRENCY",
                upstream_defaults.max_concurrency,
            )?,
        };
        Ok(Self {
            host,
            port: env.parse(
                "OCEAN__APPLICATION__PORT",
                8000,
                "a TCP port number (0-65535)",
            )?,
            credentials,
            port_base_url,
            mapping_refresh: env.seconds("OCEAN__PORT__PORT_APP_CONFIG_CACHE_TTL", 60.0)?,
            integration_identifier,
            integration_title: spec.title.clone(),
            integration_type,
            integration_version: info.version.to_owned(),
            events_in_flight,
            port_max_concurrent_requests: env
                .positive("OCEAN__PORT__MAX_CONCURRENT_REQUESTS", 16)?,
            job_timeout: env.seconds("OCEAN__MAX_EVENT_PROCESSING_SECONDS", 90.0)?,
            shutdown_wait: env.seconds("OCEAN__MAX_WAIT_SECONDS_BEFORE_SHUTDOWN", 5.0)?,
            mapping_file: env.raw("OCEAN__PORT_APP_CONFIG_FILE").map(PathBuf::from),
            resources_path: env
                .raw("OCEAN__RESOURCES_PATH")
                .map_or_else(|| PathBuf::from(".port/resources"), PathBuf::from),
            default_mapping: info.default_mapping,
            default_resources: info.default_resources,
            initialize_port_resources: env.parse(
                "OCEAN__INITIALIZE_PORT_RESOURCES",
                true,
                "`true` or `false`",
            )?,
            admin_token,
            admin_enabled,
            ingress,
            upstream,
            queue_backend,
            queue_path: env
                .raw("OCEAN__QUEUE__PATH")
                .map_or_else(|| PathBuf::from(".ocean/queue"), PathBuf::from),
            queue_capacity: env.positive("OCEAN__QUEUE__CAPACITY", 100_000)?,
            redis_url: redis_url.map(Secret),
            redis_ca_file,
            lease,
            reaper_period,
            max_takeovers: u32::try_from(env.positive("OCEAN__QUEUE__MAX_TAKEOVERS", 5)?)
                .unwrap_or(u32::MAX),
            body_limit: env.positive("OCEAN__INGRESS__BODY_LIMIT_BYTES", 1024 * 1024)?,
            dedup_window: env.seconds("OCEAN__INGRESS__DEDUP_WINDOW_SECONDS", 3600.0)?,
            dedup_headers: env
                .raw("OCEAN__INGRESS__DEDUP_HEADERS")
                .map(|v| {
                    v.split(',')
                        .map(|h| h.trim().to_ascii_lowercase())
                        .filter(|h| !h.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            local_port_host: env.parse("OCEAN__LOCAL_PORT__HOST", localhost, "an IP address")?,
            local_port_port: env.parse(
                "OCEAN__LOCAL_PORT__PORT",
                5101,
                "a TCP port number (0-65535)",
            )?,
            local_port_data_dir: env
                .raw("OCEAN__LOCAL_PORT__DATA_DIR")
                .map_or_else(|| PathBuf::from(".ocean/local-port"), PathBuf::from),
            integration,
        })
    }
}
