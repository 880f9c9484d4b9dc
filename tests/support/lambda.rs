//! A deployed function's binary run as Lambda runs it: a process started with exactly the
//! environment its template entry gives it plus the variables Lambda itself sets (the Runtime API
//! address, its name, memory, log format and level, its role's temporary credentials), serving
//! invocations through a Runtime API emulator. What Lambda does with the role besides (delivering
//! the function's output to its log group, sending its X-Ray segments) is done too, with the
//! same credentials, so a policy that forgot those permissions fails here as in AWS.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials as SdkCredentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use serde::Deserialize;
use serde_json::{Value, json};
use spillway_bench::RuntimeApi;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::deployment::{Function, Manifest};

/// How long past its own timeout an invocation may take to answer before the test gives up:
/// Lambda would have stopped it by then.
const GRACE: Duration = Duration::from_secs(5);

/// Temporary credentials of a role, as `tests/deploy/stack.py assume` prints them.
#[derive(Debug, Clone, Deserialize)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    /// The assumed-role ARN the credentials act as.
    pub principal: String,
}

impl Credentials {
    /// Assumes `role_arn` on the emulator at `endpoint`, as Lambda does for a function.
    pub fn assume(endpoint: &str, role_arn: &str, session_name: &str) -> Self {
        let output = std::process::Command::new("python3")
            .arg(crate::workspace_root().join("tests/deploy/stack.py"))
            .args(["assume", "--endpoint", endpoint, "--role-arn", role_arn])
            .args(["--session-name", session_name])
            .stderr(Stdio::inherit())
            .output()
            .expect("run tests/deploy/stack.py assume");
        assert!(output.status.success(), "assuming {role_arn} failed");
        serde_json::from_slice(&output.stdout).unwrap()
    }
}

/// A function's process, serving invocations, stopped when dropped.
#[derive(Debug)]
pub struct LambdaFunction {
    /// Its logical id in the template.
    pub logical_id: String,
    function: Function,
    runtime: RuntimeApi,
    child: Mutex<Child>,
    output: Arc<Mutex<Output>>,
    platform: Platform,
}

/// What the process printed: all of it, and what is not yet delivered to its log group.
#[derive(Debug, Default)]
struct Output {
    all: String,
    undelivered: Vec<(u128, String)>,
}

