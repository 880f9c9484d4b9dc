//! A Lambda function of the tests' own, written in Python, answering Lambda's `Invoke` as AWS does:
//! the handler runs in `tests/lambda/bootstrap.py` (a custom runtime's loop) against a Runtime API
//! emulator, and [`PythonFunction::invoke`] answers as Lambda's `Invoke` does for a
//! `RequestResponse` call: the value returned, or `X-Amz-Function-Error: Unhandled` with the error
//! the function raised, or with `Sandbox.Timedout` when it ran past its timeout. The AWS proxy
//! serves it at its ARN ([`crate::aws_proxy::AwsProxy::serve_function`]), after checking the
//! caller's `lambda:InvokeFunction`, because moto's Lambda needs Docker.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use spillway_bench::RuntimeApi;
use spillway_bench::runtime_api::InvokeError;
use tokio::process::{Child, Command};

/// A Python handler, running, invoked one event at a time.
#[derive(Debug)]
pub struct PythonFunction {
    timeout: Duration,
    runtime: RuntimeApi,
    _process: Child,
    invocations: AtomicU32,
}

impl PythonFunction {
    /// Starts `handler` (`module.function` of `tests/lambda/`) with `python` from PATH, as a
    /// function whose timeout is `timeout`.
    pub async fn start(handler: &str, timeout: Duration) -> Self {
        let runtime = RuntimeApi::start_with_timeout(timeout).await.unwrap();
        let dir = crate::workspace_root().join("tests/lambda");
        let process = Command::new("python")
            .arg(dir.join("bootstrap.py"))
            .current_dir(&dir)
            .env("AWS_LAMBDA_RUNTIME_API", runtime.address())
            .env("_HANDLER", handler)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run `python` ({e}); run the tests via scripts/test")
            });
        Self {
            timeout,
            runtime,
            _process: process,
            invocations: AtomicU32::new(0),
        }
    }

    /// Serves Lambda's `Invoke` API on a free loopback port, every function name answered by
    /// this function, as `sam local start-lambda` serves a template's functions: the endpoint to
    /// give an SDK client (`spillway dev --lambda-endpoint-url`). Stops with the test's runtime.
    pub async fn serve(self: Arc<Self>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let app = axum::Router::new().route(
            "/2015-03-31/functions/{name}/invocations",
            axum::routing::post(|body: Bytes| async move { self.invoke(body).await }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{address}")
    }

    /// How many times it was invoked.
    pub fn invocations(&self) -> u32 {
        self.invocations.load(Ordering::SeqCst)
    }

    /// Lambda's answer to a `RequestResponse` `Invoke` with `event`.
    pub async fn invoke(&self, event: Bytes) -> Response {
        self.invocations.fetch_add(1, Ordering::SeqCst);
        let answered = tokio::time::timeout(self.timeout, self.runtime.invoke(event)).await;
        let error = match answered {
            Ok(Ok(value)) => return (executed(), value).into_response(),
            Ok(Err(InvokeError::Function(error))) => error,
            Ok(Err(InvokeError::NoAnswer)) => json!({
                "errorType": "Runtime.ExitError",
                "errorMessage": "the runtime exited without answering"
            })
            .to_string(),
            // The sandbox is not reset as Lambda's is: the next invocation waits for this one.
            Err(_) => json!({
                "errorType": "Sandbox.Timedout",
                "errorMessage": format!(
                    "Task timed out after {:.2} seconds",
                    self.timeout.as_secs_f64()
                )
            })
            .to_string(),
        };
        let mut response = (executed(), error).into_response();
        response
            .headers_mut()
            .insert("x-amz-function-error", "Unhandled".parse().unwrap());
        response
    }
}

fn executed() -> [(&'static str, &'static str); 2] {
    [
        ("x-amz-executed-version", "$LATEST"),
        ("content-type", "application/json"),
    ]
}
