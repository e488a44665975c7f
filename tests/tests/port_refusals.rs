//! Port refusing for good, end to end: entities refused one by one or with their whole request
//! become one dead letter per event (listing them with Port's status and answer) while the rest is
//! written, and a replay after the fix writes them; refused credentials pause the workers, make
//! the app unready and keep the events. Dead letters are shown with their secret headers redacted
//! and replayed byte-exact.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ocean_runtime::prelude::*;
use ocean_runtime::testing::{TestApp, eventually};
use ocean_runtime::{LocalPort, LocalPortOptions};

ocean_runtime::kinds!["item"];

/// The payload's `items`, each with the delivery's `Authorization` header (which shows whether
/// a replayed event still carries it byte for byte).
#[webhook_processor(path = "/refusals", kinds = ["item"])]
async fn items(event: &WebhookEvent) -> Result<RawResults, ProcessError> {
    let auth = event.header("authorization").unwrap_or_default().to_owned();
    let items = event
        .value_at("/items")?
        .as_array()
        .cloned()
        .unwrap_or_default();
    Ok(RawResults::updated(items.into_iter().map(|mut item| {
        item["auth"] = Value::String(auth.clone());
        item
    })))
}

const MAPPING: &str = r#"
resources:
  - kind: item
    selector: {query: 'true'}
    port:
      entity:
        mappings:
          identifier: .id
          blueprint: .bp
          properties:
            auth: .auth
"#;

const WAIT: Duration = Duration::from_secs(30);

