//! The facade crate's processor, registered and run through the runtime it knows as `engine`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use engine::testing::{TestApp, eventually};
use ocean_facade_test as _;
use serde_json::json;

const MAPPING: &str = r#"
resources:
  - kind: thing
    selector:
      query: 'true'
    port:
      entity:
        mappings:
          identifier: .id
          blueprint: '"thing"'
          properties:
            via: .via
"#;

#[tokio::test]
async fn a_processor_declared_through_a_facade_runs() {
    let app = TestApp::builder()
        .mapping(MAPPING)
        .env("OCEAN__INTEGRATION__CONFIG__TOKEN", "t0ken")
        .start()
        .await
        .unwrap();
    let body = serde_json::to_vec(&json!({ "id": "t-1" })).unwrap();
    let json = ("content-type", "application/json");
    // The verifier generated through `engine::__private` refuses a wrong token...
    let (status, _) = app
        .post_raw("/facade", body.clone(), &[json, ("x-token", "wrong")])
        .await
        .unwrap();
    assert_eq!(status, 401);
    // ...and the processor maps an accepted event into Port.
    let (status, answer) = app
        .post_raw("/facade", body, &[json, ("x-token", "t0ken")])
        .await
        .unwrap();
    assert_eq!(status, 200, "{answer}");
    let entity = eventually("the entity in Port", Duration::from_secs(15), || async {
        app.entity("thing", "t-1").await
    })
    .await;
    assert_eq!(entity["properties"]["via"], "facade");
    app.shutdown().await;
}
