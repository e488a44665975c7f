//! A mapping compiled once: every jq leaf parsed and compiled, ready to run per item.

use std::fmt;

use ocean_jq::{Input, JqErrors, JqProgram, from_val};
use serde_json::{Map, Value};

use super::{PortAppConfig, ResourceConfig};

/// A mapping leaf that does not compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingError {
    /// Where in the mapping, e.g. `resources[0].port.entity.mappings.properties.status`.
    pub field: String,
    /// The jq expression.
    pub expression: String,
    /// What jq said, with positions inside the expression.
    pub error: JqErrors,
}

impl fmt::Display for MappingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: jq `{}`: {}",
            self.field, self.expression, self.error
        )
    }
}

impl std::error::Error for MappingError {}

/// `itemsToParse`, compiled.
struct ItemsToParse {
    program: JqProgram,
    name: String,
    /// `del(<itemsToParse>)`, when the array is to be removed from the parent.
    remove: Option<JqProgram>,
}

impl ItemsToParse {
    /// The parent each element is mapped with: the item, without the array when asked.
    fn parent(&self, item: &Input<'_>, n: usize, issues: &mut Vec<String>) -> Value {
        let Some(remove) = &self.remove else {
            return item.json().clone();
        };
        match remove.first_val(item.val().clone()) {
            Ok(Some(v)) => from_val(&v),
            Ok(None) | Err(_) => {
                issues.push(format!(
                    "item {n}: itemsToParse is not a path, so the array cannot be removed from the parent; mapped with the whole item"
                ));
                item.json().clone()
            }
        }
    }
}

/// A mapping tree with jq leaves compiled.
enum Node {
    Jq(JqProgram),
    Literal(Value),
    Object(Vec<(String, Node)>),
    Array(Vec<Node>),
}

impl Node {
    fn compile(value: &Value, field: &str, errors: &mut Vec<MappingError>) -> Self {
        match value {
            Value::String(code) => match JqProgram::compile(code) {
                Ok(p) => Self::Jq(p),
                Err(error) => {
                    errors.push(MappingError {
                        field: field.to_owned(),
                        expression: code.clone(),
                        error,
                    });
                    Self::Literal(Value::Null)
                }
            },
            Value::Object(map) => Self::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), Self::compile(v, &format!("{field}.{k}"), errors)))
                    .collect(),
            ),
            Value::Array(items) => Self::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| Self::compile(v, &format!("{field}[{i}]"), errors))
                    .collect(),
            ),
            other => Self::Literal(other.clone()),
        }
    }

    /// Evaluates the node on an item: a jq leaf gives its first output, or `null` (with a note in
    /// `issues`, naming the field) when it fails or yields nothing.
    fn eval(&self, item: &Input<'_>, field: &Field<'_>, issues: &mut Vec<String>) -> Value {
        match self {
            Self::Jq(p) => match p.first_json(item) {
                Ok(Some(v)) => v.into_owned(),
                Ok(None) => Value::Null,
                Err(e) => {
                    issues.push(format!("{field}: jq `{}` failed: {e}", p.code()));
                    Value::Null
                }
            },
            Self::Literal(v) => v.clone(),
            Self::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, n)| (k.clone(), n.eval(item, &field.key(k), issues)))
                    .collect(),
            ),
            Self::Array(items) => Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, n)| n.eval(item, &field.index(i), issues))
                    .collect(),
            ),
        }
    }
}

