//! Port misbehaving, end to end: the integration talks to the built-in Port through a loopback
//! proxy that answers some bulk upserts with 429 (`Retry-After`), a burst of 503s, a 401 for a
//! valid token, and a 413 for a multi-entity request, while the built-in Port itself answers an
//! entity with an invalid identifier in its 207-style errors. Every other event's entity must end
//! up in Port exactly as its last event says.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use ocean_runtime::prelude::*;
use ocean_runtime::testing::{TestApp, eventually, local_port_token};
use ocean_runtime::{LocalPort, LocalPortOptions};

ocean_runtime::kinds!["issue"];

#[webhook_processor(path = "/faults", kinds = ["issue"], group = ".issue.key")]
async fn issues(event: &WebhookEvent) -> Result<RawResults, ProcessError> {
    Ok(RawResults::updated([event.value_at("/issue")?.clone()]))
}

const MAPPING: &str = r#"
resources:
  - kind: issue
    selector: {query: 'true'}
    port:
      entity:
        mappings:
          identifier: .key
          title: .summary
          blueprint: '"issue"'
          properties:
            version: .version
"#;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    TooManyRequests,
    Unavailable,
    Unauthorized,
    /// 413, given to the first request carrying more than one entity.
    TooLarge,
}

#[derive(Default)]
struct Log {
    script: VecDeque<Fault>,
    /// A 413 is still to be given to the first request with more than one entity.
    too_large: bool,
    /// Faults given, when, and to a request of which entities.
    injected: Vec<(Fault, Instant, Vec<String>)>,
    /// Every bulk upsert that reached the built-in Port: its entities, when.
    passed: Vec<(Vec<String>, Instant)>,
    tokens: usize,
}

struct Proxy {
    upstream: String,
    http: reqwest::Client,
    log: Mutex<Log>,
}

