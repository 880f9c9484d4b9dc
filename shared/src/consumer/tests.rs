use std::time::Duration;

use serde_json::json;
use serde_json::value::RawValue;

use super::*;
use crate::clock::Clock as _;
use crate::domain::{JobId, Kind};
use crate::esm::sqs_event;
use crate::queue::JobQueue as _;
use crate::testing::{Behaviour, Counting, MemoryPipeline, fast_settings, processors_with, submit};

async fn job(app: &App, id: JobId) -> Job {
    app.store.get(id).await.unwrap().unwrap()
}

fn pipeline(behaviour: Behaviour) -> (MemoryPipeline, Counting) {
    let counting = Counting::new(behaviour);
    (
        MemoryPipeline::new(fast_settings(), processors_with(&counting)),
        counting,
    )
}

fn far_deadline() -> Timestamp {
    Timestamp::from_system_time(std::time::SystemTime::now())
        .saturating_add(Duration::from_secs(30))
}

#[tokio::test]
async fn an_echo_job_succeeds_with_its_payload_as_result() {
    let (pipeline, _) = pipeline(Behaviour::Succeed);
    let id = submit(
        &pipeline.app,
        json!({"kind": "echo", "payload": {"hello": "world"}}),
    )
    .await;
    let report = pipeline
        .esm
        .poll_once(&pipeline.app, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((report.received, report.deleted), (1, 1));
    let job = job(&pipeline.app, id).await;
    assert_eq!(job.status, JobStatus::Succeeded);
    assert_eq!(job.result, Some(json!({"hello": "world"})));
    assert_eq!(job.attempts, 1);
}

#[tokio::test]
async fn a_retryable_failure_retries_then_dead_letters_on_the_last_attempt() {
    let (pipeline, counting) = pipeline(Behaviour::FailRetryable);
    let id = submit(&pipeline.app, json!({"kind": "counting", "payload": {}})).await;
    for attempt in 1..=3 {
        let report = pipeline
            .esm
            .poll_once(&pipeline.app, Duration::from_secs(1))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            report.failed.len(),
            1,
            "attempt {attempt} was not reported failed"
        );
        let expected = if attempt < 3 {
            JobStatus::Pending
        } else {
            JobStatus::DeadLettered
        };
        assert_eq!(job(&pipeline.app, id).await.status, expected);
    }
    assert_eq!(counting.runs(id), 3);
    // The next receive moves the message to the DLQ, as SQS does past maxReceiveCount.
    assert!(
        pipeline
            .esm
            .poll_once(&pipeline.app, Duration::from_millis(50))
            .await
            .unwrap()
            .is_none()
    );
    let dead = pipeline.dlq.receive(10, Duration::ZERO).await.unwrap();
    assert_eq!(JobMessage::decode(&dead[0].body).unwrap().job_id, id);
    assert_eq!(
        job(&pipeline.app, id).await.error.as_deref(),
        Some("counting: asked to fail")
    );
}