/// Where a mapping leaf is (`resources[0].port.entity.mappings.properties.status`), written out
/// only when a problem is reported.
enum Field<'a> {
    Root(usize, &'a str),
    Key(&'a Field<'a>, &'a str),
    Index(&'a Field<'a>, usize),
}

impl<'a> Field<'a> {
    fn key(&'a self, key: &'a str) -> Self {
        Self::Key(self, key)
    }

    fn index(&'a self, index: usize) -> Self {
        Self::Index(self, index)
    }
}

impl fmt::Display for Field<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Root(resource, name) => {
                write!(f, "resources[{resource}].port.entity.mappings.{name}")
            }
            Self::Key(parent, key) => write!(f, "{parent}.{key}"),
            Self::Index(parent, i) => write!(f, "{parent}[{i}]"),
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
    pub issues: Vec<String>,
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
            out.issues.push(format!(
                "resources[{resource_index}] does not exist in the current mapping"
            ));
            return out;
        };
        for (n, item) in items.iter().enumerate() {
            // Converted to jaq's values at most once, and only for programs outside the subset
            // that runs on JSON directly.
            let input = Input::new(item);
            match &res.items_to_parse {
                None => self.map_one(resource_index, res, &input, &mut out),
                Some(items) => match items.program.first_json(&input) {
                    Ok(Some(elements)) if elements.is_array() => {
                        let base = items.parent(&input, n, &mut out.issues);
                        let Value::Array(elements) = elements.into_owned() else {
                            continue;
                        };
                        for element in elements {
                            let mut parent = base.clone();
                            if let Value::Object(map) = &mut parent {
                                map.insert(items.name.clone(), element);
                            }
                            self.map_one(resource_index, res, &Input::new(&parent), &mut out);
                        }
                    }
                    Ok(_) => out.issues.push(format!(
                        "item {n}: itemsToParse did not yield an array; item skipped"
                    )),
                    Err(e) => out
                        .issues
                        .push(format!("item {n}: itemsToParse failed: {e}")),
                },
            }
        }
        out
    }

    fn map_one(
        &self,
        index: usize,
        res: &CompiledResource,
        item: &Input<'_>,
        out: &mut MappedItems,
    ) {
        let Some(selector) = &res.selector else {
            return;
        };
        let passed = match selector
            .first_json(item)
            .map(|v| v.map(std::borrow::Cow::into_owned))
        {
            Ok(Some(Value::Bool(b))) => b,
            Ok(other) => {
                out.issues.push(format!(
                    "resources[{index}].selector.query must yield a boolean, yielded {}; item skipped",
                    other.map_or_else(|| "nothing".to_owned(), |v| v.to_string())
                ));
                return;
            }
            Err(e) => {
                out.issues.push(format!(
                    "resources[{index}].selector.query failed: {e}; item skipped"
                ));
                return;
            }
        };
        let mut body = Map::new();
        for (name, node) in &res.fields {
            body.insert(
                (*name).to_owned(),
                node.eval(item, &Field::Root(index, name), &mut out.issues),
            );
        }
        let identifier = body.get("identifier").cloned().unwrap_or(Value::Null);
        let blueprint = body
            .get("blueprint")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if !truthy(&identifier) || blueprint.is_empty() {
            out.issues.push(format!(
                "resources[{index}].port.entity.mappings: identifier or blueprint is empty; entity skipped"
            ));
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
        assert!(
            out.issues.iter().any(|i| i.contains("properties.points")),
            "{:?}",
            out.issues
        );
    }

    #[test]
    fn empty_identifier_skips_the_entity() {
        let m = mapping(ISSUES);
        let out = m.map_items(0, &[json!({"fields": {"status": "Open"}})]);
        assert!(out.passed.is_empty() && out.failed.is_empty());
        assert!(
            out.issues
                .iter()
                .any(|i| i.contains("identifier or blueprint is empty"))
        );
    }

    #[test]
    fn non_boolean_selector_skips_the_item() {
        let m = mapping(&ISSUES.replace(r#"'.fields.status != "Archived"'"#, ".fields.status"));
        let out = m.map_items(0, &[json!({"key": "A-1", "fields": {"status": "Open"}})]);
        assert!(out.passed.is_empty() && out.failed.is_empty());
        assert!(
            out.issues[0].contains("must yield a boolean"),
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
        assert!(out.issues[0].contains("not a path"), "{:?}", out.issues);
    }

    #[test]
    fn resources_of_keeps_mapping_indexes() {
        let m = mapping(&format!("{ISSUES}{}", ISSUES.replace("resources:\n", "")));
        let idx: Vec<_> = m.resources_of("issue").map(|(i, _)| i).collect();
        assert_eq!(idx, [0, 1]);
        assert_eq!(m.resources_of("other").count(), 0);
    }
}
