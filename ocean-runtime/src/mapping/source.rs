//! Where the mapping comes from, and the current compiled version shared by all workers.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use super::{CompiledMapping, MappingError, PortAppConfig};
use crate::port::{PortClient, PortError};

/// Where the mapping is read from.
#[derive(Debug, Clone)]
pub(crate) enum MappingSource {
    /// A local `port-app-config.yml` (YAML or JSON).
    File(PathBuf),
    /// Port's integration record (`integration.config`).
    Port(Arc<PortClient>),
}

/// A mapping that could not be loaded; the previous version, if any, keeps serving.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MappingLoadError {
    /// The file could not be read.
    #[error("cannot read mapping file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a port app config.
    #[error("mapping file {path} is not a valid port app config: {source}")]
    Yaml {
        /// The file.
        path: PathBuf,
        /// The YAML error, with line and column.
        source: serde_yaml_ng::Error,
    },
    /// Port could not be asked.
    #[error("cannot fetch the mapping from Port: {0}")]
    Port(#[from] PortError),
    /// Port has no integration record, or one with no or an empty `config`.
    #[error("Port has no mapping for this integration (no `config` in its integration record)")]
    NoConfig,
    /// Port's `config` is not a port app config.
    #[error("the mapping in Port's integration record is not a valid port app config: {0}")]
    Shape(serde_json::Error),
    /// The mapping does not fit the processors (e.g. a selector that a handler's `Selector<T>`
    /// cannot read).
    #[error("the mapping does not fit the processors: {}", .0.join("; "))]
    Rejected(Vec<String>),
    /// Some jq expressions do not compile.
    #[error("the mapping has {} invalid jq expression(s): {}", .0.len(), join(.0))]
    Invalid(Vec<MappingError>),
}

fn join(errors: &[MappingError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The current mapping, compiled, replaced only by a version that compiles.
pub(crate) struct MappingStore {
    source: MappingSource,
    current: RwLock<Option<Arc<CompiledMapping>>>,
    check: Option<MappingCheck>,
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

/// A check every new mapping version must pass before it is put in force; `Err` lists the problems.
pub(crate) type MappingCheck = Box<dyn Fn(&PortAppConfig) -> Result<(), Vec<String>> + Send + Sync>;

impl std::fmt::Debug for MappingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappingStore")
            .field("source", &self.source)
            .field("current", &self.current)
            .finish_non_exhaustive()
    }
}

impl MappingStore {
    /// A store with no mapping loaded yet.
    #[must_use]
    pub(crate) fn new(source: MappingSource) -> Self {
        Self {
            source,
            current: RwLock::new(None),
            check: None,
            metrics: None,
        }
    }

    /// Counts every load in `ocean_mapping_loads_total{outcome}`.
    #[must_use]
    pub(crate) fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Adds a check that every new version must pass.
    #[must_use]
    pub(crate) fn with_check(mut self, check: MappingCheck) -> Self {
        self.check = Some(check);
        self
    }

    /// The mapping in force, if one was loaded.
    #[must_use]
    pub(crate) fn current(&self) -> Option<Arc<CompiledMapping>> {
        self.current
            .read()
            .map(|g| g.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    async fn fetch(&self) -> Result<PortAppConfig, MappingLoadError> {
        match &self.source {
            MappingSource::File(path) => {
                let text = tokio::fs::read_to_string(path).await.map_err(|source| {
                    MappingLoadError::Io {
                        path: path.clone(),
                        source,
                    }
                })?;
                PortAppConfig::from_yaml(&text).map_err(|source| MappingLoadError::Yaml {
                    path: path.clone(),
                    source,
                })
            }
            MappingSource::Port(client) => {
                let record = client
                    .integration()
                    .await?
                    .ok_or(MappingLoadError::NoConfig)?;
                // An integration created without a default mapping has `config: {}` until
                // someone writes one in Port: no mapping yet, not an empty one.
                let config = record
                    .get("config")
                    .filter(|c| c.as_object().is_some_and(|o| !o.is_empty()))
                    .cloned()
                    .ok_or(MappingLoadError::NoConfig)?;
                serde_json::from_value(config).map_err(MappingLoadError::Shape)
            }
        }
    }

    /// Fetches the mapping and, when it differs from the current one, compiles it and puts it in force.
    /// Returns whether a new version was put in force.
    ///
    /// # Errors
    /// The mapping could not be fetched or does not compile; the current version stays in force.
    pub(crate) async fn reload(&self) -> Result<bool, MappingLoadError> {
        let result = self.load().await;
        if let Some(metrics) = &self.metrics {
            metrics.mapping_load(match &result {
                Ok(true) => "applied",
                Ok(false) => "unchanged",
                Err(
                    MappingLoadError::Rejected(_)
                    | MappingLoadError::Invalid(_)
                    | MappingLoadError::Shape(_)
                    | MappingLoadError::Yaml { .. },
                ) => "refused",
                Err(_) => "unavailable",
            });
        }
        result
    }

    async fn load(&self) -> Result<bool, MappingLoadError> {
        let config = self.fetch().await?;
        if self.current().is_some_and(|c| *c.config() == config) {
            return Ok(false);
        }
        if let Some(check) = &self.check {
            check(&config).map_err(MappingLoadError::Rejected)?;
        }
        let compiled = CompiledMapping::compile(config).map_err(MappingLoadError::Invalid)?;
        let mut slot = self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *slot = Some(Arc::new(compiled));
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bad_version_keeps_the_old_one_in_force() {
        let dir = std::env::temp_dir().join(format!("ocean-mapping-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("port-app-config.yml");
        let good = "resources:\n  - kind: a\n    selector: {query: 'true'}\n    port: {entity: {mappings: {identifier: .id, blueprint: '\"b\"'}}}\n";
        std::fs::write(&file, good).unwrap();
        let store = MappingStore::new(MappingSource::File(file.clone()));
        assert!(store.current().is_none());
        assert!(store.reload().await.unwrap());
        assert!(
            !store.reload().await.unwrap(),
            "same content is not a new version"
        );

        std::fs::write(&file, good.replace(".id", ".id |")).unwrap();
        let err = store.reload().await.unwrap_err();
        assert!(
            err.to_string()
                .contains("resources[0].port.entity.mappings.identifier"),
            "{err}"
        );
        assert_eq!(
            store.current().unwrap().config().resources[0]
                .port
                .entity
                .mappings
                .identifier,
            ".id"
        );

        std::fs::write(&file, "resources: 3").unwrap();
        assert!(matches!(
            store.reload().await,
            Err(MappingLoadError::Yaml { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
