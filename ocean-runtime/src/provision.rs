//! The first start against Port, as Ocean's `initialize_defaults` does it: the integration record
//! is created when absent (with the default mapping), an empty mapping gets the default one, its
//! type and version are patched when they differ (a mapping is never overwritten), and, once per
//! integration, the default blueprints are created: without their relations first, then with them,
//! then with the properties computed over relations.
//!
//! Every step is safe to run again and from several replicas at once: a create that Port answers
//! 409 means another replica did it first, and Ocean's rule holds that blueprints already in Port
//! are never changed.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::port::{PortClient, PortError};

/// What a blueprint has that points at other blueprints, in the order Ocean adds it: relations
/// (with team inheritance and ownership, which follow relations) once every default blueprint
/// exists, then the properties computed over relations.
const STAGES: [&[&str]; 2] = [
    &["relations", "teamInheritance", "ownership"],
    &[
        "mirrorProperties",
        "calculationProperties",
        "aggregationProperties",
    ],
];

/// What the integration brings to Port.
#[derive(Debug, Clone, Default)]
pub(crate) struct Defaults {
    /// `installationAppType` (`OCEAN__INTEGRATION__TYPE`).
    pub app_type: String,
    /// The integration's version.
    pub version: String,
    /// Its title in Port, from `.port/spec.yaml`.
    pub title: Option<String>,
    /// The default mapping, as Port stores it (the record's `config`).
    pub mapping: Option<Value>,
    /// The default blueprints (see [`check_blueprints`]).
    pub blueprints: Vec<Value>,
    /// Actions, created after the blueprints (`actions.json`).
    pub actions: Vec<Value>,
    /// Scorecards by blueprint, created after the blueprints (`scorecards.json`).
    pub scorecards: Vec<(String, Value)>,
    /// Pages, created last (`pages.json`).
    pub pages: Vec<Value>,
    /// `OCEAN__INITIALIZE_PORT_RESOURCES`.
    pub initialize: bool,
}

/// The JSON array `text` holds. `path` is for messages.
fn json_array(path: &str, text: &str) -> Result<Vec<Value>, String> {
    match serde_json::from_str(text).map_err(|e| format!("{path} is not valid JSON: {e}"))? {
        Value::Array(list) => Ok(list),
        _ => Err(format!("{path} must hold a JSON array")),
    }
}

/// Checks that each item has an `identifier` of its own. `path` is for messages.
fn check_identifiers(path: &str, list: &[Value]) -> Result<(), String> {
    let mut ids = BTreeSet::new();
    for (i, item) in list.iter().enumerate() {
        let id = item["identifier"]
            .as_str()
            .filter(|id| !id.is_empty())
            .ok_or_else(|| format!("{path}: item {i} has no `identifier`"))?;
        if !ids.insert(id) {
            return Err(format!("{path}: `{id}` is defined twice"));
        }
    }
    Ok(())
}

/// Reads `actions.json` or `pages.json` (or the start of `blueprints.json`): an array of objects,
/// each with an `identifier` of its own. `path` is for messages.
pub(crate) fn check_list(path: &str, text: &str) -> Result<Vec<Value>, String> {
    let list = json_array(path, text)?;
    check_identifiers(path, &list)?;
    Ok(list)
}

/// Reads `scorecards.json`: an array of `{"blueprint": …, "data": [scorecards]}`, each blueprint
/// one of `blueprints`; returns (blueprint, scorecard) pairs.
pub(crate) fn check_scorecards(
    path: &str,
    text: &str,
    blueprints: &[Value],
) -> Result<Vec<(String, Value)>, String> {
    let mut out = Vec::new();
    for (i, group) in json_array(path, text)?.into_iter().enumerate() {
        let blueprint = group["blueprint"]
            .as_str()
            .ok_or_else(|| format!("{path}: item {i} has no `blueprint`"))?
            .to_owned();
        if !blueprints
            .iter()
            .any(|bp| bp["identifier"] == blueprint.as_str())
        {
            return Err(format!(
                "{path}: scorecards of `{blueprint}`, which blueprints.json does not define"
            ));
        }
        let what = format!("{path} ({blueprint})");
        let Some(scorecards) = group["data"].as_array() else {
            return Err(format!("{what} must hold a JSON array"));
        };
        check_identifiers(&what, scorecards)?;
        out.extend(scorecards.iter().map(|sc| (blueprint.clone(), sc.clone())));
    }
    Ok(out)
}

