//! The mapping's request options and the delete rules end to end, over loopback into the built-in
//! Port: `enableMergeEntity`, `deleteDependentEntities`, an upsert cancelling a delete of the same
//! entity in one event, and the mapping taken up from Port's integration record on its timer.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use ocean_runtime::prelude::*;
use ocean_runtime::testing::{TestApp, eventually, metric};

ocean_runtime::kinds!["team", "member", "team-status", "team-owner"];

const WAIT: Duration = Duration::from_secs(15);

#[webhook_processor(path = "/options", kinds = ["team-status"], matches = r#".type == "status""#)]
async fn statuses(event: &WebhookEvent) -> Result<RawResults, ProcessError> {
    Ok(RawResults::updated([event.payload().clone()]))
}

#[webhook_processor(path = "/options", kinds = ["team-owner"], matches = r#".type == "owner""#)]
async fn owners(event: &WebhookEvent) -> Result<RawResults, ProcessError> {
    Ok(RawResults::updated([event.payload().clone()]))
}

/// Passes on the `updated` and `deleted` items the event lists.
#[webhook_processor(path = "/options", kinds = ["team", "member"], matches = r#".type == "change""#)]
async fn changes(event: &WebhookEvent) -> Result<RawResults, ProcessError> {
    let items = |name: &str| {
        event.payload()[name]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    Ok(RawResults {
        updated: items("updated"),
        deleted: items("deleted"),
    })
}

/// `{options}` is replaced by the top-level options of each test.
const MAPPING: &str = r#"
{options}
resources:
  - kind: team-status
    selector: {query: 'true'}
    port:
      entity:
        mappings:
          identifier: .id
          title: .id
          blueprint: '"team"'
          properties:
            status: .status
  - kind: team-owner
    selector: {query: 'true'}
    port:
      entity:
        mappings:
          identifier: .id
          title: .id
          blueprint: '"team"'
          properties:
            owner: .owner
  - kind: team
    selector: {query: '.kind == "team"'}
    port:
      entity:
        mappings:
          identifier: .id
          title: .title // .id
          blueprint: '"team"'
  - kind: member
    selector: {query: '.kind == "member"'}
    port:
      entity:
        mappings:
          identifier: .id
          title: .id
          blueprint: '"teammate"'
          relations:
            team: .team
"#;

async fn app(options: &str) -> TestApp {
    TestApp::builder()
        .paths(&["/options"])
        .mapping(MAPPING.replace("{options}", options))
        .start()
        .await
        .unwrap()
}

async fn post(app: &TestApp, body: Value) {
    let (status, answer) = app.post("/options", &body).await.unwrap();
    assert_eq!(status, 200, "{answer}");
}

/// Waits until `identifier` of `blueprint` exists (`true`) or not (`false`); returns the entity.
async fn until_exists(app: &TestApp, blueprint: &str, identifier: &str, exists: bool) -> Value {
    eventually(
        &format!("{blueprint}/{identifier} to exist: {exists}"),
        WAIT,
        || async move {
            let found = app.entity(blueprint, identifier).await?;
            Ok::<_, ocean_runtime::testing::TestError>(match (found, exists) {
                (Some(e), true) => Some(e),
                (None, false) => Some(Value::Null),
                _ => None,
            })
        },
    )
    .await
}

async fn until_property(app: &TestApp, identifier: &str, name: &str, value: &str) -> Value {
    eventually(
        &format!("team/{identifier} to have {name} = {value}"),
        WAIT,
        || async move {
            let found = app.entity("team", identifier).await?;
            Ok::<_, ocean_runtime::testing::TestError>(
                found.filter(|e| e["properties"][name] == value),
            )
        },
    )
    .await
}

#[tokio::test]
async fn merge_keeps_what_another_resource_wrote_and_replace_does_not() {
    for (options, kept) in [
        ("enableMergeEntity: true", true),
        ("enableMergeEntity: false", false),
    ] {
        let app = app(options).await;
        post(
            &app,
            json!({"type": "status", "id": "core", "status": "green"}),
        )
        .await;
        until_property(&app, "core", "status", "green").await;
        post(&app, json!({"type": "owner", "id": "core", "owner": "ann"})).await;
        let team = until_property(&app, "core", "owner", "ann").await;
        if kept {
            assert_eq!(team["properties"]["status"], "green", "{options}: {team}");
        } else {
            assert!(
                team["properties"].get("status").is_none(),
                "{options}: the second upsert replaces the entity: {team}"
            );
        }
        app.shutdown().await;
    }
}

#[tokio::test]
async fn an_upsert_in_the_same_event_cancels_the_delete_of_that_entity() {
    let app = app("").await;
    post(
        &app,
        json!({"type": "change", "updated": [
            {"kind": "team", "id": "kept"}, {"kind": "team", "id": "gone"}
        ]}),
    )
    .await;
    until_exists(&app, "team", "gone", true).await;
    until_exists(&app, "team", "kept", true).await;
    post(
        &app,
        json!({"type": "change",
               "updated": [{"kind": "team", "id": "kept", "title": "Kept"}],
               "deleted": [{"kind": "team", "id": "kept"}, {"kind": "team", "id": "gone"}]}),
    )
    .await;
    // Both writes of that event are done once `gone` is gone.
    until_exists(&app, "team", "gone", false).await;
    let kept = app.entity("team", "kept").await.unwrap();
    assert_eq!(
        kept.map(|e| e["title"].clone()),
        Some(json!("Kept")),
        "upserted, not deleted"
    );
    app.shutdown().await;
}

async fn teams_and_members(options: &str) -> TestApp {
    let app = app(options).await;
    app.create_blueprint(&json!({"identifier": "team", "title": "Team"}))
        .await
        .unwrap();
    // Named so that, by name alone, teams would be deleted first.
    app.create_blueprint(&json!({"identifier": "teammate", "title": "Teammate",
        "relations": {"team": {"target": "team", "many": false, "required": true}}}))
        .await
        .unwrap();
    post(
        &app,
        json!({"type": "change", "updated": [
            {"kind": "team", "id": "core"}, {"kind": "team", "id": "web"},
            {"kind": "member", "id": "ann", "team": "core"},
            {"kind": "member", "id": "bob", "team": "web"}
        ]}),
    )
    .await;
    until_exists(&app, "teammate", "ann", true).await;
    until_exists(&app, "teammate", "bob", true).await;
    app
}

#[tokio::test]
async fn deleting_a_team_takes_its_members_with_it_by_default() {
    let app = teams_and_members("").await;
    post(
        &app,
        json!({"type": "change", "deleted": [{"kind": "team", "id": "core"}]}),
    )
    .await;
    until_exists(&app, "team", "core", false).await;
    assert_eq!(
        app.entity("teammate", "ann").await.unwrap(),
        None,
        "its dependent went with it"
    );
    assert!(
        app.entity("teammate", "bob").await.unwrap().is_some(),
        "another team's member stays"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn without_delete_dependents_a_team_with_members_stays_unless_they_go_first() {
    let app = teams_and_members("deleteDependentEntities: false").await;
    post(
        &app,
        json!({"type": "change", "deleted": [{"kind": "team", "id": "core"}]}),
    )
    .await;
    // Acked (the queue is empty) once Port has answered the delete.
    eventually("the delete event to be settled", WAIT, || async {
        Ok::<_, String>((app.queue_depth().await == 0).then_some(()))
    })
    .await;
    assert!(
        app.entity("team", "core").await.unwrap().is_some(),
        "Port refused: it has a member"
    );
    assert!(app.entity("teammate", "ann").await.unwrap().is_some());

    // The same event deleting the member too: members are deleted before the team they need.
    post(
        &app,
        json!({"type": "change", "deleted": [
            {"kind": "team", "id": "web"}, {"kind": "member", "id": "bob", "team": "web"}
        ]}),
    )
    .await;
    until_exists(&app, "team", "web", false).await;
    assert_eq!(app.entity("teammate", "bob").await.unwrap(), None);
    app.shutdown().await;
}

fn loads(text: &str, outcome: &str) -> f64 {
    metric(
        text,
        &format!("ocean_mapping_loads_total{{outcome=\"{outcome}\"}}"),
    )
}

#[tokio::test]
async fn the_mapping_is_taken_up_from_ports_record_on_its_timer_and_a_bad_version_refused() {
    let app = TestApp::builder()
        .paths(&["/options"])
        .mapping(MAPPING.replace("{options}", ""))
        .env("OCEAN__PORT__PORT_APP_CONFIG_CACHE_TTL", "1")
        .start()
        .await
        .unwrap();
    let metrics = || async { app.metrics().await.unwrap() };
    let renamed = MAPPING
        .replace("{options}", "")
        .replace("title: .title // .id", r#"title: '"Team " + .id'"#);
    app.set_mapping(&renamed).await.unwrap();
    // No reload is asked for: the timer finds the new version in the record.
    let mut n = 0;
    eventually("the new mapping to be in force", WAIT, || {
        n += 1;
        let id = format!("t{n}");
        let app = &app;
        async move {
            post(
                app,
                json!({"type": "change", "updated": [{"kind": "team", "id": id}]}),
            )
            .await;
            let team = until_exists(app, "team", &id, true).await;
            Ok::<_, String>((team["title"] == format!("Team {id}")).then_some(()))
        }
    })
    .await;
    assert!(
        loads(&metrics().await, "applied") >= 2.0,
        "start-up and the new version"
    );

    let broken = renamed.replace(r#"title: '"Team " + .id'"#, "title: .id |");
    app.set_mapping(&broken).await.unwrap();
    let refused_before = loads(&metrics().await, "refused");
    eventually("the bad version to be refused", WAIT, || async {
        Ok::<_, String>((loads(&metrics().await, "refused") > refused_before).then_some(()))
    })
    .await;
    post(
        &app,
        json!({"type": "change", "updated": [{"kind": "team", "id": "after"}]}),
    )
    .await;
    let team = until_exists(&app, "team", "after", true).await;
    assert_eq!(
        team["title"], "Team after",
        "the previous version keeps serving"
    );
    app.shutdown().await;
}
