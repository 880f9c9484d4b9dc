//! The pipeline end to end on the real adapters: intake writes to DynamoDB and sends to SQS, the
//! event source mapping receives from SQS, the consumer records outcomes in DynamoDB.

use std::time::Duration;

use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Value, json};
use spillway_core::api;
use spillway_core::config::MAX_PAYLOAD_LIMIT;
use spillway_core::consumer::handle_batch;
use spillway_core::dlq::{self, Reset};
use spillway_core::domain::{JobId, JobMessage, Owner, Timestamp};
use spillway_core::kinds;
use spillway_core::queue::MAX_MESSAGE_BYTES;
use spillway_core::testing::{
    Behaviour, Counting, json_headers, processors_with, submit, submit_as,
};
use spillway_core::{App, Settings};
use spillway_tests::Stack;

async fn status(app: &App, id: JobId) -> Value {
    let response = api::get_job(app, &Owner::anonymous(), &id.to_string(), None).await;
    assert_eq!(response.status(), StatusCode::OK, "{}", response.body());
    serde_json::from_str(response.body()).unwrap()
}

fn deadline_in(seconds: u64) -> Timestamp {
    Timestamp::from_system_time(std::time::SystemTime::now())
        .saturating_add(Duration::from_secs(seconds))
}

#[tokio::test]
async fn a_job_goes_from_post_to_succeeded_through_the_queue() {
    let stack = Stack::create(3, Duration::from_secs(30)).await;
    let app = stack.app(stack.settings(), kinds::builtin());

    let id = submit(
        &app,
        json!({"kind": "echo", "payload": {"order": 42, "items": ["a", "b"]}}),
    )
    .await;
    assert_eq!(status(&app, id).await["status"], "pending");

    let report = stack.deliver(&app).await;
    assert_eq!((report.received, report.deleted), (1, 1));

    let job = status(&app, id).await;
    assert_eq!(job["status"], "succeeded");
    assert_eq!(job["result"], json!({"order": 42, "items": ["a", "b"]}));
    assert_eq!(job["attempts"], 1);
    assert_eq!(
        stack.queued_messages().await,
        0,
        "the handled message was deleted"
    );
}

