//! Webhook delivery and completion callbacks against a real receiver (tests/webhooks/receiver.py,
//! which verifies every signature with the Standard Webhooks reference library), on the in-memory
//! adapters and on the AWS emulator.

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use serde_json::{Value, json};
use spillway_core::App;
use spillway_core::api;
use spillway_core::app::webhook_keys;
use spillway_core::config::{MAX_PAYLOAD_LIMIT, Settings};
use spillway_core::domain::{JobId, JobStatus, Owner};
use spillway_core::esm::EventSourceMapping;
use spillway_core::kinds;
use spillway_core::processor::Processors;
use spillway_core::store::DynamoStore;
use spillway_core::testing::{MemoryPipeline, RecordingQueue, json_headers, submit, submit_as};
use spillway_core::webhook::{Allowlist, Resolve, SigningKeys, Webhook, WebhookSettings};
use spillway_tests::receiver::{Delivery, Receiver};
use spillway_tests::{LocalTable, Stack};

/// The secret the receiver verifies with.
const OLD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// A newer secret Spillway signs with as well, as during a rotation the receiver has not caught
/// up with yet.
const NEW_SECRET: &str = "whsec_c3BpbGx3YXktdGVzdC1yb3RhdGlvbi1zZWNyZXQtMzI=";
const BACKOFF_BASE: Duration = Duration::from_secs(1);

fn settings(allow: &str) -> Settings {
    Settings {
        max_attempts: 4,
        backoff_base: BACKOFF_BASE,
        backoff_max: Duration::from_secs(8),
        webhook: WebhookSettings {
            allow: Allowlist::parse(allow).unwrap(),
            timeout: Duration::from_secs(1),
            ..WebhookSettings::default()
        },
        ..Settings::default()
    }
}

fn webhook(settings: &Settings) -> Webhook {
    let keys = SigningKeys::parse(&format!("{NEW_SECRET} {OLD_SECRET}")).unwrap();
    Webhook::new(settings.webhook.clone(), Some(keys))
}

/// Where a test's pipeline runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Memory,
    Emulator,
    /// The queues on the emulator, the table on DynamoDB Local: for a test whose outcome rests
    /// on two consumers' conditional writes racing, which DynamoDB (and DynamoDB Local) decide
    /// atomically and the emulator does not (docs/guarantees.md, "A finding about moto").
    EmulatorWithLocalTable,
}

struct Pipeline {
    app: App,
    esm: EventSourceMapping,
    /// The emulator's resources, deleted when the pipeline is dropped.
    _stack: Option<Stack>,
    /// The table on DynamoDB Local, deleted when the pipeline is dropped.
    _table: Option<LocalTable>,
}

impl Pipeline {
    async fn new(backend: Backend, settings: Settings, processors: Processors) -> Self {
        match backend {
            Backend::Memory => {
                let pipeline = MemoryPipeline::new(settings, processors);
                Self {
                    app: pipeline.app,
                    esm: pipeline.esm,
                    _stack: None,
                    _table: None,
                }
            }
            Backend::Emulator => {
                let stack = Stack::create(settings.max_attempts, Duration::from_secs(30)).await;
                Self {
                    app: stack.app(settings, processors),
                    esm: stack.esm(),
                    _stack: Some(stack),
                    _table: None,
                }
            }
            Backend::EmulatorWithLocalTable => {
                let stack = Stack::create(settings.max_attempts, Duration::from_secs(30)).await;
                let table = LocalTable::create().await;
                let mut app = stack.app(settings, processors);
                app.store = Arc::new(DynamoStore::new(table.client.clone(), &table.name));
                Self {
                    app,
                    esm: stack.esm(),
                    _stack: Some(stack),
                    _table: Some(table),
                }
            }
        }
    }

    async fn status(&self, id: JobId) -> Value {
        let response = api::get_job(&self.app, &Owner::anonymous(), &id.to_string(), None).await;
        assert_eq!(response.status(), StatusCode::OK, "{}", response.body());
        serde_json::from_str(response.body()).unwrap()
    }

