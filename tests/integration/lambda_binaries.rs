//! The three Lambda binaries under cargo-lambda's runtime emulator, fed the events API Gateway
//! (HTTP API, payload v2) and SQS send, as `sam local generate-event` prints them
//! (`tests/events/`), against the AWS emulator.

use std::time::Duration;

use serde_json::{Value, json};
use spillway_tests::Stack;
use spillway_tests::emulator::Emulator;

fn fixture(name: &str) -> Value {
    let path = format!("{}/events/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

fn post_jobs(body: &str) -> Value {
    let mut event = fixture("http-api-post-jobs.json");
    event["body"] = json!(body);
    event
}

fn get_job(id: &str) -> Value {
    let mut event = fixture("http-api-get-job.json");
    let path = format!("/jobs/{id}");
    event["rawPath"] = json!(path);
    event["requestContext"]["http"]["path"] = json!(path);
    event["pathParameters"]["id"] = json!(id);
    event
}

/// One SQS record as the event source mapping delivers it for a message of `queue_arn`.
fn sqs_event(
    queue_arn: &str,
    message_id: &str,
    receipt_handle: &str,
    body: &str,
    receive_count: u32,
) -> Value {
    let mut event = fixture("sqs-receive-message.json");
    let record = &mut event["Records"][0];
    record["messageId"] = json!(message_id);
    record["receiptHandle"] = json!(receipt_handle);
    record["body"] = json!(body);
    record["attributes"]["ApproximateReceiveCount"] = json!(receive_count.to_string());
    record["eventSourceARN"] = json!(queue_arn);
    event
}

/// The body of an API Gateway v2 response, which carries it as a string.
fn body(response: &Value) -> Value {
    let text = response["body"].as_str().unwrap_or_else(|| {
        panic!("an API Gateway response has a string body: {response}");
    });
    serde_json::from_str(text).unwrap_or_else(|e| panic!("a JSON body ({e}): {text}"))
}

/// Receives the one message intake enqueued, hands it to the consumer function as the event
/// source mapping would, checks it was handled and deletes it (as the mapping does with what the
/// batch response does not list). Returns its message id.
async fn consume_one(lambda: &Emulator, stack: &Stack) -> String {
    let mut received = stack
        .queue()
        .receive(1, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(received.len(), 1, "intake enqueued the job");
    let message = received.remove(0);
    let batch = lambda
        .invoke_ok(
            "consumer",
            &sqs_event(
                &stack.queue_arn,
                &message.message_id,
                &message.receipt_handle,
                &message.body,
                message.receive_count,
            ),
        )
        .await;
    assert_eq!(
        batch,
        json!({"batchItemFailures": []}),
        "the consumer handled the record\n{}",
        lambda.log_tail()
    );
    stack.queue().delete(&message.receipt_handle).await.unwrap();
    message.message_id
}

#[tokio::test]
async fn the_lambda_binaries_carry_a_job_from_post_to_succeeded() {
    let stack = Stack::create(3, Duration::from_secs(30)).await;
    let lambda = Emulator::start(&stack).await;

    let accepted = lambda
        .invoke_ok(
            "intake",
            &post_jobs(r#"{"kind":"echo","payload":{"hello":"lambda"}}"#),
        )
        .await;
    assert_eq!(accepted["statusCode"], 202, "{accepted}");
    let id = body(&accepted)["id"].as_str().unwrap().to_owned();
    assert_eq!(accepted["headers"]["location"], format!("/jobs/{id}"));
    assert!(accepted["headers"]["retry-after"].is_string(), "{accepted}");

    consume_one(&lambda, &stack).await;

    let job = lambda.invoke_ok("status", &get_job(&id)).await;
    assert_eq!(job["statusCode"], 200, "{job}");
    assert_eq!(job["headers"]["cache-control"], "no-store", "{job}");
    let job = body(&job);
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["result"], json!({"hello": "lambda"}));
    assert_eq!(stack.queued_messages().await, 0);

    drop(lambda);
}

#[tokio::test]
async fn the_lambda_binaries_answer_malformed_input_with_clear_errors_and_change_nothing() {
    let stack = Stack::create(3, Duration::from_secs(30)).await;
    let lambda = Emulator::start(&stack).await;

    let refused = lambda
        .invoke_ok("intake", &post_jobs("{this is not json"))
        .await;
    assert_eq!(refused["statusCode"], 400, "{refused}");
    assert_eq!(
        refused["headers"]["content-type"], "application/problem+json",
        "{refused}"
    );
    assert_eq!(body(&refused)["status"], 400);

    let refused = lambda.invoke_ok("status", &get_job("not-an-id")).await;
    assert_eq!(refused["statusCode"], 400, "{refused}");
    assert_eq!(
        refused["headers"]["content-type"], "application/problem+json",
        "{refused}"
    );

    let message_id = "4f1a1c2e-0d3b-4c6a-9e8f-7a6b5c4d3e2f";
    let garbage = sqs_event(
        &stack.queue_arn,
        message_id,
        "a-receipt-handle-of-a-message-never-sent",
        "\u{1f}garbage, not a job message",
        1,
    );
    let batch = lambda.invoke_ok("consumer", &garbage).await;
    assert_eq!(
        batch,
        json!({"batchItemFailures": [{"itemIdentifier": message_id}]}),
        "the undecodable record is left to reach the DLQ"
    );

    let error = lambda
        .invoke("consumer", &json!({"hello": 1}))
        .await
        .expect_err("an event that is not an SQS event fails the invocation");
    assert!(
        error.stderr.contains("deserialize") && error.stderr.contains("Records"),
        "the runtime names what it could not read: {}",
        error.stderr
    );

    assert_eq!(stack.item_count().await, 0, "no job was written");
    assert_eq!(stack.queued_messages().await, 0, "nothing was enqueued");

    drop(lambda);
}

#[tokio::test]
async fn every_log_line_about_a_job_carries_its_correlation_id_in_all_three_functions() {
    let stack = Stack::create(3, Duration::from_secs(30)).await;
    let lambda = Emulator::start_with(&stack, &[("AWS_LAMBDA_LOG_FORMAT", "JSON")]).await;
    let correlation_id = "checkout-7f3a/42";

    let mut event = post_jobs(r#"{"kind":"echo","payload":{"n":1}}"#);
    event["headers"]["x-correlation-id"] = json!(correlation_id);
    let accepted = lambda.invoke_ok("intake", &event).await;
    assert_eq!(accepted["statusCode"], 202, "{accepted}");
    assert_eq!(accepted["headers"]["x-correlation-id"], correlation_id);
    let id = body(&accepted)["id"].as_str().unwrap().to_owned();

    let message_id = consume_one(&lambda, &stack).await;
    let job = lambda.invoke_ok("status", &get_job(&id)).await;
    assert_eq!(job["headers"]["x-correlation-id"], correlation_id, "{job}");

    // A generated id when the caller sends none, returned to it.
    let other = lambda
        .invoke_ok("intake", &post_jobs(r#"{"kind":"echo","payload":{}}"#))
        .await;
    let generated = other["headers"]["x-correlation-id"].as_str().unwrap();
    assert!(!generated.is_empty() && generated != correlation_id);

    let log = lambda.log();
    let lines: Vec<Value> = log
        .lines()
        .filter_map(|line| {
            line.find('{')
                .and_then(|at| serde_json::from_str(&line[at..]).ok())
        })
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
    assert_eq!(claimed["message_id"], message_id.as_str());
    assert_eq!(claimed["attempt"], 1);
    assert!(said("recorded").is_some(), "{log}");
    assert!(
        said("read").is_some(),
        "the status function's line is missing:\n{log}"
    );

    drop(lambda);
}
