//! A SigV4 verifier on 127.0.0.1 (`tests/sigv4/verifier.py`): it plays a Spillway stage behind
//! IAM authorization, recomputing every request's signature with botocore, and counts what it
//! verified and what it refused.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long the verifier may take to print its port: Python's start on a busy machine.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const HINT: &str = "the SigV4 verifier needs `python` with `botocore` on PATH: run the tests \
                    through `scripts/test`, which puts the test tools' venv (moto brings \
                    botocore) first on PATH";

/// Throwaway AWS credentials, different for each test.
#[derive(Debug, Clone)]
pub struct TestCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl TestCredentials {
    /// Credentials with a session token, named after `suffix`.
    pub fn new(suffix: &str) -> Self {
        Self {
            access_key_id: format!("AKIDSPILLWAYTEST{suffix}"),
            secret_access_key: format!("spillway-test-secret-{suffix}"),
            session_token: Some(format!("spillway-test-session-token-{suffix}")),
        }
    }

    /// The environment that gives `spillway load` these credentials and no others: the rest of
    /// the SDK's chain (profile files, web identity, container and instance credentials) is
    /// switched off, so that nothing on the machine can answer instead.
    pub fn env(&self) -> Vec<(&'static str, Option<String>)> {
        let mut env = no_credentials_env();
        env.extend([
            ("AWS_ACCESS_KEY_ID", Some(self.access_key_id.clone())),
            (
                "AWS_SECRET_ACCESS_KEY",
                Some(self.secret_access_key.clone()),
            ),
            ("AWS_SESSION_TOKEN", self.session_token.clone()),
        ]);
        env
    }
}

/// An environment in which the SDK's credentials chain finds nothing.
pub fn no_credentials_env() -> Vec<(&'static str, Option<String>)> {
    let nowhere = std::env::temp_dir()
        .join("spillway-no-such-aws-file")
        .display()
        .to_string();
    vec![
        ("AWS_ACCESS_KEY_ID", None),
        ("AWS_SECRET_ACCESS_KEY", None),
        ("AWS_SESSION_TOKEN", None),
        ("AWS_PROFILE", None),
        ("AWS_CONFIG_FILE", Some(nowhere.clone())),
        ("AWS_SHARED_CREDENTIALS_FILE", Some(nowhere)),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", None),
        ("AWS_ROLE_ARN", None),
        ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", None),
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", None),
        ("AWS_EC2_METADATA_DISABLED", Some("true".to_owned())),
    ]
}

/// A verifier process (tests/sigv4/verifier.py) on 127.0.0.1, stopped by PID on drop.
#[derive(Debug)]
pub struct Verifier {
    child: Child,
    port: u16,
    client: reqwest::Client,
}

impl Verifier {
    /// Starts a verifier that accepts requests signed with `credentials` for `execute-api` in
    /// `region`, and waits until it listens. Runs `python` from PATH, as `scripts/test` sets it.
    pub async fn start(credentials: &TestCredentials, region: &str) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/sigv4/verifier.py");
        let mut command = Command::new("python");
        command
            .arg(&script)
            .args(["--region", region])
            .args(["--access-key-id", &credentials.access_key_id])
            .args(["--secret-access-key", &credentials.secret_access_key]);
        if let Some(token) = &credentials.session_token {
            command.args(["--session-token", token]);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run `python` ({error}); {HINT}"));

        let stdout = child.stdout.take().expect("the verifier's stdout is piped");
        let mut line = String::new();
        let read =
            tokio::time::timeout(START_TIMEOUT, BufReader::new(stdout).read_line(&mut line)).await;
        let port = match read {
            Ok(Ok(0)) => {
                let status = child.wait().await;
                panic!(
                    "the SigV4 verifier exited before listening ({status:?}; its error is above); \
                     {HINT}"
                )
            }
            Ok(Ok(_)) => serde_json::from_str::<Value>(&line)
                .ok()
                .and_then(|value| value["port"].as_u64())
                .and_then(|port| u16::try_from(port).ok())
                .unwrap_or_else(|| panic!("the SigV4 verifier printed {line:?}, not its port")),
            Ok(Err(error)) => panic!("reading the SigV4 verifier's port: {error}"),
            Err(_) => panic!("the SigV4 verifier did not print its port in {START_TIMEOUT:?}"),
        };
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("build the stats client");
        Self {
            child,
            port,
            client,
        }
    }

    /// The verifier's base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `{"verified": n, "rejected": m, "reasons": {reason: count}, "routes": {route: count}}`.
    pub async fn stats(&self) -> Value {
        let url = format!("{}/stats", self.url());
        let response = self
            .client
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|error| panic!("asking the SigV4 verifier {url}: {error}"));
        assert_eq!(response.status(), reqwest::StatusCode::OK, "{url}");
        response.json().await.unwrap()
    }
}

impl Drop for Verifier {
    fn drop(&mut self) {
        // Kills this child only, by its PID.
        let _ = self.child.start_kill();
    }
}
