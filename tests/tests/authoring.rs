//! The authoring surface at run time: the DESIGN.md §1 example against an upstream on loopback,
//! start-up checks, ingress verifiers, per-group ordering, validate and hooks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query};
use ocean_runtime::prelude::*;
use ocean_runtime::testing::{TestApp, eventually};
use ocean_runtime::verify::github_signature;

const WAIT: Duration = Duration::from_secs(15);

ocean_runtime::kinds!["issue", "thing"];

// ---- The DESIGN.md §1 example, verbatim apart from the path ----

#[derive(Deserialize)]
struct IssueSelector {
    jql: Option<String>,
}

#[derive(Deserialize)]
struct JiraConfig {
    jira_url: String,
}

/// A small Jira client: `GET {jira_url}/rest/api/3/issue/{key}?jql=…`.
struct JiraClient {
    http: reqwest::Client,
    base: String,
}

impl JiraClient {
    async fn from_config(config: Config<JiraConfig>) -> Result<Self, String> {
        if !config.jira_url.starts_with("http://") {
            return Err(format!(
                "jira_url must be an http:// URL, not {:?}",
                config.jira_url
            ));
        }
        Ok(Self {
            http: reqwest::Client::new(),
            base: config.jira_url.trim_end_matches('/').to_owned(),
        })
    }

    async fn issue(&self, key: &str, jql: Option<&str>) -> Result<Option<Value>, ProcessError> {
        let mut request = self
            .http
            .get(format!("{}/rest/api/3/issue/{key}", self.base));
        if let Some(jql) = jql {
            request = request.query(&[("jql", jql)]);
        }
        let response = request.send().await?;
        match response.status().as_u16() {
            404 => Ok(None),
            200 => Ok(Some(response.json().await?)),
            status => Err(ProcessError::from_status(status, "Jira answered")),
        }
    }
}

#[webhook_processor(
    path = "/design",
    kinds = ["issue"],
    matches = r#".webhookEvent | startswith("jira:issue_")"#,
    group = ".issue.key",
)]
async fn issue_events(
    event: &WebhookEvent,
    selector: Selector<IssueSelector>,
    jira: State<JiraClient>,
) -> Result<RawResults, ProcessError> {
    let key = event.str_at("/issue/key")?;
    if event.payload()["webhookEvent"] == "jira:issue_deleted" {
        return Ok(RawResults::deleted([event.payload()["issue"].clone()]));
    }
    Ok(match jira.issue(key, selector.jql.as_deref()).await? {
        Some(issue) => RawResults::updated([issue]),
        None => RawResults::deleted([event.payload()["issue"].clone()]),
    })
}

const DESIGN_MAPPING: &str = r#"
resources:
  - kind: issue
    selector:
      query: 'true'
      jql: 'project = PROJ'
    port:
      entity:
        mappings:
          identifier: .key
          title: .fields.summary
          blueprint: '"jiraIssue"'
          properties:
            status: .fields.status.name
"#;

/// A Jira emulator on loopback: the issues it holds and the `jql` each request carried.
#[derive(Clone, Default)]
struct Upstream {
    issues: Arc<Mutex<HashMap<String, Value>>>,
    jql_seen: Arc<Mutex<Vec<String>>>,
}

