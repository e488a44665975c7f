use ocean_runtime::prelude::*;

ocean_runtime::kinds!["issue"];

#[webhook_processor(path = "/webhook", kinds = ["issue"], retry(max = 5, initial = "1x"))]
async fn events(_event: &WebhookEvent) -> Result<RawResults, ProcessError> {
    Ok(RawResults::none())
}

fn main() {}
