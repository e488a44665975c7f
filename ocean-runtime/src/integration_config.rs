//! The integration's own settings: `OCEAN__INTEGRATION__CONFIG__<FIELD>` variables deserialized into
//! the author's type.
//!
//! Field `jira_url` is read from `OCEAN__INTEGRATION__CONFIG__JIRA_URL`. Values are text and are
//! parsed for the field's type: numbers, `true`/`false`, comma-separated lists for sequences, and
//! `Option` fields are `None` when the variable is unset or empty. Every error names the variable.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};

use crate::config::ConfigError;

/// The prefix of the integration's own variables.
pub(crate) const PREFIX: &str = "OCEAN__INTEGRATION__CONFIG__";

/// The integration's variables (`OCEAN__INTEGRATION__CONFIG__…`), by field name (lower case).
///
/// Values may be secrets, so `Debug` shows the names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct IntegrationVars(BTreeMap<String, String>);

impl fmt::Debug for IntegrationVars {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.0.keys().map(|k| var_name(k)))
            .finish()
    }
}

/// The variable that holds `field`.
#[must_use]
pub(crate) fn var_name(field: &str) -> String {
    format!("{PREFIX}{}", field.to_ascii_uppercase())
}

impl IntegrationVars {
    /// Picks the integration's variables out of `vars`; empty values count as unset.
    pub fn from_vars<'a>(vars: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self(
            vars.into_iter()
                .filter_map(|(k, v)| {
                    let field = k.strip_prefix(PREFIX)?;
                    let v = v.trim();
                    (!field.is_empty() && !v.is_empty())
                        .then(|| (field.to_ascii_lowercase(), v.to_owned()))
                })
                .collect(),
        )
    }

    /// The value of `field`, if set.
    #[must_use]
    pub fn get(&self, field: &str) -> Option<&str> {
        self.0.get(&field.to_ascii_lowercase()).map(String::as_str)
    }

    /// Deserializes the variables into `T`.
    ///
    /// # Errors
    /// A required field's variable is unset, or a value does not parse for its field's type; the
    /// error names the variable.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        T::deserialize(VarsDeserializer(self)).map_err(EnvError::into_config)
    }
}

/// A deserialization error, knowing the variable once the value is known.
#[derive(Debug)]
struct EnvError {
    var: Option<(String, String)>,
    missing: Option<String>,
    message: String,
}

impl EnvError {
    fn into_config(self) -> ConfigError {
        match (self.missing, self.var) {
            (Some(field), _) => ConfigError::Missing {
                var: var_name(&field),
                because: format!("the integration's config has a required field `{field}`"),
            },
            (None, Some((var, value))) => ConfigError::Invalid {
                var,
                value,
                reason: self.message,
            },
            (None, None) => ConfigError::Invalid {
                var: format!("{PREFIX}*"),
                value: String::new(),
                reason: self.message,
            },
        }
    }
}

impl fmt::Display for EnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for EnvError {}

impl de::Error for EnvError {
    fn custom<M: fmt::Display>(msg: M) -> Self {
        Self {
            var: None,
            missing: None,
            message: msg.to_string(),
        }
    }

    fn missing_field(field: &'static str) -> Self {
        Self {
            var: None,
            missing: Some(field.to_owned()),
            message: format!("missing field `{field}`"),
        }
    }
}

struct VarsDeserializer<'a>(&'a IntegrationVars);

impl<'de> de::Deserializer<'de> for VarsDeserializer<'_> {
    type Error = EnvError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, EnvError> {
        visitor.visit_map(VarsAccess {
            iter: self.0.0.iter(),
            value: None,
        })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option
        unit unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

struct VarsAccess<'a> {
    iter: std::collections::btree_map::Iter<'a, String, String>,
    value: Option<(&'a String, &'a String)>,
}

impl<'de> de::MapAccess<'de> for VarsAccess<'_> {
    type Error = EnvError;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, EnvError> {
        match self.iter.next() {
            None => Ok(None),
            Some((field, value)) => {
                self.value = Some((field, value));
                seed.deserialize(field.as_str().into_deserializer())
                    .map(Some)
            }
        }
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, EnvError> {
        let Some((field, value)) = self.value.take() else {
            return Err(de::Error::custom("value without a key"));
        };
        seed.deserialize(Text(value)).map_err(|mut e: EnvError| {
            e.var = Some((var_name(field), value.clone()));
            e.missing = None;
            e
        })
    }
}