    /// Runs the event source mapping until job `id` is terminal.
    async fn run_until_terminal(&self, id: JobId) -> Value {
        for _ in 0..60 {
            let job = self.status(id).await;
            if job["status"] != "pending" && job["status"] != "running" {
                return job;
            }
            self.esm
                .poll_once(&self.app, Duration::from_secs(1))
                .await
                .unwrap();
        }
        panic!("job {id} did not finish: {}", self.status(id).await);
    }

    /// Runs the event source mapping until the queue stays empty for a second.
    async fn drain(&self) {
        for _ in 0..60 {
            let report = self
                .esm
                .poll_once(&self.app, Duration::from_secs(1))
                .await
                .unwrap();
            if report.is_none() {
                return;
            }
        }
        panic!("the queue did not drain");
    }
}

/// What the receivers of the tests' jobs (all submitted anonymously) verify with: the anonymous
/// owner's secret derived from the old stack secret, as a receiver that has not caught up with the
/// rotation would hold it.
fn receiver_secret() -> String {
    SigningKeys::parse(OLD_SECRET)
        .unwrap()
        .for_owner(&Owner::anonymous())
        .secrets()
        .remove(0)
}

/// A receiver, and a pipeline on `backend` whose webhooks may reach it.
async fn receiver_and_pipeline(backend: Backend, settings: Settings) -> (Receiver, Pipeline) {
    let receiver = Receiver::start(&[&receiver_secret()]).await;
    let processors = kinds::builtin_with(webhook(&settings));
    (receiver, Pipeline::new(backend, settings, processors).await)
}

fn webhook_job(url: String) -> Value {
    json!({"kind": "webhook", "payload": {"url": url, "body": {"order": 42}}})
}

fn assert_verified(deliveries: &[Delivery]) {
    for delivery in deliveries {
        assert!(
            delivery.verified,
            "the reference library rejected a signature: {:?}",
            delivery.verify_error
        );
    }
}

