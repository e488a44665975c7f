use ocean_runtime::prelude::*;

ocean_runtime::kinds!["issue"];

#[derive(Debug)]
struct JiraDown;

#[webhook_processor(path = "/webhook", kinds = ["issue"])]
async fn events(_event: &WebhookEvent) -> Result<RawResults, JiraDown> {
    Err(JiraDown)
}

fn main() {}
