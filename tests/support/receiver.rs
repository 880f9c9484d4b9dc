//! A real webhook receiver on 127.0.0.1 (`tests/webhooks/receiver.py`): it checks each delivery's
//! Standard Webhooks signature with the reference Python library, records the deliveries, and
//! answers with the responses a test scripted for each path.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long the receiver may take to print its port: Python's start on a busy machine.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How often [`Receiver::wait_for_deliveries`] asks for the deliveries.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Timeout of one control call.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(30);
const HINT: &str = "the webhook receiver needs `python` with the `standardwebhooks` package on \
                    PATH: run the tests through `scripts/test`, which installs it in the test \
                    tools' venv and puts that first on PATH";

/// A webhook receiver process (tests/webhooks/receiver.py) on 127.0.0.1, stopped by PID on drop.
#[derive(Debug)]
pub struct Receiver {
    child: Child,
    port: u16,
    client: reqwest::Client,
}

/// One request the receiver got on a path other than its control API's (`/_control/...`).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Delivery {
    /// The URL path, without the query.
    pub path: String,
    /// The URL query, without `?`; empty when there was none.
    pub query: String,
    pub method: String,
    /// Header names in lower case; repeated headers joined with `, `.
    pub headers: HashMap<String, String>,
    /// The body as UTF-8 (invalid bytes replaced).
    pub body: String,
    /// When it arrived, in seconds since the Unix epoch.
    pub received_at: f64,
    /// Whether the signature verified with any of the receiver's secrets.
    pub verified: bool,
    /// Why it did not verify (one line per distinct failure); `None` when verified.
    pub verify_error: Option<String>,
}

impl Receiver {
    /// Starts a receiver that verifies signatures with any of `secrets` (`whsec_...`), and waits
    /// until it listens. Runs `python` from PATH, as `scripts/test` sets it.
    pub async fn start(secrets: &[&str]) -> Self {
        assert!(
            !secrets.is_empty(),
            "the webhook receiver needs at least one secret"
        );
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("webhooks/receiver.py");
        let mut command = Command::new("python");
        command.arg(&script);
        for secret in secrets {
            command.arg("--secret").arg(secret);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run `python` ({error}); {HINT}"));

        let stdout = child.stdout.take().expect("the receiver's stdout is piped");
        let mut line = String::new();
        let read =
            tokio::time::timeout(START_TIMEOUT, BufReader::new(stdout).read_line(&mut line)).await;
        let port = match read {
            Ok(Ok(0)) => {
                let status = child.wait().await;
                panic!(
                    "the webhook receiver exited before listening ({status:?}; its error is \
                     above); {HINT}"
                )
            }
            Ok(Ok(_)) => serde_json::from_str::<Value>(&line)
                .ok()
                .and_then(|value| value["port"].as_u64())
                .and_then(|port| u16::try_from(port).ok())
                .unwrap_or_else(|| panic!("the webhook receiver printed {line:?}, not its port")),
            Ok(Err(error)) => panic!("reading the webhook receiver's port: {error}"),
            Err(_) => panic!("the webhook receiver did not print its port in {START_TIMEOUT:?}"),
        };
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(CONTROL_TIMEOUT)
            .build()
            .expect("build the control client");
        Self {
            child,
            port,
            client,
        }
    }

    /// The receiver's URL for `path` (which may carry a query): `http://127.0.0.1:{port}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Queues `responses` (a JSON array of `{"status", "headers"?, "body"?, "delay_seconds"?}`)
    /// for the next deliveries to `path`, after those already queued. A delivery finding no
    /// scripted response left gets 200 `{"ok": true}`; `delay_seconds` holds the answer back
    /// (the delivery is recorded at once) to play a receiver that hangs.
    pub async fn script(&self, path: &str, responses: Value) {
        let response = self
            .client
            .post(self.url("/_control/script"))
            .json(&json!({ "path": path, "responses": responses }))
            .send()
            .await
            .unwrap_or_else(|error| panic!("scripting the webhook receiver: {error}"));
        let status = response.status();
        if status != reqwest::StatusCode::NO_CONTENT {
            let body = response.text().await.unwrap_or_default();
            panic!("the webhook receiver refused the script ({status}): {body}");
        }
    }

    /// Every delivery to `path` so far, oldest first.
    pub async fn deliveries(&self, path: &str) -> Vec<Delivery> {
        let mut url = reqwest::Url::parse(&self.url("/_control/deliveries")).unwrap();
        url.query_pairs_mut().append_pair("path", path);
        self.get(url).await
    }

    /// The deliveries to `path` once there are at least `n` (all of them, oldest first), asked
    /// for every 50 ms; panics with those there are if there are fewer after `timeout`.
    pub async fn wait_for_deliveries(
        &self,
        path: &str,
        n: usize,
        timeout: Duration,
    ) -> Vec<Delivery> {
        let deadline = Instant::now() + timeout;
        loop {
            let deliveries = self.deliveries(path).await;
            if deliveries.len() >= n {
                return deliveries;
            }
            if Instant::now() >= deadline {
                panic!(
                    "expected {n} deliveries to {path} within {timeout:?}, got {}: \
                     {deliveries:#?}",
                    deliveries.len()
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// How many TCP connections the receiver accepted that carried no control call: 0 proves
    /// that nothing was sent to it. A keep-alive connection counts once however many requests
    /// it carried.
    pub async fn connections(&self) -> u64 {
        let url = reqwest::Url::parse(&self.url("/_control/connections")).unwrap();
        let body: Value = self.get(url).await;
        body["connections"]
            .as_u64()
            .unwrap_or_else(|| panic!("the webhook receiver answered {body} for its connections"))
    }

    /// A control GET answered 200 with JSON.
    async fn get<T: serde::de::DeserializeOwned>(&self, url: reqwest::Url) -> T {
        let response = self
            .client
            .get(url.clone())
            .send()
            .await
            .unwrap_or_else(|error| panic!("asking the webhook receiver {url}: {error}"));
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert!(
            status == reqwest::StatusCode::OK,
            "the webhook receiver answered {url} with {status}: {body}"
        );
        serde_json::from_str(&body).unwrap_or_else(|error| {
            panic!("the webhook receiver's answer to {url}: {error}: {body}")
        })
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        // Kills this child only, by its PID (kill_on_drop would too; this makes it explicit).
        let _ = self.child.start_kill();
    }
}
