//! The stack as `infra/template.yaml` deploys it. `sam build` (run by the test command) builds the
//! three functions; `tests/deploy/stack.py` transforms the template with the SAM translator,
//! resolves every intrinsic and creates the table, queues, secret, roles and log groups on the
//! AWS emulator. Each function's `bootstrap` then runs with exactly the environment its template
//! entry gives it, its own role's credentials, and a proxy that checks each of its AWS calls
//! against that role's policy; API Gateway and the SQS event source mapping are emulated from the
//! template's routes and mapping. Nothing here hands a function anything the template does not.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::sqs::SqsBatchResponse;
use serde_json::{Value, json};
use spillway_core::config::Function;
use spillway_core::domain::Timestamp;
use spillway_core::esm::{self, EventSourceMapping};
use spillway_core::queue::SqsQueue;
use spillway_tests::aws_proxy::{AwsProxy, Call, Caller};
use spillway_tests::deployment::{Deployment, Manifest};
use spillway_tests::gateway::{ApiCaller, ApiResponse, Gateway};
use spillway_tests::iam::{self, Decision, Policy};
use spillway_tests::lambda::{Credentials, LambdaFunction};
use spillway_tests::receiver::Receiver;

/// The parameters the test deploys with: each one turns on a path whose permissions the run must
/// exercise (the backlog check, webhooks to the loopback receiver, a retry into the DLQ within
/// seconds), or makes a value the functions must be given visible (the default TTL).
const PARAMETERS: &[(&str, &str)] = &[
    ("Architecture", "x86_64"),
    ("MaxReceiveCount", "2"),
    ("BackoffBaseSeconds", "1"),
    ("BackoffMaxSeconds", "1"),
    ("BacklogLimit", "1000"),
    ("DefaultTtlSeconds", "600"),
    ("ConsumerTimeoutSeconds", "10"),
    ("WebhookAllow", "127.0.0.1"),
    ("WebhookTimeoutMs", "3000"),
];
const DEFAULT_TTL: Duration = Duration::from_secs(600);
/// The issuer of the JWT stack's tokens.
const JWT_ISSUER: &str = "https://idp.example.com/spillway";

/// The template `sam build` wrote, with each function's `CodeUri` pointing at its `bootstrap`.
fn built_template() -> PathBuf {
    let dir = std::env::var_os("SPILLWAY_SAM_BUILD_DIR").unwrap_or_else(|| {
        panic!(
            "the deployment test runs the functions `sam build` made: run it through \
             `scripts/test`, which builds them and sets SPILLWAY_SAM_BUILD_DIR"
        )
    });
    let template = PathBuf::from(dir).join("template.yaml");
    assert!(template.is_file(), "{} is missing", template.display());
    template
}

/// The deployed stack, its functions running, and the test's view of them.
struct Stack {
    deployment: Deployment,
    proxy: AwsProxy,
    intake: LambdaFunction,
    status: LambdaFunction,
    consumer: LambdaFunction,
    esm: EventSourceMapping,
    caller: ApiCaller,
    receiver: Receiver,
    /// The body of every message the mapping delivered, for replaying one as SQS may.
    delivered: std::sync::Mutex<Vec<String>>,
}

impl Stack {
    /// Deploys with [`PARAMETERS`] and `overrides`, and starts the functions; the test calls the
    /// API as the caller `caller` names, and its webhook receiver verifies with that caller's own
    /// secret, fetched from the API.
    async fn deploy(overrides: &[(&str, &str)], caller: fn(&Manifest, &str) -> ApiCaller) -> Self {
        let endpoint = spillway_tests::endpoint();
        let mut parameters: Vec<(&str, &str)> = PARAMETERS
            .iter()
            .filter(|(key, _)| overrides.iter().all(|(k, _)| k != key))
            .copied()
            .collect();
        parameters.extend_from_slice(overrides);
        let deployment = Deployment::create(&built_template(), &endpoint, &parameters);
        let manifest = &deployment.manifest;
        let proxy = AwsProxy::start(&endpoint, &manifest.account_id).await;
        let start = |function: Function| {
            let (logical_id, declared) = manifest.function_by_binary(function.binary());
            let credentials = Credentials::assume(&endpoint, &declared.role_arn, logical_id);
            register(
                &proxy,
                manifest,
                logical_id,
                &declared.role_logical_id,
                &credentials,
            );
            let url = proxy.url();
            async move { LambdaFunction::start(manifest, logical_id, &credentials, &url).await }
        };
        let intake = start(Function::Intake).await;
        let status = start(Function::Status).await;
        let consumer = start(Function::Consumer).await;
        let esm = event_source_mapping(manifest, &proxy, &endpoint).await;
        let caller = caller(manifest, "alice");
        let gateway = Gateway::new(
            &manifest.http_apis[0],
            &manifest.account_id,
            &[&intake, &status],
        );
        let secrets = owner_secrets(&gateway, &caller).await;
        let receiver =
            Receiver::start(&secrets.iter().map(String::as_str).collect::<Vec<_>>()).await;
        drop(gateway);
        Self {
            deployment,
            proxy,
            intake,
            status,
            consumer,
            esm,
            caller,
            receiver,
            delivered: std::sync::Mutex::default(),
        }
    }

