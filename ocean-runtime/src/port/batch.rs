//! Upserts from different events, sent together: while a bulk request of a blueprint is on its way,
//! the entities other events want written wait, and the next request carries up to
//! [`UPSERT_BATCH_MAX`] of them. Fewer, fuller requests; the same per-entity results.
//!
//! Order per entity is kept: an entity that is in a request on its way, or already in the batch
//! being built, waits for a later request, which leaves only after the earlier one was answered.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde_json::Value;
use tokio::sync::oneshot;

use super::{EntityFailure, PortClient, PortError, UPSERT_BATCH_MAX, UpsertOptions};

/// Requests of one blueprint (and options) on their way at once.
const MAX_IN_FLIGHT: usize = 4;

/// What one entity's upsert came to: `Ok(None)` written, `Ok(Some(failure))` refused by Port,
/// `Err` the whole request failed.
type Outcome = Result<Option<EntityFailure>, Arc<PortError>>;

struct Waiting {
    entity: Value,
    done: oneshot::Sender<Outcome>,
}

#[derive(Default)]
struct Lane {
    waiting: VecDeque<Waiting>,
    /// Identifiers in requests on their way.
    in_flight: Vec<Value>,
    senders: usize,
}

type LaneKey = (String, bool, bool);

/// Coalesces bulk upserts of concurrent events (see the module docs).
pub(crate) struct UpsertBatcher {
    port: Arc<PortClient>,
    lanes: Mutex<HashMap<LaneKey, Lane>>,
}

impl UpsertBatcher {
    pub(crate) fn new(port: Arc<PortClient>) -> Arc<Self> {
        Arc::new(Self {
            port,
            lanes: Mutex::new(HashMap::new()),
        })
    }

