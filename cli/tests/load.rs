//! `spillway load` over real HTTP: against `spillway dev`, against small servers that answer
//! slowly or lose jobs, to show that the generator keeps its schedule and reports what it saw,
//! and against a SigV4 verifier built on botocore, to show that it signs as an IAM-authorized
//! stage requires.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::{Value, json};
use support::DevServer;
use support::verifier::{TestCredentials, Verifier, no_credentials_env};

/// What one `spillway load` run left behind.
struct Run {
    code: Option<i32>,
    stderr: String,
    report: Value,
}

/// Runs `spillway load --url URL --json FILE ARGS…` and reads its JSON report.
async fn load(url: &str, args: &[&str]) -> Run {
    load_with_env(url, args, &[]).await
}

/// [`load`] with `env` changed: each variable set to its value, or removed for `None`.
async fn load_with_env(url: &str, args: &[&str], env: &[(&str, Option<String>)]) -> Run {
    let dir = std::env::temp_dir().join(format!("spillway-load-{}", unique_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("report.json");
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_spillway"));
    command
        .args(["load", "--url", url, "--json"])
        .arg(&json)
        .args(args);
    for (name, value) in env {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    let output = command.output().await.expect("run spillway load");
    let report = std::fs::read_to_string(&json)
        .map(|text| serde_json::from_str(&text).unwrap())
        .unwrap_or(Value::Null);
    let _ = std::fs::remove_dir_all(&dir);
    Run {
        code: output.status.code(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        report,
    }
}

/// A name no other test run is using.
fn unique_suffix() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Serves `router` on a free loopback port, returning its base URL.
async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{address}")
}

/// `value` as an `application/json` answer.
fn json_body(value: Value) -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
}

/// Accepts every job with a fresh id, after `delay`.
fn accepting(delay: Duration, jobs: Arc<AtomicU64>) -> Router {
    Router::new()
        .route(
            "/jobs",
            post(move |State(jobs): State<Arc<AtomicU64>>| async move {
                tokio::time::sleep(delay).await;
                let n = jobs.fetch_add(1, Ordering::Relaxed);
                let id = format!("0190f000-0000-7000-8000-{n:012}");
                (StatusCode::ACCEPTED, json_body(json!({"id": id})))
            }),
        )
        .with_state(jobs)
}

#[tokio::test]
async fn a_run_against_spillway_dev_accepts_follows_and_loses_nothing() {
    let dev = DevServer::start(&[]).await;
    let run = load(
        &dev.base_url,
        &[
            "--rate",
            "100",
            "--duration",
            "2s",
            "--spike-rate",
            "300",
            "--spike-start",
            "1s",
            "--spike-length",
            "500ms",
            "--follow",
        ],
    )
    .await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let report = &run.report;
    let expected = 100 + 50 + 150; // 1.5 s at 100/s, 0.5 s at 300/s
    assert_eq!(report["scheduled"], expected);
    assert_eq!(report["sent"], expected);
    assert_eq!(report["accepted"], expected);
    assert_eq!(report["rejected"], json!({}));
    assert_eq!(report["errors"], json!({}));
    let latency = &report["intake_latency"];
    assert_eq!(latency["count"], expected);
    let ordered = ["p50_ms", "p95_ms", "p99_ms", "max_ms"].map(|p| latency[p].as_f64().unwrap());
    assert!(ordered.windows(2).all(|w| w[0] <= w[1]), "{latency}");
    assert!(report["spike"]["accepted_per_s"].as_f64().unwrap() > 0.0);
    assert_eq!(report["spike"]["intake_latency"]["count"], 150);

    let follow = &report["follow"];
    assert_eq!(follow["final_states"], json!({"succeeded": expected}));
    assert_eq!(follow["lost"], 0);
    assert_eq!(follow["end_to_end_latency"]["count"], expected);
    assert!(
        run.stderr.contains("accepted"),
        "a progress line: {}",
        run.stderr
    );
    assert_eq!(dev.stop_with("-TERM").await, Some(0));
}

/// Issue 17's acceptance for lanes: at twice the normal lane's capacity (one poller of ten
/// 200 ms jobs: 50 jobs/s, against 95 normal jobs/s), normal jobs queue for seconds while the
/// high lane's, on pollers of their own, wait no longer than a poll. The bound on the high lane is
/// the (1 s, measured about 0.12 s here); the test also holds it to a tenth of the normal
/// lane's median wait, so a slow machine that stretches everything cannot pass a lane that
/// shares its consumers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_normal_jobs_does_not_delay_high_ones() {
    let dev = DevServer::start(&[
        "--concurrency",
        "1",
        "--high-concurrency",
        "1",
        "--queue-log-interval",
        "0s",
    ])
    .await;
    let run = load(
        &dev.base_url,
        &[
            "--rate",
            "100",
            "--duration",
            "10s",
            "--kind",
            "sleep",
            "--sleep-ms",
            "200",
            "--high-share",
            "0.05",
            "--follow",
        ],
    )
    .await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let lanes = &run.report["lanes"];
    assert_eq!(lanes["high"]["accepted"], 50, "{lanes}");
    assert_eq!(lanes["normal"]["accepted"], 950, "{lanes}");
    let wait = |lane: &str, p: &str| lanes[lane]["queue_wait"][p].as_f64().unwrap();
    assert!(
        wait("normal", "p50_ms") > 2000.0,
        "the normal lane did not queue, so the run shows nothing: {lanes}"
    );
    assert!(
        wait("high", "p99_ms") < 1000.0 && wait("high", "p99_ms") < wait("normal", "p50_ms") / 10.0,
        "high jobs waited behind normal ones: {lanes}"
    );
    assert_eq!(dev.stop_with("-TERM").await, Some(0));
}

/// Issue 17's acceptance for fairness: four owners at 4 jobs/s each, alone and then beside a
/// fifth submitting 20 times their rate (96 jobs/s in all, about twice what one poller of ten
/// 200 ms jobs takes). The queue serves the quietest owners first, as SQS fair queues do, so their
/// p99 wait stays within twice their solo run's (measured about 1.0x: 200 ms both times) while the
/// noisy owner's own jobs queue for seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_noisy_owner_does_not_raise_the_others_queue_wait() {
    let run = |args: &'static [&'static str]| async move {
        let dev = DevServer::start(&[
            "--concurrency",
            "1",
            "--callers-from-header",
            "--queue-log-interval",
            "0s",
        ])
        .await;
        let common = [
            "--duration",
            "10s",
            "--kind",
            "sleep",
            "--sleep-ms",
            "200",
            "--follow",
        ];
        let run = load(&dev.base_url, &[&common[..], args].concat()).await;
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        assert_eq!(dev.stop_with("-TERM").await, Some(0));
        run.report
    };
    let solo = run(&["--rate", "16", "--owners", "4"]).await;
    let noisy = run(&[
        "--rate",
        "96",
        "--owners",
        "5",
        "--noisy-owner-factor",
        "20",
    ])
    .await;
    let p = |figures: &Value, p: &str| figures["queue_wait"][p].as_f64().unwrap();
    let alone = p(&solo["follow"], "p99_ms");
    let beside = p(&noisy["quiet_owners"], "p99_ms");
    assert_eq!(noisy["quiet_owners"]["accepted"], 160, "{noisy}");
    assert!(
        p(&noisy["owners"]["owner-0"], "p50_ms") > 2000.0,
        "the noisy owner's jobs did not queue, so the run shows nothing: {}",
        noisy["owners"]
    );
    assert!(
        beside <= 2.0 * alone,
        "the others' p99 queue wait went from {alone} ms alone to {beside} ms beside the noisy owner"
    );
}

