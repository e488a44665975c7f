//! The steps of start-up that `App::start` runs in order: the default mapping and Port resources,
//! seeding the built-in Port, provisioning in Port until it answers, opening the queue, and the
//! check every new mapping version must pass against the processors.

use std::sync::Arc;
use std::time::Duration;

use super::StartError;
use crate::config::{Config, ConfigError, QueueBackend};
use crate::extract::Requirement;
use crate::local_port::LocalPort;
use crate::mapping::{MappingCheck, MappingStore, PortAppConfig};
use crate::port::{PortClient, PortError};
use crate::provision::{Defaults, check_blueprints, check_list, check_scorecards, provision};
use crate::queue::{Backend, DiskQueue, MemoryQueue, RedisOptions, RedisQueue};
use crate::registry::Registry;

/// The default mapping as Port stores it (an integration record's `config`), if there is one.
pub(super) fn default_mapping(config: &Config) -> Result<Option<serde_json::Value>, StartError> {
    let path = config
        .resources_path
        .join("port-app-config.yml")
        .display()
        .to_string();
    let invalid = |reason: String| StartError::DefaultMapping {
        path: path.clone(),
        reason,
    };
    let Some(text) = config
        .default_mapping_text()
        .map_err(|e| invalid(e.to_string()))?
    else {
        return Ok(None);
    };
    let mapping = PortAppConfig::from_yaml(&text).map_err(|e| invalid(e.to_string()))?;
    serde_json::to_value(&mapping)
        .map(Some)
        .map_err(|e| invalid(e.to_string()))
}

/// What the integration brings to Port: its record, default mapping and resources.
pub(super) fn defaults(config: &Config) -> Result<Defaults, StartError> {
    let read = |name: &str| {
        config
            .default_resource_text(name)
            .map_err(|e| StartError::DefaultResources(format!("{name}: {e}")))
    };
    let list = |name: &str| -> Result<Vec<serde_json::Value>, StartError> {
        match read(name)? {
            Some((path, text)) => check_list(&path, &text).map_err(StartError::DefaultResources),
            None => Ok(Vec::new()),
        }
    };
    let blueprints = match read("blueprints.json")? {
        Some((path, text)) => {
            check_blueprints(&path, &text).map_err(StartError::DefaultResources)?
        }
        None => Vec::new(),
    };
    let scorecards = match read("scorecards.json")? {
        Some((path, text)) => {
            check_scorecards(&path, &text, &blueprints).map_err(StartError::DefaultResources)?
        }
        None => Vec::new(),
    };
    Ok(Defaults {
        app_type: config.integration_type.clone(),
        version: config.integration_version.clone(),
        title: config.integration_title.clone(),
        mapping: default_mapping(config)?,
        actions: list("actions.json")?,
        scorecards,
        pages: list("pages.json")?,
        blueprints,
        initialize: config.initialize_port_resources,
    })
}

/// The built-in Port always serves the default mapping of this build (a development loop edits
/// it and restarts); a real Port's mapping is never overwritten (see [`provision`]).
pub(super) async fn seed_local_port(
    config: &Config,
    local: &LocalPort,
    defaults: &Defaults,
) -> Result<(), StartError> {
    let Some(mapping) = defaults.mapping.clone() else {
        return Ok(());
    };
    local
        .seed_integration(
            &config.integration_identifier,
            &config.integration_type,
            &config.integration_version,
            mapping,
        )
        .await?;
    Ok(())
}

/// Says why provisioning failed; the caller tries again after `pause`.
pub(super) fn provision_failed(e: &PortError, pause: Duration) {
    let hint = match e {
        PortError::Status { status, .. }
            if *status == reqwest::StatusCode::UNAUTHORIZED
                || *status == reqwest::StatusCode::FORBIDDEN =>
        {
            " (check OCEAN__PORT__CLIENT_ID and OCEAN__PORT__CLIENT_SECRET)"
        }
        _ => "",
    };
    tracing::warn!(
        error = %e,
        retry_in_s = pause.as_secs(),
        "cannot set the integration up in Port yet{hint}; webhooks are accepted and kept meanwhile"
    );
}

/// Provisions a real Port until it works, after a first attempt failed: webhooks are accepted and
/// kept meanwhile, and readiness turns true once the mapping loads after it.
pub(super) async fn provision_until_done(
    port: Arc<PortClient>,
    defaults: Defaults,
    mapping: Arc<MappingStore>,
) {
    let mut pause = Duration::from_secs(1);
    loop {
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(60));
        match provision(&port, &defaults).await {
            Ok(()) => {
                match mapping.reload().await {
                    Ok(_) => tracing::info!("mapping loaded"),
                    Err(e) => tracing::warn!(error = %e, "no mapping loaded yet"),
                }
                return;
            }
            Err(e) => provision_failed(&e, pause),
        }
    }
}

