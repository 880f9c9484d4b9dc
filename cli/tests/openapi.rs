//! `docs/openapi.yaml` and `spillway dev` agree: Schemathesis (pinned in
//! tests/requirements-analysis.txt, installed by `scripts/tools`) generates requests from the
//! document, valid and invalid, sends them to a `spillway dev` started for it, and checks every
//! answer against the document. A bounded run with a fixed seed: 10 to 25 s on two cores.
//!
//! By hand, against a `spillway dev` on port 3000 and a webhook receiver on port 9000:
//!
//! ```sh
//! SCHEMATHESIS_HOOKS=tests/schemathesis/hooks.py SPILLWAY_WEBHOOK_SINK=127.0.0.1:9000 \
//!   "$(scripts/tools)/analysis/bin/schemathesis" run docs/openapi.yaml \
//!   --url http://127.0.0.1:3000 --checks all --exclude-checks use_after_free
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::StatusCode;
use tokio::process::Command;

use support::DevServer;

/// Test cases per operation and phase.
const MAX_EXAMPLES: &str = "100";
/// With `--generation-deterministic`, the same requests on every run, as far as the jobs'
/// timing (which answers a long poll gets, say) allows.
const SEED: &str = "7";

/// The test tools' folder: `SPILLWAY_TOOLS` as `scripts/test` exports it, or the default
/// `scripts/tools` installs into.
fn tools() -> PathBuf {
    if let Some(dir) = std::env::var_os("SPILLWAY_TOOLS") {
        return dir.into();
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache"));
    cache.join("spillway")
}

/// A webhook receiver on loopback that answers every request `204` and counts them: the hooks
/// send every generated webhook and callback here.
async fn receiver() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let received = Arc::new(AtomicUsize::new(0));
    let counter = received.clone();
    let app = axum::Router::new().fallback(move || {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::Relaxed);
            StatusCode::NO_CONTENT
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    (address, received)
}

#[tokio::test]
async fn schemathesis_finds_the_openapi_document_and_spillway_dev_in_agreement() {
    let repo = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let schemathesis = tools().join("analysis/bin/schemathesis");
    assert!(
        schemathesis.is_file(),
        "{} is missing: run `scripts/tools` (`scripts/test` does), or set SPILLWAY_TOOLS to \
         the folder it printed",
        schemathesis.display()
    );
    let (sink, received) = receiver().await;
    // Retries at once, so that failing jobs end in milliseconds and long polls return early.
    let dev =
        DevServer::start(&["--backoff-base-seconds", "0", "--backoff-max-seconds", "0"]).await;
    // Schemathesis and Hypothesis keep files in their working directory.
    let work = std::env::temp_dir().join(format!("spillway-schemathesis-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();

    let run = Command::new(&schemathesis)
        .arg("run")
        .arg(repo.join("docs/openapi.yaml"))
        .args(["--url", &dev.base_url])
        // Every check but one: DELETE /jobs/{id} cancels a job, which GET then shows as
        // `cancelled`, as the document says; Schemathesis's use-after-free check expects a
        // deleted resource to be gone.
        .args(["--checks", "all", "--exclude-checks", "use_after_free"])
        .args(["--max-examples", MAX_EXAMPLES, "--seed", SEED])
        .args(["--generation-deterministic", "--workers", "1"])
        // A long poll may rightly take its whole `wait`, up to 20 s.
        .args(["--request-timeout", "30", "--no-color"])
        .env(
            "SCHEMATHESIS_HOOKS",
            repo.join("tests/schemathesis/hooks.py"),
        )
        .env("SPILLWAY_WEBHOOK_SINK", &sink)
        .current_dir(&work)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("schemathesis did not finish within 5 minutes")
        .expect("run schemathesis");
    let _ = std::fs::remove_dir_all(&work);
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "schemathesis found the document and spillway dev at odds ({}):\n{report}",
        output.status
    );

    // Not a vacuous pass: every operation and phase ran, and requests of every kind were
    // accepted, ran, and delivered their webhooks.
    assert!(report.contains("Tested: 5"), "{report}");
    for phase in ["Examples", "Coverage", "Fuzzing", "Stateful"] {
        assert!(
            report.contains(&format!("✅ {phase}")),
            "{phase}:\n{report}"
        );
    }
    let accepted = dev.logged("accepted");
    for kind in ["echo", "sleep", "webhook"] {
        assert!(
            accepted.iter().any(|line| line["kind"] == kind),
            "no `{kind}` job was accepted:\n{report}"
        );
    }
    assert!(
        received.load(Ordering::Relaxed) > 0,
        "no webhook reached the receiver"
    );
    assert_eq!(dev.stop_with("-TERM").await, Some(0));
}