impl Upstream {
    async fn start(&self) -> String {
        let state = self.clone();
        let app = axum::Router::new().route(
            "/rest/api/3/issue/{key}",
            axum::routing::get(
                move |Path(key): Path<String>, Query(q): Query<HashMap<String, String>>| {
                    let state = state.clone();
                    async move {
                        if let Some(jql) = q.get("jql") {
                            state.jql_seen.lock().unwrap().push(jql.clone());
                        }
                        match state.issues.lock().unwrap().get(&key) {
                            Some(issue) => axum::Json(issue.clone()).into_response(),
                            None => axum::http::StatusCode::NOT_FOUND.into_response(),
                        }
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }
}

use axum::response::IntoResponse;

fn design_app(jira_url: Option<&str>) -> ocean_runtime::testing::TestAppBuilder {
    let mut b = TestApp::builder()
        .paths(&["/design"])
        .mapping(DESIGN_MAPPING)
        .state_init(ocean_runtime::state_init!(JiraClient::from_config));
    if let Some(url) = jira_url {
        b = b.env("OCEAN__INTEGRATION__CONFIG__JIRA_URL", url);
    }
    b
}

#[tokio::test]
async fn design_example_fetches_the_latest_issue_with_its_typed_selector_and_state() {
    let upstream = Upstream::default();
    upstream.issues.lock().unwrap().insert(
        "PROJ-7".into(),
        json!({"key": "PROJ-7", "fields": {"summary": "Fresh title", "status": {"name": "Done"}}}),
    );
    let url = upstream.start().await;
    let app = design_app(Some(&url)).start().await.unwrap();

    let stale = json!({"webhookEvent": "jira:issue_updated",
                       "issue": {"key": "PROJ-7", "fields": {"summary": "stale"}}});
    let (status, _) = app.post("/design", &stale).await.unwrap();
    assert_eq!(status, 200);
    let entity = eventually("PROJ-7 from upstream", WAIT, || async {
        app.entity("jiraIssue", "PROJ-7").await
    })
    .await;
    assert_eq!(
        entity["title"], "Fresh title",
        "fetched, not the stale payload"
    );
    assert_eq!(entity["properties"]["status"], "Done");
    assert_eq!(
        upstream.jql_seen.lock().unwrap().as_slice(),
        ["project = PROJ"],
        "the selector's jql reached the handler"
    );

    upstream.issues.lock().unwrap().clear();
    app.post("/design", &stale).await.unwrap();
    eventually("PROJ-7 gone once upstream lost it", WAIT, || async {
        app.entity("jiraIssue", "PROJ-7")
            .await
            .map(|e| e.is_none().then_some(()))
    })
    .await;
    app.shutdown().await;
}

#[tokio::test]
async fn start_up_names_what_is_missing() {
    let no_var = design_app(None).start().await.unwrap_err().to_string();
    assert!(
        no_var.starts_with("OCEAN__INTEGRATION__CONFIG__JIRA_URL must be set"),
        "{no_var}"
    );

    let bad_state = design_app(Some("ftp://jira"))
        .start()
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        bad_state,
        "the integration's state could not be built: jira_url must be an http:// URL, not \"ftp://jira\""
    );

    let no_state = TestApp::builder()
        .paths(&["/design"])
        .mapping(DESIGN_MAPPING)
        .env("OCEAN__INTEGRATION__CONFIG__JIRA_URL", "http://127.0.0.1:9")
        .start()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        no_state.starts_with("processor `issue_events` takes `State<authoring::JiraClient>`"),
        "{no_state}"
    );
    assert!(
        no_state.contains("main!(state = path::to_fn)"),
        "{no_state}"
    );
}

#[tokio::test]
async fn a_mapping_whose_selector_does_not_fit_the_handler_is_not_put_in_force() {
    let app = design_app(Some("http://127.0.0.1:9"))
        .mapping(DESIGN_MAPPING.replace("'project = PROJ'", "42"))
        .start()
        .await
        .unwrap();
    let ready = reqwest::get(format!("{}/health/ready", app.url()))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503, "no mapping in force");
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["reason"], "no mapping is loaded yet");
    app.shutdown().await;
}

// ---- Ingress verifiers ----

static SIGNED: Mutex<Vec<u64>> = Mutex::new(Vec::new());

#[webhook_processor(path = "/signed", kinds = ["thing"], authenticate = github(secret = "gh_secret"))]
async fn signed(event: &WebhookEvent) -> Result<RawResults, ProcessError> {
    SIGNED
        .lock()
        .unwrap()
        .push(event.payload()["n"].as_u64().unwrap_or(0));
    Ok(RawResults::none())
}

