//! The example's real binary, as the README runs it: it starts on the built-in Port with no
//! configuration, says so first, processes a webhook over loopback HTTP, and stops cleanly on
//! SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The binary with its stderr read line by line on a thread.
struct Binary {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Binary {
    fn start(data_dir: &std::path::Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ocean-example-jira"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("OCEAN__APPLICATION__PORT", "0")
            .env("OCEAN__LOCAL_PORT__PORT", "0")
            .env("OCEAN__LOCAL_PORT__DATA_DIR", data_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the example binary starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a log line containing `needle` and returns it.
    fn line_with(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(line) = self.seen.iter().find(|l| l.contains(needle)) {
                return line.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!("no log line with {needle:?}; got {:#?}", self.seen),
            }
        }
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `http://host:port` right after `marker` in `line`.
fn url_after(line: &str, marker: &str) -> String {
    let rest = &line[line.find(marker).expect("marker in line") + marker.len()..];
    rest.split_whitespace().next().unwrap().to_owned()
}

async fn token(client: &reqwest::Client, port: &str) -> String {
    let body: Value = client
        .post(format!("{port}/v1/auth/access_token"))
        .json(&json!({"clientId": "test", "clientSecret": "test"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["accessToken"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn runs_out_of_the_box_on_the_built_in_port() {
    let data = std::env::temp_dir().join(format!("ocean-example-jira-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let mut binary = Binary::start(&data);

    let first = binary.line_with("");
    assert!(
        first.contains("using the built-in local Port at http://"),
        "first log line names the built-in Port: {first}"
    );
    let port = url_after(&first, "built-in local Port at ");
    let listening = binary.line_with("listening on http://");
    let ingress = url_after(&listening, "listening on ");

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
    let entity_url = format!("{port}/v1/blueprints/jiraIssue/entities/PROJ-1");
    let deadline = Instant::now() + Duration::from_secs(30);
    let entity = loop {
        let response = client
            .get(&entity_url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        if response.status() == 200 {
            let body: Value = response.json().await.unwrap();
            break body["entity"].clone();
        }
        assert!(Instant::now() < deadline, "PROJ-1 never appeared");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(entity["title"], "Checkout fails on Safari");
    assert_eq!(entity["properties"]["status"], "To Do");
    assert_eq!(entity["relations"]["project"], "PROJ");

    let pid = binary.child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = binary.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "binary did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    let _ = std::fs::remove_dir_all(&data);
}