async fn forward(State(proxy): State<Arc<Proxy>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body: Bytes = axum::body::to_bytes(body, 16 * 1024 * 1024).await.unwrap();
    let path = parts.uri.path_and_query().unwrap().as_str().to_owned();
    if path.starts_with("/v1/auth/access_token") {
        proxy.log.lock().unwrap().tokens += 1;
    }
    if path.contains("/entities/bulk") {
        let ids: Vec<String> = serde_json::from_slice::<Value>(&body).unwrap()["entities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["identifier"].as_str().unwrap_or_default().to_owned())
            .collect();
        let entities = ids.len();
        let fault = {
            let mut log = proxy.log.lock().unwrap();
            let fault = if log.too_large && entities > 1 {
                log.too_large = false;
                Some(Fault::TooLarge)
            } else {
                log.script.pop_front()
            };
            if let Some(f) = fault {
                log.injected.push((f, Instant::now(), ids));
            } else {
                log.passed.push((ids, Instant::now()));
            }
            fault
        };
        let mut headers = HeaderMap::new();
        match fault {
            Some(Fault::TooManyRequests) => {
                headers.insert("retry-after", "1".parse().unwrap());
                return (StatusCode::TOO_MANY_REQUESTS, headers, "slow down").into_response();
            }
            Some(Fault::Unavailable) => {
                return (StatusCode::SERVICE_UNAVAILABLE, "unavailable").into_response();
            }
            Some(Fault::Unauthorized) => {
                return (StatusCode::UNAUTHORIZED, "token expired").into_response();
            }
            Some(Fault::TooLarge) => {
                return (StatusCode::PAYLOAD_TOO_LARGE, "too large").into_response();
            }
            None => {}
        }
    }
    ocean_tests::pass_through(&proxy.http, &proxy.upstream, &parts, body).await
}

fn issue(key: &str, version: u32) -> Value {
    json!({"issue": {"key": key, "summary": format!("{key} v{version}"), "version": version}})
}

#[tokio::test]
async fn nothing_is_lost_when_port_throttles_fails_expires_tokens_and_refuses() {
    let dir = std::env::temp_dir().join(format!("ocean-faults-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let port = LocalPort::start(LocalPortOptions {
        data_dir: dir.join("port"),
        addr: "127.0.0.1:0".parse().unwrap(),
        credentials: None,
    })
    .await
    .unwrap();
    let proxy = Arc::new(Proxy {
        upstream: port.base_url(),
        http: reqwest::Client::new(),
        log: Mutex::new(Log {
            script: VecDeque::from([
                Fault::TooManyRequests,
                Fault::Unavailable,
                Fault::Unavailable,
                Fault::Unauthorized,
            ]),
            too_large: true,
            ..Log::default()
        }),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_url = format!("http://{}", listener.local_addr().unwrap());
    let router = axum::Router::new()
        .fallback(forward)
        .with_state(Arc::clone(&proxy));
    tokio::spawn(async move { axum::serve(listener, router).await });

    let mapping_file = dir.join("port-app-config.yml");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(&mapping_file, MAPPING).unwrap();
    let app = TestApp::builder()
        .paths(&["/faults"])
        .env("OCEAN__PORT__BASE_URL", &proxy_url)
        .env("OCEAN__PORT__CLIENT_ID", "id")
        .env("OCEAN__PORT__CLIENT_SECRET", "secret")
        .env(
            "OCEAN__PORT_APP_CONFIG_FILE",
            mapping_file.display().to_string(),
        )
        .start()
        .await
        .unwrap();

    // 12 issues, three versions each, sent as fast as they are accepted; one more whose
    // identifier Port refuses.
    let keys: Vec<String> = (0..12).map(|n| format!("K-{n}")).collect();
    for version in 1..=3 {
        for key in &keys {
            let (status, body) = app.post("/faults", &issue(key, version)).await.unwrap();
            assert_eq!(status, 200, "{body}");
        }
    }
    let (status, _) = app.post("/faults", &issue("not valid!", 1)).await.unwrap();
    assert_eq!(status, 200);

    let client = reqwest::Client::new();
    let token = local_port_token(&client, &port.base_url()).await.unwrap();
    let entities = eventually(
        "every issue at its last version",
        Duration::from_secs(60),
        || {
            let (client, token, url) = (client.clone(), token.clone(), port.base_url());
            let expected = keys.len();
            async move {
                let answer: Value = client
                    .get(format!("{url}/v1/blueprints/issue/entities"))
                    .bearer_auth(token)
                    .send()
                    .await?
                    .json()
                    .await?;
                let all = answer["entities"].as_array().cloned().unwrap_or_default();
                let done =
                    all.len() == expected && all.iter().all(|e| e["properties"]["version"] == 3);
                Ok::<_, reqwest::Error>(done.then_some(all))
            }
        },
    )
    .await;
    for key in &keys {
        let e = entities.iter().find(|e| e["identifier"] == *key).unwrap();
        assert_eq!(e["title"], format!("{key} v3"));
    }
    eventually("the queue to empty", Duration::from_secs(30), || async {
        Ok::<_, ()>((app.queue_depth().await == 0).then_some(()))
    })
    .await;

    check(&proxy.log.lock().unwrap());
    // The entity Port refused is kept, with Port's answer, in its event's dead letter.
    let letters: Value = client
        .get(format!("{}/admin/dead-letters", app.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let letters = letters["deadLetters"].as_array().unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["refused"][0]["identifier"], "not valid!");
    assert_eq!(letters[0]["refused"][0]["status"], 422);
    app.shutdown().await;
    port.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// What the proxy saw: every fault given, and each answered as Port expects.
fn check(log: &Log) {
    let mut injected: Vec<Fault> = log.injected.iter().map(|(f, _, _)| *f).collect();
    injected.sort_by_key(|f| *f as u8);
    assert_eq!(
        injected,
        [
            Fault::TooManyRequests,
            Fault::Unavailable,
            Fault::Unavailable,
            Fault::Unauthorized,
            Fault::TooLarge
        ],
        "every fault was injected"
    );
    let given = |fault: Fault| {
        log.injected
            .iter()
            .find(|(f, _, _)| *f == fault)
            .map(|(_, at, ids)| (*at, ids.clone()))
            .unwrap()
    };
    // The same request, sent again after `at`.
    let resent = |ids: &Vec<String>, at: Instant| {
        log.injected
            .iter()
            .map(|(_, t, i)| (i, *t))
            .chain(log.passed.iter().map(|(i, t)| (i, *t)))
            .filter(|(i, t)| *i == ids && *t > at)
            .map(|(_, t)| t)
            .min()
    };
    // Retry-After: 1 was honoured: the throttled request came back a second later.
    let (throttled_at, throttled) = given(Fault::TooManyRequests);
    let again = resent(&throttled, throttled_at).expect("the throttled request is sent again");
    assert!(
        again.duration_since(throttled_at) >= Duration::from_millis(950),
        "the request answered 429 with Retry-After: 1 came back {:?} later",
        again.duration_since(throttled_at)
    );
    // The 401 made the client fetch a new token (the first one, plus the refresh).
    assert!(log.tokens >= 2, "{} token requests", log.tokens);
    // The 413 was answered by splitting: the next request carries fewer entities.
    let (refused_at, refused) = given(Fault::TooLarge);
    let halves: Vec<&Vec<String>> = log
        .passed
        .iter()
        .filter(|(ids, at)| {
            *at > refused_at
                && ids.len() < refused.len()
                && ids.iter().all(|id| refused.contains(id))
        })
        .map(|(ids, _)| ids)
        .collect();
    assert!(
        refused
            .iter()
            .all(|id| halves.iter().any(|h| h.contains(id))),
        "after a 413 for {refused:?}, smaller requests carried {halves:?}"
    );
}
