//! Per-owner limits of active jobs on the real adapters (`SPILLWAY_MAX_ACTIVE_JOBS_PER_OWNER`):
//! callers are mutually hostile, so one at its limit is refused with nothing written or sent,
//! and no other caller notices; its jobs ending gives it room again.

use std::time::Duration;

use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Value, json};
use spillway_core::api::{self, ApiResponse};
use spillway_core::domain::Owner;
use spillway_core::kinds;
use spillway_core::testing::json_headers;
use spillway_core::{App, Settings};
use spillway_tests::Stack;

async fn submit(app: &App, owner: &Owner, key: Option<&'static str>, body: Value) -> ApiResponse {
    let mut headers: HeaderMap = json_headers();
    if let Some(key) = key {
        headers.insert("idempotency-key", HeaderValue::from_static(key));
    }
    let body = body.to_string();
    api::submit_job(app, owner.clone(), &headers, body.as_bytes()).await
}

async fn batch(app: &App, owner: &Owner, jobs: &[Value]) -> Vec<Value> {
    let body = json!({ "jobs": jobs }).to_string();
    let response = api::submit_batch(app, owner.clone(), &json_headers(), body.as_bytes()).await;
    assert_eq!(response.status(), StatusCode::OK, "{}", response.body());
    let answer: Value = serde_json::from_str(response.body()).unwrap();
    answer["results"].as_array().unwrap().clone()
}

fn statuses(results: &[Value]) -> Vec<u64> {
    results
        .iter()
        .map(|result| result["status"].as_u64().unwrap())
        .collect()
}

/// The table's items and the work queue's messages: what a refused request may not change.
async fn footprint(stack: &Stack) -> (usize, u64) {
    (stack.item_count().await, stack.queued_messages().await)
}

#[tokio::test]
async fn an_owner_at_its_limit_is_refused_alone_with_nothing_written_until_its_jobs_end() {
    let stack = Stack::create(3, Duration::from_secs(30)).await;
    let settings = Settings {
        max_active_jobs_per_owner: 3,
        ..stack.settings()
    };
    let app = stack.app(settings, kinds::builtin());
    // Two tenants whose names differ only in an escape.
    let a = Owner::jwt("https://idp.example.com", "tenant#1");
    let b = Owner::jwt("https://idp.example.com", "tenant%231");
    let echo = |n: u32| json!({"kind": "echo", "payload": n});

    let first = submit(&app, &a, Some("a-first"), echo(1)).await;
    assert_eq!(first.status(), StatusCode::ACCEPTED, "{}", first.body());
    for n in 2..=3 {
        let accepted = submit(&app, &a, None, echo(n)).await;
        assert_eq!(
            accepted.status(),
            StatusCode::ACCEPTED,
            "{}",
            accepted.body()
        );
    }
    let before = footprint(&stack).await;
    let refused = submit(&app, &a, Some("a-refused"), echo(4)).await;
    assert_eq!(
        refused.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        refused.body()
    );
    assert_eq!(refused.headers()[header::RETRY_AFTER], "5");
    let problem: Value = serde_json::from_str(refused.body()).unwrap();
    assert_eq!(problem["type"], "urn:spillway:problem:too-many-active-jobs");
    assert_eq!(
        footprint(&stack).await,
        before,
        "a refused job was written or sent"
    );
    // A repeat of a key's first request is its first answer, not a 429.
    let replayed = submit(&app, &a, Some("a-first"), echo(1)).await;
    assert_eq!(
        replayed.status(),
        StatusCode::ACCEPTED,
        "{}",
        replayed.body()
    );
    assert_eq!(replayed.headers()["idempotent-replayed"], "true");
    assert_eq!(footprint(&stack).await, before, "a replay sent something");
    // a's batch at its limit: nothing new, the key's repeat replayed.
    let results = batch(
        &app,
        &a,
        &[
            echo(5),
            json!({"kind": "echo", "payload": 1, "idempotency_key": "a-batch"}),
        ],
    )
    .await;
    assert_eq!(statuses(&results), [429, 429]);
    assert_eq!(results[0]["retry_after"], 5);
    assert_eq!(footprint(&stack).await, before);

    // b is not held to a's count: a batch of five gets three in and two refused.
    let results = batch(&app, &b, &(10..15).map(echo).collect::<Vec<_>>()).await;
    assert_eq!(statuses(&results), [202, 202, 202, 429, 429]);
    assert_eq!(stack.job_statuses().await.len(), 6);
    assert_eq!(
        submit(&app, &b, None, echo(16)).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );

    // The jobs run and finish: both have room again.
    let mut finished = 0;
    for _ in 0..20 {
        if let Some(report) = stack
            .esm()
            .poll_once(&app, Duration::from_secs(1))
            .await
            .unwrap()
        {
            finished += report.deleted;
        }
        if finished >= 6 {
            break;
        }
    }
    let jobs = stack.job_statuses().await;
    assert!(
        jobs.iter().all(|(_, status)| status == "succeeded"),
        "{jobs:?}"
    );
    let again = submit(&app, &a, Some("a-refused"), echo(4)).await;
    assert_eq!(again.status(), StatusCode::ACCEPTED, "{}", again.body());
    let results = batch(&app, &a, &(20..24).map(echo).collect::<Vec<_>>()).await;
    assert_eq!(statuses(&results), [202, 202, 429, 429]);
    assert_eq!(
        submit(&app, &b, None, echo(16)).await.status(),
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn a_cancelled_job_frees_its_owners_room_at_once() {
    let stack = Stack::create(3, Duration::from_secs(30)).await;
    let settings = Settings {
        max_active_jobs_per_owner: 1,
        ..stack.settings()
    };
    let app = stack.app(settings, kinds::builtin());
    let owner = Owner::authenticated("arn:aws:iam::123456789012:user/limited");
    let accepted = submit(&app, &owner, None, json!({"kind": "echo", "payload": 1})).await;
    assert_eq!(accepted.status(), StatusCode::ACCEPTED);
    let id = serde_json::from_str::<Value>(accepted.body()).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = json!({"kind": "echo", "payload": 2});
    assert_eq!(
        submit(&app, &owner, None, body.clone()).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    let cancelled = api::cancel_job(&app, &owner, &id).await;
    assert_eq!(cancelled.status(), StatusCode::OK, "{}", cancelled.body());
    assert_eq!(
        submit(&app, &owner, None, body).await.status(),
        StatusCode::ACCEPTED
    );
}
