//! A stack deployed from `infra/template.yaml` and running: every function of the template (one
//! per priority lane for the consumer binary) started from what `sam build` made, each with exactly
//! what the template gives it behind a proxy that checks every AWS call against its role's policy;
//! API Gateway and every SQS event source mapping emulated from the template; and a webhook
//! receiver. The deployment test and the hostile-input table share it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::sqs::SqsBatchResponse;
use serde_json::{Value, json};
use spillway_core::config::Function;
use spillway_core::domain::{JobMessage, Timestamp};
use spillway_core::esm::{self, EventSourceMapping};
use spillway_core::queue::SqsQueue;

use crate::aws_proxy::{AwsProxy, Call, Caller};
use crate::deployment::{self, Deployment, Manifest};
use crate::gateway::{ApiCaller, ApiResponse, Gateway};
use crate::iam::{self, Decision, Policy};
use crate::lambda::{Credentials, LambdaFunction};
use crate::receiver::Receiver;

/// The parameters the test deploys with: each one turns on a path whose permissions the run must
/// exercise (each lane's backlog check, webhooks to the loopback receiver, a retry into the DLQ
/// within seconds), or makes a value the functions must be given visible (each lane's default
/// TTL, both unlike the template's defaults and each other).
pub const PARAMETERS: &[(&str, &str)] = &[
    ("Architecture", "x86_64"),
    ("MaxAttempts", "2"),
    ("MaxReceiveCount", "3"),
    ("BackoffBaseSeconds", "1"),
    ("BackoffMaxSeconds", "1"),
    ("BacklogLimit", "1000"),
    ("HighBacklogLimit", "100"),
    // On, so that the stack has the index and intake its Query, both checked against the roles.
    ("MaxActiveJobsPerOwner", "1000"),
    ("DefaultTtlSeconds", "600"),
    ("HighDefaultTtlSeconds", "120"),
    ("ConsumerTimeoutSeconds", "10"),
    ("WebhookAllow", "127.0.0.1"),
    ("WebhookTimeoutMs", "3000"),
];
pub const DEFAULT_TTL: Duration = Duration::from_secs(600);
pub const HIGH_DEFAULT_TTL: Duration = Duration::from_secs(120);
/// The issuer of the JWT stack's tokens.
pub const JWT_ISSUER: &str = "https://idp.example.com/spillway";

/// The template `sam build` wrote, with each function's `CodeUri` pointing at its `bootstrap`.
pub fn built_template() -> PathBuf {
    let dir = std::env::var_os("SPILLWAY_SAM_BUILD_DIR").unwrap_or_else(|| {
        panic!(
            "the deployment test runs the functions `sam build` made: run it through \
             `scripts/test`, which builds them and sets SPILLWAY_SAM_BUILD_DIR"
        )
    });
    let template = PathBuf::from(dir).join("template.yaml");
    assert!(template.is_file(), "{} is missing", template.display());
    template
}

/// The deployed stack, its functions running, and the test's view of them.
pub struct Stack {
    pub deployment: Deployment,
    pub proxy: AwsProxy,
    /// Every function of the template, running, by logical id.
    pub functions: BTreeMap<String, LambdaFunction>,
    /// Every event source mapping of the template, emulated.
    pub mappings: Vec<Mapping>,
    pub caller: ApiCaller,
    pub receiver: Receiver,
    /// Every message a mapping delivered, for replaying one as SQS may and for telling which
    /// lane ran a job.
    pub delivered: std::sync::Mutex<Vec<Delivery>>,
    /// Each function's code directory as `sam build` left it.
    as_built: BTreeMap<String, Option<PathBuf>>,
}

/// One of the template's SQS event source mappings, as Lambda runs it.
pub struct Mapping {
    pub logical_id: String,
    /// The logical id of the function it invokes.
    pub function: String,
    /// The URL of the queue it polls.
    pub queue_url: String,
    pub esm: EventSourceMapping,
}

/// A message a mapping handed to its function.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The logical id of the function that was invoked with it.
    pub function: String,
    /// The queue it was received from.
    pub queue_url: String,
    /// The job it runs; `None` for a body that is no job message.
    pub job_id: Option<String>,
    pub body: String,
}

