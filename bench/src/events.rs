//! The events Lambda hands each function, and the jobs behind them.

use std::time::Duration;

use aws_lambda_events::sqs::SqsEvent;
use serde_json::{Value, json};
use spillway_core::domain::{
    Job, JobId, JobMessage, Kind, NewJob, Owner, PayloadDigest, Timestamp,
};
use spillway_core::queue::ReceivedMessage;
use spillway_core::store::{JobStore, StoreError};

/// The IAM principal every benchmark request comes from, as a stage deployed with
/// `ApiAuth=AWS_IAM` (the template's default) names its caller; the benchmark's jobs are its.
pub const CALLER_ARN: &str = "arn:aws:iam::123456789012:user/spillway-bench";

/// An API Gateway HTTP API (payload 2.0) event, signed by [`CALLER_ARN`].
fn http_api_event(
    method: &str,
    path: &str,
    route_key: &str,
    path_parameters: Value,
    body: Option<&str>,
) -> Value {
    json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": "",
        "headers": {
            "content-type": "application/json",
            "host": "abc123.execute-api.us-east-1.amazonaws.com",
            "user-agent": "spillway-bench",
            "x-forwarded-for": "192.0.2.1",
            "x-forwarded-port": "443",
            "x-forwarded-proto": "https"
        },
        "pathParameters": path_parameters,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "authorizer": {"iam": {
                "accessKey": "AKIDBENCHMARK",
                "accountId": "123456789012",
                "callerId": "AIDABENCHMARK",
                "cognitoIdentity": null,
                "principalOrgId": null,
                "userArn": CALLER_ARN,
                "userId": "AIDABENCHMARK"
            }},
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "192.0.2.1",
                "userAgent": "spillway-bench"
            },
            "requestId": "bench-request",
            "routeKey": route_key,
            "stage": "$default",
            "time": "24/Nov/2026:19:03:58 +0000",
            "timeEpoch": 1_795_000_000_000_u64
        },
        "body": body,
        "isBase64Encoded": false
    })
}

/// `POST /jobs` with `body`.
pub fn submit(body: &str) -> String {
    http_api_event("POST", "/jobs", "POST /jobs", Value::Null, Some(body)).to_string()
}

/// `GET /jobs/{id}`.
pub fn status(id: JobId) -> String {
    let path = format!("/jobs/{id}");
    http_api_event(
        "GET",
        &path,
        "GET /jobs/{id}",
        json!({"id": id.to_string()}),
        None,
    )
    .to_string()
}

/// An SQS batch carrying `messages`, as the event source mapping sends it.
pub fn sqs_batch(messages: &[JobMessage]) -> SqsEvent {
    let sent_at = Timestamp::from_system_time(std::time::SystemTime::now());
    let received: Vec<ReceivedMessage> = messages
        .iter()
        .map(|message| ReceivedMessage {
            message_id: uuid::Uuid::now_v7().to_string(),
            receipt_handle: format!("handle-{}", message.job_id),
            body: message.encode(),
            receive_count: 1,
            sent_at,
        })
        .collect();
    spillway_core::esm::sqs_event(&received, crate::QUEUE_ARN, "us-east-1")
}

/// Writes `count` pending jobs of `kind` with `payload`, owned by [`CALLER_ARN`], to `store`,
/// and returns their messages.
pub async fn pending_jobs(
    store: &dyn JobStore,
    count: usize,
    kind: &str,
    payload: &Value,
) -> Result<Vec<JobMessage>, StoreError> {
    let kind = Kind::parse(kind).map_err(|e| StoreError::Unavailable(Box::new(e)))?;
    let payload = serde_json::value::to_raw_value(payload)
        .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
    let now = Timestamp::from_system_time(std::time::SystemTime::now());
    let deadline = now.saturating_add(Duration::from_secs(3600));
    let mut messages = Vec::with_capacity(count);
    for _ in 0..count {
        let job = Job::pending(NewJob {
            id: JobId::generate(),
            kind: kind.clone(),
            owner: Owner::iam(CALLER_ARN),
            priority: spillway_core::domain::Priority::Normal,
            created_at: now,
            deadline,
            run_at: None,
            payload: PayloadDigest::of(payload.get()),
            expires_at: deadline.saturating_add(Duration::from_secs(86_400)),
            callback_url: None,
            correlation_id: None,
        });
        store.create(&job, None).await?;
        messages.push(JobMessage::of(&job, payload.clone(), None));
    }
    Ok(messages)
}
