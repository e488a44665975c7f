//! The GitHub example's real binary on the built-in Port: signed samples become entities, unsigned
//! or forged deliveries are refused with 401, a redelivery is not processed twice, a merged pull
//! request and a deleted issue end up as GitHub says, and `send.sh` signs like GitHub does.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use ocean_runtime::testing::github_signature;
use ocean_runtime::testing::{TestBinary, eventually, local_port_token};
use serde_json::{Value, json};

const SECRET: &str = "dev-secret";

struct Example {
    http: reqwest::Client,
    ingress: String,
    port: String,
    token: String,
}

impl Example {
    async fn post(
        &self,
        event: &str,
        delivery: &str,
        body: &[u8],
        secret: Option<&str>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .post(format!("{}/integration/webhook", self.ingress))
            .header("content-type", "application/json")
            .header("x-github-event", event)
            .header("x-github-delivery", delivery)
            .body(body.to_vec());
        if let Some(secret) = secret {
            req = req.header("x-hub-signature-256", github_signature(secret, body));
        }
        let answer = req.send().await.unwrap();
        (
            answer.status().as_u16(),
            answer.json().await.unwrap_or(Value::Null),
        )
    }

    /// The entity, once `ready` holds for it.
    async fn entity(&self, blueprint: &str, id: &str, ready: impl Fn(&Value) -> bool) -> Value {
        let url = format!(
            "{}/v1/blueprints/{blueprint}/entities/{}",
            self.port,
            id.replace('/', "%2F")
        );
        eventually(
            &format!("{blueprint} {id}"),
            Duration::from_secs(30),
            || {
                let req = self.http.get(&url).bearer_auth(&self.token);
                let ready = &ready;
                async move {
                    let answer: Value = req.send().await?.json().await?;
                    Ok::<_, reqwest::Error>(Some(answer["entity"].clone()).filter(|e| ready(e)))
                }
            },
        )
        .await
    }
}

