//! The built-in Port's data and its rules: entities, blueprints, integration records and the
//! resources beside them, in memory, and what Port checks on every write (identifiers, the
//! blueprint's schema, relations, dependents). Each mutation also lists its [`Change`]s, which
//! `persist` commits.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};

use super::search::{Subject, matches};

/// An entity as stored: Port's JSON plus the datasource that wrote it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Stored {
    pub(crate) entity: Value,
    pub(crate) datasource: String,
}

/// Everything the built-in Port knows.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) entities: BTreeMap<(String, String), Stored>,
    pub(crate) integrations: BTreeMap<String, Value>,
    /// Blueprints by identifier; while there are none, entities of any blueprint are accepted.
    pub(crate) blueprints: BTreeMap<String, Value>,
    /// Actions, scorecards and pages, by `actions/<id>`, `scorecards/<blueprint>/<id>` and
    /// `pages/<id>`: kept and served back, not run.
    pub(crate) extras: BTreeMap<String, Value>,
}

pub(crate) enum Change {
    PutEntity(String, Vec<u8>),
    DeleteEntity(String),
    PutIntegration(String, Vec<u8>),
    PutBlueprint(String, Vec<u8>),
    DeleteBlueprint(String),
    PutExtra(String, Vec<u8>),
}

/// A per-entity refusal, as Port reports it in a 207.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EntityRefusal {
    pub(crate) status: u16,
    pub(crate) error: &'static str,
    pub(crate) message: String,
}

fn key(blueprint: &str, identifier: &str) -> String {
    format!("{blueprint}\u{1f}{identifier}")
}

/// Port's identifier pattern.
fn valid_identifier(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 1000
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "@_.+:\\/=-".contains(c))
}

impl State {
    /// Upserts one entity of `blueprint`, creating missing related entities; returns whether it
    /// was created.
    #[cfg(test)]
    pub(crate) fn upsert(
        &mut self,
        blueprint: &str,
        incoming: &Value,
        merge: bool,
        datasource: &str,
        changes: &mut Vec<Change>,
    ) -> Result<(String, bool), EntityRefusal> {
        self.upsert_with(blueprint, incoming, merge, true, datasource, changes)
    }