impl Stack {
    /// Deploys with [`PARAMETERS`] and `overrides`, and starts the functions; the test calls the
    /// API as the caller `caller` names, and its webhook receiver verifies with that caller's own
    /// secret, fetched from the API.
    pub async fn deploy(
        overrides: &[(&str, &str)],
        caller: fn(&Manifest, &str) -> ApiCaller,
    ) -> Self {
        Self::deploy_with_binaries(overrides, caller, &[]).await
    }

    /// [`Self::deploy`], each function whose `BuildProperties` names a binary of `binaries`
    /// running the executable given for it instead of the one `sam build` made: a crate of one's
    /// own, deployed with the same template and environment (`examples/custom-kind`).
    pub async fn deploy_with_binaries(
        overrides: &[(&str, &str)],
        caller: fn(&Manifest, &str) -> ApiCaller,
        binaries: &[(&str, &Path)],
    ) -> Self {
        let endpoint = crate::endpoint();
        let mut parameters: Vec<(&str, &str)> = PARAMETERS
            .iter()
            .filter(|(key, _)| overrides.iter().all(|(k, _)| k != key))
            .copied()
            .collect();
        parameters.extend_from_slice(overrides);
        let mut deployment = Deployment::create(&built_template(), &endpoint, &parameters);
        let as_built = deployment
            .manifest
            .functions
            .iter()
            .map(|(logical_id, f)| (logical_id.clone(), f.code_dir.clone()))
            .collect();
        for function in deployment.manifest.functions.values_mut() {
            let given = binaries
                .iter()
                .find(|(name, _)| function.binary.as_deref() == Some(*name));
            if let Some((_, executable)) = given {
                function.code_dir = Some(code_dir_of(executable));
            }
        }
        let manifest = &deployment.manifest;
        let proxy = AwsProxy::start(&endpoint, &manifest.account_id).await;
        let mut functions = BTreeMap::new();
        for (logical_id, declared) in &manifest.functions {
            let credentials = Credentials::assume(&endpoint, &declared.role_arn, logical_id);
            register(
                &proxy,
                manifest,
                logical_id,
                &declared.role_logical_id,
                &credentials,
            );
            let function =
                LambdaFunction::start(manifest, logical_id, &credentials, &proxy.url()).await;
            functions.insert(logical_id.clone(), function);
        }
        let mut mappings = Vec::new();
        for mapping in &manifest.event_source_mappings {
            mappings.push(event_source_mapping(manifest, mapping, &proxy, &endpoint).await);
        }
        let caller = caller(manifest, "alice");
        let gateway = Gateway::new(
            &manifest.http_apis[0],
            &manifest.account_id,
            &functions.values().collect::<Vec<_>>(),
        );
        let secrets = owner_secrets(&gateway, &caller).await;
        let receiver =
            Receiver::start(&secrets.iter().map(String::as_str).collect::<Vec<_>>()).await;
        drop(gateway);
        Self {
            deployment,
            proxy,
            functions,
            mappings,
            caller,
            receiver,
            delivered: std::sync::Mutex::default(),
            as_built,
        }
    }

    /// Starts function `logical_id` once more, beside the stack's, from the code `sam build` made
    /// for it (whatever [`Self::deploy_with_binaries`] gave the stack's), with its own role.
    pub async fn start_as_built(&self, logical_id: &str) -> LambdaFunction {
        let mut manifest = self.manifest().clone();
        let function = manifest.functions.get_mut(logical_id).unwrap();
        function.code_dir = self.as_built[logical_id].clone();
        let (role_arn, role) = (function.role_arn.clone(), function.role_logical_id.clone());
        let credentials = Credentials::assume(&crate::endpoint(), &role_arn, logical_id);
        register(&self.proxy, &manifest, logical_id, &role, &credentials);
        LambdaFunction::start(&manifest, logical_id, &credentials, &self.proxy.url()).await
    }

    /// The stack's API with `function` serving the routes of its logical id instead of the
    /// stack's own.
    pub fn gateway_with<'a>(&'a self, function: &'a LambdaFunction) -> Gateway<'a> {
        let mut functions: Vec<&LambdaFunction> = self
            .functions
            .values()
            .filter(|f| f.logical_id != function.logical_id)
            .collect();
        functions.push(function);
        Gateway::new(
            &self.manifest().http_apis[0],
            &self.manifest().account_id,
            &functions,
        )
    }

    pub fn manifest(&self) -> &Manifest {
        &self.deployment.manifest
    }