impl LambdaFunction {
    /// Starts `logical_id`'s binary (`bootstrap` in its code directory, as `sam build` left it)
    /// with its template environment, signing its AWS calls with `credentials` and sending them
    /// to `endpoint` (the AWS emulator, or a proxy in front of it).
    pub async fn start(
        manifest: &Manifest,
        logical_id: &str,
        credentials: &Credentials,
        endpoint: &str,
    ) -> Self {
        let function = manifest.functions[logical_id].clone();
        let code_dir = function.code_dir.clone().unwrap_or_else(|| {
            panic!("{logical_id}: its CodeUri is no local directory; deploy the template `sam build` wrote")
        });
        let bootstrap = code_dir.join("bootstrap");
        assert!(
            bootstrap.is_file(),
            "{logical_id}: {} does not exist; the test command runs `sam build`",
            bootstrap.display()
        );
        let runtime = RuntimeApi::start_with_timeout(Duration::from_secs(function.timeout))
            .await
            .unwrap();
        let platform = Platform::new(manifest, &function, credentials, endpoint);
        let mut command = Command::new(&bootstrap);
        command
            .current_dir(&code_dir)
            .env_clear()
            .envs(lambda_environment(
                manifest,
                &function,
                credentials,
                &runtime,
            ))
            .env("AWS_ENDPOINT_URL", endpoint)
            .envs(&function.environment)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bootstrap.display()));
        let output = Arc::new(Mutex::new(Output::default()));
        collect(child.stdout.take().unwrap(), output.clone());
        collect(child.stderr.take().unwrap(), output.clone());
        platform.create_log_stream().await;
        Self {
            logical_id: logical_id.to_owned(),
            function,
            runtime,
            child: Mutex::new(child),
            output,
            platform,
        }
    }

    /// Invokes the function with `event` and returns its answer; `Err` holds the error it
    /// reported, or why it gave none (it exited: a failed cold start, say), with its output.
    pub async fn invoke(&self, event: &Value) -> Result<Value, String> {
        let started = SystemTime::now();
        let answer = self.runtime.invoke(event.to_string());
        let limit = Duration::from_secs(self.function.timeout) + GRACE;
        let outcome = tokio::select! {
            answer = answer => answer.map_err(|e| e.to_string()),
            () = self.exited() => Err("the process exited".to_owned()),
            () = tokio::time::sleep(limit) => Err(format!("no answer within {limit:?}")),
        };
        // Give the reader tasks a moment to take the last lines.
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.platform.deliver(&self.output, started).await;
        match outcome {
            Ok(body) => Ok(serde_json::from_slice(&body).unwrap_or_else(|e| {
                panic!(
                    "{} answered something that is not JSON ({e})",
                    self.logical_id
                )
            })),
            Err(why) => Err(format!(
                "{} failed: {why}; init error: {:?}\n--- its output ---\n{}",
                self.logical_id,
                self.runtime.init_error(),
                self.output()
            )),
        }
    }

    /// Like [`Self::invoke`], for an invocation that must answer.
    pub async fn invoke_ok(&self, event: &Value) -> Value {
        self.invoke(event).await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// Everything the process printed so far.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().all.clone()
    }

    /// Resolves when the process has exited.
    async fn exited(&self) {
        loop {
            if !matches!(self.child.lock().unwrap().try_wait(), Ok(None)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The variables Lambda sets for every function (`provided.al2023`), with the function's own.
fn lambda_environment(
    manifest: &Manifest,
    function: &Function,
    credentials: &Credentials,
    runtime: &RuntimeApi,
) -> BTreeMap<&'static str, String> {
    let mut env = BTreeMap::from([
        ("PATH", "/usr/local/bin:/usr/bin/:/bin:/opt/bin".to_owned()),
        ("LANG", "en_US.UTF-8".to_owned()),
        ("TZ", ":UTC".to_owned()),
        ("_HANDLER", function.handler.clone()),
        ("AWS_LAMBDA_RUNTIME_API", runtime.address()),
        ("AWS_LAMBDA_FUNCTION_NAME", function.name.clone()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
        (
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
            function.memory_size.to_string(),
        ),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".to_owned()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", log_group(function)),
        ("AWS_REGION", manifest.region.clone()),
        ("AWS_DEFAULT_REGION", manifest.region.clone()),
        ("AWS_ACCESS_KEY_ID", credentials.access_key_id.clone()),
        (
            "AWS_SECRET_ACCESS_KEY",
            credentials.secret_access_key.clone(),
        ),
        ("AWS_SESSION_TOKEN", credentials.session_token.clone()),
    ]);
    // Lambda's advanced logging controls: the format, and with JSON the application log level.
    if let Some(format) = &function.logging.log_format {
        env.insert("AWS_LAMBDA_LOG_FORMAT", format.clone());
        if format == "JSON"
            && let Some(level) = &function.logging.application_log_level
        {
            env.insert("AWS_LAMBDA_LOG_LEVEL", level.clone());
        }
    }
    env
}

fn log_group(function: &Function) -> String {
    function
        .logging
        .log_group
        .clone()
        .unwrap_or_else(|| format!("/aws/lambda/{}", function.name))
}

fn collect(stream: impl tokio::io::AsyncRead + Unpin + Send + 'static, into: Arc<Mutex<Output>>) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut output = into.lock().unwrap();
            output.all.push_str(&line);
            output.all.push('\n');
            output
                .undelivered
                .push((epoch_millis(SystemTime::now()), line));
        }
    });
}

fn epoch_millis(time: SystemTime) -> u128 {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
}

/// What the Lambda service does with a function's role besides running it: it delivers the
/// function's output to its log group, and sends a trace segment per invocation when tracing is
/// active.
#[derive(Debug)]
struct Platform {
    endpoint: String,
    region: String,
    credentials: Credentials,
    log_group: String,
    log_stream: String,
    function_name: String,
    traced: bool,
    client: reqwest::Client,
}