    /// [`State::upsert`], where `create_missing` says what becomes of a relation to an entity that
    /// does not exist in the relation's declared target: `true` creates it (an identifier and
    /// nothing else, owned by no integration), `false` refuses the entity (404), like Port's
    /// `create_missing_related_entities`.
    pub(crate) fn upsert_with(
        &mut self,
        blueprint: &str,
        incoming: &Value,
        merge: bool,
        create_missing: bool,
        datasource: &str,
        changes: &mut Vec<Change>,
    ) -> Result<(String, bool), EntityRefusal> {
        let Some(fields) = incoming.as_object() else {
            return Err(refusal(
                422,
                "invalid_entity",
                "an entity must be a JSON object".to_owned(),
            ));
        };
        let identifier = match fields.get("identifier") {
            Some(Value::String(id)) if valid_identifier(id) => id.clone(),
            Some(Value::String(id)) => {
                return Err(refusal(
                    422,
                    "invalid_identifier",
                    format!("identifier `{id}` does not match ^[A-Za-z0-9@_.+:\\\\/=-]+$"),
                ));
            }
            Some(query @ Value::Object(_)) => self.resolve(blueprint, query)?,
            _ => {
                return Err(refusal(
                    422,
                    "invalid_identifier",
                    "identifier must be a string or a search query".to_owned(),
                ));
            }
        };
        if !self.blueprints.is_empty() && !self.blueprints.contains_key(blueprint) {
            return Err(refusal(
                404,
                "not_found",
                format!("blueprint with identifier `{blueprint}` was not found"),
            ));
        }
        for (name, kind) in [("properties", "object"), ("relations", "object")] {
            if fields
                .get(name)
                .is_some_and(|v| !v.is_object() && !v.is_null())
            {
                return Err(refusal(
                    422,
                    "invalid_entity",
                    format!("`{name}` must be an {kind}"),
                ));
            }
        }
        let now = crate::time::now_rfc3339();
        let k = (blueprint.to_owned(), identifier.clone());
        let previous = self.entities.get(&k).map(|s| s.entity.clone());
        let created = previous.is_none();
        let mut entity = match previous {
            Some(Value::Object(mut old)) if merge => {
                for (name, value) in fields {
                    match (name.as_str(), value, old.get_mut(name)) {
                        (
                            "properties" | "relations",
                            Value::Object(new),
                            Some(Value::Object(existing)),
                        ) => {
                            existing.extend(new.clone());
                        }
                        _ => {
                            old.insert(name.clone(), value.clone());
                        }
                    }
                }
                old
            }
            Some(Value::Object(old)) => {
                let mut fresh = fields.clone();
                if let Some(c) = old.get("createdAt") {
                    fresh.insert("createdAt".to_owned(), c.clone());
                }
                fresh
            }
            _ => {
                let mut fresh = fields.clone();
                fresh.insert("createdAt".to_owned(), Value::String(now.clone()));
                fresh
            }
        };
        entity.insert("identifier".to_owned(), Value::String(identifier.clone()));
        entity.insert("blueprint".to_owned(), Value::String(blueprint.to_owned()));
        for name in ["properties", "relations"] {
            if !entity.get(name).is_some_and(Value::is_object) {
                entity.insert(name.to_owned(), Value::Object(Map::new()));
            }
        }
        entity.entry("title").or_insert(Value::Null);
        if let Some(Value::Object(relations)) = entity.get_mut("relations") {
            self.resolve_relations(blueprint, relations)?;
        }
        if let (Some(def), Some(properties)) = (
            self.blueprints.get(blueprint),
            entity.get("properties").and_then(Value::as_object),
        ) {
            check_schema(blueprint, def, properties)?;
        }
        let missing = self.missing_related(blueprint, &identifier, &entity);
        if let Some((relation, target, id)) = missing.first()
            && !create_missing
        {
            return Err(refusal(
                404,
                "not_found",
                format!(
                    "relation `{relation}`: entity `{id}` of blueprint `{target}` does not exist (create_missing_related_entities is false)"
                ),
            ));
        }
        for (_, target, id) in missing {
            let placeholder = Stored {
                entity: json!({"identifier": id, "blueprint": target, "title": null,
                               "properties": {}, "relations": {},
                               "createdAt": now, "updatedAt": now}),
                datasource: String::new(),
            };
            let bytes = serde_json::to_vec(&placeholder)
                .map_err(|e| refusal(500, "internal_error", e.to_string()))?;
            changes.push(Change::PutEntity(key(&target, &id), bytes));
            self.entities.insert((target, id), placeholder);
        }
        entity.insert("updatedAt".to_owned(), Value::String(now));
        let stored = Stored {
            entity: Value::Object(entity),
            datasource: datasource.to_owned(),
        };
        let bytes = serde_json::to_vec(&stored)
            .map_err(|e| refusal(500, "internal_error", e.to_string()))?;
        changes.push(Change::PutEntity(key(blueprint, &identifier), bytes));
        self.entities.insert(k, stored);
        Ok((identifier, created))
    }

    /// The identifiers of the entities (of `blueprint`, or of any blueprint when `None`) that a
    /// search query matches.
    fn search_ids(
        &self,
        blueprint: Option<&str>,
        query: &Value,
    ) -> Result<Vec<String>, EntityRefusal> {
        let mut found = Vec::new();
        for ((bp, id), s) in &self.entities {
            if blueprint.is_some_and(|b| b != bp) {
                continue;
            }
            let hit = matches(
                query,
                &Subject {
                    entity: &s.entity,
                    datasource: &s.datasource,
                },
            )
            .map_err(|e| refusal(422, "invalid_search_query", e))?;
            if hit {
                found.push(id.clone());
            }
        }
        Ok(found)
    }