    /// The running function `logical_id`.
    pub fn function(&self, logical_id: &str) -> &LambdaFunction {
        self.functions
            .get(logical_id)
            .unwrap_or_else(|| panic!("the template has no function {logical_id}"))
    }

    /// The one running function that builds `binary`; the consumer's are per lane
    /// ([`Self::mapping_of_queue`] finds a lane's).
    pub fn function_of(&self, binary: Function) -> &LambdaFunction {
        let (logical_id, _) = self.manifest().function_by_binary(binary.binary());
        self.function(logical_id)
    }

    /// The mapping that polls the queue the stack's output `queue_output` names (`QueueUrl`,
    /// `HighQueueUrl`).
    pub fn mapping_of_queue(&self, queue_output: &str) -> &Mapping {
        let url = self.manifest().output(queue_output);
        let mut polling = self.mappings.iter().filter(|m| m.queue_url == url);
        let mapping = polling
            .next()
            .unwrap_or_else(|| panic!("no event source mapping polls {queue_output} ({url})"));
        assert!(
            polling.next().is_none(),
            "more than one event source mapping polls {queue_output}"
        );
        mapping
    }

    /// The logical ids of the functions a message of job `id` was delivered to, in order.
    pub fn delivered_to(&self, id: &str) -> Vec<String> {
        self.delivered
            .lock()
            .unwrap()
            .iter()
            .filter(|d| d.job_id.as_deref() == Some(id))
            .map(|d| d.function.clone())
            .collect()
    }

