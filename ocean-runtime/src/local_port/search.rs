//! Port's entity search queries: `{"combinator": "and"|"or", "rules": [rule | query]}`.

use serde_json::Value;

/// What a rule can look at in an entity.
pub(crate) struct Subject<'a> {
    pub(crate) entity: &'a Value,
    pub(crate) datasource: &'a str,
}

impl Subject<'_> {
    fn property(&self, name: &str) -> Option<Value> {
        match name {
            "$datasource" => Some(Value::String(self.datasource.to_owned())),
            "$identifier" | "$blueprint" | "$title" | "$team" | "$icon" | "$createdAt"
            | "$updatedAt" => self.entity.get(&name[1..]).cloned(),
            other => self
                .entity
                .get("properties")
                .and_then(|p| p.get(other))
                .cloned(),
        }
    }
}

fn as_text(v: &Value) -> Option<&str> {
    v.as_str()
}

/// Whether `subject` matches `query`.
///
/// # Errors
/// A query that is not of Port's shape, or an operator this emulator does not know.
pub(crate) fn matches(query: &Value, subject: &Subject<'_>) -> Result<bool, String> {
    let combinator = query
        .get("combinator")
        .and_then(Value::as_str)
        .unwrap_or("and");
    let rules = query
        .get("rules")
        .and_then(Value::as_array)
        .ok_or("a query needs a `rules` array")?;
    let mut results = rules.iter().map(|rule| {
        if rule.get("rules").is_some() {
            matches(rule, subject)
        } else {
            rule_matches(rule, subject)
        }
    });
    match combinator {
        "and" => results.try_fold(true, |acc, r| r.map(|r| acc && r)),
        "or" => results.try_fold(false, |acc, r| r.map(|r| acc || r)),
        other => Err(format!(
            "unknown combinator `{other}`; expected `and` or `or`"
        )),
    }
}

fn rule_matches(rule: &Value, subject: &Subject<'_>) -> Result<bool, String> {
    let property = rule
        .get("property")
        .and_then(Value::as_str)
        .ok_or("a rule needs a string `property`")?;
    let operator = rule
        .get("operator")
        .and_then(Value::as_str)
        .ok_or("a rule needs a string `operator`")?;
    let expected = rule.get("value").unwrap_or(&Value::Null);
    let actual = subject.property(property).unwrap_or(Value::Null);
    Ok(match operator {
        "=" => actual == *expected,
        "!=" => actual != *expected,
        "in" => expected
            .as_array()
            .ok_or("operator `in` needs an array `value`")?
            .contains(&actual),
        "notIn" => !expected
            .as_array()
            .ok_or("operator `notIn` needs an array `value`")?
            .contains(&actual),
        "contains" | "doesNotContains" => {
            let needle = as_text(expected).ok_or("operator `contains` needs a string `value`")?;
            let found = match &actual {
                Value::String(s) => s.contains(needle),
                Value::Array(items) => items.iter().any(|i| i.as_str() == Some(needle)),
                _ => false,
            };
            (operator == "contains") == found
        }
        "beginsWith" => as_text(&actual)
            .zip(as_text(expected))
            .is_some_and(|(a, e)| a.starts_with(e)),
        "endsWith" => as_text(&actual)
            .zip(as_text(expected))
            .is_some_and(|(a, e)| a.ends_with(e)),
        "isEmpty" => {
            matches!(actual, Value::Null) || actual == "" || actual == Value::Array(vec![])
        }
        "isNotEmpty" => {
            !(matches!(actual, Value::Null) || actual == "" || actual == Value::Array(vec![]))
        }
        other => {
            return Err(format!(
                "operator `{other}` is not supported by the built-in Port"
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(query: Value) -> Result<bool, String> {
        let entity = json!({"identifier": "A-1", "blueprint": "issue", "properties": {"status": "Open", "tags": ["x"]}});
        matches(
            &query,
            &Subject {
                entity: &entity,
                datasource: "port-ocean/jira/1.0/my-jira/exporter",
            },
        )
    }

    #[test]
    fn ocean_ownership_search_matches() {
        assert_eq!(
            check(json!({"combinator": "and", "rules": [
                {"property": "$identifier", "operator": "in", "value": ["A-1", "A-2"]},
                {"property": "$blueprint", "operator": "=", "value": "issue"},
                {"property": "$datasource", "operator": "contains", "value": "port-ocean/jira/"},
                {"property": "$datasource", "operator": "contains", "value": "/my-jira/exporter"},
            ]})),
            Ok(true)
        );
        assert_eq!(
            check(
                json!({"rules": [{"property": "$datasource", "operator": "contains", "value": "/other/exporter"}]})
            ),
            Ok(false)
        );
    }

    #[test]
    fn nested_or_and_properties() {
        assert_eq!(
            check(json!({"combinator": "or", "rules": [
                {"property": "status", "operator": "=", "value": "Closed"},
                {"combinator": "and", "rules": [{"property": "tags", "operator": "contains", "value": "x"}]},
            ]})),
            Ok(true)
        );
    }

    #[test]
    fn bad_queries_are_errors() {
        assert!(check(json!({"rules": [{"property": "a", "operator": "~", "value": 1}]})).is_err());
        assert!(check(json!({"combinator": "xor", "rules": []})).is_err());
        assert!(
            check(json!({"rules": [{"property": "a", "operator": "in", "value": 1}]})).is_err()
        );
    }
}