#[tokio::test]
async fn a_permanent_failure_fails_the_job_after_one_attempt() {
    let (pipeline, counting) = pipeline(Behaviour::FailPermanent);
    let id = submit(&pipeline.app, json!({"kind": "counting", "payload": {}})).await;
    let report = pipeline
        .esm
        .poll_once(&pipeline.app, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert!(
        report.failed.is_empty(),
        "a permanent failure is handled, not retried"
    );
    assert_eq!(job(&pipeline.app, id).await.status, JobStatus::Failed);
    assert_eq!(counting.runs(id), 1);
}

#[tokio::test]
async fn a_duplicate_delivery_does_not_run_the_job_twice() {
    let (pipeline, counting) = pipeline(Behaviour::Succeed);
    let id = submit(&pipeline.app, json!({"kind": "counting", "payload": {}})).await;
    let messages = pipeline
        .app
        .queue
        .receive(10, Duration::ZERO)
        .await
        .unwrap();
    let event = sqs_event(&messages, "arn", "us-east-1");

    let first = handle_batch(&pipeline.app, event.clone(), far_deadline()).await;
    let again = handle_batch(&pipeline.app, event, far_deadline()).await;
    assert!(first.batch_item_failures.is_empty() && again.batch_item_failures.is_empty());
    assert_eq!(counting.runs(id), 1);
    assert_eq!(job(&pipeline.app, id).await.status, JobStatus::Succeeded);
}

#[tokio::test]
async fn concurrent_deliveries_of_one_message_run_it_once() {
    let (pipeline, counting) = pipeline(Behaviour::Sleep(Duration::from_millis(50)));
    let id = submit(&pipeline.app, json!({"kind": "counting", "payload": {}})).await;
    let messages = pipeline
        .app
        .queue
        .receive(10, Duration::ZERO)
        .await
        .unwrap();
    let event = sqs_event(&messages, "arn", "us-east-1");

    let (a, b) = tokio::join!(
        handle_batch(&pipeline.app, event.clone(), far_deadline()),
        handle_batch(&pipeline.app, event, far_deadline()),
    );
    assert_eq!(counting.runs(id), 1);
    let failures = a.batch_item_failures.len() + b.batch_item_failures.len();
    assert_eq!(
        failures, 1,
        "the delivery that found the job leased backs off"
    );
}

#[tokio::test]
async fn a_job_past_its_deadline_is_expired_and_not_run() {
    let (pipeline, counting) = pipeline(Behaviour::Succeed);
    let clock = Arc::new(crate::clock::ManualClock::at(
        crate::clock::SystemClock.now(),
    ));
    let app = pipeline.app.clone().with_clock(clock.clone());
    let id = submit(
        &app,
        json!({"kind": "counting", "payload": {}, "ttl_seconds": 5}),
    )
    .await;
    clock.advance(Duration::from_secs(6));
    let messages = app.queue.receive(10, Duration::ZERO).await.unwrap();
    let response = handle_batch(&app, sqs_event(&messages, "arn", "r"), far_deadline()).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(counting.runs(id), 0);
    assert_eq!(job(&app, id).await.status, JobStatus::Expired);
}

#[tokio::test]
async fn a_poison_message_fails_only_itself() {
    let (pipeline, _) = pipeline(Behaviour::Succeed);
    let good = submit(&pipeline.app, json!({"kind": "echo", "payload": 1})).await;
    let poison_id = pipeline.app.queue.send("{not json").await.unwrap();
    let future_version = pipeline.app.queue.send(r#"{"v": 99}"#).await.unwrap();
    let report = pipeline
        .esm
        .poll_once(&pipeline.app, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    let mut failed = report.failed.clone();
    failed.sort();
    let mut expected = vec![poison_id, future_version];
    expected.sort();
    assert_eq!(failed, expected);
    assert_eq!(job(&pipeline.app, good).await.status, JobStatus::Succeeded);
}

#[tokio::test]
async fn a_panicking_processor_fails_only_its_own_record() {
    let counting = Counting::new(Behaviour::Panic);
    let pipeline = MemoryPipeline::new(fast_settings(), processors_with(&counting));
    let panics = submit(&pipeline.app, json!({"kind": "counting", "payload": {}})).await;
    let fine = submit(&pipeline.app, json!({"kind": "echo", "payload": "ok"})).await;
    let report = pipeline
        .esm
        .poll_once(&pipeline.app, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((report.received, report.failed.len()), (2, 1));
    assert_eq!(job(&pipeline.app, fine).await.status, JobStatus::Succeeded);
    let panicked = job(&pipeline.app, panics).await;
    assert_eq!(panicked.status, JobStatus::Pending, "a panic is retried");
    assert!(panicked.error.unwrap().contains("panicked"));
}

#[tokio::test]
async fn a_processor_is_stopped_when_the_invocation_runs_out_of_time() {
    let (pipeline, _) = pipeline(Behaviour::Sleep(Duration::from_secs(60)));
    let id = submit(&pipeline.app, json!({"kind": "counting", "payload": {}})).await;
    let messages = pipeline
        .app
        .queue
        .receive(10, Duration::ZERO)
        .await
        .unwrap();
    let deadline = pipeline
        .app
        .clock
        .now()
        .saturating_add(WRAP_UP + Duration::from_millis(200));
    let response = handle_batch(&pipeline.app, sqs_event(&messages, "arn", "r"), deadline).await;
    assert_eq!(response.batch_item_failures.len(), 1);
    let job = job(&pipeline.app, id).await;
    assert_eq!(job.status, JobStatus::Pending);
    assert!(
        job.error.unwrap().contains("did not finish"),
        "timeouts are retryable"
    );
}

#[tokio::test]
async fn a_job_leased_by_another_consumer_is_left_alone() {
    let (pipeline, counting) = pipeline(Behaviour::Succeed);
    let id = submit(&pipeline.app, json!({"kind": "counting", "payload": {}})).await;
    let claim = Change {
        transition: Transition::Claim {
            lease_until: far_deadline(),
        },
        at: pipeline.app.clock.now(),
        retention: Duration::from_secs(60),
    };
    pipeline.app.store.apply(id, &claim).await.unwrap();
    let report = pipeline
        .esm
        .poll_once(&pipeline.app, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.failed.len(), 1);
    assert_eq!(counting.runs(id), 0);
}

#[test]
fn backoff_stays_within_its_exponential_ceiling() {
    let settings = Settings {
        backoff_base: Duration::from_secs(2),
        backoff_max: Duration::from_secs(60),
        ..Settings::default()
    };
    for (attempt, ceiling) in [(1, 2), (2, 4), (3, 8), (4, 16), (5, 32), (6, 60), (40, 60)] {
        for _ in 0..200 {
            let delay = backoff(&settings, attempt, None);
            assert!(
                delay <= Duration::from_secs(ceiling),
                "attempt {attempt}: {delay:?}"
            );
        }
    }
    let draws: std::collections::HashSet<_> =
        (0..200).map(|_| backoff(&settings, 6, None)).collect();
    assert!(draws.len() > 10, "full jitter spreads retries out");
}

#[test]
fn a_longer_retry_after_wins_over_the_backoff() {
    let settings = Settings::default();
    assert_eq!(
        backoff(&settings, 1, Some(Duration::from_secs(120))),
        Duration::from_secs(120)
    );
    assert_eq!(
        backoff(&settings, 1, Some(Duration::from_secs(86_400))),
        MAX_VISIBILITY
    );
}

#[test]
fn a_result_is_measured_as_the_json_the_store_writes() {
    for value in [
        json!(null),
        json!({"a": [1, "é", {"b": true}], "c": 1.5}),
        json!("x".repeat(1000)),
    ] {
        assert_eq!(super::json_len(&value), value.to_string().len());
    }
}

#[tokio::test]
async fn a_result_over_the_item_limit_fails_the_job_permanently() {
    let settings = Settings {
        max_payload_bytes: 2 * MAX_RESULT_BYTES,
        ..fast_settings()
    };
    let pipeline = MemoryPipeline::new(settings, crate::processor::Processors::builtin());
    let big = "x".repeat(MAX_RESULT_BYTES);
    let id = submit(&pipeline.app, json!({"kind": "echo", "payload": big})).await;
    pipeline
        .esm
        .poll_once(&pipeline.app, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    let job = job(&pipeline.app, id).await;
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(job.result, None);
    assert!(
        job.error.as_deref().unwrap().contains("larger than"),
        "{job:?}"
    );
}

const CALLBACK_URL: &str = "https://hooks.example.com/done";

/// Receives the messages now visible and decodes them.
async fn visible_messages(pipeline: &MemoryPipeline) -> Vec<JobMessage> {
    let received = pipeline.esm.receive_batch(Duration::ZERO).await.unwrap();
    for message in &received {
        pipeline
            .app
            .queue
            .change_visibility(&message.receipt_handle, Duration::ZERO)
            .await
            .unwrap();
    }
    received
        .iter()
        .map(|m| JobMessage::decode(&m.body).unwrap())
        .collect()
}

#[tokio::test]
async fn a_terminal_job_with_a_callback_url_enqueues_a_webhook_job_with_its_final_document() {
    let (pipeline, _) = pipeline(Behaviour::Succeed);
    let app = &pipeline.app;
    let id = submit(
        app,
        json!({"kind": "echo", "payload": {"n": 1}, "callback_url": CALLBACK_URL}),
    )
    .await;
    assert_eq!(
        job(app, id).await.callback_url.as_deref(),
        Some(CALLBACK_URL)
    );
    pipeline.esm.poll_once(app, Duration::ZERO).await.unwrap();

    let finished = job(app, id).await;
    assert_eq!(finished.status, JobStatus::Succeeded);
    let messages = visible_messages(&pipeline).await;
    assert_eq!(messages.len(), 1, "one callback message");
    let callback = &messages[0];
    assert_eq!(callback.job_id, id.derived("callback:succeeded:1"));
    assert_eq!(callback.kind.as_str(), "webhook");
    let payload: Value = serde_json::from_str(callback.payload.get()).unwrap();
    assert_eq!(
        payload,
        json!({"url": CALLBACK_URL, "method": "POST", "body": crate::api::job_document(&finished)})
    );
    assert_eq!(payload["body"]["result"], json!({"n": 1}));
    let stored = job(app, callback.job_id).await;
    assert_eq!(
        (
            stored.status,
            stored.owner.clone(),
            stored.callback_url.clone()
        ),
        (JobStatus::Pending, finished.owner, None)
    );
}

#[tokio::test]
async fn failed_and_expired_jobs_get_callbacks_and_jobs_without_a_url_do_not() {
    let (pipeline, _) = pipeline(Behaviour::FailPermanent);
    let app = &pipeline.app;
    let failed = submit(
        app,
        json!({"kind": "counting", "payload": {}, "callback_url": CALLBACK_URL}),
    )
    .await;
    let plain = submit(app, json!({"kind": "counting", "payload": {}})).await;
    pipeline.esm.poll_once(app, Duration::ZERO).await.unwrap();
    assert_eq!(job(app, failed).await.status, JobStatus::Failed);
    assert_eq!(job(app, plain).await.status, JobStatus::Failed);
    let messages = visible_messages(&pipeline).await;
    let ids: Vec<_> = messages.iter().map(|m| m.job_id).collect();
    assert_eq!(ids, [failed.derived("callback:failed:1")]);

    let expiring = crate::domain::JobMessage {
        job_id: submit(
            app,
            json!({"kind": "echo", "payload": {}, "callback_url": CALLBACK_URL, "ttl_seconds": 1}),
        )
        .await,
        kind: Kind::parse("echo").unwrap(),
        payload: RawValue::from_string("{}".to_owned()).unwrap(),
        deadline: Timestamp::from_millis(0),
        correlation_id: None,
    };
    let mut delivery = pipeline.esm.receive_batch(Duration::ZERO).await.unwrap();
    delivery.retain(|m| m.body.contains(&expiring.job_id.to_string()));
    delivery[0].body = expiring.encode();
    pipeline.esm.invoke(app, &delivery).await;
    assert_eq!(job(app, expiring.job_id).await.status, JobStatus::Expired);
    let callbacks = visible_messages(&pipeline).await;
    assert!(
        callbacks
            .iter()
            .any(|m| m.job_id == expiring.job_id.derived("callback:expired:0")),
        "{callbacks:?}"
    );
}

#[tokio::test]
async fn a_duplicate_delivery_creates_no_second_callback_job() {
    let (pipeline, _) = pipeline(Behaviour::Succeed);
    let app = &pipeline.app;
    let id = submit(
        app,
        json!({"kind": "echo", "payload": {}, "callback_url": CALLBACK_URL}),
    )
    .await;
    let delivery = pipeline.esm.receive_batch(Duration::ZERO).await.unwrap();
    pipeline.esm.invoke(app, &delivery).await;
    let callback_id = id.derived("callback:succeeded:1");
    // The callback job has been claimed by now: a second delivery of the finished job's message
    // must neither create nor enqueue anything.
    let claim = Change {
        transition: Transition::Claim {
            lease_until: far_deadline(),
        },
        at: app.clock.now(),
        retention: app.settings.retention,
    };
    app.store.apply(callback_id, &claim).await.unwrap();
    let depth_before = app.queue.depth().await.unwrap();
    let report = pipeline.esm.invoke(app, &delivery).await;
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(app.queue.depth().await.unwrap(), depth_before);
    assert_eq!(job(app, callback_id).await.attempts, 1);
}

/// A queue whose `send` fails while `failing` is set.
#[derive(Debug)]
struct FlakySend {
    inner: Arc<dyn crate::queue::JobQueue>,
    failing: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl crate::queue::JobQueue for FlakySend {
    async fn send(&self, body: &str) -> Result<String, crate::queue::QueueError> {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(crate::queue::QueueError::Unavailable("send refused".into()));
        }
        self.inner.send(body).await
    }
    async fn change_visibility(
        &self,
        receipt_handle: &str,
        timeout: Duration,
    ) -> Result<(), crate::queue::QueueError> {
        self.inner.change_visibility(receipt_handle, timeout).await
    }
    async fn receive(
        &self,
        max: u32,
        wait: Duration,
    ) -> Result<Vec<crate::queue::ReceivedMessage>, crate::queue::QueueError> {
        self.inner.receive(max, wait).await
    }
    async fn delete(&self, receipt_handle: &str) -> Result<(), crate::queue::QueueError> {
        self.inner.delete(receipt_handle).await
    }
    async fn depth(&self) -> Result<crate::queue::QueueDepth, crate::queue::QueueError> {
        self.inner.depth().await
    }
}

#[tokio::test]
async fn a_callback_that_could_not_be_enqueued_is_enqueued_by_the_next_delivery() {
    let (pipeline, _) = pipeline(Behaviour::Succeed);
    let flaky = Arc::new(FlakySend {
        inner: pipeline.app.queue.clone(),
        failing: false.into(),
    });
    let mut app = pipeline.app.clone();
    app.queue = flaky.clone();
    let id = submit(
        &app,
        json!({"kind": "echo", "payload": {}, "callback_url": CALLBACK_URL}),
    )
    .await;
    flaky
        .failing
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let delivery = pipeline.esm.receive_batch(Duration::ZERO).await.unwrap();
    let report = pipeline.esm.invoke(&app, &delivery).await;
    assert_eq!(report.failed.len(), 1, "the message stays: {report:?}");
    assert_eq!(job(&app, id).await.status, JobStatus::Succeeded);
    let callback_id = id.derived("callback:succeeded:1");
    assert_eq!(job(&app, callback_id).await.status, JobStatus::Pending);
    assert!(
        visible_messages(&pipeline).await.is_empty(),
        "nothing enqueued"
    );

    // The message comes back when its visibility timeout ends.
    app.queue
        .change_visibility(&delivery[0].receipt_handle, Duration::ZERO)
        .await
        .unwrap();
    flaky
        .failing
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let again = pipeline.esm.receive_batch(Duration::ZERO).await.unwrap();
    assert_eq!(again.len(), 1);
    let report = pipeline.esm.invoke(&app, &again).await;
    assert!(report.failed.is_empty(), "{report:?}");
    let messages = visible_messages(&pipeline).await;
    assert_eq!(
        messages.iter().map(|m| m.job_id).collect::<Vec<_>>(),
        [callback_id]
    );
}
