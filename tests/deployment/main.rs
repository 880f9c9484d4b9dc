//! The stack as `infra/template.yaml` deploys it. `sam build` (run by the test command) builds the
//! functions: intake, status, and the consumer once per priority lane; `tests/deploy/stack.py`
//! transforms the template with the SAM translator, resolves every intrinsic and creates the
//! table, queues, secret, roles and log groups on the AWS emulator. Each function's `bootstrap`
//! then runs with exactly the environment its template entry gives it, its own role's credentials,
//! and a proxy that checks each of its AWS calls against that role's policy; API Gateway and the
//! SQS event source mappings are emulated from the template's routes and mappings
//! (`spillway_tests::deployed`). Nothing here hands a function anything the template does not.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod targets;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{Value, json};
use spillway_core::config::{Function, MAX_PAYLOAD_LIMIT, Settings};
use spillway_core::domain::Timestamp;
use spillway_core::esm;
use spillway_core::queue::MAX_MESSAGE_BYTES;
use spillway_tests::deployed::*;
use spillway_tests::deployment::Deployment;
use spillway_tests::gateway::ApiCaller;
use spillway_tests::lambda::LambdaFunction;

#[test]
fn each_function_is_given_exactly_the_variables_it_reads() {
    let deployment = Deployment::create(&built_template(), &spillway_tests::endpoint(), PARAMETERS);
    let manifest = &deployment.manifest;
    for (logical_id, declared) in &manifest.functions {
        let function = Function::ALL
            .into_iter()
            .find(|f| declared.binary.as_deref() == Some(f.binary()))
            .unwrap_or_else(|| {
                panic!(
                    "{logical_id} builds {:?}, none of the binaries the code has",
                    declared.binary
                )
            });
        let given: BTreeSet<&str> = declared.environment.keys().map(String::as_str).collect();
        let read: BTreeSet<&str> = function.variables().iter().copied().collect();
        assert_eq!(
            given, read,
            "{logical_id}: the template gives it {given:?}; the code reads {read:?}"
        );
    }
    for function in Function::ALL {
        assert!(
            !manifest.functions_by_binary(function.binary()).is_empty(),
            "no function of the template runs {function:?}"
        );
    }
}

