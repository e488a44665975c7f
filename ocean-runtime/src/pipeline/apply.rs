//! Turning the successful jobs of one event into Port writes.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::mapping::CompiledMapping;
use std::sync::Arc;

use crate::port::{PortError, UpsertBatcher, UpsertOptions};
use crate::processor::RawResults;
use crate::queue::DeadLetter;

/// What one event changed in Port.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Applied {
    /// Entities upserted.
    pub upserted: usize,
    /// Entities deleted.
    pub deleted: usize,
    /// Entities Port refused, or that the mapping could not produce.
    pub failed: usize,
    /// Jobs that failed for good, to be kept as dead letters.
    pub dead_letters: Vec<DeadLetter>,
}

/// Maps every job's results with its resource and writes them: upserts per blueprint, then deletes
/// of the entities this integration owns, except those upserted by the same event.
pub(super) async fn apply(
    batcher: &Arc<UpsertBatcher>,
    mapping: &CompiledMapping,
    results: &[(usize, RawResults)],
) -> Result<Applied, PortError> {
    let mut upserts: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    let mut deletes: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut applied = Applied::default();
    for (index, raw) in results {
        let updated = mapping.map_items(*index, &raw.updated);
        let deleted = mapping.map_items(*index, &raw.deleted);
        for issue in updated.issues.iter().chain(&deleted.issues) {
            tracing::warn!(resource = index, "mapping: {issue}");
        }
        for entity in updated.passed {
            // A search-query identifier has no key of its own; give each its own slot.
            let key = entity
                .identifier_str()
                .map_or_else(|| entity.identifier.to_string(), str::to_owned);
            upserts
                .entry(entity.blueprint)
                .or_default()
                .insert(key, entity.body);
        }
        for entity in updated.failed.into_iter().chain(deleted.passed) {
            if let Some(id) = entity.identifier_str().map(str::to_owned) {
                deletes.entry(entity.blueprint).or_default().insert(id);
            }
        }
    }
    for (blueprint, ids) in &mut deletes {
        if let Some(upserted) = upserts.get(blueprint) {
            ids.retain(|id| !upserted.contains_key(id));
        }
    }
    let options = UpsertOptions {
        merge: mapping.config().enable_merge_entity,
        create_missing_related_entities: mapping.config().create_missing_related_entities,
    };
    let port = batcher.port();
    for (blueprint, entities) in upserts {
        let bodies: Vec<Value> = entities.into_values().collect();
        let sent = bodies.len();
        let failures = batcher
            .upsert(&blueprint, bodies, options)
            .await
            .map_err(|e| Arc::try_unwrap(e).unwrap_or_else(PortError::Shared))?;
        for f in &failures {
            tracing::warn!(blueprint, identifier = %f.identifier, reason = f.message, "Port refused an entity");
        }
        applied.failed += failures.len();
        applied.upserted += sent - failures.len();
    }
    for (blueprint, ids) in &deletes {
        let ids: Vec<String> = ids.iter().cloned().collect();
        let owned = port.search_owned(blueprint, &ids).await?;
        if owned.is_empty() {
            continue;
        }
        let deleted = port
            .delete_entities(
                blueprint,
                &owned,
                mapping.config().delete_dependent_entities,
            )
            .await?;
        applied.deleted += deleted.len();
    }
    Ok(applied)
}
