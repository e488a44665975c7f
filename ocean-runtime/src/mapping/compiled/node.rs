//! A mapping tree with its jq leaves compiled, evaluated per item; and the names of its leaves
//! for the issues it reports.

use std::fmt;

use ocean_jq::{Input, JqProgram};
use serde_json::Value;

use super::issues::{At, IssueKind, MappingError, MappingIssue};

/// A mapping tree with jq leaves compiled.
pub(super) enum Node {
    Jq(JqProgram),
    Literal(Value),
    Object(Vec<(String, Node)>),
    Array(Vec<Node>),
}

impl Node {
    pub(super) fn compile(value: &Value, field: &str, errors: &mut Vec<MappingError>) -> Self {
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

    /// Evaluates the node on an item: a jq leaf gives its first output, or `null` (with an issue
    /// naming the field) when it fails, yields `null` or yields nothing.
    pub(super) fn eval(
        &self,
        item: &Input<'_>,
        field: &Field<'_>,
        at: At,
        issues: &mut Vec<MappingIssue>,
    ) -> Value {
        match self {
            Self::Jq(p) => {
                let (value, kind) = match p.first_json(item) {
                    Ok(Some(v)) if !v.is_null() => return v.into_owned(),
                    Ok(_) => (Value::Null, IssueKind::Null),
                    Err(e) => (Value::Null, IssueKind::Failed(e.to_string())),
                };
                let mut issue = at.issue(field.to_string(), kind);
                issue.span = p.null_origin(item.json());
                issue.expression = Some(p.code().to_owned());
                issues.push(issue);
                value
            }
            Self::Literal(v) => v.clone(),
            Self::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, n)| (k.clone(), n.eval(item, &field.key(k), at, issues)))
                    .collect(),
            ),
            Self::Array(items) => Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, n)| n.eval(item, &field.index(i), at, issues))
                    .collect(),
            ),
        }
    }
}

/// Where a mapping leaf is (`port.entity.mappings.properties.status`), written out only when a
/// problem is reported.
pub(super) enum Field<'a> {
    Root(&'a str),
    Key(&'a Field<'a>, &'a str),
    Index(&'a Field<'a>, usize),
}

impl<'a> Field<'a> {
    pub(super) fn key(&'a self, key: &'a str) -> Self {
        Self::Key(self, key)
    }

    pub(super) fn index(&'a self, index: usize) -> Self {
        Self::Index(self, index)
    }
}

impl fmt::Display for Field<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Root(name) => write!(f, "port.entity.mappings.{name}"),
            Self::Key(parent, key) => write!(f, "{parent}.{key}"),
            Self::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}