    fn manifest(&self) -> &Manifest {
        &self.deployment.manifest
    }

    fn gateway(&self) -> Gateway<'_> {
        Gateway::new(
            &self.manifest().http_apis[0],
            &self.manifest().account_id,
            &[&self.intake, &self.status],
        )
    }

    async fn post(&self, body: &Value, headers: &[(&str, &str)]) -> ApiResponse {
        let mut headers = headers.to_vec();
        headers.push(("content-type", "application/json"));
        self.gateway()
            .request(
                &self.caller,
                "POST",
                "/jobs",
                &headers,
                Some(&body.to_string()),
            )
            .await
    }

    async fn accept(&self, body: &Value) -> String {
        let response = self.post(body, &[]).await;
        assert_eq!(response.status, 202, "{response}");
        response.json()["id"].as_str().unwrap().to_owned()
    }

    /// `method target` without a body, as the test's caller.
    async fn call(&self, method: &str, target: &str) -> ApiResponse {
        self.call_as(&self.caller, method, target).await
    }

    /// `method target` without a body, as `caller`.
    async fn call_as(&self, caller: &ApiCaller, method: &str, target: &str) -> ApiResponse {
        self.gateway()
            .request(caller, method, target, &[], None)
            .await
    }

    /// Submits `body` as `caller`, which must be accepted; the job's id.
    async fn accept_as(&self, caller: &ApiCaller, body: &Value) -> String {
        let response = self
            .gateway()
            .request(
                caller,
                "POST",
                "/jobs",
                &[("content-type", "application/json")],
                Some(&body.to_string()),
            )
            .await;
        assert_eq!(response.status, 202, "{response}");
        response.json()["id"].as_str().unwrap().to_owned()
    }

    /// Two callers' jobs, each submitted by one: each caller reads and cancels only its own, finds
    /// the other's missing, and has a webhook secret of its own.
    async fn each_caller_sees_only_its_own_jobs(&self, other: &ApiCaller) {
        let job =
            |path: &str| json!({"kind": "webhook", "payload": {"url": self.receiver.url(path)}});
        let mine = self.accept_as(&self.caller, &job("/isolation-mine")).await;
        let theirs = self.accept_as(other, &job("/isolation-theirs")).await;
        for (caller, own, foreign) in [(&self.caller, &mine, &theirs), (other, &theirs, &mine)] {
            let read = self.call_as(caller, "GET", &format!("/jobs/{own}")).await;
            assert_eq!(read.status, 200, "{read}");
            for method in ["GET", "DELETE"] {
                let refused = self
                    .call_as(caller, method, &format!("/jobs/{foreign}"))
                    .await;
                assert_eq!(
                    refused.status, 404,
                    "{method} of another caller's job: {refused}"
                );
            }
        }
        let gateway = self.gateway();
        assert_ne!(
            owner_secrets(&gateway, &self.caller).await,
            owner_secrets(&gateway, other).await,
            "two callers were handed the same webhook secret"
        );
        for (caller, own) in [(&self.caller, &mine), (other, &theirs)] {
            let cancelled = self
                .call_as(caller, "DELETE", &format!("/jobs/{own}"))
                .await;
            assert_eq!(cancelled.status, 200, "{cancelled}");
        }
    }

    async fn get(&self, id: &str) -> Value {
        let response = self.call("GET", &format!("/jobs/{id}")).await;
        assert_eq!(response.status, 200, "{response}");
        response.json()
    }

    /// One poll of the event source mapping: a batch to the consumer function, the messages it
    /// did not report as failed deleted. `false` when the queue had nothing.
    async fn poll(&self) -> bool {
        let messages = self
            .esm
            .receive_batch(Duration::from_secs(1))
            .await
            .unwrap();
        if messages.is_empty() {
            return false;
        }
        self.delivered
            .lock()
            .unwrap()
            .extend(messages.iter().map(|m| m.body.clone()));
        let event = esm::sqs_event(&messages, &self.esm.queue_arn, &self.esm.region);
        let answer = self
            .consumer
            .invoke_ok(&serde_json::to_value(event).unwrap())
            .await;
        let response: SqsBatchResponse = serde_json::from_value(answer).unwrap();
        self.esm.settle(&messages, response).await;
        true
    }

    /// Polls until job `id` has `status`.
    async fn run_until(&self, id: &str, status: &str) -> Value {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            let job = self.get(id).await;
            if job["status"] == status {
                return job;
            }
            self.poll().await;
        }
        panic!(
            "job {id} did not become {status}: {}\n--- consumer ---\n{}",
            self.get(id).await,
            self.consumer.output()
        );
    }

    /// Polls until the queue has stayed empty for one poll.
    async fn drain(&self) {
        while self.poll().await {}
    }

    /// Delivers job `id`'s message once more, as SQS's at-least-once delivery may.
    async fn deliver_again(&self, id: &str) {
        let body = self
            .delivered
            .lock()
            .unwrap()
            .iter()
            .find(|body| body.contains(id))
            .cloned()
            .unwrap_or_else(|| panic!("no message of job {id} was delivered"));
        let sdk = spillway_tests::sdk_config().await;
        aws_sdk_sqs::Client::new(&sdk)
            .send_message()
            .queue_url(self.manifest().output("QueueUrl"))
            .message_body(body)
            .send()
            .await
            .unwrap();
    }

    /// `spillway` (the operator's command) against the emulator, with the stack's resources.
    fn spillway(&self, args: &[&str]) -> String {
        let manifest = self.manifest();
        let output = std::process::Command::new(spillway_binary())
            .args(args)
            .args(["--endpoint-url", &spillway_tests::endpoint()])
            .args(["--table", manifest.output("TableName")])
            .args(["--queue-url", manifest.output("QueueUrl")])
            .args(["--dlq-url", manifest.output("DeadLetterQueueUrl")])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "spillway {args:?}: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }
}

