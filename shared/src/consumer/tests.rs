use std::time::Duration;

use serde_json::json;
use serde_json::value::RawValue;

use super::*;
use crate::clock::Clock as _;
use crate::domain::{JobId, Kind, Priority};
use crate::esm::{BatchReport, sqs_event};
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

/// Hands the messages visible now to the consumer as one batch, as the event source mapping
/// would, and returns what it did; panics when no message was visible.
async fn deliver(pipeline: &MemoryPipeline) -> BatchReport {
    pipeline
        .esm
        .poll_once(&pipeline.app, Duration::ZERO)
        .await
        .unwrap()
        .unwrap()
}

/// A pipeline whose `counting` processor behaves as `behaviour`, with one counting job submitted
/// and its message received: returns the pipeline, the processor, the job's id and the event
/// Lambda would build for the message, not yet handled.
async fn a_received_counting_job(
    behaviour: Behaviour,
) -> (MemoryPipeline, Counting, JobId, SqsEvent) {
    let (pipeline, counting) = pipeline(behaviour);
    let id = submit(&pipeline.app, json!({"kind": "counting", "payload": {}})).await;
    let messages = pipeline
        .app
        .queues
        .normal
        .receive(10, Duration::ZERO)
        .await
        .unwrap();
    let event = sqs_event(&messages, "arn", "us-east-1");
    (pipeline, counting, id, event)
}

#[tokio::test]
async fn an_echo_job_succeeds_with_its_payload_as_result() {
    let (pipeline, _) = pipeline(Behaviour::Succeed);
    let id = submit(
        &pipeline.app,
        json!({"kind": "echo", "payload": {"hello": "world"}}),
    )
    .await;
    let report = deliver(&pipeline).await;
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
    // The dead-lettered job's message comes back at once until its receives run out, and SQS
    // moves it to the DLQ; the processor does not run again.
    let mut receives = 3;
    while let Some(report) = pipeline
        .esm
        .poll_once(&pipeline.app, Duration::from_millis(50))
        .await
        .unwrap()
    {
        assert_eq!(report.failed.len(), 1);
        receives += 1;
    }
    assert_eq!(receives, pipeline.app.settings.max_receive_count);
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
    let report = deliver(&pipeline).await;
    assert!(
        report.failed.is_empty(),
        "a permanent failure is handled, not retried"
    );
    assert_eq!(job(&pipeline.app, id).await.status, JobStatus::Failed);
    assert_eq!(counting.runs(id), 1);
}

#[tokio::test]
async fn a_duplicate_delivery_does_not_run_the_job_twice() {
    let (pipeline, counting, id, event) = a_received_counting_job(Behaviour::Succeed).await;

    let first = handle_batch(&pipeline.app, event.clone(), far_deadline()).await;
    let again = handle_batch(&pipeline.app, event, far_deadline()).await;
    assert!(first.batch_item_failures.is_empty() && again.batch_item_failures.is_empty());
    assert_eq!(counting.runs(id), 1);
    assert_eq!(job(&pipeline.app, id).await.status, JobStatus::Succeeded);
}

#[tokio::test]
async fn concurrent_deliveries_of_one_message_run_it_once() {
    let (pipeline, counting, id, event) =
        a_received_counting_job(Behaviour::Sleep(Duration::from_millis(50))).await;

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
    let messages = app.queues.normal.receive(10, Duration::ZERO).await.unwrap();
    let response = handle_batch(&app, sqs_event(&messages, "arn", "r"), far_deadline()).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(counting.runs(id), 0);
    assert_eq!(job(&app, id).await.status, JobStatus::Expired);
}

