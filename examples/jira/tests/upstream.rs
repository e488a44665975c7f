//! The example's binary against a slow, flaky demo Jira (20 ms per `GET`, one in five answered 429
//! with `Retry-After: 1`): nothing is lost and the retries show in the metrics; a burst of updates
//! to a few issues is coalesced (`latest_only`), so Jira is asked far less often than once per
//! event, and every entity ends with its issue's last version.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{issue_created, issues, token};
use ocean_runtime::testing::{eventually, metric, metrics_of, url_after};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

fn upstream_requests(text: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with("ocean_upstream_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flaky_upstream_loses_nothing_and_a_burst_is_coalesced() {
    let data = std::env::temp_dir().join(format!("ocean-jira-flaky-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let mut binary = common::start_with(
        &data,
        &[
            ("OCEAN__INTEGRATION__CONFIG__DEMO_LATENCY_MS", "20"),
            ("OCEAN__INTEGRATION__CONFIG__DEMO_ERROR_RATE", "0.2"),
        ],
    );
    let demo = binary.line_with("demo Jira at ");
    let jira = url_after(&demo, "demo Jira at ").unwrap();
    let port = binary.port_url();
    let ingress = binary.ingress_url();
    let client = reqwest::Client::new();
    let put = |key: String, summary: String| {
        let (client, jira) = (client.clone(), jira.clone());
        async move {
            let record = json!({"key": key, "fields": {"summary": summary, "status": {"name": "To Do"},
                                "issuetype": {"name": "Bug"}, "project": {"key": "PROJ"}}});
            let r = client
                .put(format!("{jira}/rest/api/2/issue/{key}"))
                .json(&record)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 204);
        }
    };
    let post = |key: String| {
        let (client, ingress) = (client.clone(), ingress.clone());
        async move {
            let r = client
                .post(format!("{ingress}/integration/webhook"))
                .json(&issue_created(&key, "the webhook's stale copy"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
    };

    // 40 issues, one event each, through a Jira that refuses one GET in five.
    for n in 0..40 {
        put(format!("FL-{n}"), format!("flaky {n}")).await;
    }
    for n in 0..40 {
        post(format!("FL-{n}")).await;
    }
    let token = token(&client, &port).await;
    eventually("all 40 issues with Jira's copy", WAIT, || async {
        let all = issues(&client, &port, &token).await;
        let done = (0..40).all(|n| {
            all.get(&format!("FL-{n}"))
                .is_some_and(|t| *t == format!("flaky {n}"))
        });
        Ok::<_, ()>(done.then_some(()))
    })
    .await;
    let text = metrics_of(&client, &ingress).await.unwrap();
    let refused = metric(
        &text,
        r#"ocean_upstream_requests_total{host="127.0.0.1",status="429"}"#,
    );
    assert!(refused >= 5.0, "{refused} 429s counted:\n{text}");
    assert_eq!(metric(&text, "ocean_dead_letters_total"), 0.0);
    let before_burst = upstream_requests(&text);

    // A burst: 5 issues, 40 updates each, posted at once; Jira holds the last version.
    for n in 0..5 {
        put(format!("BU-{n}"), format!("burst {n} final")).await;
    }
    let burst: Vec<_> = (0..200)
        .map(|i| tokio::spawn(post(format!("BU-{}", i % 5))))
        .collect();
    for b in burst {
        b.await.unwrap();
    }
    eventually("every burst issue at its last version", WAIT, || async {
        let all = issues(&client, &port, &token).await;
        let done = (0..5).all(|n| {
            all.get(&format!("BU-{n}"))
                .is_some_and(|t| *t == format!("burst {n} final"))
        });
        Ok::<_, ()>(done.then_some(()))
    })
    .await;
    let text = eventually("the burst settled", WAIT, || async {
        let text = metrics_of(&client, &ingress).await?;
        let settled = metric(&text, "ocean_queue_depth") == 0.0;
        Ok::<_, ocean_runtime::testing::TestError>(settled.then_some(text))
    })
    .await;
    let fetched = upstream_requests(&text) - before_burst;
    let superseded = metric(&text, "ocean_events_superseded_total");
    assert!(superseded > 0.0, "no event of the burst was coalesced");
    assert!(
        fetched < 100.0,
        "{fetched} upstream requests for 200 events of 5 issues ({superseded} superseded)"
    );
    drop(binary);
    let _ = std::fs::remove_dir_all(&data);
}
