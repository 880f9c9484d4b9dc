//! `spillway queue stats` and `spillway jobs get` against DynamoDB and SQS at the emulator, with
//! the resources named by flags or by a CloudFormation stack's outputs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Output;
use std::time::Duration;

use http::HeaderValue;
use serde_json::{Value, json};
use spillway_core::api;
use spillway_core::domain::{JobId, Owner};
use spillway_core::kinds;
use spillway_tests::Stack;
use tokio::process::Command;

async fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spillway"))
        .args(args)
        .args(["--endpoint-url", &spillway_tests::endpoint()])
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
    assert_eq!(
        stats[0]["oldest_message_age_seconds"],
        Value::Null,
        "the emulator publishes no SQS metrics to CloudWatch"
    );

    args.retain(|a| *a != "--json");
    let table = stdout(&run(&args).await);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("QUEUE"), "{table}");
    assert!(
        lines[1].starts_with("work") && lines[1].contains("n/a"),
        "{table}"
    );
    assert!(lines[2].starts_with("dead-letter"), "{table}");
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