async fn dead_letters(app: &TestApp) -> Vec<Value> {
    let answer: Value = reqwest::get(format!("{}/admin/dead-letters", app.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["deadLetters"].as_array().cloned().unwrap()
}

/// The dead letters once there are `n`.
async fn dead_letters_when(app: &TestApp, n: usize) -> Vec<Value> {
    eventually(&format!("{n} dead letters"), WAIT, || async {
        let all = dead_letters(app).await;
        Ok::<_, ()>((all.len() == n).then_some(all))
    })
    .await
}

async fn replay(app: &TestApp, id: &Value) {
    let answer = reqwest::Client::new()
        .post(format!("{}/admin/dead-letters/{id}/replay", app.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "{:?}", answer.text().await);
}

async fn drained(app: &TestApp) {
    eventually("the queue to empty", WAIT, || async {
        Ok::<_, ()>((app.queue_depth().await == 0).then_some(()))
    })
    .await;
}

fn header<'a>(letter: &'a Value, name: &str) -> &'a str {
    letter["event"]["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|pair| pair[0] == name)
        .and_then(|pair| pair[1].as_str())
        .unwrap()
}

#[tokio::test]
async fn entities_port_refuses_become_one_dead_letter_and_its_replay_after_the_fix_writes_them() {
    let app = TestApp::builder()
        .mapping(MAPPING)
        .paths(&["/refusals"])
        .start()
        .await
        .unwrap();
    // With one blueprint defined, the built-in Port refuses entities of any other (404) and
    // identifiers Port does not allow (422), each on its own in a 207 answer.
    app.create_blueprint(
        &json!({"identifier": "issue", "title": "Issue", "schema": {"properties": {}}}),
    )
    .await
    .unwrap();
    let body = json!({"items": [
        {"id": "ok-1", "bp": "issue"},
        {"id": "g-1", "bp": "ghost"},
        {"id": "bad id!", "bp": "issue"},
    ]});
    let (status, _) = app
        .post_raw(
            "/refusals",
            serde_json::to_vec(&body).unwrap(),
            &[
                ("content-type", "application/json"),
                ("authorization", "Bearer s3cret"),
                ("x-hub-signature-256", "sha256=abc"),
                ("cookie", "session=1"),
                ("x-request-id", "r-1"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(status, 200);

    let letters = dead_letters_when(&app, 1).await;
    let letter = &letters[0];
    let refused = letter["refused"].as_array().unwrap();
    assert_eq!(refused.len(), 2, "{letter}");
    let ghost = refused.iter().find(|r| r["identifier"] == "g-1").unwrap();
    assert_eq!(ghost["blueprint"], "ghost");
    assert_eq!(ghost["operation"], "upsert");
    assert_eq!(ghost["status"], 404);
    assert!(
        ghost["reason"].as_str().unwrap().contains("ghost"),
        "{ghost}"
    );
    let bad = refused
        .iter()
        .find(|r| r["identifier"] == "bad id!")
        .unwrap();
    assert_eq!(bad["status"], 422, "{bad}");
    assert!(
        letter["error"]
            .as_str()
            .unwrap()
            .starts_with("Port refused 2 of the event's entities"),
        "{letter}"
    );
    // The rest of the event was written, and the event left the queue.
    assert!(app.entity("issue", "ok-1").await.unwrap().is_some());
    drained(&app).await;

    // Shown with its secrets redacted, over the list and one by one.
    for shown in [
        letter.clone(),
        reqwest::get(format!("{}/admin/dead-letters/{}", app.url(), letter["id"]))
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()["deadLetter"]
            .clone(),
    ] {
        assert_eq!(header(&shown, "authorization"), "[redacted]");
        assert_eq!(header(&shown, "x-hub-signature-256"), "[redacted]");
        assert_eq!(header(&shown, "cookie"), "[redacted]");
        assert_eq!(header(&shown, "x-request-id"), "r-1");
    }

    // Once the blueprint exists, the replay writes what was refused, with the event's own
    // headers (stored exactly); the identifier Port still refuses is a dead letter again.
    app.create_blueprint(
        &json!({"identifier": "ghost", "title": "Ghost", "schema": {"properties": {}}}),
    )
    .await
    .unwrap();
    replay(&app, &letter["id"]).await;
    let ghost = eventually("g-1 written by the replay", WAIT, || {
        app.entity("ghost", "g-1")
    })
    .await;
    assert_eq!(ghost["properties"]["auth"], "Bearer s3cret");
    let letters = dead_letters_when(&app, 1).await;
    let refused = letters[0]["refused"].as_array().unwrap();
    assert_eq!(refused.len(), 1, "{}", letters[0]);
    assert_eq!(refused[0]["identifier"], "bad id!");
    assert_ne!(
        letters[0]["id"], letter["id"],
        "a new letter for the replay"
    );
    app.shutdown().await;
}

/// How the proxy in front of the built-in Port answers bulk upserts.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Pass,
    /// 422 with an answer of Port's shape.
    Invalid,
    Forbidden,
    /// 401 to every token, however fresh.
    Unauthorized,
}

struct Proxy {
    upstream: String,
    http: reqwest::Client,
    mode: Mutex<Mode>,
}

async fn forward(State(proxy): State<Arc<Proxy>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body: Bytes = axum::body::to_bytes(body, 16 * 1024 * 1024).await.unwrap();
    let path = parts.uri.path_and_query().unwrap().as_str().to_owned();
    if path.contains("/entities/bulk") {
        let mode = *proxy.mode.lock().unwrap();
        let refusal = match mode {
            Mode::Pass => None,
            Mode::Invalid => Some((
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"ok": false, "error": "invalid_request", "message": "schema says no"}),
            )),
            Mode::Forbidden => Some((
                StatusCode::FORBIDDEN,
                json!({"ok": false, "error": "forbidden", "message": "no write access"}),
            )),
            Mode::Unauthorized => Some((
                StatusCode::UNAUTHORIZED,
                json!({"ok": false, "error": "unauthorized"}),
            )),
        };
        if let Some((status, answer)) = refusal {
            return (status, axum::Json(answer)).into_response();
        }
    }
    ocean_tests::pass_through(&proxy.http, &proxy.upstream, &parts, body).await
}

/// The app, talking to a built-in Port (which has an `issue` blueprint) through the proxy.
async fn behind_proxy(dir: &std::path::Path) -> (TestApp, Arc<Proxy>, LocalPort) {
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
        mode: Mutex::new(Mode::Pass),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_url = format!("http://{}", listener.local_addr().unwrap());
    let router = axum::Router::new()
        .fallback(forward)
        .with_state(Arc::clone(&proxy));
    tokio::spawn(async move { axum::serve(listener, router).await });
    let mapping_file = dir.join("port-app-config.yml");
    std::fs::write(&mapping_file, MAPPING).unwrap();
    let app = TestApp::builder()
        .paths(&["/refusals"])
        .data_dir(dir.join("app"))
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
    (app, proxy, port)
}

fn fresh_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ocean-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn a_request_port_refuses_as_a_whole_is_a_dead_letter_with_its_status_and_answer() {
    let dir = fresh_dir("refused-request");
    let (app, proxy, port) = behind_proxy(&dir).await;
    *proxy.mode.lock().unwrap() = Mode::Invalid;
    let (status, _) = app
        .post(
            "/refusals",
            &json!({"items": [{"id": "i-1", "bp": "issue"}, {"id": "i-2", "bp": "issue"}]}),
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    let letters = dead_letters_when(&app, 1).await;
    let refused = letters[0]["refused"].as_array().unwrap();
    assert_eq!(refused.len(), 2, "{}", letters[0]);
    for r in refused {
        assert_eq!(r["status"], 422, "{r}");
        assert!(
            r["reason"].as_str().unwrap().contains("schema says no"),
            "{r}"
        );
    }
    drained(&app).await;

    *proxy.mode.lock().unwrap() = Mode::Pass;
    replay(&app, &letters[0]["id"]).await;
    for id in ["i-1", "i-2"] {
        eventually(id, WAIT, || app.entity("issue", id)).await;
    }
    assert!(dead_letters(&app).await.is_empty());
    app.shutdown().await;
    port.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

async fn readiness(app: &TestApp) -> (u16, Value) {
    let answer = reqwest::get(format!("{}/health/ready", app.url()))
        .await
        .unwrap();
    (answer.status().as_u16(), answer.json().await.unwrap())
}

#[tokio::test]
async fn refused_credentials_make_the_app_unready_and_keep_the_events_queued() {
    let dir = fresh_dir("refused-credentials");
    let (app, proxy, port) = behind_proxy(&dir).await;
    assert_eq!(readiness(&app).await.0, 200);
    for (mode, said) in [(Mode::Forbidden, "403"), (Mode::Unauthorized, "401")] {
        *proxy.mode.lock().unwrap() = mode;
        let (status, _) = app
            .post(
                "/refusals",
                &json!({"items": [{"id": format!("c-{said}"), "bp": "issue"}]}),
            )
            .await
            .unwrap();
        assert_eq!(status, 200);
        let reason = eventually(&format!("unready after a {said}"), WAIT, || async {
            let (status, body) = readiness(&app).await;
            let reason = body["reason"].as_str().unwrap_or_default().to_owned();
            Ok::<_, ()>((status == 503 && reason.contains(said)).then_some(reason))
        })
        .await;
        assert!(
            reason.contains("OCEAN__PORT__CLIENT_ID")
                && reason.contains("OCEAN__PORT__CLIENT_SECRET"),
            "{reason}"
        );
        assert!(
            dead_letters(&app).await.is_empty(),
            "an operator problem, not the event's"
        );
        assert!(app.queue_depth().await >= 1, "the event stays queued");
    }
    // Once Port takes the credentials again, both events are written and the app is ready.
    *proxy.mode.lock().unwrap() = Mode::Pass;
    for id in ["c-403", "c-401"] {
        eventually(id, WAIT, || app.entity("issue", id)).await;
    }
    eventually("ready again", WAIT, || async {
        Ok::<_, ()>((readiness(&app).await.0 == 200).then_some(()))
    })
    .await;
    assert!(dead_letters(&app).await.is_empty());
    drained(&app).await;
    app.shutdown().await;
    port.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