/// An app serving only `path`'s processors, with a one-resource mapping of kind `thing`.
fn on(path: &str) -> ocean_runtime::testing::TestAppBuilder {
    TestApp::builder().paths(&[path]).mapping(THING_MAPPING)
}

const THING_MAPPING: &str = r#"
resources:
  - kind: thing
    selector:
      query: 'true'
    port:
      entity:
        mappings:
          identifier: .id
          blueprint: '"thing"'
"#;

#[tokio::test]
async fn github_signatures_are_checked_at_ingress_with_rotated_secrets() {
    let app = on("/signed")
        .env(
            "OCEAN__INTEGRATION__CONFIG__GH_SECRET",
            "new-secret, old-secret",
        )
        .start()
        .await
        .unwrap();
    let send = |n: u64, secret: Option<&'static str>| {
        let app = &app;
        async move {
            let body = format!(r#"{{"n":{n}}}"#).into_bytes();
            let sig = secret.map(|s| github_signature(s, &body));
            let mut headers = vec![("content-type", "application/json")];
            if let Some(sig) = &sig {
                headers.push(("x-hub-signature-256", sig.as_str()));
            }
            app.post_raw("/signed", body.clone(), &headers)
                .await
                .unwrap()
        }
    };
    assert_eq!(send(1, Some("new-secret")).await.0, 200);
    assert_eq!(send(2, Some("old-secret")).await.0, 200, "rotated secret");
    let (status, body) = send(3, Some("guessed")).await;
    assert_eq!(status, 401);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("does not match the body"),
        "{body}"
    );
    let (status, body) = send(4, None).await;
    assert_eq!(status, 401);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("missing `x-hub-signature-256`"),
        "{body}"
    );
    assert_eq!(send(5, Some("new-secret")).await.0, 200);
    eventually("the three authentic deliveries", WAIT, || async {
        Ok::<_, ()>((SIGNED.lock().unwrap().len() >= 3).then_some(()))
    })
    .await;
    let mut seen = SIGNED.lock().unwrap().clone();
    seen.sort_unstable();
    assert_eq!(seen, [1, 2, 5], "refused deliveries were never processed");
    app.shutdown().await;

    let missing = on("/signed").start().await.unwrap_err().to_string();
    assert!(
        missing.starts_with("OCEAN__INTEGRATION__CONFIG__GH_SECRET must be set because processor `signed` authenticates with `github`"),
        "{missing}"
    );
}

// ---- Per-group ordering ----

static ORDER: Mutex<Vec<(String, u64)>> = Mutex::new(Vec::new());
static IN_FLIGHT: Mutex<Vec<String>> = Mutex::new(Vec::new());
static MAX_SAME_KEY: AtomicUsize = AtomicUsize::new(0);
static MAX_ALL: AtomicUsize = AtomicUsize::new(0);

#[webhook_processor(path = "/ordered", kinds = ["thing"], group = ".key")]
async fn ordered(event: &WebhookEvent) -> Result<RawResults, ProcessError> {
    let key = event.str_at("/key")?.to_owned();
    let seq = event.payload()["seq"].as_u64().unwrap_or(0);
    {
        let mut in_flight = IN_FLIGHT.lock().unwrap();
        in_flight.push(key.clone());
        let same = in_flight.iter().filter(|k| **k == key).count();
        MAX_SAME_KEY.fetch_max(same, Ordering::SeqCst);
        MAX_ALL.fetch_max(in_flight.len(), Ordering::SeqCst);
    }
    // Work that takes a while, so that events of one group would overlap if they could.
    tokio::time::sleep(Duration::from_millis(5)).await;
    ORDER.lock().unwrap().push((key.clone(), seq));
    let mut in_flight = IN_FLIGHT.lock().unwrap();
    if let Some(i) = in_flight.iter().position(|k| *k == key) {
        in_flight.remove(i);
    }
    Ok(RawResults::none())
}

