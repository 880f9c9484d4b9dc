//! `spillway dev` over real HTTP: the binary is started on a free port, driven with an HTTP
//! client, and stopped with a signal.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use spillway_core::config::MAX_PAYLOAD_LIMIT;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;

mod support;

use support::DevServer;

#[tokio::test]
async fn an_echo_job_goes_from_post_to_succeeded_over_http() {
    let dev = DevServer::start(&[]).await;
    let id = dev
        .submit(json!({"kind": "echo", "payload": {"hello": "world"}}))
        .await;
    let job = dev.wait_for(&id, 10).await;
    assert_eq!(job["status"], "succeeded");
    assert_eq!(job["result"], json!({"hello": "world"}));
    assert_eq!(dev.stop_with("-TERM").await, Some(0));
}

#[tokio::test]
async fn a_failing_job_is_retried_into_dead_lettered_and_its_message_moved_to_the_dlq() {
    let dev = DevServer::start(&["--max-attempts", "3", "--backoff-max-seconds", "1"]).await;
    let id = dev
        .submit(json!({"kind": "sleep", "payload": {"ms": 10, "fail": "retryable"}}))
        .await;
    let job = dev.wait_for(&id, 15).await;
    assert_eq!(job["status"], "dead_lettered");
    assert_eq!(job["attempts"], 3);

    let scheduled = dev.logged("retry scheduled");
    let retries: Vec<_> = scheduled
        .iter()
        .filter(|e| e["job_id"] == id.as_str())
        .collect();
    assert_eq!(retries.len(), 2, "two retries before the last attempt");
    for retry in retries {
        assert!(
            retry["delay_seconds"].as_u64().unwrap() <= 1,
            "backoff capped at 1 s"
        );
    }
    let dead = dev.logged("recorded");
    let message_id = dead
        .iter()
        .find(|e| e["job_id"] == id.as_str() && e["status"] == "dead_lettered")
        .map(|e| e["message_id"].clone())
        .expect("a dead_lettered transition logged");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let moved = dev.logged("moved to the dead-letter queue");
    assert!(
        moved.iter().any(|e| e["message_id"] == message_id),
        "{moved:?}"
    );
    assert_eq!(dev.stop_with("-INT").await, Some(0));
}

