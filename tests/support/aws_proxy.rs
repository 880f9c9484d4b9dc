//! A proxy on loopback between the deployed functions and the AWS emulator that enforces each
//! caller's IAM policy. It knows the caller by the access key its SigV4 signature names, works out
//! every action and resource the request asks for (a DynamoDB transaction is one action per item,
//! as IAM authorizes it), refuses what the caller's role does not allow with the error AWS gives,
//! and forwards the rest. Every call is recorded, so a test can also list what a policy grants
//! that nothing used. Lambda's `Invoke` goes to the functions the test serves at their ARNs
//! ([`AwsProxy::serve_function`]) instead: moto's Lambda needs Docker.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::{Value, json};

use crate::iam::{Decision, Policy};
use crate::target_function::PythonFunction;
use crate::upstream::Upstream;

/// Who signs with one access key: a function, or the Lambda service acting with its role.
#[derive(Debug, Clone)]
pub struct Caller {
    /// For reports: the function's logical id, say.
    pub name: String,
    /// The role's logical id.
    pub role: String,
    /// The assumed role's ARN, as AWS names the caller in a denial.
    pub principal: String,
    /// The role's policies.
    pub policy: Arc<Policy>,
}

/// One request a caller made: each action and resource it asked for, and what was decided.
#[derive(Debug, Clone)]
pub struct Call {
    pub caller: String,
    pub role: String,
    pub action: String,
    pub resource: String,
    pub decision: Decision,
}

#[derive(Debug)]
struct Shared {
    upstream: Upstream,
    account: String,
    callers: Mutex<HashMap<String, Caller>>,
    calls: Mutex<Vec<Call>>,
    refused: Mutex<Vec<String>>,
    functions: Mutex<HashMap<String, Arc<PythonFunction>>>,
}

/// The running proxy; it stops with the test's runtime.
#[derive(Debug, Clone)]
pub struct AwsProxy {
    address: SocketAddr,
    shared: Arc<Shared>,
}