#[tokio::test]
async fn a_job_whose_processor_keeps_failing_ends_dead_lettered_with_its_message_in_the_dlq() {
    let stack = Stack::create(3, Duration::from_secs(30)).await;
    let counting = Counting::new(Behaviour::FailRetryable);
    let app = stack.app(stack.settings(), processors_with(&counting));
    let id = submit(&app, json!({"kind": "counting", "payload": {}})).await;

    for attempt in 1..=3 {
        let report = stack.deliver(&app).await;
        assert_eq!(report.failed.len(), 1, "attempt {attempt}");
        let expected = if attempt < 3 {
            "pending"
        } else {
            "dead_lettered"
        };
        assert_eq!(
            status(&app, id).await["status"],
            expected,
            "after attempt {attempt}"
        );
    }
    assert_eq!(counting.runs(id), 3);

    // SQS moves the message to the DLQ on the receive after maxReceiveCount.
    assert!(
        stack
            .esm()
            .poll_once(&app, Duration::from_secs(1))
            .await
            .unwrap()
            .is_none()
    );
    let dead = stack
        .dlq()
        .receive(10, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(JobMessage::decode(&dead[0].body).unwrap().job_id, id);
    let job = status(&app, id).await;
    assert_eq!(job["attempts"], 3);
    assert_eq!(job["error"], "counting: asked to fail");
}

#[tokio::test]
async fn a_duplicate_delivery_of_the_same_message_does_not_run_the_processor_twice() {
    let stack = Stack::create(3, Duration::from_secs(30)).await;
    let counting = Counting::new(Behaviour::Succeed);
    let app = stack.app(stack.settings(), processors_with(&counting));
    let id = submit(&app, json!({"kind": "counting", "payload": {}})).await;

    let messages = stack.receive().await;
    let event = stack.sqs_event(&messages);
    let first = handle_batch(&app, event.clone(), deadline_in(30)).await;
    let duplicate = handle_batch(&app, event, deadline_in(30)).await;

    assert!(first.batch_item_failures.is_empty());
    assert!(
        duplicate.batch_item_failures.is_empty(),
        "a duplicate of a finished job is acknowledged"
    );
    assert_eq!(counting.runs(id), 1);
    assert_eq!(status(&app, id).await["result"], json!({"ran": 1}));
}

#[tokio::test]
async fn a_job_past_its_deadline_is_expired_and_not_run() {
    let stack = Stack::create(3, Duration::from_secs(30)).await;
    let counting = Counting::new(Behaviour::Succeed);
    let app = stack.app(stack.settings(), processors_with(&counting));
    let id = submit(
        &app,
        json!({"kind": "counting", "payload": {}, "ttl_seconds": 1}),
    )
    .await;

    let messages = stack.receive().await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let response = handle_batch(&app, stack.sqs_event(&messages), deadline_in(30)).await;

    assert!(
        response.batch_item_failures.is_empty(),
        "an expired job is acknowledged"
    );
    assert_eq!(counting.runs(id), 0);
    let job = status(&app, id).await;
    assert_eq!(job["status"], "expired");
    assert_eq!(job["attempts"], 0);
}

#[tokio::test]
async fn a_batch_with_one_poison_message_reports_exactly_that_message() {
    let stack = Stack::create(3, Duration::from_secs(30)).await;
    let app = stack.app(stack.settings(), kinds::builtin());
    let good = [
        submit(&app, json!({"kind": "echo", "payload": 1})).await,
        submit(&app, json!({"kind": "echo", "payload": 2})).await,
    ];
    let poison = stack
        .queue()
        .send("this is not a job message")
        .await
        .unwrap();
    let items_before = stack.item_count().await;

    let mut messages = Vec::new();
    while messages.len() < 3 {
        messages.extend(stack.receive().await);
    }
    let response = handle_batch(&app, stack.sqs_event(&messages), deadline_in(30)).await;

    let failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    assert_eq!(failed, [poison]);
    for id in good {
        assert_eq!(status(&app, id).await["status"], "succeeded");
    }
    assert_eq!(
        stack.item_count().await,
        items_before,
        "the poison message wrote nothing"
    );
}

#[tokio::test]
async fn rejected_requests_write_nothing_and_enqueue_nothing() {
    let stack = Stack::create(3, Duration::from_secs(30)).await;
    let settings = spillway_core::Settings {
        max_payload_bytes: 1_024,
        ..stack.settings()
    };
    let app = stack.app(settings, kinds::builtin());
    let text =
        HeaderMap::from_iter([(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"))]);
    let cases: Vec<(HeaderMap, Vec<u8>, u16)> = vec![
        (json_headers(), b"{not json".to_vec(), 400),
        (json_headers(), br#"{"kind": "echo"}"#.to_vec(), 400),
        (
            json_headers(),
            br#"{"kind": "Echo!", "payload": 1}"#.to_vec(),
            400,
        ),
        (
            json_headers(),
            br#"{"kind": "echo", "payload": 1, "ttl_seconds": 0}"#.to_vec(),
            400,
        ),
        (
            json_headers(),
            br#"{"kind": "echo", "payload": 1, "extra": true}"#.to_vec(),
            400,
        ),
        (
            json_headers(),
            br#"{"kind": "sleep", "payload": {"ms": "long"}}"#.to_vec(),
            400,
        ),
        (
            json_headers(),
            format!(r#"{{"kind": "echo", "payload": "{}"}}"#, "x".repeat(2_000)).into_bytes(),
            413,
        ),
        (text, br#"{"kind": "echo", "payload": 1}"#.to_vec(), 415),
        (
            HeaderMap::new(),
            br#"{"kind": "echo", "payload": 1}"#.to_vec(),
            415,
        ),
        (
            json_headers(),
            br#"{"kind": "no-such-kind", "payload": 1}"#.to_vec(),
            422,
        ),
    ];
    for (headers, body, expected) in cases {
        let response = api::submit_job(&app, Owner::anonymous(), &headers, &body).await;
        let shown = String::from_utf8_lossy(&body[..body.len().min(60)]).into_owned();
        assert_eq!(
            response.status().as_u16(),
            expected,
            "{shown}: {}",
            response.body()
        );
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        let problem: Value = serde_json::from_str(response.body()).unwrap();
        assert_eq!(problem["status"], expected);
        assert!(problem["detail"].as_str().is_some_and(|d| !d.is_empty()));
    }
    for (id, expected) in [
        ("nope", 400),
        ("6ba7b810-9dad-41d1-80b4-00c04fd430c8", 400),
        (&JobId::generate().to_string(), 404),
    ] {
        let response = api::get_job(&app, &Owner::anonymous(), id, None).await;
        assert_eq!(response.status().as_u16(), expected, "GET {id}");
        let response = api::cancel_job(&app, &Owner::anonymous(), id).await;
        assert_eq!(response.status().as_u16(), expected, "DELETE {id}");
    }
    assert_eq!(stack.item_count().await, 0);
    assert_eq!(stack.queued_messages().await, 0);
}

#[tokio::test]
async fn a_job_is_invisible_to_other_callers() {
    let stack = Stack::create(3, Duration::from_secs(30)).await;
    let app = stack.app(stack.settings(), kinds::builtin());
    let alice = Owner::authenticated("alice");
    let id = submit_as(&app, alice.clone(), json!({"kind": "echo", "payload": 1}))
        .await
        .to_string();

    assert_eq!(
        api::get_job(&app, &alice, &id, None).await.status(),
        StatusCode::OK
    );
    let bob = Owner::authenticated("bob");
    assert_eq!(
        api::get_job(&app, &bob, &id, None).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api::cancel_job(&app, &bob, &id).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api::get_job(&app, &alice, &id, None).await.status(),
        StatusCode::OK,
        "bob's DELETE changed nothing"
    );
}

#[tokio::test]
async fn a_pending_job_can_be_cancelled_and_is_then_skipped() {
    let stack = Stack::create(3, Duration::from_secs(30)).await;
    let counting = Counting::new(Behaviour::Succeed);
    let app = stack.app(stack.settings(), processors_with(&counting));
    let id = submit(&app, json!({"kind": "counting", "payload": {}})).await;

    let response = api::cancel_job(&app, &Owner::anonymous(), &id.to_string()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<Value>(response.body()).unwrap()["status"],
        "cancelled"
    );
    let again = api::cancel_job(&app, &Owner::anonymous(), &id.to_string()).await;
    assert_eq!(
        again.status(),
        StatusCode::OK,
        "cancelling twice answers as the first time"
    );

    let report = stack.deliver(&app).await;
    assert_eq!(
        report.deleted, 1,
        "the cancelled job's message is acknowledged"
    );
    assert_eq!(counting.runs(id), 0);

    let finished = submit(&app, json!({"kind": "counting", "payload": {}})).await;
    stack.deliver(&app).await;
    let conflict = api::cancel_job(&app, &Owner::anonymous(), &finished.to_string()).await;
    assert_eq!(conflict.status(), StatusCode::CONFLICT);
}

#[tokio::test]
async fn a_long_poll_returns_as_soon_as_the_job_finishes() {
    let stack = Stack::create(3, Duration::from_secs(30)).await;
    let app = stack.app(stack.settings(), kinds::builtin());
    let id = submit(&app, json!({"kind": "sleep", "payload": {"ms": 300}})).await;

    let esm = stack.esm();
    let worker = {
        let app = app.clone();
        tokio::spawn(async move { esm.poll_once(&app, Duration::from_secs(5)).await })
    };
    let started = std::time::Instant::now();
    let response = api::get_job(&app, &Owner::anonymous(), &id.to_string(), Some("10")).await;
    let waited = started.elapsed();
    worker.await.unwrap().unwrap();

    let job: Value = serde_json::from_str(response.body()).unwrap();
    assert_eq!(job["status"], "succeeded");
    assert!(
        response.headers().get(header::RETRY_AFTER).is_none(),
        "no polling hint once terminal"
    );
    assert!(
        waited < Duration::from_secs(10),
        "the long poll ended with the job, not the timeout"
    );
}

#[tokio::test]
async fn a_queue_that_cannot_be_reached_answers_503_and_writes_nothing() {
    let stack = Stack::create(3, Duration::from_secs(30)).await;
    let app = stack.app_with_an_unreachable_queue();

    let body = json!({"kind": "echo", "payload": 1}).to_string();
    let response =
        api::submit_job(&app, Owner::anonymous(), &json_headers(), body.as_bytes()).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key(header::RETRY_AFTER));
    let problem: Value = serde_json::from_str(response.body()).unwrap();
    assert_eq!(problem["type"], "urn:spillway:problem:unavailable");
    assert_eq!(
        stack.item_count().await,
        0,
        "the message goes first: a job that was never sent is never written"
    );
}

/// A queue that sends, then loses the answer: as SQS does when its response times out.
#[derive(Debug)]
struct AnswersLost(std::sync::Arc<dyn spillway_core::queue::JobQueue>);

#[async_trait::async_trait]
impl spillway_core::queue::JobQueue for AnswersLost {
    async fn send_with(
        &self,
        body: &str,
        options: spillway_core::queue::SendOptions<'_>,
    ) -> Result<String, spillway_core::queue::QueueError> {
        self.0.send_with(body, options).await?;
        Err(spillway_core::queue::QueueError::Unavailable(
            "the answer was lost".into(),
        ))
    }
    async fn send_batch(
        &self,
        messages: &[spillway_core::queue::Outgoing<'_>],
    ) -> Vec<Result<String, spillway_core::queue::QueueError>> {
        self.0
            .send_batch(messages)
            .await
            .into_iter()
            .map(|_| {
                Err(spillway_core::queue::QueueError::Unavailable(
                    "the answer was lost".into(),
                ))
            })
            .collect()
    }
    async fn change_visibility(
        &self,
        receipt_handle: &str,
        timeout: Duration,
    ) -> Result<(), spillway_core::queue::QueueError> {
        self.0.change_visibility(receipt_handle, timeout).await
    }
    async fn receive(
        &self,
        max: u32,
        wait: Duration,
    ) -> Result<Vec<spillway_core::queue::ReceivedMessage>, spillway_core::queue::QueueError> {
        self.0.receive(max, wait).await
    }
    async fn delete(&self, receipt_handle: &str) -> Result<(), spillway_core::queue::QueueError> {
        self.0.delete(receipt_handle).await
    }
    async fn depth(
        &self,
    ) -> Result<spillway_core::queue::QueueDepth, spillway_core::queue::QueueError> {
        self.0.depth().await
    }
}

/// Every send fails (its answer is lost) and the client never retries: the job still runs, and
/// ends within the time its message takes to be received.
#[tokio::test]
async fn a_job_whose_send_always_fails_runs_without_its_client_retrying() {
    let stack = Stack::create(3, Duration::from_secs(30)).await;
    let counting = Counting::new(Behaviour::Succeed);
    let mut app = stack.app(stack.settings(), processors_with(&counting));
    app.queues.normal = std::sync::Arc::new(AnswersLost(app.queues.normal.clone()));
    let body =
        json!({"kind": "counting", "payload": {"n": 1}, "callback_url": "https://example.com/cb"});
    let response = api::submit_job(
        &app,
        Owner::anonymous(),
        &json_headers(),
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);

    stack.deliver(&app).await;
    assert_eq!(counting.total_runs(), 1);
    let jobs = stack.job_statuses().await;
    let statuses: Vec<&str> = jobs.iter().map(|(_, status)| status.as_str()).collect();
    // The job, and the callback job its success created.
    assert!(statuses.contains(&"succeeded"), "{statuses:?}");
    assert!(
        statuses
            .iter()
            .all(|s| *s == "succeeded" || *s == "pending"),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn a_retry_hides_its_message_for_the_delay_the_processor_asked_for() {
    let stack = Stack::create(3, Duration::from_secs(30)).await;
    let delay = Duration::from_secs(2);
    let counting = Counting::new(Behaviour::FailRetryableAfter(delay));
    let app = stack.app(stack.settings(), processors_with(&counting));
    let id = submit(&app, json!({"kind": "counting", "payload": {}})).await;

    let report = stack.deliver(&app).await;
    assert_eq!(report.failed.len(), 1);
    assert_eq!(status(&app, id).await["status"], "pending");
    let early = stack
        .queue()
        .receive(10, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(
        early.is_empty(),
        "the message came back before its retry delay"
    );

    tokio::time::sleep(delay).await;
    let later = stack.receive().await;
    assert_eq!(
        later.len(),
        1,
        "the message is back once the delay has passed"
    );
    assert_eq!(later[0].receive_count, 2);
}

#[tokio::test]
async fn a_job_whose_consumer_died_is_claimed_again_once_its_lease_lapses() {
    let stack = Stack::create(5, Duration::from_secs(30)).await;
    let counting = Counting::new(Behaviour::Succeed);
    let app = stack.app(stack.settings(), processors_with(&counting));
    let id = submit(&app, json!({"kind": "counting", "payload": {}})).await;
    // A consumer claims the job for a lease of three seconds, then dies without a word.
    let lease = Duration::from_secs(3);
    let claim = app.change(spillway_core::domain::Transition::Claim {
        lease_until: deadline_in(0).saturating_add(lease),
        max_attempts: 5,
    });
    app.store.apply(id, &claim).await.unwrap();

    let messages = stack.receive().await;
    let event = stack.sqs_event(&messages);
    let during = handle_batch(&app, event.clone(), deadline_in(30)).await;
    assert_eq!(
        during.batch_item_failures.len(),
        1,
        "a live lease makes the delivery back off"
    );
    assert_eq!(counting.runs(id), 0);

    tokio::time::sleep(lease + Duration::from_millis(200)).await;
    let after = handle_batch(&app, event, deadline_in(30)).await;
    assert!(after.batch_item_failures.is_empty());
    let job = status(&app, id).await;
    assert_eq!(
        (job["status"].as_str(), job["attempts"].as_u64()),
        (Some("succeeded"), Some(2))
    );
    assert_eq!(counting.runs(id), 1);
}

/// A request body of exactly `bytes` bytes for `kind`, its payload a string.
fn body_of(kind: &str, bytes: usize) -> Value {
    let job = |payload: &str| json!({"kind": kind, "payload": payload});
    let payload = "x".repeat(bytes - job("").to_string().len());
    let body = job(&payload);
    assert_eq!(body.to_string().len(), bytes);
    body
}

/// `echo`'s result is its payload, which at the payload limit is far over what a job's record
/// can keep (a DynamoDB item holds 400 KB): the job fails at once with the reason, its message
/// is deleted, and nothing is left running or coming back.
#[tokio::test]
async fn an_echo_at_the_payload_limit_fails_for_its_result_size_and_leaves_nothing_behind() {
    let stack = Stack::create(3, Duration::from_secs(30)).await;
    let app = stack.app(stack.settings(), kinds::builtin());
    let id = submit(&app, body_of("echo", MAX_PAYLOAD_LIMIT)).await;

    let report = stack.deliver(&app).await;
    assert_eq!((report.received, report.deleted), (1, 1));
    let job = status(&app, id).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["attempts"], 1);
    assert_eq!(job["error"], "the result is larger than 300000 bytes");
    assert_eq!(job["result"], Value::Null);
    assert_eq!(stack.queued_messages().await, 0);
}

/// A message of the largest size moves to the DLQ whole when its job's attempts run out, and a
/// redrive sends it back whole to run again: the DLQ takes what the work queue takes.
#[tokio::test]
async fn a_message_at_the_payload_limit_goes_to_the_dlq_and_back_whole() {
    let stack = Stack::create(3, Duration::from_secs(30)).await;
    let failing = Counting::new(Behaviour::FailRetryable);
    let app = stack.app(stack.settings(), processors_with(&failing));
    let id = submit(&app, body_of("counting", MAX_PAYLOAD_LIMIT)).await;
    for _ in 0..3 {
        stack.deliver(&app).await;
    }
    assert_eq!(status(&app, id).await["status"], "dead_lettered");
    // SQS moves the message on the receive after maxReceiveCount.
    let moved = stack.esm().poll_once(&app, Duration::from_secs(1)).await;
    assert!(moved.unwrap().is_none());
    let dlq = stack.dlq();
    let dead = dlq.receive(1, Duration::from_secs(5)).await.unwrap();
    let sent = dead[0].body.clone();
    assert!(sent.len() > MAX_PAYLOAD_LIMIT && sent.len() <= MAX_MESSAGE_BYTES);
    assert_eq!(JobMessage::decode(&sent).unwrap().job_id, id);
    dlq.change_visibility(&dead[0].receipt_handle, Duration::ZERO)
        .await
        .unwrap();

    let reset = Reset {
        clock: app.clock.as_ref(),
        retention: app.settings.retention,
        extend: None,
    };
    let queue = stack.queue();
    let report = dlq::redrive(
        app.store.as_ref(),
        queue.as_ref(),
        dlq.as_ref(),
        reset,
        None,
    )
    .await
    .unwrap();
    assert_eq!((report.moved, report.jobs_reset), (1, 1));
    let redriven = stack.receive().await;
    assert!(redriven[0].body == sent, "the redriven message changed");

    let succeeding = Counting::new(Behaviour::Succeed);
    let app = stack.app(stack.settings(), processors_with(&succeeding));
    let response = handle_batch(&app, stack.sqs_event(&redriven), deadline_in(30)).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(succeeding.runs(id), 1);
    assert_eq!(status(&app, id).await["status"], "succeeded");
}

/// Scheduled jobs on SQS's own delays: a job due in a few seconds shows `scheduled`, is not
/// started before it is due, and runs once; one cancelled while scheduled never runs. (The
/// 20-minute case, whose message hops past SQS's 15-minute delay, is `consumer::tests` on a
/// controlled clock: SQS's delays pass in real time.)
#[tokio::test]
async fn a_scheduled_job_runs_when_due_on_sqs_and_a_cancelled_one_never_runs() {
    let stack = Stack::create(3, Duration::from_secs(30)).await;
    let counting = Counting::new(Behaviour::Succeed);
    let app = stack.app(stack.settings(), processors_with(&counting));
    let body = json!({"kind": "counting", "payload": {}, "delay_seconds": 4});
    let id = submit(&app, body.clone()).await;
    let cancelled = submit(&app, body).await;
    let scheduled = status(&app, id).await;
    assert_eq!(scheduled["status"], "scheduled", "{scheduled}");
    let due = Timestamp::parse_rfc3339(scheduled["run_at"].as_str().unwrap()).unwrap();
    let response = api::cancel_job(&app, &Owner::anonymous(), &cancelled.to_string()).await;
    assert_eq!(response.status(), StatusCode::OK, "{}", response.body());

    // SQS holds both messages until they are due (checked while there is time to check it).
    let now = || Timestamp::from_system_time(std::time::SystemTime::now());
    if due.saturating_since(now()) > Duration::from_millis(1500) {
        let early = stack.esm().poll_once(&app, Duration::from_secs(1)).await;
        assert!(early.unwrap().is_none(), "a message was received early");
    }
    let mut waited = 0;
    while status(&app, id).await["status"] != "succeeded" {
        assert!(waited < 30, "the job did not run within 30 s of its submit");
        stack
            .esm()
            .poll_once(&app, Duration::from_secs(1))
            .await
            .unwrap();
        waited += 1;
    }
    let job = status(&app, id).await;
    let started = Timestamp::parse_rfc3339(job["started_at"].as_str().unwrap()).unwrap();
    assert!(started >= due, "started {started:?}, due {due:?}");
    assert_eq!(counting.runs(id), 1);
    // The cancelled job's message comes due too, and runs nothing.
    for _ in 0..3 {
        stack
            .esm()
            .poll_once(&app, Duration::from_secs(1))
            .await
            .unwrap();
    }
    assert_eq!(counting.runs(cancelled), 0);
    assert_eq!(status(&app, cancelled).await["status"], "cancelled");
    assert_eq!(
        stack.queued_messages().await,
        0,
        "both messages were deleted"
    );
}

#[tokio::test]
async fn a_processor_running_three_times_the_visibility_timeout_completes_once_with_one_delivery() {
    // Heartbeats come every second, so two in a row may be late on a busy machine before the
    // message could come back.
    let stack = Stack::create(3, Duration::from_secs(3)).await;
    let settings = Settings {
        demo_kinds: true,
        ..stack.settings()
    };
    let app = stack.app(settings, kinds::builtin());
    let id = submit(&app, json!({"kind": "sleep", "payload": {"ms": 10_000}})).await;

    let first = {
        let (stack_esm, app) = (stack.esm(), app.clone());
        tokio::spawn(async move {
            stack_esm
                .poll_once(&app, Duration::from_secs(5))
                .await
                .unwrap()
                .expect("the job's message")
        })
    };
    // A second consumer polls the queue all along: the message never becomes visible to it.
    let mut seen = Vec::new();
    tokio::time::sleep(Duration::from_millis(500)).await;
    while !first.is_finished() {
        let second = stack
            .esm()
            .poll_once(&app, Duration::from_millis(500))
            .await
            .unwrap();
        assert_eq!(
            second, None,
            "the message was delivered again while its job ran"
        );
        let job = status(&app, id).await;
        if job["status"] == "running" {
            seen.push(job["progress"].clone());
        }
    }
    let report = first.await.unwrap();
    assert_eq!((report.received, report.deleted), (1, 1));

    let job = status(&app, id).await;
    assert_eq!(job["status"], "succeeded");
    assert_eq!(job["attempts"], 1);
    assert_eq!(job["result"], json!({"slept_ms": 10_000, "attempt": 1}));
    let fractions: Vec<f64> = seen.iter().filter_map(|p| p["fraction"].as_f64()).collect();
    assert!(
        fractions.len() >= 3 && fractions.windows(2).all(|w| w[0] <= w[1]),
        "progress was visible while the job ran: {seen:?}"
    );
    assert!(
        seen.iter()
            .any(|p| p["note"].as_str().is_some_and(|n| n.starts_with("slept "))),
        "{seen:?}"
    );
    assert_eq!(
        stack.queued_messages().await,
        0,
        "the one message was deleted"
    );
}
