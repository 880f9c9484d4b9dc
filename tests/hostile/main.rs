//! Hostile input through the deployed functions: a table of requests a hostile caller could send
//! (malformed and truncated JSON, duplicate keys, deep nesting, huge strings and numbers, wrong
//! and missing content types, bad ids and query values, oversized and odd headers, the Unicode
//! SQS refuses, bad callback and webhook URLs), each sent through API Gateway's routes to the
//! real Lambda binaries of a stack deployed from the template. Each must get its documented
//! status and a problem document that `docs/openapi.yaml` describes, and the table and the queues
//! must be exactly as they were before. It prints its counts, so it runs without the test
//! harness's capture.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::collections::BTreeMap;
use std::process::ExitCode;

use serde_json::{Value, json};
use spillway_core::config::MAX_PAYLOAD_LIMIT;
use spillway_tests::deployed::{Stack, iam_user, no_call_was_denied};
use spillway_tests::gateway::ApiResponse;
use spillway_tests::openapi::OpenApi;

/// One hostile request and the status it must get.
struct Case {
    name: &'static str,
    method: &'static str,
    target: String,
    headers: Vec<(String, String)>,
    body: Option<String>,
    status: u16,
}

const JSON: (&str, &str) = ("content-type", "application/json");

fn post(name: &'static str, body: impl Into<String>, status: u16) -> Case {
    post_with(name, &[JSON], body, status)
}

fn post_with(
    name: &'static str,
    headers: &[(&str, &str)],
    body: impl Into<String>,
    status: u16,
) -> Case {
    Case {
        name,
        method: "POST",
        target: "/jobs".to_owned(),
        headers: headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        body: Some(body.into()),
        status,
    }
}

fn call(name: &'static str, method: &'static str, target: impl Into<String>, status: u16) -> Case {
    Case {
        name,
        method,
        target: target.into(),
        headers: Vec::new(),
        body: None,
        status,
    }
}

/// A webhook job to `url` with `extra` merged into its payload.
fn webhook(url: &str, extra: Value) -> String {
    let mut payload = json!({ "url": url });
    if let (Some(payload), Value::Object(extra)) = (payload.as_object_mut(), extra) {
        payload.extend(extra);
    }
    json!({"kind": "webhook", "payload": payload}).to_string()
}