#[tokio::test]
async fn signed_github_deliveries_become_entities() {
    let data = std::env::temp_dir().join(format!("ocean-example-github-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let mut binary = TestBinary::start(
        env!("CARGO_BIN_EXE_ocean-example-github"),
        &data,
        &[(
            "OCEAN__INTEGRATION__CONFIG__WEBHOOK_SECRET",
            &format!("old-secret,{SECRET}"),
        )],
    )
    .unwrap();
    let port = binary.port_url();
    let ingress = binary.ingress_url();
    let http = reqwest::Client::new();
    let token = local_port_token(&http, &port).await.unwrap();
    let example = Example {
        http,
        ingress,
        port,
        token,
    };

    let push = include_bytes!("../samples/push.json");
    assert_eq!(
        example.post("push", "d-1", push, None).await.0,
        401,
        "unsigned"
    );
    assert_eq!(
        example.post("push", "d-1", push, Some("guess")).await.0,
        401,
        "forged"
    );
    let (status, answer) = example.post("push", "d-1", push, Some(SECRET)).await;
    assert_eq!((status, &answer["status"]), (200, &json!("ok")), "{answer}");
    let repo = example
        .entity("githubRepository", "acme/checkout", |e| !e.is_null())
        .await;
    assert_eq!(
        repo["properties"]["lastCommit"],
        "9f8e7d6c5b4a39281716f5e4d3c2b1a098765432"
    );
    assert_eq!(repo["properties"]["lastPusher"], "octocat");
    // GitHub redelivers with the same id: answered, not processed again.
    let (status, again) = example.post("push", "d-1", push, Some("old-secret")).await;
    assert_eq!(
        (status, &again["duplicate"]),
        (200, &json!(true)),
        "{again}"
    );

    let opened = include_bytes!("../samples/pull_request_opened.json");
    let merged = include_bytes!("../samples/pull_request_merged.json");
    assert_eq!(
        example
            .post("pull_request", "d-2", opened, Some(SECRET))
            .await
            .0,
        200
    );
    assert_eq!(
        example
            .post("pull_request", "d-3", merged, Some(SECRET))
            .await
            .0,
        200
    );
    let pr = example
        .entity("githubPullRequest", "acme/checkout/pull/42", |e| {
            e["properties"]["state"] == "merged"
        })
        .await;
    assert_eq!(pr["title"], "Fix the Safari checkout button");
    assert_eq!(pr["relations"]["repository"], "acme/checkout");

    let issue = include_bytes!("../samples/issues_opened.json");
    assert_eq!(
        example.post("issues", "d-4", issue, Some(SECRET)).await.0,
        200
    );
    let entity = example
        .entity("githubIssue", "acme/checkout/issues/7", |e| !e.is_null())
        .await;
    assert_eq!(entity["properties"]["labels"], json!(["bug", "web"]));
    let deleted = include_bytes!("../samples/issues_deleted.json");
    assert_eq!(
        example.post("issues", "d-5", deleted, Some(SECRET)).await.0,
        200
    );
    example
        .entity("githubIssue", "acme/checkout/issues/7", Value::is_null)
        .await;

    // The script a developer uses signs the same way (it needs openssl and curl).
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/send.sh");
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/samples/issues_opened.json");
    let out = std::process::Command::new("bash")
        .args([script, "issues", sample])
        .env("SECRET", SECRET)
        .env("URL", format!("{}/integration/webhook", example.ingress))
        .output()
        .expect("bash runs send.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "send.sh failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(r#""status":"ok""#), "{stdout}");
    example
        .entity("githubIssue", "acme/checkout/issues/7", |e| !e.is_null())
        .await;

    assert!(binary.signal_and_wait("-TERM").await.unwrap().success());
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test]
async fn a_first_start_against_a_port_creates_the_integration_and_its_blueprints() {
    let data = std::env::temp_dir().join(format!(
        "ocean-example-github-provision-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&data);
    let bin = env!("CARGO_BIN_EXE_ocean-example-github");
    // A standalone built-in Port with nothing of this integration in it.
    let mut standalone =
        TestBinary::start_args(bin, &["local-port"], &data.join("port"), &[]).unwrap();
    let port = standalone.port_url();
    let mut binary = TestBinary::start(
        bin,
        &data.join("app"),
        &[
            ("OCEAN__PORT__CLIENT_ID", "id"),
            ("OCEAN__PORT__CLIENT_SECRET", "secret"),
            ("OCEAN__PORT__BASE_URL", port.as_str()),
            ("OCEAN__INTEGRATION__CONFIG__WEBHOOK_SECRET", SECRET),
        ],
    )
    .unwrap();
    let ingress = binary.ingress_url();
    let http = reqwest::Client::new();
    eventually("readiness", Duration::from_secs(30), || async {
        let r = http.get(format!("{ingress}/health/ready")).send().await?;
        Ok::<_, reqwest::Error>((r.status() == 200).then_some(()))
    })
    .await;
    let token = local_port_token(&http, &port).await.unwrap();
    let get = |path: String| {
        let req = http.get(format!("{port}/v1/{path}")).bearer_auth(&token);
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    // `.port/spec.yaml` names the type (and so the default identifier) and the title.
    let integration = get("integration/my-github-integration".to_owned()).await;
    assert_eq!(integration["integration"]["installationAppType"], "github");
    assert_eq!(
        integration["integration"]["title"],
        "GitHub (ocean-rs example)"
    );
    assert_eq!(
        integration["integration"]["arePortResourcesInitialized"], true,
        "{integration}"
    );
    assert_eq!(
        integration["integration"]["config"]["resources"][0]["kind"],
        "repository"
    );
    for (blueprint, relation) in [
        ("githubRepository", None),
        ("githubPullRequest", Some("repository")),
        ("githubIssue", Some("repository")),
    ] {
        let bp = get(format!("blueprints/{blueprint}")).await;
        assert_eq!(bp["blueprint"]["identifier"], blueprint, "{bp}");
        if let Some(relation) = relation {
            assert_eq!(
                bp["blueprint"]["relations"][relation]["target"],
                "githubRepository"
            );
        }
    }
    // A delivery's entities pass the blueprints' schemas (the Port checks each upsert).
    let example = Example {
        http: http.clone(),
        ingress,
        port: port.clone(),
        token: token.clone(),
    };
    let opened = include_bytes!("../samples/pull_request_opened.json");
    assert_eq!(
        example
            .post("pull_request", "p-1", opened, Some(SECRET))
            .await
            .0,
        200
    );
    let pr = example
        .entity("githubPullRequest", "acme/checkout/pull/42", |e| {
            !e.is_null()
        })
        .await;
    assert_eq!(pr["properties"]["state"], "open");
    assert_eq!(pr["relations"]["repository"], "acme/checkout");
    assert!(binary.signal_and_wait("-TERM").await.unwrap().success());
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test]
async fn a_missing_required_spec_setting_stops_start_up_naming_its_variable() {
    let data = std::env::temp_dir().join(format!(
        "ocean-example-github-no-secret-{}",
        std::process::id()
    ));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ocean-example-github"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("OCEAN__APPLICATION__PORT", "0")
        .env("OCEAN__LOCAL_PORT__PORT", "0")
        .env("OCEAN__LOCAL_PORT__DATA_DIR", data.join("port"))
        .env("OCEAN__QUEUE__PATH", data.join("queue"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("started without OCEAN__INTEGRATION__CONFIG__WEBHOOK_SECRET");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(
        stderr.contains(
            "OCEAN__INTEGRATION__CONFIG__WEBHOOK_SECRET must be set because .port/spec.yaml marks `webhookSecret` required"
        ),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&data);
}