/// Reads a `blueprints.json`: an array of blueprints, each with an `identifier`, whose relations
/// point at blueprints of the same file or at Port's own (`_user`, `_team`, …). `path` is for
/// messages.
pub(crate) fn check_blueprints(path: &str, text: &str) -> Result<Vec<Value>, String> {
    let list = check_list(path, text)?;
    let ids: BTreeSet<&str> = list
        .iter()
        .filter_map(|bp| bp["identifier"].as_str())
        .collect();
    let ids = &ids;
    let unknown: Vec<String> = list
        .iter()
        .flat_map(|bp| {
            let from = bp["identifier"].as_str().unwrap_or_default();
            bp["relations"]
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(move |(name, relation)| {
                    let target = relation["target"].as_str().unwrap_or_default();
                    (!ids.contains(target) && !target.starts_with('_'))
                        .then(|| format!("{from}.relations.{name} -> `{target}`"))
                })
        })
        .collect();
    if unknown.is_empty() {
        Ok(list)
    } else {
        Err(format!(
            "{path}: relations point at blueprints it does not define: {}",
            unknown.join(", ")
        ))
    }
}

/// Brings Port to the integration's defaults (see the module documentation).
///
/// # Errors
/// The first call Port failed or refused; running again carries on where it stopped.
pub(crate) async fn provision(port: &PortClient, defaults: &Defaults) -> Result<(), PortError> {
    let record = match port.integration().await? {
        Some(record) => {
            let empty = record["config"].as_object().is_none_or(Map::is_empty);
            match &defaults.mapping {
                // As Ocean: an integration whose mapping is empty gets the default one; any other
                // mapping is the operator's and is never overwritten.
                Some(mapping) if empty => {
                    port.patch_config(mapping).await?;
                    tracing::info!(
                        "the integration in Port had no mapping; the default one is set"
                    );
                }
                _ => tracing::info!("the integration exists in Port; its mapping is kept as it is"),
            }
            record
        }
        None => {
            let mut create = json!({
                "installationId": port.integration_identifier(),
                "installationAppType": defaults.app_type,
                "version": defaults.version,
                "config": defaults.mapping.clone().unwrap_or_else(|| json!({})),
                "changelogDestination": {},
            });
            if let Some(title) = &defaults.title {
                create["title"] = json!(title);
            }
            if port.create_integration(&create).await? {
                tracing::info!(
                    with_mapping = defaults.mapping.is_some(),
                    "created the integration in Port"
                );
            } else {
                tracing::info!("the integration was created meanwhile (by another replica)");
            }
            port.integration().await?.unwrap_or(Value::Null)
        }
    };
    if record["installationAppType"] != defaults.app_type.as_str()
        || record["version"] != defaults.version.as_str()
    {
        port.patch_integration(&json!({
            "installationAppType": defaults.app_type,
            "version": defaults.version,
        }))
        .await?;
        tracing::info!(
            app_type = defaults.app_type,
            version = defaults.version,
            "the integration's type and version were updated in Port"
        );
    }
    if !defaults.initialize || defaults.blueprints.is_empty() {
        return Ok(());
    }
    if record["arePortResourcesInitialized"] == true {
        tracing::info!("Port resources were initialised before; blueprints are left as they are");
        return Ok(());
    }
    create_blueprints(port, defaults).await
}

/// A resource's `identifier` (checked to be there when its file was read).
fn id(resource: &Value) -> &str {
    resource["identifier"].as_str().unwrap_or_default()
}