impl Drop for Stack {
    /// A failing step is often the consequence of a refused call: name them beside the failure.
    fn drop(&mut self) {
        if std::thread::panicking() {
            let denied = denials(&self.proxy);
            if !denied.is_empty() {
                eprintln!("access denied during the run:\n{}", denied.join("\n"));
            }
        }
    }
}

/// Registers `credentials` with the proxy as `name`, acting as role `role`.
fn register(
    proxy: &AwsProxy,
    manifest: &Manifest,
    name: &str,
    role: &str,
    credentials: &Credentials,
) {
    proxy.register(
        &credentials.access_key_id,
        Caller {
            name: name.to_owned(),
            role: role.to_owned(),
            principal: credentials.principal.clone(),
            policy: Arc::new(role_policy(manifest, role)),
        },
    );
}

/// Every statement a role's policies hold: its inline policies, then the AWS managed ones.
fn role_policy(manifest: &Manifest, role: &str) -> Policy {
    let function = manifest
        .functions
        .values()
        .find(|f| f.role_logical_id == role)
        .unwrap_or_else(|| panic!("no function runs as {role}"));
    let mut policy = Policy::default();
    for inline in &function.policies {
        policy.add_document(&inline.name, &inline.document);
    }
    for arn in &function.managed_policy_arns {
        policy.add_document(&format!("managed:{arn}"), &iam::managed_policy(arn));
    }
    policy
}

