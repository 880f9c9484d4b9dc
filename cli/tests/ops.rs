//! `spillway queue stats` and `spillway jobs get` against DynamoDB and SQS at the emulator (and a
//! stand-in for CloudWatch), with the resources named by flags or by a CloudFormation stack's
//! outputs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use serde_json::{Value, json};
use spillway_core::api;
use spillway_core::domain::{JobId, Owner};
use spillway_core::kinds;
use spillway_tests::Stack;
use spillway_tests::upstream::Upstream;
use tokio::process::Command;

async fn run(args: &[&str]) -> Output {
    run_at(&spillway_tests::endpoint(), args).await
}

async fn run_at(endpoint: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spillway"))
        .args(args)
        .args(["--endpoint-url", endpoint])
        .output()
        .await
        .unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "spillway failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn resources(stack: &Stack) -> Vec<&str> {
    vec![
        "--table",
        &stack.table,
        "--queue-url",
        &stack.queue_url,
        "--dlq-url",
        &stack.dlq_url,
    ]
}

#[tokio::test]
async fn queue_stats_counts_visible_in_flight_and_dead_lettered_messages() {
    let stack = Stack::create(3, Duration::from_secs(30)).await;
    let queue = stack.queue();
    for n in 0..3 {
        queue.send(&format!("{{\"n\": {n}}}")).await.unwrap();
    }
    let held = queue.receive(1, Duration::from_secs(5)).await.unwrap();
    assert_eq!(held.len(), 1);
    stack.dlq().send("{\"dead\": true}").await.unwrap();

    let mut args = vec!["queue", "stats", "--json"];
    args.extend(resources(&stack));
    let stats: Value = serde_json::from_str(&stdout(&run(&args).await)).unwrap();
    assert_eq!(stats[0]["queue"], "work");
    assert_eq!(
        (
            &stats[0]["visible"],
            &stats[0]["in_flight"],
            &stats[0]["delayed"]
        ),
        (&json!(2), &json!(1), &json!(0)),
        "{stats}"
    );
    assert_eq!(stats[1]["queue"], "dead-letter");
    assert_eq!(stats[1]["visible"], 1, "{stats}");
    // The age of the oldest message comes from CloudWatch, which the emulator may not serve:
    // `queue_stats_tells_an_age_no_data_and_a_cloudwatch_error_apart` checks it.

    args.retain(|a| *a != "--json");
    let table = stdout(&run(&args).await);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("QUEUE"), "{table}");
    assert!(lines[1].starts_with("work "), "{table}");
    assert!(lines[2].starts_with("dead-letter "), "{table}");
}

/// What CloudWatch answers about one queue's oldest message.
#[derive(Debug, Clone, Copy)]
enum Age {
    /// A datapoint of this many seconds.
    Seconds(f64),
    /// No datapoint in the period asked about.
    NoData,
    /// The caller may not call `GetMetricData`.
    Denied,
}

/// The answers, by queue name.
type Ages = Arc<Mutex<HashMap<String, Age>>>;

#[derive(Debug, Clone)]
struct Front {
    upstream: Upstream,
    ages: Ages,
}

/// An endpoint on loopback that forwards every request to the emulator except CloudWatch's
/// `GetMetricData`, which moto does not serve in the Smithy RPC v2 CBOR protocol the SDK speaks:
/// that one it answers itself, for the queue the query names, as `ages` says.
async fn cloudwatch_in_front(ages: Ages) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let front = Front {
        upstream: Upstream::new(&spillway_tests::endpoint()),
        ages,
    };
    let app = axum::Router::new().fallback(answer).with_state(front);
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}")
}

async fn answer(
    State(front): State<Front>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if uri.path() != "/service/GraniteServiceVersion20100801/operation/GetMetricData" {
        return front.upstream.forward(method, &uri, &headers, body).await;
    }
    // CBOR text strings are their UTF-8 bytes after a length: a name is found whole or not at all.
    let asks = |text: &str| {
        let encoded = cbor_text(text);
        body.windows(encoded.len()).any(|w| w == encoded)
    };
    let queue = front
        .ages
        .lock()
        .unwrap()
        .iter()
        .find(|(queue, _)| asks(queue))
        .map(|(queue, age)| (queue.clone(), *age));
    let Some((queue, age)) = queue.filter(|_| {
        [
            "AWS/SQS",
            "ApproximateAgeOfOldestMessage",
            "QueueName",
            "Maximum",
        ]
        .iter()
        .all(|text| asks(text))
    }) else {
        return cbor(
            StatusCode::BAD_REQUEST,
            &[
                ("__type", "ValidationError"),
                ("message", "not a query this test expects"),
            ],
            None,
        );
    };
    let mut result = vec![];
    cbor_head(&mut result, 5, 3);
    result.extend(cbor_text("Id"));
    result.extend(cbor_text("age"));
    result.extend(cbor_text("StatusCode"));
    result.extend(cbor_text("Complete"));
    result.extend(cbor_text("Values"));
    match age {
        Age::Seconds(seconds) => {
            cbor_head(&mut result, 4, 1);
            result.push(0xfb);
            result.extend(seconds.to_be_bytes());
        }
        Age::NoData => cbor_head(&mut result, 4, 0),
        Age::Denied => {
            let message = format!(
                "User: arn:aws:iam::123456789012:user/ops is not authorized to perform: \
                 cloudwatch:GetMetricData (asked about {queue})"
            );
            return cbor(
                StatusCode::FORBIDDEN,
                &[("__type", "AccessDenied"), ("message", &message)],
                Some("AccessDenied;Sender"),
            );
        }
    }
    let mut document = vec![];
    cbor_head(&mut document, 5, 1);
    document.extend(cbor_text("MetricDataResults"));
    cbor_head(&mut document, 4, 1);
    document.extend(result);
    (
        [
            ("content-type", "application/cbor"),
            ("smithy-protocol", "rpc-v2-cbor"),
        ],
        document,
    )
        .into_response()
}

