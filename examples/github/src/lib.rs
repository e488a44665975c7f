//! A GitHub integration: `push`, `pull_request` and `issues` webhooks keep `githubRepository`,
//! `githubPullRequest` and `githubIssue` entities up to date, straight from the payloads.
//!
//! Every delivery must carry a valid `X-Hub-Signature-256` (HMAC-SHA256 of the body with the
//! webhook secret from `OCEAN__INTEGRATION__CONFIG__WEBHOOK_SECRET`; a comma-separated value
//! accepts several secrets during a rotation); anything else is answered 401 and not stored.
//! GitHub's `X-GitHub-Delivery` id makes a redelivery a no-op.
//!
//! ```text
//! OCEAN__INTEGRATION__CONFIG__WEBHOOK_SECRET=dev-secret cargo run -p ocean-example-github
//! SECRET=dev-secret examples/github/send.sh pull_request examples/github/samples/pull_request_opened.json
//! ```

use ocean_runtime::prelude::*;

ocean_runtime::kinds!["repository", "pull-request", "issue"];

/// The GitHub event name (`X-GitHub-Event`) is `name`.
fn github_event(event: &WebhookEvent, name: &str) -> bool {
    event.header("x-github-event") == Some(name)
}

fn is_push(event: &WebhookEvent) -> bool {
    github_event(event, "push")
}

fn is_pull_request(event: &WebhookEvent) -> bool {
    github_event(event, "pull_request")
}

fn is_issues(event: &WebhookEvent) -> bool {
    github_event(event, "issues")
}

/// A push updates its repository (the mapping reads the pushed ref and head commit).
#[webhook_processor(
    path = "/webhook",
    kinds = ["repository"],
    authenticate = github,
    should_process = is_push,
    group = ".repository.full_name",
)]
pub async fn pushes(event: &WebhookEvent) -> Result<RawResults, ProcessError> {
    event.str_at("/repository/full_name")?;
    Ok(RawResults::updated([event.payload().clone()]))
}

/// Every `pull_request` action upserts the pull request (closed and merged ones included).
#[webhook_processor(
    path = "/webhook",
    kinds = ["pull-request"],
    authenticate = github,
    should_process = is_pull_request,
    validate = ".pull_request.number != null and .repository.full_name != null",
    group = r##".repository.full_name + "#" + (.pull_request.number | tostring)"##,
)]
pub async fn pull_requests(event: &WebhookEvent) -> Result<RawResults, ProcessError> {
    Ok(RawResults::updated([event.payload().clone()]))
}

/// `issues` actions upsert the issue; `deleted` deletes it.
#[webhook_processor(
    path = "/webhook",
    kinds = ["issue"],
    authenticate = github,
    should_process = is_issues,
    validate = ".issue.number != null and .repository.full_name != null",
    group = r##".repository.full_name + "#" + (.issue.number | tostring)"##,
)]
pub async fn issues(event: &WebhookEvent) -> Result<RawResults, ProcessError> {
    let payload = event.payload().clone();
    Ok(if payload["action"] == "deleted" {
        RawResults::deleted([payload])
    } else {
        RawResults::updated([payload])
    })
}