#[tokio::test]
async fn events_of_one_group_run_one_at_a_time_in_arrival_order() {
    let app = on("/ordered")
        .env("OCEAN__EVENT_WORKERS_COUNT", "8")
        .start()
        .await
        .unwrap();
    let keys = ["A", "B", "C"];
    for seq in 0..12u64 {
        for key in keys {
            let (status, _) = app
                .post("/ordered", &json!({"key": key, "seq": seq}))
                .await
                .unwrap();
            assert_eq!(status, 200);
        }
    }
    eventually("all 36 events", WAIT, || async {
        Ok::<_, ()>((ORDER.lock().unwrap().len() == 36).then_some(()))
    })
    .await;
    let order = ORDER.lock().unwrap().clone();
    for key in keys {
        let seqs: Vec<u64> = order
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, s)| *s)
            .collect();
        assert_eq!(
            seqs,
            (0..12).collect::<Vec<_>>(),
            "group {key} in arrival order"
        );
    }
    assert_eq!(
        MAX_SAME_KEY.load(Ordering::SeqCst),
        1,
        "never two of one group at once"
    );
    assert!(
        MAX_ALL.load(Ordering::SeqCst) > 1,
        "different groups run in parallel"
    );
    app.shutdown().await;
}

// ---- validate, retry options and hooks ----

static HOOKS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn log(entry: String) {
    HOOKS.lock().unwrap().push(entry);
}

mod hooks {
    use super::*;

    pub(super) async fn before(job: &JobContext<'_>) {
        log(format!("before {}", job.event().payload()["n"]));
    }
    pub(super) async fn after(job: &JobContext<'_>, results: &RawResults) {
        log(format!(
            "after {} attempt {} updated {}",
            job.event().payload()["n"],
            job.attempt(),
            results.updated.len()
        ));
    }
    pub(super) async fn on_error(job: &JobContext<'_>, error: &ProcessError) {
        log(format!(
            "error {} attempt {}: {}",
            job.event().payload()["n"],
            job.attempt(),
            error.message()
        ));
    }
    pub(super) fn wanted(event: &WebhookEvent) -> bool {
        event.payload()["skip"] != true
    }
}

#[webhook_processor(
    path = "/hooks",
    kinds = ["thing"],
    validate = ".n != null",
    retry(max = 2, initial = "10ms", max_delay = "20ms"),
    should_process = hooks::wanted,
    before = hooks::before,
    after = hooks::after,
    on_error = hooks::on_error,
)]
async fn hooked(job: &JobContext<'_>, event: &WebhookEvent) -> Result<RawResults, ProcessError> {
    if event.payload()["n"] == 1 && job.attempt() == 1 {
        return Err(ProcessError::retryable("upstream hiccup"));
    }
    Ok(RawResults::none())
}

#[tokio::test]
async fn validate_retry_and_hooks_follow_the_attribute() {
    let app = on("/hooks")
        .env("OCEAN__EVENT_WORKERS_COUNT", "1")
        .start()
        .await
        .unwrap();
    for body in [
        json!({"n": 1, "id": "a"}),
        json!({"id": "no-n"}),
        json!({"n": 2, "skip": true, "id": "b"}),
        json!({"n": 3, "id": "c"}),
    ] {
        assert_eq!(app.post("/hooks", &body).await.unwrap().0, 200);
    }
    eventually("the last event's after hook", WAIT, || async {
        Ok::<_, ()>(
            HOOKS
                .lock()
                .unwrap()
                .iter()
                .any(|e| e.starts_with("after 3"))
                .then_some(()),
        )
    })
    .await;
    assert_eq!(
        HOOKS.lock().unwrap().as_slice(),
        [
            "before 1",
            "error 1 attempt 1: upstream hiccup",
            "after 1 attempt 2 updated 0",
            "error null attempt 1: the payload fails `validate`: .n != null",
            "before 3",
            "after 3 attempt 1 updated 0",
        ]
    );
    app.shutdown().await;
}

