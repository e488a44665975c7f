//! Conversions between `serde_json::Value` and jaq's `Val`.

use jaq_json::{Num, Val};
use serde::Deserialize;
use serde_json::{Map, Number, Value};

/// Converts a JSON value to a jaq value.
#[must_use]
pub fn to_val(value: &Value) -> Val {
    // Deserializing from a `serde_json::Value` cannot fail: every JSON value is a jaq value.
    Val::deserialize(value).unwrap_or(Val::Null)
}

fn number(num: &Num) -> Value {
    let float = |f: f64| Number::from_f64(f).map_or(Value::Null, Value::Number);
    match num {
        Num::Int(i) => Value::Number(Number::from(*i as i64)),
        Num::BigInt(_) | Num::Dec(_) => {
            let text = Val::Num(num.clone()).to_string();
            serde_json::from_str::<Number>(&text)
                .map(Value::Number)
                .or_else(|_| text.parse::<f64>().map(float))
                .unwrap_or(Value::Null)
        }
        Num::Float(f) => float(*f),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Converts a jaq value to a JSON value.
///
/// Byte strings become (lossy UTF-8) strings, non-finite numbers become `null`, and object keys that are
/// not strings are written as their jq text.
#[must_use]
pub fn from_val(val: &Val) -> Value {
    match val {
        Val::Null => Value::Null,
        Val::Bool(b) => Value::Bool(*b),
        Val::Num(n) => number(n),
        Val::TStr(s) | Val::BStr(s) => Value::String(text(s)),
        Val::Arr(items) => Value::Array(items.iter().map(from_val).collect()),
        Val::Obj(map) => {
            let mut out = Map::with_capacity(map.len());
            for (k, v) in map.iter() {
                let key = match k {
                    Val::TStr(s) | Val::BStr(s) => text(s),
                    other => other.to_string(),
                };
                out.insert(key, from_val(v));
            }
            Value::Object(out)
        }
    }
}