    /// The related entities (relation, target blueprint, identifier) an entity points at that do
    /// not exist, for the relations its blueprint declares with a target.
    fn missing_related(
        &self,
        blueprint: &str,
        identifier: &str,
        entity: &Map<String, Value>,
    ) -> Vec<(String, String, String)> {
        let (Some(def), Some(relations)) = (
            self.blueprints.get(blueprint),
            entity.get("relations").and_then(Value::as_object),
        ) else {
            return Vec::new();
        };
        let mut missing = Vec::new();
        for (name, value) in relations {
            let Some(target) = def["relations"][name.as_str()]["target"].as_str() else {
                continue;
            };
            let ids: Vec<&str> = match value {
                Value::String(id) => vec![id.as_str()],
                Value::Array(ids) => ids.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            for id in ids {
                let itself = target == blueprint && id == identifier;
                let known = self
                    .entities
                    .contains_key(&(target.to_owned(), id.to_owned()));
                if !itself && !known && valid_identifier(id) {
                    missing.push((name.clone(), target.to_owned(), id.to_owned()));
                }
            }
        }
        missing
    }

    /// Relations given as search queries become the identifiers they match, in the target blueprint
    /// the blueprint declares for the relation (any blueprint when it declares none): exactly one
    /// for a single relation, any number for a `many` one.
    fn resolve_relations(
        &self,
        blueprint: &str,
        relations: &mut Map<String, Value>,
    ) -> Result<(), EntityRefusal> {
        for (name, value) in relations.iter_mut() {
            if !value.as_object().is_some_and(|q| q.contains_key("rules")) {
                continue;
            }
            let declared = self
                .blueprints
                .get(blueprint)
                .map(|bp| &bp["relations"][name.as_str()]);
            let target = declared.and_then(|r| r["target"].as_str());
            let many = declared.is_some_and(|r| r["many"] == true);
            let found = self.search_ids(target, value)?;
            *value = match (found.as_slice(), many) {
                (_, true) => Value::Array(found.into_iter().map(Value::String).collect()),
                ([one], false) => Value::String(one.clone()),
                ([], false) => {
                    return Err(refusal(
                        404,
                        "not_found",
                        format!("relation `{name}`: the search query matches no entity"),
                    ));
                }
                (_, false) => {
                    return Err(refusal(
                        422,
                        "ambiguous_relation",
                        format!("relation `{name}`: the search query matches several entities"),
                    ));
                }
            };
        }
        Ok(())
    }

    fn resolve(&self, blueprint: &str, query: &Value) -> Result<String, EntityRefusal> {
        let found = self.search_ids(Some(blueprint), query)?;
        match found.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(refusal(
                404,
                "not_found",
                "the search identifier matches no entity".to_owned(),
            )),
            _ => Err(refusal(
                422,
                "ambiguous_identifier",
                "the search identifier matches several entities".to_owned(),
            )),
        }
    }

    /// The entities whose *required* relation points at `identifier` of `blueprint` (the ones
    /// Port calls its dependents).
    fn dependents(&self, blueprint: &str, identifier: &str) -> Vec<(String, String)> {
        let mut found = Vec::new();
        for (source, def) in &self.blueprints {
            let Some(relations) = def["relations"].as_object() else {
                continue;
            };
            let names: Vec<&str> = relations
                .iter()
                .filter(|(_, r)| r["target"] == blueprint && r["required"] == true)
                .map(|(name, _)| name.as_str())
                .collect();
            if names.is_empty() {
                continue;
            }
            for (id, stored) in self.entities_of(source) {
                let points_here =
                    names
                        .iter()
                        .any(|name| match &stored.entity["relations"][*name] {
                            Value::String(target) => target == identifier,
                            Value::Array(targets) => targets.iter().any(|t| t == identifier),
                            _ => false,
                        });
                if points_here && !(source == blueprint && id == identifier) {
                    found.push((source.clone(), id.to_owned()));
                }
            }
        }
        found
    }