// ---- Dead letters ----

static DLQ_FIXED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[webhook_processor(path = "/dlq", kinds = ["thing"], retry(max = 1, initial = "10ms"))]
async fn fragile(event: &WebhookEvent) -> Result<RawResults, ProcessError> {
    if !DLQ_FIXED.load(Ordering::SeqCst) {
        return Err(ProcessError::retryable("upstream keeps failing"));
    }
    Ok(RawResults::updated([event.payload().clone()]))
}

#[tokio::test]
async fn failed_jobs_become_dead_letters_that_can_be_replayed_and_purged() {
    let app = on("/dlq")
        .env("OCEAN__ADMIN__TOKEN", "admin-secret")
        .start()
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let admin = |method: reqwest::Method, path: &str| {
        http.request(method, format!("{}/admin/dead-letters{path}", app.url()))
            .bearer_auth("admin-secret")
    };
    let unauthorized = http
        .get(format!("{}/admin/dead-letters", app.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);

    assert_eq!(
        app.post("/dlq", &json!({"id": "t-1"})).await.unwrap().0,
        200
    );
    let letters = eventually("a dead letter", WAIT, || async {
        let body: Value = admin(reqwest::Method::GET, "").send().await?.json().await?;
        let letters = body["deadLetters"].as_array().cloned().unwrap_or_default();
        Ok::<_, reqwest::Error>((!letters.is_empty()).then_some(letters))
    })
    .await;
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter["processor"], "fragile");
    assert_eq!(letter["attempts"], 2, "first call and one retry");
    assert_eq!(letter["error"], "upstream keeps failing");
    assert_eq!(letter["kind"], "thing");
    assert_eq!(app.queue_depth().await, 0, "the event was acked");
    assert_eq!(app.entity("thing", "t-1").await.unwrap(), None);

    DLQ_FIXED.store(true, Ordering::SeqCst);
    let id = letter["id"].as_u64().unwrap();
    let replay = admin(reqwest::Method::POST, &format!("/{id}/replay"))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 200);
    eventually("t-1 after the replay", WAIT, || async {
        app.entity("thing", "t-1").await
    })
    .await;
    let body: Value = admin(reqwest::Method::GET, "")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["deadLetters"], json!([]));
    let missing = admin(reqwest::Method::POST, &format!("/{id}/replay"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    DLQ_FIXED.store(false, Ordering::SeqCst);
    for id in ["t-2", "t-3"] {
        app.post("/dlq", &json!({"id": id})).await.unwrap();
    }
    eventually("two dead letters", WAIT, || async {
        let body: Value = admin(reqwest::Method::GET, "").send().await?.json().await?;
        Ok::<_, reqwest::Error>(
            (body["deadLetters"].as_array().map_or(0, Vec::len) == 2).then_some(()),
        )
    })
    .await;
    let purged: Value = admin(reqwest::Method::DELETE, "")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(purged["purged"], 2);
    app.shutdown().await;
}

#[webhook_processor(path = "/panics", kinds = ["thing"])]
async fn panicky(event: &WebhookEvent) -> Result<RawResults, ProcessError> {
    if event.payload()["panic"] == true {
        panic!("handler bug on {}", event.payload()["id"]);
    }
    Ok(RawResults::updated([event.payload().clone()]))
}

#[tokio::test]
async fn a_panicking_handler_becomes_a_dead_letter_and_its_worker_goes_on() {
    let app = on("/panics")
        .env("OCEAN__EVENT_WORKERS_COUNT", "1")
        .env("OCEAN__ADMIN__TOKEN", "admin-secret")
        .start()
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let posted = app
        .post("/panics", &json!({"id": "p-1", "panic": true}))
        .await
        .unwrap();
    assert_eq!(posted.0, 200);
    app.post("/panics", &json!({"id": "p-2"})).await.unwrap();
    // The only worker survived the panic: the next event is applied.
    eventually("p-2 applied by the same worker", WAIT, || async {
        app.entity("thing", "p-2").await
    })
    .await;
    let body: Value = http
        .get(format!("{}/admin/dead-letters", app.url()))
        .bearer_auth("admin-secret")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let letters = body["deadLetters"].as_array().cloned().unwrap_or_default();
    assert_eq!(letters.len(), 1, "{body}");
    assert_eq!(letters[0]["processor"], "panicky");
    assert_eq!(
        letters[0]["error"],
        "processor panicked: handler bug on \"p-1\""
    );
    // Both settled (p-2's ack follows its entity by a moment).
    eventually("an empty queue", WAIT, || async {
        Ok::<_, ()>((app.queue_depth().await == 0).then_some(()))
    })
    .await;
    app.shutdown().await;
}

// ---- Delivery-id dedup ----

static DEDUP_SEEN: Mutex<Vec<u64>> = Mutex::new(Vec::new());

#[webhook_processor(path = "/dedup", kinds = ["thing"])]
async fn dedup(event: &WebhookEvent) -> Result<RawResults, ProcessError> {
    DEDUP_SEEN
        .lock()
        .unwrap()
        .push(event.payload()["n"].as_u64().unwrap_or(0));
    Ok(RawResults::none())
}

#[tokio::test]
async fn a_repeated_delivery_id_is_answered_200_and_processed_once() {
    let app = on("/dedup")
        .env("OCEAN__INGRESS__DEDUP_HEADERS", "X-Request-Id")
        .start()
        .await
        .unwrap();
    let post = |n: u64, header: &'static str, delivery: &'static str| {
        let app = &app;
        async move {
            let body = format!(r#"{{"n":{n}}}"#).into_bytes();
            app.post_raw(
                "/dedup",
                body,
                &[("content-type", "application/json"), (header, delivery)],
            )
            .await
            .unwrap()
        }
    };
    let (s1, first) = post(1, "X-GitHub-Delivery", "72d3162e").await;
    let (s2, again) = post(2, "X-GitHub-Delivery", "72d3162e").await;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["id"], first["id"], "the first delivery's event id");
    let (_, other) = post(3, "webhook-id", "msg_1").await;
    assert!(other.get("duplicate").is_none());
    let (_, named) = post(4, "X-Request-Id", "r-1").await;
    assert!(named.get("duplicate").is_none());
    let (_, named_again) = post(5, "X-Request-Id", "r-1").await;
    assert_eq!(named_again["duplicate"], true, "a header the author names");
    post(6, "X-GitHub-Delivery", "other").await;
    eventually("the distinct deliveries", WAIT, || async {
        Ok::<_, ()>((DEDUP_SEEN.lock().unwrap().len() >= 4).then_some(()))
    })
    .await;
    let mut seen = DEDUP_SEEN.lock().unwrap().clone();
    seen.sort_unstable();
    assert_eq!(seen, [1, 3, 4, 6]);
    app.shutdown().await;
}

// ---- Fetch-latest processors ----

static LATEST_SEEN: Mutex<Vec<u64>> = Mutex::new(Vec::new());

fn gate() -> &'static tokio::sync::Semaphore {
    static GATE: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    GATE.get_or_init(|| tokio::sync::Semaphore::new(0))
}

