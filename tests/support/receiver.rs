//! A real webhook receiver on 127.0.0.1 (`tests/webhooks/receiver.py`): it checks each delivery's
//! Standard Webhooks signature with the reference Python library, records the deliveries, and
//! answers with the responses a test scripted for each path.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::python::PythonServer;

/// How often [`Receiver::wait_for_deliveries`] asks for the deliveries.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
const HINT: &str = "the webhook receiver needs `python` with the `standardwebhooks` package on \
                    PATH: run the tests through `scripts/test`, which installs it in the test \
                    tools' venv and puts that first on PATH";

/// A webhook receiver process (tests/webhooks/receiver.py) on 127.0.0.1, stopped by PID on drop.
#[derive(Debug)]
pub struct Receiver {
    server: PythonServer,
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
        let args: Vec<&str> = secrets
            .iter()
            .flat_map(|&secret| ["--secret", secret])
            .collect();
        let server = PythonServer::start(
            "the webhook receiver",
            "tests/webhooks/receiver.py",
            &args,
            HINT,
        )
        .await;
        Self { server }
    }

    /// The receiver's URL for `path` (which may carry a query): `http://127.0.0.1:{port}{path}`.
    pub fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    /// Queues `responses` (a JSON array of `{"status", "headers"?, "body"?, "delay_seconds"?}`)
    /// for the next deliveries to `path`, after those already queued. A delivery finding no
    /// scripted response left gets 200 `{"ok": true}`; `delay_seconds` holds the answer back
    /// (the delivery is recorded at once) to play a receiver that hangs.
    pub async fn script(&self, path: &str, responses: Value) {
        let response = self
            .server
            .client()
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
        self.server.get_json(url).await
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
        let body: Value = self.server.get_json(url).await;
        body["connections"]
            .as_u64()
            .unwrap_or_else(|| panic!("the webhook receiver answered {body} for its connections"))
    }
}
