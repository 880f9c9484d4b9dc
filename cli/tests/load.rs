//! `spillway load` over real HTTP: against `spillway dev`, and against small servers that answer
//! slowly or lose jobs, to show that the generator keeps its schedule and reports what it saw.
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

/// What one `spillway load` run left behind.
struct Run {
    code: Option<i32>,
    stderr: String,
    report: Value,
}

/// Runs `spillway load --url URL --json FILE ARGS…` and reads its JSON report.
async fn load(url: &str, args: &[&str]) -> Run {
    let dir = std::env::temp_dir().join(format!("spillway-load-{}", unique_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("report.json");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_spillway"))
        .args(["load", "--url", url, "--json"])
        .arg(&json)
        .args(args)
        .output()
        .await
        .expect("run spillway load");
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