/// Each priority lane is a pipeline of its own: its queue dead-letters into its own DLQ and is
/// polled by one mapping, invoking a consumer of its own that reserves the mapping's concurrency,
/// whose role reaches no other queue, and which differs from the other lane's only in the queue
/// and the lane it is told.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_priority_lane_is_a_pipeline_of_its_own() {
    let deployment = Deployment::create(&built_template(), &spillway_tests::endpoint(), PARAMETERS);
    let manifest = &deployment.manifest;
    let sqs = aws_sdk_sqs::Client::new(&spillway_tests::sdk_config().await);
    let lanes = [
        ("normal", "QueueUrl", "DeadLetterQueueUrl"),
        ("high", "HighQueueUrl", "HighDeadLetterQueueUrl"),
    ];
    let consumers = manifest.functions_by_binary(Function::Consumer.binary());
    assert_eq!(consumers.len(), lanes.len(), "one consumer per lane");
    let arn_of = |url: &str| -> String {
        let queue = manifest
            .resources
            .values()
            .find(|r| r.kind == "AWS::SQS::Queue" && r.r#ref.as_deref() == Some(url))
            .unwrap_or_else(|| panic!("no queue of the stack has the URL {url}"));
        queue.attributes["Arn"].as_str().unwrap().to_owned()
    };
    let (_, intake) = manifest.function_by_binary(Function::Intake.binary());
    assert_eq!(
        intake.environment["SPILLWAY_QUEUE_URL"],
        manifest.output("QueueUrl")
    );
    assert_eq!(
        intake.environment["SPILLWAY_HIGH_QUEUE_URL"],
        manifest.output("HighQueueUrl")
    );

    let mut environments = BTreeMap::new();
    for (lane, queue_output, dlq_output) in lanes {
        let (queue_url, dlq_url) = (manifest.output(queue_output), manifest.output(dlq_output));
        let (queue_arn, dlq_arn) = (arn_of(queue_url), arn_of(dlq_url));
        let redrive = sqs
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap_or_default()
            .remove(&aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy)
            .unwrap_or_else(|| panic!("the {lane} lane's queue has no redrive policy"));
        let redrive: Value = serde_json::from_str(&redrive).unwrap();
        assert_eq!(redrive["deadLetterTargetArn"], dlq_arn.as_str(), "{lane}");

        let (logical_id, consumer) = *consumers
            .iter()
            .find(|(_, f)| f.environment["SPILLWAY_QUEUE_URL"] == queue_url)
            .unwrap_or_else(|| panic!("no consumer is given the {lane} lane's queue"));
        assert_eq!(
            consumer.environment["SPILLWAY_PRIORITY"], lane,
            "{logical_id}"
        );
        let mappings: Vec<_> = manifest
            .event_source_mappings
            .iter()
            .filter(|m| m.function == logical_id)
            .collect();
        assert_eq!(mappings.len(), 1, "{logical_id} has one mapping");
        assert_eq!(mappings[0].event_source_arn, queue_arn, "{logical_id}");
        assert_eq!(
            consumer.reserved_concurrency, mappings[0].maximum_concurrency,
            "{logical_id} reserves exactly what its mapping may run"
        );
        // Its role may touch its own lane's queue, and no other.
        for statement in role_policy(manifest, &consumer.role_logical_id).statements {
            if statement.actions.iter().any(|a| a.starts_with("sqs:")) {
                assert_eq!(statement.resources, [queue_arn.as_str()], "{logical_id}");
            }
        }
        let mut environment = consumer.environment.clone();
        environment.remove("SPILLWAY_QUEUE_URL");
        environment.remove("SPILLWAY_PRIORITY");
        environments.insert(logical_id, (environment, consumer));
    }
    let [
        (normal_id, (normal_env, normal)),
        (high_id, (high_env, high)),
    ] = <[_; 2]>::try_from(environments.into_iter().collect::<Vec<_>>()).unwrap();
    assert_eq!(
        normal_env, high_env,
        "{normal_id} and {high_id} differ in more than their lane"
    );
    assert_eq!(
        (
            normal.timeout,
            normal.memory_size,
            &normal.runtime,
            &normal.handler
        ),
        (high.timeout, high.memory_size, &high.runtime, &high.handler)
    );
    assert_eq!(normal.code_dir.is_some(), high.code_dir.is_some());
    assert_ne!(normal.role_logical_id, high.role_logical_id);
    assert_ne!(normal.logging.log_group, high.logging.log_group);
}

