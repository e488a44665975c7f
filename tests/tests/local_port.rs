//! The built-in Port answers what a Python Ocean integration (port-ocean 0.56) calls on start-up and
//! during a resync, with the shapes it reads: a new integration record not yet initialised, with
//! ingest URLs for its logs and metrics; the resync state and resync request; kind examples; and the
//! paged listing of the entities one integration wrote (its stale-entity reconciliation).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use ocean_runtime::testing::local_port_token;
use ocean_runtime::{LocalPort, LocalPortOptions};
use serde_json::{Value, json};

const PY_AGENT: &str = "port-ocean/pytest-type/0.1.0/py-test/exporter";

struct Port {
    http: reqwest::Client,
    url: String,
    auth: String,
    _port: LocalPort,
}

impl Port {
    async fn start(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("ocean-local-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let port = LocalPort::start(LocalPortOptions {
            data_dir: dir,
            addr: "127.0.0.1:0".parse().unwrap(),
            credentials: None,
        })
        .await
        .unwrap();
        let http = reqwest::Client::new();
        let url = port.base_url();
        let auth = format!("Bearer {}", local_port_token(&http, &url).await.unwrap());
        Self {
            http,
            url,
            auth,
            _port: port,
        }
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .header("authorization", &self.auth)
            .header("user-agent", PY_AGENT);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }
}

#[tokio::test]
async fn a_python_integration_s_start_up_calls_get_the_shapes_it_reads() {
    let port = Port::start("startup").await;
    let (status, answer) = port
        .post(
            "/v1/integration",
            json!({"installationId": "py-test", "installationAppType": "pytest-type",
                   "version": "0.1.0", "config": {"resources": []}}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let record = &answer["integration"];
    assert_eq!(
        record["arePortResourcesInitialized"], false,
        "a new integration still has to create its blueprints"
    );
    for what in ["logAttributes", "metricAttributes"] {
        let ingest = record[what]["ingestUrl"].as_str().unwrap();
        assert!(ingest.starts_with(&port.url), "{ingest}");
        let resp = port
            .http
            .post(format!("{ingest}/syncMetrics"))
            .json(&json!({"syncKindsMetrics": []}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{what} can be shipped");
    }

    let (status, answer) = port
        .send(
            reqwest::Method::PATCH,
            "/v1/integration/py-test/resync-state",
            Some(json!({"status": "running", "lastResyncStart": "2026-11-23T10:00:00Z"})),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["integration"]["resyncState"]["status"], "running");
    assert!(
        answer["integration"]["resyncState"]["updatedAt"].is_string(),
        "{answer}"
    );

    let (status, answer) = port
        .send(
            reqwest::Method::GET,
            "/v1/integration/py-test/resync-request",
            None,
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["request"]["updatedAt"].is_string(), "{answer}");

    let (status, answer) = port
        .post(
            "/v1/integration/py-test/kinds/item/examples",
            json!({"examples": [{"id": "item-1"}]}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["integration"]["kindExamples"]["item"],
        json!([{"id": "item-1"}])
    );
    let (status, _) = port
        .post(
            "/v1/integration/nobody/kinds/item/examples",
            json!({"examples": []}),
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn datasource_entities_pages_through_what_one_integration_wrote() {
    let port = Port::start("datasource").await;
    let entities: Vec<Value> = (1..=5)
        .map(|i| json!({"identifier": format!("item-{i}"), "title": format!("Item {i}")}))
        .collect();
    let (status, answer) = port
        .post(
            "/v1/blueprints/pyItem/entities/bulk",
            json!({"entities": entities}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    // Another integration's entity is not listed.
    let resp = port
        .http
        .post(format!("{}/v1/blueprints/pyItem/entities/bulk", port.url))
        .header("authorization", &port.auth)
        .header("user-agent", "port-ocean/other/0.1.0/other-id/exporter")
        .json(&json!({"entities": [{"identifier": "foreign"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let query = |from: Option<&str>, before: &str| {
        let mut q = json!({"datasource_prefix": "port-ocean/pytest-type/",
                           "datasource_suffix": "/py-test/exporter", "limit": 2,
                           "before": before});
        if let Some(from) = from {
            q["from"] = json!(from);
        }
        q
    };
    let mut seen = Vec::new();
    let mut from: Option<String> = None;
    for page in 0.. {
        assert!(page < 5, "the pages never end");
        let (status, answer) = port
            .post(
                "/v1/blueprints/entities/datasource-entities",
                query(from.as_deref(), "2999-01-01T00:00:00.000000+00:00"),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
        let ids = answer["entities"].as_array().unwrap();
        assert!(ids.len() <= 2);
        seen.extend(
            ids.iter()
                .map(|e| e["identifier"].as_str().unwrap().to_owned()),
        );
        match answer["next"].as_str() {
            Some(next) => from = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ["item-1", "item-2", "item-3", "item-4", "item-5"]);

    let (status, answer) = port
        .post(
            "/v1/blueprints/entities/datasource-entities",
            query(None, "2000-01-01T00:00:00Z"),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["entities"],
        json!([]),
        "nothing was created before 2000"
    );
    let (status, answer) = port
        .post(
            "/v1/blueprints/entities/datasource-entities",
            query(None, "yesterday"),
        )
        .await;
    assert_eq!(status, 422, "{answer}");
    assert!(answer["message"].as_str().unwrap().contains("before"));
}

#[tokio::test]
async fn actions_scorecards_and_pages_are_kept_once_each_and_read_back() {
    let port = Port::start("extras").await;
    let get = |path: &'static str| port.send(reqwest::Method::GET, path, None);
    let action =
        json!({"identifier": "assign", "title": "Assign", "trigger": {"type": "self-service"}});
    assert_eq!(port.post("/v1/actions", action.clone()).await.0, 200);
    assert_eq!(
        port.post("/v1/actions", action).await.0,
        409,
        "identifier taken"
    );
    let (status, read) = get("/v1/actions/assign").await;
    assert_eq!((status, &read["action"]["title"]), (200, &json!("Assign")));
    // A scorecard needs its blueprint.
    let scorecard = json!({"identifier": "triage", "rules": []});
    assert_eq!(
        port.post("/v1/blueprints/ticket/scorecards", scorecard.clone())
            .await
            .0,
        404
    );
    assert_eq!(
        port.post("/v1/blueprints", json!({"identifier": "ticket"}))
            .await
            .0,
        200
    );
    assert_eq!(
        port.post("/v1/blueprints/ticket/scorecards", scorecard)
            .await
            .0,
        200
    );
    assert_eq!(get("/v1/blueprints/ticket/scorecards/triage").await.0, 200);
    assert_eq!(
        port.post("/v1/pages", json!({"title": "no id"})).await.0,
        422
    );
    assert_eq!(
        port.post("/v1/pages", json!({"identifier": "tickets"}))
            .await
            .0,
        200
    );
    assert_eq!(get("/v1/pages/tickets").await.0, 200);
    assert_eq!(get("/v1/pages/other").await.0, 404);
}
