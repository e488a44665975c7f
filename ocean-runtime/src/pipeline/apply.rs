//! Turning the successful jobs of one event into Port writes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::mapping::{CompiledMapping, IssueKind, MappingIssue};
use crate::metrics::Metrics;

use crate::port::{PortError, UpsertBatcher, UpsertOptions};
use crate::processor::RawResults;
use crate::queue::{DeadLetter, RefusedEntity};

/// What one event changed in Port.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Applied {
    /// Entities upserted.
    pub upserted: usize,
    /// Entities deleted.
    pub deleted: usize,
    /// Entities Port refused, or that the mapping could not produce.
    pub failed: usize,
    /// Jobs that failed for good, to be kept as dead letters.
    pub dead_letters: Vec<DeadLetter>,
    /// Entities Port refused for good (one by one, or with the whole request): kept in one dead
    /// letter of the event, whose replay writes them again.
    pub refused: Vec<RefusedEntity>,
}

/// `Err` when `error` should make the event wait (Port unreachable or throttled, or the
/// credentials refused); otherwise the refusal of every one of `identifiers`, with Port's status
/// and answer.
fn refusal(
    error: PortError,
    blueprint: &str,
    operation: &'static str,
    identifiers: impl IntoIterator<Item = Value>,
) -> Result<Vec<RefusedEntity>, PortError> {
    if error.is_transient() || error.is_credentials() {
        return Err(error);
    }
    tracing::error!(blueprint, operation, error = %error, "Port refused the request for good; its entities go to the event's dead letter");
    let status = error.status();
    let reason = error.to_string();
    Ok(identifiers
        .into_iter()
        .map(|identifier| RefusedEntity {
            blueprint: blueprint.to_owned(),
            identifier,
            operation: operation.to_owned(),
            status,
            reason: reason.clone(),
        })
        .collect())
}

/// Entities Port refused one by one in an answer it otherwise accepted.
fn one_by_one(
    failures: Vec<crate::port::EntityFailure>,
    blueprint: &str,
    operation: &'static str,
) -> impl Iterator<Item = RefusedEntity> {
    failures.into_iter().map(move |f| {
        tracing::warn!(blueprint, operation, identifier = %f.identifier, reason = f.message, "Port refused an entity");
        RefusedEntity {
            blueprint: blueprint.to_owned(),
            identifier: f.identifier,
            operation: operation.to_owned(),
            status: f.status,
            reason: f.message,
        }
    })
}

/// How often one kind of mapping issue (blueprint, field, kind) is logged at most; every occurrence
/// is counted in `ocean_mapping_issues_total`.
const ISSUE_LOG_EVERY: Duration = Duration::from_secs(60);

/// Reports mapping issues: counted every time, logged at most once a minute per blueprint, field
/// and kind (with how many were not logged since), so a field that is null in every event does not
/// flood the log.
#[derive(Debug, Default)]
pub(super) struct IssueLog {
    last: Mutex<HashMap<IssueKey, (Instant, u64)>>,
}

/// Blueprint, field, kind.
type IssueKey = (String, String, &'static str);

impl IssueLog {
    /// `None` when this issue was logged less than a minute ago; else how many were not logged.
    fn due(&self, key: IssueKey) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        match last.get_mut(&key) {
            Some((at, unlogged)) if now.duration_since(*at) < ISSUE_LOG_EVERY => {
                *unlogged += 1;
                None
            }
            Some((at, unlogged)) => {
                *at = now;
                Some(std::mem::take(unlogged))
            }
            None => {
                last.insert(key, (now, 0));
                Some(0)
            }
        }
    }

    /// Counts and logs `issues`. A field that came out `null` (or failed) is an error when its
    /// blueprint requires it (`GET /v1/blueprints/{bp}`, cached) and a warning otherwise, as in
    /// Ocean; it was sent as `null` either way.
    pub(super) async fn report(
        &self,
        batcher: &UpsertBatcher,
        metrics: &Metrics,
        issues: &[MappingIssue],
    ) {
        let mut required: HashMap<&str, Arc<BTreeSet<String>>> = HashMap::new();
        for issue in issues {
            let blueprint = issue.blueprint.as_deref().unwrap_or("");
            let field = issue.mapping_field().unwrap_or(&issue.field);
            let kind = match issue.kind {
                IssueKind::Null => "null",
                IssueKind::Failed(_) => "failed",
                IssueKind::Skipped(_) => "skipped",
                IssueKind::Note(_) => "note",
            };
            let is_required = if matches!(issue.kind, IssueKind::Null | IssueKind::Failed(_))
                && !blueprint.is_empty()
            {
                let fields = match required.get(blueprint) {
                    Some(f) => Arc::clone(f),
                    None => {
                        let f = batcher.port().required_fields(blueprint).await;
                        required.insert(blueprint, Arc::clone(&f));
                        f
                    }
                };
                // `properties.status`, or `relations.project` for any leaf of that relation.
                let top: String = field
                    .split(['.', '['])
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(".");
                fields.contains(&top)
            } else {
                false
            };
            let severity = if is_required || matches!(issue.kind, IssueKind::Skipped(_)) {
                "error"
            } else {
                "warning"
            };
            metrics.mapping_issue(blueprint, field, kind, severity);
            let Some(unlogged) = self.due((blueprint.to_owned(), field.to_owned(), kind)) else {
                continue;
            };
            let also = if unlogged > 0 {
                format!(" ({unlogged} more like it in the last minute, not logged)")
            } else {
                String::new()
            };
            match (is_required, &issue.kind) {
                (true, _) => tracing::error!(
                    blueprint,
                    "mapping: {issue}, but the blueprint requires it{also}"
                ),
                (false, IssueKind::Skipped(_)) => tracing::error!("mapping: {issue}{also}"),
                _ => tracing::warn!("mapping: {issue}{also}"),
            }
        }
    }
}

