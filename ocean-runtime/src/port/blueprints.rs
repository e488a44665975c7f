//! What the pipeline needs to know of a blueprint (the fields it requires, the blueprints its
//! relations point at), read from Port and remembered for a while.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use reqwest::Method;

use super::PortClient;

/// What the pipeline needs to know of a blueprint.
#[derive(Debug, Default)]
pub(super) struct BlueprintFacts {
    /// `properties.<name>` and `relations.<name>` it requires.
    required: Arc<BTreeSet<String>>,
    /// The blueprints its relations point at.
    targets: BTreeSet<String>,
}

/// How long what a blueprint requires is remembered (Ocean's cache of `GET /v1/blueprints/{bp}`).
const BLUEPRINT_TTL: Duration = Duration::from_secs(120);

impl PortClient {
    /// The fields blueprint `blueprint` requires, as `properties.<name>` (its schema's `required`)
    /// and `relations.<name>` (relations with `required: true`), read with
    /// `GET /v1/blueprints/{blueprint}` and remembered for 120 s. Empty when Port has no such
    /// blueprint or cannot be asked (that is logged at debug level).
    pub(crate) async fn required_fields(&self, blueprint: &str) -> Arc<BTreeSet<String>> {
        Arc::clone(&self.blueprint_facts(blueprint).await.required)
    }

    /// Whether an entity of blueprint `source` may have a relation to one of `target` (one of its
    /// relations is declared with that target); read and remembered like
    /// [`required_fields`](Self::required_fields), `false` when Port cannot say.
    pub(crate) async fn relates_to(&self, source: &str, target: &str) -> bool {
        self.blueprint_facts(source).await.targets.contains(target)
    }

    async fn blueprint_facts(&self, blueprint: &str) -> Arc<BlueprintFacts> {
        let mut cache = self.blueprints.lock().await;
        if let Some((at, facts)) = cache.get(blueprint)
            && at.elapsed() < BLUEPRINT_TTL
        {
            return Arc::clone(facts);
        }
        let mut required = BTreeSet::new();
        let mut targets = BTreeSet::new();
        match self
            .call(Method::GET, &["blueprints", blueprint], &[], None, false)
            .await
        {
            Ok(v) => {
                let bp = &v["blueprint"];
                if let Some(names) = bp["schema"]["required"].as_array() {
                    required.extend(
                        names
                            .iter()
                            .filter_map(Value::as_str)
                            .map(|p| format!("properties.{p}")),
                    );
                }
                for (name, relation) in bp["relations"].as_object().into_iter().flatten() {
                    if relation["required"] == Value::Bool(true) {
                        required.insert(format!("relations.{name}"));
                    }
                    if let Some(target) = relation["target"].as_str() {
                        targets.insert(target.to_owned());
                    }
                }
            }
            Err(e) => tracing::debug!(blueprint, error = %e, "cannot read the blueprint"),
        }
        let facts = Arc::new(BlueprintFacts {
            required: Arc::new(required),
            targets,
        });
        cache.insert(blueprint.to_owned(), (Instant::now(), Arc::clone(&facts)));
        facts
    }
}
