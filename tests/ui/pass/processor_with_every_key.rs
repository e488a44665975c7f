//! Every attribute key and every argument type together; `main` checks what was registered
//! (trybuild runs pass cases, so it cannot be `main!()`, which would serve forever).

use ocean_runtime::prelude::*;
use ocean_runtime::__private::Requirement;

ocean_runtime::kinds!["issue", "pull-request"];

#[derive(Deserialize)]
struct IssueSelector {
    #[allow(dead_code)]
    jql: Option<String>,
}

#[derive(Deserialize)]
struct JiraConfig {
    #[allow(dead_code)]
    jira_url: String,
}

struct JiraClient;

mod checks {
    use ocean_runtime::prelude::*;

    pub fn wanted(event: &WebhookEvent) -> bool {
        event.header("x-test").is_none()
    }
    pub fn kinds(event: &WebhookEvent) -> Vec<&'static str> {
        if event.payload()["pull_request"].is_null() { vec!["issue"] } else { vec!["pull-request"] }
    }
    pub fn payload(event: &WebhookEvent) -> Result<(), ProcessError> {
        event.value_at("/action").map(drop)
    }
    pub fn signed(event: &WebhookEvent) -> bool {
        !event.raw_body().is_empty()
    }
    pub async fn before(_job: &JobContext<'_>) {}
    pub async fn after(_job: &JobContext<'_>, _results: &RawResults) {}
    pub async fn on_error(_job: &JobContext<'_>, _error: &ProcessError) {}
    pub async fn on_cancel(_event: &WebhookEvent) {}
}

#[webhook_processor(
    path = "/webhook",
    kinds = ["issue", "pull-request"],
    matches = r#".action == "opened" or .action == "closed""#,
    name = "issues-and-prs",
    group = ".issue.key",
    latest_only = true,
    validate = ".action != null",
    authenticate = github(secret = "github_secret"),
    retry(max = 5, initial = "500ms", max_delay = "10s", base = 3),
    timeout = "1m30s",
    should_process = checks::wanted,
    matching_kinds = checks::kinds,
    before = checks::before,
    after = checks::after,
    on_error = checks::on_error,
    on_cancel = checks::on_cancel,
)]
async fn events(
    selector: Selector<IssueSelector>,
    jira: State<JiraClient>,
    job: &JobContext<'_>,
    config: Config<JiraConfig>,
    resource: &ResourceConfig,
    event: &WebhookEvent,
) -> Result<RawResults, ProcessError> {
    let _ = (&selector.jql, &*jira, job.attempt(), &config.jira_url, &resource.kind);
    Ok(RawResults::updated([event.payload().clone()]))
}

#[webhook_processor(path = "/other/hook", kinds = [r"issue"], validate = checks::payload, authenticate = checks::signed)]
async fn other(_event: &WebhookEvent) -> Result<RawResults, UpstreamDown> {
    Ok(RawResults::none())
}

/// An author's own error type, converted by `From`.
struct UpstreamDown;

impl From<UpstreamDown> for ProcessError {
    fn from(_: UpstreamDown) -> Self {
        ProcessError::retryable("upstream is down")
    }
}

#[webhook_processor(path = "/other/hook", kinds = ["pull-request"], authenticate = token(header = "X-Gitlab-Token"))]
async fn tokens(_event: &WebhookEvent) -> Result<RawResults, ProcessError> {
    Ok(RawResults::none())
}

#[webhook_processor(path = "/standard", kinds = ["issue"], authenticate = standard_webhooks(secret = "sw", tolerance = "10m"))]
async fn standard(_event: &WebhookEvent) -> Result<RawResults, ProcessError> {
    Ok(RawResults::none())
}

#[webhook_processor(path = "/jira", kinds = ["issue"], authenticate = jira())]
async fn jira(_event: &WebhookEvent) -> Result<RawResults, ProcessError> {
    Ok(RawResults::none())
}

fn main() {
    let registry = ocean_runtime::__private::Registry::from_inventory().unwrap();
    let names = |path: &str| -> Vec<&str> {
        registry.processors(path).unwrap().iter().map(|p| p.name()).collect()
    };
    assert_eq!(names("/webhook"), ["issues-and-prs"]);
    assert_eq!(names("/other/hook"), ["other", "tokens"]);
    assert_eq!(registry.kinds(), ["issue", "pull-request"]);

    let p = &registry.processors("/webhook").unwrap()[0];
    let requirements: Vec<String> = p.requirements().iter().map(|r| format!("{r:?}")).collect();
    assert_eq!(requirements.len(), 3, "{requirements:?}");
    assert!(matches!(p.requirements()[0], Requirement::Selector { .. }));
    assert!(matches!(p.requirements()[1], Requirement::State { .. }));
    assert!(matches!(p.requirements()[2], Requirement::Config { .. }));
    let policy = p.processor().retry_policy();
    assert_eq!((policy.max_retries, policy.base), (5, 3.0));
    assert_eq!(policy.initial, std::time::Duration::from_millis(500));
    assert_eq!(p.processor().timeout(), Some(std::time::Duration::from_secs(90)));
}
