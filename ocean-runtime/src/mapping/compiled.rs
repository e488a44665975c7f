//! A mapping compiled once: every jq leaf parsed and compiled, ready to run per item.

use std::fmt;

use ocean_jq::{Input, JqProgram, from_val};
use serde_json::{Map, Value};

use super::{PortAppConfig, ResourceConfig};

mod issues;
mod node;

use issues::At;
pub use issues::{IssueKind, MappingError, MappingIssue};
use node::{Field, Node};

/// `itemsToParse`, compiled.
struct ItemsToParse {
    program: JqProgram,
    name: String,
    /// `del(<itemsToParse>)`, when the array is to be removed from the parent.
    remove: Option<JqProgram>,
}

impl ItemsToParse {
    /// The parent each element is mapped with: the item, without the array when asked.
    fn parent(&self, item: &Input<'_>, at: At, issues: &mut Vec<MappingIssue>) -> Value {
        let Some(remove) = &self.remove else {
            return item.json().clone();
        };
        match remove.first_val(item.val().clone()) {
            Ok(Some(v)) => from_val(&v),
            Ok(None) | Err(_) => {
                let mut issue = at.issue(
                    "port.itemsToParse".to_owned(),
                    IssueKind::Note(
                        "not a path, so the array cannot be removed from the parent; mapped with the whole item"
                            .to_owned(),
                    ),
                );
                issue.expression = Some(self.program.code().to_owned());
                issues.push(issue);
                item.json().clone()
            }
        }
    }
}

struct CompiledResource {
    selector: Option<JqProgram>,
    items_to_parse: Option<ItemsToParse>,
    /// Entity fields in Port's order: identifier, title, icon, blueprint, team, properties, relations.
    fields: Vec<(&'static str, Node)>,
}

/// An entity ready for Port.
#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    /// The blueprint identifier.
    pub blueprint: String,
    /// The identifier: a string, or a search query Port resolves.
    pub identifier: Value,
    /// The whole entity object as sent to Port.
    pub body: Value,
}

impl Entity {
    /// The identifier when it is a plain string.
    #[must_use]
    pub fn identifier_str(&self) -> Option<&str> {
        self.identifier.as_str()
    }
}

/// Entities mapped from raw items, split by the selector's verdict.
#[derive(Debug, Default)]
pub struct MappedItems {
    /// Items whose selector yielded `true`.
    pub passed: Vec<Entity>,
    /// Items whose selector yielded `false`.
    pub failed: Vec<Entity>,
    /// What went wrong for individual items or fields (the rest was still mapped).
    pub issues: Vec<MappingIssue>,
}

impl MappedItems {
    /// Items (or `itemsToParse` elements) that produced no entity.
    #[must_use]
    pub fn skipped(&self) -> usize {
        self.issues
            .iter()
            .filter(|i| matches!(i.kind, IssueKind::Skipped(_)))
            .count()
    }
}

/// A port app config with every jq expression compiled.
pub struct CompiledMapping {
    config: PortAppConfig,
    resources: Vec<CompiledResource>,
}

impl fmt::Debug for CompiledMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledMapping")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => false,
        Value::String(s) => !s.is_empty(),
        Value::Object(m) => !m.is_empty(),
        _ => true,
    }
}