/// A CBOR head: major type and length (short lengths only).
fn cbor_head(out: &mut Vec<u8>, major: u8, len: usize) {
    assert!(len < 256, "a long CBOR item");
    if len < 24 {
        out.push(major << 5 | len as u8);
    } else {
        out.extend([major << 5 | 24, len as u8]);
    }
}

/// A CBOR text string.
fn cbor_text(text: &str) -> Vec<u8> {
    let mut out = vec![];
    cbor_head(&mut out, 3, text.len());
    out.extend(text.as_bytes());
    out
}

/// An error as Smithy RPC v2 CBOR sends it, a map of strings.
fn cbor(status: StatusCode, fields: &[(&str, &str)], query_error: Option<&str>) -> Response {
    let mut body = vec![];
    cbor_head(&mut body, 5, fields.len());
    for (key, value) in fields {
        body.extend(cbor_text(key));
        cbor_head(&mut body, 3, value.len());
        body.extend(value.as_bytes());
    }
    let mut response = (
        status,
        [
            ("content-type", "application/cbor"),
            ("smithy-protocol", "rpc-v2-cbor"),
        ],
        body,
    )
        .into_response();
    if let Some(query_error) = query_error {
        response
            .headers_mut()
            .insert("x-amzn-query-error", query_error.parse().unwrap());
    }
    response
}

/// The OLDEST MESSAGE cell of a `queue stats` table row: its last 15 characters.
fn age_cell(row: &str) -> &str {
    row[row.len().saturating_sub(15)..].trim()
}

#[tokio::test]
async fn queue_stats_tells_an_age_no_data_and_a_cloudwatch_error_apart() {
    let stack = Stack::create(3, Duration::from_secs(30)).await;
    let name = |url: &str| url.rsplit('/').next().unwrap().to_owned();
    let (work, dead) = (name(&stack.queue_url), name(&stack.dlq_url));
    let ages: Ages = Arc::default();
    let endpoint = cloudwatch_in_front(ages.clone()).await;
    let mut json_args = vec!["queue", "stats", "--json"];
    json_args.extend(resources(&stack));
    let table_args: Vec<&str> = json_args
        .iter()
        .copied()
        .filter(|a| *a != "--json")
        .collect();
    let warning = |queue: &str| format!("no age of the oldest message in {queue}: ");

    // No data for the work queue; the dead-letter queue's age may not be read.
    *ages.lock().unwrap() =
        HashMap::from([(work.clone(), Age::NoData), (dead.clone(), Age::Denied)]);
    let output = run_at(&endpoint, &json_args).await;
    let stats: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stats[0]["oldest_message_age_seconds"],
        Value::Null,
        "{stats}"
    );
    assert_eq!(
        stats[0].get("oldest_message_age_error"),
        None,
        "no data is no error: {stats}"
    );
    assert!(!stderr.contains(&warning(&work)), "{stderr}");
    assert_eq!(
        stats[1]["oldest_message_age_seconds"],
        Value::Null,
        "{stats}"
    );
    let error = stats[1]["oldest_message_age_error"]
        .as_str()
        .unwrap_or_else(|| panic!("the error is reported: {stats}"));
    assert!(
        error.starts_with("HTTP 403: ") && error.contains("AccessDenied"),
        "{error}"
    );
    assert!(
        stderr.contains(&format!(
            "{}CloudWatch at {endpoint}: {error}",
            warning(&dead)
        )),
        "{stderr}"
    );
    let table = stdout(&run_at(&endpoint, &table_args).await);
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(
        (age_cell(rows[1]), age_cell(rows[2])),
        ("n/a", "error"),
        "{table}"
    );

    // An age for the work queue, no data for the dead-letter queue.
    *ages.lock().unwrap() = HashMap::from([
        (work.clone(), Age::Seconds(125.0)),
        (dead.clone(), Age::NoData),
    ]);
    let output = run_at(&endpoint, &json_args).await;
    let stats: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(stats[0]["oldest_message_age_seconds"], 125.0, "{stats}");
    assert_eq!(
        stats[1]["oldest_message_age_seconds"],
        Value::Null,
        "{stats}"
    );
    for queue in [&stats[0], &stats[1]] {
        assert_eq!(queue.get("oldest_message_age_error"), None, "{stats}");
    }
    assert!(
        output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let table = stdout(&run_at(&endpoint, &table_args).await);
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(
        (age_cell(rows[1]), age_cell(rows[2])),
        ("2m 5s", "n/a"),
        "{table}"
    );
}

