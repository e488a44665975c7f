use ocean_runtime::prelude::*;

ocean_runtime::kinds!["issue", "project"];

#[webhook_processor(path = "/webhook", kinds = ["issue", "isue", "deployment"])]
async fn events(_event: &WebhookEvent) -> Result<RawResults, ProcessError> {
    Ok(RawResults::none())
}

fn main() {}
