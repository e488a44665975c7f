//! An integration that knows ocean-rs only as `engine`, as a company facade would re-export it.
//! Every macro is told where the runtime is with `crate = "engine"`.

engine::kinds!["thing"];

/// The processors.
pub mod processors {
    use engine::prelude::{ProcessError, RawResults, WebhookEvent, json};

    /// Maps a `thing` webhook to one raw item, retried and timed out as the keys say.
    #[engine::webhook_processor(
        crate = "engine",
        path = "/facade",
        kinds = ["thing"],
        group = ".id",
        authenticate = token(header = "X-Token", secret = "token"),
        retry(max = 2, initial = "10ms"),
        timeout = "5s",
    )]
    pub async fn things(event: &WebhookEvent) -> Result<RawResults, ProcessError> {
        let id = event.payload()["id"].clone();
        Ok(RawResults::updated([json!({ "id": id, "via": "facade" })]))
    }
}