/// The template's payload limit is the code's, and its queues take SQS's largest message: a
/// deploy can neither set a limit intake would refuse at its cold start nor promise a body whose
/// message a queue would refuse, on the way in or to the DLQ and back.
#[test]
fn the_template_bounds_payloads_and_messages_as_the_code_does() {
    let path = spillway_tests::workspace_root().join("infra/template.yaml");
    let template: serde_norway::Value =
        serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let number = |value: &serde_norway::Value| value.as_u64().and_then(|n| usize::try_from(n).ok());
    let parameter = &template["Parameters"]["MaxPayloadBytes"];
    assert_eq!(
        number(&parameter["Default"]),
        Some(Settings::default().max_payload_bytes)
    );
    assert_eq!(number(&parameter["MaxValue"]), Some(MAX_PAYLOAD_LIMIT));
    let serde_norway::Value::Mapping(resources) = &template["Resources"] else {
        panic!("the template has no Resources");
    };
    let queues: Vec<_> = resources
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::SQS::Queue"))
        .collect();
    assert_eq!(queues.len(), 4, "each lane's work queue and DLQ");
    for (queue, declared) in queues {
        let size = &declared["Properties"]["MaximumMessageSize"];
        assert_eq!(number(size), Some(MAX_MESSAGE_BYTES), "{queue:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stack_runs_as_the_template_deploys_it() {
    let stack = Stack::deploy(&[], iam_user).await;
    let manifest = stack.manifest();

    // The stack protects itself: Lambda never throttles a mapping's batches (a throttled batch
    // burns receive counts), long polls cannot take the account's concurrency, and polling has a
    // throttle of its own.
    assert_eq!(stack.mappings.len(), 2, "one mapping per priority lane");
    for mapping in &manifest.event_source_mappings {
        let consumer = &manifest.functions[&mapping.function];
        assert!(
            mapping.maximum_concurrency.is_some()
                && consumer.reserved_concurrency >= mapping.maximum_concurrency,
            "{} reserves {:?}, its mapping {} may run {:?}",
            mapping.function,
            consumer.reserved_concurrency,
            mapping.logical_id,
            mapping.maximum_concurrency
        );
    }
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
    assert_eq!(job["priority"], "normal", "the default lane: {job}");
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
    let normal = stack.mapping_of_queue("QueueUrl");
    for job in [&id, &callback_id] {
        let ran_by = stack.delivered_to(job);
        assert!(
            !ran_by.is_empty() && ran_by.iter().all(|f| *f == normal.function),
            "job {job} ran in the normal lane only: {ran_by:?}"
        );
    }

    // A high job runs in its own lane: its message goes on the high queue, whose mapping hands it
    // to the high lane's consumer, which retries it there; its callback follows in the same lane,
    // with the high lane's default deadline, and a duplicate delivery runs nothing twice there
    // either.
    let high = stack.mapping_of_queue("HighQueueUrl");
    assert_eq!(high.function, "HighConsumerFunction");
    stack
        .receiver
        .script("/urgent", json!([{"status": 500}, {"status": 200}]))
        .await;
    let urgent = stack
        .accept(&json!({
            "kind": "webhook",
            "priority": "high",
            "payload": {"url": stack.receiver.url("/urgent")},
            "callback_url": stack.receiver.url("/urgent-callbacks")
        }))
        .await;
    let job = stack.run_until(&urgent, "succeeded").await;
    assert_eq!(job["priority"], "high", "{job}");
    assert_eq!(job["attempts"], 2, "one retry, in the high lane: {job}");
    assert_eq!(
        between(&job["created_at"], &job["deadline"]),
        HIGH_DEFAULT_TTL,
        "{job}"
    );
    stack.drain().await;
    stack.deliver_again(&urgent).await;
    stack.drain().await;
    let callbacks = stack
        .receiver
        .wait_for_deliveries("/urgent-callbacks", 1, Duration::from_secs(5))
        .await;
    assert_eq!(callbacks.len(), 1, "one callback: {callbacks:?}");
    let urgent_callback = callbacks[0].headers["webhook-id"].clone();
    let callback_job = stack.get(&urgent_callback).await;
    assert_eq!(callback_job["priority"], "high", "{callback_job}");
    assert_eq!(
        between(&callback_job["created_at"], &callback_job["deadline"]),
        HIGH_DEFAULT_TTL,
        "{callback_job}"
    );
    // The job's two attempts and the replayed message; the callback's one delivery.
    for (job, deliveries) in [(&urgent, 3), (&urgent_callback, 1)] {
        assert_eq!(
            stack.delivered_to(job),
            vec![high.function.clone(); deliveries],
            "job {job} ran in the high lane only"
        );
    }
    let said_high = stack
        .function(&high.function)
        .output()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .any(|line| line["job_id"] == urgent.as_str() && line["message"] == "recorded");
    assert!(said_high, "{} recorded the high job", high.function);

    // Each function sent its hot DynamoDB and SQS calls through the direct client, signed with
    // its role's credentials, which the proxy checked against the role's policy.
    for (logical_id, function) in &stack.functions {
        let direct = function
            .output()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .any(|line| line["message"] == "hot DynamoDB and SQS calls through the direct client");
        assert!(direct, "{logical_id} did not use the direct client");
    }

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

    // A batch through its own route: its messages sent with SendMessageBatch to each job's lane,
    // its jobs written in one transaction, the job the stack does not run refused alone.
    let webhook = json!({"kind": "webhook", "payload": {"url": stack.receiver.url("/batch")}});
    let mut high = webhook.clone();
    high["priority"] = json!("high");
    let batch = json!({"jobs": [webhook, high, {"kind": "echo", "payload": 1}]});
    let answer = stack.post_to("/jobs/batch", &batch, &[]).await;
    assert_eq!(answer.status, 200, "{answer}");
    let results = answer.json()["results"].clone();
    assert_eq!(results[2]["status"], 422, "{results}");
    for result in &results.as_array().unwrap()[..2] {
        assert_eq!(result["status"], 202, "{result}");
        let id = result["body"]["id"].as_str().unwrap();
        stack.run_until(id, "succeeded").await;
    }
    stack
        .receiver
        .wait_for_deliveries("/batch", 2, Duration::from_secs(5))
        .await;

    // A long poll answers when its time is up.
    let waited = stack
        .call("GET", &format!("/jobs/{cancelled}?wait=1"))
        .await;
    assert_eq!(waited.status, 200, "{waited}");

    // A request body at the template's payload limit: through the API, the work queue as the
    // template sizes it and the consumer, to the receiver whole.
    let url = stack.receiver.url("/large");
    let job = |body: &str| json!({"kind": "webhook", "payload": {"url": url, "body": body}});
    let body = "x".repeat(MAX_PAYLOAD_LIMIT - job("").to_string().len());
    let large = stack.accept(&job(&body)).await;
    stack.run_until(&large, "succeeded").await;
    let delivered = stack
        .receiver
        .wait_for_deliveries("/large", 1, Duration::from_secs(5))
        .await;
    assert!(delivered[0].verified, "{:?}", delivered[0].verify_error);
    assert!(delivered[0].body == body, "the body arrived changed");

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

    for mapping in &stack.mappings {
        let consumer = stack.function(&mapping.function);
        // A record whose body is no job message is reported failed, to reach the DLQ.
        let message_id = "4f1a1c2e-0d3b-4c6a-9e8f-7a6b5c4d3e2f";
        let event = serde_json::to_value(esm::sqs_event(
            &[spillway_core::queue::ReceivedMessage {
                message_id: message_id.to_owned(),
                receipt_handle: "a-receipt-handle-of-a-message-never-sent".to_owned(),
                body: "\u{1f}garbage, not a job message".to_owned(),
                receive_count: 1,
                sent_at: Timestamp::from_system_time(std::time::SystemTime::now()),
            }],
            &mapping.esm.queue_arn,
            &mapping.esm.region,
        ))
        .unwrap();
        let batch = consumer.invoke_ok(&event).await;
        assert_eq!(
            batch,
            json!({"batchItemFailures": [{"itemIdentifier": message_id}]}),
            "{}",
            mapping.function
        );

        // An event that is no SQS event fails the invocation, and the runtime says why.
        let error = consumer.invoke(&json!({"hello": 1})).await.unwrap_err();
        assert!(
            error.contains("deserialize") && error.contains("Records"),
            "the runtime names what it could not read: {error}"
        );
    }

    let sdk = spillway_tests::sdk_config().await;
    let items = aws_sdk_dynamodb::Client::new(&sdk)
        .scan()
        .table_name(stack.manifest().output("TableName"))
        .send()
        .await
        .unwrap();
    assert_eq!(items.count, 0, "no job was written");
    for mapping in &stack.mappings {
        assert_eq!(
            mapping.esm.queue.depth().await.unwrap().total(),
            0,
            "nothing was enqueued on {}",
            mapping.queue_url
        );
    }
    no_call_was_denied(&stack.proxy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_log_line_about_a_job_carries_its_correlation_id_in_every_function() {
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
    let log: String = stack
        .functions
        .values()
        .map(LambdaFunction::output)
        .collect();
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
        .request_without_identity("GET", &format!("/jobs/{id}"))
        .await;
    assert_eq!(someone_else.status, 200, "{someone_else}");
    let cancelled = stack
        .gateway()
        .request_without_identity("DELETE", &format!("/jobs/{id}"))
        .await;
    assert_eq!(cancelled.status, 200, "{cancelled}");
    no_call_was_denied(&stack.proxy);
}

/// The items of the stack's table and the messages of its normal lane's queue.
async fn footprint(stack: &Stack) -> (usize, u64) {
    let sdk = spillway_tests::sdk_config().await;
    let items = spillway_tests::job_statuses(
        &aws_sdk_dynamodb::Client::new(&sdk),
        stack.manifest().output("TableName"),
    )
    .await
    .len();
    let attributes = aws_sdk_sqs::Client::new(&sdk)
        .get_queue_attributes()
        .queue_url(stack.manifest().output("QueueUrl"))
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap_or_default();
    let messages = attributes
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("ApproximateNumberOfMessages"))
        .map(|(_, value)| value.parse::<u64>().unwrap())
        .sum();
    (items, messages)
}

/// Callers are mutually hostile: through the deployed functions and their roles (the index and
/// intake's `Query` on it come from the template), a caller at its limit of active jobs is
/// answered `429` with nothing written or sent, its key's repeat still replays, another caller is
/// held only to its own count, and the first has room again once its jobs end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_at_its_limit_of_active_jobs_is_refused_and_no_other_caller_is() {
    let stack = Stack::deploy(&[("MaxActiveJobsPerOwner", "2")], iam_user).await;
    let bob = iam_user(stack.manifest(), "bob");
    let job = |path: &str| json!({"kind": "webhook", "payload": {"url": stack.receiver.url(path)}});
    let key = [("idempotency-key", "limit-first")];
    let first = stack.post(&job("/limit-1"), &key).await;
    assert_eq!(first.status, 202, "{first}");
    let first = first.json()["id"].as_str().unwrap().to_owned();
    let second = stack.accept(&job("/limit-2")).await;

    let before = footprint(&stack).await;
    let refused = stack
        .post(&job("/limit-3"), &[("idempotency-key", "limit-later")])
        .await;
    assert_eq!(refused.status, 429, "{refused}");
    assert_eq!(refused.headers["retry-after"], "5");
    assert_eq!(
        refused.json()["type"],
        "urn:spillway:problem:too-many-active-jobs"
    );
    let replayed = stack.post(&job("/limit-1"), &key).await;
    assert_eq!(replayed.status, 202, "{replayed}");
    assert_eq!(replayed.json()["id"], first.as_str());
    let batch = stack
        .post_to("/jobs/batch", &json!({"jobs": [job("/limit-4")]}), &[])
        .await;
    assert_eq!(batch.status, 200, "{batch}");
    assert_eq!(batch.json()["results"][0]["status"], 429, "{batch}");
    assert_eq!(
        footprint(&stack).await,
        before,
        "a refused job was written or sent"
    );

    // Another caller, scheduled an hour ahead (so nothing delivers its jobs): a batch of three
    // gets two in, the third refused.
    let later = |path: &str| json!({"kind": "webhook", "payload": {"url": stack.receiver.url(path)}, "delay_seconds": 3600});
    let body = json!({"jobs": [later("/bob-1"), later("/bob-2"), later("/bob-3")]}).to_string();
    let bobs = stack
        .gateway()
        .request(
            &bob,
            "POST",
            "/jobs/batch",
            &[("content-type", "application/json")],
            Some(&body),
        )
        .await;
    assert_eq!(bobs.status, 200, "{bobs}");
    let statuses: Vec<Value> = bobs.json()["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|result| result["status"].clone())
        .collect();
    assert_eq!(statuses, [json!(202), json!(202), json!(429)], "{bobs}");

    // The first caller's jobs end, one cancelled, one delivered: it has room again.
    let cancelled = stack.call("DELETE", &format!("/jobs/{second}")).await;
    assert_eq!(cancelled.status, 200, "{cancelled}");
    stack.run_until(&first, "succeeded").await;
    let again = stack
        .post(&job("/limit-3"), &[("idempotency-key", "limit-later")])
        .await;
    assert_eq!(again.status, 202, "{again}");
    no_call_was_denied(&stack.proxy);
}