#[tokio::test]
async fn rejections_are_counted_by_status() {
    let dev = DevServer::start(&[]).await;
    let run = load(
        &dev.base_url,
        &["--rate", "50", "--duration", "1s", "--kind", "no-such-kind"],
    )
    .await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.report["accepted"], 0);
    assert_eq!(run.report["rejected"], json!({"422": 50}));
    assert_eq!(run.report["intake_latency"], Value::Null);
    assert_eq!(dev.stop_with("-TERM").await, Some(0));
}

#[tokio::test]
async fn a_slow_server_does_not_slow_the_schedule() {
    let delay = Duration::from_millis(300);
    let url = serve(accepting(delay, Arc::default())).await;
    let run = load(&url, &["--rate", "50", "--duration", "1s"]).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    // A closed-loop client on one connection would have sent four; open loop sends all fifty on
    // time and the wait shows up as latency.
    assert_eq!(run.report["sent"], 50);
    assert_eq!(run.report["accepted"], 50);
    assert!(run.report["intake_latency"]["p50_ms"].as_f64().unwrap() >= 300.0);
}

#[tokio::test]
async fn requests_over_the_in_flight_limit_are_dropped_and_counted() {
    // No answer comes back before the schedule ends.
    let url = serve(accepting(Duration::from_secs(2), Arc::default())).await;
    let run = load(
        &url,
        &["--rate", "40", "--duration", "1s", "--max-in-flight", "5"],
    )
    .await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let report = &run.report;
    assert_eq!(report["scheduled"], 40);
    assert_eq!(report["sent"], 5, "only five fit");
    assert_eq!(report["dropped"], 35);
}