    /// Deletes entities of `blueprint`, like Port's bulk delete: an entity that others depend on
    /// (they have a required relation to it) is deleted with them when `dependents` is true, and
    /// refused (409) when it is false, unless those others are deleted in the same call. Returns
    /// the identifiers deleted (of `blueprint`; missing ones are not listed) and those refused.
    pub(crate) fn delete_many(
        &mut self,
        blueprint: &str,
        identifiers: &[String],
        dependents: bool,
        changes: &mut Vec<Change>,
    ) -> (Vec<String>, Vec<(String, EntityRefusal)>) {
        let asked: BTreeSet<(String, String)> = identifiers
            .iter()
            .map(|id| (blueprint.to_owned(), id.clone()))
            .collect();
        let (mut deleted, mut refused) = (Vec::new(), Vec::new());
        let mut gone = BTreeSet::new();
        for id in identifiers {
            let root = (blueprint.to_owned(), id.clone());
            if !self.entities.contains_key(&root) {
                // Already deleted in this call, with an entity it depends on.
                if gone.contains(&root) && !deleted.contains(id) {
                    deleted.push(id.clone());
                }
                continue;
            }
            // Everything that goes with it: its dependents, theirs, and so on.
            let mut doomed = vec![root];
            let mut i = 0;
            while let Some((bp, eid)) = doomed.get(i).cloned() {
                for d in self.dependents(&bp, &eid) {
                    if !doomed.contains(&d) {
                        doomed.push(d);
                    }
                }
                i += 1;
            }
            let blocking: Vec<String> = doomed[1..]
                .iter()
                .filter(|d| !asked.contains(*d))
                .map(|(bp, eid)| format!("{bp}/{eid}"))
                .collect();
            if !dependents && !blocking.is_empty() {
                refused.push((
                    id.clone(),
                    refusal(
                        409,
                        "has_dependents",
                        format!(
                            "entity `{id}` of blueprint `{blueprint}` has dependent entities ({}); delete them first or set delete_dependents=true",
                            blocking.join(", ")
                        ),
                    ),
                ));
                continue;
            }
            for (bp, eid) in doomed {
                if self.entities.remove(&(bp.clone(), eid.clone())).is_some() {
                    changes.push(Change::DeleteEntity(key(&bp, &eid)));
                    gone.insert((bp, eid));
                }
            }
            deleted.push(id.clone());
        }
        (deleted, refused)
    }

    /// The entities of `blueprint`, by identifier.
    pub(crate) fn entities_of<'a>(
        &'a self,
        blueprint: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a Stored)> + 'a {
        self.entities
            .range((blueprint.to_owned(), String::new())..)
            .take_while(move |((bp, _), _)| bp == blueprint)
            .map(|((_, id), st)| (id.as_str(), st))
    }

    /// Stores a blueprint.
    pub(crate) fn put_blueprint(
        &mut self,
        id: &str,
        record: Value,
        changes: &mut Vec<Change>,
    ) -> Result<(), String> {
        put_record(
            &mut self.blueprints,
            id,
            record,
            changes,
            Change::PutBlueprint,
        )
    }

    /// Deletes a blueprint; returns whether it existed.
    pub(crate) fn delete_blueprint(&mut self, id: &str, changes: &mut Vec<Change>) -> bool {
        let existed = self.blueprints.remove(id).is_some();
        if existed {
            changes.push(Change::DeleteBlueprint(id.to_owned()));
        }
        existed
    }

    /// Stores an action, scorecard or page under its key (see [`State::extras`]).
    pub(crate) fn put_extra(
        &mut self,
        key: &str,
        record: Value,
        changes: &mut Vec<Change>,
    ) -> Result<(), String> {
        put_record(&mut self.extras, key, record, changes, Change::PutExtra)
    }

    /// Stores an integration record.
    pub(crate) fn put_integration(
        &mut self,
        id: &str,
        record: Value,
        changes: &mut Vec<Change>,
    ) -> Result<(), String> {
        put_record(
            &mut self.integrations,
            id,
            record,
            changes,
            Change::PutIntegration,
        )
    }
}