/// The template's SQS event source mapping, run as Lambda runs it: with the function's role,
/// checking the queue when it is created.
async fn event_source_mapping(
    manifest: &Manifest,
    proxy: &AwsProxy,
    endpoint: &str,
) -> EventSourceMapping {
    assert_eq!(manifest.event_source_mappings.len(), 1);
    let mapping = &manifest.event_source_mappings[0];
    assert!(mapping.enabled);
    assert_eq!(mapping.function_response_types, ["ReportBatchItemFailures"]);
    let function = &manifest.functions[&mapping.function];
    let credentials = Credentials::assume(endpoint, &function.role_arn, "event-source-mapping");
    register(
        proxy,
        manifest,
        &format!("{} event source mapping", mapping.function),
        &function.role_logical_id,
        &credentials,
    );
    let queue_url = manifest
        .resources
        .values()
        .find(|r| {
            r.attributes.get("Arn").and_then(Value::as_str) == Some(&mapping.event_source_arn)
        })
        .and_then(|r| r.r#ref.clone())
        .unwrap();
    let sdk = spillway_core::sdk::loader(spillway_core::sdk::Roots::System)
        .region(aws_config::Region::new(manifest.region.clone()))
        .endpoint_url(proxy.url())
        .credentials_provider(aws_credential_types::Credentials::new(
            credentials.access_key_id,
            credentials.secret_access_key,
            Some(credentials.session_token),
            None,
            "event-source-mapping",
        ))
        .load()
        .await;
    let queue = Arc::new(SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), &queue_url));
    let esm = EventSourceMapping {
        queue,
        queue_arn: mapping.event_source_arn.clone(),
        region: manifest.region.clone(),
        batch_size: mapping.batch_size,
        batching_window: Duration::from_secs(mapping.maximum_batching_window_seconds),
        function_timeout: Duration::from_secs(function.timeout),
    };
    // Lambda reads the queue's attributes with the function's role when the mapping is created.
    esm.queue.depth().await.unwrap();
    esm
}

/// What `caller`'s receivers verify its deliveries with: `GET /webhook-secret` as that caller.
async fn owner_secrets(gateway: &Gateway<'_>, caller: &ApiCaller) -> Vec<String> {
    let response = gateway
        .request(caller, "GET", "/webhook-secret", &[], None)
        .await;
    assert_eq!(response.status, 200, "{response}");
    assert_eq!(response.headers["cache-control"], "no-store");
    serde_json::from_value(response.json()["secrets"].clone()).unwrap()
}

/// An IAM user of the stack's account, signing with SigV4.
fn iam_user(manifest: &Manifest, name: &str) -> ApiCaller {
    ApiCaller::Iam {
        arn: format!("arn:aws:iam::{}:user/{name}", manifest.account_id),
        access_key: format!("AKIA{}", name.to_ascii_uppercase()),
        account: manifest.account_id.clone(),
    }
}

/// A bearer of a token [`JWT_ISSUER`] issued for `subject`.
fn jwt_subject(_: &Manifest, subject: &str) -> ApiCaller {
    ApiCaller::Jwt {
        issuer: JWT_ISSUER.to_owned(),
        subject: subject.to_owned(),
        audience: "spillway".to_owned(),
    }
}

/// A caller of an API without authorization.
fn anyone(_: &Manifest, _: &str) -> ApiCaller {
    ApiCaller::Anonymous
}

/// The `spillway` binary `cargo test` built beside this test.
fn spillway_binary() -> PathBuf {
    let deps = std::env::current_exe().unwrap();
    deps.parent().unwrap().parent().unwrap().join("spillway")
}

/// The time between two timestamps of a job document.
fn between(from: &Value, to: &Value) -> Duration {
    let parse = |v: &Value| serde_json::from_value::<Timestamp>(v.clone()).unwrap();
    parse(to).saturating_since(parse(from))
}