impl CompiledMapping {
    /// Compiles every jq expression of the mapping.
    ///
    /// # Errors
    /// Every expression that does not compile, each naming its place in the mapping.
    pub fn compile(config: PortAppConfig) -> Result<Self, Vec<MappingError>> {
        let mut errors = Vec::new();
        let mut resources = Vec::with_capacity(config.resources.len());
        for (i, res) in config.resources.iter().enumerate() {
            let at = format!("resources[{i}]");
            let selector = match JqProgram::compile(&res.selector.query) {
                Ok(p) => Some(p),
                Err(error) => {
                    errors.push(MappingError {
                        field: format!("{at}.selector.query"),
                        expression: res.selector.query.clone(),
                        error,
                    });
                    None
                }
            };
            let items_to_parse =
                res.port
                    .items_to_parse
                    .as_ref()
                    .and_then(|code| match JqProgram::compile(code) {
                        Ok(program) => Some(ItemsToParse {
                            program,
                            name: res
                                .port
                                .items_to_parse_name
                                .clone()
                                .unwrap_or_else(|| "item".to_owned()),
                            // Removes the array with jq's own `del`, which works for any path
                            // expression (Ocean extracts the path heuristically).
                            remove: res
                                .port
                                .items_to_parse_top_level_transform
                                .unwrap_or(true)
                                .then(|| JqProgram::compile(&format!("del({code})")).ok())
                                .flatten(),
                        }),
                        Err(error) => {
                            errors.push(MappingError {
                                field: format!("{at}.port.itemsToParse"),
                                expression: code.clone(),
                                error,
                            });
                            None
                        }
                    });
            let m = &res.port.entity.mappings;
            let base = format!("{at}.port.entity.mappings");
            let mut fields = Vec::new();
            let mut add = |name: &'static str, v: &Value| {
                fields.push((
                    name,
                    Node::compile(v, &format!("{base}.{name}"), &mut errors),
                ));
            };
            add("identifier", &m.identifier);
            if let Some(v) = &m.title {
                add("title", v);
            }
            if let Some(v) = &m.icon {
                add("icon", v);
            }
            add("blueprint", &m.blueprint);
            if let Some(v) = &m.team {
                add("team", v);
            }
            if !m.properties.is_empty() {
                add("properties", &Value::Object(m.properties.clone()));
            }
            if !m.relations.is_empty() {
                add("relations", &Value::Object(m.relations.clone()));
            }
            resources.push(CompiledResource {
                selector,
                items_to_parse,
                fields,
            });
        }
        if errors.is_empty() {
            Ok(Self { config, resources })
        } else {
            Err(errors)
        }
    }

    /// The mapping as configured.
    #[must_use]
    pub fn config(&self) -> &PortAppConfig {
        &self.config
    }

    /// The resources of kind `kind`, with their index in the mapping.
    pub fn resources_of<'a, 'k>(
        &'a self,
        kind: &'k str,
    ) -> impl Iterator<Item = (usize, &'a ResourceConfig)> + use<'a, 'k> {
        self.config
            .resources
            .iter()
            .enumerate()
            .filter(move |(_, r)| r.kind == kind)
    }

    /// Maps raw items with resource `resource_index`: each item (or each element of `itemsToParse`) is
    /// run through the selector and the entity mapping. Items whose identifier or blueprint is empty
    /// are skipped; failures are reported in [`MappedItems::issues`] and never abort the batch.
    #[must_use]
    pub fn map_items(&self, resource_index: usize, items: &[Value]) -> MappedItems {
        let mut out = MappedItems::default();
        let Some(res) = self.resources.get(resource_index) else {
            if !items.is_empty() {
                out.issues.push(
                    At {
                        resource: resource_index,
                        item: 0,
                        element: None,
                    }
                    .issue(
                        String::new(),
                        IssueKind::Skipped(format!(
                            "the current mapping has no resources[{resource_index}]; {} items",
                            items.len()
                        )),
                    ),
                );
            }
            return out;
        };
        for (n, item) in items.iter().enumerate() {
            let at = At {
                resource: resource_index,
                item: n,
                element: None,
            };
            // Converted to jaq's values at most once, and only for programs outside the subset
            // that runs on JSON directly.
            let input = Input::new(item);
            let Some(items) = &res.items_to_parse else {
                Self::map_one(res, &input, at, &mut out);
                continue;
            };
            let skipped = |why: String| {
                let mut issue = at.issue("port.itemsToParse".to_owned(), IssueKind::Skipped(why));
                issue.expression = Some(items.program.code().to_owned());
                issue
            };
            match items.program.first_json(&input) {
                Ok(Some(elements)) if elements.is_array() => {
                    let base = items.parent(&input, at, &mut out.issues);
                    let Value::Array(elements) = elements.into_owned() else {
                        continue;
                    };
                    for (e, element) in elements.into_iter().enumerate() {
                        let mut parent = base.clone();
                        if let Value::Object(map) = &mut parent {
                            map.insert(items.name.clone(), element);
                        }
                        let at = At {
                            element: Some(e),
                            ..at
                        };
                        Self::map_one(res, &Input::new(&parent), at, &mut out);
                    }
                }
                Ok(other) => out.issues.push(skipped(format!(
                    "did not yield an array (yielded {})",
                    other.map_or_else(|| "nothing".to_owned(), |v| kind_of(&v).to_owned())
                ))),
                Err(e) => out.issues.push(skipped(format!("failed: {e}"))),
            }
        }
        out
    }

    fn map_one(res: &CompiledResource, item: &Input<'_>, at: At, out: &mut MappedItems) {
        let Some(selector) = &res.selector else {
            return;
        };
        let skipped = |why: String| {
            let mut issue = at.issue("selector.query".to_owned(), IssueKind::Skipped(why));
            issue.expression = Some(selector.code().to_owned());
            issue
        };
        let passed = match selector.first_json(item) {
            Ok(Some(v)) if v.is_boolean() => v.as_bool() == Some(true),
            Ok(other) => {
                out.issues.push(skipped(format!(
                    "must yield a boolean, yielded {}",
                    other.map_or_else(|| "nothing".to_owned(), |v| v.to_string())
                )));
                return;
            }
            Err(e) => {
                out.issues.push(skipped(format!("failed: {e}")));
                return;
            }
        };
        let first_issue = out.issues.len();
        let mut body = Map::new();
        for (name, node) in &res.fields {
            body.insert(
                (*name).to_owned(),
                node.eval(item, &Field::Root(name), at, &mut out.issues),
            );
        }
        let identifier = body.get("identifier").cloned().unwrap_or(Value::Null);
        let blueprint = body
            .get("blueprint")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        for issue in &mut out.issues[first_issue..] {
            issue.identifier = identifier.as_str().map(str::to_owned);
            issue.blueprint = (!blueprint.is_empty()).then(|| blueprint.clone());
        }
        if !truthy(&identifier) || blueprint.is_empty() {
            // The item is skipped: that is its one issue, with the field's own if it has one.
            let what = if truthy(&identifier) {
                "blueprint"
            } else {
                "identifier"
            };
            let field = format!("port.entity.mappings.{what}");
            let cause = out.issues[first_issue..]
                .iter()
                .find(|i| i.field == field)
                .cloned();
            out.issues.truncate(first_issue);
            let mut issue = cause.unwrap_or_else(|| at.issue(field, IssueKind::Null));
            issue.kind = IssueKind::Skipped(match issue.kind {
                IssueKind::Failed(e) => format!("the {what} failed: {e}"),
                _ => format!("the {what} is empty"),
            });
            out.issues.push(issue);
            return;
        }
        let search = identifier.get("rules").is_some_and(Value::is_array);
        if !(identifier.is_string() || search) {
            // Port refuses it anyway; said here, with the expression, instead of as a 422.
            let mut issue = at.issue(
                "port.entity.mappings.identifier".to_owned(),
                IssueKind::Skipped(format!(
                    "the identifier is {}, not a string or a search query (`rules`)",
                    kind_of(&identifier)
                )),
            );
            issue.blueprint = Some(blueprint);
            out.issues.truncate(first_issue);
            out.issues.push(issue);
            return;
        }
        let entity = Entity {
            blueprint,
            identifier,
            body: Value::Object(body),
        };
        if passed {
            out.passed.push(entity)
        } else {
            out.failed.push(entity)
        }
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mapping(yaml: &str) -> CompiledMapping {
        CompiledMapping::compile(PortAppConfig::from_yaml(yaml).unwrap()).unwrap()
    }

    const ISSUES: &str = r#"
resources:
  - kind: issue
    selector:
      query: '.fields.status != "Archived"'
    port:
      entity:
        mappings:
          identifier: .key
          title: .fields.summary
          blueprint: '"jiraIssue"'
          properties:
            status: .fields.status
            points: .fields.points * 2
            missing: .fields.nope.deeper
          relations:
            project: .fields.project.key
"#;

    #[test]
    fn maps_fields_and_splits_by_selector() {
        let m = mapping(ISSUES);
        let items = [
            json!({"key": "A-1", "fields": {"summary": "one", "status": "Open", "points": 2, "project": {"key": "A"}}}),
            json!({"key": "A-2", "fields": {"summary": "two", "status": "Archived", "points": 1, "project": {"key": "A"}}}),
        ];
        let out = m.map_items(0, &items);
        assert_eq!(out.passed.len(), 1);
        assert_eq!(out.failed.len(), 1);
        let e = &out.passed[0];
        assert_eq!(e.blueprint, "jiraIssue");
        assert_eq!(e.identifier, json!("A-1"));
        assert_eq!(
            e.body,
            json!({"identifier": "A-1", "title": "one", "blueprint": "jiraIssue",
                   "properties": {"status": "Open", "points": 4, "missing": null},
                   "relations": {"project": "A"}})
        );
        assert_eq!(out.failed[0].identifier, json!("A-2"));
    }

    #[test]
    fn runtime_errors_become_null_and_are_reported() {
        let m = mapping(ISSUES);
        let out = m.map_items(
            0,
            &[json!({"key": "A-3", "fields": {"status": "Open", "points": {"a": 1}}})],
        );
        assert_eq!(out.passed[0].body["properties"]["points"], Value::Null);
        let points = out
            .issues
            .iter()
            .find(|i| i.mapping_field() == Some("properties.points"))
            .unwrap();
        assert!(matches!(points.kind, IssueKind::Failed(_)), "{points}");
        assert_eq!(
            (points.resource, points.item, points.identifier.as_deref()),
            (0, 0, Some("A-3"))
        );
        assert_eq!(points.blueprint.as_deref(), Some("jiraIssue"));
        let text = points.to_string();
        assert!(
            text.starts_with("resources[0] item 0 (A-3): port.entity.mappings.properties.points: jq `.fields.points * 2` failed: "),
            "{text}"
        );
    }

    #[test]
    fn null_fields_are_reported_with_the_step_that_found_nothing() {
        let m = mapping(ISSUES);
        let out = m.map_items(
            0,
            &[
                json!({"key": "A-1", "fields": {"summary": "s", "status": "Open", "points": 1, "project": {"key": "A"}}}),
                json!({"key": "A-2", "fields": {"summary": "s", "status": "Open", "points": 1, "project": {"key": "A"}, "nope": {"deeper": 3}}}),
            ],
        );
        assert_eq!(out.passed.len(), 2, "still mapped and sent");
        let nulls: Vec<_> = out.issues.iter().map(ToString::to_string).collect();
        assert_eq!(
            nulls,
            [
                "resources[0] item 0 (A-1): port.entity.mappings.properties.missing: jq `.fields.nope.deeper` yielded null (`.fields.nope` at 0..12 found nothing)"
            ]
        );
        assert_eq!(out.skipped(), 0);
    }

    #[test]
    fn empty_identifier_skips_the_entity() {
        let m = mapping(ISSUES);
        let out = m.map_items(0, &[json!({"fields": {"status": "Open"}})]);
        assert!(out.passed.is_empty() && out.failed.is_empty());
        assert_eq!(out.skipped(), 1);
        assert!(
            out.issues
                .iter()
                .any(|i| i.to_string().contains("identifier: jq `.key`: the identifier is empty; skipped (`.key` at 0..4 found nothing)")),
            "{:?}",
            out.issues
        );
    }

    #[test]
    fn non_boolean_selector_skips_the_item() {
        let m = mapping(&ISSUES.replace(r#"'.fields.status != "Archived"'"#, ".fields.status"));
        let out = m.map_items(0, &[json!({"key": "A-1", "fields": {"status": "Open"}})]);
        assert!(out.passed.is_empty() && out.failed.is_empty());
        assert_eq!(out.skipped(), 1);
        assert!(
            out.issues[0].to_string().contains("must yield a boolean"),
            "{:?}",
            out.issues
        );
    }

    #[test]
    fn compile_errors_name_every_bad_field() {
        let cfg = PortAppConfig::from_yaml(
            &ISSUES
                .replace(".fields.summary", ".fields.summary |")
                .replace("identifier: .key", "identifier: nosuch(.key)"),
        )
        .unwrap();
        let errs = CompiledMapping::compile(cfg).unwrap_err();
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "resources[0].port.entity.mappings.identifier",
                "resources[0].port.entity.mappings.title"
            ]
        );
        assert!(
            errs[0].to_string().contains("undefined filter `nosuch`"),
            "{}",
            errs[0]
        );
    }

    #[test]
    fn search_query_identifier_leaves_are_jq() {
        let m = mapping(
            r#"
resources:
  - kind: x
    selector: {query: 'true'}
    port:
      entity:
        mappings:
          identifier:
            combinator: '"and"'
            rules:
              - property: '"$identifier"'
                operator: '"="'
                value: .id
          blueprint: '"b"'
"#,
        );
        let out = m.map_items(0, &[json!({"id": "x1"})]);
        assert_eq!(
            out.passed[0].identifier,
            json!({"combinator": "and", "rules": [{"property": "$identifier", "operator": "=", "value": "x1"}]})
        );
    }

    #[test]
    fn items_to_parse_maps_each_element() {
        let m = mapping(
            r#"
resources:
  - kind: comment
    selector: {query: 'true'}
    port:
      itemsToParse: .comments
      entity:
        mappings:
          identifier: .item.id
          blueprint: '"comment"'
          relations:
            issue: .key
"#,
        );
        let out = m.map_items(
            0,
            &[json!({"key": "A-1", "comments": [{"id": "c1"}, {"id": "c2"}]})],
        );
        let ids: Vec<_> = out.passed.iter().map(|e| e.identifier.clone()).collect();
        assert_eq!(ids, [json!("c1"), json!("c2")]);
        assert_eq!(out.passed[1].body["relations"]["issue"], "A-1");
    }

    #[test]
    fn items_to_parse_removes_the_array_from_the_parent_unless_told_not_to() {
        let yaml = |transform: &str| {
            format!(
                r#"
resources:
  - kind: comment
    selector: {{query: 'true'}}
    port:
      itemsToParse: .fields.comments
      itemsToParseName: comment
{transform}
      entity:
        mappings:
          identifier: .comment.id
          blueprint: '"comment"'
          properties:
            siblings: .fields.comments | length
            issue: .key
"#
            )
        };
        let item = json!({"key": "A-1", "fields": {"comments": [{"id": "c1"}, {"id": "c2"}]}});
        let out = mapping(&yaml("")).map_items(0, std::slice::from_ref(&item));
        assert_eq!(out.passed.len(), 2);
        assert_eq!(
            out.passed[0].body["properties"]["siblings"], 0,
            "removed by default"
        );
        assert_eq!(out.passed[0].body["properties"]["issue"], "A-1");
        let kept = mapping(&yaml("      itemsToParseTopLevelTransform: false"))
            .map_items(0, std::slice::from_ref(&item));
        assert_eq!(kept.passed[1].body["properties"]["siblings"], 2);
        assert!(kept.issues.is_empty(), "{:?}", kept.issues);
    }

    #[test]
    fn items_to_parse_that_is_not_a_path_keeps_the_parent_whole() {
        let m = mapping(
            r#"
resources:
  - kind: comment
    selector: {query: 'true'}
    port:
      itemsToParse: '[.a[], .b[]]'
      entity:
        mappings:
          identifier: .item
          blueprint: '"c"'
"#,
        );
        let out = m.map_items(0, &[json!({"a": ["x"], "b": ["y"]})]);
        let ids: Vec<_> = out.passed.iter().map(|e| e.identifier.clone()).collect();
        assert_eq!(ids, [json!("x"), json!("y")], "Ocean would skip the item");
        assert!(
            out.issues[0].to_string().contains("not a path"),
            "{:?}",
            out.issues
        );
        assert_eq!(out.skipped(), 0);
    }

    #[test]
    fn an_identifier_that_is_not_a_string_or_a_search_query_skips_the_item() {
        let m = mapping(ISSUES);
        for id in [json!(7), json!([]), json!({"": null}), json!(true)] {
            let out = m.map_items(0, &[json!({"key": id, "fields": {"status": "Open"}})]);
            assert!(out.passed.is_empty() && out.failed.is_empty(), "{id}");
            assert_eq!(out.skipped(), 1, "{id}");
            let said = out.issues[0].to_string();
            assert!(said.contains("not a string or a search query"), "{said}");
        }
    }

    #[test]
    fn resources_of_keeps_mapping_indexes() {
        let m = mapping(&format!("{ISSUES}{}", ISSUES.replace("resources:\n", "")));
        let idx: Vec<_> = m.resources_of("issue").map(|(i, _)| i).collect();
        assert_eq!(idx, [0, 1]);
        assert_eq!(m.resources_of("other").count(), 0);
    }
}