/// Stores a JSON record by id in `map` and records the change to persist.
fn put_record(
    map: &mut BTreeMap<String, Value>,
    id: &str,
    record: Value,
    changes: &mut Vec<Change>,
    change: fn(String, Vec<u8>) -> Change,
) -> Result<(), String> {
    let bytes = serde_json::to_vec(&record).map_err(|e| e.to_string())?;
    changes.push(change(id.to_owned(), bytes));
    map.insert(id.to_owned(), record);
    Ok(())
}

/// Checks an entity's properties (after a merge) against its blueprint's `schema`, as Port does:
/// every `required` property present and not null, each property of a declared `type` of that
/// type (`null` is accepted), and a value of an `enum` one of its values. Properties the schema does
/// not declare are kept.
fn check_schema(
    blueprint: &str,
    def: &Value,
    properties: &Map<String, Value>,
) -> Result<(), EntityRefusal> {
    let schema = &def["schema"];
    let invalid = |message: String| Err(refusal(422, "invalid_property", message));
    for name in schema["required"].as_array().into_iter().flatten() {
        let Some(name) = name.as_str() else { continue };
        if properties.get(name).is_none_or(Value::is_null) {
            return invalid(format!(
                "required property `{name}` of blueprint `{blueprint}` is missing"
            ));
        }
    }
    let Some(declared) = schema["properties"].as_object() else {
        return Ok(());
    };
    for (name, value) in properties {
        let Some(prop) = declared.get(name) else {
            continue;
        };
        if value.is_null() {
            continue;
        }
        let fits = match prop["type"].as_str() {
            Some("string") => value.is_string(),
            Some("number") => value.is_number(),
            Some("boolean") => value.is_boolean(),
            Some("array") => value.is_array(),
            Some("object") => value.is_object(),
            _ => true,
        };
        if !fits {
            return invalid(format!(
                "property `{name}` of blueprint `{blueprint}` must be of type {}, not {value}",
                prop["type"]
            ));
        }
        if let Some(allowed) = prop["enum"].as_array()
            && !allowed.contains(value)
        {
            return invalid(format!(
                "property `{name}` of blueprint `{blueprint}` must be one of {}, not {value}",
                Value::Array(allowed.clone())
            ));
        }
    }
    Ok(())
}

