//! `spillway dlq list` and `spillway dlq redrive` against DynamoDB and SQS at the emulator.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use serde_json::{Value, json};
use spillway_core::api;
use spillway_core::domain::{JobId, Owner, Priority};
use spillway_core::kinds;
use spillway_core::testing::{Behaviour, Counting, processors_with, submit};
use spillway_tests::Stack;
use tokio::process::Command;

async fn spillway(stack: &Stack, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_spillway"))
        .args(args)
        .args([
            "--endpoint-url",
            &spillway_tests::endpoint(),
            "--table",
            &stack.table,
        ])
        .args(["--queue-url", &stack.queue_url, "--dlq-url", &stack.dlq_url])
        .args(["--high-queue-url", &stack.high_queue_url])
        .args(["--high-dlq-url", &stack.high_dlq_url])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "spillway {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

async fn status(stack: &Stack, id: JobId) -> String {
    let app = stack.app(stack.settings(), kinds::builtin());
    let response = api::get_job(&app, &Owner::anonymous(), &id.to_string(), None).await;
    serde_json::from_str::<Value>(response.body()).unwrap()["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Submits `count` jobs whose processor always fails and runs them until SQS has moved their
/// messages to the DLQ.
async fn dead_letter(stack: &Stack, count: usize) -> Vec<JobId> {
    dead_letter_in(stack, Priority::Normal, count).await
}

/// [`dead_letter`] in `lane`: the jobs ask for its priority, and its queue's mapping runs them
/// until SQS has moved their messages to its DLQ.
async fn dead_letter_in(stack: &Stack, lane: Priority, count: usize) -> Vec<JobId> {
    let failing = stack.app(
        stack.settings(),
        processors_with(&Counting::new(Behaviour::FailRetryable)),
    );
    let mut ids = Vec::new();
    for n in 0..count {
        let body = json!({"kind": "counting", "payload": n, "priority": lane.as_str()});
        ids.push(submit(&failing, body).await);
    }
    let esm = stack.lane_esm(lane);
    for _ in 0..20 {
        if esm
            .poll_once(&failing, Duration::from_secs(1))
            .await
            .unwrap()
            .is_none()
            && esm.queue.depth().await.unwrap().total() == 0
        {
            break;
        }
    }
    for id in &ids {
        assert_eq!(status(stack, *id).await, "dead_lettered");
    }
    ids
}

#[tokio::test]
async fn dlq_list_shows_the_dead_lettered_jobs_and_redrive_runs_one_again() {
    let stack = Stack::create(2, Duration::from_secs(30)).await;
    let ids = dead_letter(&stack, 2).await;

    let listing = spillway(&stack, &["dlq", "list"]).await;
    for id in &ids {
        assert!(listing.contains(&id.to_string()), "{listing}");
    }
    assert_eq!(listing.lines().last(), Some("2 message(s)"), "{listing}");
    assert_eq!(
        spillway(&stack, &["dlq", "list"]).await.lines().count(),
        listing.lines().count(),
        "listing moved nothing"
    );

    let redrive = spillway(&stack, &["dlq", "redrive", "--job", &ids[0].to_string()]).await;
    assert!(redrive.contains("moved 1 message(s)"), "{redrive}");
    assert_eq!(status(&stack, ids[0]).await, "pending");
    assert_eq!(status(&stack, ids[1]).await, "dead_lettered");

    let counting = Counting::new(Behaviour::Succeed);
    let healed = stack.app(stack.settings(), processors_with(&counting));
    stack
        .esm()
        .poll_once(&healed, Duration::from_secs(5))
        .await
        .unwrap()
        .expect("the redriven message");
    assert_eq!(status(&stack, ids[0]).await, "succeeded");
    assert_eq!(counting.runs(ids[0]), 1);

    let rest = spillway(&stack, &["dlq", "redrive"]).await;
    assert!(rest.contains("moved 1 message(s)"), "{rest}");
    let empty = spillway(&stack, &["dlq", "list"]).await;
    let lines: Vec<&str> = empty.lines().collect();
    assert_eq!(lines.len(), 2, "a header and the count only: {empty}");
    assert!(lines[0].starts_with("MESSAGE ID"), "{empty}");
    assert_eq!(lines[1], "0 message(s)", "{empty}");
}

#[tokio::test]
async fn each_lane_has_its_own_dead_letters_and_a_redrive_sends_them_back_to_that_lane() {
    let stack = Stack::create(2, Duration::from_secs(30)).await;
    let id = dead_letter_in(&stack, Priority::High, 1).await[0];
    assert_eq!(stack.dlq().depth().await.unwrap().total(), 0);

    let high_listing = spillway(&stack, &["dlq", "list", "--priority", "high"]).await;
    assert!(high_listing.contains(&id.to_string()), "{high_listing}");
    assert_eq!(high_listing.lines().last(), Some("1 message(s)"));
    let normal_listing = spillway(&stack, &["dlq", "list"]).await;
    assert_eq!(normal_listing.lines().last(), Some("0 message(s)"));

    let redrive = spillway(&stack, &["dlq", "redrive", "--priority", "high"]).await;
    assert!(redrive.contains("moved 1 message(s)"), "{redrive}");
    assert!(redrive.contains(&stack.high_queue_url), "{redrive}");
    assert_eq!(status(&stack, id).await, "pending");
    assert_eq!(
        stack.queued_messages().await,
        0,
        "nothing went to the normal lane"
    );
    let stats: Value = serde_json::from_str(
        &spillway(&stack, &["queue", "stats", "--json", "--priority", "high"]).await,
    )
    .unwrap();
    assert_eq!(stats[0]["url"], stack.high_queue_url.as_str());
    assert_eq!(stats[0]["visible"], 1, "back in its own lane: {stats}");
    assert_eq!(stats[1]["url"], stack.high_dlq_url.as_str());
    assert_eq!(stats[1]["visible"], 0, "{stats}");

    let counting = Counting::new(Behaviour::Succeed);
    let healed = stack.app(stack.settings(), processors_with(&counting));
    stack
        .lane_esm(Priority::High)
        .poll_once(&healed, Duration::from_secs(5))
        .await
        .unwrap()
        .expect("the redriven message, in the high lane");
    assert_eq!(status(&stack, id).await, "succeeded");
}
