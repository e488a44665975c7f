use ocean_runtime::prelude::*;

ocean_runtime::kinds!["issue"];

#[webhook_processor(path = "/webhook", kinds = ["issue"])]
async fn events<T: Send>(_event: &WebhookEvent) -> Result<RawResults, ProcessError> {
    Ok(RawResults::none())
}

fn main() {}