#[tokio::test]
async fn jobs_get_shows_the_stored_job_and_names_a_missing_one() {
    let stack = Stack::create(3, Duration::from_secs(30)).await;
    let app = stack.app(stack.settings(), kinds::builtin());
    let mut headers = spillway_core::testing::json_headers();
    headers.insert("x-correlation-id", HeaderValue::from_static("ops-test-1"));
    let response = api::submit_job(
        &app,
        Owner::anonymous(),
        &headers,
        br#"{"kind": "echo", "payload": {"a": 1}, "callback_url": "https://hooks.example.com/x"}"#,
    )
    .await;
    let accepted: Value = serde_json::from_str(response.body()).unwrap();
    let id = accepted["id"].as_str().unwrap();

    let mut args = vec!["jobs", "get", id, "--json"];
    args.extend(resources(&stack));
    let job: Value = serde_json::from_str(&stdout(&run(&args).await)).unwrap();
    assert_eq!(job["id"], id);
    assert_eq!(job["status"], "pending");
    assert_eq!(job["kind"], "echo");
    assert_eq!(job["owner"], "anonymous");
    assert_eq!(job["correlation_id"], "ops-test-1");
    assert_eq!(job["callback_url"], "https://hooks.example.com/x");
    assert_eq!(job["payload_size"], 8);

    args.retain(|a| *a != "--json");
    let text = stdout(&run(&args).await);
    assert!(
        text.lines()
            .any(|l| l.starts_with("status") && l.ends_with("pending")),
        "{text}"
    );

    let missing = JobId::generate().to_string();
    let mut args = vec!["jobs", "get", &missing];
    args.extend(resources(&stack));
    let output = run(&args).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("no job {missing}")), "{stderr}");

    let output = run(&["jobs", "get", "not-an-id"]).await;
    assert!(!output.status.success());
}

#[tokio::test]
async fn stack_outputs_name_the_table_and_queues() {
    let stack = Stack::create(3, Duration::from_secs(30)).await;
    stack.queue().send("{}").await.unwrap();
    let cloudformation = aws_sdk_cloudformation::Client::new(&stack.sdk);
    let name = spillway_tests::unique_name("spillway-stack");
    let template = json!({
        "Resources": {"Handle": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
        "Outputs": {
            "TableName": {"Value": stack.table},
            "QueueUrl": {"Value": stack.queue_url},
            "DeadLetterQueueUrl": {"Value": stack.dlq_url},
        }
    });
    cloudformation
        .create_stack()
        .stack_name(&name)
        .template_body(template.to_string())
        .send()
        .await
        .unwrap();

    let stats: Value = serde_json::from_str(&stdout(
        &run(&["queue", "stats", "--json", "--stack", &name]).await,
    ))
    .unwrap();
    assert_eq!(stats[0]["url"], stack.queue_url.as_str());
    assert_eq!(stats[0]["visible"], 1);

    // A stack deployed before the priority lanes has no high lane, and says so.
    let output = run(&["queue", "stats", "--stack", &name, "--priority", "high"]).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("has no output HighQueueUrl"), "{stderr}");

    let output = run(&["queue", "stats", "--stack", "no-such-stack"]).await;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("stack no-such-stack"));
    cloudformation
        .delete_stack()
        .stack_name(&name)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn webhooks_secret_prints_the_secret_an_owners_receivers_verify_with() {
    let sdk = spillway_tests::sdk_config().await;
    let stack_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let arn = aws_sdk_secretsmanager::Client::new(&sdk)
        .create_secret()
        .name(spillway_tests::unique_name("spillway-signing"))
        .secret_string(stack_secret)
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    let keys = spillway_core::webhook::SigningKeys::parse(stack_secret).unwrap();
    let role = "arn:aws:sts::123456789012:assumed-role/orders/session-1";
    let printed = stdout(&run(&["webhooks", "secret", "--secret-arn", &arn, "--iam", role]).await);
    assert_eq!(
        printed.lines().collect::<Vec<_>>(),
        keys.for_owner(&Owner::iam(role)).secrets(),
        "the role's own secret, the same for all its sessions"
    );
    let jwt = stdout(
        &run(&[
            "webhooks",
            "secret",
            "--secret-arn",
            &arn,
            "--jwt-issuer",
            "https://idp.example",
            "--jwt-subject",
            "alice",
        ])
        .await,
    );
    assert_eq!(
        jwt.trim(),
        keys.for_owner(&Owner::jwt("https://idp.example", "alice"))
            .secrets()[0]
    );
    assert_ne!(jwt, printed);
    let unnamed = run(&["webhooks", "secret", "--secret-arn", &arn]).await;
    assert!(!unnamed.status.success());
    assert!(
        String::from_utf8_lossy(&unnamed.stderr).contains("name the owner"),
        "{unnamed:?}"
    );
}
