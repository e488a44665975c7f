//! Ingress under arbitrary input, over real HTTP: arbitrary bytes, deep nesting, huge numbers,
//! invalid UTF-8, odd headers and paths always get a well-formed HTTP answer with a JSON reason,
//! and the app keeps serving (a panic in a handler would drop the connection instead).
//!
//! Bounded: 256 requests per property.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::OnceLock;

use ocean_runtime::testing::TestApp;
use proptest::prelude::*;
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::Value;

/// One app and runtime for every case.
fn app() -> &'static (tokio::runtime::Runtime, TestApp) {
    static APP: OnceLock<(tokio::runtime::Runtime, TestApp)> = OnceLock::new();
    APP.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let app = rt.block_on(
            TestApp::builder()
                .mapping(ocean_tests::JIRA_MAPPING)
                .env("OCEAN__INGRESS__BODY_LIMIT_BYTES", "65536")
                .start(),
        );
        (rt, app.unwrap())
    })
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Bodies: any bytes, JSON nested deeper than parsers allow, huge and odd numbers, invalid UTF-8
/// inside strings, and near-valid Jira events.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..2048),
        (1usize..5000).prop_map(|depth| {
            let mut b = "[".repeat(depth);
            b.push_str(&"]".repeat(depth));
            b.into_bytes()
        }),
        (1usize..300).prop_map(|depth| {
            format!(
                "{}\"jira:issue_created\"{}",
                "{\"webhookEvent\":".repeat(depth),
                "}".repeat(depth)
            )
            .into_bytes()
        }),
        "[0-9]{1,4000}".prop_map(String::into_bytes),
        prop_oneof![
            Just("1e999999"),
            Just("-1e-999999"),
            Just("18446744073709551616"),
            Just("{\"issue\":{\"key\":1e400}}")
        ]
        .prop_map(|s| s.as_bytes().to_vec()),
        prop::collection::vec(128u8..=255, 1..16).prop_map(|bad| {
            let mut b = br#"{"webhookEvent":"jira:issue_created","issue":{"key":""#.to_vec();
            b.extend(bad);
            b.extend_from_slice(br#""}}"#);
            b
        }),
        (".{0,20}", ".{0,20}", any::<i64>()).prop_map(|(key, event, n)| {
            serde_json::json!({"webhookEvent": event, "issue": {"key": key, "fields": {"n": n}}})
                .to_string()
                .into_bytes()
        }),
    ]
}

/// Headers of any legal name and any value bytes HTTP allows (visible ASCII, tab, obs-text).
fn headers() -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
    let value = prop::collection::vec(prop_oneof![Just(b'\t'), 0x20u8..0x7f, 0x80u8..=0xff], 0..64);
    let name = prop_oneof![
        "[a-z0-9!#$%&'*+.^_`|~-]{1,24}",
        Just("content-type".to_owned()),
        Just("content-encoding".to_owned()),
        Just("x-hub-signature-256".to_owned()),
        Just("x-atlassian-webhook-identifier".to_owned()),
        Just("webhook-id".to_owned()),
        Just("transfer-encoding".to_owned()),
    ];
    prop::collection::vec((name, value), 0..8)
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("/integration/webhook".to_owned()),
        "/integration/[a-zA-Z0-9%._~/-]{0,40}",
        "/[a-z]{0,8}",
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_request_gets_a_well_formed_answer(
        body in body(),
        headers in headers(),
        path in path(),
        post in prop::bool::weighted(0.9),
    ) {
        let (rt, app) = app();
        let http = reqwest::Client::new();
        let url = format!("{}{path}", app.url());
        let mut request = if post { http.post(&url) } else { http.get(&url) }.body(body);
        for (name, value) in &headers {
            if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_bytes(value)) {
                request = request.header(n, v);
            }
        }
        let answered = rt.block_on(async {
            let response = request.send().await?;
            let status = response.status().as_u16();
            let text = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, text))
        });
        // Some header sets are refused by the client itself (e.g. a bad transfer-encoding);
        // what reaches the server must be answered.
        let (status, text) = match answered {
            Ok(a) => a,
            Err(e) if e.is_builder() => return Ok(()),
            Err(e) => return Err(TestCaseError::fail(format!("no answer: {e:?}"))),
        };
        prop_assert!(
            [200, 400, 401, 404, 405, 408, 409, 411, 413, 415, 431, 501, 503].contains(&status),
            "status {}", status
        );
        // A request HTTP itself cannot parse (a bad `transfer-encoding`, say) is answered by
        // the protocol layer before any handler: a bare 4xx/5xx. Everything else says why in JSON.
        if text.is_empty() {
            prop_assert!([400, 431, 501].contains(&status), "empty {} answer", status);
        } else {
            let json: Value = serde_json::from_slice(&text)
                .map_err(|e| TestCaseError::fail(format!("{status}: not JSON ({e}): {text:?}")))?;
            prop_assert!(json["status"].is_string(), "{}", json);
        }
        let live = rt.block_on(async { reqwest::get(format!("{}/health/live", app.url())).await.map(|r| r.status().as_u16()) });
        prop_assert_eq!(live.ok(), Some(200));
    }
}