/// Maps every job's results with its resource and writes them: upserts per blueprint, then deletes
/// of the entities this integration owns, except those upserted by the same event.
///
/// What Port refuses for good (a whole request, e.g. an unknown blueprint or a 422, or single
/// entities of a partial answer) is listed in [`Applied::refused`] and the rest is still written.
///
/// # Errors
/// Port is unreachable, throttling, failing with a 5xx, or refusing the credentials: the event
/// should wait and be processed again.
pub(super) async fn apply(
    batcher: &Arc<UpsertBatcher>,
    mapping: &CompiledMapping,
    results: &[(usize, RawResults)],
    issue_log: &IssueLog,
    metrics: &Metrics,
) -> Result<Applied, PortError> {
    let mut upserts: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    let mut deletes: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut applied = Applied::default();
    let mut issues = Vec::new();
    for (index, raw) in results {
        let updated = mapping.map_items(*index, &raw.updated);
        let deleted = mapping.map_items(*index, &raw.deleted);
        applied.failed += updated.skipped() + deleted.skipped();
        issues.extend(updated.issues);
        // A deleted item's null fields do not matter; only items it could not map do.
        issues.extend(
            deleted
                .issues
                .into_iter()
                .filter(|i| matches!(i.kind, IssueKind::Skipped(_))),
        );
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
    if !issues.is_empty() {
        issue_log.report(batcher, metrics, &issues).await;
    }
    let port = batcher.port();
    for (blueprint, entities) in upserts {
        let bodies: Vec<Value> = entities.into_values().collect();
        let sent = bodies.len();
        let identifiers: Vec<Value> = bodies
            .iter()
            .map(|b| b.get("identifier").cloned().unwrap_or(Value::Null))
            .collect();
        match batcher.upsert(&blueprint, bodies, options).await {
            Ok(failures) => {
                applied.failed += failures.len();
                applied.upserted += sent - failures.len();
                applied
                    .refused
                    .extend(one_by_one(failures, &blueprint, "upsert"));
            }
            Err(e) => {
                let e = Arc::try_unwrap(e).unwrap_or_else(PortError::Shared);
                let refused = refusal(e, &blueprint, "upsert", identifiers)?;
                applied.failed += refused.len();
                applied.refused.extend(refused);
            }
        }
    }
    // Only what this integration owns is deleted; the order is worked out for those blueprints.
    let mut owned = BTreeMap::new();
    let as_values = |ids: &[String]| ids.iter().cloned().map(Value::String).collect::<Vec<_>>();
    for (blueprint, ids) in &deletes {
        let ids: Vec<String> = ids.iter().cloned().collect();
        match port.search_owned(blueprint, &ids).await {
            Ok(found) if found.is_empty() => {}
            Ok(found) => {
                owned.insert(blueprint.clone(), found);
            }
            Err(e) => {
                let refused = refusal(e, blueprint, "delete", as_values(&ids))?;
                applied.failed += refused.len();
                applied.refused.extend(refused);
            }
        }
    }
    let delete_dependents = mapping.config().delete_dependent_entities;
    for blueprint in delete_order(port, owned.keys().cloned().collect()).await {
        let ids = owned.get(&blueprint).map_or(&[][..], Vec::as_slice);
        match port
            .delete_entities(&blueprint, ids, delete_dependents)
            .await
        {
            Ok((deleted, refused)) => {
                applied.failed += refused.len();
                applied.deleted += deleted.len();
                applied
                    .refused
                    .extend(one_by_one(refused, &blueprint, "delete"));
            }
            Err(e) => {
                let refused = refusal(e, &blueprint, "delete", as_values(ids))?;
                applied.failed += refused.len();
                applied.refused.extend(refused);
            }
        }
    }
    Ok(applied)
}

/// The blueprints to delete from, those whose entities may relate to another's first (as Ocean
/// orders its deletes), so that with `deleteDependentEntities: false` an entity is not refused
/// for a dependent that the same event deletes. A cycle keeps the rest in name order.
async fn delete_order(port: &crate::port::PortClient, mut left: Vec<String>) -> Vec<String> {
    if left.len() < 2 {
        return left;
    }
    let mut edges = BTreeSet::new();
    for source in &left {
        for target in &left {
            if source != target && port.relates_to(source, target).await {
                edges.insert((source.clone(), target.clone()));
            }
        }
    }
    let mut order = Vec::with_capacity(left.len());
    while !left.is_empty() {
        // A blueprint no other one left points at.
        let next = left
            .iter()
            .position(|b| {
                !edges
                    .iter()
                    .any(|(source, target)| target == b && left.contains(source))
            })
            .unwrap_or(0);
        order.push(left.remove(next));
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issue_is_logged_at_most_once_a_minute_with_the_count_left_out() {
        let log = IssueLog::default();
        let key = || ("member".to_owned(), "properties.nick".to_owned(), "null");
        assert_eq!(log.due(key()), Some(0));
        assert_eq!(log.due(key()), None);
        assert_eq!(log.due(key()), None);
        assert_eq!(
            log.due(("member".to_owned(), "properties.nick".to_owned(), "failed")),
            Some(0),
            "another kind is logged on its own"
        );
        if let Some((at, _)) = log
            .last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(&key())
            && let Some(earlier) = at.checked_sub(ISSUE_LOG_EVERY)
        {
            *at = earlier;
        }
        assert_eq!(
            log.due(key()),
            Some(2),
            "a minute later, with the two not logged"
        );
        assert_eq!(log.due(key()), None);
    }
}