impl AwsProxy {
    /// Starts a proxy to the emulator at `upstream`, for resources of `account`.
    pub async fn start(upstream: &str, account: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            upstream: Upstream::new(upstream),
            account: account.to_owned(),
            callers: Mutex::default(),
            calls: Mutex::default(),
            refused: Mutex::default(),
            functions: Mutex::default(),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .layer(axum::extract::DefaultBodyLimit::max(8 << 20))
            .with_state(shared.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { address, shared }
    }

    /// The endpoint to give the functions (`AWS_ENDPOINT_URL`).
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Requests signed with `access_key` are `caller`'s.
    pub fn register(&self, access_key: &str, caller: Caller) {
        self.shared
            .callers
            .lock()
            .unwrap()
            .insert(access_key.to_owned(), caller);
    }

    /// `Invoke` of the function `arn` is answered by `function`.
    pub fn serve_function(&self, arn: &str, function: Arc<PythonFunction>) {
        self.shared
            .functions
            .lock()
            .unwrap()
            .insert(arn.to_owned(), function);
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.shared.calls.lock().unwrap().clone()
    }

    /// Requests the proxy could not attribute or understand (an unknown access key, an operation
    /// it cannot map to an action and resource): each one is a gap in the test, not a pass.
    pub fn refused(&self) -> Vec<String> {
        self.shared.refused.lock().unwrap().clone()
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let scope = match credential_scope(&headers) {
        Ok(scope) => scope,
        Err(problem) => return refuse(&shared, problem),
    };
    let caller = shared
        .callers
        .lock()
        .unwrap()
        .get(&scope.access_key)
        .cloned();
    let Some(caller) = caller else {
        return refuse(
            &shared,
            format!(
                "a request signed by unknown access key {}",
                scope.access_key
            ),
        );
    };
    let asked = match requested(&scope, &headers, uri.path(), &body, &shared.account) {
        Ok(asked) => asked,
        Err(problem) => return refuse(&shared, format!("{}: {problem}", caller.name)),
    };
    let mut denied = None;
    let invoked = (scope.service == "lambda").then(|| asked[0].1.clone());
    for (action, resource) in asked {
        let decision = caller.policy.decide(&action, &resource);
        if !matches!(decision, Decision::Allowed(_)) && denied.is_none() {
            denied = Some((action.clone(), resource.clone()));
        }
        shared.calls.lock().unwrap().push(Call {
            caller: caller.name.clone(),
            role: caller.role.clone(),
            action,
            resource,
            decision,
        });
    }
    if let Some((action, resource)) = denied {
        return access_denied(&scope.service, &caller, &action, &resource);
    }
    if let Some(arn) = invoked {
        let function = shared.functions.lock().unwrap().get(&arn).cloned();
        return match function {
            Some(function) => function.invoke(body).await,
            None => (
                StatusCode::NOT_FOUND,
                [("x-amzn-errortype", "ResourceNotFoundException")],
                json!({"Type": "User", "message": format!("Function not found: {arn}")})
                    .to_string(),
            )
                .into_response(),
        };
    }
    shared.upstream.forward(method, &uri, &headers, body).await
}

/// The parts of a SigV4 credential scope the proxy needs.
#[derive(Debug)]
struct Scope {
    access_key: String,
    region: String,
    service: String,
}

fn credential_scope(headers: &HeaderMap) -> Result<Scope, String> {
    let authorization = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or("an unsigned request")?;
    let credential = authorization
        .split([' ', ','])
        .find_map(|part| part.strip_prefix("Credential="))
        .ok_or_else(|| format!("no credential in `{authorization}`"))?;
    let parts: Vec<&str> = credential.split('/').collect();
    match parts.as_slice() {
        [access_key, _date, region, service, "aws4_request"] => Ok(Scope {
            access_key: (*access_key).to_owned(),
            region: (*region).to_owned(),
            service: (*service).to_owned(),
        }),
        _ => Err(format!(
            "a credential scope that is not SigV4's: {credential}"
        )),
    }
}

/// The actions and resources a request asks for, as IAM evaluates them.
fn requested(
    scope: &Scope,
    headers: &HeaderMap,
    path: &str,
    body: &[u8],
    account: &str,
) -> Result<Vec<(String, String)>, String> {
    let body: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(body).map_err(|e| format!("a body that is not JSON: {e}"))?
    };
    let region = &scope.region;
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let (prefix, operation) = target.split_once('.').unwrap_or(("", ""));
    let string = |value: &Value, what: &str| {
        value
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("{target} without {what}"))
    };
    let table = |name: &str| {
        if name.starts_with("arn:") {
            name.to_owned()
        } else {
            format!("arn:aws:dynamodb:{region}:{account}:table/{name}")
        }
    };
    match (scope.service.as_str(), prefix) {
        ("dynamodb", "DynamoDB_20120810") => match operation {
            "TransactWriteItems" => {
                let items = body["TransactItems"].as_array().ok_or("no TransactItems")?;
                items
                    .iter()
                    .map(|item| {
                        let (kind, request) = item
                            .as_object()
                            .and_then(|o| o.iter().next())
                            .ok_or("an empty transaction item")?;
                        let action = match kind.as_str() {
                            "Put" => "PutItem",
                            "Update" => "UpdateItem",
                            "Delete" => "DeleteItem",
                            "ConditionCheck" => "ConditionCheckItem",
                            other => return Err(format!("a transaction item `{other}`")),
                        };
                        let name = string(&request["TableName"], "TableName")?;
                        Ok((format!("dynamodb:{action}"), table(&name)))
                    })
                    .collect()
            }
            "TransactGetItems" | "BatchWriteItem" | "BatchGetItem" => Err(format!(
                "{operation}: add its IAM mapping to tests/support/aws_proxy.rs"
            )),
            // A read of an index is authorized on the index's ARN, not the table's.
            "Query" | "Scan" => {
                let name = string(&body["TableName"], "TableName")?;
                let resource = match body["IndexName"].as_str() {
                    Some(index) => format!("{}/index/{index}", table(&name)),
                    None => table(&name),
                };
                Ok(vec![(format!("dynamodb:{operation}"), resource)])
            }
            _ => {
                let name = string(&body["TableName"], "TableName")?;
                Ok(vec![(format!("dynamodb:{operation}"), table(&name))])
            }
        },
        ("sqs", "AmazonSQS") => {
            let queue = match operation {
                "GetQueueUrl" | "CreateQueue" => string(&body["QueueName"], "QueueName")?,
                _ => {
                    let url = string(&body["QueueUrl"], "QueueUrl")?;
                    url.rsplit('/').next().unwrap_or_default().to_owned()
                }
            };
            let queue_account = body["QueueUrl"]
                .as_str()
                .and_then(|url| url.rsplit('/').nth(1))
                .unwrap_or(account);
            // IAM has no actions for SQS's batch calls: each is authorized as the single call.
            let action = match operation {
                "SendMessageBatch" => "SendMessage",
                "DeleteMessageBatch" => "DeleteMessage",
                "ChangeMessageVisibilityBatch" => "ChangeMessageVisibility",
                other => other,
            };
            Ok(vec![(
                format!("sqs:{action}"),
                format!("arn:aws:sqs:{region}:{queue_account}:{queue}"),
            )])
        }
        ("secretsmanager", "secretsmanager") => {
            let id = string(&body["SecretId"], "SecretId")?;
            if !id.starts_with("arn:") {
                return Err(format!("secret `{id}` named without its ARN"));
            }
            Ok(vec![(format!("secretsmanager:{operation}"), id)])
        }
        ("logs", "Logs_20140328") => {
            let group = string(&body["logGroupName"], "logGroupName")?;
            let stream = string(&body["logStreamName"], "logStreamName")?;
            Ok(vec![(
                format!("logs:{operation}"),
                format!("arn:aws:logs:{region}:{account}:log-group:{group}:log-stream:{stream}"),
            )])
        }
        // Invoke: POST /2015-03-31/functions/{FunctionName}/invocations, the name (or ARN)
        // percent-encoded.
        ("lambda", "") => {
            let name = path
                .strip_prefix("/2015-03-31/functions/")
                .and_then(|rest| rest.strip_suffix("/invocations"))
                .ok_or_else(|| format!("a Lambda request to {path}"))?;
            let name = percent_decoded(name);
            let arn = if name.starts_with("arn:") {
                name
            } else {
                format!("arn:aws:lambda:{region}:{account}:function:{name}")
            };
            Ok(vec![("lambda:InvokeFunction".to_owned(), arn)])
        }
        ("xray", "") => match path {
            "/TraceSegments" => Ok(vec![("xray:PutTraceSegments".to_owned(), "*".to_owned())]),
            "/TelemetryRecords" => Ok(vec![(
                "xray:PutTelemetryRecords".to_owned(),
                "*".to_owned(),
            )]),
            other => Err(format!("an X-Ray request to {other}")),
        },
        (service, _) => Err(format!(
            "a {service} request (`{target}` {path}) the proxy cannot map to an IAM action"
        )),
    }
}