#[webhook_processor(path = "/latest", kinds = ["thing"], group = ".key", latest_only = true)]
async fn latest(event: &WebhookEvent) -> Result<RawResults, ProcessError> {
    let n = event.payload()["n"].as_u64().unwrap_or(0);
    LATEST_SEEN.lock().unwrap().push(n);
    if n == 1 {
        // Hold the group busy until the test has queued more events behind this one.
        let _permit = gate().acquire().await.map_err(|e| e.to_string())?;
    }
    Ok(RawResults::none())
}

#[tokio::test]
async fn of_several_waiting_events_of_a_group_only_the_latest_is_processed() {
    let app = on("/latest").start().await.unwrap();
    let seen = || LATEST_SEEN.lock().unwrap().clone();
    app.post("/latest", &json!({"key": "K", "n": 1}))
        .await
        .unwrap();
    eventually("event 1 in flight", WAIT, || async {
        Ok::<_, ()>(seen().contains(&1).then_some(()))
    })
    .await;
    for n in 2..=4 {
        app.post("/latest", &json!({"key": "K", "n": n}))
            .await
            .unwrap();
    }
    app.post("/latest", &json!({"key": "M", "n": 5}))
        .await
        .unwrap();
    eventually("another group meanwhile", WAIT, || async {
        Ok::<_, ()>(seen().contains(&5).then_some(()))
    })
    .await;
    gate().add_permits(1);
    eventually("the latest of group K", WAIT, || async {
        Ok::<_, ()>(seen().contains(&4).then_some(()))
    })
    .await;
    eventually("the queue to empty", WAIT, || async {
        Ok::<_, ()>((app.queue_depth().await == 0).then_some(()))
    })
    .await;
    assert_eq!(seen(), [1, 5, 4], "2 and 3 were superseded by 4");
    let metrics = app.metrics().await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l == "ocean_events_superseded_total 2"),
        "{metrics}"
    );
    app.shutdown().await;
}