async fn create_blueprints(port: &PortClient, defaults: &Defaults) -> Result<(), PortError> {
    let blueprints = &defaults.blueprints;
    let mut present = Vec::new();
    for bp in blueprints {
        if port.blueprint(id(bp)).await?.is_some() {
            present.push(id(bp));
        }
    }
    if present.len() == blueprints.len() {
        tracing::info!(
            blueprints = ?present,
            "the default blueprints are in Port already; none is changed"
        );
        return port
            .patch_integration(&json!({"arePortResourcesInitialized": true}))
            .await;
    }
    if !present.is_empty() {
        // Ocean's rule: existing blueprints are never changed, and a partial set is not completed
        // over them. Another replica may be creating them right now; the next start looks again.
        tracing::warn!(
            present = ?present,
            "some default blueprints are in Port already; none is created or changed"
        );
        return Ok(());
    }
    for bp in blueprints {
        let mut bare = bp.clone();
        if let Some(obj) = bare.as_object_mut() {
            for key in STAGES.iter().flat_map(|stage| stage.iter()) {
                obj.remove(*key);
            }
        }
        if port.create_blueprint(&bare).await? {
            tracing::info!(blueprint = id(bp), "created blueprint");
        } else {
            tracing::info!(
                blueprint = id(bp),
                "blueprint created meanwhile (by another replica)"
            );
        }
    }
    for stage in STAGES {
        for bp in blueprints {
            let fields: Map<String, Value> = stage
                .iter()
                .filter_map(|key| bp.get(*key).map(|v| ((*key).to_owned(), v.clone())))
                .collect();
            if !fields.is_empty() {
                port.patch_blueprint(id(bp), &Value::Object(fields)).await?;
            }
        }
    }
    create_extras(port, defaults).await;
    port.patch_integration(&json!({"arePortResourcesInitialized": true}))
        .await?;
    tracing::info!(
        blueprints = blueprints.len(),
        actions = defaults.actions.len(),
        scorecards = defaults.scorecards.len(),
        pages = defaults.pages.len(),
        "default Port resources created; Port resources initialised"
    );
    Ok(())
}

/// Actions, scorecards and pages, as Ocean creates them once the blueprints exist: one that Port
/// refuses (or has already) is logged and the others go on.
async fn create_extras(port: &PortClient, defaults: &Defaults) {
    let mut made = Vec::new();
    for action in &defaults.actions {
        made.push((
            format!("action {}", id(action)),
            port.create_at(&["actions"], action).await,
        ));
    }
    for (blueprint, scorecard) in &defaults.scorecards {
        made.push((
            format!("scorecard {blueprint}/{}", id(scorecard)),
            port.create_at(&["blueprints", blueprint, "scorecards"], scorecard)
                .await,
        ));
    }
    for page in &defaults.pages {
        made.push((
            format!("page {}", id(page)),
            port.create_at(&["pages"], page).await,
        ));
    }
    for (what, result) in made {
        match result {
            Ok(true) => tracing::info!("created {what}"),
            Ok(false) => tracing::info!("{what} exists already; left as it is"),
            Err(e) => tracing::warn!(error = %e, "Port refused {what}; going on"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blueprints_must_be_an_array_with_identifiers_and_known_relation_targets() {
        let ok = r#"[{"identifier": "project"},
            {"identifier": "issue", "relations": {"project": {"target": "project"},
             "assignee": {"target": "_user"}}}]"#;
        assert_eq!(check_blueprints("b.json", ok).map(|l| l.len()), Ok(2));
        let unknown =
            r#"[{"identifier": "issue", "relations": {"project": {"target": "project"}}}]"#;
        assert_eq!(
            check_blueprints("b.json", unknown),
            Err("b.json: relations point at blueprints it does not define: issue.relations.project -> `project`".to_owned())
        );
        assert!(
            check_blueprints("b.json", "{}")
                .unwrap_err()
                .contains("must hold a JSON array")
        );
        assert!(
            check_blueprints("b.json", r#"[{"title": "x"}]"#)
                .unwrap_err()
                .contains("item 0 has no `identifier`")
        );
        assert!(
            check_blueprints("b.json", "[")
                .unwrap_err()
                .starts_with("b.json is not valid JSON")
        );
    }

    #[test]
    fn scorecards_belong_to_default_blueprints() {
        let blueprints = check_blueprints("b.json", r#"[{"identifier": "issue"}]"#).unwrap();
        let ok = r#"[{"blueprint": "issue", "data": [{"identifier": "triage"}, {"identifier": "sla"}]}]"#;
        let pairs = check_scorecards("s.json", ok, &blueprints).unwrap();
        assert_eq!(pairs.len(), 2);
        assert_eq!(pairs[1].0, "issue");
        let other = r#"[{"blueprint": "service", "data": []}]"#;
        assert_eq!(
            check_scorecards("s.json", other, &blueprints),
            Err(
                "s.json: scorecards of `service`, which blueprints.json does not define".to_owned()
            )
        );
        let nameless = r#"[{"blueprint": "issue", "data": [{"title": "x"}]}]"#;
        assert!(
            check_scorecards("s.json", nameless, &blueprints)
                .unwrap_err()
                .contains("item 0 has no `identifier`")
        );
    }
}
