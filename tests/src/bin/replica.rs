//! A replica for the scale-out tests (`tests/tests/scale_out.rs`): one processor on `/items`,
//! grouped by `.group`. Each job first tells the test's recorder that it starts (group, `n`, this
//! process), follows the recorder's answer (`{"fail": true}` makes it a permanent failure), works
//! for `.sleep_ms` when the payload asks, then maps the payload to an `item` entity.

use ocean_runtime::prelude::*;

ocean_runtime::kinds!["item"];

/// `OCEAN__INTEGRATION__CONFIG__RECORDER_URL`: where starts are recorded.
#[derive(Deserialize)]
struct ReplicaSettings {
    recorder_url: String,
}

struct Recorder {
    http: reqwest::Client,
    url: String,
}

impl Recorder {
    async fn connect(settings: Config<ReplicaSettings>) -> Result<Self, String> {
        Ok(Self {
            http: reqwest::Client::new(),
            url: format!("{}/start", settings.recorder_url.trim_end_matches('/')),
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
    let answer: Value = recorder
        .http
        .post(&recorder.url)
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

ocean_runtime::main!(state = Recorder::connect);