#[tokio::test]
async fn jobs_that_vanish_or_never_finish_are_reported_lost() {
    let jobs = Arc::new(AtomicU64::new(0));
    let router = accepting(Duration::ZERO, jobs.clone()).merge(Router::new().route(
        "/jobs/{id}",
        get(|Path(id): Path<String>| async move {
            // Even jobs are unknown; odd ones stay pending.
            let n: u64 = id.rsplit('-').next().unwrap().parse().unwrap();
            if n.is_multiple_of(2) {
                StatusCode::NOT_FOUND.into_response()
            } else {
                let now = "2026-12-02T10:00:00.000Z";
                json_body(
                    json!({"id": id, "status": "pending", "created_at": now, "updated_at": now}),
                )
                .into_response()
            }
        }),
    ));
    let url = serve(router).await;
    let run = load(
        &url,
        &[
            "--rate",
            "30",
            "--duration",
            "1s",
            "--follow",
            "--follow-timeout",
            "2s",
        ],
    )
    .await;
    assert_eq!(run.code, Some(1), "lost jobs fail the run: {}", run.stderr);
    assert!(
        run.stderr.contains("30 accepted jobs were lost"),
        "{}",
        run.stderr
    );
    let follow = &run.report["follow"];
    assert_eq!(follow["not_found"], 15);
    assert_eq!(follow["not_terminal"], 15);
    assert_eq!(follow["lost"], 30);
    assert_eq!(follow["final_states"], json!({"pending": 15}));
    assert_eq!(follow["lost_ids"].as_array().unwrap().len(), 10);
    assert_eq!(jobs.load(Ordering::Relaxed), 30);
}

/// The run every signing test makes: 20 jobs a second for 2 s, followed to the end.
const SIGNED_RUN: [&str; 9] = [
    "--region",
    "us-east-1",
    "--rate",
    "20",
    "--duration",
    "2s",
    "--follow",
    "--follow-timeout",
    "30s",
];