    pub fn gateway(&self) -> Gateway<'_> {
        Gateway::new(
            &self.manifest().http_apis[0],
            &self.manifest().account_id,
            &self.functions.values().collect::<Vec<_>>(),
        )
    }

    pub async fn post(&self, body: &Value, headers: &[(&str, &str)]) -> ApiResponse {
        self.post_to("/jobs", body, headers).await
    }

    /// `body` as JSON to `POST path`, as the test's caller.
    pub async fn post_to(&self, path: &str, body: &Value, headers: &[(&str, &str)]) -> ApiResponse {
        let mut headers = headers.to_vec();
        headers.push(("content-type", "application/json"));
        self.gateway()
            .request(
                &self.caller,
                "POST",
                path,
                &headers,
                Some(&body.to_string()),
            )
            .await
    }

    pub async fn accept(&self, body: &Value) -> String {
        let response = self.post(body, &[]).await;
        assert_eq!(response.status, 202, "{response}");
        response.json()["id"].as_str().unwrap().to_owned()
    }

    /// `method target` without a body, as the test's caller.
    pub async fn call(&self, method: &str, target: &str) -> ApiResponse {
        self.call_as(&self.caller, method, target).await
    }

    /// `method target` without a body, as `caller`.
    pub async fn call_as(&self, caller: &ApiCaller, method: &str, target: &str) -> ApiResponse {
        self.gateway()
            .request(caller, method, target, &[], None)
            .await
    }

    /// Submits `body` as `caller`, which must be accepted; the job's id.
    pub async fn accept_as(&self, caller: &ApiCaller, body: &Value) -> String {
        let response = self
            .gateway()
            .request(
                caller,
                "POST",
                "/jobs",
                &[("content-type", "application/json")],
                Some(&body.to_string()),
            )
            .await;
        assert_eq!(response.status, 202, "{response}");
        response.json()["id"].as_str().unwrap().to_owned()
    }

    /// Two callers' jobs, each submitted by one: each caller reads and cancels only its own, finds
    /// the other's missing, and has a webhook secret of its own.
    pub async fn each_caller_sees_only_its_own_jobs(&self, other: &ApiCaller) {
        let job =
            |path: &str| json!({"kind": "webhook", "payload": {"url": self.receiver.url(path)}});
        let mine = self.accept_as(&self.caller, &job("/isolation-mine")).await;
        let theirs = self.accept_as(other, &job("/isolation-theirs")).await;
        for (caller, own, foreign) in [(&self.caller, &mine, &theirs), (other, &theirs, &mine)] {
            let read = self.call_as(caller, "GET", &format!("/jobs/{own}")).await;
            assert_eq!(read.status, 200, "{read}");
            for method in ["GET", "DELETE"] {
                let refused = self
                    .call_as(caller, method, &format!("/jobs/{foreign}"))
                    .await;
                assert_eq!(
                    refused.status, 404,
                    "{method} of another caller's job: {refused}"
                );
            }
        }
        let gateway = self.gateway();
        assert_ne!(
            owner_secrets(&gateway, &self.caller).await,
            owner_secrets(&gateway, other).await,
            "two callers were handed the same webhook secret"
        );
        for (caller, own) in [(&self.caller, &mine), (other, &theirs)] {
            let cancelled = self
                .call_as(caller, "DELETE", &format!("/jobs/{own}"))
                .await;
            assert_eq!(cancelled.status, 200, "{cancelled}");
        }
    }

    pub async fn get(&self, id: &str) -> Value {
        let response = self.call("GET", &format!("/jobs/{id}")).await;
        assert_eq!(response.status, 200, "{response}");
        response.json()
    }

    /// One poll of every event source mapping at once, as Lambda polls each independently.
    /// `false` when every queue had nothing.
    pub async fn poll(&self) -> bool {
        let polls = self.mappings.iter().map(|mapping| self.poll_one(mapping));
        futures::future::join_all(polls)
            .await
            .into_iter()
            .any(|polled| polled)
    }

    /// One poll of `mapping`: a batch to its function, the messages it did not report as failed
    /// deleted. `false` when its queue had nothing.
    pub async fn poll_one(&self, mapping: &Mapping) -> bool {
        let messages = mapping
            .esm
            .receive_batch(Duration::from_secs(1))
            .await
            .unwrap();
        if messages.is_empty() {
            return false;
        }
        self.delivered
            .lock()
            .unwrap()
            .extend(messages.iter().map(|m| {
                Delivery {
                    function: mapping.function.clone(),
                    queue_url: mapping.queue_url.clone(),
                    job_id: JobMessage::decode(&m.body)
                        .ok()
                        .map(|message| message.job_id.to_string()),
                    body: m.body.clone(),
                }
            }));
        let event = esm::sqs_event(&messages, &mapping.esm.queue_arn, &mapping.esm.region);
        let answer = self
            .function(&mapping.function)
            .invoke_ok(&serde_json::to_value(event).unwrap())
            .await;
        let response: SqsBatchResponse = serde_json::from_value(answer).unwrap();
        mapping.esm.settle(&messages, response).await;
        true
    }

    /// Polls until job `id` has `status`.
    pub async fn run_until(&self, id: &str, status: &str) -> Value {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            let job = self.get(id).await;
            if job["status"] == status {
                return job;
            }
            self.poll().await;
        }
        let consumers: String = self
            .mappings
            .iter()
            .map(|m| {
                format!(
                    "--- {} ---\n{}",
                    m.function,
                    self.function(&m.function).output()
                )
            })
            .collect();
        panic!(
            "job {id} did not become {status}: {}\n{consumers}",
            self.get(id).await,
        );
    }

    /// Polls until every queue has stayed empty for one poll.
    pub async fn drain(&self) {
        while self.poll().await {}
    }

    /// Delivers job `id`'s message once more, to the queue it came from, as SQS's at-least-once
    /// delivery may.
    pub async fn deliver_again(&self, id: &str) {
        let delivery = self
            .delivered
            .lock()
            .unwrap()
            .iter()
            .find(|d| d.job_id.as_deref() == Some(id))
            .cloned()
            .unwrap_or_else(|| panic!("no message of job {id} was delivered"));
        let sdk = crate::sdk_config().await;
        aws_sdk_sqs::Client::new(&sdk)
            .send_message()
            .queue_url(delivery.queue_url)
            .message_body(delivery.body)
            .send()
            .await
            .unwrap();
    }

    /// `spillway` (the operator's command) against the emulator, with the stack's resources.
    pub fn spillway(&self, args: &[&str]) -> String {
        let manifest = self.manifest();
        let output = std::process::Command::new(spillway_binary())
            .args(args)
            .args(["--endpoint-url", &crate::endpoint()])
            .args(["--table", manifest.output("TableName")])
            .args(["--queue-url", manifest.output("QueueUrl")])
            .args(["--dlq-url", manifest.output("DeadLetterQueueUrl")])
            .args(["--high-queue-url", manifest.output("HighQueueUrl")])
            .args(["--high-dlq-url", manifest.output("HighDeadLetterQueueUrl")])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "spillway {args:?}: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }
}

