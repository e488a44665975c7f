use ocean_runtime::prelude::*;

ocean_runtime::kinds!["issue"];

#[webhook_processor(crate = "no::such::facade", path = "/webhook", kinds = ["issue"])]
async fn events(_event: &WebhookEvent) -> Result<RawResults, ProcessError> {
    Ok(RawResults::none())
}

fn main() {}
