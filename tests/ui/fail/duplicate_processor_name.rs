use ocean_runtime::prelude::*;

ocean_runtime::kinds!["issue"];

#[webhook_processor(path = "/webhook", kinds = ["issue"], name = "issues")]
async fn created(_event: &WebhookEvent) -> Result<RawResults, ProcessError> {
    Ok(RawResults::none())
}

#[webhook_processor(path = "/webhook", kinds = ["issue"], name = "issues")]
async fn updated(_event: &WebhookEvent) -> Result<RawResults, ProcessError> {
    Ok(RawResults::none())
}

// The same name on another path is allowed.
#[webhook_processor(path = "/other", kinds = ["issue"], name = "issues")]
async fn other(_event: &WebhookEvent) -> Result<RawResults, ProcessError> {
    Ok(RawResults::none())
}

fn main() {}