// ---- Truthful ingress: a full queue and a stale Standard Webhooks signature store nothing ----

fn full_gate() -> &'static tokio::sync::Semaphore {
    static GATE: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    GATE.get_or_init(|| tokio::sync::Semaphore::new(0))
}

static FULL_SEEN: Mutex<Vec<u64>> = Mutex::new(Vec::new());

#[webhook_processor(path = "/full", kinds = ["thing"])]
async fn full(event: &WebhookEvent) -> Result<RawResults, ProcessError> {
    let n = event.payload()["n"].as_u64().unwrap_or(0);
    FULL_SEEN.lock().unwrap().push(n);
    let _permit = full_gate().acquire().await.map_err(|e| e.to_string())?;
    Ok(RawResults::none())
}

#[tokio::test]
async fn a_full_queue_answers_503_with_retry_after_and_keeps_nothing() {
    let app = on("/full")
        .env("OCEAN__QUEUE__CAPACITY", "2")
        .env("OCEAN__EVENT_WORKERS_COUNT", "1")
        .start()
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let post = |n: u64| {
        http.post(format!("{}/integration/full", app.url()))
            .json(&json!({"n": n}))
            .send()
    };
    assert_eq!(post(1).await.unwrap().status(), 200);
    eventually("event 1 in flight", WAIT, || async {
        Ok::<_, ()>(FULL_SEEN.lock().unwrap().contains(&1).then_some(()))
    })
    .await;
    assert_eq!(post(2).await.unwrap().status(), 200);
    let refused = post(3).await.unwrap();
    assert_eq!(refused.status(), 503);
    assert_eq!(
        refused
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("1")
    );
    let body: Value = refused.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("full"), "{body}");
    assert_eq!(
        app.queue_depth().await,
        2,
        "the refused event was not stored"
    );
    full_gate().add_permits(10);
    eventually("the two accepted events", WAIT, || async {
        Ok::<_, ()>((app.queue_depth().await == 0).then_some(()))
    })
    .await;
    assert_eq!(FULL_SEEN.lock().unwrap().as_slice(), [1, 2]);
    app.shutdown().await;
}

static STANDARD_SEEN: AtomicUsize = AtomicUsize::new(0);

#[webhook_processor(
    path = "/standard",
    kinds = ["thing"],
    authenticate = standard_webhooks(secret = "sw_secret", tolerance = "5m"),
)]
async fn standard(_event: &WebhookEvent) -> Result<RawResults, ProcessError> {
    STANDARD_SEEN.fetch_add(1, Ordering::SeqCst);
    Ok(RawResults::none())
}

