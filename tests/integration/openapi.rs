//! `docs/openapi.yaml` stays true: every documented response of every operation is produced by
//! the real handlers, on the real adapters where the emulator can produce it, and checked against
//! the document.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use http::{HeaderMap, HeaderValue, header};
use serde_json::{Value, json};
use spillway_core::api::{self, ApiResponse};
use spillway_core::app::StackSecret;
use spillway_core::domain::{
    Change, IdempotencyKey, IdempotencyRecord, Job, JobId, Owner, Progress, Transition,
};
use spillway_core::kinds;
use spillway_core::lambda;
use spillway_core::store::{ApplyError, JobStore, StoreError};
use spillway_core::testing::json_headers;
use spillway_core::webhook::SigningKeys;
use spillway_core::{App, Settings};
use spillway_tests::Stack;
use spillway_tests::openapi::OpenApi;

const JOBS: &str = "/jobs";
const JOB: &str = "/jobs/{id}";
const BATCH: &str = "/jobs/batch";
const SECRET: &str = "/webhook-secret";

/// What a Lambda function answers `method path` that reached it without a caller identity,
/// although the API authorizes with IAM.
async fn without_identity(app: &App, method: &str, path: &str) -> ApiResponse {
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .body(lambda_http::Body::Text("{}".to_owned()))
        .unwrap();
    let response = if path == JOBS || path == BATCH {
        lambda::intake(app, request).await
    } else {
        lambda::status(app, request).await
    }
    .unwrap();
    response.map(|body| match body {
        lambda_http::Body::Text(text) => text,
        other => panic!("a text body, got {other:?}"),
    })
}

async fn post(app: &App, headers: &HeaderMap, body: &str) -> ApiResponse {
    api::submit_job(app, Owner::anonymous(), headers, body.as_bytes()).await
}

async fn post_batch(app: &App, headers: &HeaderMap, body: &str) -> ApiResponse {
    api::submit_batch(app, Owner::anonymous(), headers, body.as_bytes()).await
}