#[test]
fn each_function_is_given_exactly_the_variables_it_reads() {
    let deployment = Deployment::create(&built_template(), &spillway_tests::endpoint(), PARAMETERS);
    let manifest = &deployment.manifest;
    for function in Function::ALL {
        let (logical_id, declared) = manifest.function_by_binary(function.binary());
        let given: BTreeSet<&str> = declared.environment.keys().map(String::as_str).collect();
        let read: BTreeSet<&str> = function.variables().iter().copied().collect();
        assert_eq!(
            given, read,
            "{logical_id}: the template gives it {given:?}; the code reads {read:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stack_runs_as_the_template_deploys_it() {
    let stack = Stack::deploy(&[], iam_user).await;
    let manifest = stack.manifest();

    // The stack protects itself: Lambda never throttles the mapping's batches (a throttled batch
    // burns receive counts), long polls cannot take the account's concurrency, and polling has a
    // throttle of its own.
    let mapping = &manifest.event_source_mappings[0];
    let consumer = &manifest.functions[&mapping.function];
    assert!(
        consumer.reserved_concurrency >= mapping.maximum_concurrency,
        "the consumer reserves {:?}, its mapping may run {:?}",
        consumer.reserved_concurrency,
        mapping.maximum_concurrency
    );
    let (_, status) = manifest.function_by_binary(Function::Status.binary());
    assert!(
        status.reserved_concurrency.is_some(),
        "status has no concurrency of its own"
    );
    let api = &manifest.http_apis[0];
    assert!(
        api.route_settings.get("GET /jobs/{id}").is_some(),
        "GET /jobs/{{id}} has no throttle of its own: {}",
        api.route_settings
    );

    // The demonstration kinds are off in a deployed stack.
    let echo = stack
        .post(&json!({"kind": "echo", "payload": {}}), &[])
        .await;
    assert_eq!(echo.status, 422, "{echo}");

    // A webhook with a completion callback, submitted twice with one Idempotency-Key.
    let body = json!({
        "kind": "webhook",
        "payload": {"url": stack.receiver.url("/orders"), "body": {"order": 7}},
        "callback_url": stack.receiver.url("/callbacks")
    });
    let first = stack.post(&body, &[("idempotency-key", "order-7")]).await;
    assert_eq!(first.status, 202, "{first}");
    let again = stack.post(&body, &[("idempotency-key", "order-7")]).await;
    assert_eq!(again.json()["id"], first.json()["id"], "{}", again.body);
    let id = first.json()["id"].as_str().unwrap().to_owned();
    let job = stack.run_until(&id, "succeeded").await;
    assert_eq!(job["result"]["status_code"], 200, "{job}");
    stack.drain().await;
    // A duplicate delivery finds the job finished and its callback made: nothing runs twice.
    stack.deliver_again(&id).await;
    stack.drain().await;
    let delivered = stack
        .receiver
        .wait_for_deliveries("/orders", 1, Duration::from_secs(5))
        .await;
    let callbacks = stack
        .receiver
        .wait_for_deliveries("/callbacks", 1, Duration::from_secs(5))
        .await;
    assert_eq!(delivered.len(), 1);
    assert_eq!(callbacks.len(), 1, "one callback: {callbacks:?}");
    for delivery in delivered.iter().chain(&callbacks) {
        assert!(delivery.verified, "{:?}", delivery.verify_error);
    }
    let callback: Value = serde_json::from_str(&callbacks[0].body).unwrap();
    assert_eq!(callback["id"], id.as_str());
    assert_eq!(callback["status"], "succeeded");
    // The callback job's deadline is the stack's default TTL, which the consumer was given.
    let callback_id = callbacks[0].headers["webhook-id"].clone();
    let callback_job = stack.get(&callback_id).await;
    assert_eq!(
        between(&callback_job["created_at"], &callback_job["deadline"]),
        DEFAULT_TTL,
        "{callback_job}"
    );

    // A cancelled job never runs.
    let cancelled = stack
        .accept(&json!({"kind": "webhook", "payload": {"url": stack.receiver.url("/never")}}))
        .await;
    let response = stack.call("DELETE", &format!("/jobs/{cancelled}")).await;
    assert_eq!(response.status, 200, "{response}");
    assert_eq!(response.json()["status"], "cancelled");
    stack.drain().await;
    assert!(stack.receiver.deliveries("/never").await.is_empty());
    assert_eq!(stack.get(&cancelled).await["status"], "cancelled");

    // A long poll answers when its time is up.
    let waited = stack
        .call("GET", &format!("/jobs/{cancelled}?wait=1"))
        .await;
    assert_eq!(waited.status, 200, "{waited}");

    // Retried into the DLQ, then redriven by the operator's command, then delivered.
    stack
        .receiver
        .script(
            "/flaky",
            json!([{"status": 500}, {"status": 500}, {"status": 200}]),
        )
        .await;
    let flaky = stack
        .accept(&json!({"kind": "webhook", "payload": {"url": stack.receiver.url("/flaky")}}))
        .await;
    let dead = stack.run_until(&flaky, "dead_lettered").await;
    assert_eq!(dead["attempts"], 2, "{dead}");
    stack.drain().await;
    let redriven = stack.spillway(&["dlq", "redrive", "--job", &flaky]);
    assert!(redriven.contains("moved 1 message(s)"), "{redriven}");
    let job = stack.run_until(&flaky, "succeeded").await;
    assert_eq!(job["attempts"], 3, "{job}");

    no_call_was_denied(&stack.proxy);
    every_granted_action_was_used(&stack.proxy, manifest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deployed_functions_answer_malformed_input_with_clear_errors_and_change_nothing() {
    let stack = Stack::deploy(&[], iam_user).await;
    let gateway = stack.gateway();

    let headers = [("content-type", "application/json")];
    let refused = gateway
        .request(
            &stack.caller,
            "POST",
            "/jobs",
            &headers,
            Some("{this is not json"),
        )
        .await;
    assert_eq!(refused.status, 400, "{refused}");
    assert_eq!(refused.headers["content-type"], "application/problem+json");
    assert_eq!(refused.json()["status"], 400);

    let refused = stack.call("GET", "/jobs/not-an-id").await;
    assert_eq!(refused.status, 400, "{refused}");
    assert_eq!(refused.headers["content-type"], "application/problem+json");

    let unsigned = gateway
        .request(&ApiCaller::Anonymous, "POST", "/jobs", &headers, Some("{}"))
        .await;
    assert_eq!(
        unsigned.status, 403,
        "the template asks for IAM authorization"
    );

    // A record whose body is no job message is reported failed, to reach the DLQ.
    let message_id = "4f1a1c2e-0d3b-4c6a-9e8f-7a6b5c4d3e2f";
    let mut event = serde_json::to_value(esm::sqs_event(
        &[spillway_core::queue::ReceivedMessage {
            message_id: message_id.to_owned(),
            receipt_handle: "a-receipt-handle-of-a-message-never-sent".to_owned(),
            body: "\u{1f}garbage, not a job message".to_owned(),
            receive_count: 1,
            sent_at: Timestamp::from_system_time(std::time::SystemTime::now()),
        }],
        &stack.esm.queue_arn,
        &stack.esm.region,
    ))
    .unwrap();
    let batch = stack.consumer.invoke_ok(&event).await;
    assert_eq!(
        batch,
        json!({"batchItemFailures": [{"itemIdentifier": message_id}]})
    );

    // An event that is no SQS event fails the invocation, and the runtime says why.
    event = json!({"hello": 1});
    let error = stack.consumer.invoke(&event).await.unwrap_err();
    assert!(
        error.contains("deserialize") && error.contains("Records"),
        "the runtime names what it could not read: {error}"
    );

    let sdk = spillway_tests::sdk_config().await;
    let items = aws_sdk_dynamodb::Client::new(&sdk)
        .scan()
        .table_name(stack.manifest().output("TableName"))
        .send()
        .await
        .unwrap();
    assert_eq!(items.count, 0, "no job was written");
    assert_eq!(
        stack.esm.queue.depth().await.unwrap().total(),
        0,
        "nothing was enqueued"
    );
    no_call_was_denied(&stack.proxy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_log_line_about_a_job_carries_its_correlation_id_in_all_three_functions() {
    let stack = Stack::deploy(&[], iam_user).await;
    let correlation_id = "checkout-7f3a/42";
    let body = json!({"kind": "webhook", "payload": {"url": stack.receiver.url("/logged")}});
    let accepted = stack
        .post(&body, &[("x-correlation-id", correlation_id)])
        .await;
    assert_eq!(accepted.status, 202, "{accepted}");
    assert_eq!(accepted.headers["x-correlation-id"], correlation_id);
    let id = accepted.json()["id"].as_str().unwrap().to_owned();
    stack.run_until(&id, "succeeded").await;
    let read = stack.call("GET", &format!("/jobs/{id}")).await;
    assert_eq!(read.headers["x-correlation-id"], correlation_id);

    // A generated id when the caller sends none, returned to it.
    let other = stack.post(&body, &[]).await;
    let generated = &other.headers["x-correlation-id"];
    assert!(!generated.is_empty() && generated != correlation_id);

    // The template asks for JSON logs: every line is one flat object.
    let log = [&stack.intake, &stack.consumer, &stack.status]
        .map(LambdaFunction::output)
        .join("");
    let lines: Vec<Value> = log
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .filter(|line: &Value| line["job_id"] == id.as_str())
        .collect();
    for line in &lines {
        assert_eq!(line["correlation_id"], correlation_id, "{line}");
    }
    let said = |message: &str| lines.iter().find(|line| line["message"] == message);
    assert!(
        said("accepted").is_some(),
        "intake's line is missing:\n{log}"
    );
    let claimed =
        said("claimed").unwrap_or_else(|| panic!("the consumer's line is missing:\n{log}"));
    assert_eq!(claimed["attempt"], 1);
    assert!(said("recorded").is_some(), "{log}");
    assert!(
        said("read").is_some(),
        "the status function's line is missing:\n{log}"
    );
    no_call_was_denied(&stack.proxy);
}

/// Every call was allowed by the caller's own role, and understood by the proxy.
fn no_call_was_denied(proxy: &AwsProxy) {
    let refused = proxy.refused();
    assert!(
        refused.is_empty(),
        "requests the proxy could not check: {refused:#?}"
    );
    let denied = denials(proxy);
    assert!(denied.is_empty(), "access denied:\n{}", denied.join("\n"));
}

/// `caller (role) was denied action on resource`, for each refused call.
fn denials(proxy: &AwsProxy) -> Vec<String> {
    proxy
        .calls()
        .iter()
        .filter(|c| !matches!(c.decision, Decision::Allowed(_)))
        .map(|c| {
            format!(
                "{} ({}) was denied {} on {}",
                c.caller, c.role, c.action, c.resource
            )
        })
        .collect()
}

/// Every action an inline policy grants was used by the run (the AWS managed policies SAM
/// attaches are not the template's to trim).
fn every_granted_action_was_used(proxy: &AwsProxy, manifest: &Manifest) {
    let unused = unused_actions(manifest, &proxy.calls());
    assert!(
        unused.is_empty(),
        "the policies grant actions no path of the run used; remove them, or make the run use \
         them:\n{}",
        unused.join("\n")
    );
}

/// `role: policy/statement grants action` for each inline grant no allowed call used.
fn unused_actions(manifest: &Manifest, calls: &[Call]) -> Vec<String> {
    let roles: BTreeMap<&str, Policy> = manifest
        .functions
        .values()
        .map(|f| {
            (
                f.role_logical_id.as_str(),
                role_policy(manifest, &f.role_logical_id),
            )
        })
        .collect();
    let mut unused = Vec::new();
    for (role, policy) in &roles {
        for (index, statement) in policy.statements.iter().enumerate() {
            if !statement.allow || statement.origin.starts_with("managed:") {
                continue;
            }
            for action in &statement.actions {
                let used = calls.iter().any(|call| {
                    call.role == *role
                        && matches!(&call.decision, Decision::Allowed(by) if by.contains(&index))
                        && iam::wildcard(
                            &action.to_ascii_lowercase(),
                            &call.action.to_ascii_lowercase(),
                        )
                });
                if !used {
                    unused.push(format!("{role}: {} grants {action}", statement.origin));
                }
            }
        }
    }
    unused
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_callers_see_only_their_own_jobs() {
    let jwt = [
        ("ApiAuth", "JWT"),
        ("JwtIssuer", JWT_ISSUER),
        ("JwtAudience", "spillway"),
    ];
    let stack = Stack::deploy(&jwt, jwt_subject).await;
    let bob = jwt_subject(stack.manifest(), "bob");
    stack.each_caller_sees_only_its_own_jobs(&bob).await;
    // The same subject from another issuer is someone else.
    let impostor = ApiCaller::Jwt {
        issuer: "https://other-idp.example.com".to_owned(),
        subject: "alice".to_owned(),
        audience: "spillway".to_owned(),
    };
    stack.each_caller_sees_only_its_own_jobs(&impostor).await;
    let unsigned = stack
        .call_as(&ApiCaller::Anonymous, "GET", "/webhook-secret")
        .await;
    assert_eq!(unsigned.status, 401, "{unsigned}");
    no_call_was_denied(&stack.proxy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_authorization_every_caller_is_one_owner_and_a_job_id_is_a_bearer_token() {
    let stack = Stack::deploy(&[("ApiAuth", "NONE")], anyone).await;
    assert!(
        stack
            .manifest()
            .output("ApiAuthMode")
            .contains("demonstration"),
        "the stack says what NONE means"
    );
    let job = json!({"kind": "webhook", "payload": {"url": stack.receiver.url("/open")}});
    let id = stack.accept_as(&ApiCaller::Anonymous, &job).await;
    let someone_else = stack
        .gateway()
        .request_without_identity("GET", &format!("/jobs/{id}"), &[], None)
        .await;
    assert_eq!(someone_else.status, 200, "{someone_else}");
    let cancelled = stack
        .gateway()
        .request_without_identity("DELETE", &format!("/jobs/{id}"), &[], None)
        .await;
    assert_eq!(cancelled.status, 200, "{cancelled}");
    no_call_was_denied(&stack.proxy);
}
