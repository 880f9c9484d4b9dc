//! The metrics Spillway publishes as CloudWatch Embedded Metric Format lines: every document is
//! checked against the EMF specification's structure, and a known run adds up to the right values.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::{Value, json};
use spillway_core::api;
use spillway_core::domain::{JobId, Owner};
use spillway_core::kinds;
use spillway_core::metrics::{Captured, Metrics};
use spillway_core::testing::{MemoryPipeline, fast_settings, json_headers, submit};

/// The units the specification allows.
const UNITS: [&str; 27] = [
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// Checks one document against the structure the EMF specification requires.
fn check_emf(document: &Value) {
    let root = document.as_object().expect("the root node is an object");
    let metadata = root["_aws"].as_object().expect("_aws is an object");
    assert!(
        metadata["Timestamp"].is_u64(),
        "Timestamp is epoch milliseconds: {document}"
    );
    let directives = metadata["CloudWatchMetrics"]
        .as_array()
        .expect("CloudWatchMetrics is an array");
    assert!(!directives.is_empty());
    for directive in directives {
        let namespace = directive["Namespace"].as_str().expect("a Namespace");
        assert!((1..=255).contains(&namespace.len()));
        for set in directive["Dimensions"]
            .as_array()
            .expect("Dimensions is an array")
        {
            let set = set.as_array().expect("a DimensionSet is an array");
            assert!(set.len() <= 30);
            for key in set {
                let key = key.as_str().expect("dimension keys are strings");
                assert!(
                    root[key].is_string(),
                    "dimension {key} is a string member: {document}"
                );
            }
        }
        let definitions = directive["Metrics"]
            .as_array()
            .expect("Metrics is an array");
        assert!((1..=100).contains(&definitions.len()));
        for definition in definitions {
            let name = definition["Name"].as_str().expect("a metric Name");
            assert!((1..=255).contains(&name.len()));
            if let Some(unit) = definition.get("Unit") {
                assert!(UNITS.contains(&unit.as_str().unwrap()), "unit {unit}");
            }
            assert!(
                root[name].is_number(),
                "metric {name} is a number member: {document}"
            );
        }
    }
}

/// Sums every metric by (name, dimension value).
fn totals(documents: &[Value]) -> BTreeMap<(String, String), f64> {
    let mut totals = BTreeMap::new();
    for document in documents {
        let directive = &document["_aws"]["CloudWatchMetrics"][0];
        let dimension = directive["Dimensions"][0][0].as_str().unwrap();
        let value = document[dimension].as_str().unwrap().to_owned();
        for definition in directive["Metrics"].as_array().unwrap() {
            let name = definition["Name"].as_str().unwrap().to_owned();
            *totals.entry((name, value.clone())).or_default() += document[&name].as_f64().unwrap();
        }
    }
    totals
}

#[tokio::test]
async fn a_known_run_publishes_valid_emf_documents_with_the_right_values() {
    let captured = Arc::new(Captured::default());
    let pipeline = MemoryPipeline::new(fast_settings(), kinds::builtin());
    let app = pipeline
        .app
        .clone()
        .with_metrics(Metrics::new("Spillway/Test", captured.clone()));
    let post = |body: Value| {
        let app = app.clone();
        async move {
            api::submit_job(
                &app,
                Owner::anonymous(),
                &json_headers(),
                body.to_string().as_bytes(),
            )
            .await
            .status()
        }
    };

    // Accepted: two echo jobs that succeed, one sleep that fails for good, one that keeps
    // failing until it is dead-lettered (three attempts), one echo cancelled before it runs.
    let started = Instant::now();
    let mut terminal: Vec<(JobId, &str)> = Vec::new();
    for n in 1..=2 {
        let id = submit(&app, json!({"kind": "echo", "payload": n})).await;
        terminal.push((id, "JobsSucceeded"));
    }
    let failed = submit(
        &app,
        json!({"kind": "sleep", "payload": {"ms": 1, "fail": "permanent"}}),
    )
    .await;
    terminal.push((failed, "JobsFailed"));
    let dead = submit(
        &app,
        json!({"kind": "sleep", "payload": {"ms": 1, "fail": "retryable"}}),
    )
    .await;
    terminal.push((dead, "JobsDeadLettered"));
    let before_cancel = Instant::now();
    let cancelled = submit(&app, json!({"kind": "echo", "payload": 3})).await;
    let response = api::cancel_job(&app, &Owner::anonymous(), &cancelled.to_string()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let cancel_window = before_cancel.elapsed();
    terminal.push((cancelled, "JobsCancelled"));
    // Rejected: a validation error and an unknown kind.
    assert_eq!(post(json!({"kind": "echo"})).await, StatusCode::BAD_REQUEST);
    assert_eq!(
        post(json!({"kind": "nope", "payload": 1})).await,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    // Expired: a job whose deadline passes before its message is delivered.
    let expired = submit(
        &app,
        json!({"kind": "echo", "payload": 4, "ttl_seconds": 1}),
    )
    .await;
    terminal.push((expired, "JobsExpired"));
    // Nothing is delivered before this: every job but the cancelled one waits at least this long.
    let wait = Duration::from_millis(1_100);
    tokio::time::sleep(wait).await;
    for _ in 0..10 {
        if pipeline
            .esm
            .poll_once(&app, Duration::from_millis(200))
            .await
            .unwrap()
            .is_none()
        {
            break;
        }
    }
    let elapsed = started.elapsed();

    let documents = captured.documents();
    for document in &documents {
        check_emf(document);
        assert_eq!(
            document["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            "Spillway/Test"
        );
        let sets = document["_aws"]["CloudWatchMetrics"][0]["Dimensions"]
            .as_array()
            .unwrap();
        assert_eq!(
            sets.last(),
            Some(&json!([])),
            "every metric is also published without dimensions, for the alarms"
        );
        if document.get("Kind").is_some() {
            assert_eq!(
                sets[..2],
                [json!(["Kind"]), json!(["Priority"])],
                "{document}"
            );
            assert_eq!(document["Priority"], "normal", "{document}");
        }
    }
    let totals = totals(&documents);
    let count = |name: &str, value: &str| {
        totals
            .get(&(name.to_owned(), value.to_owned()))
            .copied()
            .unwrap_or_default()
    };
    assert_eq!(count("JobsAccepted", "echo"), 4.0);
    assert_eq!(count("JobsAccepted", "sleep"), 2.0);
    assert_eq!(count("JobsRejected", "invalid-request"), 1.0);
    assert_eq!(count("JobsRejected", "unknown-kind"), 1.0);
    assert_eq!(count("JobsSucceeded", "echo"), 2.0);
    assert_eq!(count("JobsFailed", "sleep"), 1.0);
    assert_eq!(count("Retries", "sleep"), 2.0);
    assert_eq!(count("JobsDeadLettered", "sleep"), 1.0);
    assert_eq!(count("JobsCancelled", "echo"), 1.0);
    assert_eq!(count("JobsExpired", "echo"), 1.0);
    // Every delivery reports its queue wait: 2 echo + 1 expired + 1 cancelled (acknowledged as
    // finished) + 1 + 3 sleep, and the dead-lettered job's message once more, on the receive
    // left between its last attempt and the queue's maxReceiveCount.
    let waits: usize = documents
        .iter()
        .filter(|d| d.get("QueueWaitTime").is_some())
        .count();
    assert_eq!(waits, 9);
    // Each run of a processor reports its time; each terminal job its end-to-end latency.
    let runs = documents
        .iter()
        .filter(|d| d.get("ProcessingTime").is_some())
        .count();
    assert_eq!(runs, 2 + 1 + 3);
    // Each latency is its job's time from acceptance to its terminal state, as the table records
    // both, published at that terminal time...
    let mut published: Vec<(String, String, u64, f64)> = documents
        .iter()
        .filter_map(|d| {
            let latency = d.get("EndToEndLatency")?.as_f64()?;
            let metric = terminal
                .iter()
                .map(|(_, metric)| *metric)
                .find(|metric| d.get(*metric).is_some())
                .unwrap_or_else(|| panic!("a latency without a terminal count: {d}"));
            Some((
                d["Kind"].as_str().unwrap().to_owned(),
                metric.to_owned(),
                d["_aws"]["Timestamp"].as_u64().unwrap(),
                latency,
            ))
        })
        .collect();
    let mut recorded = Vec::new();
    for (id, metric) in &terminal {
        let job = app.store.get(*id).await.unwrap().unwrap();
        recorded.push((
            job.kind.as_str().to_owned(),
            (*metric).to_owned(),
            job.updated_at.as_millis(),
            (job.updated_at.as_millis() - job.created_at.as_millis()) as f64,
        ));
    }
    let order = |a: &(String, String, u64, f64), b: &(String, String, u64, f64)| {
        (&a.0, &a.1, a.2)
            .cmp(&(&b.0, &b.1, b.2))
            .then(a.3.total_cmp(&b.3))
    };
    published.sort_by(order);
    recorded.sort_by(order);
    assert_eq!(published, recorded);
    // ...and agrees with the time this test saw pass (milliseconds of the wall clock, so one more
    // for rounding): the cancelled job ended within its submit-and-cancel, every other one after
    // the wait, and none took longer than the whole run.
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    for (kind, metric, _, latency) in &published {
        assert!(*latency <= ms(elapsed) + 1.0, "{kind} {metric}: {latency}");
        if metric == "JobsCancelled" {
            assert!(*latency <= ms(cancel_window) + 1.0, "{latency}");
        } else {
            assert!(*latency >= ms(wait), "{kind} {metric}: {latency}");
        }
    }
    let slow: Vec<_> = documents
        .iter()
        .filter(|d| d["Kind"] == "sleep" && d.get("ProcessingTime").is_some())
        .map(|d| d["ProcessingTime"].as_f64().unwrap())
        .collect();
    assert!(
        slow.iter().all(|ms| *ms >= 1.0),
        "sleep ran at least 1 ms: {slow:?}"
    );
}
