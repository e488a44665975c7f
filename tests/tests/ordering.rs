//! Per-group order: with hundreds of events in flight (the default) or a few workers, events
//! sharing a group key still start one at a time, in arrival order, and the last one's entity is
//! the one Port keeps; different groups run side by side.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ocean_runtime::prelude::*;
use ocean_runtime::testing::{TestApp, eventually};

mod common;
use common::{WAIT, on};

ocean_runtime::kinds!["thing"];

const GROUPS: u64 = 64;
const PER_GROUP: u64 = 16;

#[derive(Default)]
struct Record {
    /// (group, n) in the order jobs started.
    starts: Vec<(String, u64)>,
    running: HashMap<String, usize>,
    running_all: usize,
    max_same_group: usize,
    max_all: usize,
}

static RECORD: Mutex<Option<Record>> = Mutex::new(None);

fn record<T>(f: impl FnOnce(&mut Record) -> T) -> T {
    f(RECORD.lock().unwrap().get_or_insert_with(Record::default))
}

#[webhook_processor(path = "/crowd", kinds = ["thing"], group = ".group")]
async fn crowd(event: &WebhookEvent) -> Result<RawResults, ProcessError> {
    let group = event.str_at("/group")?.to_owned();
    let n = event.payload()["n"].as_u64().unwrap_or(0);
    record(|r| {
        r.starts.push((group.clone(), n));
        let same = r.running.entry(group.clone()).or_default();
        *same += 1;
        r.max_same_group = r.max_same_group.max(*same);
        r.running_all += 1;
        r.max_all = r.max_all.max(r.running_all);
    });
    // Work of uneven length, so that a later event of a group would overtake an earlier one if
    // the queue let it.
    tokio::time::sleep(Duration::from_millis(1 + (n * 7 + group.len() as u64) % 5)).await;
    record(|r| {
        if let Some(same) = r.running.get_mut(&group) {
            *same -= 1;
        }
        r.running_all -= 1;
    });
    Ok(RawResults::updated([json!({"id": group, "n": n})]))
}

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
            n: .n
"#;

async fn check(backend: &str) {
    *RECORD.lock().unwrap() = None;
    let app = TestApp::builder()
        .paths(&["/crowd"])
        .mapping(MAPPING)
        .env("OCEAN__QUEUE__BACKEND", backend)
        .start()
        .await
        .unwrap();
    app.create_blueprint(&json!({"identifier": "thing", "title": "Thing",
        "schema": {"properties": {"n": {"type": "number"}}}}))
        .await
        .unwrap();
    // One sender per group, each waiting for its 200 before the next event: arrival order within a
    // group is then n = 0, 1, 2…; the groups' senders run all at once.
    let senders = (0..GROUPS).map(|g| {
        let app = &app;
        async move {
            for n in 0..PER_GROUP {
                let (status, answer) = app
                    .post("/crowd", &json!({"group": format!("g{g}"), "n": n}))
                    .await
                    .unwrap();
                assert_eq!(status, 200, "{answer}");
            }
        }
    });
    futures_util::future::join_all(senders).await;
    let total = usize::try_from(GROUPS * PER_GROUP).unwrap();
    eventually("every event processed", Duration::from_secs(60), || async {
        Ok::<_, ()>((app.queue_depth().await == 0).then_some(()))
    })
    .await;
    let (starts, max_same, max_all) = record(|r| (r.starts.clone(), r.max_same_group, r.max_all));
    assert_eq!(starts.len(), total, "{backend}: each event ran once");
    for g in 0..GROUPS {
        let group = format!("g{g}");
        let order: Vec<u64> = starts
            .iter()
            .filter(|(k, _)| *k == group)
            .map(|(_, n)| *n)
            .collect();
        assert_eq!(
            order,
            (0..PER_GROUP).collect::<Vec<_>>(),
            "{backend}: group {group} started in arrival order"
        );
    }
    assert_eq!(
        max_same, 1,
        "{backend}: never two events of a group at once"
    );
    assert!(
        max_all >= 32,
        "{backend}: at most {max_all} jobs ran at once; the test needs high concurrency"
    );
    // Port keeps each group's last event.
    let entities = app.entities("thing").await.unwrap();
    assert_eq!(entities.len(), usize::try_from(GROUPS).unwrap());
    for e in &entities {
        assert_eq!(
            e["properties"]["n"],
            PER_GROUP - 1,
            "{backend}: {} holds its last event",
            e["identifier"]
        );
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_keep_their_order_with_hundreds_of_events_in_flight() {
    check("disk").await;
    check("memory").await;
}

// ---- Few workers (Ocean's mode) ----

static ORDER: Mutex<Vec<(String, u64)>> = Mutex::new(Vec::new());
static IN_FLIGHT: Mutex<Vec<String>> = Mutex::new(Vec::new());
static MAX_SAME_KEY: AtomicUsize = AtomicUsize::new(0);
static MAX_ALL: AtomicUsize = AtomicUsize::new(0);

#[webhook_processor(path = "/ordered", kinds = ["thing"], group = ".key")]
async fn ordered(event: &WebhookEvent) -> Result<RawResults, ProcessError> {
    let key = event.str_at("/key")?.to_owned();
    let seq = event.payload()["seq"].as_u64().unwrap_or(0);
    {
        let mut in_flight = IN_FLIGHT.lock().unwrap();
        in_flight.push(key.clone());
        let same = in_flight.iter().filter(|k| **k == key).count();
        MAX_SAME_KEY.fetch_max(same, Ordering::SeqCst);
        MAX_ALL.fetch_max(in_flight.len(), Ordering::SeqCst);
    }
    // Work that takes a while, so that events of one group would overlap if they could.
    tokio::time::sleep(Duration::from_millis(5)).await;
    ORDER.lock().unwrap().push((key.clone(), seq));
    let mut in_flight = IN_FLIGHT.lock().unwrap();
    if let Some(i) = in_flight.iter().position(|k| *k == key) {
        in_flight.remove(i);
    }
    Ok(RawResults::none())
}

#[tokio::test]
async fn events_of_one_group_run_one_at_a_time_in_arrival_order() {
    let app = on("/ordered")
        .env("OCEAN__EVENT_WORKERS_COUNT", "8")
        .start()
        .await
        .unwrap();
    let keys = ["A", "B", "C"];
    for seq in 0..12u64 {
        for key in keys {
            let (status, _) = app
                .post("/ordered", &json!({"key": key, "seq": seq}))
                .await
                .unwrap();
            assert_eq!(status, 200);
        }
    }
    eventually("all 36 events", WAIT, || async {
        Ok::<_, ()>((ORDER.lock().unwrap().len() == 36).then_some(()))
    })
    .await;
    let order = ORDER.lock().unwrap().clone();
    for key in keys {
        let seqs: Vec<u64> = order
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, s)| *s)
            .collect();
        assert_eq!(
            seqs,
            (0..12).collect::<Vec<_>>(),
            "group {key} in arrival order"
        );
    }
    assert_eq!(
        MAX_SAME_KEY.load(Ordering::SeqCst),
        1,
        "never two of one group at once"
    );
    assert!(
        MAX_ALL.load(Ordering::SeqCst) > 1,
        "different groups run in parallel"
    );
    app.shutdown().await;
}