fn nested(depth: usize) -> String {
    format!(
        r#"{{"kind":"webhook","payload":{{"url":"https://example.com/","body":{}1{}}}}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    )
}

fn cases(existing: &str) -> Vec<Case> {
    let ok_url = "https://hooks.example.com/in";
    let good = webhook(ok_url, json!({}));
    let many_headers: serde_json::Map<String, Value> =
        (0..33).map(|n| (format!("x-h{n}"), json!("v"))).collect();
    let v4 = "3f1c2a9e-8b7d-4c6e-9f0a-1b2c3d4e5f60";
    let unknown = "01a23456-7890-7abc-8def-0123456789ab";
    vec![
        // Bodies that are not the JSON asked for.
        post("malformed JSON", "{this is not json", 400),
        post("truncated JSON", r#"{"kind":"webhook","payload":"#, 400),
        post("an empty body", "", 400),
        post("JSON null", "null", 400),
        post("a JSON array", "[]", 400),
        post("a JSON string", r#""webhook""#, 400),
        post("a duplicate key", r#"{"kind":"webhook","kind":"webhook","payload":{"url":"https://example.com/"}}"#, 400),
        post("an unknown field", r#"{"kind":"webhook","payload":{},"priority":"urgent"}"#, 400),
        post("an unknown field named at length", format!(r#"{{"kind":"webhook","payload":{{}},"{}":1}}"#, "f".repeat(50_000)), 400),
        post("no kind", r#"{"payload":{}}"#, 400),
        post("no payload", r#"{"kind":"webhook"}"#, 400),
        post("a numeric kind", r#"{"kind":7,"payload":{}}"#, 400),
        post("an empty kind", r#"{"kind":"","payload":{}}"#, 400),
        post("a huge kind", format!(r#"{{"kind":"{}","payload":{{}}}}"#, "k".repeat(100_000)), 400),
        post("an unknown kind", r#"{"kind":"nope","payload":{}}"#, 422),
        post("a demonstration kind the stack turned off", r#"{"kind":"echo","payload":{}}"#, 422),
        post("nesting one level too deep", nested(63), 400),
        post("nesting a hundred thousand deep", nested(100_000), 400),
        post("a huge ttl_seconds", r#"{"kind":"webhook","payload":{"url":"https://example.com/"},"ttl_seconds":99999999999999999999999999}"#, 400),
        post("a negative ttl_seconds", r#"{"kind":"webhook","payload":{"url":"https://example.com/"},"ttl_seconds":-1}"#, 400),
        post("a zero ttl_seconds", r#"{"kind":"webhook","payload":{"url":"https://example.com/"},"ttl_seconds":0}"#, 400),
        post("a fractional ttl_seconds", r#"{"kind":"webhook","payload":{"url":"https://example.com/"},"ttl_seconds":1.5}"#, 400),
        post("a ttl_seconds over the maximum", r#"{"kind":"webhook","payload":{"url":"https://example.com/"},"ttl_seconds":86401}"#, 400),
        post("U+FFFF unescaped", webhook(ok_url, json!({"body": "a\u{FFFF}b"})), 400),
        post("U+FFFE unescaped", webhook(ok_url, json!({"body": "a\u{FFFE}b"})), 400),
        post("a body over the limit", format!(r#"{{"kind":"webhook","payload":"{}"}}"#, "x".repeat(MAX_PAYLOAD_LIMIT)), 413),
        // Headers.
        post_with("text/plain", &[("content-type", "text/plain")], good.clone(), 415),
        post_with("no content type", &[], good.clone(), 415),
        post_with("a huge content type", &[("content-type", &"t".repeat(8_000))], good.clone(), 415),
        post_with("an empty Idempotency-Key", &[JSON, ("idempotency-key", "")], good.clone(), 400),
        post_with("a 256-character Idempotency-Key", &[JSON, ("idempotency-key", &"k".repeat(256))], good.clone(), 400),
        post_with("a non-ASCII Idempotency-Key", &[JSON, ("idempotency-key", "clé")], good.clone(), 400),
        post_with("an X-Correlation-Id with a space", &[JSON, ("x-correlation-id", "a b")], good.clone(), 400),
        post_with("a 129-character X-Correlation-Id", &[JSON, ("x-correlation-id", &"c".repeat(129))], good.clone(), 400),
        // Webhook and callback URLs.
        post("a file URL", webhook("file:///etc/passwd", json!({})), 422),
        post("the instance metadata address", webhook("http://169.254.169.254/latest/meta-data", json!({})), 422),
        post("loopback as one number", webhook("http://2130706433/", json!({})), 422),
        post("loopback in octal", webhook("http://0177.0.0.1/", json!({})), 422),
        post("loopback abbreviated", webhook("http://127.1/", json!({})), 422),
        post("loopback in hex", webhook("http://0x7f.1/", json!({})), 422),
        post("IPv4-mapped loopback", webhook("http://[::ffff:127.0.0.1]/", json!({})), 422),
        post("credentials in the URL", webhook("http://user:pass@example.com/", json!({})), 400),
        post("a URL that is not one", webhook("not a url", json!({})), 400),
        post("a 3,000-byte URL", webhook(&format!("https://example.com/{}", "p".repeat(3_000)), json!({})), 400),
        post("a reserved header", webhook(ok_url, json!({"headers": {"webhook-signature": "v1,forged"}})), 400),
        post("a header name with a space", webhook(ok_url, json!({"headers": {"x bad": "v"}})), 400),
        post("a header value with CRLF", webhook(ok_url, json!({"headers": {"x-h": "v\r\nx-injected: 1"}})), 400),
        post("33 headers", webhook(ok_url, json!({"headers": many_headers})), 400),
        post("a 5,000-byte header value", webhook(ok_url, json!({"headers": {"x-h": "v".repeat(5_000)}})), 400),
        post("a DELETE webhook", webhook(ok_url, json!({"method": "DELETE"})), 400),
        post("a private callback_url", json!({"kind": "webhook", "payload": {"url": ok_url}, "callback_url": "http://10.0.0.1/cb"}).to_string(), 422),
        post("a gopher callback_url", json!({"kind": "webhook", "payload": {"url": ok_url}, "callback_url": "gopher://example.com/"}).to_string(), 422),
        post("a numeric callback_url", json!({"kind": "webhook", "payload": {"url": ok_url}, "callback_url": "http://2130706433/cb"}).to_string(), 422),
        // Lanes and schedules.
        post("an unknown priority", json!({"kind": "webhook", "payload": {"url": ok_url}, "priority": "urgent"}).to_string(), 400),
        post("a priority that is no string", json!({"kind": "webhook", "payload": {"url": ok_url}, "priority": 1}).to_string(), 400),
        post("both run_at and delay_seconds", json!({"kind": "webhook", "payload": {"url": ok_url}, "run_at": "2099-01-01T00:00:00Z", "delay_seconds": 5}).to_string(), 400),
        post("a run_at beyond a day", json!({"kind": "webhook", "payload": {"url": ok_url}, "run_at": "2099-01-01T00:00:00Z"}).to_string(), 400),
        post("a run_at that is no date-time", json!({"kind": "webhook", "payload": {"url": ok_url}, "run_at": "next tuesday"}).to_string(), 400),
        post("a negative delay_seconds", json!({"kind": "webhook", "payload": {"url": ok_url}, "delay_seconds": -5}).to_string(), 400),
        post("a fractional delay_seconds", json!({"kind": "webhook", "payload": {"url": ok_url}, "delay_seconds": 0.5}).to_string(), 400),
        post("a delay_seconds beyond a day", json!({"kind": "webhook", "payload": {"url": ok_url}, "delay_seconds": 86401}).to_string(), 400),
        // Ids and query values.
        call("an id that is no UUID", "GET", "/jobs/not-an-id", 400),
        call("a UUID that is not v7", "GET", format!("/jobs/{v4}"), 400),
        call("an encoded path in the id", "GET", "/jobs/..%2F..%2Fetc", 400),
        call("a 10,000-character id", "GET", format!("/jobs/{}", "1".repeat(10_000)), 400),
        call("wait that is no number", "GET", format!("/jobs/{existing}?wait=abc"), 400),
        call("wait over 20", "GET", format!("/jobs/{existing}?wait=21"), 400),
        call("a negative wait", "GET", format!("/jobs/{existing}?wait=-1"), 400),
        call("an unknown job", "GET", format!("/jobs/{unknown}"), 404),
        call("cancelling an unknown job", "DELETE", format!("/jobs/{unknown}"), 404),
        call("cancelling a malformed id", "DELETE", "/jobs/%00", 400),
    ]
}

/// The table's items and the queues' counts: what no refused request may change.
async fn snapshot(stack: &Stack) -> String {
    let sdk = spillway_tests::sdk_config().await;
    let scan = aws_sdk_dynamodb::Client::new(&sdk)
        .scan()
        .table_name(stack.manifest().output("TableName"))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    let mut items: Vec<BTreeMap<String, String>> = scan
        .items
        .unwrap_or_default()
        .into_iter()
        .map(|item| {
            item.into_iter()
                .map(|(k, v)| (k, format!("{v:?}")))
                .collect()
        })
        .collect();
    items.sort();
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let mut queues = Vec::new();
    for output in [
        "QueueUrl",
        "DeadLetterQueueUrl",
        "HighQueueUrl",
        "HighDeadLetterQueueUrl",
    ] {
        let attributes = sqs
            .get_queue_attributes()
            .queue_url(stack.manifest().output(output))
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap_or_default();
        let counts: BTreeMap<String, String> = attributes
            .into_iter()
            .filter(|(name, _)| name.as_str().starts_with("ApproximateNumberOfMessages"))
            .map(|(name, value)| (name.as_str().to_owned(), value))
            .collect();
        queues.push(counts);
    }
    format!("{items:#?}\n{queues:#?}")
}

/// Why `response` is not what `case` must get, or `None`.
fn mismatch(spec: &OpenApi, case: &Case, response: &ApiResponse) -> Option<String> {
    if response.status != case.status {
        return Some(format!("got {response}, expected {}", case.status));
    }
    if response.headers.get("content-type").map(String::as_str) != Some("application/problem+json")
    {
        return Some(format!("not a problem document: {response}"));
    }
    let problem = response.json();
    let detail = problem["detail"].as_str().unwrap_or_default();
    if detail.chars().count() > 201 {
        return Some(format!("a detail of {} characters", detail.chars().count()));
    }
    let path = if case.target == "/jobs" {
        "/jobs"
    } else {
        "/jobs/{id}"
    };
    let mut http = http::Response::new(response.body.clone());
    *http.status_mut() = http::StatusCode::from_u16(response.status).unwrap();
    for (name, value) in &response.headers {
        http.headers_mut().insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        spec.check(path, &case.method.to_lowercase(), &http);
    }))
    .err()
    .map(|_| "the response does not match docs/openapi.yaml".to_owned())
}

async fn run() -> ExitCode {
    // No allowlist: the deployment test's lets webhooks reach its receiver on loopback.
    let stack = Stack::deploy(&[("WebhookAllow", "")], iam_user).await;
    // One job, so that the table and queue are not empty to begin with.
    let existing = stack
        .accept(&json!({"kind": "webhook", "payload": {"url": "https://hooks.example.com/in"}}))
        .await;
    let before = snapshot(&stack).await;
    let spec = OpenApi::load();
    let cases = cases(&existing);
    let mut failed = 0;
    for case in &cases {
        let headers: Vec<(&str, &str)> = case
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let response = stack
            .gateway()
            .request(
                &stack.caller,
                case.method,
                &case.target,
                &headers,
                case.body.as_deref(),
            )
            .await;
        match mismatch(&spec, case, &response) {
            None => println!("ok   {} {}: {}", case.status, case.method, case.name),
            Some(why) => {
                failed += 1;
                println!("FAIL {}: {why}", case.name);
            }
        }
    }
    let after = snapshot(&stack).await;
    let unchanged = before == after;
    if !unchanged {
        failed += 1;
        println!("FAIL the table or a queue changed:\n--- before\n{before}\n--- after\n{after}");
    }
    let denied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        no_call_was_denied(&stack.proxy);
    }));
    if denied.is_err() {
        failed += 1;
    }
    println!(
        "hostile inputs: {} cases, {} as documented; table and queues {}",
        cases.len(),
        cases.len() - failed.min(cases.len()),
        if unchanged { "unchanged" } else { "CHANGED" }
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn main() -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run())
}