async fn retries_until_the_receiver_accepts(backend: Backend) {
    let (receiver, pipeline) = receiver_and_pipeline(backend, settings("127.0.0.1")).await;
    receiver
        .script(
            "/flaky",
            json!([{"status": 500}, {"status": 500}, {"status": 200, "body": "thanks"}]),
        )
        .await;
    // The delays the consumer gave its retries, seen where they take effect: the queue.
    let mut pipeline = pipeline;
    let queue = Arc::new(RecordingQueue::new(pipeline.app.queues.normal.clone()));
    pipeline.app.queues.normal = queue.clone();

    let id = submit(&pipeline.app, webhook_job(receiver.url("/flaky"))).await;
    let job = pipeline.run_until_terminal(id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["attempts"], 3);
    assert_eq!(job["result"]["status_code"], 200);
    assert_eq!(job["result"]["body"], "thanks");

    let deliveries = receiver.deliveries("/flaky").await;
    assert_eq!(deliveries.len(), 3);
    assert_verified(&deliveries);
    for delivery in &deliveries {
        assert_eq!(
            delivery.headers["webhook-id"],
            id.to_string(),
            "one id for every attempt"
        );
        assert_eq!(delivery.body, r#"{"order":42}"#);
        assert_eq!(delivery.headers["content-type"], "application/json");
        assert_eq!(delivery.headers["webhook-signature"].split(' ').count(), 2);
    }

    // Each retry's delay was drawn within its bound, and the receiver saw the retry no sooner.
    let delays = queue.visibility_changes();
    assert_eq!(delays.len(), 2, "one reschedule per retry: {delays:?}");
    for (index, delay) in delays.iter().enumerate() {
        let retry = index + 1;
        let bound = BACKOFF_BASE * (1 << index);
        assert!(
            *delay <= bound,
            "retry {retry} waited {delay:?}, over its bound of {bound:?}"
        );
        let gap = deliveries[retry].received_at - deliveries[retry - 1].received_at;
        assert!(
            gap >= delay.as_secs_f64() - 0.2,
            "retry {retry} came {gap:.2} s after the last, sooner than its {delay:?} delay"
        );
    }
}

#[tokio::test]
async fn a_webhook_is_retried_with_backoff_until_the_receiver_accepts_in_memory() {
    retries_until_the_receiver_accepts(Backend::Memory).await;
}

#[tokio::test]
async fn a_webhook_is_retried_with_backoff_until_the_receiver_accepts_on_the_emulator() {
    retries_until_the_receiver_accepts(Backend::Emulator).await;
}

/// A request body of exactly the default limit, the largest a deployment accepts, carried as a
/// webhook's body: the kind whose payload is the work and whose result stays small, so the job
/// can succeed. Intake, the queue, the consumer and the receiver's signature check all take it
/// whole.
async fn a_body_at_the_limit_is_delivered_whole(backend: Backend) {
    let limit = Settings::default().max_payload_bytes;
    assert_eq!(limit, MAX_PAYLOAD_LIMIT);
    let settings = Settings {
        webhook: WebhookSettings {
            timeout: Duration::from_secs(10),
            ..settings("127.0.0.1").webhook
        },
        ..settings("127.0.0.1")
    };
    let (receiver, pipeline) = receiver_and_pipeline(backend, settings).await;
    let url = receiver.url("/large");
    let job = |body: &str| json!({"kind": "webhook", "payload": {"url": url, "body": body}});
    let body = "x".repeat(limit - job("").to_string().len());
    let request = job(&body);
    assert_eq!(request.to_string().len(), limit);

    let id = submit(&pipeline.app, request).await;
    let done = pipeline.run_until_terminal(id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["attempts"], 1);
    assert_eq!(done["result"]["status_code"], 200);
    let deliveries = receiver.deliveries("/large").await;
    assert_eq!(deliveries.len(), 1);
    assert_verified(&deliveries);
    assert!(deliveries[0].body == body, "the body arrived changed");
    pipeline.drain().await;
}

#[tokio::test]
async fn a_webhook_body_at_the_payload_limit_is_delivered_whole_in_memory() {
    a_body_at_the_limit_is_delivered_whole(Backend::Memory).await;
}

/// moto takes SQS's 1 MiB (its default `MaximumMessageSize`, and `provision` sets it anyway), but
/// it measures a body in characters and ignores message attributes: this body is ASCII, so its
/// count is SQS's, and the byte arithmetic is checked by `domain::message`'s unit test instead.
#[tokio::test]
async fn a_webhook_body_at_the_payload_limit_is_delivered_whole_on_the_emulator() {
    a_body_at_the_limit_is_delivered_whole(Backend::Emulator).await;
}

#[tokio::test]
async fn a_400_fails_the_job_after_one_attempt() {
    let (receiver, pipeline) = receiver_and_pipeline(Backend::Memory, settings("127.0.0.1")).await;
    receiver
        .script(
            "/strict",
            json!([{"status": 400, "body": "{\"error\": \"unknown order\"}"}]),
        )
        .await;
    let id = submit(&pipeline.app, webhook_job(receiver.url("/strict"))).await;
    let job = pipeline.run_until_terminal(id).await;
    assert_eq!(
        (job["status"].as_str(), job["attempts"].as_u64()),
        (Some("failed"), Some(1))
    );
    let error = job["error"].as_str().unwrap();
    assert!(
        error.contains("400") && error.contains("unknown order"),
        "{error}"
    );
    assert_eq!(receiver.deliveries("/strict").await.len(), 1);
}

#[tokio::test]
async fn a_429_with_retry_after_delays_the_next_attempt_at_least_that_long() {
    let (receiver, pipeline) = receiver_and_pipeline(Backend::Memory, settings("127.0.0.1")).await;
    receiver
        .script(
            "/busy",
            json!([{"status": 429, "headers": {"Retry-After": "3"}}, {"status": 204}]),
        )
        .await;
    let id = submit(&pipeline.app, webhook_job(receiver.url("/busy"))).await;
    let job = pipeline.run_until_terminal(id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let deliveries = receiver.deliveries("/busy").await;
    assert_eq!(deliveries.len(), 2);
    assert_verified(&deliveries);
    let gap = deliveries[1].received_at - deliveries[0].received_at;
    assert!(
        gap >= 3.0,
        "the retry came {gap:.2} s later, before Retry-After's 3 s"
    );
}

#[tokio::test]
async fn a_receiver_that_hangs_times_out_and_the_attempt_is_retried() {
    let (receiver, pipeline) = receiver_and_pipeline(Backend::Memory, settings("127.0.0.1")).await;
    receiver
        .script("/hang", json!([{"status": 200, "delay_seconds": 10}]))
        .await;
    let id = submit(&pipeline.app, webhook_job(receiver.url("/hang"))).await;
    pipeline
        .esm
        .poll_once(&pipeline.app, Duration::from_secs(1))
        .await
        .unwrap();
    let job = pipeline.status(id).await;
    assert_eq!(
        (job["status"].as_str(), job["attempts"].as_u64()),
        (Some("pending"), Some(1)),
        "{job}"
    );
    assert!(
        job["error"]
            .as_str()
            .unwrap()
            .contains("no answer within 1000 ms"),
        "{job}"
    );
    // The next attempt gets the receiver's default answer.
    let job = pipeline.run_until_terminal(id).await;
    assert_eq!(
        (job["status"].as_str(), job["attempts"].as_u64()),
        (Some("succeeded"), Some(2))
    );
}

/// Answers every name with one address, as a DNS server controlled by an attacker would.
#[derive(Debug)]
struct Resolves(IpAddr);

impl Resolve for Resolves {
    fn resolve(&self, _: &str) -> Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send>> {
        let address = self.0;
        Box::pin(async move { Ok(vec![address]) })
    }
}

#[tokio::test]
async fn ssrf_targets_are_refused_without_a_connection() {
    let receiver = Receiver::start(&[&receiver_secret()]).await;
    let settings = settings("");
    let port = receiver.url("").rsplit(':').next().unwrap().to_owned();
    let webhook =
        webhook(&settings).with_resolver(Arc::new(Resolves("127.0.0.1".parse().unwrap())));
    let pipeline = Pipeline::new(Backend::Memory, settings, kinds::builtin_with(webhook)).await;

    // At intake: refused with 422 and nothing written or enqueued.
    for url in [
        format!("http://127.0.0.1:{port}/"),
        "http://169.254.169.254/latest/meta-data".to_owned(),
        format!("http://[::1]:{port}/"),
        "http://10.0.0.1/".to_owned(),
        "file:///etc/passwd".to_owned(),
        "gopher://example.com:70/1".to_owned(),
        format!("http://localhost:{port}/"),
    ] {
        for body in [
            webhook_job(url.clone()),
            json!({"kind": "echo", "payload": {}, "callback_url": url}),
        ] {
            let response = api::submit_job(
                &pipeline.app,
                Owner::anonymous(),
                &json_headers(),
                body.to_string().as_bytes(),
            )
            .await;
            assert_eq!(
                response.status(),
                StatusCode::UNPROCESSABLE_ENTITY,
                "{body}: {}",
                response.body()
            );
            let problem: Value = serde_json::from_str(response.body()).unwrap();
            assert_eq!(
                problem["type"],
                "urn:spillway:problem:forbidden-destination"
            );
        }
    }
    assert_eq!(pipeline.app.queues.normal.depth().await.unwrap().visible, 0);

    // At delivery: a name that resolves to a refused address (here the receiver's own).
    let id = submit(
        &pipeline.app,
        webhook_job(format!("http://hooks.example.com:{port}/rebound")),
    )
    .await;
    let job = pipeline.run_until_terminal(id).await;
    assert_eq!(job["status"], "failed", "{job}");
    let error = job["error"].as_str().unwrap();
    assert!(error.contains("refused before connecting"), "{error}");
    assert!(
        !error.contains("127.0.0.1") && !error.contains("loopback") && !error.contains("/rebound"),
        "the job's error tells its owner what the name resolves to, or its path: {error}"
    );
    assert_eq!(
        receiver.connections().await,
        0,
        "a connection reached the receiver"
    );
}

async fn a_callback_is_delivered_once(backend: Backend) {
    let (receiver, pipeline) = receiver_and_pipeline(backend, settings("127.0.0.1")).await;
    let id = submit(
        &pipeline.app,
        json!({"kind": "echo", "payload": {"n": 7}, "callback_url": receiver.url("/done")}),
    )
    .await;

    // SQS delivers the job's message twice. Both deliveries may enqueue the callback (the first
    // run of it has not begun), and the callback job's two messages may then be claimed at once:
    // one claim wins because the claim is a conditional write. moto applies conditional writes
    // without a lock (docs/guarantees.md), so there the second delivery comes after the callback
    // ran, and only the in-memory store, whose writes are atomic, plays the race.
    let delivery = pipeline
        .esm
        .receive_batch(Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(delivery.len(), 1);
    pipeline.esm.invoke(&pipeline.app, &delivery).await;
    if backend == Backend::Emulator {
        pipeline.drain().await;
    }
    pipeline.esm.invoke(&pipeline.app, &delivery).await;
    pipeline.drain().await;

    let deliveries = receiver
        .wait_for_deliveries("/done", 1, Duration::from_secs(5))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let deliveries_later = receiver.deliveries("/done").await;
    assert_eq!(deliveries_later.len(), 1, "{deliveries_later:?}");
    assert_verified(&deliveries);
    let callback: Value = serde_json::from_str(&deliveries[0].body).unwrap();
    let job = pipeline.status(id).await;
    assert_eq!(
        callback, job,
        "the callback carries the final status document"
    );
    assert_eq!(callback["status"], "succeeded");
    assert_eq!(callback["result"], json!({"n": 7}));
    let callback_id = deliveries[0].headers["webhook-id"].clone();
    assert_eq!(
        pipeline.status(JobId::parse(&callback_id).unwrap()).await["status"],
        "succeeded",
        "the callback is a webhook job of its own"
    );
}

#[tokio::test]
async fn a_callback_is_delivered_once_even_when_the_message_comes_twice_in_memory() {
    a_callback_is_delivered_once(Backend::Memory).await;
}

#[tokio::test]
async fn a_callback_is_delivered_once_even_when_the_message_comes_twice_on_the_emulator() {
    a_callback_is_delivered_once(Backend::Emulator).await;
}

#[tokio::test]
async fn a_dead_lettered_job_calls_back_with_its_last_error() {
    let (receiver, pipeline) = receiver_and_pipeline(
        Backend::Memory,
        Settings {
            max_attempts: 1,
            ..settings("127.0.0.1")
        },
    )
    .await;
    let id = submit(
        &pipeline.app,
        json!({"kind": "sleep", "payload": {"ms": 1, "fail": "retryable"}, "callback_url": receiver.url("/dlq")}),
    )
    .await;
    pipeline.drain().await;
    let deliveries = receiver
        .wait_for_deliveries("/dlq", 1, Duration::from_secs(5))
        .await;
    assert_verified(&deliveries);
    let callback: Value = serde_json::from_str(&deliveries[0].body).unwrap();
    assert_eq!(callback["id"], id.to_string());
    assert_eq!(callback["status"], JobStatus::DeadLettered.as_str());
    assert!(
        callback["error"]
            .as_str()
            .unwrap()
            .contains("asked to fail")
    );
}

#[tokio::test]
async fn a_job_cancelled_through_the_api_calls_back_when_the_consumer_meets_its_message() {
    let (receiver, pipeline) = receiver_and_pipeline(Backend::Memory, settings("127.0.0.1")).await;
    let id = submit(
        &pipeline.app,
        json!({"kind": "echo", "payload": {}, "callback_url": receiver.url("/cancelled")}),
    )
    .await;
    let response = api::cancel_job(&pipeline.app, &Owner::anonymous(), &id.to_string()).await;
    assert_eq!(response.status(), StatusCode::OK, "{}", response.body());
    pipeline.drain().await;
    let deliveries = receiver
        .wait_for_deliveries("/cancelled", 1, Duration::from_secs(5))
        .await;
    assert_verified(&deliveries);
    let callback: Value = serde_json::from_str(&deliveries[0].body).unwrap();
    assert_eq!(callback["status"], "cancelled");
    assert_eq!(callback, pipeline.status(id).await);
}

#[tokio::test]
async fn the_consumer_reads_its_signing_secrets_from_secrets_manager() {
    let sdk = spillway_tests::sdk_config().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    let create = |value: String| {
        let secrets = secrets.clone();
        async move {
            secrets
                .create_secret()
                .name(spillway_tests::unique_name("spillway-webhook"))
                .secret_string(value)
                .send()
                .await
                .unwrap()
                .arn
                .unwrap()
        }
    };
    let only_arn = |arn: String| {
        move |name: &str| (name == "SPILLWAY_WEBHOOK_SECRET_ARN").then(|| arn.clone())
    };

    let rotation = format!("{NEW_SECRET} {OLD_SECRET}");
    let arn = create(rotation.clone()).await;
    let keys = webhook_keys(&sdk, only_arn(arn.clone()))
        .await
        .unwrap()
        .expect("keys from the secret");
    let expected = SigningKeys::parse(&rotation).unwrap();
    assert_eq!(keys.sign("msg", 1, b"{}"), expected.sign("msg", 1, b"{}"));

    // The variable wins over the secret.
    let both = |name: &str| match name {
        "SPILLWAY_WEBHOOK_SECRET" => Some(OLD_SECRET.to_owned()),
        "SPILLWAY_WEBHOOK_SECRET_ARN" => Some(arn.clone()),
        _ => None,
    };
    let keys = webhook_keys(&sdk, both).await.unwrap().unwrap();
    assert_eq!(keys.len(), 1);

    // A missing secret, or one that is not a signing secret, stops the cold start, named.
    let missing = webhook_keys(&sdk, only_arn(format!("{arn}-gone")))
        .await
        .unwrap_err();
    assert_eq!(missing.variable, "SPILLWAY_WEBHOOK_SECRET_ARN");
    assert!(missing.problem.contains("could not be read"), "{missing}");
    let garbage = create("hunter2!".to_owned()).await;
    let bad = webhook_keys(&sdk, only_arn(garbage)).await.unwrap_err();
    assert_eq!(bad.variable, "SPILLWAY_WEBHOOK_SECRET_ARN");
    assert!(
        !bad.to_string().contains("hunter2"),
        "the secret leaked: {bad}"
    );

    assert!(webhook_keys(&sdk, |_: &str| None).await.unwrap().is_none());
}

/// The attack per-owner keys stop: an owner has Spillway sign a body shaped like another owner's
/// events, captures the signed request at its own URL, and replays it to the other's receiver.
#[tokio::test]
async fn a_delivery_captured_by_one_owner_does_not_verify_at_another_owners_receiver() {
    let alice = Owner::iam("arn:aws:iam::123456789012:user/alice");
    let bob = Owner::iam("arn:aws:iam::123456789012:user/bob");
    let stack = SigningKeys::parse(OLD_SECRET).unwrap();
    let secret_of = |owner: &Owner| stack.for_owner(owner).secrets().remove(0);
    let alices_receiver = Receiver::start(&[&secret_of(&alice)]).await;
    let bobs_receiver = Receiver::start(&[&secret_of(&bob)]).await;
    let settings = settings("127.0.0.1");
    let pipeline = Pipeline::new(
        Backend::Memory,
        settings.clone(),
        kinds::builtin_with(Webhook::new(settings.webhook.clone(), Some(stack.clone()))),
    )
    .await;

    // Alice's job: a body shaped like Bob's payment events, sent to her own receiver.
    let forged = json!({"kind": "webhook", "payload": {
        "url": alices_receiver.url("/capture"),
        "body": {"type": "payment.succeeded", "account": "bob", "amount": 1_000_000}
    }});
    submit_as(&pipeline.app, alice.clone(), forged).await;
    pipeline.drain().await;
    let captured = alices_receiver
        .wait_for_deliveries("/capture", 1, Duration::from_secs(5))
        .await
        .remove(0);
    assert!(
        captured.verified,
        "genuine at Alice's own receiver: {:?}",
        captured.verify_error
    );

    // Replayed, headers and body unchanged, to Bob's receiver, well within its tolerance.
    let mut replay = reqwest::Client::new()
        .post(bobs_receiver.url("/events"))
        .body(captured.body.clone());
    for name in [
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "content-type",
    ] {
        replay = replay.header(name, &captured.headers[name]);
    }
    replay.send().await.unwrap();
    let replayed = bobs_receiver
        .wait_for_deliveries("/events", 1, Duration::from_secs(5))
        .await
        .remove(0);
    assert_eq!(replayed.body, captured.body);
    assert!(
        !replayed.verified,
        "Bob's receiver accepted Alice's delivery"
    );

    // Bob's own deliveries verify there.
    let own = json!({"kind": "webhook", "payload": {"url": bobs_receiver.url("/events"), "body": {"n": 1}}});
    submit_as(&pipeline.app, bob, own).await;
    pipeline.drain().await;
    let deliveries = bobs_receiver
        .wait_for_deliveries("/events", 2, Duration::from_secs(5))
        .await;
    assert!(deliveries[1].verified, "{:?}", deliveries[1].verify_error);
}

/// A kind declared with an `http` target (`SPILLWAY_KINDS`) is delivered by the webhook
/// processor itself: to its one endpoint, allowlisted, signed, the job's event as the body, and
/// the answer mapped as a webhook's (a 503 retried, a 2xx the result, a 422 failing the job).
#[tokio::test]
async fn an_http_kind_posts_each_run_to_its_endpoint_as_a_webhook() {
    let receiver = Receiver::start(&[&receiver_secret()]).await;
    let settings = settings("127.0.0.1");
    let webhook = webhook(&settings);
    let declared = spillway_core::targets::Declarations::parse(
        &json!({"ledger": {"target": {"http": receiver.url("/ledger")}}}).to_string(),
    )
    .unwrap();
    let shipped = kinds::builtin_with(webhook.clone());
    let processors = shipped
        .clone()
        .and(declared.processors(&shipped, &webhook, || unreachable!("no lambda kind")));
    let pipeline = Pipeline::new(Backend::Memory, settings, processors).await;
    receiver
        .script(
            "/ledger",
            json!([{"status": 503}, {"status": 200, "body": "booked"}, {"status": 422, "body": "unbalanced"}]),
        )
        .await;

    let id = submit(
        &pipeline.app,
        json!({"kind": "ledger", "payload": {"entry": 7}}),
    )
    .await;
    let job = pipeline.run_until_terminal(id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["attempts"], 2);
    assert_eq!(job["result"]["status_code"], 200);
    assert_eq!(job["result"]["body"], "booked");
    let deliveries = receiver.deliveries("/ledger").await;
    assert_eq!(deliveries.len(), 2);
    assert_verified(&deliveries);
    for (attempt, delivery) in (1..).zip(&deliveries) {
        assert_eq!(delivery.method, "POST");
        assert_eq!(delivery.headers["webhook-id"], id.to_string());
        let event: Value = serde_json::from_str(&delivery.body).unwrap();
        assert_eq!(event["id"], id.to_string());
        assert_eq!(event["kind"], "ledger");
        assert_eq!(event["payload"], json!({"entry": 7}));
        assert_eq!(event["attempt"], attempt);
        assert_eq!(event["deadline"], job["deadline"]);
    }

    let refused = submit(&pipeline.app, json!({"kind": "ledger", "payload": {}})).await;
    let job = pipeline.run_until_terminal(refused).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert!(
        job["error"].as_str().unwrap().contains("answered 422"),
        "{job}"
    );
}

/// The acceptance of fan-out: a kind declared with three `http` targets, one of which answers
/// 400 (a permanent failure). Each target runs as a child job with its own outcome; the parent
/// ends `failed` listing that one child, and its callback is delivered exactly once.
async fn a_fanout_job_fails_listing_its_failed_target_and_calls_back_once(backend: Backend) {
    let receiver = Receiver::start(&[&receiver_secret()]).await;
    let settings = settings("127.0.0.1");
    let webhook = webhook(&settings);
    let declared = spillway_core::targets::Declarations::parse(
        &json!({"notify": {"targets": {
            "email": {"http": receiver.url("/email")},
            "sms": {"http": receiver.url("/sms")},
            "audit": {"http": receiver.url("/audit")},
        }}})
        .to_string(),
    )
    .unwrap();
    let shipped = kinds::builtin_with(webhook.clone());
    let processors = shipped
        .clone()
        .and(declared.processors(&shipped, &webhook, || unreachable!("no lambda kind")));
    let pipeline = Pipeline::new(backend, settings, processors).await;
    receiver
        .script("/sms", json!([{"status": 400, "body": "no such number"}]))
        .await;

    let parent = submit(
        &pipeline.app,
        json!({"kind": "notify", "payload": {"user": 7}, "callback_url": receiver.url("/done")}),
    )
    .await;
    let document = pipeline.run_until_terminal(parent).await;
    assert_eq!(document["status"], "failed", "{document}");
    let failures = document["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{document}");
    assert_eq!(failures[0]["target"], "sms");
    assert_eq!(failures[0]["status"], "failed");

    let mut outcomes = vec![];
    for child in document["children"].as_array().unwrap() {
        let id = JobId::parse(child["id"].as_str().unwrap()).unwrap();
        let own = pipeline.status(id).await;
        assert_eq!(own["parent"], parent.to_string(), "{own}");
        assert_eq!(own["target"], child["target"]);
        outcomes.push((
            own["target"].as_str().unwrap().to_owned(),
            own["status"].as_str().unwrap().to_owned(),
        ));
    }
    outcomes.sort();
    assert_eq!(
        outcomes,
        [
            ("audit".to_owned(), "succeeded".to_owned()),
            ("email".to_owned(), "succeeded".to_owned()),
            ("sms".to_owned(), "failed".to_owned()),
        ]
    );
    for path in ["/email", "/sms", "/audit"] {
        assert_eq!(receiver.deliveries(path).await.len(), 1, "{path}");
    }

    pipeline.drain().await;
    let callbacks = receiver
        .wait_for_deliveries("/done", 1, Duration::from_secs(5))
        .await;
    pipeline.drain().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.deliveries("/done").await.len(), 1, "one callback");
    assert_verified(&callbacks);
    let delivered: Value = serde_json::from_str(&callbacks[0].body).unwrap();
    assert_eq!(delivered["id"], parent.to_string());
    assert_eq!(delivered["status"], "failed");
    assert_eq!(delivered["failures"], document["failures"]);
}

#[tokio::test]
async fn a_fanout_job_fails_listing_its_failed_target_and_calls_back_once_in_memory() {
    a_fanout_job_fails_listing_its_failed_target_and_calls_back_once(Backend::Memory).await;
}

/// On the emulator's queues: the children's messages arrive in one batch and their consumers
/// end them at once, and the two last to end race to settle the parent. That race is decided by
/// the settle's conditional write, so the table is DynamoDB Local's, as atomic as DynamoDB.
#[tokio::test]
async fn a_fanout_job_fails_listing_its_failed_target_and_calls_back_once_on_the_emulator() {
    a_fanout_job_fails_listing_its_failed_target_and_calls_back_once(
        Backend::EmulatorWithLocalTable,
    )
    .await;
}
