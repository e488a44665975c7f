//! `.port/spec.yaml`, Ocean's integration spec: its `type` and `title` describe the integration
//! in Port, and its `configurations` list the integration's own settings
//! (`OCEAN__INTEGRATION__CONFIG__<NAME>`, the camelCase name in upper snake case). A required
//! setting without a default that is unset stops start-up, naming its variable; `sensitive`
//! settings are never logged (no setting value is) nor sent to Port.

use serde::Deserialize;

use crate::config::ConfigError;
use crate::integration_config::{IntegrationVars, var_name};

/// Where a crate keeps its spec, as in Ocean.
pub(crate) const SPEC_PATH: &str = ".port/spec.yaml";

/// The parts of the spec that ocean-rs uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub(crate) struct Spec {
    /// The integration type.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Shown in Port.
    pub title: Option<String>,
    /// The integration's own settings.
    #[serde(default)]
    pub configurations: Vec<Setting>,
}

/// One of the spec's `configurations`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub(crate) struct Setting {
    /// camelCase, as in Ocean.
    pub name: String,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub sensitive: bool,
    #[serde(default)]
    pub default: Option<serde_yaml_ng::Value>,
}

/// `jiraHost` → `jira_host`: the field a camelCase spec name is read from.
pub(crate) fn field_of(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// Parses the spec and checks its required settings against the environment's.
pub(crate) fn check(text: &str, vars: &IntegrationVars) -> Result<Spec, ConfigError> {
    let spec: Spec = serde_yaml_ng::from_str(text).map_err(|e| ConfigError::Invalid {
        var: SPEC_PATH.to_owned(),
        value: "(file)".to_owned(),
        reason: e.to_string(),
    })?;
    for setting in &spec.configurations {
        let field = field_of(&setting.name);
        if setting.required && setting.default.is_none() && vars.get(&field).is_none() {
            return Err(ConfigError::Missing {
                var: var_name(&field),
                because: format!("{SPEC_PATH} marks `{}` required", setting.name),
            });
        }
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r"
type: jira
title: Jira
configurations:
  - name: jiraHost
    required: true
    type: url
  - name: atlassianUserToken
    required: true
    sensitive: true
    type: string
  - name: pageSize
    required: true
    type: integer
    default: 50
  - name: verbose
    type: boolean
";

    #[test]
    fn required_settings_without_a_default_must_be_set() {
        let e = check(
            SPEC,
            &IntegrationVars::from_vars([("OCEAN__INTEGRATION__CONFIG__JIRA_HOST", "https://j")]),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "OCEAN__INTEGRATION__CONFIG__ATLASSIAN_USER_TOKEN must be set because \
             .port/spec.yaml marks `atlassianUserToken` required"
        );
        let spec = check(
            SPEC,
            &IntegrationVars::from_vars([
                ("OCEAN__INTEGRATION__CONFIG__JIRA_HOST", "https://j"),
                ("OCEAN__INTEGRATION__CONFIG__ATLASSIAN_USER_TOKEN", "t0ken"),
            ]),
        )
        .unwrap();
        assert_eq!(spec.kind.as_deref(), Some("jira"));
        assert_eq!(spec.title.as_deref(), Some("Jira"));
        assert!(spec.configurations[1].sensitive);
        let bad = check("configurations: 3", &IntegrationVars::default()).unwrap_err();
        assert!(bad.to_string().starts_with(".port/spec.yaml="), "{bad}");
    }

    #[test]
    fn camel_case_names_read_upper_snake_variables() {
        assert_eq!(field_of("jiraHost"), "jira_host");
        assert_eq!(field_of("atlassianUserToken"), "atlassian_user_token");
        assert_eq!(
            var_name(&field_of("url")),
            "OCEAN__INTEGRATION__CONFIG__URL"
        );
    }
}