impl Drop for Stack {
    /// A failing step is often the consequence of a refused call: name them beside the failure.
    fn drop(&mut self) {
        if std::thread::panicking() {
            let denied = denials(&self.proxy);
            if !denied.is_empty() {
                eprintln!("access denied during the run:\n{}", denied.join("\n"));
            }
        }
    }
}

/// Registers `credentials` with the proxy as `name`, acting as role `role`.
pub fn register(
    proxy: &AwsProxy,
    manifest: &Manifest,
    name: &str,
    role: &str,
    credentials: &Credentials,
) {
    proxy.register(
        &credentials.access_key_id,
        Caller {
            name: name.to_owned(),
            role: role.to_owned(),
            principal: credentials.principal.clone(),
            policy: Arc::new(role_policy(manifest, role)),
        },
    );
}

/// Every statement a role's policies hold: its inline policies, then the AWS managed ones.
pub fn role_policy(manifest: &Manifest, role: &str) -> Policy {
    let function = manifest
        .functions
        .values()
        .find(|f| f.role_logical_id == role)
        .unwrap_or_else(|| panic!("no function runs as {role}"));
    let mut policy = Policy::default();
    for inline in &function.policies {
        policy.add_document(&inline.name, &inline.document);
    }
    for arn in &function.managed_policy_arns {
        policy.add_document(&format!("managed:{arn}"), &iam::managed_policy(arn));
    }
    policy
}

/// One of the template's SQS event source mappings, run as Lambda runs it: with its function's
/// role, checking the queue when it is created.
pub async fn event_source_mapping(
    manifest: &Manifest,
    mapping: &deployment::EventSourceMapping,
    proxy: &AwsProxy,
    endpoint: &str,
) -> Mapping {
    assert!(mapping.enabled, "{} is disabled", mapping.logical_id);
    assert_eq!(mapping.function_response_types, ["ReportBatchItemFailures"]);
    let function = &manifest.functions[&mapping.function];
    let credentials = Credentials::assume(endpoint, &function.role_arn, &mapping.logical_id);
    register(
        proxy,
        manifest,
        &format!("{} event source mapping", mapping.function),
        &function.role_logical_id,
        &credentials,
    );
    let queue_url = manifest
        .resources
        .values()
        .find(|r| {
            r.attributes.get("Arn").and_then(Value::as_str) == Some(&mapping.event_source_arn)
        })
        .and_then(|r| r.r#ref.clone())
        .unwrap_or_else(|| {
            panic!(
                "{} polls {}, no queue of the stack",
                mapping.logical_id, mapping.event_source_arn
            )
        });
    let sdk = spillway_core::sdk::loader(spillway_core::sdk::Roots::System)
        .region(aws_config::Region::new(manifest.region.clone()))
        .endpoint_url(proxy.url())
        .credentials_provider(aws_credential_types::Credentials::new(
            credentials.access_key_id,
            credentials.secret_access_key,
            Some(credentials.session_token),
            None,
            "event-source-mapping",
        ))
        .load()
        .await;
    let queue = Arc::new(SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), &queue_url));
    let esm = EventSourceMapping {
        queue,
        queue_arn: mapping.event_source_arn.clone(),
        region: manifest.region.clone(),
        batch_size: mapping.batch_size,
        batching_window: Duration::from_secs(mapping.maximum_batching_window_seconds),
        function_timeout: Duration::from_secs(function.timeout),
    };
    // Lambda reads the queue's attributes with the function's role when the mapping is created.
    esm.queue.depth().await.unwrap();
    Mapping {
        logical_id: mapping.logical_id.clone(),
        function: mapping.function.clone(),
        queue_url,
        esm,
    }
}

/// What `caller`'s receivers verify its deliveries with: `GET /webhook-secret` as that caller.
pub async fn owner_secrets(gateway: &Gateway<'_>, caller: &ApiCaller) -> Vec<String> {
    let response = gateway
        .request(caller, "GET", "/webhook-secret", &[], None)
        .await;
    assert_eq!(response.status, 200, "{response}");
    assert_eq!(response.headers["cache-control"], "no-store");
    serde_json::from_value(response.json()["secrets"].clone()).unwrap()
}

