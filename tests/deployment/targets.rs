//! Kinds declared in configuration (the template's `Kinds` and `LambdaTargetArns`), deployed: a
//! `lambda` kind invokes a real function (Python, under a Runtime API emulator, served at its ARN
//! by the AWS proxy after the consumer's `lambda:InvokeFunction` is checked against its role), and
//! what the function answers decides each job's outcome.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use spillway_tests::deployed::*;
use spillway_tests::target_function::PythonFunction;

/// moto's account: the functions' ARNs are named before the stack exists.
const ACCOUNT: &str = "123456789012";

fn function_arn(name: &str) -> String {
    format!("arn:aws:lambda:us-east-1:{ACCOUNT}:function:{name}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lambda_kind_runs_its_function_whose_answer_decides_the_outcome() {
    let resize = function_arn("spillway-test-resize");
    let kinds = json!({
        "resize": {"target": {"lambda": resize}, "max_attempts": 2, "ttl_seconds": 300},
        "thumbs": {"targets": {"small": {"lambda": resize},
                               "large": {"lambda": resize, "max_concurrency": 1}}}
    })
    .to_string();
    let stack = Stack::deploy(
        &[("Kinds", &kinds), ("LambdaTargetArns", &resize)],
        iam_user,
    )
    .await;
    assert_eq!(stack.manifest().account_id, ACCOUNT);
    let function = Arc::new(PythonFunction::start("targets.handler", Duration::from_secs(2)).await);
    stack.proxy.serve_function(&resize, function.clone());

    // Intake knows the declared kind, and names it among the known ones.
    let unknown = stack
        .post(&json!({"kind": "resise", "payload": {}}), &[])
        .await;
    assert_eq!(unknown.status, 422, "{unknown}");
    assert!(
        unknown.body.contains("resize, thumbs, webhook"),
        "{unknown}"
    );

    // What the function returns is the job's result; it was given the job as its event.
    let succeed = stack
        .post(
            &json!({"kind": "resize", "payload": {"act": "succeed", "image": "k.png"}}),
            &[("x-correlation-id", "req-resize-1")],
        )
        .await;
    assert_eq!(succeed.status, 202, "{succeed}");
    let id = succeed.json()["id"].as_str().unwrap().to_owned();
    let job = stack.run_until(&id, "succeeded").await;
    let event = &job["result"]["event"];
    assert_eq!(event["id"], id.as_str(), "{job}");
    assert_eq!(event["kind"], "resize");
    assert_eq!(event["payload"]["image"], "k.png");
    assert_eq!(event["attempt"], 1);
    assert_eq!(event["deadline"], job["deadline"]);
    assert_eq!(event["correlation_id"], "req-resize-1");
    // The kind's own TTL, not the stack's default.
    assert_eq!(
        between(&job["created_at"], &job["deadline"]),
        Duration::from_secs(300)
    );

    // The high lane's consumer invokes it too, with its own role.
    let urgent = stack
        .accept(&json!({"kind": "resize", "priority": "high", "payload": {"act": "succeed"}}))
        .await;
    let job = stack.run_until(&urgent, "succeeded").await;
    assert_eq!(job["result"]["event"]["id"], urgent.as_str(), "{job}");

    // An error the function raises is retried, and the job succeeds when the function does.
    let flaky = stack
        .accept(&json!({"kind": "resize", "payload": {"act": "fail_until", "attempt": 2}}))
        .await;
    let job = stack.run_until(&flaky, "succeeded").await;
    assert_eq!(job["attempts"], 2, "{job}");
    assert_eq!(job["result"], json!({"succeeded_on": 2}));

    // ...and dead-letters after the kind's attempts (2; the stack's are 2 as well, but the
    // kind's own are counted).
    let never = stack
        .accept(&json!({"kind": "resize", "payload": {"act": "fail_until", "attempt": 9}}))
        .await;
    let job = stack.run_until(&never, "dead_lettered").await;
    assert_eq!(job["attempts"], 2, "{job}");
    assert!(
        job["error"]
            .as_str()
            .unwrap()
            .contains("RuntimeError: the store is not ready on attempt 2"),
        "{job}"
    );

    // A PermanentError fails the job at once, with its message.
    let before = function.invocations();
    let bad = stack
        .accept(&json!({"kind": "resize", "payload": {"act": "permanent", "message": "not a PNG"}}))
        .await;
    let job = stack.run_until(&bad, "failed").await;
    assert_eq!(job["attempts"], 1, "{job}");
    assert_eq!(job["error"], "PermanentError: not a PNG", "{job}");
    assert_eq!(function.invocations(), before + 1, "no retry");

    // A function that runs past its own timeout is retried.
    let slow = stack
        .accept(&json!({
            "kind": "resize",
            "payload": {"act": "sleep_until", "attempt": 2, "seconds": 3}
        }))
        .await;
    let job = stack.run_until(&slow, "succeeded").await;
    assert_eq!(job["attempts"], 2, "{job}");
    assert_eq!(job["result"], json!({"woke_on": 2}));

    // A fan-out whose targets are both the function: each child invokes it with its own kind,
    // one refuses, and the parent lists it. `large` runs under a slot of its own kind.
    let fanout = stack
        .accept(
            &json!({"kind": "thumbs", "payload": {"act": "refuse_kind", "kind": "thumbs--large"}}),
        )
        .await;
    let parent = stack.run_until(&fanout, "failed").await;
    let failures = parent["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{parent}");
    assert_eq!(failures[0]["target"], "large", "{parent}");
    assert_eq!(
        failures[0]["error"],
        "PermanentError: thumbs--large refuses the job"
    );
    for child in parent["children"].as_array().unwrap() {
        let child = stack.get(child["id"].as_str().unwrap()).await;
        match child["target"].as_str().unwrap() {
            "small" => assert_eq!(child["result"], json!({"kind": "thumbs--small"}), "{child}"),
            _ => assert_eq!(child["status"], "failed", "{child}"),
        }
    }
    stack.drain().await;

    // Every invoke was a consumer's, allowed by its role's grant on this one function; each
    // lane's grant was used, and no other function was granted.
    no_call_was_denied(&stack.proxy);
    let invokes: Vec<_> = stack
        .proxy
        .calls()
        .into_iter()
        .filter(|call| call.action == "lambda:InvokeFunction")
        .collect();
    assert!(!invokes.is_empty());
    for call in &invokes {
        assert!(
            ["ConsumerRole", "HighConsumerRole"].contains(&call.role.as_str()),
            "{call:?}"
        );
        assert_eq!(call.resource, resize, "{call:?}");
    }
    let unused = unused_actions(stack.manifest(), &stack.proxy.calls());
    assert!(
        !unused.iter().any(|grant| grant.contains("lambda:")),
        "{unused:?}"
    );
}

/// A declaration the functions cannot use stops them at cold start, with an error that names
/// the variable and the problem; status, which reads no kinds, is unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kinds_document_the_functions_cannot_use_stops_them_at_cold_start() {
    let resize = function_arn("spillway-test-resize");
    let ungranted = json!({"resize": {"target": {"lambda": resize}}}).to_string();
    let shipped_name = json!({"webhook": {"target": {"lambda": resize}}}).to_string();
    for (kinds, granted, problem) in [
        ("{\"resize\": ", "", "expected a JSON object of kinds"),
        (
            ungranted.as_str(),
            "",
            "is not among the functions this stack may invoke",
        ),
        (
            shipped_name.as_str(),
            resize.as_str(),
            "the name of a kind Spillway ships",
        ),
    ] {
        let stack =
            Stack::deploy(&[("Kinds", kinds), ("LambdaTargetArns", granted)], iam_user).await;
        for logical_id in ["IntakeFunction", "ConsumerFunction", "HighConsumerFunction"] {
            let error = stack
                .function(logical_id)
                .invoke(&json!({"Records": []}))
                .await
                .unwrap_err();
            assert!(
                error.contains("SPILLWAY_KINDS") && error.contains(problem),
                "{logical_id} with Kinds={kinds}: {error}"
            );
        }
        let status = stack
            .call("GET", "/jobs/01890a5d-ac96-774b-bcce-b302099a8057")
            .await;
        assert_eq!(status.status, 404, "{status}");
    }
}
