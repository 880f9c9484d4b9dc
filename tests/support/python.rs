//! The servers written in Python that tests talk to (`tests/webhooks/receiver.py`,
//! `tests/sigv4/verifier.py`): each runs with `python` from PATH, listens on a free port of
//! 127.0.0.1 and prints `{"port": N}` on one line once it does (`tests/support/loopback.py`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long a server may take to print its port: Python's start on a busy machine.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout of one request to a server's own API.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A Python server process on 127.0.0.1, stopped by PID on drop.
#[derive(Debug)]
pub struct PythonServer {
    /// What it is, as panics name it: "the webhook receiver", say.
    name: &'static str,
    child: Child,
    port: u16,
    client: reqwest::Client,
}

impl PythonServer {
    /// Runs `python` from PATH, as `scripts/test` sets it, with `script` (a path from the
    /// workspace's root) and `args`, and waits until the server prints its port. `hint` says what
    /// the server needs from the machine, for the panic when it cannot start.
    pub async fn start(name: &'static str, script: &str, args: &[&str], hint: &str) -> Self {
        let mut child = Command::new("python")
            .arg(crate::workspace_root().join(script))
            .args(args)
            // Importing tests/support/loopback.py leaves no __pycache__ in the source tree.
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run `python` ({error}); {hint}"));

        let stdout = child.stdout.take().expect("the server's stdout is piped");
        let mut line = String::new();
        let read =
            tokio::time::timeout(START_TIMEOUT, BufReader::new(stdout).read_line(&mut line)).await;
        let port = match read {
            Ok(Ok(0)) => {
                let status = child.wait().await;
                panic!("{name} exited before listening ({status:?}; its error is above); {hint}")
            }
            Ok(Ok(_)) => serde_json::from_str::<Value>(&line)
                .ok()
                .and_then(|value| value["port"].as_u64())
                .and_then(|port| u16::try_from(port).ok())
                .unwrap_or_else(|| panic!("{name} printed {line:?}, not its port")),
            Ok(Err(error)) => panic!("reading the port of {name}: {error}"),
            Err(_) => panic!("{name} did not print its port in {START_TIMEOUT:?}"),
        };
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .expect("build the client of a Python server");
        Self {
            name,
            child,
            port,
            client,
        }
    }

    /// The server's URL for `path` (which may carry a query): `http://127.0.0.1:{port}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// A client for the server's own API: no proxy, and [`REQUEST_TIMEOUT`] for each request.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// GETs `url` from the server, which must answer 200 with JSON: returns that JSON.
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, url: reqwest::Url) -> T {
        let name = self.name;
        let response = self
            .client
            .get(url.clone())
            .send()
            .await
            .unwrap_or_else(|error| panic!("asking {name} {url}: {error}"));
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert!(
            status == reqwest::StatusCode::OK,
            "{name} answered {url} with {status}: {body}"
        );
        serde_json::from_str(&body)
            .unwrap_or_else(|error| panic!("the answer of {name} to {url}: {error}: {body}"))
    }
}

impl Drop for PythonServer {
    fn drop(&mut self) {
        // Kills this child only, by its PID (kill_on_drop would too; this makes it explicit).
        let _ = self.child.start_kill();
    }
}