/// An IAM user of the stack's account, signing with SigV4.
pub fn iam_user(manifest: &Manifest, name: &str) -> ApiCaller {
    ApiCaller::Iam {
        arn: format!("arn:aws:iam::{}:user/{name}", manifest.account_id),
        access_key: format!("AKIA{}", name.to_ascii_uppercase()),
        account: manifest.account_id.clone(),
    }
}

/// A bearer of a token [`JWT_ISSUER`] issued for `subject`.
pub fn jwt_subject(_: &Manifest, subject: &str) -> ApiCaller {
    ApiCaller::Jwt {
        issuer: JWT_ISSUER.to_owned(),
        subject: subject.to_owned(),
        audience: "spillway".to_owned(),
    }
}

/// A caller of an API without authorization.
pub fn anyone(_: &Manifest, _: &str) -> ApiCaller {
    ApiCaller::Anonymous
}

/// A code directory whose `bootstrap` is `executable`, as a Lambda function's: beside it, named
/// after it, made again on every call.
pub fn code_dir_of(executable: &Path) -> PathBuf {
    assert!(
        executable.is_file(),
        "{} does not exist",
        executable.display()
    );
    let mut name = executable.file_name().unwrap().to_owned();
    name.push(".code");
    let dir = executable.with_file_name(name);
    std::fs::create_dir_all(&dir).unwrap();
    let bootstrap = dir.join("bootstrap");
    std::fs::remove_file(&bootstrap).ok();
    std::os::unix::fs::symlink(executable, &bootstrap).unwrap();
    dir
}

/// The `spillway` binary `cargo test` built beside this test.
pub fn spillway_binary() -> PathBuf {
    let deps = std::env::current_exe().unwrap();
    deps.parent().unwrap().parent().unwrap().join("spillway")
}

/// The time between two timestamps of a job document.
pub fn between(from: &Value, to: &Value) -> Duration {
    let parse = |v: &Value| serde_json::from_value::<Timestamp>(v.clone()).unwrap();
    parse(to).saturating_since(parse(from))
}

/// Every call was allowed by the caller's own role, and understood by the proxy.
pub fn no_call_was_denied(proxy: &AwsProxy) {
    let refused = proxy.refused();
    assert!(
        refused.is_empty(),
        "requests the proxy could not check: {refused:#?}"
    );
    let denied = denials(proxy);
    assert!(denied.is_empty(), "access denied:\n{}", denied.join("\n"));
}

/// `caller (role) was denied action on resource`, for each refused call.
pub fn denials(proxy: &AwsProxy) -> Vec<String> {
    proxy
        .calls()
        .iter()
        .filter(|c| !matches!(c.decision, Decision::Allowed(_)))
        .map(|c| {
            format!(
                "{} ({}) was denied {} on {}",
                c.caller, c.role, c.action, c.resource
            )
        })
        .collect()
}

/// Every action an inline policy grants was used by the run (the AWS managed policies SAM
/// attaches are not the template's to trim).
pub fn every_granted_action_was_used(proxy: &AwsProxy, manifest: &Manifest) {
    let unused = unused_actions(manifest, &proxy.calls());
    assert!(
        unused.is_empty(),
        "the policies grant actions no path of the run used; remove them, or make the run use \
         them:\n{}",
        unused.join("\n")
    );
}

/// `role: policy/statement grants action` for each inline grant no allowed call used.
pub fn unused_actions(manifest: &Manifest, calls: &[Call]) -> Vec<String> {
    let roles: BTreeMap<&str, Policy> = manifest
        .functions
        .values()
        .map(|f| {
            (
                f.role_logical_id.as_str(),
                role_policy(manifest, &f.role_logical_id),
            )
        })
        .collect();
    let mut unused = Vec::new();
    for (role, policy) in &roles {
        for (index, statement) in policy.statements.iter().enumerate() {
            if !statement.allow || statement.origin.starts_with("managed:") {
                continue;
            }
            for action in &statement.actions {
                let used = calls.iter().any(|call| {
                    call.role == *role
                        && matches!(&call.decision, Decision::Allowed(by) if by.contains(&index))
                        && iam::wildcard(
                            &action.to_ascii_lowercase(),
                            &call.action.to_ascii_lowercase(),
                        )
                });
                if !used {
                    unused.push(format!("{role}: {} grants {action}", statement.origin));
                }
            }
        }
    }
    unused
}