#[tokio::test]
async fn with_iam_auth_every_request_passes_a_botocore_sigv4_verifier() {
    let credentials = TestCredentials::new(&unique_suffix());
    let verifier = Verifier::start(&credentials, "us-east-1").await;
    let mut args = vec!["--auth", "iam"];
    args.extend(SIGNED_RUN);
    let run = load_with_env(&verifier.url(), &args, &credentials.env()).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("signing every request with AWS SigV4 for execute-api in us-east-1"),
        "{}",
        run.stderr
    );
    let report = &run.report;
    assert_eq!(report["scheduled"], 40);
    assert_eq!(
        report["accepted"], 40,
        "every submission accepted: {report:#}"
    );
    assert_eq!(report["rejected"], json!({}));
    assert_eq!(report["errors"], json!({}));
    let follow = &report["follow"];
    assert_eq!(follow["final_states"], json!({"succeeded": 40}));
    assert_eq!(follow["lost"], 0);
    assert_eq!(follow["poll_errors"], 0);

    // Every submission and every poll (with its ?wait= query) was verified; nothing refused.
    let stats = verifier.stats().await;
    assert_eq!(stats["rejected"], 0, "{stats:#}");
    assert_eq!(stats["reasons"], json!({}), "{stats:#}");
    assert_eq!(stats["routes"]["POST /jobs"], 40, "{stats:#}");
    let polls = stats["routes"]["GET /jobs/{id}?wait"].as_u64().unwrap();
    assert!(polls >= 40, "{stats:#}");
    assert!(stats["verified"].as_u64().unwrap() >= 40 + 40, "{stats:#}");
}

#[tokio::test]
async fn the_verifier_refuses_unsigned_requests() {
    let credentials = TestCredentials::new(&unique_suffix());
    let verifier = Verifier::start(&credentials, "us-east-1").await;
    let mut args = vec!["--auth", "none"];
    args.extend(SIGNED_RUN);
    let run = load_with_env(&verifier.url(), &args, &credentials.env()).await;
    assert_eq!(
        run.code,
        Some(0),
        "nothing accepted, nothing lost: {}",
        run.stderr
    );
    assert_eq!(run.report["accepted"], 0);
    assert_eq!(run.report["rejected"], json!({"403": 40}));
    let stats = verifier.stats().await;
    assert_eq!(stats["verified"], 0, "{stats:#}");
    assert_eq!(stats["rejected"], 40, "{stats:#}");
    assert_eq!(stats["reasons"], json!({"missing": 40}), "{stats:#}");
}

#[tokio::test]
async fn the_verifier_refuses_a_signature_made_with_another_secret() {
    let credentials = TestCredentials::new(&unique_suffix());
    let verifier = Verifier::start(&credentials, "us-east-1").await;
    let wrong = TestCredentials {
        secret_access_key: "not-the-secret".to_owned(),
        ..credentials.clone()
    };
    let run = load_with_env(
        &verifier.url(),
        &[
            "--auth",
            "iam",
            "--region",
            "us-east-1",
            "--rate",
            "20",
            "--duration",
            "1s",
        ],
        &wrong.env(),
    )
    .await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.report["accepted"], 0);
    assert_eq!(run.report["rejected"], json!({"403": 20}));
    let stats = verifier.stats().await;
    assert_eq!(stats["verified"], 0, "{stats:#}");
    assert_eq!(stats["reasons"], json!({"mismatch": 20}), "{stats:#}");
}

#[tokio::test]
async fn without_credentials_a_signed_run_does_not_start() {
    let credentials = TestCredentials::new(&unique_suffix());
    let verifier = Verifier::start(&credentials, "us-east-1").await;
    let mut args = vec!["--auth", "iam"];
    args.extend(SIGNED_RUN);
    let run = load_with_env(&verifier.url(), &args, &no_credentials_env()).await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    for expected in [
        "no AWS credentials from the AWS SDK's default chain",
        "AWS_ACCESS_KEY_ID",
        "instance metadata",
    ] {
        assert!(run.stderr.contains(expected), "{expected}: {}", run.stderr);
    }
    assert_eq!(run.report, Value::Null, "no report: the run never started");
    let stats = verifier.stats().await;
    assert_eq!(stats["verified"], 0, "{stats:#}");
    assert_eq!(stats["rejected"], 0, "not one request was sent: {stats:#}");
}
