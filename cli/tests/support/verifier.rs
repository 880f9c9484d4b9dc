//! A SigV4 verifier on 127.0.0.1 (`tests/sigv4/verifier.py`): it plays a Spillway stage behind
//! IAM authorization, recomputing every request's signature with botocore, and counts what it
//! verified and what it refused.

use serde_json::Value;
use spillway_tests::python::PythonServer;

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
    server: PythonServer,
}

impl Verifier {
    /// Starts a verifier that accepts requests signed with `credentials` for `execute-api` in
    /// `region`, and waits until it listens. Runs `python` from PATH, as `scripts/test` sets it.
    pub async fn start(credentials: &TestCredentials, region: &str) -> Self {
        let mut args = vec![
            "--region",
            region,
            "--access-key-id",
            credentials.access_key_id.as_str(),
            "--secret-access-key",
            credentials.secret_access_key.as_str(),
        ];
        if let Some(token) = &credentials.session_token {
            args.extend(["--session-token", token.as_str()]);
        }
        let server =
            PythonServer::start("the SigV4 verifier", "tests/sigv4/verifier.py", &args, HINT).await;
        Self { server }
    }

    /// The verifier's base URL.
    pub fn url(&self) -> String {
        self.server.url("")
    }

    /// `{"verified": n, "rejected": m, "reasons": {reason: count}, "routes": {route: count}}`.
    pub async fn stats(&self) -> Value {
        let url = reqwest::Url::parse(&self.server.url("/stats")).unwrap();
        self.server.get_json(url).await
    }
}