/// One variable's text, parsed for the type asked for.
struct Text<'a>(&'a str);

impl Text<'_> {
    fn parse<T: std::str::FromStr>(&self, what: &str) -> Result<T, EnvError> {
        self.0
            .trim()
            .parse()
            .map_err(|_| de::Error::custom(format!("expected {what}")))
    }
}

macro_rules! parse_as {
    ($($method:ident => $visit:ident: $ty:ty, $what:literal;)*) => {
        $(fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, EnvError> {
            visitor.$visit(self.parse::<$ty>($what)?)
        })*
    };
}

impl<'de> de::Deserializer<'de> for Text<'_> {
    type Error = EnvError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, EnvError> {
        visitor.visit_str(self.0)
    }

    parse_as! {
        deserialize_bool => visit_bool: bool, "`true` or `false`";
        deserialize_i8 => visit_i8: i8, "a whole number";
        deserialize_i16 => visit_i16: i16, "a whole number";
        deserialize_i32 => visit_i32: i32, "a whole number";
        deserialize_i64 => visit_i64: i64, "a whole number";
        deserialize_u8 => visit_u8: u8, "a non-negative whole number";
        deserialize_u16 => visit_u16: u16, "a non-negative whole number";
        deserialize_u32 => visit_u32: u32, "a non-negative whole number";
        deserialize_u64 => visit_u64: u64, "a non-negative whole number";
        deserialize_f32 => visit_f32: f32, "a number";
        deserialize_f64 => visit_f64: f64, "a number";
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, EnvError> {
        if self.0.trim().is_empty() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, EnvError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, EnvError> {
        let items = self
            .0
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Text);
        visitor.visit_seq(de::value::SeqDeserializer::new(items))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, EnvError> {
        visitor.visit_enum(self.0.trim().into_deserializer())
    }

    serde::forward_to_deserialize_any! {
        i128 u128 char str string bytes byte_buf unit unit_struct tuple tuple_struct map struct
        identifier ignored_any
    }
}

impl<'de> IntoDeserializer<'de, EnvError> for Text<'_> {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Jira {
        jira_url: String,
        page_size: u32,
        verify_tls: Option<bool>,
        projects: Vec<String>,
        #[serde(default)]
        label: Option<String>,
    }

    fn vars(pairs: &[(&str, &str)]) -> IntegrationVars {
        IntegrationVars::from_vars(pairs.iter().copied())
    }

    #[test]
    fn fields_are_read_from_their_variables() {
        let v = vars(&[
            ("OCEAN__INTEGRATION__CONFIG__JIRA_URL", "http://jira"),
            ("OCEAN__INTEGRATION__CONFIG__PAGE_SIZE", "50"),
            ("OCEAN__INTEGRATION__CONFIG__VERIFY_TLS", "false"),
            ("OCEAN__INTEGRATION__CONFIG__PROJECTS", "A, B,"),
            ("OCEAN__PORT__CLIENT_ID", "ignored"),
        ]);
        let jira: Jira = v.deserialize().unwrap();
        assert_eq!(
            jira,
            Jira {
                jira_url: "http://jira".into(),
                page_size: 50,
                verify_tls: Some(false),
                projects: vec!["A".into(), "B".into()],
                label: None,
            }
        );
        assert_eq!(v.get("JIRA_URL"), Some("http://jira"));
        assert!(!format!("{v:?}").contains("http://jira"), "values hidden");
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        let v = vars(&[
            ("OCEAN__INTEGRATION__CONFIG__JIRA_URL", "http://jira"),
            ("OCEAN__INTEGRATION__CONFIG__PAGE_SIZE", "many"),
            ("OCEAN__INTEGRATION__CONFIG__PROJECTS", "A"),
        ]);
        let err = v.deserialize::<Jira>().unwrap_err().to_string();
        assert_eq!(
            err,
            "OCEAN__INTEGRATION__CONFIG__PAGE_SIZE=\"many\" is invalid: expected a non-negative whole number"
        );
    }

    #[test]
    fn a_missing_field_names_its_variable() {
        let v = vars(&[("OCEAN__INTEGRATION__CONFIG__PAGE_SIZE", "5")]);
        let err = v.deserialize::<Jira>().unwrap_err().to_string();
        assert!(
            err.starts_with("OCEAN__INTEGRATION__CONFIG__JIRA_URL must be set"),
            "{err}"
        );
    }
}
