//! The demo Jira playing a slow, flaky upstream: the latency it is given, an even share of 429s
//! with `Retry-After: 1`, and a count of each record's fetches.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use ocean_example_jira::JiraSettings;
use ocean_example_jira::demo::{DemoJira, DemoOptions};
use serde_json::json;

#[tokio::test]
async fn the_demo_upstream_is_as_slow_and_flaky_as_it_is_told() {
    let demo = DemoJira::empty_with(DemoOptions {
        latency: Duration::from_millis(100),
        error_rate: 0.25,
    })
    .await
    .unwrap();
    demo.put(
        "issue",
        json!({"key": "D-1", "fields": {"summary": "demo"}}),
    );
    let http = reqwest::Client::new();
    let url = format!("{}/rest/api/2/issue/D-1", demo.url());
    let mut refused = Vec::new();
    for n in 1..=8 {
        let started = Instant::now();
        let r = http.get(&url).send().await.unwrap();
        assert!(
            started.elapsed() >= Duration::from_millis(100),
            "GET {n} was not delayed"
        );
        match r.status().as_u16() {
            200 => assert_eq!(r.json::<serde_json::Value>().await.unwrap()["key"], "D-1"),
            429 => {
                assert_eq!(r.headers()["retry-after"], "1");
                refused.push(n);
            }
            other => panic!("GET {n}: {other}"),
        }
    }
    assert_eq!(refused, [4, 8], "one GET in four, evenly");
    assert_eq!(demo.fetches("issue", "D-1"), 8);
    assert_eq!(demo.fetches("issue", "D-2"), 0);
}

#[test]
fn an_error_rate_outside_0_to_1_names_its_variable() {
    let settings: JiraSettings =
        serde_json::from_value(json!({"demo_error_rate": 1.5, "demo_latency_ms": 100})).unwrap();
    let e = settings.demo_options().unwrap_err();
    assert!(
        e.contains("OCEAN__INTEGRATION__CONFIG__DEMO_ERROR_RATE"),
        "{e}"
    );
    let ok: JiraSettings = serde_json::from_value(json!({"demo_latency_ms": 100})).unwrap();
    assert_eq!(
        ok.demo_options().unwrap(),
        DemoOptions {
            latency: Duration::from_millis(100),
            error_rate: 0.0
        }
    );
}
