//! Idempotency keys on the real adapters: the job and its key are written in one DynamoDB
//! transaction, so a client's retries never create a second job.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Value, json};
use spillway_core::App;
use spillway_core::api::{self, ApiResponse};
use spillway_core::domain::Owner;
use spillway_core::kinds;
use spillway_core::store::DynamoStore;
use spillway_tests::{LocalTable, Stack};

fn headers(key: &str) -> HeaderMap {
    HeaderMap::from_iter([
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ),
        (
            header::HeaderName::from_static("idempotency-key"),
            HeaderValue::from_str(key).unwrap(),
        ),
    ])
}

async fn post(app: &App, owner: &Owner, key: &str, body: &Value) -> ApiResponse {
    api::submit_job(
        app,
        owner.clone(),
        &headers(key),
        body.to_string().as_bytes(),
    )
    .await
}

fn id_of(response: &ApiResponse) -> String {
    assert_eq!(
        response.status(),
        StatusCode::ACCEPTED,
        "{}",
        response.body()
    );
    serde_json::from_str::<Value>(response.body()).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn job_items(stack: &Stack) -> usize {
    stack.job_statuses().await.len()
}

#[tokio::test]
async fn the_same_key_and_body_return_the_same_job_and_never_a_second() {
    let stack = Stack::create(3, Duration::from_secs(30)).await;
    let app = stack.app(stack.settings(), kinds::builtin());
    let owner = Owner::anonymous();
    let body = json!({"kind": "echo", "payload": {"order": 7}});

    let first = post(&app, &owner, "order-7", &body).await;
    stack.deliver(&app).await;
    let again = post(&app, &owner, "order-7", &body).await;

    assert_eq!(id_of(&again), id_of(&first));
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(job_items(&stack).await, 1);
    assert_eq!(
        stack.queued_messages().await,
        0,
        "a finished job is not enqueued again"
    );
}

/// On DynamoDB Local, AWS's own implementation: moto evaluates the transactions of concurrent
/// requests without isolation, so two of them can both pass the key's condition there
/// (docs/guarantees.md), which DynamoDB never allows.
#[tokio::test]
async fn twenty_concurrent_requests_with_one_key_create_exactly_one_job() {
    let stack = Stack::create(3, Duration::from_secs(30)).await;
    let table = LocalTable::create().await;
    let store = Arc::new(DynamoStore::new(table.client.clone(), &table.name));
    let app = App::new(store, stack.queues(), stack.settings());
    let owner = Owner::anonymous();
    let body = json!({"kind": "echo", "payload": "once"});

    let requests = (0..20).map(|_| post(&app, &owner, "burst", &body));
    let responses = futures::future::join_all(requests).await;

    let ids: std::collections::HashSet<String> = responses.iter().map(id_of).collect();
    assert_eq!(ids.len(), 1, "every request got the same job");
    let scan = table
        .client
        .scan()
        .table_name(&table.name)
        .send()
        .await
        .unwrap();
    let jobs = scan
        .items
        .unwrap_or_default()
        .iter()
        .filter(|item| item["pk"].as_s().unwrap().starts_with("job#"))
        .count();
    assert_eq!(jobs, 1);
}

#[tokio::test]
async fn the_same_key_with_another_body_is_refused() {
    let stack = Stack::create(3, Duration::from_secs(30)).await;
    let app = stack.app(stack.settings(), kinds::builtin());
    let owner = Owner::anonymous();
    id_of(&post(&app, &owner, "k", &json!({"kind": "echo", "payload": 1})).await);

    let other = post(&app, &owner, "k", &json!({"kind": "echo", "payload": 2})).await;
    assert_eq!(other.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem: Value = serde_json::from_str(other.body()).unwrap();
    assert_eq!(
        problem["type"],
        "urn:spillway:problem:idempotency-key-reused"
    );
    assert_eq!(job_items(&stack).await, 1);
}

#[tokio::test]
async fn keys_belong_to_their_caller() {
    let stack = Stack::create(3, Duration::from_secs(30)).await;
    let app = stack.app(stack.settings(), kinds::builtin());
    let body = json!({"kind": "echo", "payload": 1});
    let alice = id_of(&post(&app, &Owner::authenticated("alice"), "shared", &body).await);
    let bob = id_of(&post(&app, &Owner::authenticated("bob"), "shared", &body).await);
    assert_ne!(alice, bob);
}

#[tokio::test]
async fn a_retry_after_a_failed_send_creates_the_job_once_and_it_runs() {
    let stack = Stack::create(3, Duration::from_secs(30)).await;
    let without_queue = stack.app_with_an_unreachable_queue();
    let app = stack.app(stack.settings(), kinds::builtin());
    let owner = Owner::anonymous();
    let body = json!({"kind": "echo", "payload": "finally"});

    let failed = post(&without_queue, &owner, "retry-me", &body).await;
    assert_eq!(failed.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        job_items(&stack).await,
        0,
        "the message goes first: a failed send writes nothing"
    );

    let retried = post(&app, &owner, "retry-me", &body).await;
    let id = id_of(&retried);
    stack.deliver(&app).await;
    let job = api::get_job(&app, &owner, &id, None).await;
    let job: Value = serde_json::from_str(job.body()).unwrap();
    assert_eq!(
        (job["status"].as_str(), &job["result"]),
        (Some("succeeded"), &json!("finally"))
    );
    assert_eq!(job_items(&stack).await, 1);
}

#[tokio::test]
async fn a_malformed_key_is_refused_and_writes_nothing() {
    let stack = Stack::create(3, Duration::from_secs(30)).await;
    let app = stack.app(stack.settings(), kinds::builtin());
    let long = "k".repeat(256);
    let response = post(
        &app,
        &Owner::anonymous(),
        &long,
        &json!({"kind": "echo", "payload": 1}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(stack.item_count().await, 0);
}
