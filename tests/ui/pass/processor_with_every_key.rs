use ocean_runtime::prelude::*;

ocean_runtime::kinds!["issue", "pull-request"];

#[webhook_processor(
    path = "/webhook",
    kinds = ["issue", "pull-request"],
    matches = r#".action == "opened" or .action == "closed""#,
    name = "issues-and-prs",
)]
async fn events(event: &WebhookEvent) -> Result<RawResults, ProcessError> {
    Ok(RawResults::updated([event.payload().clone()]))
}

#[webhook_processor(path = "/other/hook", kinds = [r"issue"])]
async fn other(_event: &WebhookEvent) -> Result<RawResults, ProcessError> {
    Ok(RawResults::none())
}

// trybuild runs pass cases, so `main` checks what the attributes registered instead of serving.
fn main() {
    let registry = ocean_runtime::registry::Registry::from_inventory().unwrap();
    let names = |path: &str| -> Vec<&str> {
        registry.processors(path).unwrap().iter().map(|p| p.name()).collect()
    };
    assert_eq!(names("/webhook"), ["issues-and-prs"]);
    assert_eq!(names("/other/hook"), ["other"]);
    assert_eq!(registry.kinds(), ["issue", "pull-request"]);
}