/// The error AWS answers when the caller's policy does not allow `action` on `resource`.
fn access_denied(service: &str, caller: &Caller, action: &str, resource: &str) -> Response {
    let message = format!(
        "User: {} is not authorized to perform: {action} on resource: {resource} because no \
         identity-based policy allows the {action} action",
        caller.principal
    );
    let (code, extra) = match service {
        "sqs" => ("AccessDenied", Some("AccessDenied;Sender")),
        _ => ("AccessDeniedException", None),
    };
    let mut response = (
        StatusCode::BAD_REQUEST,
        [("content-type", "application/x-amz-json-1.0")],
        json!({"__type": code, "message": message, "Message": message}).to_string(),
    )
        .into_response();
    if let Some(query_error) = extra {
        response
            .headers_mut()
            .insert("x-amzn-query-error", query_error.parse().unwrap());
    }
    response
}

fn refuse(shared: &Shared, problem: String) -> Response {
    shared.refused.lock().unwrap().push(problem.clone());
    (
        StatusCode::BAD_REQUEST,
        [("content-type", "application/x-amz-json-1.0")],
        json!({"__type": "UnrecognizedClientException", "message": problem}).to_string(),
    )
        .into_response()
}

/// `%XX` escapes decoded.
fn percent_decoded(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| raw.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                i += 3;
            }
            None => {
                decoded.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}