#[tokio::test]
async fn the_queues_depth_is_logged_as_it_changes() {
    // One consumer of one job at a time: of three 1 s jobs, two wait while the first runs.
    let dev = DevServer::start(&[
        "--concurrency",
        "1",
        "--batch-size",
        "1",
        "--queue-log-interval",
        "50ms",
    ])
    .await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            dev.submit(json!({"kind": "sleep", "payload": {"ms": 1000}}))
                .await,
        );
    }
    for id in &ids {
        assert_eq!(dev.wait_for(id, 10).await["status"], "succeeded");
    }
    // Each lane logs its own queue; the high lane's stays empty.
    let high: Vec<Value> = dev
        .logged("queue depth")
        .into_iter()
        .filter(|line| line["priority"] == "high")
        .collect();
    assert_eq!(high.len(), 1, "{high:?}");
    assert_eq!(
        (&high[0]["visible"], &high[0]["in_flight"]),
        (&json!(0), &json!(0))
    );
    let depths = || -> Vec<(u64, u64)> {
        dev.logged("queue depth")
            .iter()
            .filter(|line| line["priority"] == "normal")
            .map(|line| {
                assert_eq!(line["delayed"], 0, "{line}");
                (
                    line["visible"].as_u64().unwrap(),
                    line["in_flight"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    // The last message is deleted just after its job is recorded: wait for the empty queue.
    for _ in 0..200 {
        if depths().last() == Some(&(0, 0)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let depths = depths();
    assert!(depths.contains(&(2, 1)), "{depths:?}");
    assert!(depths.contains(&(1, 1)), "{depths:?}");
    assert_eq!(depths.last(), Some(&(0, 0)), "{depths:?}");
    assert!(
        depths.windows(2).all(|pair| pair[0] != pair[1]),
        "a line only when the depth changed: {depths:?}"
    );
    assert_eq!(dev.stop_with("-TERM").await, Some(0));
}

#[tokio::test]
async fn a_signal_lets_the_batch_in_flight_finish_before_exiting() {
    let dev = DevServer::start(&[]).await;
    let id = dev
        .submit(json!({"kind": "sleep", "payload": {"ms": 3000}}))
        .await;
    // Wait until the consumer holds the job, then interrupt.
    let mut claimed = false;
    for _ in 0..400 {
        let logged = dev.logged("claimed");
        claimed = logged.iter().any(|e| e["job_id"] == id.as_str());
        if claimed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(claimed, "the job was never claimed");
    let logs = dev.logs.clone();
    assert_eq!(dev.stop_with("-INT").await, Some(0));
    let logs = logs.lock().unwrap();
    let finished = logs.iter().any(|e| {
        e["job_id"] == id.as_str() && e["message"] == "recorded" && e["status"] == "succeeded"
    });
    assert!(finished, "the in-flight job was not allowed to finish");
}

#[tokio::test]
async fn a_job_longer_than_the_visibility_timeout_runs_once_and_shows_its_progress() {
    let dev = DevServer::start(&["--visibility-timeout", "3"]).await;
    let id = dev
        .submit(json!({"kind": "sleep", "payload": {"ms": 7_000}}))
        .await;
    let mut progress = Vec::new();
    let job = loop {
        let job: Value = reqwest::get(dev.url(&format!("/jobs/{id}")))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if job["status"] == "running" && job["progress"].is_object() {
            progress.push(job["progress"]["fraction"].as_f64().unwrap());
        }
        if job["status"] == "succeeded" || progress.len() > 100 {
            break job;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(job["attempts"], 1);
    assert_eq!(job["result"]["slept_ms"], 7_000);
    assert!(
        progress.len() >= 3 && progress.windows(2).all(|w| w[0] <= w[1]),
        "{progress:?}"
    );
    let mine = |message| {
        dev.logged(message)
            .into_iter()
            .filter(|e| e["job_id"] == id.as_str())
            .count()
    };
    assert_eq!(mine("claimed"), 1, "one delivery, one claim");
    assert!(
        mine("heartbeat") >= 2,
        "the message and the lease were renewed"
    );
    assert_eq!(dev.stop_with("-TERM").await, Some(0));
}

#[tokio::test]
async fn bad_requests_get_problem_documents_over_http() {
    let dev = DevServer::start(&[]).await;
    let client = reqwest::Client::new();
    let huge = json!({"kind": "echo", "payload": "x".repeat(MAX_PAYLOAD_LIMIT)}).to_string();
    let cases = [
        (
            client
                .post(dev.url("/jobs"))
                .body(r#"{"kind":"echo","payload":1}"#),
            415,
        ),
        (
            client
                .post(dev.url("/jobs"))
                .header("content-type", "application/json")
                .body("{"),
            400,
        ),
        (
            client
                .post(dev.url("/jobs"))
                .header("content-type", "application/json")
                .body(huge),
            413,
        ),
        (client.get(dev.url("/jobs/not-an-id")), 400),
        (
            client.get(dev.url("/jobs/01a20000-0000-7000-8000-000000000000")),
            404,
        ),
        (client.get(dev.url("/nowhere")), 404),
    ];
    for (request, expected) in cases {
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), expected);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["status"], expected);
    }
    assert_eq!(dev.stop_with("-TERM").await, Some(0));
}

/// A batch has its own body limit: larger than a job's, and refused past it as a problem.
#[tokio::test]
async fn a_batch_over_http_answers_each_job_within_its_own_body_limit() {
    let dev = DevServer::start(&[]).await;
    let client = reqwest::Client::new();
    let post = |body: String| {
        client
            .post(dev.url("/jobs/batch"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    // Two jobs of 700 KB: over one job's limit together, within the batch's.
    let large = json!({"kind": "echo", "payload": "x".repeat(700_000)});
    let body = json!({"jobs": [large, large, {"kind": "echo"}]}).to_string();
    assert!(body.len() > MAX_PAYLOAD_LIMIT);
    let response = post(body).await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let answer: Value = response.json().await.unwrap();
    let statuses: Vec<&Value> = answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|result| &result["status"])
        .collect();
    assert_eq!(
        statuses,
        [&json!(202), &json!(202), &json!(400)],
        "{answer}"
    );

    let huge = json!({"jobs": [{"kind": "echo", "payload": "x".repeat(spillway_core::api::MAX_BATCH_BYTES)}]});
    let response = post(huge.to_string()).await.unwrap();
    assert_eq!(response.status().as_u16(), 413);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = response.json().await.unwrap();
    assert_eq!(
        problem["detail"],
        format!(
            "the body is over the limit of {} bytes",
            spillway_core::api::MAX_BATCH_BYTES
        )
    );
    assert_eq!(dev.stop_with("-TERM").await, Some(0));
}

/// The server takes the largest body the default limit allows, the in-memory queue carries its
/// message, and the job ends: `echo`'s result would be the whole payload, over what a job's
/// record keeps, so it fails with the reason instead of succeeding.
#[tokio::test]
async fn a_body_at_the_limit_is_accepted_and_its_job_ends() {
    let dev = DevServer::start(&[]).await;
    let empty = json!({"kind": "echo", "payload": ""}).to_string();
    let body = json!({"kind": "echo", "payload": "x".repeat(MAX_PAYLOAD_LIMIT - empty.len())});
    assert_eq!(body.to_string().len(), MAX_PAYLOAD_LIMIT);
    let id = dev.submit(body).await;
    let job = dev.wait_for(&id, 10).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"], "the result is larger than 300000 bytes");
    assert_eq!(dev.stop_with("-TERM").await, Some(0));
}

#[tokio::test]
async fn a_log_written_to_a_pipe_carries_no_colour_codes() {
    // NO_COLOR unset: that the output is no terminal must be enough.
    let mut child = Command::new(env!("CARGO_BIN_EXE_spillway"))
        .args(["dev", "--port", "0"])
        .env_remove("NO_COLOR")
        .env_remove("AWS_ENDPOINT_URL")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start spillway dev");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut log = String::new();
    let listening = tokio::time::timeout(Duration::from_secs(60), async {
        let mut line = String::new();
        loop {
            line.clear();
            if stdout.read_line(&mut line).await.unwrap() == 0 {
                panic!("spillway dev exited before listening:\n{log}");
            }
            log.push_str(&line);
            if line.contains("spillway dev listening") {
                return line.clone();
            }
        }
    })
    .await
    .expect("spillway dev did not start listening within a minute");
    // A job, so that its transitions, with their fields, are in the log too.
    let address = listening[listening.find("http://").unwrap()..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let client = reqwest::Client::new();
    let accepted: Value = client
        .post(format!("{address}/jobs"))
        .json(&json!({"kind": "echo", "payload": {"hello": "pipe"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = accepted["id"].as_str().expect("a job id");
    let job: Value = reqwest::get(format!("{address}/jobs/{id}?wait=10"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(job["status"], "succeeded");

    let pid = child.id().unwrap().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    stdout.read_to_string(&mut log).await.unwrap();
    let mut errors = String::new();
    let mut stderr = child.stderr.take().unwrap();
    stderr.read_to_string(&mut errors).await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("spillway dev did not stop within 30 s")
        .unwrap();
    assert_eq!(status.code(), Some(0), "{log}{errors}");

    for expected in ["spillway dev listening", "accepted", "recorded", "stopped"] {
        assert!(log.contains(expected), "no `{expected}` line:\n{log}");
    }
    assert!(
        !log.contains("\x1b[") && !errors.contains("\x1b["),
        "colour codes in piped output:\n{}{}",
        log.escape_debug(),
        errors.escape_debug()
    );
}

#[tokio::test]
async fn the_pipeline_runs_on_dynamodb_and_sqs_with_endpoint_url() {
    let endpoint = spillway_tests::endpoint();
    let suffix = uuid_suffix();
    let table = format!("spillway-dev-{suffix}");
    let dev = DevServer::start(&[
        "--endpoint-url",
        &endpoint,
        "--create-resources",
        "--table",
        &table,
        "--max-attempts",
        "2",
        "--backoff-max-seconds",
        "0",
    ])
    .await;
    let ok = dev
        .submit(json!({"kind": "echo", "payload": [1, 2, 3]}))
        .await;
    let failing = dev
        .submit(json!({"kind": "sleep", "payload": {"ms": 0, "fail": "retryable"}}))
        .await;
    assert_eq!(dev.wait_for(&ok, 15).await["result"], json!([1, 2, 3]));
    assert_eq!(dev.wait_for(&failing, 15).await["status"], "dead_lettered");

    let sdk = spillway_tests::sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let dlq_url = sqs
        .get_queue_url()
        .queue_name(format!("{table}-jobs-dlq"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let mut dead = Vec::new();
    for _ in 0..10 {
        let received = sqs
            .receive_message()
            .queue_url(&dlq_url)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        dead.extend(received.messages.unwrap_or_default());
        if !dead.is_empty() {
            break;
        }
    }
    assert_eq!(dead.len(), 1, "the failing job's message is in the DLQ");
    assert!(dead[0].body().unwrap().contains(&failing));
    assert_eq!(dev.stop_with("-TERM").await, Some(0));
}

/// Every job item in `table`: its id and status.
async fn jobs_in(table: &str) -> Vec<(String, String)> {
    let sdk = spillway_tests::sdk_config().await;
    spillway_tests::job_statuses(&aws_sdk_dynamodb::Client::new(&sdk), table).await
}

/// `spillway dev` on the emulator, killed with SIGKILL in the middle of a load and started again:
/// every job in the table ends terminal, and so does every job a client was answered `202` for,
/// without any client retrying. A message is sent before its job is written, so a process that
/// dies between the two leaves a message that writes the job, never a job without a message.
#[tokio::test]
async fn a_dev_server_killed_mid_load_and_restarted_finishes_every_job_in_its_table() {
    let endpoint = spillway_tests::endpoint();
    let table = format!("spillway-crash-{}", uuid_suffix());
    let args = [
        "--endpoint-url",
        endpoint.as_str(),
        "--create-resources",
        "--table",
        table.as_str(),
        "--visibility-timeout",
        "5",
        "--function-timeout",
        "4",
        "--concurrency",
        "4",
    ];
    let dev = DevServer::start(&args).await;
    let url = dev.url("/jobs");
    let accepted = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (url, accepted) = (url.clone(), accepted.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                // Until the server dies under it; no request is ever retried.
                while let Ok(response) = http
                    .post(&url)
                    .json(&json!({"kind": "sleep", "payload": {"ms": 20}}))
                    .send()
                    .await
                {
                    if response.status() == 202
                        && let Ok(body) = response.json::<Value>().await
                    {
                        accepted
                            .lock()
                            .unwrap()
                            .push(body["id"].as_str().unwrap().to_owned());
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(dev.stop_with("-KILL").await, None, "killed, not exited");
    for client in clients {
        client.await.unwrap();
    }
    let accepted = accepted.lock().unwrap().clone();
    assert!(
        !accepted.is_empty(),
        "the load was accepted before the kill"
    );

    // The bound: messages in flight at the kill come back after the 5 s visibility timeout, and
    // the backlog then takes as long as it takes to run; a minute is far beyond both here.
    let dev = DevServer::start(&args).await;
    let mut unfinished = Vec::new();
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let jobs = jobs_in(&table).await;
        unfinished = jobs
            .iter()
            .filter(|(_, status)| status == "pending" || status == "running")
            .cloned()
            .collect();
        let held: std::collections::HashSet<&str> =
            jobs.iter().map(|(id, _)| id.as_str()).collect();
        let missing = accepted
            .iter()
            .filter(|id| !held.contains(id.as_str()))
            .count();
        if unfinished.is_empty() && missing == 0 {
            println!(
                "{} jobs accepted before the kill, {} in the table, all terminal",
                accepted.len(),
                jobs.len()
            );
            assert_eq!(dev.stop_with("-TERM").await, Some(0));
            return;
        }
    }
    panic!(
        "a minute after the restart, {} jobs are unfinished (first: {:?})",
        unfinished.len(),
        unfinished.first()
    );
}

fn uuid_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{:x}", nanos % 0xffff_ffff_ffff)
}

#[tokio::test]
async fn the_readme_walkthrough_works_as_written() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let marker = readme
        .find("<!-- walkthrough:")
        .expect("the README marks its walkthrough");
    let block = &readme[marker..];
    let start = block.find("```sh\n").unwrap() + "```sh\n".len();
    let end = start + block[start..].find("```").unwrap();
    let dev = DevServer::start(&[]).await;
    let script =
        block[start..end].replace("localhost:3000", dev.base_url.trim_start_matches("http://"));

    let output = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the walkthrough failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The commands' outputs, in the order the README shows them.
    let mut rest = stdout.as_ref();
    for expected in [
        r#""status":"pending""#,
        r#""status":"succeeded""#,
        r#""result":{"hello":"world"}"#,
        r#""priority":"high""#,
        r#""index":0,"status":202"#,
        r#""index":1,"status":422"#,
        r#""status":"dead_lettered""#,
        r#""attempts":3"#,
        "urn:spillway:problem:invalid-request",
    ] {
        let at = rest
            .find(expected)
            .unwrap_or_else(|| panic!("{expected} missing from: {stdout}"));
        rest = &rest[at + expected.len()..];
    }
    assert_eq!(dev.stop_with("-TERM").await, Some(0));
}

#[tokio::test]
async fn webhooks_and_callbacks_reach_a_local_receiver_signed_with_the_logged_secret() {
    let dev = DevServer::start(&[]).await;
    let secret = dev
        .logs
        .lock()
        .unwrap()
        .iter()
        .find_map(|entry| entry["secret"].as_str().map(str::to_owned))
        .expect("spillway dev logs the secret it made for the run");
    let receiver = spillway_tests::receiver::Receiver::start(&[&secret]).await;

    let webhook = dev
        .submit(
            json!({"kind": "webhook", "payload": {"url": receiver.url("/hook"), "body": {"a": 1}}}),
        )
        .await;
    let echo = dev
        .submit(json!({"kind": "echo", "payload": {"b": 2}, "callback_url": receiver.url("/done")}))
        .await;
    let hooks = receiver
        .wait_for_deliveries("/hook", 1, Duration::from_secs(20))
        .await;
    assert_eq!(hooks[0].headers["webhook-id"], webhook);
    assert_eq!(hooks[0].body, r#"{"a":1}"#);
    let callbacks = receiver
        .wait_for_deliveries("/done", 1, Duration::from_secs(20))
        .await;
    let document: Value = serde_json::from_str(&callbacks[0].body).unwrap();
    assert_eq!(
        (document["id"].as_str(), document["status"].as_str()),
        (Some(echo.as_str()), Some("succeeded"))
    );
    for delivery in hooks.iter().chain(&callbacks) {
        assert!(delivery.verified, "{:?}", delivery.verify_error);
    }
    assert_eq!(dev.stop_with("-TERM").await, Some(0));
}

#[tokio::test]
async fn callers_are_named_by_their_header_only_when_asked() {
    let client = reqwest::Client::new();
    let submit_as = |dev: &DevServer, caller: &str| {
        let request = client
            .post(dev.url("/jobs"))
            .header("x-spillway-caller", caller)
            .json(&json!({"kind": "echo", "payload": 1}));
        async move {
            let answer: Value = request.send().await.unwrap().json().await.unwrap();
            answer["id"].as_str().unwrap().to_owned()
        }
    };
    let status_as = |dev: &DevServer, caller: &str, id: &str| {
        let request = client
            .get(dev.url(&format!("/jobs/{id}")))
            .header("x-spillway-caller", caller);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    // By default every caller is the anonymous owner: the header names nobody.
    let dev = DevServer::start(&[]).await;
    let id = submit_as(&dev, "alice").await;
    assert_eq!(status_as(&dev, "mallory", &id).await, 200);
    assert_eq!(dev.stop_with("-TERM").await, Some(0));
    // With --callers-from-header each name is an owner, who sees only its own jobs.
    let dev = DevServer::start(&["--callers-from-header"]).await;
    let id = submit_as(&dev, "alice").await;
    assert_eq!(status_as(&dev, "alice", &id).await, 200);
    assert_eq!(status_as(&dev, "mallory", &id).await, 404);
    assert_eq!(dev.stop_with("-TERM").await, Some(0));
}

#[tokio::test]
async fn each_caller_is_held_to_its_own_limit_of_active_jobs() {
    let dev =
        DevServer::start(&["--callers-from-header", "--max-active-jobs-per-owner", "2"]).await;
    let client = reqwest::Client::new();
    let submit_as = |caller: &str, body: Value| {
        let request = client
            .post(dev.url("/jobs"))
            .header("x-spillway-caller", caller)
            .json(&body);
        async move { request.send().await.unwrap() }
    };
    // Scheduled an hour ahead, so the jobs stay active while the test runs.
    let later = |n: u32| json!({"kind": "echo", "payload": n, "delay_seconds": 3600});
    for n in 0..2 {
        assert_eq!(submit_as("alice", later(n)).await.status().as_u16(), 202);
    }
    let refused = submit_as("alice", later(2)).await;
    assert_eq!(refused.status().as_u16(), 429);
    assert_eq!(refused.headers()["retry-after"], "5");
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["type"], "urn:spillway:problem:too-many-active-jobs");
    assert_eq!(submit_as("bob", later(3)).await.status().as_u16(), 202);
    assert_eq!(dev.stop_with("-TERM").await, Some(0));
}

/// `--kinds FILE`: a `lambda` kind invoked through a Lambda Invoke API stand-in (what
/// `sam local start-lambda` serves), an `http` kind posted to a local receiver, signed, and a
/// `builtin` kind with a TTL of its own.
#[tokio::test]
async fn a_kinds_file_declares_lambda_http_and_builtin_kinds() {
    use spillway_tests::target_function::PythonFunction;
    use std::sync::Arc;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let function = Arc::new(PythonFunction::start("targets.handler", Duration::from_secs(5)).await);
    let lambda_endpoint = function.clone().serve().await;
    // Every caller of `spillway dev` is the anonymous owner, whose key is derived from SECRET.
    let owners = spillway_core::webhook::SigningKeys::parse(SECRET)
        .unwrap()
        .for_owner(&spillway_core::domain::Owner::anonymous())
        .secrets();
    let receiver = spillway_tests::receiver::Receiver::start(&[&owners[0]]).await;
    let kinds = json!({
        "resize": {"target": {"lambda": "arn:aws:lambda:us-east-1:123456789012:function:resize"},
                   "max_attempts": 1},
        "ledger": {"target": {"http": receiver.url("/ledger")}},
        "echo": {"target": "builtin", "ttl_seconds": 60}
    });
    let file = std::env::temp_dir().join(format!("spillway-kinds-{}.json", uuid_suffix()));
    std::fs::write(&file, kinds.to_string()).unwrap();
    let dev = DevServer::start_with_env(
        &[
            "--kinds",
            file.to_str().unwrap(),
            "--lambda-endpoint-url",
            &lambda_endpoint,
        ],
        &[("SPILLWAY_WEBHOOK_SECRET", SECRET.to_owned())],
    )
    .await;
    std::fs::remove_file(&file).ok();

    let resized = dev
        .submit(json!({"kind": "resize", "payload": {"act": "succeed", "image": "k.png"}}))
        .await;
    let job = dev.wait_for(&resized, 15).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["result"]["event"]["payload"]["image"], "k.png");
    let refused = dev
        .submit(json!({"kind": "resize", "payload": {"act": "permanent", "message": "not a PNG"}}))
        .await;
    let job = dev.wait_for(&refused, 15).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"], "PermanentError: not a PNG");
    assert_eq!(function.invocations(), 2);

    let booked = dev
        .submit(json!({"kind": "ledger", "payload": {"entry": 7}}))
        .await;
    assert_eq!(dev.wait_for(&booked, 15).await["status"], "succeeded");
    let deliveries = receiver
        .wait_for_deliveries("/ledger", 1, Duration::from_secs(5))
        .await;
    assert!(deliveries[0].verified, "{:?}", deliveries[0].verify_error);
    let event: Value = serde_json::from_str(&deliveries[0].body).unwrap();
    assert_eq!(event["payload"], json!({"entry": 7}));

    let echoed = dev.submit(json!({"kind": "echo", "payload": 1})).await;
    let job = dev.wait_for(&echoed, 15).await;
    let at = |field: &str| {
        serde_json::from_value::<spillway_core::domain::Timestamp>(job[field].clone()).unwrap()
    };
    assert_eq!(
        at("deadline").saturating_since(at("created_at")),
        Duration::from_secs(60)
    );
    assert_eq!(dev.stop_with("-TERM").await, Some(0));
}

/// `--kinds FILE` with a fan-out kind: each target runs as a child job of its own, the parent
/// ends `failed` listing the target that answered 400 once the last child ended, and its
/// callback is delivered once, as on AWS.
#[tokio::test]
async fn a_kinds_file_declares_a_fanout_kind_that_ends_with_its_last_child() {
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let owners = spillway_core::webhook::SigningKeys::parse(SECRET)
        .unwrap()
        .for_owner(&spillway_core::domain::Owner::anonymous())
        .secrets();
    let receiver = spillway_tests::receiver::Receiver::start(&[&owners[0]]).await;
    receiver.script("/sms", json!([{"status": 400}])).await;
    let kinds = json!({"notify": {"targets": {
        "email": {"http": receiver.url("/email")},
        "sms": {"http": receiver.url("/sms")},
    }}});
    let file = std::env::temp_dir().join(format!("spillway-kinds-{}.json", uuid_suffix()));
    std::fs::write(&file, kinds.to_string()).unwrap();
    let dev = DevServer::start_with_env(
        &["--kinds", file.to_str().unwrap()],
        &[("SPILLWAY_WEBHOOK_SECRET", SECRET.to_owned())],
    )
    .await;
    std::fs::remove_file(&file).ok();

    let parent = dev
        .submit(json!({"kind": "notify", "payload": {"user": 7}, "callback_url": receiver.url("/done")}))
        .await;
    let job = dev.wait_for(&parent, 15).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["failures"][0]["target"], "sms", "{job}");
    assert_eq!(job["failures"].as_array().unwrap().len(), 1, "{job}");
    for child in job["children"].as_array().unwrap() {
        let own = dev.wait_for(child["id"].as_str().unwrap(), 1).await;
        assert_eq!(own["parent"], parent.as_str(), "{own}");
        let expected = if child["target"] == "sms" {
            "failed"
        } else {
            "succeeded"
        };
        assert_eq!(own["status"], expected, "{own}");
    }
    receiver
        .wait_for_deliveries("/done", 1, Duration::from_secs(10))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.deliveries("/done").await.len(), 1);
    assert_eq!(dev.stop_with("-TERM").await, Some(0));
}