fn id_of(response: &ApiResponse) -> String {
    serde_json::from_str::<Value>(response.body()).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A store whose writes fail as if an item were unreadable: the path to a `500`.
#[derive(Debug)]
struct CorruptStore;

#[async_trait]
impl JobStore for CorruptStore {
    async fn create(&self, job: &Job, _: Option<&IdempotencyRecord>) -> Result<(), StoreError> {
        Err(StoreError::Corrupt {
            id: job.id.to_string(),
            reason: "injected".to_owned(),
        })
    }
    async fn create_batch(&self, jobs: &[Job]) -> Vec<Result<(), StoreError>> {
        jobs.iter()
            .map(|job| {
                Err(StoreError::Corrupt {
                    id: job.id.to_string(),
                    reason: "injected".to_owned(),
                })
            })
            .collect()
    }
    async fn get(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        Err(StoreError::Corrupt {
            id: id.to_string(),
            reason: "injected".to_owned(),
        })
    }
    async fn key(
        &self,
        _: &Owner,
        _: &IdempotencyKey,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        Err(StoreError::Corrupt {
            id: "idempotency key".to_owned(),
            reason: "injected".to_owned(),
        })
    }
    async fn apply(&self, id: JobId, _: &Change) -> Result<Job, ApplyError> {
        Err(StoreError::Corrupt {
            id: id.to_string(),
            reason: "injected".to_owned(),
        }
        .into())
    }
    async fn active_jobs(&self, _: &Owner, _: u32) -> Result<u32, StoreError> {
        Ok(0)
    }
    async fn hold_slot(
        &self,
        _: &spillway_core::store::Slot,
        _: spillway_core::domain::Timestamp,
        _: spillway_core::domain::Timestamp,
    ) -> Result<bool, StoreError> {
        Ok(true)
    }
    async fn release_slot(&self, _: &spillway_core::store::Slot) -> Result<(), StoreError> {
        Ok(())
    }
}

#[tokio::test]
async fn every_documented_response_is_produced_and_matches_the_openapi_document() {
    let spec = OpenApi::load();
    let stack = Stack::create(3, Duration::from_secs(30)).await;
    let settings = Settings {
        max_payload_bytes: 4_096,
        ..stack.settings()
    };
    // A fan-out kind too, for the answer to a fan-out's cancel.
    let fan = spillway_core::targets::Declarations::parse(
        r#"{"fan": {"targets": {"a": {"http": "https://a.example/"}, "b": {"http": "https://b.example/"}}}}"#,
    )
    .unwrap();
    let shipped = kinds::builtin();
    let webhook = spillway_core::webhook::Webhook::new(settings.webhook.clone(), None);
    let processors = shipped
        .clone()
        .and(fan.processors(&shipped, &webhook, || unreachable!("no lambda kind")));
    let app = stack.app(settings.clone(), processors);
    let owner = Owner::anonymous();

    // POST /jobs
    let accepted = post(
        &app,
        &json_headers(),
        &json!({"kind": "echo", "payload": {"a": 1}}).to_string(),
    )
    .await;
    spec.expect(JOBS, "post", 202, &accepted);
    spec.expect(
        JOBS,
        "post",
        400,
        &post(&app, &json_headers(), "{oops").await,
    );
    spec.expect(
        JOBS,
        "post",
        400,
        &post(&app, &json_headers(), r#"{"kind": "echo"}"#).await,
    );
    let big = json!({"kind": "echo", "payload": "x".repeat(5_000)}).to_string();
    spec.expect(JOBS, "post", 413, &post(&app, &json_headers(), &big).await);
    spec.expect(
        JOBS,
        "post",
        415,
        &post(&app, &HeaderMap::new(), "{}").await,
    );
    for (body, status) in [
        (r#"{"kind": "nope", "payload": 1}"#, 422),
        (
            r#"{"kind": "echo", "payload": 1, "callback_url": "http://169.254.169.254/"}"#,
            422,
        ),
        (
            r#"{"kind": "echo", "payload": 1, "callback_url": "https://hooks.example.com/done"}"#,
            202,
        ),
    ] {
        spec.expect(
            JOBS,
            "post",
            status,
            &post(&app, &json_headers(), body).await,
        );
    }
    let corrupt = App::new(Arc::new(CorruptStore), stack.queues(), settings.clone());
    spec.expect(
        JOBS,
        "post",
        500,
        &post(
            &corrupt,
            &json_headers(),
            r#"{"kind": "echo", "payload": 1}"#,
        )
        .await,
    );
    let mut no_queue = stack.config(settings.clone());
    no_queue.resources.queue_urls = spillway_core::domain::Lanes::both(Some(format!(
        "{}/123456789012/missing",
        spillway_tests::endpoint()
    )));
    let unreachable = App::on_aws(&stack.sdk, &no_queue);
    spec.expect(
        JOBS,
        "post",
        503,
        &post(
            &unreachable,
            &json_headers(),
            r#"{"kind": "echo", "payload": 1}"#,
        )
        .await,
    );

    // GET /jobs/{id}
    let id = id_of(&accepted);
    let pending = api::get_job(&app, &owner, &id, None).await;
    assert!(pending.headers().contains_key(header::RETRY_AFTER));
    spec.expect(JOB, "get", 200, &pending);
    stack
        .esm()
        .poll_once(&app, Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    spec.expect(
        JOB,
        "get",
        200,
        &api::get_job(&app, &owner, &id, Some("0")).await,
    );
    // A running job whose processor reported its progress.
    let running = JobId::parse(&id_of(
        &post(&app, &json_headers(), r#"{"kind": "echo", "payload": 1}"#).await,
    ))
    .unwrap();
    let lease_until = app.clock.now().saturating_add(Duration::from_secs(60));
    for transition in [
        Transition::Claim {
            lease_until,
            max_attempts: 3,
        },
        Transition::Heartbeat {
            attempt: 1,
            lease_until,
            progress: Some(Progress::new(0.4, "4 of 10 pages", app.clock.now())),
        },
    ] {
        app.store
            .apply(running, &app.change(transition))
            .await
            .unwrap();
    }
    let with_progress = api::get_job(&app, &owner, &running.to_string(), None).await;
    let document: serde_json::Value = serde_json::from_str(with_progress.body()).unwrap();
    assert_eq!(document["progress"]["fraction"], 0.4);
    spec.expect(JOB, "get", 200, &with_progress);
    spec.expect(
        JOB,
        "get",
        400,
        &api::get_job(&app, &owner, "not-a-job-id", None).await,
    );
    spec.expect(
        JOB,
        "get",
        400,
        &api::get_job(&app, &owner, &id, Some("21")).await,
    );
    spec.expect(
        JOB,
        "get",
        404,
        &api::get_job(&app, &owner, &JobId::generate().to_string(), None).await,
    );
    let broken = JobId::generate();
    stack
        .dynamodb
        .put_item()
        .table_name(&stack.table)
        .item("pk", AttributeValue::S(format!("job#{broken}")))
        .item("id", AttributeValue::S(broken.to_string()))
        .item("status", AttributeValue::S("exploded".to_owned()))
        .send()
        .await
        .unwrap();
    spec.expect(
        JOB,
        "get",
        500,
        &api::get_job(&app, &owner, &broken.to_string(), None).await,
    );
    let mut no_table = stack.config(settings.clone());
    no_table.resources.table = "spillway-no-such-table".to_owned();
    let tableless = App::on_aws(&stack.sdk, &no_table);
    spec.expect(
        JOB,
        "get",
        503,
        &api::get_job(&tableless, &owner, &id, None).await,
    );

    // Asked to wait, a job that finishes in time is answered with its document.
    let consumer = {
        let (esm, app) = (stack.esm(), app.clone());
        tokio::spawn(async move {
            loop {
                esm.poll_once(&app, Duration::from_secs(1)).await.unwrap();
            }
        })
    };
    let mut prefer = json_headers();
    prefer.insert("prefer", http::HeaderValue::from_static("wait=10"));
    let waited = post(&app, &prefer, r#"{"kind": "echo", "payload": 7}"#).await;
    consumer.abort();
    spec.expect(JOBS, "post", 200, &waited);
    assert_eq!(waited.headers()["preference-applied"], "wait=10");

    // DELETE /jobs/{id}
    let fresh = id_of(&post(&app, &json_headers(), r#"{"kind": "echo", "payload": 2}"#).await);
    spec.expect(
        JOB,
        "delete",
        200,
        &api::cancel_job(&app, &owner, &fresh).await,
    );
    spec.expect(
        JOB,
        "delete",
        409,
        &api::cancel_job(&app, &owner, &id).await,
    );
    let fanout = id_of(&post(&app, &json_headers(), r#"{"kind": "fan", "payload": {}}"#).await);
    spec.expect(
        JOB,
        "delete",
        202,
        &api::cancel_job(&app, &owner, &fanout).await,
    );
    spec.expect(
        JOB,
        "delete",
        400,
        &api::cancel_job(&app, &owner, "nope").await,
    );
    spec.expect(
        JOB,
        "delete",
        404,
        &api::cancel_job(&app, &owner, &JobId::generate().to_string()).await,
    );
    spec.expect(
        JOB,
        "delete",
        500,
        &api::cancel_job(&app, &owner, &broken.to_string()).await,
    );
    spec.expect(
        JOB,
        "delete",
        503,
        &api::cancel_job(&tableless, &owner, &id).await,
    );

    // A request that reaches a function without the identity the API's authorization implies.
    for (path, method) in [
        (JOBS, "POST"),
        (BATCH, "POST"),
        (JOB, "GET"),
        (JOB, "DELETE"),
        (SECRET, "GET"),
    ] {
        let concrete = path.replace("{id}", &id);
        let refused = without_identity(&app, method, &concrete).await;
        spec.expect(path, method, 401, &refused);
    }

    // GET /webhook-secret, with the stack's secret and without one.
    let keys = SigningKeys::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    let signing = app
        .clone()
        .with_signing(StackSecret::fixed(Some(keys.clone())));
    let secrets = api::webhook_secret(&signing, &owner).await;
    let body: Value = serde_json::from_str(secrets.body()).unwrap();
    assert_eq!(body["secrets"], json!(keys.for_owner(&owner).secrets()));
    spec.expect(SECRET, "get", 200, &secrets);
    spec.expect(SECRET, "get", 503, &api::webhook_secret(&app, &owner).await);

    // POST /jobs with an Idempotency-Key: a replay, and a reuse with another body.
    let mut keyed = json_headers();
    keyed.insert("idempotency-key", HeaderValue::from_static("openapi-check"));
    spec.expect(
        JOBS,
        "post",
        202,
        &post(&app, &keyed, r#"{"kind": "echo", "payload": "k"}"#).await,
    );
    let replayed = post(&app, &keyed, r#"{"kind": "echo", "payload": "k"}"#).await;
    assert_eq!(replayed.headers()["idempotent-replayed"], "true");
    spec.expect(JOBS, "post", 202, &replayed);
    let reused = post(&app, &keyed, r#"{"kind": "echo", "payload": "other"}"#).await;
    spec.expect(JOBS, "post", 422, &reused);

    // An owner at its limit of active jobs: 429 for one job, a 429 result per job of a batch.
    let limited = stack.app(
        Settings {
            max_active_jobs_per_owner: 1,
            ..settings.clone()
        },
        kinds::builtin(),
    );
    let tenant = Owner::authenticated("openapi-limited");
    let submit = |body: &'static str| {
        let (app, tenant) = (limited.clone(), tenant.clone());
        async move { api::submit_job(&app, tenant, &json_headers(), body.as_bytes()).await }
    };
    spec.expect(
        JOBS,
        "post",
        202,
        &submit(r#"{"kind": "echo", "payload": "first"}"#).await,
    );
    let over = submit(r#"{"kind": "echo", "payload": "second"}"#).await;
    assert_eq!(over.headers()[header::RETRY_AFTER], "5");
    spec.expect(JOBS, "post", 429, &over);
    let over_batch = api::submit_batch(
        &limited,
        tenant.clone(),
        &json_headers(),
        br#"{"jobs": [{"kind": "echo", "payload": 1}, {"kind": "echo", "payload": 2}]}"#,
    )
    .await;
    let answer: Value = serde_json::from_str(over_batch.body()).unwrap();
    assert_eq!(answer["results"][1]["status"], 429, "{answer}");
    assert_eq!(answer["results"][1]["retry_after"], 5, "{answer}");
    spec.expect(BATCH, "post", 200, &over_batch);

    // POST /jobs/batch: a result of every kind in one answer, then the whole request's problems.
    let jobs = json!({"jobs": [
        {"kind": "echo", "payload": 1},
        {"kind": "echo", "payload": 2, "priority": "high", "idempotency_key": "openapi-batch"},
        {"kind": "echo", "payload": 3, "idempotency_key": "openapi-batch"},
        {"kind": "nope", "payload": 4},
        {"kind": "echo", "payload": "x".repeat(5_000)},
        {"kind": "echo", "payload": 5, "idempotency_key": "openapi-check"},
    ]})
    .to_string();
    let results = post_batch(&app, &json_headers(), &jobs).await;
    spec.expect(BATCH, "post", 200, &results);
    let statuses: Vec<Value> = serde_json::from_str::<Value>(results.body()).unwrap()["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|result| result["status"].clone())
        .collect();
    assert_eq!(statuses, [202, 202, 400, 422, 413, 422].map(|s| json!(s)));
    let replayed = post_batch(&app, &json_headers(), &jobs).await;
    let answer: Value = serde_json::from_str(replayed.body()).unwrap();
    assert_eq!(answer["results"][1]["replayed"], true, "{answer}");
    spec.expect(BATCH, "post", 200, &replayed);
    // Per-job 500s and 503s, each in its result.
    let one = r#"{"jobs": [{"kind": "echo", "payload": 1}, {"kind": "nope", "payload": 1}]}"#;
    spec.expect(
        BATCH,
        "post",
        200,
        &post_batch(&corrupt, &json_headers(), one).await,
    );
    spec.expect(
        BATCH,
        "post",
        200,
        &post_batch(&unreachable, &json_headers(), one).await,
    );
    // Nothing could be done: every job 503.
    let all_unavailable = r#"{"jobs": [{"kind": "echo", "payload": 1}]}"#;
    spec.expect(
        BATCH,
        "post",
        503,
        &post_batch(&unreachable, &json_headers(), all_unavailable).await,
    );
    for body in ["{oops", r#"{"jobs": []}"#, r#"{"jobs": [1], "more": true}"#] {
        spec.expect(
            BATCH,
            "post",
            400,
            &post_batch(&app, &json_headers(), body).await,
        );
    }
    spec.expect(
        BATCH,
        "post",
        400,
        &post_batch(&app, &keyed, all_unavailable).await,
    );
    let huge = format!(
        r#"{{"jobs": [{{"kind": "echo", "payload": "{}"}}]}}"#,
        "x".repeat(api::MAX_BATCH_BYTES)
    );
    spec.expect(
        BATCH,
        "post",
        413,
        &post_batch(&app, &json_headers(), &huge).await,
    );
    spec.expect(
        BATCH,
        "post",
        415,
        &post_batch(&app, &HeaderMap::new(), all_unavailable).await,
    );

    assert!(
        spec.unseen().is_empty(),
        "documented but never produced: {:?}",
        spec.unseen()
    );
}
