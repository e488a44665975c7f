//! Mapping features end to end, over loopback into the built-in Port: `icon`, `team`,
//! `itemsToParse` with `itemsToParseName` and the top-level transform, a search-query identifier
//! and a search-query relation.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use ocean_runtime::prelude::*;
use ocean_runtime::testing::{TestApp, eventually, metric};

ocean_runtime::kinds!["team", "repo", "pull", "team-title", "member"];

#[webhook_processor(path = "/mapping", kinds = ["team"], matches = r#".type == "team""#)]
async fn teams(event: &WebhookEvent) -> Result<RawResults, ProcessError> {
    Ok(RawResults::updated([event.payload().clone()]))
}

#[webhook_processor(path = "/mapping", kinds = ["repo", "pull"], matches = r#".type == "repo""#)]
async fn repos(event: &WebhookEvent) -> Result<RawResults, ProcessError> {
    Ok(RawResults::updated([event.payload().clone()]))
}

#[webhook_processor(path = "/mapping", kinds = ["team-title"], matches = r#".type == "rename""#)]
async fn renames(event: &WebhookEvent) -> Result<RawResults, ProcessError> {
    Ok(RawResults::updated([event.payload().clone()]))
}

#[webhook_processor(path = "/mapping", kinds = ["member"], matches = r#".type == "member""#)]
async fn members(event: &WebhookEvent) -> Result<RawResults, ProcessError> {
    Ok(RawResults::updated(
        event.payload()["members"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
    ))
}

const MAPPING: &str = r#"
resources:
  - kind: team
    selector: {query: 'true'}
    port:
      entity:
        mappings:
          identifier: .name
          title: .name
          blueprint: '"team"'
          properties:
            email: .email
  - kind: repo
    selector: {query: 'true'}
    port:
      entity:
        mappings:
          identifier: .repo
          title: .repo
          icon: .icon
          team: .team
          blueprint: '"repo"'
          relations:
            owner:
              combinator: '"and"'
              rules:
                - property: '"email"'
                  operator: '"="'
                  value: .owner_email
  - kind: pull
    selector: {query: 'true'}
    port:
      itemsToParse: .pulls
      itemsToParseName: pull
      entity:
        mappings:
          identifier: '.repo + "-" + (.pull.n | tostring)'
          title: .pull.title
          blueprint: '"pull"'
          properties:
            parentStillHasPulls: '.pulls != null'
          relations:
            repo: .repo
  - kind: team-title
    selector: {query: 'true'}
    port:
      entity:
        mappings:
          identifier:
            combinator: '"and"'
            rules:
              - property: '"email"'
                operator: '"="'
                value: .email
          title: .title
          blueprint: '"team"'
"#;

const WAIT: Duration = Duration::from_secs(15);

async fn app(mapping: &str) -> TestApp {
    TestApp::builder()
        .paths(&["/mapping"])
        .mapping(mapping)
        .start()
        .await
        .unwrap()
}

#[tokio::test]
async fn every_mapping_feature_reaches_port() {
    let app = app(MAPPING).await;
    let post = |body: Value| {
        let app = &app;
        async move {
            let (status, answer) = app.post("/mapping", &body).await.unwrap();
            assert_eq!(status, 200, "{answer}");
        }
    };
    post(json!({"type": "team", "name": "core", "email": "core@acme.io"})).await;
    eventually("team core", WAIT, || app.entity("team", "core")).await;

    post(json!({
        "type": "repo", "repo": "web", "icon": "Github", "team": "core",
        "owner_email": "core@acme.io",
        "pulls": [{"n": 1, "title": "First"}, {"n": 2, "title": "Second"}]
    }))
    .await;
    let repo = eventually("repo web", WAIT, || app.entity("repo", "web")).await;
    assert_eq!(repo["icon"], "Github");
    assert_eq!(repo["team"], "core");
    assert_eq!(
        repo["relations"]["owner"], "core",
        "the search-query relation resolved"
    );
    for (n, title) in [(1, "First"), (2, "Second")] {
        let id = format!("web-{n}");
        let pull = eventually("a pull", WAIT, || app.entity("pull", &id)).await;
        assert_eq!(pull["title"], title);
        assert_eq!(pull["relations"]["repo"], "web");
        assert_eq!(
            pull["properties"]["parentStillHasPulls"], false,
            "itemsToParseTopLevelTransform removed the array from the parent"
        );
    }

    // A search-query identifier updates the entity it finds.
    post(json!({"type": "rename", "email": "core@acme.io", "title": "Core platform"})).await;
    eventually("team core renamed", WAIT, || async {
        let team = app.entity("team", "core").await?;
        Ok::<_, ocean_runtime::testing::TestError>(team.filter(|t| t["title"] == "Core platform"))
    })
    .await;
    assert_eq!(
        app.entities("team").await.unwrap().len(),
        1,
        "no new team was created"
    );
    app.shutdown().await;
}

const MEMBERS: &str = r#"
resources:
  - kind: member
    selector: {query: 'true'}
    port:
      entity:
        mappings:
          identifier: .name
          blueprint: '"member"'
          properties:
            email: .contact.email
            nick: .nick
"#;

fn issue_count(text: &str, field: &str, kind: &str, severity: &str) -> f64 {
    metric(
        text,
        &format!(
            "ocean_mapping_issues_total{{blueprint=\"member\",field=\"{field}\",kind=\"{kind}\",severity=\"{severity}\"}}"
        ),
    )
}

#[tokio::test]
async fn null_fields_are_rated_by_what_the_blueprint_requires_and_skipped_items_counted() {
    let app = app(MEMBERS).await;
    app.create_blueprint(&json!({
        "identifier": "member", "title": "Member",
        "schema": {"properties": {"email": {"type": "string"}, "nick": {"type": "string"}},
                   "required": ["email"]}
    }))
    .await
    .unwrap();

    let (status, answer) = app
        .post(
            "/mapping",
            &json!({"type": "member", "members": [
                {"name": "ada", "contact": {"email": "ada@acme.io"}, "nick": "countess"},
                {"name": "bob", "contact": {"email": "bob@acme.io"}},
                {"name": "cyd", "nick": "c"},
                {"nick": "nameless"}
            ]}),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{answer}");
    let metrics = eventually("the mapping issues counted", WAIT, || async {
        let text = app.metrics().await?;
        Ok::<_, ocean_runtime::testing::TestError>(
            (issue_count(&text, "identifier", "skipped", "error") > 0.0).then_some(text),
        )
    })
    .await;
    // bob has no nick (optional: a warning); cyd has no email, which `member` requires (an
    // error, and Port refuses the entity); the fourth item has no identifier and is skipped.
    for (field, kind, severity, count) in [
        ("properties.nick", "null", "warning", 1.0),
        ("properties.email", "null", "error", 1.0),
        ("properties.email", "null", "warning", 0.0),
        ("identifier", "skipped", "error", 1.0),
    ] {
        assert_eq!(
            issue_count(&metrics, field, kind, severity),
            count,
            "{field} {kind} {severity}\n{metrics}"
        );
    }
    assert!(
        !metrics.contains("field=\"identifier\",kind=\"null\""),
        "a skipped item reports only its skip\n{metrics}"
    );
    let ada = eventually("ada", WAIT, || app.entity("member", "ada")).await;
    assert_eq!(ada["properties"]["nick"], "countess");
    let bob = eventually("bob", WAIT, || app.entity("member", "bob")).await;
    assert_eq!(bob["properties"]["email"], "bob@acme.io");
    assert_eq!(
        app.entity("member", "cyd").await.unwrap(),
        None,
        "Port refused it"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn create_missing_related_entities_false_reaches_port_and_a_dangling_relation_is_refused() {
    let mapping = MEMBERS
        .replace(
            "resources:",
            "createMissingRelatedEntities: false\nresources:",
        )
        .replace(
            "            nick: .nick",
            "            nick: .nick\n          relations:\n            team: .team",
        );
    let app = app(&mapping).await;
    app.create_blueprint(&json!({"identifier": "team", "title": "Team"}))
        .await
        .unwrap();
    app.create_blueprint(&json!({"identifier": "member", "title": "Member",
           "relations": {"team": {"target": "team", "many": false, "required": false}}}))
        .await
        .unwrap();
    let (status, answer) = app
        .post(
            "/mapping",
            &json!({"type": "member", "members": [
                {"name": "ada", "contact": {"email": "ada@acme.io"}, "team": "ghost"},
                {"name": "bob", "contact": {"email": "bob@acme.io"}, "nick": "b"}
            ]}),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{answer}");
    // Both are in one bulk request: once bob is there, ada's answer is in too.
    eventually("bob", WAIT, || app.entity("member", "bob")).await;
    assert_eq!(
        app.entity("member", "ada").await.unwrap(),
        None,
        "refused: its team does not exist and the mapping said not to create it"
    );
    assert!(
        app.entities("team").await.unwrap().is_empty(),
        "no placeholder team"
    );
    app.shutdown().await;
}
