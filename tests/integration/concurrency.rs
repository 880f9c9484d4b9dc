//! Concurrency per kind on the AWS emulator: a kind's `max_concurrency` holds across consumers
//! polling one queue at once. The queues are on moto, the table on DynamoDB Local, whose
//! conditional writes are atomic as DynamoDB's are (moto's are not: docs/guarantees.md).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use spillway_core::domain::{JobId, JobStatus, Kind};
use spillway_core::processor::{Limits, ProcessError, Processor, Work};
use spillway_core::store::DynamoStore;
use spillway_core::testing::submit;
use spillway_core::{App, kinds};
use spillway_tests::{LocalTable, Stack};

/// A processor that counts how many of its jobs run at once, and the most that ever did.
#[derive(Debug, Default)]
struct Gauge {
    running: AtomicU32,
    most: AtomicU32,
    runs: AtomicU32,
}

#[async_trait]
impl Processor for Gauge {
    async fn process(&self, _: &Work) -> Result<Value, ProcessError> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        self.runs.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        Ok(json!({}))
    }
}

async fn all_ended(app: &App, ids: &[JobId]) -> bool {
    for id in ids {
        let job = app.store.get(*id).await.unwrap().unwrap();
        if !job.status.is_terminal() {
            return false;
        }
    }
    true
}

#[tokio::test]
async fn three_consumers_run_no_more_jobs_of_a_kind_at_once_than_its_max_concurrency() {
    let stack = Stack::create(4, Duration::from_secs(30)).await;
    let table = LocalTable::create().await;
    let gauge = Arc::new(Gauge::default());
    let mut processors = kinds::builtin();
    processors.insert(
        Kind::parse("gauged").unwrap(),
        gauge.clone(),
        Limits {
            max_concurrency: Some(2),
            ..Limits::default()
        },
    );
    let mut app = stack.app(stack.settings(), processors);
    app.store = Arc::new(DynamoStore::new(table.client.clone(), &table.name));
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(submit(&app, json!({"kind": "gauged", "payload": {}})).await);
    }

    let mut consumers = tokio::task::JoinSet::new();
    for _ in 0..3 {
        let app = app.clone();
        let esm = stack.esm();
        let ids = ids.clone();
        consumers.spawn(async move {
            while !all_ended(&app, &ids).await {
                esm.poll_once(&app, Duration::from_secs(1)).await.unwrap();
            }
        });
    }
    tokio::time::timeout(Duration::from_secs(120), consumers.join_all())
        .await
        .expect("every job ended within two minutes");

    assert_eq!(
        gauge.most.load(Ordering::SeqCst),
        2,
        "at most two ran at once"
    );
    assert_eq!(gauge.runs.load(Ordering::SeqCst), 6);
    for id in &ids {
        let job = app.store.get(*id).await.unwrap().unwrap();
        assert_eq!(
            (job.status, job.attempts),
            (JobStatus::Succeeded, 1),
            "waiting for a slot is not an attempt"
        );
    }
}
