//! CPU per request of each handler, as Lambda runs it: the event's JSON parsed into the
//! function's input, the handler, every DynamoDB and SQS call serialized, signed and its answer
//! deserialized — answered in process by `FakeAws`, so no network time is counted.
//!
//! `cargo bench -p spillway-bench` (add `-- --quick` for a short run).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use aws_lambda_events::sqs::SqsEvent;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::json;
use spillway_bench::{FakeAws, HIGH_QUEUE_URL, QUEUE_URL, TABLE, events};
use spillway_core::config::Resources;
use spillway_core::domain::Lanes;
use spillway_core::{App, Config, Settings, lambda};
use tokio::runtime::Runtime;

/// The functions' own runtime flavour.
fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn app(fake: &std::sync::Arc<FakeAws>) -> App {
    let config = Config {
        resources: Resources {
            table: TABLE.to_owned(),
            queue_urls: Lanes {
                high: Some(HIGH_QUEUE_URL.to_owned()),
                normal: Some(QUEUE_URL.to_owned()),
            },
        },
        settings: Settings::default(),
    };
    App::on_aws(&fake.sdk_config().await, &config)
}

fn intake(c: &mut Criterion) {
    let rt = runtime();
    let fake = FakeAws::new();
    fake.forget_writes();
    let app = rt.block_on(app(&fake));
    let event = events::submit(
        &json!({"kind": "echo", "payload": {"order": 1042, "email": "ada@example.com", "items": [1, 2, 3]}})
            .to_string(),
    );
    api(c, &rt, "intake: POST /jobs", &event, 202, |request| {
        lambda::intake(&app, request)
    });
}

fn status(c: &mut Criterion) {
    let rt = runtime();
    let fake = FakeAws::new();
    let app = rt.block_on(app(&fake));
    let job = rt
        .block_on(events::pending_jobs(
            app.store.as_ref(),
            1,
            "echo",
            &json!({"n": 1}),
        ))
        .unwrap()
        .remove(0);
    fake.forget_writes();
    let event = events::status(job.job_id);
    api(c, &rt, "status: GET /jobs/{id}", &event, 200, |request| {
        lambda::status(&app, request)
    });
}

/// Benchmarks an API function: the API Gateway `event` parsed as the runtime does, then
/// `handler`, whose answer must have status `expected`.
fn api<F, Fut>(c: &mut Criterion, rt: &Runtime, name: &str, event: &str, expected: u16, handler: F)
where
    F: Fn(lambda_http::Request) -> Fut,
    Fut: Future<Output = Result<lambda_http::Response<lambda_http::Body>, lambda_http::Error>>,
{
    c.bench_function(name, |b| {
        b.iter(|| {
            rt.block_on(async {
                let request = lambda_http::request::from_str(black_box(event)).unwrap();
                let response = handler(request).await.unwrap();
                assert_eq!(response.status(), expected);
                black_box(response)
            })
        });
    });
}

fn consumer(c: &mut Criterion) {
    let rt = runtime();
    let fake = FakeAws::new();
    let app = rt.block_on(app(&fake));
    let jobs = rt
        .block_on(events::pending_jobs(
            app.store.as_ref(),
            100,
            "echo",
            &json!({"order": 1042, "email": "ada@example.com"}),
        ))
        .unwrap();
    // Claims and outcomes are answered from the pending items, and not kept, so every iteration
    // runs the same jobs from `pending`.
    fake.forget_writes();
    let mut group = c.benchmark_group("consumer");
    for size in [10, 100] {
        let event = serde_json::to_vec(&events::sqs_batch(&jobs[..size])).unwrap();
        group.throughput(Throughput::Elements(size as u64));
        group.bench_function(format!("batch of {size}"), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let batch: SqsEvent = serde_json::from_slice(black_box(&event)).unwrap();
                    let response =
                        lambda::consumer(&app, LambdaEvent::new(batch, Context::default()))
                            .await
                            .unwrap();
                    assert!(response.batch_item_failures.is_empty());
                    black_box(serde_json::to_vec(&response).unwrap())
                })
            });
        });
    }
    group.finish();
}

criterion_group!(benches, intake, status, consumer);
criterion_main!(benches);