#[tokio::test]
async fn standard_webhooks_refuses_stale_and_forged_deliveries() {
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let app = on("/standard")
        .env(
            "OCEAN__INTEGRATION__CONFIG__SW_SECRET",
            format!("whsec_b2xk, {SECRET}"),
        )
        .start()
        .await
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let send = |id: &'static str, ts: u64, secret: &'static str| {
        let app = &app;
        async move {
            let body = br#"{"n":1}"#.to_vec();
            let sig =
                ocean_runtime::verify::standard_webhooks_signature(secret, id, ts, &body).unwrap();
            let ts = ts.to_string();
            app.post_raw(
                "/standard",
                body,
                &[
                    ("content-type", "application/json"),
                    ("webhook-id", id),
                    ("webhook-timestamp", &ts),
                    ("webhook-signature", &sig),
                ],
            )
            .await
            .unwrap()
        }
    };
    assert_eq!(
        send("msg_1", now, SECRET).await.0,
        200,
        "rotated: second secret"
    );
    let (status, body) = send("msg_2", now - 600, SECRET).await;
    assert_eq!(status, 401);
    assert!(
        body["error"].as_str().unwrap().contains("tolerance 300 s"),
        "{body}"
    );
    let (status, _) = send("msg_3", now, "whsec_AAAAAAAAAAAAAAAAAAAAAAAA").await;
    assert_eq!(status, 401);
    assert_eq!(send("msg_4", now, SECRET).await.0, 200);
    eventually("the two authentic deliveries", WAIT, || async {
        Ok::<_, ()>((STANDARD_SEEN.load(Ordering::SeqCst) >= 2).then_some(()))
    })
    .await;
    eventually("an empty queue", WAIT, || async {
        Ok::<_, ()>((app.queue_depth().await == 0).then_some(()))
    })
    .await;
    assert_eq!(
        STANDARD_SEEN.load(Ordering::SeqCst),
        2,
        "refused deliveries were not stored"
    );
    app.shutdown().await;
}

// ---- Graceful shutdown: cancelled jobs run on_cancel and their events stay for the next start ----

static CANCEL_STARTED: AtomicUsize = AtomicUsize::new(0);
static CANCELLED: AtomicUsize = AtomicUsize::new(0);

async fn cancelled(_event: &WebhookEvent) {
    CANCELLED.fetch_add(1, Ordering::SeqCst);
}

#[webhook_processor(path = "/stuck", kinds = ["thing"], on_cancel = cancelled)]
async fn never_ends(_event: &WebhookEvent) -> Result<RawResults, ProcessError> {
    CANCEL_STARTED.fetch_add(1, Ordering::SeqCst);
    std::future::pending().await
}

#[tokio::test]
async fn shutdown_cancels_in_flight_jobs_and_keeps_their_events() {
    let dir = std::env::temp_dir().join(format!("ocean-cancel-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let start = || {
        on("/stuck")
            .data_dir(&dir)
            .env("OCEAN__MAX_WAIT_SECONDS_BEFORE_SHUTDOWN", "0.2")
            .start()
    };
    let app = start().await.unwrap();
    app.post("/stuck", &json!({"id": "s-1"})).await.unwrap();
    eventually("the job to start", WAIT, || async {
        Ok::<_, ()>((CANCEL_STARTED.load(Ordering::SeqCst) == 1).then_some(()))
    })
    .await;
    app.shutdown().await;
    assert_eq!(CANCELLED.load(Ordering::SeqCst), 1, "on_cancel ran");

    let app = start().await.unwrap();
    assert_eq!(
        app.queue_depth().await,
        1,
        "the cancelled event is back after a restart"
    );
    eventually("the job to start again", WAIT, || async {
        Ok::<_, ()>((CANCEL_STARTED.load(Ordering::SeqCst) == 2).then_some(()))
    })
    .await;
    app.shutdown().await;
    assert_eq!(CANCELLED.load(Ordering::SeqCst), 2);
    let _ = std::fs::remove_dir_all(&dir);
}