    /// The client the batches go through.
    pub(crate) fn port(&self) -> &PortClient {
        &self.port
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<LaneKey, Lane>> {
        self.lanes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Upserts `entities` of `blueprint`, in requests shared with other callers, and returns the
    /// ones Port refused.
    ///
    /// # Errors
    /// A request holding some of them failed as a whole.
    pub(crate) async fn upsert(
        self: &Arc<Self>,
        blueprint: &str,
        entities: Vec<Value>,
        options: UpsertOptions,
    ) -> Result<Vec<EntityFailure>, Arc<PortError>> {
        let key: LaneKey = (
            blueprint.to_owned(),
            options.merge,
            options.create_missing_related_entities,
        );
        let mut answers = Vec::with_capacity(entities.len());
        let start_sender = {
            let mut lanes = self.lock();
            let lane = lanes.entry(key.clone()).or_default();
            for entity in entities {
                let (done, answer) = oneshot::channel();
                lane.waiting.push_back(Waiting { entity, done });
                answers.push(answer);
            }
            let start = lane.senders < MAX_IN_FLIGHT;
            if start {
                lane.senders += 1;
            }
            start
        };
        if start_sender {
            let this = Arc::clone(self);
            tokio::spawn(async move { this.send(key, options).await });
        }
        let mut failures = Vec::new();
        for answer in answers {
            match answer.await {
                Ok(Ok(None)) => {}
                Ok(Ok(Some(failure))) => failures.push(failure),
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(Arc::new(PortError::Decode {
                        path: "bulk upsert".to_owned(),
                        reason: "the request was abandoned".to_owned(),
                    }));
                }
            }
        }
        Ok(failures)
    }

    /// Takes the next batch of a lane: waiting entities in order, skipping any whose identifier
    /// is on its way or already taken (they keep their place for a later batch).
    fn take(lane: &mut Lane) -> Vec<Waiting> {
        let mut batch: Vec<Waiting> = Vec::new();
        let mut kept = VecDeque::new();
        while let Some(w) = lane.waiting.pop_front() {
            if batch.len() == UPSERT_BATCH_MAX {
                kept.push_back(w);
                continue;
            }
            let id = w.entity.get("identifier").unwrap_or(&Value::Null);
            let busy = lane.in_flight.iter().any(|f| f == id)
                || batch
                    .iter()
                    .any(|b| b.entity.get("identifier").unwrap_or(&Value::Null) == id);
            if busy {
                kept.push_back(w);
            } else {
                batch.push(w);
            }
        }
        lane.waiting = kept;
        for w in &batch {
            lane.in_flight
                .push(w.entity.get("identifier").cloned().unwrap_or(Value::Null));
        }
        batch
    }

    /// Sends batches of a lane until nothing sendable waits.
    async fn send(self: Arc<Self>, key: LaneKey, options: UpsertOptions) {
        loop {
            let batch = {
                let mut lanes = self.lock();
                let Some(lane) = lanes.get_mut(&key) else {
                    return;
                };
                let batch = Self::take(lane);
                if batch.is_empty() {
                    lane.senders -= 1;
                    if lane.senders == 0 && lane.waiting.is_empty() && lane.in_flight.is_empty() {
                        lanes.remove(&key);
                    }
                    return;
                }
                batch
            };
            let (entities, dones): (Vec<Value>, Vec<_>) =
                batch.into_iter().map(|w| (w.entity, w.done)).unzip();
            let result = self.port.upsert_entities(&key.0, &entities, options).await;
            {
                let mut lanes = self.lock();
                if let Some(lane) = lanes.get_mut(&key) {
                    for e in &entities {
                        let id = e.get("identifier").unwrap_or(&Value::Null);
                        if let Some(i) = lane.in_flight.iter().position(|f| f == id) {
                            lane.in_flight.swap_remove(i);
                        }
                    }
                }
            }
            match result {
                Ok(failures) => {
                    for (entity, done) in entities.iter().zip(dones) {
                        let id = entity.get("identifier").unwrap_or(&Value::Null);
                        let failure = failures.iter().find(|f| &f.identifier == id).cloned();
                        let _ = done.send(Ok(failure));
                    }
                }
                Err(e) => {
                    let e = Arc::new(e);
                    for done in dones {
                        let _ = done.send(Err(Arc::clone(&e)));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use serde_json::json;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// A loopback Port that answers each bulk upsert after a short delay (so that requests overlap),
    /// records the identifiers of every request, and refuses identifier `bad` with a 207-style error.
    /// Also counts the requests carrying `same` that overlapped another one carrying it.
    async fn port() -> (
        Arc<PortClient>,
        Arc<Mutex<Vec<Vec<String>>>>,
        Arc<AtomicUsize>,
    ) {
        let seen: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
        let record = Arc::clone(&seen);
        let overlaps = Arc::new(AtomicUsize::new(0));
        let active_same = Arc::new(AtomicUsize::new(0));
        let (overlaps_in, active_in) = (Arc::clone(&overlaps), Arc::clone(&active_same));
        let app = axum::Router::new()
            .route("/v1/auth/access_token", crate::port::test_token_route())
            .route(
                "/v1/blueprints/{bp}/entities/bulk",
                axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
                    let record = Arc::clone(&record);
                    let (overlaps, active) = (Arc::clone(&overlaps_in), Arc::clone(&active_in));
                    async move {
                        let ids: Vec<String> = body["entities"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|e| e["identifier"].as_str().unwrap().to_owned())
                            .collect();
                        let errors: Vec<Value> = ids
                            .iter()
                            .enumerate()
                            .filter(|(_, id)| *id == "bad")
                            .map(|(i, _)| json!({"index": i, "identifier": "bad", "message": "invalid"}))
                            .collect();
                        let same = ids.iter().any(|id| id == "same");
                        if same && active.fetch_add(1, Ordering::SeqCst) > 0 {
                            overlaps.fetch_add(1, Ordering::SeqCst);
                        }
                        record.lock().unwrap().push(ids);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        if same {
                            active.fetch_sub(1, Ordering::SeqCst);
                        }
                        axum::Json(json!({"entities": [], "errors": errors}))
                    }
                }),
            );
        let client = crate::port::serve_test_port(app).await;
        (Arc::new(client), seen, overlaps)
    }

    const OPTIONS: UpsertOptions = UpsertOptions {
        merge: true,
        create_missing_related_entities: false,
    };

    fn entity(id: &str, version: u32) -> Value {
        json!({"identifier": id, "properties": {"version": version}})
    }

    #[tokio::test]
    async fn concurrent_events_share_requests_and_get_their_own_results() {
        let (port, seen, _) = port().await;
        let batcher = UpsertBatcher::new(port);
        let calls: Vec<_> = (0..60)
            .map(|n| {
                let batcher = Arc::clone(&batcher);
                let id = if n == 13 {
                    "bad".to_owned()
                } else {
                    format!("e{n}")
                };
                tokio::spawn(async move {
                    (n, batcher.upsert("b", vec![entity(&id, 1)], OPTIONS).await)
                })
            })
            .collect();
        for call in calls {
            let (n, failures) = call.await.unwrap();
            let failures = failures.unwrap();
            if n == 13 {
                assert_eq!(failures.len(), 1);
                assert_eq!(failures[0].identifier, "bad");
                assert_eq!(failures[0].message, "invalid");
            } else {
                assert!(failures.is_empty(), "event {n}: {failures:?}");
            }
        }
        let requests = seen.lock().unwrap().clone();
        let total: usize = requests.iter().map(Vec::len).sum();
        assert_eq!(total, 60, "every entity sent once");
        assert!(requests.iter().all(|r| r.len() <= UPSERT_BATCH_MAX));
        assert!(
            requests.len() < 20,
            "60 one-entity upserts took {} requests",
            requests.len()
        );
    }

    #[tokio::test]
    async fn one_entity_is_never_in_two_requests_at_once() {
        let (port, seen, overlaps) = port().await;
        let batcher = UpsertBatcher::new(port);
        let calls: Vec<_> = (0..12)
            .map(|n| {
                let batcher = Arc::clone(&batcher);
                tokio::spawn(async move {
                    batcher
                        .upsert(
                            "b",
                            vec![entity("same", n), entity(&format!("o{n}"), n)],
                            OPTIONS,
                        )
                        .await
                })
            })
            .collect();
        for call in calls {
            assert!(call.await.unwrap().unwrap().is_empty());
        }
        let requests = seen.lock().unwrap().clone();
        let with_same = requests
            .iter()
            .filter(|r| r.iter().any(|id| id == "same"))
            .count();
        assert_eq!(with_same, 12, "each version of `same` in its own request");
        assert_eq!(
            overlaps.load(Ordering::SeqCst),
            0,
            "requests with `same` overlapped"
        );
        assert!(
            requests
                .iter()
                .all(|r| r.iter().filter(|id| *id == "same").count() <= 1)
        );
    }
}
