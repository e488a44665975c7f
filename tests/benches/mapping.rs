//! jq mapping throughput: entities per second for a mapping with an identifier, a title, a
//! blueprint and 5 properties, over Jira-like issues of about 1 KB.
//!
//! `cargo bench -p ocean-tests --bench mapping` (`MAPPING_ITEMS`: items per run, default 20000;
//! `MAPPING_RUNS`: runs, default 5). One thread, no I/O: just the selector and the entity mapping.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

use std::time::Instant;

use ocean_runtime::__private::{CompiledMapping, PortAppConfig};
use serde_json::{Value, json};

ocean_runtime::global_allocator!();

const MAPPING: &str = r#"
resources:
  - kind: issue
    selector:
      query: '.fields.issuetype.name != "Sub-task"'
    port:
      entity:
        mappings:
          identifier: .key
          title: .fields.summary
          blueprint: '"jiraIssue"'
          properties:
            status: .fields.status.name
            issueType: .fields.issuetype.name
            priority: .fields.priority.name
            assignee: .fields.assignee.emailAddress
            labels: .fields.labels
"#;

/// The same mapping with every field written in a form the direct evaluator does not take, so
/// each runs on jaq (as every field did before the direct evaluator).
const MAPPING_JAQ: &str = r#"
resources:
  - kind: issue
    selector:
      query: '(.fields.issuetype.name != "Sub-task") as $ok | $ok'
    port:
      entity:
        mappings:
          identifier: '.key as $k | $k'
          title: '.fields.summary as $v | $v'
          blueprint: '"jiraIssue" as $v | $v'
          properties:
            status: '.fields.status.name as $v | $v'
            issueType: '.fields.issuetype.name as $v | $v'
            priority: '.fields.priority.name as $v | $v'
            assignee: '.fields.assignee.emailAddress as $v | $v'
            labels: '.fields.labels as $v | $v'
"#;

fn item(n: usize) -> Value {
    json!({
        "key": format!("PROJ-{n}"),
        "fields": {
            "summary": format!("Checkout fails on Safari ({n})"),
            "description": "x".repeat(600),
            "status": {"name": "In Progress"}, "issuetype": {"name": "Bug"},
            "priority": {"name": "High"}, "assignee": {"emailAddress": "dev@example.com"},
            "labels": ["web", "checkout"], "project": {"key": "PROJ"}
        }
    })
}

fn measure(yaml: &str, items: &[Value], runs: usize) -> (f64, Vec<f64>) {
    let mapping = CompiledMapping::compile(PortAppConfig::from_yaml(yaml).unwrap()).unwrap();
    let mut rates = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let out = mapping.map_items(0, items);
        let took = started.elapsed();
        assert_eq!(out.passed.len(), items.len(), "{:?}", out.issues.first());
        assert_eq!(out.passed[7].body["properties"]["status"], "In Progress");
        rates.push(items.len() as f64 / took.as_secs_f64());
    }
    let mut sorted = rates.clone();
    sorted.sort_by(f64::total_cmp);
    (sorted[sorted.len() / 2], rates)
}

fn main() {
    let n: usize = std::env::var("MAPPING_ITEMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let runs: usize = std::env::var("MAPPING_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let items: Vec<Value> = (0..n).map(item).collect();
    let (direct, _) = measure(MAPPING, &items, runs);
    let (jaq, _) = measure(MAPPING_JAQ, &items, runs);
    println!(
        "\njq mapping, {n} items of {} bytes, selector + identifier, title, blueprint and 5 properties, one thread, median of {runs}\n",
        serde_json::to_vec(&items[0]).unwrap().len()
    );
    println!("| mapping | entities/s |");
    println!("|---|---:|");
    println!("| plain paths (direct evaluator where it applies) | {direct:.0} |");
    println!("| same fields through jaq | {jaq:.0} |");
}
