//! This crate's binaries deployed with Spillway's template: the stack as `sam build` makes it
//! (run by the test command), its intake and both consumers started from this crate's
//! `word-count-intake` and `word-count-consumer` instead, each with exactly the environment and
//! role the template gives it (`spillway_tests::deployed`). A `word-count` job goes in through
//! the API, the event source mapping delivers it to this crate's consumer, and its result comes
//! back through Spillway's own status function.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use serde_json::json;
use spillway_tests::deployed::{Stack, iam_user};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_word_count_job_runs_through_the_deployed_stack_on_this_crates_binaries() {
    let stack = Stack::deploy_with_binaries(
        &[],
        iam_user,
        &[
            ("intake", Path::new(env!("CARGO_BIN_EXE_word-count-intake"))),
            (
                "consumer",
                Path::new(env!("CARGO_BIN_EXE_word-count-consumer")),
            ),
        ],
    )
    .await;
    let job = json!({"kind": "word-count", "payload": {"text": "to be\nor not to be"}});

    let id = stack.accept(&job).await;
    let done = stack.run_until(&id, "succeeded").await;
    assert_eq!(
        done["result"],
        json!({"words": 6, "lines": 2, "characters": 18}),
        "{done}"
    );
    assert_eq!(stack.delivered_to(&id), ["ConsumerFunction"]);

    // This crate's intake checks the payload with the processor's own `validate`...
    let refused = stack
        .post(&json!({"kind": "word-count", "payload": {"txt": "a"}}), &[])
        .await;
    assert_eq!(refused.status, 400, "{refused}");
    assert!(refused.body.contains(r#"expected {\"text\""#), "{refused}");

    // ...and Spillway's own, as `sam build` made it, would have refused the kind itself.
    let stock = stack.start_as_built("IntakeFunction").await;
    let response = stack
        .gateway_with(&stock)
        .request(
            &stack.caller,
            "POST",
            "/jobs",
            &[("content-type", "application/json")],
            Some(&job.to_string()),
        )
        .await;
    assert_eq!(response.status, 422, "{response}");
    assert!(
        response
            .body
            .contains("no processor is registered for kind `word-count`; known kinds: webhook"),
        "{response}"
    );
}
