//! The example's real binary, as the README runs it: it starts on the built-in Port with no
//! configuration, says so first, processes a webhook over loopback HTTP, and stops cleanly on
//! SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::token;
use ocean_runtime::testing::{TestBinary, eventually, url_after};
use serde_json::Value;

/// How long the binary gets to process a webhook.
const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn runs_out_of_the_box_on_the_built_in_port() {
    let data = std::env::temp_dir().join(format!("ocean-example-jira-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let mut binary = common::start(&data);

    // Its log names the demo Jira it started, then the built-in Port, before it listens.
    let demo = binary.line_with("");
    assert!(
        demo.contains("using the demo Jira at http://"),
        "first log line names the demo Jira: {demo}"
    );
    let first = binary.line_with("built-in local Port at http://");
    assert!(first.contains("no Port credentials set"), "{first}");
    let port = url_after(&first, "built-in local Port at ").unwrap();
    let listening = binary.line_with("listening on http://");
    let ingress = url_after(&listening, "listening on ").unwrap();

    let client = reqwest::Client::new();
    let sample = include_str!("../samples/issue_created.json");
    let accepted = client
        .post(format!("{ingress}/integration/webhook"))
        .header("content-type", "application/json")
        .body(sample)
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 200);
    let accepted: Value = accepted.json().await.unwrap();
    assert_eq!(accepted["status"], "ok");

    let token = token(&client, &port).await;
    let issue = || common::entity(&client, &port, &token, "jiraIssue", "PROJ-1");
    let entity = eventually("PROJ-1 to appear", WAIT, issue).await;
    assert_eq!(entity["title"], "Checkout fails on Safari");
    assert_eq!(entity["properties"]["status"], "To Do");
    assert_eq!(entity["relations"]["project"], "PROJ");

    // Someone edits the issue in Jira; the webhook's own copy is already stale. The entity
    // follows Jira.
    let jira = url_after(&demo, "demo Jira at ").unwrap();
    let edited = client
        .put(format!("{jira}/rest/api/2/issue/PROJ-1"))
        .json(&serde_json::json!({"fields": {
            "summary": "Edited in Jira", "status": {"name": "Done"},
            "issuetype": {"name": "Bug"}, "project": {"key": "PROJ"}
        }}))
        .send()
        .await
        .unwrap();
    assert!(edited.status().is_success());
    let updated = include_str!("../samples/issue_updated.json");
    let post = |body: &'static str| {
        client
            .post(format!("{ingress}/integration/webhook"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    assert_eq!(post(updated).await.unwrap().status(), 200);
    let followed = eventually("PROJ-1 to follow Jira", WAIT, || async {
        let entity = issue().await?;
        Ok::<_, reqwest::Error>(entity.filter(|e| e["title"] == "Edited in Jira"))
    })
    .await;
    assert_eq!(followed["properties"]["status"], "Done");
    // Gone from Jira: the next webhook deletes the entity.
    let gone = client
        .delete(format!("{jira}/rest/api/2/issue/PROJ-1"))
        .send()
        .await
        .unwrap();
    assert!(gone.status().is_success());
    assert_eq!(post(updated).await.unwrap().status(), 200);
    eventually("PROJ-1 to be deleted", WAIT, || async {
        Ok::<_, reqwest::Error>(issue().await?.is_none().then_some(()))
    })
    .await;

    let status = binary.signal_and_wait("-TERM").await.unwrap();
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    let _ = std::fs::remove_dir_all(&data);
}

/// Runs `<binary> dead-letters …` with the test's settings and returns its JSON answer.
fn cli(data: &std::path::Path, port: &str, args: &[&str]) -> Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ocean-example-jira"))
        .args(args)
        .env_clear()
        .env("OCEAN__APPLICATION__PORT", port)
        .env("OCEAN__QUEUE__PATH", data.join("queue"))
        .env("OCEAN__ADMIN__TOKEN", "ops")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn dead_letters_are_listed_online_and_offline_from_the_cli() {
    let data = std::env::temp_dir().join(format!("ocean-example-dlq-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let mut binary = common::start_with(&data, &[("OCEAN__ADMIN__TOKEN", "ops")]);
    let listening = binary.line_with("listening on http://");
    let ingress = url_after(&listening, "listening on ").unwrap();
    let port = ingress.rsplit(':').next().unwrap().to_owned();

    let client = reqwest::Client::new();
    let broken = serde_json::json!({"webhookEvent": "jira:issue_created", "issue": {"fields": {}}});
    let accepted = client
        .post(format!("{ingress}/integration/webhook"))
        .json(&broken)
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 200);

    let listed = eventually("a dead letter", WAIT, || async {
        let listed = cli(&data, &port, &["dead-letters", "list"]);
        let any = listed["deadLetters"]
            .as_array()
            .is_some_and(|l| !l.is_empty());
        Ok::<_, std::convert::Infallible>(any.then_some(listed))
    })
    .await;
    let letter = &listed["deadLetters"][0];
    assert_eq!(letter["processor"], "issue_events");
    assert_eq!(letter["error"], "payload has no value at `/issue/key`");
    assert_eq!(letter["attempts"], 1, "permanent errors are not retried");

    assert!(binary.signal_and_wait("-TERM").await.unwrap().success());
    let offline = cli(&data, &port, &["dead-letters", "show", "1"]);
    assert_eq!(offline["deadLetter"]["event"]["id"], letter["event"]["id"]);
    let purged = cli(&data, &port, &["dead-letters", "purge"]);
    assert_eq!(purged["purged"], 1);
    let _ = std::fs::remove_dir_all(&data);
}

/// A fresh data folder for one test.
fn fresh_dir(name: &str) -> std::path::PathBuf {
    let data =
        std::env::temp_dir().join(format!("ocean-example-jira-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    data
}

/// The example's binary serving only its built-in Port (`local-port`), as a Port of its own
/// would be, with its data under `data/port`.
fn standalone_port(data: &std::path::Path, vars: &[(&str, &str)]) -> TestBinary {
    TestBinary::start_args(
        env!("CARGO_BIN_EXE_ocean-example-jira"),
        &["local-port"],
        &data.join("port"),
        vars,
    )
    .unwrap()
}

/// The variables that point the example at `port` with credentials, as `identifier`.
fn against<'a>(port: &'a str, secret: &'a str, identifier: &'a str) -> [(&'a str, &'a str); 4] {
    [
        ("OCEAN__PORT__CLIENT_ID", "id"),
        ("OCEAN__PORT__CLIENT_SECRET", secret),
        ("OCEAN__PORT__BASE_URL", port),
        ("OCEAN__INTEGRATION__IDENTIFIER", identifier),
    ]
}

/// Posts the `issue_created` sample; the answer's status.
async fn post_sample(client: &reqwest::Client, ingress: &str) -> reqwest::StatusCode {
    client
        .post(format!("{ingress}/integration/webhook"))
        .header("content-type", "application/json")
        .body(include_str!("../samples/issue_created.json"))
        .send()
        .await
        .unwrap()
        .status()
}

/// The status of `/health/ready`.
async fn readiness(client: &reqwest::Client, ingress: &str) -> reqwest::StatusCode {
    client
        .get(format!("{ingress}/health/ready"))
        .send()
        .await
        .unwrap()
        .status()
}

/// `GET {port}/v1/{path}` with a token: the answer's JSON.
async fn port_get(client: &reqwest::Client, port: &str, token: &str, path: &str) -> Value {
    client
        .get(format!("{port}/v1/{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Waits until the binary says it is ready.
async fn ready(client: &reqwest::Client, ingress: &str) {
    eventually("readiness", WAIT, || async {
        Ok::<_, ()>((readiness(client, ingress).await == 200).then_some(()))
    })
    .await;
}

#[tokio::test]
async fn a_first_start_provisions_port_once_and_a_restart_keeps_an_edited_mapping() {
    let data = fresh_dir("provision");
    // A standalone built-in Port with nothing of this integration in it, as a new user's Port.
    let mut standalone = standalone_port(&data, &[]);
    let port = standalone.port_url();
    let vars = against(&port, "secret", "jira-provision");
    let client = reqwest::Client::new();

    // Two instances start at once: one integration is created.
    let mut a = common::start_with(&data.join("a"), &vars);
    let mut b = common::start_with(&data.join("b"), &vars);
    let (ingress_a, ingress_b) = (a.ingress_url(), b.ingress_url());
    ready(&client, &ingress_a).await;
    ready(&client, &ingress_b).await;
    let said = |binary: &mut TestBinary, what: &str| {
        binary.log().iter().filter(|l| l.contains(what)).count()
    };
    assert_eq!(
        said(&mut a, "created the integration in Port")
            + said(&mut b, "created the integration in Port"),
        1,
        "exactly one instance created the integration"
    );

    let token = token(&client, &port).await;
    let record = port_get(&client, &port, &token, "integration/jira-provision").await;
    let integration = &record["integration"];
    assert_eq!(integration["installationAppType"], "ocean-example-jira");
    assert_eq!(integration["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(integration["arePortResourcesInitialized"], true);
    assert_eq!(integration["config"]["resources"][1]["kind"], "issue");
    let issue_bp = port_get(&client, &port, &token, "blueprints/jiraIssue").await;
    assert_eq!(
        issue_bp["blueprint"]["relations"]["project"]["target"],
        "jiraProject"
    );
    assert_eq!(
        issue_bp["blueprint"]["schema"]["properties"]["labels"]["type"],
        "array"
    );
    // The example's scorecard, created once its blueprint exists.
    let triage = port_get(
        &client,
        &port,
        &token,
        "blueprints/jiraIssue/scorecards/triage",
    )
    .await;
    assert_eq!(triage["scorecard"]["rules"][1]["identifier"], "hasPriority");

    // An event is applied; the Port checked its entity against the blueprint on the way in.
    assert_eq!(post_sample(&client, &ingress_a).await, 200);
    let entity = eventually("PROJ-1 in Port", WAIT, || {
        common::entity(&client, &port, &token, "jiraIssue", "PROJ-1")
    })
    .await;
    assert_eq!(entity["properties"]["status"], "To Do");
    assert_eq!(entity["relations"]["project"], "PROJ");

    // An operator edits the mapping in Port; a restart keeps it and changes nothing else.
    let mut edited = integration["config"].clone();
    edited["deleteDependentEntities"] = Value::Bool(false);
    client
        .patch(format!("{port}/v1/integration/jira-provision/config"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"config": edited}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let before = port_get(&client, &port, &token, "integration/jira-provision").await;
    for binary in [&mut a, &mut b] {
        assert!(binary.signal_and_wait("-TERM").await.unwrap().success());
    }
    let mut c = common::start_with(&data.join("c"), &vars);
    let ingress_c = c.ingress_url();
    ready(&client, &ingress_c).await;
    assert_eq!(said(&mut c, "its mapping is kept as it is"), 1);
    assert_eq!(said(&mut c, "created"), 0, "nothing created on a restart");
    let after = port_get(&client, &port, &token, "integration/jira-provision").await;
    assert_eq!(
        after, before,
        "the record is untouched, edited mapping included"
    );
    assert_eq!(
        port_get(&client, &port, &token, "blueprints/jiraIssue").await,
        issue_bp,
        "the blueprint is untouched"
    );
    assert!(c.signal_and_wait("-TERM").await.unwrap().success());
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test]
async fn webhooks_are_kept_while_port_cannot_be_reached_at_the_first_start() {
    let data = fresh_dir("no-port");
    // A loopback port with nothing listening yet: the Port comes later.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let port = format!("http://127.0.0.1:{free}");
    let vars = against(&port, "secret", "jira-late-port");
    let client = reqwest::Client::new();
    let mut app = common::start_with(&data.join("app"), &vars);
    let ingress = app.ingress_url();
    let said = app.line_with("cannot set the integration up in Port yet");
    assert!(said.contains("webhooks are accepted and kept"), "{said}");
    assert_eq!(readiness(&client, &ingress).await, 503);
    assert_eq!(
        post_sample(&client, &ingress).await,
        200,
        "accepted while Port is away"
    );

    // The Port comes up: the integration is set up, and the kept event is applied.
    let mut standalone = standalone_port(&data, &[("OCEAN__LOCAL_PORT__PORT", free.as_str())]);
    assert_eq!(standalone.port_url(), port);
    ready(&client, &ingress).await;
    let token = token(&client, &port).await;
    let entity = eventually("PROJ-1 in Port", WAIT, || {
        common::entity(&client, &port, &token, "jiraIssue", "PROJ-1")
    })
    .await;
    assert_eq!(entity["properties"]["status"], "To Do");
    let record = port_get(&client, &port, &token, "integration/jira-late-port").await;
    assert_eq!(record["integration"]["arePortResourcesInitialized"], true);
    assert!(app.signal_and_wait("-TERM").await.unwrap().success());
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test]
async fn an_integration_with_an_empty_mapping_gets_the_default_one_and_its_version() {
    let data = fresh_dir("empty");
    let mut standalone = standalone_port(&data, &[]);
    let port = standalone.port_url();
    let client = reqwest::Client::new();
    let token = token(&client, &port).await;
    // Installed from Port's UI long ago: no mapping yet, an old version.
    client
        .post(format!("{port}/v1/integration"))
        .bearer_auth(&token)
        .json(
            &serde_json::json!({"installationId": "jira-empty", "version": "0.0.1", "config": {}}),
        )
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let vars = against(&port, "secret", "jira-empty");
    let mut app = common::start_with(&data.join("app"), &vars);
    let ingress = app.ingress_url();
    ready(&client, &ingress).await;
    assert!(
        app.line_with("had no mapping")
            .contains("the default one is set"),
        "the log says so"
    );
    let record = port_get(&client, &port, &token, "integration/jira-empty").await;
    assert_eq!(
        record["integration"]["config"]["resources"][0]["kind"],
        "project"
    );
    assert_eq!(record["integration"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(app.signal_and_wait("-TERM").await.unwrap().success());
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test]
async fn wrong_credentials_are_named_and_webhooks_are_still_kept() {
    let data = fresh_dir("401");
    // A standalone built-in Port that takes only its own credentials, as Port does.
    let mut standalone = standalone_port(
        &data,
        &[
            ("OCEAN__PORT__CLIENT_ID", "id"),
            ("OCEAN__PORT__CLIENT_SECRET", "right"),
        ],
    );
    let port = standalone.port_url();
    let vars = against(&port, "n0t-the-s3cret", "jira-401");
    let mut app = common::start_with(&data.join("app"), &vars);
    let ingress = app.ingress_url();
    let said = app.line_with("cannot set the integration up in Port yet");
    assert!(
        said.contains("check OCEAN__PORT__CLIENT_ID and OCEAN__PORT__CLIENT_SECRET"),
        "{said}"
    );
    assert!(
        !said.contains("n0t-the-s3cret"),
        "the secret is not logged: {said}"
    );
    let client = reqwest::Client::new();
    assert_eq!(post_sample(&client, &ingress).await, 200);
    assert_eq!(readiness(&client, &ingress).await, 503);
    assert!(app.signal_and_wait("-TERM").await.unwrap().success());
    let _ = std::fs::remove_dir_all(&data);
}
