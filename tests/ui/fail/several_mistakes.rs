use ocean_runtime::prelude::*;

ocean_runtime::kinds!["issue"];

#[webhook_processor(
    path = "webhook",
    kinds = ["issue", "issue"],
    colour = "blue",
    timeout = "soon",
    group = ".issue.key |",
    retry(max = 3, base = 0),
)]
async fn events(_event: &WebhookEvent) -> Result<RawResults, ProcessError> {
    Ok(RawResults::none())
}

fn main() {}
