//! Running the example's real binary in tests: start it with its own data folder, read its log
//! lines, send webhooks, read the built-in Port, stop it.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The binary with its stderr read line by line on a thread.
pub struct Binary {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Binary {
    pub fn start(data_dir: &std::path::Path) -> Self {
        Self::start_with(data_dir, &[])
    }

    /// Starts the binary with extra variables.
    pub fn start_with(data_dir: &std::path::Path, vars: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ocean-example-jira"))
            .env_clear()
            .envs(vars.iter().copied())
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("OCEAN__APPLICATION__PORT", "0")
            .env("OCEAN__LOCAL_PORT__PORT", "0")
            .env("OCEAN__LOCAL_PORT__DATA_DIR", data_dir.join("port"))
            .env("OCEAN__QUEUE__PATH", data_dir.join("queue"))
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
    pub fn line_with(&mut self, needle: &str) -> String {
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
pub fn url_after(line: &str, marker: &str) -> String {
    let rest = &line[line.find(marker).expect("marker in line") + marker.len()..];
    rest.split_whitespace().next().unwrap().to_owned()
}

pub async fn token(client: &reqwest::Client, port: &str) -> String {
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

impl Binary {
    /// Starts the binary and waits until it listens: (binary, webhook URL, built-in Port URL).
    pub fn ready(data_dir: &std::path::Path) -> (Self, String, String) {
        let mut binary = Self::start(data_dir);
        let port_line = binary.line_with("built-in local Port at ");
        let port = url_after(&port_line, "built-in local Port at ");
        let listening = binary.line_with("listening on http://");
        let ingress = url_after(&listening, "listening on ");
        (binary, ingress, port)
    }

    /// Sends a signal (`-KILL`, `-TERM`) and waits for the process to end.
    pub async fn signal_and_wait(&mut self, signal: &str) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args([signal, &pid])
                .status()
                .unwrap()
                .success()
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "binary did not stop on {signal}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A Jira `issue_created` webhook for `key` with summary `summary`.
pub fn issue_created(key: &str, summary: &str) -> Value {
    json!({
        "webhookEvent": "jira:issue_created",
        "issue": {"key": key, "fields": {
            "summary": summary,
            "status": {"name": "To Do"},
            "issuetype": {"name": "Bug"},
            "project": {"key": "PROJ"}
        }}
    })
}

/// Every `jiraIssue` in the built-in Port: identifier → title.
pub async fn issues(
    client: &reqwest::Client,
    port: &str,
    token: &str,
) -> std::collections::HashMap<String, String> {
    let body: Value = client
        .get(format!("{port}/v1/blueprints/jiraIssue/entities"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["identifier"].as_str().unwrap().to_owned(),
                e["title"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}