#[tokio::test]
async fn a_poison_message_fails_only_itself() {
    let (pipeline, _) = pipeline(Behaviour::Succeed);
    let good = submit(&pipeline.app, json!({"kind": "echo", "payload": 1})).await;
    let poison_id = pipeline.app.queues.normal.send("{not json").await.unwrap();
    let future_version = pipeline
        .app
        .queues
        .normal
        .send(r#"{"v": 99}"#)
        .await
        .unwrap();
    let report = deliver(&pipeline).await;
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
    let report = deliver(&pipeline).await;
    assert_eq!((report.received, report.failed.len()), (2, 1));
    assert_eq!(job(&pipeline.app, fine).await.status, JobStatus::Succeeded);
    let panicked = job(&pipeline.app, panics).await;
    assert_eq!(panicked.status, JobStatus::Pending, "a panic is retried");
    assert!(panicked.error.unwrap().contains("panicked"));
}

#[tokio::test]
async fn a_processor_is_stopped_when_the_invocation_runs_out_of_time() {
    let (pipeline, _, id, event) =
        a_received_counting_job(Behaviour::Sleep(Duration::from_secs(60))).await;
    let deadline = pipeline
        .app
        .clock
        .now()
        .saturating_add(WRAP_UP + Duration::from_millis(200));
    let response = handle_batch(&pipeline.app, event, deadline).await;
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
    let claim = pipeline.app.change(Transition::Claim {
        lease_until: far_deadline(),
        max_attempts: 5,
    });
    pipeline.app.store.apply(id, &claim).await.unwrap();
    let report = deliver(&pipeline).await;
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
fn a_drawn_backoff_is_its_draw_rounded_up_to_whole_seconds() {
    let settings = Settings {
        backoff_base: Duration::from_secs(2),
        backoff_max: Duration::from_secs(60),
        ..Settings::default()
    };
    // Attempt 3: the ceiling is 2 · 2² = 8 s; a draw of 4.001 s waits 5 s.
    let delay = backoff_drawn(&settings, 3, None, |ceiling_ms| {
        assert_eq!(ceiling_ms, 8_000);
        4_001
    });
    assert_eq!(delay, Duration::from_secs(5));
    assert_eq!(
        backoff_drawn(&settings, 40, None, |ceiling_ms| ceiling_ms),
        Duration::from_secs(60)
    );
    // A draw above the ceiling is held to it.
    assert_eq!(
        backoff_drawn(&settings, 1, None, |_| u64::MAX),
        Duration::from_secs(2)
    );
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
    let pipeline = MemoryPipeline::new(settings, crate::kinds::builtin());
    let big = "x".repeat(MAX_RESULT_BYTES);
    let id = submit(&pipeline.app, json!({"kind": "echo", "payload": big})).await;
    deliver(&pipeline).await;
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
            .queues
            .normal
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
        json!({"url": CALLBACK_URL, "method": "POST", "body": crate::domain::job_document(&finished)})
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
        run_at: None,
        correlation_id: None,
        origin: None,
    };
    let mut delivery = pipeline.esm.receive_batch(Duration::ZERO).await.unwrap();
    delivery.retain(|m| m.body.contains(&expiring.job_id.to_string()));
    delivery[0].body = expiring.encode();
    // The message's deadline says it expired, and by now so does the table's.
    let later = app
        .clone()
        .with_clock(Arc::new(crate::clock::ManualClock::at(
            Timestamp::from_system_time(std::time::SystemTime::now())
                .saturating_add(Duration::from_secs(2)),
        )));
    pipeline.esm.invoke(&later, &delivery).await;
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
    let claim = app.change(Transition::Claim {
        lease_until: far_deadline(),
        max_attempts: 5,
    });
    app.store.apply(callback_id, &claim).await.unwrap();
    let depth_before = app.queues.normal.depth().await.unwrap();
    let report = pipeline.esm.invoke(app, &delivery).await;
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(app.queues.normal.depth().await.unwrap(), depth_before);
    assert_eq!(job(app, callback_id).await.attempts, 1);
}

#[tokio::test]
async fn a_callback_that_could_not_be_enqueued_is_enqueued_by_the_next_delivery() {
    let (pipeline, _) = pipeline(Behaviour::Succeed);
    let flaky = Arc::new(SendsOnly {
        inner: pipeline.app.queues.normal.clone(),
        sends: usize::MAX.into(),
    });
    let mut app = pipeline.app.clone();
    app.queues.normal = flaky.clone();
    let id = submit(
        &app,
        json!({"kind": "echo", "payload": {}, "callback_url": CALLBACK_URL}),
    )
    .await;
    flaky.sends.store(0, std::sync::atomic::Ordering::SeqCst);
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
    app.queues
        .normal
        .change_visibility(&delivery[0].receipt_handle, Duration::ZERO)
        .await
        .unwrap();
    flaky
        .sends
        .store(usize::MAX, std::sync::atomic::Ordering::SeqCst);
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

/// What intake sends for a job it then fails to write: the message alone.
/// The message of a job accepted `age` ago with a deadline a minute after that, which the table
/// does not hold.
fn orphan_message(key: Option<&str>, age: Duration) -> (JobMessage, Job) {
    let now = Timestamp::from_system_time(std::time::SystemTime::now());
    let created_at =
        Timestamp::from_millis(now.as_millis() - u64::try_from(age.as_millis()).unwrap());
    let job = Job::pending(crate::domain::NewJob {
        id: JobId::generate(),
        kind: Kind::parse("counting").unwrap(),
        owner: crate::domain::Owner::anonymous(),
        priority: crate::domain::Priority::Normal,
        created_at,
        deadline: created_at.saturating_add(Duration::from_secs(60)),
        run_at: None,
        payload: crate::domain::PayloadDigest::of("{}"),
        expires_at: now.saturating_add(Duration::from_secs(3600)),
        callback_url: None,
        correlation_id: None,
    });
    let record = key.map(|key| crate::domain::IdempotencyRecord {
        owner: job.owner.clone(),
        key: crate::domain::IdempotencyKey::parse(key.as_bytes()).unwrap(),
        fingerprint: "fingerprint".to_owned(),
        job_id: job.id,
        expires_at: job.expires_at,
    });
    let payload = RawValue::from_string("{}".to_owned()).unwrap();
    (JobMessage::of(&job, payload, record.as_ref()), job)
}

#[tokio::test]
async fn a_job_whose_write_never_landed_is_written_from_its_message_and_runs() {
    let (pipeline, counting) = pipeline(Behaviour::Succeed);
    let app = &pipeline.app;
    let (message, written) = orphan_message(Some("order-9"), Duration::ZERO);
    app.queues.normal.send(&message.encode()).await.unwrap();
    pipeline.esm.poll_once(app, Duration::ZERO).await.unwrap();
    let ran = job(app, message.job_id).await;
    assert_eq!(ran.status, JobStatus::Succeeded);
    assert_eq!(
        (&ran.owner, ran.created_at),
        (&written.owner, written.created_at)
    );
    assert_eq!(counting.runs(message.job_id), 1);
    // Its key was written with it: a client's retry finds this job.
    let retry = crate::domain::Job {
        id: JobId::generate(),
        ..written.clone()
    };
    let key = message.accepted_job().unwrap().1.unwrap();
    let taken = app
        .store
        .create(
            &retry,
            Some(&crate::domain::IdempotencyRecord {
                job_id: retry.id,
                ..key
            }),
        )
        .await;
    assert!(
        matches!(&taken, Err(crate::store::StoreError::KeyTaken(first)) if first.job_id == message.job_id),
        "{taken:?}"
    );
}

#[tokio::test]
async fn a_message_whose_key_another_request_took_runs_nothing() {
    let (pipeline, counting) = pipeline(Behaviour::Succeed);
    let app = &pipeline.app;
    let (first, _) = orphan_message(Some("order-10"), Duration::ZERO);
    let (second, _) = orphan_message(Some("order-10"), Duration::ZERO);
    app.queues.normal.send(&first.encode()).await.unwrap();
    pipeline.esm.poll_once(app, Duration::ZERO).await.unwrap();
    app.queues.normal.send(&second.encode()).await.unwrap();
    let report = deliver(&pipeline).await;
    assert_eq!(report.deleted, 1, "acknowledged, not retried into the DLQ");
    assert_eq!(counting.total_runs(), 1);
    assert!(app.store.get(second.job_id).await.unwrap().is_none());
}

#[tokio::test]
async fn a_message_for_a_job_the_table_forgot_is_acknowledged_and_runs_nothing() {
    let (pipeline, counting) = pipeline(Behaviour::Succeed);
    let app = &pipeline.app;
    // Older than the table's retention: it may have finished and been forgotten, and must not
    // run again.
    let age = app.settings.retention + Duration::from_secs(1);
    let (message, _) = orphan_message(None, age);
    app.queues.normal.send(&message.encode()).await.unwrap();
    let report = deliver(&pipeline).await;
    assert_eq!((report.deleted, report.failed.len()), (1, 0));
    assert_eq!(counting.total_runs(), 0);
    assert!(
        app.store.get(message.job_id).await.unwrap().is_none(),
        "not written back"
    );
}

#[tokio::test]
async fn a_duplicate_message_grants_no_attempt_beyond_the_jobs_own() {
    let (mut pipeline, counting) = pipeline(Behaviour::FailRetryable);
    // One message per invocation, so that no copy is refused for a claim of the same batch.
    pipeline.esm.batch_size = 1;
    let app = &pipeline.app;
    let id = submit(app, json!({"kind": "counting", "payload": {}})).await;
    // Five more copies of the message, as replays or duplicate deliveries would make.
    let copy = pipeline.esm.receive_batch(Duration::ZERO).await.unwrap();
    app.queues
        .normal
        .change_visibility(&copy[0].receipt_handle, Duration::ZERO)
        .await
        .unwrap();
    for _ in 0..5 {
        app.queues.normal.send(&copy[0].body).await.unwrap();
    }
    for _ in 0..20 {
        if pipeline
            .esm
            .poll_once(app, Duration::from_millis(50))
            .await
            .unwrap()
            .is_none()
        {
            break;
        }
    }
    let ended = job(app, id).await;
    assert_eq!(ended.status, JobStatus::DeadLettered);
    assert_eq!(ended.attempts, fast_settings().max_attempts, "{ended:?}");
    assert_eq!(counting.runs(id), fast_settings().max_attempts);
}

#[tokio::test]
async fn a_replay_during_backoff_sends_nothing() {
    let (pipeline, _) = pipeline(Behaviour::FailRetryable);
    let app = &pipeline.app;
    let mut headers = crate::testing::json_headers();
    headers.insert(
        "idempotency-key",
        http::HeaderValue::from_static("replayed"),
    );
    let body = br#"{"kind":"counting","payload":{}}"#;
    let owner = crate::domain::Owner::anonymous;
    let accepted = crate::api::submit_job(app, owner(), &headers, body).await;
    assert_eq!(accepted.status(), http::StatusCode::ACCEPTED);
    pipeline.esm.poll_once(app, Duration::ZERO).await.unwrap();
    // Claimed once and waiting out its backoff: its message is in the queue, in flight.
    let depth = app.queues.normal.depth().await.unwrap().total();
    let replayed = crate::api::submit_job(app, owner(), &headers, body).await;
    assert_eq!(replayed.status(), http::StatusCode::ACCEPTED);
    assert_eq!(replayed.headers()["idempotent-replayed"], "true");
    // The replay found the key before sending anything, and sent no copy of the job's message.
    let messages = app.queues.normal.depth().await.unwrap().total();
    assert_eq!(messages, depth, "a replay sent a message");
}

/// A job store that cannot be reached.
#[derive(Debug)]
struct Unreachable;

fn unreachable_error() -> StoreError {
    StoreError::Unavailable("the table cannot be reached".into())
}

#[async_trait::async_trait]
impl crate::store::JobStore for Unreachable {
    async fn create(
        &self,
        _: &Job,
        _: Option<&crate::domain::IdempotencyRecord>,
    ) -> Result<(), StoreError> {
        Err(unreachable_error())
    }

    async fn create_batch(&self, jobs: &[Job]) -> Vec<Result<(), StoreError>> {
        jobs.iter().map(|_| Err(unreachable_error())).collect()
    }

    async fn get(&self, _: JobId) -> Result<Option<Job>, StoreError> {
        Err(unreachable_error())
    }

    async fn key(
        &self,
        _: &crate::domain::Owner,
        _: &crate::domain::IdempotencyKey,
    ) -> Result<Option<crate::domain::IdempotencyRecord>, StoreError> {
        Err(unreachable_error())
    }

    async fn apply(&self, _: JobId, _: &Change) -> Result<Job, ApplyError> {
        Err(ApplyError::Store(unreachable_error()))
    }

    async fn active_jobs(&self, _: &crate::domain::Owner, _: u32) -> Result<u32, StoreError> {
        Err(unreachable_error())
    }

    async fn hold_slot(
        &self,
        _: &crate::store::Slot,
        _: Timestamp,
        _: Timestamp,
    ) -> Result<bool, StoreError> {
        Err(unreachable_error())
    }

    async fn release_slot(&self, _: &crate::store::Slot) -> Result<(), StoreError> {
        Err(unreachable_error())
    }
}

#[tokio::test(start_paused = true)]
async fn a_table_outage_brings_a_message_back_after_a_growing_backoff_and_keeps_it_from_the_dlq() {
    let settings = Settings {
        max_attempts: 3,
        max_receive_count: 6,
        outage_backoff: Duration::from_secs(30),
        backoff_max: Duration::from_secs(900),
        ..Settings::default()
    };
    let mut pipeline = MemoryPipeline::new(
        settings,
        processors_with(&Counting::new(Behaviour::Succeed)),
    );
    let store = pipeline.app.store.clone();
    pipeline.app.store = std::sync::Arc::new(Unreachable);
    let (message, _) = orphan_message(None, Duration::ZERO);
    pipeline
        .app
        .queues
        .normal
        .send(&message.encode())
        .await
        .unwrap();

    // Five receives over about 7.5 minutes of outage: 30 s, 60 s, 120 s, 240 s apart.
    let mut waited = Vec::new();
    let started = tokio::time::Instant::now();
    for _ in 0..5 {
        let report = pipeline
            .esm
            .poll_once(&pipeline.app, Duration::from_secs(3600))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(report.failed.len(), 1);
        waited.push(started.elapsed().as_secs());
    }
    assert_eq!(waited, [0, 30, 90, 210, 450]);
    assert!(
        pipeline
            .dlq
            .receive(10, Duration::ZERO)
            .await
            .unwrap()
            .is_empty()
    );

    // The table is back before the receives run out: the job is written from its message and
    // runs, its attempts untouched by the receives the outage used.
    pipeline.app.store = store;
    pipeline
        .esm
        .poll_once(&pipeline.app, Duration::from_secs(3600))
        .await
        .unwrap();
    let job = job(&pipeline.app, message.job_id).await;
    assert_eq!((job.status, job.attempts), (JobStatus::Succeeded, 1));
}

#[test]
fn the_outage_backoff_doubles_up_to_the_cap() {
    let settings = Settings::default();
    assert_eq!(outage_backoff(&settings, 1), Duration::from_secs(30));
    assert_eq!(outage_backoff(&settings, 3), Duration::from_secs(120));
    assert_eq!(outage_backoff(&settings, 9), Duration::from_secs(900));
    assert_eq!(
        outage_backoff(&settings, u32::MAX),
        Duration::from_secs(900)
    );
}

#[tokio::test]
async fn a_job_abandoned_on_its_last_attempt_is_dead_lettered_not_run_again() {
    let (pipeline, counting) = pipeline(Behaviour::Succeed);
    let app = &pipeline.app;
    let id = submit(app, json!({"kind": "counting", "payload": {}})).await;
    // Three invocations claimed it and died before recording anything; the last lease has lapsed.
    for _ in 0..app.settings.max_attempts {
        let now = app.clock.now();
        let claim = app.change(Transition::Claim {
            lease_until: Timestamp::from_millis(now.as_millis() - 1),
            max_attempts: app.settings.max_attempts,
        });
        app.store.apply(id, &claim).await.unwrap();
    }
    let report = deliver(&pipeline).await;
    assert_eq!(report.failed.len(), 1, "the message stays for the DLQ");
    let job = job(app, id).await;
    assert_eq!(
        (job.status, job.attempts),
        (JobStatus::DeadLettered, app.settings.max_attempts)
    );
    assert_eq!(
        counting.runs(id),
        0,
        "no attempt beyond the configured ones"
    );
}

#[tokio::test]
async fn a_high_job_retries_and_calls_back_in_its_own_lane() {
    let (pipeline, counting) = pipeline(Behaviour::FailRetryable);
    let app = &pipeline.app;
    let id = submit(
        app,
        json!({"kind": "counting", "payload": {}, "priority": "high", "callback_url": CALLBACK_URL}),
    )
    .await;
    let normal_depth = || async { app.queues.normal.depth().await.unwrap().total() };
    assert!(
        pipeline
            .esm
            .poll_once(app, Duration::ZERO)
            .await
            .unwrap()
            .is_none(),
        "the normal lane's consumers never see a high job"
    );
    for _ in 0..app.settings.max_attempts {
        let report = pipeline
            .high_esm
            .poll_once(app, Duration::from_secs(1))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(report.failed.len(), 1);
        assert_eq!(normal_depth().await, 0);
    }
    assert_eq!(counting.runs(id), app.settings.max_attempts);
    let dead = job(app, id).await;
    assert_eq!(
        (dead.status, dead.priority),
        (JobStatus::DeadLettered, Priority::High)
    );
    // The callback runs in the job's lane, with that lane's default TTL.
    let callback_id = id.derived(&format!("callback:dead_lettered:{}", dead.attempts));
    let callback = job(app, callback_id).await;
    assert_eq!(callback.priority, Priority::High);
    assert_eq!(
        callback.deadline.saturating_since(callback.created_at),
        app.settings.default_ttl.high
    );
    assert_eq!(normal_depth().await, 0);
    let on_high: Vec<JobId> = pipeline
        .high_esm
        .receive_batch(Duration::ZERO)
        .await
        .unwrap()
        .iter()
        .map(|m| JobMessage::decode(&m.body).unwrap().job_id)
        .collect();
    assert!(on_high.contains(&callback_id), "{on_high:?}");
}

/// Issue 17's acceptance for scheduled jobs, on a controlled clock: a job due in 20 minutes
/// (beyond the 15 minutes SQS can delay a message, so its message hops once) runs within a second
/// of its time and not before, shows `scheduled` until then, and a job cancelled before it is due
/// never runs.
#[tokio::test(start_paused = true)]
async fn a_scheduled_job_runs_at_its_time_not_before_and_a_cancel_prevents_the_run() {
    let (mut pipeline, counting) = pipeline(Behaviour::Succeed);
    let start = Timestamp::from_system_time(std::time::SystemTime::now());
    pipeline.app =
        pipeline
            .app
            .clone()
            .with_clock(Arc::new(crate::testing::faults::TokioClock::starting_at(
                start,
            )));
    let app = pipeline.app.clone();
    let owner = crate::domain::Owner::anonymous();
    let body = json!({"kind": "counting", "payload": {}, "delay_seconds": 1200});
    let id = submit(&app, body.clone()).await;
    let cancelled = submit(&app, body).await;
    let consumer = pipeline.run_consumer(Duration::from_secs(20));
    let status = |id: JobId| {
        let (app, owner) = (app.clone(), owner.clone());
        async move {
            let response = crate::api::get_job(&app, &owner, &id.to_string(), None).await;
            serde_json::from_str::<Value>(response.body()).unwrap()["status"].clone()
        }
    };

    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(status(id).await, "scheduled");
    let response = crate::api::get_job(&app, &owner, &id.to_string(), None).await;
    assert_eq!(
        response.headers()[http::header::RETRY_AFTER],
        "600",
        "come back when it is due"
    );
    let response = crate::api::cancel_job(&app, &owner, &cancelled.to_string()).await;
    assert_eq!(
        response.status(),
        http::StatusCode::OK,
        "{}",
        response.body()
    );
    tokio::time::sleep(Duration::from_secs(599)).await;
    assert_eq!(status(id).await, "scheduled");
    assert_eq!(counting.total_runs(), 0, "a job ran before it was due");

    tokio::time::sleep(Duration::from_secs(2)).await;
    let ran = job(&app, id).await;
    assert_eq!(ran.status, JobStatus::Succeeded);
    let waited = ran.started_at.unwrap().saturating_since(ran.created_at);
    assert!(
        (Duration::from_secs(1200)..=Duration::from_secs(1201)).contains(&waited),
        "started {waited:?} after it was accepted"
    );
    assert_eq!(
        ran.deadline.saturating_since(ran.created_at),
        Duration::from_secs(1200) + app.settings.default_ttl.normal,
        "the deadline counts from when the job is due"
    );
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(counting.runs(cancelled), 0);
    assert_eq!(job(&app, cancelled).await.status, JobStatus::Cancelled);
    consumer.abort();
}

#[tokio::test]
async fn a_claim_before_a_scheduled_job_is_due_is_refused() {
    let (pipeline, counting) = pipeline(Behaviour::Succeed);
    let app = &pipeline.app;
    let id = submit(
        app,
        json!({"kind": "counting", "payload": {}, "delay_seconds": 60}),
    )
    .await;
    // A copy of its message with the schedule taken out, as a forged or stale message would be.
    let job = job(app, id).await;
    let mut message = JobMessage::of(&job, RawValue::from_string("{}".into()).unwrap(), None);
    message.run_at = None;
    app.queues.normal.send(&message.encode()).await.unwrap();
    let report = pipeline
        .esm
        .poll_once(app, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.received, 1);
    assert_eq!(counting.total_runs(), 0);
    assert_eq!(self::job(app, id).await.status, JobStatus::Pending);
}

#[test]
fn a_processors_error_is_kept_bounded() {
    let settings = fast_settings();
    for error in [
        ProcessError::permanent("é".repeat(1_000_000)),
        ProcessError::retryable("x".repeat(1_000_000)),
    ] {
        let (transition, _) = decide(&settings, settings.max_attempts, 1, Err(error));
        let kept = transition.error().unwrap();
        assert_eq!(kept.chars().count(), MAX_ERROR_CHARS + 1, "{transition:?}");
        assert!(kept.ends_with('…'));
    }
    let (transition, _) = decide(
        &settings,
        settings.max_attempts,
        1,
        Err(ProcessError::permanent("short")),
    );
    assert_eq!(transition.error(), Some("short"));
}

/// A processor that works in `steps` steps of `step` each, reporting its progress after each, and
/// counts its runs and the runs it finished.
#[derive(Debug, Clone)]
struct Steady {
    steps: u32,
    step: Duration,
    started: Arc<std::sync::atomic::AtomicU32>,
    finished: Arc<std::sync::atomic::AtomicU32>,
}

impl Steady {
    fn new(steps: u32, step: Duration) -> Self {
        Self {
            steps,
            step,
            started: Arc::default(),
            finished: Arc::default(),
        }
    }

    fn started(&self) -> u32 {
        self.started.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn finished(&self) -> u32 {
        self.finished.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl Processor for Steady {
    async fn process(&self, work: &Work) -> Result<Value, ProcessError> {
        self.started
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        for done in 1..=self.steps {
            tokio::time::sleep(self.step).await;
            work.progress(
                f64::from(done) / f64::from(self.steps),
                format!("step {done} of {}", self.steps),
            );
        }
        self.finished
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(json!({"steps": self.steps}))
    }
}

/// A pipeline whose queues hide a message for `visibility` seconds, with a `steady` kind, on a
/// clock that follows tokio's (paused) time.
fn steady_pipeline(visibility: u64, steady: &Steady) -> MemoryPipeline {
    let settings = Settings {
        visibility_timeout: Duration::from_secs(visibility),
        ..fast_settings()
    };
    let mut pipeline = MemoryPipeline::new(
        settings,
        crate::kinds::builtin().with("steady", steady.clone()),
    );
    let clock = crate::testing::faults::TokioClock::starting_at(crate::clock::SystemClock.now());
    pipeline.app = pipeline.app.clone().with_clock(Arc::new(clock));
    pipeline
}

#[tokio::test(start_paused = true)]
async fn a_job_running_three_times_the_visibility_timeout_completes_once_with_one_delivery() {
    let steady = Steady::new(9, Duration::from_secs(1));
    let pipeline = steady_pipeline(3, &steady);
    let id = submit(&pipeline.app, json!({"kind": "steady", "payload": {}})).await;

    let first = {
        let pipeline = pipeline.clone();
        tokio::spawn(async move { deliver(&pipeline).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A second consumer polls all along: the message never becomes visible to it.
    let mut progress = Vec::new();
    for _ in 0..16 {
        let second = pipeline
            .esm
            .poll_once(&pipeline.app, Duration::from_millis(500))
            .await
            .unwrap();
        assert_eq!(
            second, None,
            "the message was delivered again while its job ran"
        );
        let running = job(&pipeline.app, id).await;
        if running.status == JobStatus::Running {
            assert!(running.lease_until.unwrap() > pipeline.app.clock.now());
            progress.extend(running.progress.map(|p| p.fraction()));
        }
    }
    let report = first.await.unwrap();
    assert_eq!((report.received, report.deleted), (1, 1));
    assert_eq!((steady.started(), steady.finished()), (1, 1));
    let done = job(&pipeline.app, id).await;
    assert_eq!((done.status, done.attempts), (JobStatus::Succeeded, 1));
    assert!(
        progress.windows(2).all(|pair| pair[0] <= pair[1]) && progress.len() >= 5,
        "progress was written as the job ran: {progress:?}"
    );
    assert!(progress[0] > 0.0 && progress[0] < 1.0, "{progress:?}");
    assert_eq!(
        pipeline.app.queues.normal.depth().await.unwrap().total(),
        0,
        "the one message was deleted"
    );
}

#[tokio::test(start_paused = true)]
async fn a_heartbeat_against_a_job_taken_over_stops_the_processor_and_overwrites_nothing() {
    let steady = Steady::new(20, Duration::from_secs(1));
    let pipeline = steady_pipeline(3, &steady);
    let id = submit(&pipeline.app, json!({"kind": "steady", "payload": {}})).await;
    let first = {
        let pipeline = pipeline.clone();
        tokio::spawn(async move { deliver(&pipeline).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(job(&pipeline.app, id).await.status, JobStatus::Running);

    // Another consumer claims the job as if the first one's lease had lapsed: a claim dated
    // after it.
    let later = pipeline
        .app
        .clock
        .now()
        .saturating_add(Duration::from_secs(60));
    let claim = Change::new(
        Transition::Claim {
            lease_until: later.saturating_add(Duration::from_secs(60)),
            max_attempts: 5,
        },
        later,
        pipeline.app.settings.retention,
    );
    let taken = pipeline.app.store.apply(id, &claim).await.unwrap();
    assert_eq!(taken.attempts, 2);

    let started = tokio::time::Instant::now();
    let report = first.await.unwrap();
    assert!(
        started.elapsed() <= Duration::from_secs(2),
        "the processor ran on for {:?} after its job was taken over",
        started.elapsed()
    );
    assert_eq!(
        report.failed.len(),
        1,
        "the message is left to the new holder"
    );
    assert_eq!((steady.started(), steady.finished()), (1, 0));
    assert_eq!(
        job(&pipeline.app, id).await,
        taken,
        "neither the heartbeat nor the outcome wrote over the other claim"
    );
}

/// A store that fails to write heartbeats, as a table failing for a while would (or, with
/// `hang`, never answers them), and passes every other call to the store it wraps.
#[derive(Debug)]
struct HeartbeatsFail {
    inner: Arc<dyn crate::store::JobStore>,
    hang: bool,
}

#[async_trait::async_trait]
impl crate::store::JobStore for HeartbeatsFail {
    async fn create(
        &self,
        job: &Job,
        key: Option<&crate::domain::IdempotencyRecord>,
    ) -> Result<(), StoreError> {
        self.inner.create(job, key).await
    }

    async fn create_batch(&self, jobs: &[Job]) -> Vec<Result<(), StoreError>> {
        self.inner.create_batch(jobs).await
    }

    async fn get(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        self.inner.get(id).await
    }

    async fn key(
        &self,
        owner: &crate::domain::Owner,
        key: &crate::domain::IdempotencyKey,
    ) -> Result<Option<crate::domain::IdempotencyRecord>, StoreError> {
        self.inner.key(owner, key).await
    }

    async fn apply(&self, id: JobId, change: &Change) -> Result<Job, ApplyError> {
        match change.transition {
            Transition::Heartbeat { .. } if self.hang => std::future::pending().await,
            Transition::Heartbeat { .. } => Err(ApplyError::Store(unreachable_error())),
            _ => self.inner.apply(id, change).await,
        }
    }

    async fn active_jobs(
        &self,
        owner: &crate::domain::Owner,
        at_most: u32,
    ) -> Result<u32, StoreError> {
        self.inner.active_jobs(owner, at_most).await
    }

    async fn hold_slot(
        &self,
        slot: &crate::store::Slot,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.inner.hold_slot(slot, until, now).await
    }

    async fn release_slot(&self, slot: &crate::store::Slot) -> Result<(), StoreError> {
        self.inner.release_slot(slot).await
    }
}

#[tokio::test(start_paused = true)]
async fn a_processor_whose_lease_cannot_be_renewed_is_stopped_when_it_lapses() {
    for hang in [false, true] {
        let steady = Steady::new(20, Duration::from_secs(1));
        let mut pipeline = steady_pipeline(3, &steady);
        pipeline.app.store = Arc::new(HeartbeatsFail {
            inner: pipeline.app.store.clone(),
            hang,
        });
        let id = submit(&pipeline.app, json!({"kind": "steady", "payload": {}})).await;

        let started = tokio::time::Instant::now();
        let report = deliver(&pipeline).await;
        let ran = started.elapsed();
        assert!(
            ran > Duration::from_secs(3) && ran < Duration::from_millis(3_500),
            "the processor ran for {ran:?} under a lease of 3 s (hang: {hang})"
        );
        assert_eq!(report.failed.len(), 1);
        assert_eq!((steady.started(), steady.finished()), (1, 0));
        let job = job(&pipeline.app, id).await;
        assert_eq!((job.status, job.attempts), (JobStatus::Pending, 1));
        assert!(job.error.unwrap().contains("lease lapsed"));
    }
}
/// A pipeline whose `counting` kind has `limits` of its own.
fn pipeline_with_limits(
    behaviour: Behaviour,
    limits: crate::processor::Limits,
) -> (MemoryPipeline, Counting) {
    let counting = Counting::new(behaviour);
    let mut processors = crate::kinds::builtin();
    processors.insert(
        Kind::parse("counting").unwrap(),
        std::sync::Arc::new(counting.clone()),
        limits,
    );
    (MemoryPipeline::new(fast_settings(), processors), counting)
}

#[tokio::test]
async fn a_kind_with_attempts_of_its_own_dead_letters_after_them_not_the_stacks() {
    let limits = crate::processor::Limits {
        max_attempts: Some(1),
        ..Default::default()
    };
    let (pipeline, counting) = pipeline_with_limits(Behaviour::FailRetryable, limits);
    assert_eq!(pipeline.app.settings.max_attempts, 3);
    let id = submit(&pipeline.app, json!({"kind": "counting", "payload": {}})).await;
    deliver(&pipeline).await;
    assert_eq!(job(&pipeline.app, id).await.status, JobStatus::DeadLettered);
    assert_eq!(counting.runs(id), 1);
}

#[tokio::test]
async fn a_kind_with_a_timeout_of_its_own_is_stopped_at_it_and_retried() {
    let limits = crate::processor::Limits {
        timeout: Some(Duration::from_millis(100)),
        ..Default::default()
    };
    let (pipeline, _) = pipeline_with_limits(Behaviour::Sleep(Duration::from_secs(20)), limits);
    let id = submit(&pipeline.app, json!({"kind": "counting", "payload": {}})).await;
    let started = std::time::Instant::now();
    let report = deliver(&pipeline).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(report.failed.len(), 1);
    let job = job(&pipeline.app, id).await;
    assert_eq!(job.status, JobStatus::Pending);
    assert!(
        job.error
            .as_deref()
            .unwrap()
            .contains("its kind's timeout (100 ms)"),
        "{job:?}"
    );
}

/// A pipeline with the fan-out kind `fan`, whose targets `a` and `b` succeed and `c` fails for
/// good.
fn fanout_pipeline() -> (MemoryPipeline, Counting) {
    let ok = Counting::new(Behaviour::Succeed);
    let mut processors = crate::kinds::builtin()
        .with("fan--a", ok.clone())
        .with("fan--b", ok.clone())
        .with("fan--c", Counting::new(Behaviour::FailPermanent));
    let targets = ["a", "b", "c"]
        .map(|t| (t.to_owned(), Kind::parse(&format!("fan--{t}")).unwrap()))
        .to_vec();
    processors.insert_fanout(
        Kind::parse("fan").unwrap(),
        targets,
        crate::processor::Limits::default(),
    );
    (MemoryPipeline::new(fast_settings(), processors), ok)
}

#[tokio::test]
async fn a_fanout_job_ends_failed_listing_its_failed_child_with_one_callback() {
    let (pipeline, ok) = fanout_pipeline();
    let app = &pipeline.app;
    let parent = submit(
        app,
        json!({"kind": "fan", "payload": {"n": 1}, "callback_url": CALLBACK_URL}),
    )
    .await;
    let written = job(app, parent).await;
    assert_eq!(written.status, JobStatus::Running);
    let children: Vec<_> = written
        .fanout
        .as_ref()
        .unwrap()
        .children()
        .iter()
        .map(|c| (c.id, c.target.clone()))
        .collect();
    assert_eq!(children.len(), 3);

    let report = deliver(&pipeline).await;
    assert!(report.failed.is_empty(), "{report:?}");

    let mut statuses = vec![];
    for (id, target) in &children {
        let child = job(app, *id).await;
        assert_eq!(child.callback_url, None, "children send no callback");
        assert_eq!(
            child
                .fanout
                .as_ref()
                .and_then(|f| f.parent())
                .map(|l| l.parent),
            Some(parent)
        );
        statuses.push((target.as_str(), child.status));
    }
    assert_eq!(
        statuses,
        [
            ("a", JobStatus::Succeeded),
            ("b", JobStatus::Succeeded),
            ("c", JobStatus::Failed)
        ]
    );
    assert_eq!(ok.total_runs(), 2);
    let settled = job(app, parent).await;
    assert_eq!(settled.status, JobStatus::Failed);
    let document = crate::domain::job_document(&settled);
    assert_eq!(
        document["failures"].as_array().unwrap().len(),
        1,
        "{document}"
    );
    assert_eq!(document["failures"][0]["target"], "c");
    assert_eq!(document["failures"][0]["status"], "failed");
    assert_eq!(document["children"].as_array().unwrap().len(), 3);

    // Every child's message delivered again: nothing more is created or sent.
    for (id, _) in &children {
        let mut again = crate::domain::JobMessage::of(
            &job(app, *id).await,
            RawValue::from_string("{}".to_owned()).unwrap(),
            None,
        );
        again.deadline = far_deadline();
        app.queues.normal.send(&again.encode()).await.unwrap();
    }
    deliver(&pipeline).await;
    let callbacks: Vec<_> = visible_messages(&pipeline)
        .await
        .into_iter()
        .map(|m| m.job_id)
        .collect();
    assert_eq!(callbacks, [parent.derived("callback:failed:0")]);
}

#[tokio::test]
async fn a_child_whose_parent_was_not_settled_settles_it_on_its_next_delivery() {
    let (pipeline, _) = fanout_pipeline();
    let app = &pipeline.app;
    let parent = submit(app, json!({"kind": "fan", "payload": {}})).await;
    let children: Vec<_> = job(app, parent).await.fanout.unwrap().children().to_vec();
    // Each child ended, but the consumer stopped before it counted any on the parent.
    for child in &children {
        let claim = app.change(Transition::Claim {
            lease_until: far_deadline(),
            max_attempts: 5,
        });
        app.store.apply(child.id, &claim).await.unwrap();
        let end = app.change(Transition::Succeed {
            attempt: 1,
            result: json!(null),
        });
        app.store.apply(child.id, &end).await.unwrap();
    }
    assert_eq!(job(app, parent).await.status, JobStatus::Running);

    let report = deliver(&pipeline).await;
    assert!(report.failed.is_empty(), "{report:?}");
    let settled = job(app, parent).await;
    assert_eq!(settled.status, JobStatus::Succeeded);
    assert!(settled.fanout.unwrap().failures().is_empty());
}

#[tokio::test]
async fn a_fanout_childs_kind_is_not_submitted_on_its_own() {
    let (pipeline, _) = fanout_pipeline();
    let body = json!({"kind": "fan--a", "payload": {}}).to_string();
    let response = crate::api::submit_job(
        &pipeline.app,
        crate::domain::Owner::anonymous(),
        &crate::testing::json_headers(),
        body.as_bytes(),
    )
    .await;
    assert_eq!(response.status(), http::StatusCode::UNPROCESSABLE_ENTITY);
    assert!(!response.body().contains("fan--a,"), "{}", response.body());
}

/// A queue that sends only its next `sends` messages and refuses the rest (a test may change
/// `sends` as it goes).
#[derive(Debug)]
struct SendsOnly {
    inner: Arc<dyn crate::queue::JobQueue>,
    sends: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl crate::queue::JobQueue for SendsOnly {
    async fn send_with(
        &self,
        body: &str,
        options: SendOptions<'_>,
    ) -> Result<String, crate::queue::QueueError> {
        use std::sync::atomic::Ordering;
        if self
            .sends
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_err()
        {
            return Err(crate::queue::QueueError::Unavailable("refused".into()));
        }
        self.inner.send_with(body, options).await
    }

    async fn send_batch(
        &self,
        messages: &[crate::queue::Outgoing<'_>],
    ) -> Vec<Result<String, crate::queue::QueueError>> {
        let mut sent = Vec::with_capacity(messages.len());
        for message in messages {
            sent.push(self.send_with(message.body, message.options).await);
        }
        sent
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

/// A job store that reads, but whose writes of new items all fail: an intake that stops after
/// its sends, as far as the table can tell.
#[derive(Debug)]
struct CreatesFail(Arc<dyn crate::store::JobStore>);

#[async_trait::async_trait]
impl crate::store::JobStore for CreatesFail {
    async fn create(
        &self,
        _: &Job,
        _: Option<&crate::domain::IdempotencyRecord>,
    ) -> Result<(), StoreError> {
        Err(unreachable_error())
    }

    async fn create_batch(&self, jobs: &[Job]) -> Vec<Result<(), StoreError>> {
        jobs.iter().map(|_| Err(unreachable_error())).collect()
    }

    async fn get(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        self.0.get(id).await
    }

    async fn key(
        &self,
        owner: &crate::domain::Owner,
        key: &crate::domain::IdempotencyKey,
    ) -> Result<Option<crate::domain::IdempotencyRecord>, StoreError> {
        self.0.key(owner, key).await
    }

    async fn apply(&self, id: JobId, change: &Change) -> Result<Job, ApplyError> {
        self.0.apply(id, change).await
    }

    async fn active_jobs(&self, owner: &crate::domain::Owner, max: u32) -> Result<u32, StoreError> {
        self.0.active_jobs(owner, max).await
    }
    async fn hold_slot(
        &self,
        slot: &crate::store::Slot,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.0.hold_slot(slot, until, now).await
    }
    async fn release_slot(&self, slot: &crate::store::Slot) -> Result<(), StoreError> {
        self.0.release_slot(slot).await
    }
}

/// Submits `body` as a `fan` job with `Idempotency-Key: key` to `app`: the answer's status and
/// body.
async fn submit_keyed(app: &crate::app::App, body: &Value, key: &str) -> (http::StatusCode, Value) {
    let mut headers = crate::testing::json_headers();
    headers.insert("idempotency-key", key.parse().unwrap());
    let body = body.to_string();
    let response = crate::api::submit_job(
        app,
        crate::domain::Owner::anonymous(),
        &headers,
        body.as_bytes(),
    )
    .await;
    (
        response.status(),
        serde_json::from_str(response.body()).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn a_fanout_whose_writes_all_failed_after_its_sends_is_written_and_run_by_its_messages() {
    let (pipeline, ok) = fanout_pipeline();
    let mut intake = pipeline.app.clone();
    intake.store = Arc::new(CreatesFail(pipeline.app.store.clone()));
    let body = json!({"kind": "fan", "payload": {}, "callback_url": CALLBACK_URL});
    let (status, problem) = submit_keyed(&intake, &body, "k-1").await;
    assert_eq!(status, http::StatusCode::SERVICE_UNAVAILABLE, "{problem}");

    // The first child's message writes the parent, with the key, and each child writes itself.
    let report = deliver(&pipeline).await;
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(ok.total_runs(), 2);
    let (status, replayed) = submit_keyed(&pipeline.app, &body, "k-1").await;
    assert_eq!(status, http::StatusCode::ACCEPTED, "{replayed}");
    let parent = JobId::parse(replayed["id"].as_str().unwrap()).unwrap();
    let settled = job(&pipeline.app, parent).await;
    assert_eq!(settled.status, JobStatus::Failed, "{settled:?}");
    let failed: Vec<_> = settled
        .fanout
        .unwrap()
        .failures()
        .iter()
        .map(|f| f.target.clone())
        .collect();
    assert_eq!(failed, ["c"]);
    // The replay of a settled parent sent nothing; its callback was enqueued once.
    deliver(&pipeline).await;
    assert_eq!(ok.total_runs(), 2);
}

#[tokio::test]
async fn a_fanout_that_stopped_mid_way_is_finished_by_a_retry_with_its_key() {
    let (pipeline, ok) = fanout_pipeline();
    // The first request sends `a`'s and `b`'s messages, then stops: `c` was never sent, and
    // nothing was written.
    let mut intake = pipeline.app.clone();
    intake.store = Arc::new(CreatesFail(pipeline.app.store.clone()));
    intake.queues.normal = Arc::new(SendsOnly {
        inner: pipeline.app.queues.normal.clone(),
        sends: 2.into(),
    });
    let body = json!({"kind": "fan", "payload": {}});
    let (status, _) = submit_keyed(&intake, &body, "k-2").await;
    assert_eq!(status, http::StatusCode::SERVICE_UNAVAILABLE);
    deliver(&pipeline).await;
    assert_eq!(ok.total_runs(), 2);

    // The parent, written from a child's message, waits on `c`, which does not exist.
    let (status, replayed) = submit_keyed(&pipeline.app, &body, "k-2").await;
    assert_eq!(status, http::StatusCode::ACCEPTED, "{replayed}");
    assert_eq!(replayed["status"], "running");
    let parent = JobId::parse(replayed["id"].as_str().unwrap()).unwrap();
    // The retry sent `c`'s message again: it runs, and the parent settles.
    deliver(&pipeline).await;
    let settled = job(&pipeline.app, parent).await;
    assert_eq!(settled.status, JobStatus::Failed, "{settled:?}");
    let failures = settled.fanout.unwrap().failures().to_vec();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].target, "c");
    assert_ne!(failures[0].error.as_deref(), Some(crate::api::UNSENT_ERROR));
    assert_eq!(ok.total_runs(), 2, "a and b ran once each");
}

#[tokio::test]
async fn the_children_of_a_fanout_whose_key_another_request_took_run_nothing() {
    let (pipeline, ok) = fanout_pipeline();
    let mut intake = pipeline.app.clone();
    intake.store = Arc::new(CreatesFail(pipeline.app.store.clone()));
    let body = json!({"kind": "fan", "payload": {}});
    let (status, _) = submit_keyed(&intake, &body, "k-3").await;
    assert_eq!(status, http::StatusCode::SERVICE_UNAVAILABLE);
    // A retry reaches a healthy table before any message is delivered: it takes the key with a
    // parent of its own, and sends its own children.
    let (status, accepted) = submit_keyed(&pipeline.app, &body, "k-3").await;
    assert_eq!(status, http::StatusCode::ACCEPTED, "{accepted}");
    let parent = JobId::parse(accepted["id"].as_str().unwrap()).unwrap();
    let report = deliver(&pipeline).await;
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(ok.total_runs(), 2, "only the retry's children ran");
    assert_eq!(job(&pipeline.app, parent).await.status, JobStatus::Failed);
}

/// Submits a `fan` job through a queue that sends only `sends` messages: the answer's status and
/// body.
async fn fan_out_with_sends(pipeline: &MemoryPipeline, sends: usize) -> (http::StatusCode, Value) {
    let mut app = pipeline.app.clone();
    app.queues.normal = Arc::new(SendsOnly {
        inner: app.queues.normal.clone(),
        sends: sends.into(),
    });
    let body = json!({"kind": "fan", "payload": {}}).to_string();
    let response = crate::api::submit_job(
        &app,
        crate::domain::Owner::anonymous(),
        &crate::testing::json_headers(),
        body.as_bytes(),
    )
    .await;
    (
        response.status(),
        serde_json::from_str(response.body()).unwrap(),
    )
}

#[tokio::test]
async fn a_child_whose_message_could_not_be_sent_fails_and_the_parent_lists_it() {
    let (pipeline, _) = fanout_pipeline();
    let (status, accepted) = fan_out_with_sends(&pipeline, 2).await;
    assert_eq!(status, http::StatusCode::ACCEPTED, "{accepted}");
    let parent = JobId::parse(accepted["id"].as_str().unwrap()).unwrap();
    assert_eq!(job(&pipeline.app, parent).await.status, JobStatus::Running);
    deliver(&pipeline).await;
    let settled = job(&pipeline.app, parent).await;
    assert_eq!(settled.status, JobStatus::Failed);
    let failed: Vec<_> = settled
        .fanout
        .unwrap()
        .failures()
        .iter()
        .map(|f| (f.target.clone(), f.error.clone().unwrap_or_default()))
        .collect();
    // `c` would fail on its own too, but its message was never sent: it never ran.
    assert_eq!(
        failed,
        [("c".to_owned(), crate::api::UNSENT_ERROR.to_owned())]
    );
}

#[tokio::test]
async fn a_fanout_none_of_whose_messages_was_sent_is_refused_and_leaves_nothing() {
    let (pipeline, _) = fanout_pipeline();
    let (status, problem) = fan_out_with_sends(&pipeline, 0).await;
    assert_eq!(status, http::StatusCode::SERVICE_UNAVAILABLE, "{problem}");
    let owner = crate::domain::Owner::anonymous();
    assert_eq!(pipeline.app.store.active_jobs(&owner, 10).await.unwrap(), 0);
    assert_eq!(pipeline.app.queues.normal.depth().await.unwrap().total(), 0);
    // Nothing was written: a retry starts afresh.
    let (status, _) = fan_out_with_sends(&pipeline, 3).await;
    assert_eq!(status, http::StatusCode::ACCEPTED);
}

#[tokio::test]
async fn a_fanout_counts_its_parent_and_each_child_against_its_owners_limit() {
    let (pipeline, _) = fanout_pipeline();
    let mut app = pipeline.app.clone();
    let body = json!({"kind": "fan", "payload": {}}).to_string();
    let owner = crate::domain::Owner::anonymous();
    let headers = crate::testing::json_headers();
    for (limit, expected) in [
        (3, http::StatusCode::TOO_MANY_REQUESTS),
        (4, http::StatusCode::ACCEPTED),
    ] {
        Arc::make_mut(&mut app.settings).max_active_jobs_per_owner = limit;
        let response = crate::api::submit_job(&app, owner.clone(), &headers, body.as_bytes()).await;
        assert_eq!(response.status(), expected, "limit {limit}");
    }
}

/// A processor that counts how many of its jobs run at once, and the most that ever did.
#[derive(Debug, Clone)]
struct Gauge {
    lasting: Duration,
    running: Arc<std::sync::atomic::AtomicU32>,
    most: Arc<std::sync::atomic::AtomicU32>,
    finished: Arc<std::sync::atomic::AtomicU32>,
}

impl Gauge {
    fn new(lasting: Duration) -> Self {
        Self {
            lasting,
            running: Arc::default(),
            most: Arc::default(),
            finished: Arc::default(),
        }
    }

    fn most(&self) -> u32 {
        self.most.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn finished(&self) -> u32 {
        self.finished.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl Processor for Gauge {
    async fn process(&self, _: &Work) -> Result<Value, ProcessError> {
        use std::sync::atomic::Ordering;
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(self.lasting).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        self.finished.fetch_add(1, Ordering::SeqCst);
        Ok(json!({}))
    }
}

/// A pipeline on tokio's clock (for paused tests) whose `gauge` kind may run `limit` jobs at
/// once, with a visibility timeout of `visibility` seconds.
fn gauge_pipeline(limit: u32, gauge: &Gauge, visibility: u64) -> MemoryPipeline {
    let settings = Settings {
        visibility_timeout: Duration::from_secs(visibility),
        ..fast_settings()
    };
    let mut processors = crate::kinds::builtin();
    processors.insert(
        gauge_kind(),
        Arc::new(gauge.clone()),
        crate::processor::Limits {
            max_concurrency: Some(limit),
            ..Default::default()
        },
    );
    let mut pipeline = MemoryPipeline::new(settings, processors);
    let clock = crate::testing::faults::TokioClock::starting_at(crate::clock::SystemClock.now());
    pipeline.app = pipeline.app.clone().with_clock(Arc::new(clock));
    pipeline
}

fn gauge_kind() -> Kind {
    Kind::parse("gauge").unwrap()
}

/// `holder`'s slot among the `gauge` kind's `limit`.
fn gauge_slot(limit: u32, holder: &str) -> crate::store::Slot {
    crate::store::Slot {
        kind: gauge_kind(),
        limit,
        holder: holder.to_owned(),
    }
}

/// Polls until every job of `ids` has ended, with `consumers` consumers at once.
async fn drain(pipeline: &MemoryPipeline, ids: &[JobId], consumers: usize) {
    let mut polling = tokio::task::JoinSet::new();
    for _ in 0..consumers {
        let pipeline = pipeline.clone();
        let ids = ids.to_vec();
        polling.spawn(async move {
            loop {
                let mut ended = true;
                for id in &ids {
                    ended &= job(&pipeline.app, *id).await.status.is_terminal();
                }
                if ended {
                    return;
                }
                pipeline
                    .esm
                    .poll_once(&pipeline.app, Duration::from_secs(1))
                    .await
                    .unwrap();
            }
        });
    }
    tokio::time::timeout(Duration::from_secs(600), polling.join_all())
        .await
        .expect("every job ended");
}

#[tokio::test(start_paused = true)]
async fn a_kind_runs_no_more_jobs_at_once_than_its_max_concurrency_and_waiting_costs_no_attempt() {
    // Each job runs past its lease (5 s against a visibility timeout of 3 s): heartbeats renew
    // the slots with the leases.
    let gauge = Gauge::new(Duration::from_secs(5));
    let pipeline = gauge_pipeline(2, &gauge, 3);
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(submit(&pipeline.app, json!({"kind": "gauge", "payload": {}})).await);
    }

    let first = deliver(&pipeline).await;
    assert_eq!((first.received, first.deleted), (6, 6), "{first:?}");
    assert_eq!((gauge.finished(), gauge.most()), (2, 2));
    let depth = pipeline.app.queues.normal.depth().await.unwrap();
    // Sent on after a wait of 1 to 10 s, some of which passed while the two ran.
    assert_eq!(
        (depth.visible + depth.delayed, depth.in_flight),
        (4, 0),
        "four messages sent on to wait: {depth:?}"
    );
    let mut waiting = 0;
    for id in &ids {
        let job = job(&pipeline.app, *id).await;
        if job.status == JobStatus::Pending {
            assert_eq!(job.attempts, 0, "waiting for a slot is not an attempt");
            waiting += 1;
        }
    }
    assert_eq!(waiting, 4);

    drain(&pipeline, &ids, 3).await;
    assert_eq!((gauge.finished(), gauge.most()), (6, 2));
    for id in &ids {
        let job = job(&pipeline.app, *id).await;
        assert_eq!((job.status, job.attempts), (JobStatus::Succeeded, 1));
    }
    assert_eq!(
        pipeline.dlq.depth().await.unwrap().total(),
        0,
        "no message reached the DLQ"
    );
    // Every slot was given back.
    let now = pipeline.app.clock.now();
    let until = now.saturating_add(Duration::from_secs(60));
    for probe in ["a", "b"] {
        let store = &pipeline.app.store;
        assert!(
            store
                .hold_slot(&gauge_slot(2, probe), until, now)
                .await
                .unwrap()
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_slot_whose_consumer_stopped_lapses_and_the_waiting_job_then_runs() {
    let gauge = Gauge::new(Duration::from_millis(10));
    let pipeline = gauge_pipeline(1, &gauge, 30);
    // A consumer took the only slot for 20 s, then stopped without giving it back.
    let now = pipeline.app.clock.now();
    let lapses = now.saturating_add(Duration::from_secs(20));
    assert!(
        pipeline
            .app
            .store
            .hold_slot(&gauge_slot(1, "stopped"), lapses, now)
            .await
            .unwrap()
    );
    let id = submit(&pipeline.app, json!({"kind": "gauge", "payload": {}})).await;
    let first = deliver(&pipeline).await;
    assert_eq!((first.received, first.deleted), (1, 1));
    assert_eq!(gauge.finished(), 0, "nothing ran while the slot was held");
    drain(&pipeline, &[id], 1).await;
    assert!(
        pipeline.app.clock.now() >= lapses,
        "it ran once the slot lapsed"
    );
    let done = job(&pipeline.app, id).await;
    assert_eq!((done.status, done.attempts), (JobStatus::Succeeded, 1));
}

#[tokio::test(start_paused = true)]
async fn a_slot_is_given_back_when_its_job_is_not_claimed() {
    let gauge = Gauge::new(Duration::from_millis(10));
    let pipeline = gauge_pipeline(1, &gauge, 30);
    let id = submit(&pipeline.app, json!({"kind": "gauge", "payload": {}})).await;
    pipeline
        .app
        .store
        .apply(id, &pipeline.app.change(Transition::Cancel))
        .await
        .unwrap();
    let report = deliver(&pipeline).await;
    assert_eq!((report.received, report.deleted), (1, 1));
    assert_eq!(gauge.finished(), 0);
    let now = pipeline.app.clock.now();
    let until = now.saturating_add(Duration::from_secs(60));
    assert!(
        pipeline
            .app
            .store
            .hold_slot(&gauge_slot(1, "next"), until, now)
            .await
            .unwrap(),
        "the cancelled job's slot was given back"
    );
}

#[tokio::test]
async fn a_cancelled_fanout_cancels_its_pending_children_and_ends_cancelled_with_one_callback() {
    let (pipeline, ok) = fanout_pipeline();
    let app = &pipeline.app;
    let owner = crate::domain::Owner::anonymous();
    let parent = submit(
        app,
        json!({"kind": "fan", "payload": {}, "callback_url": CALLBACK_URL}),
    )
    .await;
    let children: Vec<_> = job(app, parent).await.fanout.unwrap().children().to_vec();

    // `a` is running when the owner cancels: it runs on; `b` and `c` are cancelled.
    let claim = app.change(Transition::Claim {
        lease_until: far_deadline(),
        max_attempts: 5,
    });
    app.store.apply(children[0].id, &claim).await.unwrap();
    for _ in 0..2 {
        let response = crate::api::cancel_job(app, &owner, &parent.to_string()).await;
        assert_eq!(
            response.status(),
            http::StatusCode::ACCEPTED,
            "{}",
            response.body()
        );
        let document: Value = serde_json::from_str(response.body()).unwrap();
        assert_eq!(
            document["status"], "running",
            "it settles as its children end"
        );
    }
    let statuses = |children: Vec<Job>| children.into_iter().map(|c| c.status).collect::<Vec<_>>();
    let mut now = Vec::new();
    for child in &children {
        now.push(job(app, child.id).await);
    }
    assert_eq!(
        statuses(now),
        [
            JobStatus::Running,
            JobStatus::Cancelled,
            JobStatus::Cancelled
        ]
    );

    // The cancelled children's messages are received and counted on the parent; `a`'s end
    // settles it.
    deliver(&pipeline).await;
    assert_eq!(job(app, parent).await.status, JobStatus::Running);
    let end = app.change(Transition::Succeed {
        attempt: 1,
        result: json!(null),
    });
    let ended = app.store.apply(children[0].id, &end).await.unwrap();
    crate::consumer::fanin::ensure(app, &ended).await.unwrap();
    assert_eq!(ok.total_runs(), 0, "no cancelled child ran");

    let settled = job(app, parent).await;
    assert_eq!(settled.status, JobStatus::Cancelled);
    let failures: Vec<_> = settled
        .fanout
        .as_ref()
        .unwrap()
        .failures()
        .iter()
        .map(|f| (f.target.as_str(), f.status))
        .collect();
    assert_eq!(
        failures,
        [("b", JobStatus::Cancelled), ("c", JobStatus::Cancelled)]
    );
    let callbacks: Vec<_> = visible_messages(&pipeline)
        .await
        .into_iter()
        .map(|m| m.job_id)
        .collect();
    assert_eq!(callbacks, [parent.derived("callback:cancelled:0")]);

    // Ended, it is cancelled no more: the answer a settled job gets.
    let again = crate::api::cancel_job(app, &owner, &parent.to_string()).await;
    assert_eq!(again.status(), http::StatusCode::OK, "{}", again.body());
}

#[tokio::test]
async fn a_fanout_none_of_whose_children_is_pending_is_not_cancelled() {
    let (pipeline, _) = fanout_pipeline();
    let app = &pipeline.app;
    let parent = submit(app, json!({"kind": "fan", "payload": {}})).await;
    for child in job(app, parent).await.fanout.unwrap().children() {
        let claim = app.change(Transition::Claim {
            lease_until: far_deadline(),
            max_attempts: 5,
        });
        app.store.apply(child.id, &claim).await.unwrap();
    }
    let response =
        crate::api::cancel_job(app, &crate::domain::Owner::anonymous(), &parent.to_string()).await;
    assert_eq!(
        response.status(),
        http::StatusCode::CONFLICT,
        "{}",
        response.body()
    );
    assert_eq!(job(app, parent).await.status, JobStatus::Running);
}
