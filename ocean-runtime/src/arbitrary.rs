//! Strategies shared by the property tests: arbitrary JSON with deep nesting, odd numbers and any
//! Unicode text (bounded in depth and size so that cases stay fast).

use proptest::prelude::*;
use serde_json::{Map, Number, Value};

/// Any JSON number serde_json can hold: small and huge integers, fractions, extremes.
fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter_map("finite", Number::from_f64)
            .prop_map(Value::Number),
        Just(Value::from(f64::MAX)),
        Just(Value::from(f64::MIN_POSITIVE)),
    ]
}

/// Text: any Unicode, or a few characters that matter to parsers and identifiers.
pub(crate) fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,24}",
        "[A-Za-z0-9@_.+:/=\\\\ !\"#$%&'()*,;<>?\\[\\]^`{|}~-]{0,16}",
        Just(String::new()),
    ]
}

/// Any JSON value, nested up to 6 levels with up to 6 elements per level.
pub(crate) fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((text(), inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// `cases` cases, and no regression files written into the source tree (a failure prints its
/// minimal input, which a plain test can then keep).
pub(crate) fn config(cases: u32) -> proptest::test_runner::Config {
    proptest::test_runner::Config {
        cases,
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    }
}
