//! Helpers shared by the command-line tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod verifier;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

/// A running `spillway dev`, killed when dropped.
pub struct DevServer {
    child: Child,
    pub base_url: String,
    pub logs: Arc<Mutex<Vec<Value>>>,
    /// Reads the log into `logs` until the server's stdout closes.
    reader: JoinHandle<()>,
}

impl DevServer {
    /// Starts `spillway dev --port 0 --log-format json` with `args`, and waits until it listens.
    pub async fn start(args: &[&str]) -> Self {
        Self::start_with_env(args, &[]).await
    }

    /// [`DevServer::start`] with these variables set too (`SPILLWAY_*` settings).
    pub async fn start_with_env(args: &[&str], env: &[(&str, String)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_spillway"))
            .args(["dev", "--port", "0", "--log-format", "json"])
            .args(args)
            .envs(env.iter().map(|(name, value)| (name, value)))
            .env_remove("AWS_ENDPOINT_URL")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start spillway dev");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (address_tx, address_rx) = tokio::sync::oneshot::channel();
        let collected = logs.clone();
        let reader = tokio::spawn(async move {
            let mut address_tx = Some(address_tx);
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(entry) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if let Some(address) = entry["address"].as_str()
                    && let Some(tx) = address_tx.take()
                {
                    let _ = tx.send(address.to_owned());
                }
                collected.lock().unwrap().push(entry);
            }
        });
        let base_url = tokio::time::timeout(Duration::from_secs(60), address_rx)
            .await
            .expect("spillway dev did not start listening within a minute")
            .expect("spillway dev exited before listening");
        Self {
            child,
            base_url,
            logs,
            reader,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    pub async fn submit(&self, body: Value) -> String {
        let response = reqwest::Client::new()
            .post(self.url("/jobs"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        let accepted: Value = response.json().await.unwrap();
        assert_eq!(
            location,
            format!("/jobs/{}", accepted["id"].as_str().unwrap())
        );
        accepted["id"].as_str().unwrap().to_owned()
    }

    pub async fn wait_for(&self, id: &str, seconds: u64) -> Value {
        let url = self.url(&format!("/jobs/{id}?wait={seconds}"));
        let response = reqwest::get(url).await.unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// Log lines whose message is `message`.
    pub fn logged(&self, message: &str) -> Vec<Value> {
        let logs = self.logs.lock().unwrap();
        logs.iter()
            .filter(|e| e["message"] == message)
            .cloned()
            .collect()
    }

    /// Sends `signal` and returns the exit code, once `logs` holds every line the server wrote:
    /// its exit can be seen before the last lines are read from the pipe.
    pub async fn stop_with(mut self, signal: &str) -> Option<i32> {
        let pid = self.child.id().unwrap().to_string();
        let sent = std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap();
        assert!(sent.success());
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
        let code = status
            .expect("spillway dev did not stop within 30 s")
            .unwrap()
            .code();
        tokio::time::timeout(Duration::from_secs(10), self.reader)
            .await
            .expect("spillway dev's stdout did not close within 10 s of its exit")
            .unwrap();
        code
    }
}