/// Opens the configured queue backend.
pub(super) async fn open_queue(config: &Config) -> Result<Backend, StartError> {
    Ok(match config.queue_backend {
        QueueBackend::Memory => Backend::new(MemoryQueue::new(config.queue_capacity)),
        QueueBackend::Disk => {
            Backend::new(DiskQueue::open(&config.queue_path, config.queue_capacity)?)
        }
        QueueBackend::Redis => {
            Backend::new(RedisQueue::connect(redis_options(config, true)?).await?)
        }
    })
}

/// The Redis queue's options from the settings; `background` runs a replica's renewer, reaper
/// and doorbell.
pub(crate) fn redis_options(
    config: &Config,
    background: bool,
) -> Result<RedisOptions, ConfigError> {
    let url = config
        .redis_url
        .as_ref()
        .ok_or_else(ConfigError::redis_url_missing)?;
    Ok(RedisOptions {
        url: url.0.clone(),
        ca_file: config.redis_ca_file.clone(),
        integration: config.integration_identifier.clone(),
        lease: config.lease,
        max_takeovers: config.max_takeovers,
        reaper_period: config.reaper_period,
        capacity: config.queue_capacity,
        dedup_window: config.dedup_window,
        connect_attempts: 5,
        background,
    })
}

/// The checks a new mapping version must pass against the processors: every `Selector<T>` a
/// handler takes must fit the selectors of the resources it serves. Mapping kinds that no processor
/// produces are logged as warnings.
pub(super) fn mapping_check(registry: Arc<Registry>) -> MappingCheck {
    Box::new(move |mapping: &PortAppConfig| {
        let mut errors = Vec::new();
        let produced = registry.kinds();
        for (index, resource) in mapping.resources.iter().enumerate() {
            if !produced.contains(&resource.kind.as_str()) {
                tracing::warn!(
                    resource = index,
                    kind = %resource.kind,
                    "the mapping has a resource of kind `{}`, which no processor produces; it stays empty",
                    resource.kind
                );
            }
            let processors = registry
                .all()
                .filter(|p| p.kinds().contains(&resource.kind.as_str()));
            for p in processors {
                for req in p.requirements() {
                    if let Requirement::Selector { type_name, check } = req {
                        let selector = match serde_json::to_value(&resource.selector) {
                            Ok(v) => v,
                            Err(e) => {
                                errors.push(format!("resources[{index}].selector: {e}"));
                                continue;
                            }
                        };
                        if let Err(e) = check(&selector) {
                            errors.push(format!(
                                "resources[{index}].selector (kind `{}`) does not fit `{type_name}` of processor `{}`: {e}",
                                resource.kind,
                                p.name()
                            ));
                        }
                    }
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::{FromJob, Selector};
    use crate::processor::WebhookProcessor;
    use crate::processor::{BoxFuture, JobContext, ProcessError, RawResults, Registration};

    #[derive(serde::Deserialize)]
    struct Sel {
        #[allow(dead_code)]
        jql: String,
    }

    struct P;
    impl WebhookProcessor for P {
        fn handle<'a>(
            &'a self,
            _job: &'a JobContext<'a>,
        ) -> BoxFuture<'a, Result<RawResults, ProcessError>> {
            Box::pin(async { Ok(RawResults::none()) })
        }
    }

    fn requirements() -> Vec<Requirement> {
        <Selector<Sel> as FromJob<'static>>::requirement()
            .into_iter()
            .collect()
    }

    #[test]
    fn selector_types_are_checked_per_resource_naming_index_and_field() {
        let reg = [Registration::new("/p", "issues", &["issue"], &P).requirements(requirements)];
        let check = mapping_check(Arc::new(Registry::from_registrations(&reg).unwrap()));
        let yaml = |jql: &str| {
            format!(
                "resources:\n  - kind: other\n    selector: {{query: 'true'}}\n    port: {{entity: {{mappings: {{identifier: .id, blueprint: '\"b\"'}}}}}}\n  - kind: issue\n    selector: {{query: 'true'{jql}}}\n    port: {{entity: {{mappings: {{identifier: .id, blueprint: '\"b\"'}}}}}}\n"
            )
        };
        let good = PortAppConfig::from_yaml(&yaml(", jql: 'project = A'")).unwrap();
        assert_eq!(check(&good), Ok(()));
        let wrong = PortAppConfig::from_yaml(&yaml(", jql: 42")).unwrap();
        let errors = check(&wrong).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with(
                "resources[1].selector (kind `issue`) does not fit `ocean_runtime::app::setup::tests::Sel` of processor `issues`: field `jql`: invalid type: integer `42`, expected a string"
            ),
            "{errors:?}"
        );
        let missing = PortAppConfig::from_yaml(&yaml("")).unwrap();
        let errors = check(&missing).unwrap_err();
        assert!(errors[0].ends_with("missing field `jql`"), "{errors:?}");
    }
}
