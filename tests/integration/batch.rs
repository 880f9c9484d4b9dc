//! `POST /jobs/batch` on the real adapters: SQS's `SendMessageBatch` across both lanes and
//! DynamoDB's transactions, holding exactly the jobs the answer accepted.

use std::collections::HashSet;
use std::time::Duration;

use http::StatusCode;
use serde_json::{Value, json};
use spillway_core::api;
use spillway_core::domain::{JobMessage, Owner};
use spillway_core::kinds;
use spillway_core::testing::json_headers;
use spillway_tests::Stack;

#[tokio::test]
async fn a_hundred_jobs_with_three_invalid_accept_ninety_seven_and_the_table_and_queues_hold_them()
{
    let stack = Stack::create(3, Duration::from_secs(30)).await;
    let app = stack.app(stack.settings(), kinds::builtin());
    let invalid = [7, 42, 93];
    let jobs: Vec<Value> = (0..100)
        .map(|n| match n {
            7 => json!({"kind": "no-such-kind", "payload": n}),
            42 => json!({"kind": "echo", "payload": n, "priority": "urgent"}),
            93 => json!({"kind": "sleep", "payload": {"ms": -1}}),
            // Some with keys (the single create path), some in the high lane.
            n if n % 10 == 0 => {
                json!({"kind": "echo", "payload": n, "idempotency_key": format!("batch-{n}")})
            }
            n if n % 3 == 0 => json!({"kind": "echo", "payload": n, "priority": "high"}),
            n => json!({"kind": "echo", "payload": n}),
        })
        .collect();
    let body = json!({ "jobs": jobs }).to_string();
    let response =
        api::submit_batch(&app, Owner::anonymous(), &json_headers(), body.as_bytes()).await;
    assert_eq!(response.status(), StatusCode::OK, "{}", response.body());
    let answer: Value = serde_json::from_str(response.body()).unwrap();
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.len(), 100);
    let mut accepted = HashSet::new();
    for (index, result) in results.iter().enumerate() {
        assert_eq!(result["index"], index);
        if invalid.contains(&index) {
            assert!(
                [400, 422].contains(&result["status"].as_u64().unwrap()),
                "{result}"
            );
            assert!(result["problem"]["type"].is_string(), "{result}");
        } else {
            assert_eq!(result["status"], 202, "{result}");
            accepted.insert(result["body"]["id"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(accepted.len(), 97);

    let written: HashSet<String> = stack
        .job_statuses()
        .await
        .into_iter()
        .map(|(id, status)| {
            assert_eq!(status, "pending");
            id
        })
        .collect();
    assert_eq!(
        written, accepted,
        "the table holds exactly the accepted jobs"
    );

    let mut sent = Vec::new();
    for (lane, queue) in stack.queues().iter() {
        loop {
            let messages = queue.receive(10, Duration::from_secs(1)).await.unwrap();
            if messages.is_empty() {
                break;
            }
            for message in messages {
                let decoded = JobMessage::decode(&message.body).unwrap();
                assert_eq!(decoded.priority(), lane, "each message in its job's lane");
                sent.push(decoded.job_id.to_string());
            }
        }
    }
    assert_eq!(sent.len(), 97, "one message per accepted job");
    assert_eq!(sent.into_iter().collect::<HashSet<_>>(), accepted);
}
