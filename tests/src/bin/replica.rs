//! A replica for the scale-out tests (`tests/tests/scale_out.rs`) and benchmark
//! (`tests/benches/replicas.rs`).
//!
//! - `/items`, grouped by `.group`: each job first tells the test's recorder that it starts (group,
//!   `n`, this process), follows the recorder's answer (`{"fail": true}` makes it a permanent
//!   failure), works for `.sleep_ms` when the payload asks, then maps the payload to an `item`
//!   entity.
//! - `/webhook`: the Jira example's issue processor as far as Port sees it (the benchmark's
//!   workload), grouped by issue key.

use ocean_runtime::prelude::*;

ocean_runtime::kinds!["item", "issue"];

/// `OCEAN__INTEGRATION__CONFIG__RECORDER_URL`: where starts are recorded (the tests; the
/// benchmark leaves it unset).
#[derive(Deserialize)]
struct ReplicaSettings {
    recorder_url: Option<String>,
}

struct Recorder {
    http: reqwest::Client,
    url: Option<String>,
}

impl Recorder {
    async fn connect(settings: Config<ReplicaSettings>) -> Result<Self, String> {
        Ok(Self {
            http: reqwest::Client::new(),
            url: settings
                .recorder_url
                .as_ref()
                .map(|u| format!("{}/start", u.trim_end_matches('/'))),
        })
    }
}

#[webhook_processor(
    path = "/items",
    kinds = ["item"],
    matches = ".group != null",
    group = ".group",
    retry(max = 5, initial = "100ms", max_delay = "1s"),
)]
async fn items(
    event: &WebhookEvent,
    recorder: State<Recorder>,
) -> Result<RawResults, ProcessError> {
    let group = event.str_at("/group")?;
    let n = event.value_at("/n")?.clone();
    let Some(url) = &recorder.url else {
        return Err(ProcessError::permanent(
            "OCEAN__INTEGRATION__CONFIG__RECORDER_URL is not set",
        ));
    };
    let answer: Value = recorder
        .http
        .post(url)
        .json(&json!({"group": group, "n": n, "pid": std::process::id()}))
        .send()
        .await?
        .error_for_status()
        .map_err(|e| ProcessError::retryable(e.to_string()))?
        .json()
        .await?;
    if answer["fail"] == true {
        return Err(ProcessError::permanent(format!(
            "group {group} is poisoned"
        )));
    }
    if let Some(ms) = event.payload()["sleep_ms"].as_u64() {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    Ok(RawResults::updated([event.payload().clone()]))
}

#[webhook_processor(
    path = "/webhook",
    kinds = ["issue"],
    matches = r#".webhookEvent | startswith("jira:issue_")"#,
    group = ".issue.key",
)]
async fn issues(event: &WebhookEvent) -> Result<RawResults, ProcessError> {
    Ok(RawResults::updated([event.value_at("/issue")?.clone()]))
}

ocean_runtime::main!(state = Recorder::connect);
