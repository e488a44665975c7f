use ocean_runtime::prelude::*;

ocean_runtime::kinds!["issue"];

#[webhook_processor(path = "/webhook", kinds = ["issue"])]
async fn events(_event: &WebhookEvent) -> Result<Vec<Value>, ProcessError> {
    Ok(Vec::new())
}

fn main() {}