#[cfg(test)]
mod properties {
    //! Any raw item through every mapping feature: never a panic, and every item either becomes
    //! an entity (selected or not) or is reported as a mapping issue.
    use super::*;
    use proptest::prelude::*;

    /// Every field and feature a mapping has: a selector, a plain identifier and a search-query
    /// one, title, icon, team, properties (arithmetic, string functions, objects), relations
    /// (plain and search), and `itemsToParse`.
    const EVERYTHING: &str = r#"
resources:
  - kind: a
    selector: {query: '.keep != false'}
    port:
      entity:
        mappings:
          identifier: .id
          title: .name | tostring
          icon: '"Jira"'
          blueprint: .bp // "thing"
          team: .team
          properties:
            n: .n + 1
            text: (.text // "") | ascii_downcase
            keys: (.obj // {}) | keys
            deep: .a.b.c.d
            length: . | length
          relations:
            parent: .parent
            found:
              combinator: '"and"'
              rules:
                - property: '"$identifier"'
                  operator: '"="'
                  value: .id
  - kind: b
    selector: {query: 'true'}
    port:
      itemsToParse: .children
      entity:
        mappings:
          identifier:
            combinator: '"and"'
            rules:
              - property: '"$title"'
                operator: '"="'
                value: .item.name
          blueprint: '"child"'
          properties:
            parent: .id
            value: .item
"#;

    fn mapping() -> CompiledMapping {
        let config = crate::mapping::PortAppConfig::from_yaml(EVERYTHING)
            .unwrap_or_else(|e| unreachable!("{e}"));
        CompiledMapping::compile(config).unwrap_or_else(|e| unreachable!("{e:?}"))
    }

    /// An item that sometimes has the fields the mapping reads, with values of any type.
    fn item() -> impl Strategy<Value = Value> {
        use crate::arbitrary::json;
        (
            json(),
            prop::option::of(json()),
            prop::option::of(json()),
            prop::option::of(json()),
            prop::option::of(json()),
        )
            .prop_map(|(base, id, n, children, keep)| {
                let mut item = match base {
                    Value::Object(map) => Value::Object(map),
                    other => serde_json::json!({"other": other}),
                };
                for (key, value) in [("id", id), ("n", n), ("children", children), ("keep", keep)] {
                    if let Some(v) = value {
                        item[key] = v;
                    }
                }
                item
            })
    }

    proptest! {
        #![proptest_config(crate::arbitrary::config(128))]

        #[test]
        fn every_item_is_mapped_or_reported(
            items in prop::collection::vec(item(), 0..6),
            raw in prop::collection::vec(crate::arbitrary::json(), 0..4),
        ) {
            let m = mapping();
            let out = m.map_items(0, &items);
            prop_assert_eq!(
                out.passed.len() + out.failed.len() + out.skipped(),
                items.len(),
                "{:?}", out.issues
            );
            for e in out.passed.iter().chain(&out.failed) {
                let search = e.identifier.get("rules").is_some_and(Value::is_array);
                prop_assert!((e.identifier.is_string() || search) && !e.blueprint.is_empty(), "{:?}", e);
                prop_assert_eq!(&e.body["identifier"], &e.identifier);
            }
            // Items of any shape at all (not objects, too), and through `itemsToParse`.
            let any = m.map_items(0, &raw);
            prop_assert_eq!(any.passed.len() + any.failed.len() + any.skipped(), raw.len());
            let parsed = m.map_items(1, &items);
            for e in &parsed.passed {
                prop_assert!(e.identifier.is_object(), "{:?}", e);
                prop_assert_eq!(e.blueprint.as_str(), "child");
            }
            // A resource the mapping does not have is an issue, not a panic.
            let missing = m.map_items(7, &items);
            prop_assert!(missing.passed.is_empty() && (items.is_empty() || !missing.issues.is_empty()));
        }
    }
}
