//! The port app config (the mapping) and how raw items become Port entities.
//!
//! Every mapping leaf is a jq expression. A mapping is compiled once per version into a
//! [`CompiledMapping`]; events only run the compiled programs.

pub(crate) mod compiled;
mod source;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub(crate) use compiled::{CompiledMapping, IssueKind, MappingError, MappingIssue};
pub(crate) use source::{MappingCheck, MappingSource, MappingStore};

fn yes() -> bool {
    true
}

/// The port app config: Port's `integration.config`, or `.port/resources/port-app-config.yml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortAppConfig {
    /// Delete entities that depend on a deleted entity (Port's `delete_dependents`).
    #[serde(default = "yes")]
    pub delete_dependent_entities: bool,
    /// Let Port create placeholder entities for relations that point nowhere yet.
    #[serde(default = "yes")]
    pub create_missing_related_entities: bool,
    /// Merge upserted properties into the stored entity instead of replacing it.
    #[serde(default = "yes")]
    pub enable_merge_entity: bool,
    /// The resources, each a kind with its selector and entity mapping.
    #[serde(default)]
    pub resources: Vec<ResourceConfig>,
}

/// One mapping resource: which items of a kind to take and how to map them to entities. A handler
/// that takes `&ResourceConfig` sees the resource its job maps into (its selector's extra fields
/// are easier to read typed, with [`Selector<T>`](crate::Selector)).
///
/// ```
/// use ocean_runtime::prelude::*;
/// # ocean_runtime::kinds!["issue"];
///
/// #[webhook_processor(path = "/webhook", kinds = ["issue"])]
/// async fn issues(event: &WebhookEvent, resource: &ResourceConfig) -> Result<RawResults, ProcessError> {
///     tracing::debug!(kind = %resource.kind, query = %resource.selector.query, "mapping into");
///     Ok(RawResults::updated([event.value_at("/issue")?.clone()]))
/// }
/// # fn main() {}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceConfig {
    /// The kind, as declared with `kinds!`.
    pub kind: String,
    /// Which items to take.
    pub selector: SelectorConfig,
    /// How to build entities.
    pub port: PortResourceConfig,
}

/// A resource's selector: the jq `query` plus any integration-specific fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SelectorConfig {
    /// jq over a raw item that must yield a boolean.
    pub query: String,
    /// Integration-specific selector fields (e.g. `jql`).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The `port` part of a resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortResourceConfig {
    /// The entity mapping.
    pub entity: EntityConfig,
    /// jq yielding an array inside each item, each element mapped as its own entity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items_to_parse: Option<String>,
    /// The key under which each element of `itemsToParse` is exposed (default `item`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items_to_parse_name: Option<String>,
    /// Whether the parsed array is removed from the parent each element is mapped with (default
    /// `true`, as in Ocean).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items_to_parse_top_level_transform: Option<bool>,
}

/// `port.entity`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityConfig {
    /// The field mappings.
    pub mappings: EntityMappings,
}

/// `port.entity.mappings`: each leaf a jq expression over the raw item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityMappings {
    /// jq yielding a string, or a search query object whose leaves are jq.
    pub identifier: Value,
    /// jq yielding the title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<Value>,
    /// jq yielding the icon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<Value>,
    /// jq yielding the blueprint identifier (usually a string literal such as `'"jiraIssue"'`).
    pub blueprint: Value,
    /// jq yielding the owning team(s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<Value>,
    /// Property name → jq.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub properties: Map<String, Value>,
    /// Relation name → jq, or a search query whose leaves are jq.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub relations: Map<String, Value>,
}

impl PortAppConfig {
    /// Parses a mapping from YAML (or JSON, which is YAML).
    ///
    /// # Errors
    /// The YAML error, with its line and column.
    pub fn from_yaml(text: &str) -> Result<Self, serde_yaml_ng::Error> {
        serde_yaml_ng::from_str(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ocean_shaped_yaml_with_defaults_and_extra_selector_fields() {
        let cfg = PortAppConfig::from_yaml(
            r#"
resources:
  - kind: issue
    selector:
      query: 'true'
      jql: project = X
    port:
      entity:
        mappings:
          identifier: .key
          title: .fields.summary
          blueprint: '"jiraIssue"'
          properties:
            status: .fields.status.name
"#,
        )
        .unwrap();
        assert!(
            cfg.delete_dependent_entities
                && cfg.create_missing_related_entities
                && cfg.enable_merge_entity
        );
        let r = &cfg.resources[0];
        assert_eq!(r.kind, "issue");
        assert_eq!(r.selector.extra["jql"], "project = X");
        assert_eq!(r.port.entity.mappings.blueprint, "\"jiraIssue\"");
        assert_eq!(
            r.port.entity.mappings.properties["status"],
            ".fields.status.name"
        );
    }

    #[test]
    fn missing_identifier_is_an_error() {
        let err = PortAppConfig::from_yaml(
            "resources:\n  - kind: a\n    selector: {query: 'true'}\n    port: {entity: {mappings: {blueprint: '\"b\"'}}}\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("identifier"), "{err}");
    }
}