fn refusal(status: u16, error: &'static str, message: String) -> EntityRefusal {
    EntityRefusal {
        status,
        error,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keeps_unsent_properties_and_replace_drops_them() {
        let mut s = State::default();
        let mut ch = Vec::new();
        let (_, created) = s
            .upsert(
                "b",
                &json!({"identifier": "x", "properties": {"a": 1, "b": 2}}),
                true,
                "ds",
                &mut ch,
            )
            .unwrap();
        assert!(created);
        let (_, created) = s
            .upsert(
                "b",
                &json!({"identifier": "x", "properties": {"a": 9}}),
                true,
                "ds",
                &mut ch,
            )
            .unwrap();
        assert!(!created);
        assert_eq!(
            s.entities[&("b".into(), "x".into())].entity["properties"],
            json!({"a": 9, "b": 2})
        );
        s.upsert(
            "b",
            &json!({"identifier": "x", "properties": {"a": 7}}),
            false,
            "ds",
            &mut ch,
        )
        .unwrap();
        assert_eq!(
            s.entities[&("b".into(), "x".into())].entity["properties"],
            json!({"a": 7})
        );
        assert_eq!(ch.len(), 3);
    }

    #[test]
    fn bad_identifiers_are_refused() {
        let mut s = State::default();
        let mut ch = Vec::new();
        let e = s
            .upsert(
                "b",
                &json!({"identifier": "has space"}),
                true,
                "ds",
                &mut ch,
            )
            .unwrap_err();
        assert_eq!(e.status, 422);
        assert!(
            s.upsert("b", &json!({"identifier": 5}), true, "ds", &mut ch)
                .is_err()
        );
        assert!(ch.is_empty());
    }

    #[test]
    fn properties_are_checked_against_the_blueprint_schema() {
        let mut s = State::default();
        s.blueprints.insert(
            "svc".into(),
            json!({"identifier": "svc", "schema": {
                "properties": {
                    "tier": {"type": "string", "enum": ["gold", "silver"]},
                    "replicas": {"type": "number"},
                    "tags": {"type": "array"}
                },
                "required": ["tier"]
            }}),
        );
        let mut ch = Vec::new();
        let mut put = |props: Value, merge: bool| {
            s.upsert(
                "svc",
                &json!({"identifier": "a", "properties": props}),
                merge,
                "ds",
                &mut ch,
            )
            .map_err(|e| (e.status, e.error, e.message))
        };
        assert!(
            put(
                json!({"tier": "gold", "replicas": 3, "tags": ["x"], "extra": 1}),
                false
            )
            .is_ok()
        );
        // Merging keeps `tier`, so a write without it still holds the required property.
        assert!(put(json!({"replicas": null}), true).is_ok());
        let missing = put(json!({"replicas": 2}), false).unwrap_err();
        assert_eq!((missing.0, missing.1), (422, "invalid_property"));
        assert!(
            missing.2.contains("required property `tier`"),
            "{}",
            missing.2
        );
        let wrong = put(json!({"tier": "gold", "replicas": "three"}), false).unwrap_err();
        assert!(
            wrong.2.contains("`replicas`") && wrong.2.contains("number"),
            "{}",
            wrong.2
        );
        let outside = put(json!({"tier": "bronze"}), false).unwrap_err();
        assert!(
            outside.2.contains("one of [\"gold\",\"silver\"]"),
            "{}",
            outside.2
        );
    }

    /// Blueprint `svc` relates to one `team` and to many `svc`.
    fn services_and_teams() -> State {
        let mut s = State::default();
        s.blueprints.insert(
            "svc".into(),
            json!({"identifier": "svc", "relations": {
                "team": {"target": "team", "many": false},
                "deps": {"target": "svc", "many": true}
            }}),
        );
        s.blueprints
            .insert("team".into(), json!({"identifier": "team"}));
        s
    }

    #[test]
    fn missing_related_entities_are_created_or_refused_as_asked() {
        let mut s = services_and_teams();
        let mut ch = Vec::new();
        let api =
            json!({"identifier": "api", "relations": {"team": "core", "deps": ["db", "api"]}});
        let refused = s
            .upsert_with("svc", &api, true, false, "ds", &mut ch)
            .unwrap_err();
        assert_eq!(refused.status, 404);
        assert!(
            refused.message.contains("create_missing_related_entities"),
            "{}",
            refused.message
        );
        assert!(s.entities.is_empty() && ch.is_empty(), "nothing stored");

        s.upsert_with("svc", &api, true, true, "ds", &mut ch)
            .unwrap();
        let core = &s.entities[&("team".to_owned(), "core".to_owned())];
        assert_eq!(core.entity["identifier"], "core");
        assert_eq!(
            core.datasource, "",
            "a placeholder belongs to no integration"
        );
        assert!(
            s.entities
                .contains_key(&("svc".to_owned(), "db".to_owned()))
        );
        assert_eq!(
            s.entities.len(),
            3,
            "api itself is no placeholder: {:?}",
            s.entities.keys()
        );
        s.upsert_with("svc", &api, true, false, "ds", &mut ch)
            .expect("once they exist, false is fine");
    }

    #[test]
    fn an_entity_others_require_is_deleted_with_them_or_refused() {
        let mut s = State::default();
        s.blueprints
            .insert("team".into(), json!({"identifier": "team"}));
        s.blueprints.insert(
            "member".into(),
            json!({"identifier": "member", "relations": {
                "team": {"target": "team", "required": true},
                "mentor": {"target": "member", "required": true}
            }}),
        );
        s.blueprints.insert(
            "svc".into(),
            json!({"identifier": "svc", "relations": {"team": {"target": "team", "required": false}}}),
        );
        let mut ch = Vec::new();
        for (bp, e) in [
            ("team", json!({"identifier": "core"})),
            (
                "member",
                json!({"identifier": "ann", "relations": {"team": "core"}}),
            ),
            (
                "member",
                json!({"identifier": "bob", "relations": {"team": "core", "mentor": "ann"}}),
            ),
            (
                "svc",
                json!({"identifier": "api", "relations": {"team": "core"}}),
            ),
        ] {
            s.upsert(bp, &e, false, "ds", &mut ch).unwrap();
        }
        let ids = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let has = |s: &State, bp: &str, id: &str| {
            s.entities.contains_key(&(bp.to_owned(), id.to_owned()))
        };

        let mut ch = Vec::new();
        let (deleted, refused) = s.delete_many("team", &ids(&["core"]), false, &mut ch);
        assert!(deleted.is_empty() && ch.is_empty());
        assert_eq!(refused.len(), 1);
        assert_eq!(
            (refused[0].1.status, refused[0].1.error),
            (409, "has_dependents")
        );
        assert!(
            refused[0].1.message.contains("member/ann")
                && refused[0].1.message.contains("member/bob"),
            "{}",
            refused[0].1.message
        );
        assert!(
            !refused[0].1.message.contains("svc/api"),
            "an optional relation does not hold it"
        );

        // Asked together, a dependent does not block: ann needs bob gone, and bob is asked too.
        let (deleted, refused) = s.delete_many("member", &ids(&["ann", "bob"]), false, &mut ch);
        assert_eq!((deleted, refused.len()), (ids(&["ann", "bob"]), 0));
        assert!(!has(&s, "member", "ann") && !has(&s, "member", "bob"));

        s.upsert(
            "member",
            &json!({"identifier": "cy", "relations": {"team": "core"}}),
            false,
            "ds",
            &mut ch,
        )
        .unwrap();
        let (deleted, refused) = s.delete_many("team", &ids(&["core", "gone"]), true, &mut ch);
        assert_eq!(
            (deleted, refused.len()),
            (ids(&["core"]), 0),
            "a missing one is not listed"
        );
        assert!(!has(&s, "member", "cy"), "the dependent went with it");
        assert!(
            has(&s, "svc", "api"),
            "an optional relation is not a dependent"
        );
        assert!(
            ch.iter()
                .any(|c| matches!(c, Change::DeleteEntity(k) if k == &key("member", "cy"))),
            "the dependent's delete is stored"
        );
    }

    #[test]
    fn search_query_relations_resolve_in_the_declared_target() {
        let mut s = services_and_teams();
        let mut ch = Vec::new();
        for (bp, id, email) in [
            ("team", "core", "core@x"),
            ("team", "web", "web@x"),
            ("svc", "db", "db@x"),
        ] {
            s.upsert(
                bp,
                &json!({"identifier": id, "properties": {"email": email}}),
                true,
                "ds",
                &mut ch,
            )
            .unwrap();
        }
        let rule = |email: &str| json!({"combinator": "and", "rules": [{"property": "email", "operator": "=", "value": email}]});
        s.upsert(
            "svc",
            &json!({"identifier": "api", "relations": {"team": rule("web@x"), "deps": rule("db@x"), "plain": "x"}}),
            true,
            "ds",
            &mut ch,
        )
        .unwrap();
        let api = &s.entities[&("svc".to_owned(), "api".to_owned())].entity;
        assert_eq!(
            api["relations"],
            json!({"team": "web", "deps": ["db"], "plain": "x"})
        );
        // `db@x` is a service, not a team: no team matches.
        let none = s
            .upsert(
                "svc",
                &json!({"identifier": "api", "relations": {"team": rule("db@x")}}),
                true,
                "ds",
                &mut ch,
            )
            .unwrap_err();
        assert_eq!((none.status, none.error), (404, "not_found"));
        assert_eq!(
            s.entities[&("svc".to_owned(), "api".to_owned())].entity["relations"]["team"],
            "web",
            "a refused write leaves the entity as it was"
        );
    }

    #[test]
    fn search_identifier_resolves_to_exactly_one_entity() {
        let mut s = State::default();
        let mut ch = Vec::new();
        s.upsert(
            "b",
            &json!({"identifier": "x", "properties": {"email": "a@b"}}),
            true,
            "ds",
            &mut ch,
        )
        .unwrap();
        let q = json!({"combinator": "and", "rules": [{"property": "email", "operator": "=", "value": "a@b"}]});
        let (id, created) = s
            .upsert(
                "b",
                &json!({"identifier": q, "title": "T"}),
                true,
                "ds",
                &mut ch,
            )
            .unwrap();
        assert_eq!((id.as_str(), created), ("x", false));
        let none = json!({"rules": [{"property": "email", "operator": "=", "value": "zz"}]});
        assert_eq!(
            s.upsert("b", &json!({"identifier": none}), true, "ds", &mut ch)
                .unwrap_err()
                .status,
            404
        );
    }
}

#[cfg(test)]
mod properties {
    //! Arbitrary identifiers and property values: refused as Port refuses them, or stored exactly
    //! (in memory and in what is committed); arbitrary search queries: an answer, never a panic.
    use super::*;
    use proptest::prelude::*;

    fn identifier() -> impl Strategy<Value = String> {
        prop_oneof![
            "[A-Za-z0-9@_.+:/=-]{1,40}",
            crate::arbitrary::text(),
            "[a-z]{990,1010}",
        ]
    }

    proptest! {
        #![proptest_config(crate::arbitrary::config(256))]

        #[test]
        fn entities_are_refused_like_port_or_stored_exactly(
            id in identifier(),
            properties in prop::collection::btree_map(crate::arbitrary::text(), crate::arbitrary::json(), 0..6),
            title in prop::option::of(crate::arbitrary::text()),
            query in crate::arbitrary::json(),
        ) {
            let mut state = State::default();
            let mut changes = Vec::new();
            let properties: Map<String, Value> = properties.into_iter().collect();
            let mut sent = json!({"identifier": id, "properties": properties});
            if let Some(t) = &title {
                sent["title"] = Value::String(t.clone());
            }
            let valid = !id.is_empty()
                && id.len() <= 1000
                && id.chars().all(|c| c.is_ascii_alphanumeric() || "@_.+:\\/=-".contains(c));
            match state.upsert("b", &sent, false, "ds", &mut changes) {
                Ok((stored_id, created)) => {
                    prop_assert!(valid, "accepted the identifier {:?}", id);
                    prop_assert!(created);
                    prop_assert_eq!(&stored_id, &id);
                    let stored = &state.entities[&("b".to_owned(), id.clone())].entity;
                    prop_assert_eq!(&stored["properties"], &sent["properties"]);
                    // Port shows a title it was not given as null.
                    prop_assert_eq!(&stored["title"], &sent["title"]);
                    let committed = changes.iter().find_map(|c| match c {
                        Change::PutEntity(_, bytes) => serde_json::from_slice::<Stored>(bytes).ok(),
                        _ => None,
                    });
                    prop_assert_eq!(committed.map(|s| s.entity), Some(stored.clone()));
                }
                Err(refused) => {
                    prop_assert!(!valid, "refused the identifier {:?}: {:?}", id, refused);
                    prop_assert_eq!(refused.status, 422);
                    prop_assert!(changes.is_empty());
                }
            }
            // Whatever the query, an answer.
            let _ = state.search_ids(Some("b"), &query);
            let _ = state.search_ids(None, &json!({"combinator": "or", "rules": [query]}));
        }
    }
}