impl Platform {
    fn new(
        manifest: &Manifest,
        function: &Function,
        credentials: &Credentials,
        endpoint: &str,
    ) -> Self {
        let id = uuid::Uuid::now_v7().simple().to_string();
        Self {
            endpoint: endpoint.to_owned(),
            region: manifest.region.clone(),
            credentials: credentials.clone(),
            log_group: log_group(function),
            log_stream: format!("2026/12/02/[$LATEST]{id}"),
            function_name: function.name.clone(),
            traced: function.tracing.as_deref() == Some("Active"),
            client: reqwest::Client::new(),
        }
    }

    async fn create_log_stream(&self) {
        self.call(
            "logs",
            "/",
            Some("Logs_20140328.CreateLogStream"),
            json!({"logGroupName": self.log_group, "logStreamName": self.log_stream}),
        )
        .await;
        if self.traced {
            self.call(
                "xray",
                "/TelemetryRecords",
                None,
                json!({"TelemetryRecords": [], "EC2InstanceId": "lambda"}),
            )
            .await;
        }
    }

    /// Delivers the lines printed since the last delivery, and the invocation's trace segment.
    async fn deliver(&self, output: &Mutex<Output>, started: SystemTime) {
        let lines = std::mem::take(&mut output.lock().unwrap().undelivered);
        if !lines.is_empty() {
            let events: Vec<Value> = lines
                .into_iter()
                .map(|(timestamp, message)| json!({"timestamp": timestamp, "message": message}))
                .collect();
            self.call(
                "logs",
                "/",
                Some("Logs_20140328.PutLogEvents"),
                json!({"logGroupName": self.log_group, "logStreamName": self.log_stream, "logEvents": events}),
            )
            .await;
        }
        if self.traced {
            let seconds = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
            let now = SystemTime::now();
            // The random tail of a UUIDv7 serves for the ids' hex digits.
            let random = || uuid::Uuid::now_v7().simple().to_string()[8..].to_owned();
            let trace = format!(
                "1-{:08x}-{}",
                now.duration_since(UNIX_EPOCH).unwrap().as_secs(),
                random()
            );
            let segment = json!({
                "name": self.function_name,
                "id": &random()[..16],
                "trace_id": trace,
                "start_time": seconds(started),
                "end_time": seconds(now),
            });
            self.call(
                "xray",
                "/TraceSegments",
                None,
                json!({"TraceSegmentDocuments": [segment.to_string()]}),
            )
            .await;
        }
    }

    /// One signed JSON call; a refusal (the role lacks the permission) shows in the proxy's
    /// record of calls, which the test checks.
    async fn call(&self, service: &str, path: &str, target: Option<&str>, body: Value) {
        let url = format!("{}{path}", self.endpoint.trim_end_matches('/'));
        let body = body.to_string();
        let content_type = if target.is_some() {
            "application/x-amz-json-1.1"
        } else {
            "application/json"
        };
        let mut headers = vec![("content-type", content_type)];
        if let Some(target) = target {
            headers.push(("x-amz-target", target));
        }
        let identity = SdkCredentials::new(
            &self.credentials.access_key_id,
            &self.credentials.secret_access_key,
            Some(self.credentials.session_token.clone()),
            None,
            "lambda-service",
        )
        .into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(service)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let signable = SignableRequest::new(
            "POST",
            &url,
            headers.iter().copied(),
            SignableBody::Bytes(body.as_bytes()),
        )
        .unwrap();
        let (instructions, _) = sign(signable, &params).unwrap().into_parts();
        let mut request = http::Request::post(&url).body(body.clone()).unwrap();
        for (name, value) in &headers {
            request
                .headers_mut()
                .insert(*name, http::HeaderValue::from_str(value).unwrap());
        }
        instructions.apply_to_request_http1x(&mut request);
        let mut send = self.client.post(&url).body(body);
        for (name, value) in request.headers() {
            send = send.header(name, value);
        }
        if let Err(error) = send.send().await {
            eprintln!("the Lambda service's {service} call failed: {error}");
        }
    }
}
