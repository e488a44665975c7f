use ocean_runtime::prelude::*;

#[webhook_processor(path = "/webhook", kinds = ["issue"])]
async fn events(_event: &WebhookEvent) -> Result<RawResults, ProcessError> {
    Ok(RawResults::none())
}

fn main() {}
