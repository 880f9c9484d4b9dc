//! A stand-in for the DynamoDB and SQS calls Spillway makes, answering from memory in AWS's own
//! wire format (the JSON protocols of both services). Requests still go through the SDK's whole
//! pipeline — serialization, SigV4 signing, deserialization — so what a benchmark measures is
//! Spillway's own work, not the network's.
//!
//! It answers in process, as the SDK's HTTP client ([`FakeAws::sdk_config`]), for the
//! micro-benchmarks, and on a loopback port ([`FakeAws::serve`]) for the Lambda binaries under
//! the runtime emulator. It keeps the items written to it so a later read or update finds them;
//! conditions are not evaluated (every benchmarked call is one that succeeds).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_dynamodb::config::{Credentials, Region};
use aws_smithy_http_client::test_util::infallible_client_fn;
use aws_smithy_types::body::SdkBody;
use bytes::Bytes;
use serde_json::{Map, Value, json};

/// A DynamoDB item in the wire format: attribute name to `{"S": ..}`, `{"N": ..}`, ...
type Item = Map<String, Value>;

/// The fake services. Share it with `Arc`.
#[derive(Debug, Default)]
pub struct FakeAws {
    items: Mutex<HashMap<String, Stored>>,
    forget_writes: AtomicBool,
}

/// An item as kept, with the body of a `GetItem` answer for it rendered once when it is
/// written: the status benchmark reads one item over and over, and should count the SDK's and
/// Spillway's work on that answer, not the fake's in making it.
#[derive(Debug)]
struct Stored {
    item: Item,
    get_answer: Bytes,
}

/// The content type of both services' JSON protocols.
const CONTENT_TYPE: &str = "application/x-amz-json-1.0";

/// One answer: HTTP status and JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status code.
    pub status: u16,
    /// The JSON body.
    pub body: Bytes,
}

impl Answer {
    fn ok(body: &Value) -> Self {
        Self {
            status: 200,
            body: Bytes::from(body.to_string()),
        }
    }

    fn error(kind: &str, message: &str) -> Self {
        Self {
            status: 400,
            body: Bytes::from(json!({"__type": kind, "message": message}).to_string()),
        }
    }
}

impl FakeAws {
    /// Empty services that keep what is written to them.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// From now on, answer writes without keeping them (a benchmark that writes millions of items
    /// should not measure a growing map). Updates still answer with the item as updated.
    pub fn forget_writes(&self) {
        self.forget_writes.store(true, Ordering::SeqCst);
    }

    /// The answer to one request, named by its `X-Amz-Target` header.
    pub fn answer(&self, target: &str, body: &[u8]) -> Answer {
        let Ok(request) = serde_json::from_slice::<Value>(body) else {
            return Answer::error("SerializationException", "the body is not JSON");
        };
        match target {
            "DynamoDB_20120810.PutItem" => {
                self.keep(&request["Item"]);
                Answer::ok(&json!({}))
            }
            "DynamoDB_20120810.TransactWriteItems" => {
                for write in request["TransactItems"].as_array().into_iter().flatten() {
                    self.keep(&write["Put"]["Item"]);
                }
                Answer::ok(&json!({}))
            }
            "DynamoDB_20120810.GetItem" => {
                let key = request["Key"]["pk"]["S"].as_str().unwrap_or_default();
                match self.lock().get(key) {
                    Some(stored) => Answer {
                        status: 200,
                        body: stored.get_answer.clone(),
                    },
                    None => Answer::ok(&json!({})),
                }
            }
            "DynamoDB_20120810.UpdateItem" => self.update(&request),
            "AmazonSQS.SendMessage" => Answer::ok(&json!({
                "MessageId": uuid::Uuid::now_v7().to_string(),
                "MD5OfMessageBody": "d41d8cd98f00b204e9800998ecf8427e",
            })),
            "AmazonSQS.GetQueueAttributes" => Answer::ok(&json!({"Attributes": {
                "ApproximateNumberOfMessages": "0",
                "ApproximateNumberOfMessagesNotVisible": "0",
                "ApproximateNumberOfMessagesDelayed": "0",
            }})),
            "AmazonSQS.DeleteMessage" | "AmazonSQS.ChangeMessageVisibility" => {
                Answer::ok(&json!({}))
            }
            other => Answer::error(
                "UnknownOperationException",
                &format!("the fake does not answer {other}"),
            ),
        }
    }

    fn keep(&self, item: &Value) {
        if self.forget_writes.load(Ordering::SeqCst) {
            return;
        }
        if let (Some(object), Some(key)) = (item.as_object(), item["pk"]["S"].as_str()) {
            let stored = Stored {
                item: object.clone(),
                get_answer: Bytes::from(json!({ "Item": item }).to_string()),
            };
            self.lock().insert(key.to_owned(), stored);
        }
    }

    fn item(&self, key: &Value) -> Option<Item> {
        let key = key["pk"]["S"].as_str()?;
        self.lock().get(key).map(|stored| stored.item.clone())
    }

    fn update(&self, request: &Value) -> Answer {
        let Some(mut item) = self.item(&request["Key"]) else {
            return Answer::error(
                "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException",
                "The conditional request failed",
            );
        };
        let expression = request["UpdateExpression"].as_str().unwrap_or_default();
        let names = request["ExpressionAttributeNames"].as_object();
        let values = request["ExpressionAttributeValues"].as_object();
        if let Err(problem) = apply_update(&mut item, expression, names, values) {
            return Answer::error("ValidationException", &problem);
        }
        self.keep(&Value::Object(item.clone()));
        Answer::ok(&json!({ "Attributes": item }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Stored>> {
        self.items.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The answer to one HTTP request: the operation is named by its `X-Amz-Target` header.
    fn respond(&self, headers: &http::HeaderMap, body: &[u8]) -> (http::StatusCode, Bytes) {
        let target = headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let answer = self.answer(target, body);
        let status = http::StatusCode::from_u16(answer.status)
            .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
        (status, answer.body)
    }

    /// An SDK configuration whose every call this fake answers in process.
    pub async fn sdk_config(self: &Arc<Self>) -> SdkConfig {
        let fake = Arc::clone(self);
        let http_client = infallible_client_fn(move |request: http::Request<SdkBody>| {
            let (status, body) = fake.respond(
                request.headers(),
                request.body().bytes().unwrap_or_default(),
            );
            let mut response = http::Response::new(SdkBody::from(body));
            *response.status_mut() = status;
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(CONTENT_TYPE),
            );
            response
        });
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(
                "AKIDBENCHMARK",
                "benchmark-secret",
                None,
                None,
                "fake",
            ))
            .endpoint_url("http://fake-aws.invalid")
            .http_client(http_client)
            .load()
            .await
    }

    /// Serves the fake over HTTP on `listener` until the process ends.
    pub async fn serve(self: Arc<Self>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        let app =
            axum::Router::new().fallback(move |headers: http::HeaderMap, body: Bytes| async move {
                let (status, body) = self.respond(&headers, &body);
                (status, [(http::header::CONTENT_TYPE, CONTENT_TYPE)], body)
            });
        axum::serve(listener, app).await
    }
}

/// Applies `SET #a = :v, #b = #b + :n REMOVE #c` — the forms Spillway's updates use.
fn apply_update(
    item: &mut Item,
    expression: &str,
    names: Option<&Map<String, Value>>,
    values: Option<&Map<String, Value>>,
) -> Result<(), String> {
    let name = |alias: &str| {
        names
            .and_then(|names| names.get(alias))
            .and_then(Value::as_str)
            .unwrap_or(alias)
            .to_owned()
    };
    let value = |placeholder: &str| {
        values
            .and_then(|values| values.get(placeholder))
            .cloned()
            .ok_or_else(|| format!("no value for {placeholder}"))
    };
    let (set, remove) = match expression.split_once(" REMOVE ") {
        Some((set, remove)) => (set, Some(remove)),
        None => (expression, None),
    };
    let set = set.trim().strip_prefix("SET ").unwrap_or_default();
    for clause in top_level(set).filter(|c| !c.is_empty()) {
        let (target, source) = clause
            .split_once(" = ")
            .ok_or_else(|| format!("cannot read `{clause}`"))?;
        if let Some(arguments) = source
            .strip_prefix("if_not_exists(")
            .and_then(|rest| rest.strip_suffix(')'))
        {
            let (path, fallback) = arguments
                .split_once(',')
                .ok_or_else(|| format!("cannot read `{clause}`"))?;
            let (path, target) = (name(path.trim()), name(target));
            if !item.contains_key(&path) {
                let new = value(fallback.trim())?;
                item.insert(target, new);
            } else if path != target {
                let current = item[&path].clone();
                item.insert(target, current);
            }
            continue;
        }
        let new = match source.split_once(" + ") {
            Some((current, increment)) => {
                let number = |v: &Value| v["N"].as_str().and_then(|n| n.parse::<u64>().ok());
                let current = item.get(&name(current)).and_then(number).unwrap_or(0);
                let increment = number(&value(increment)?).ok_or("not a number")?;
                json!({"N": (current + increment).to_string()})
            }
            None => value(source)?,
        };
        item.insert(name(target), new);
    }
    for alias in remove.into_iter().flat_map(|r| r.split(',')).map(str::trim) {
        item.remove(&name(alias));
    }
    Ok(())
}

/// The comma-separated clauses of `list`, leaving commas inside parentheses alone.
fn top_level(list: &str) -> impl Iterator<Item = &str> {
    let mut depth = 0_usize;
    let mut start = 0;
    let mut clauses = Vec::new();
    for (at, c) in list.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                clauses.push(list[start..at].trim());
                start = at + 1;
            }
            _ => {}
        }
    }
    clauses.push(list[start..].trim());
    clauses.into_iter()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn an_update_sets_adds_and_removes() {
        let mut item =
            json!({"pk": {"S": "job#1"}, "attempts": {"N": "1"}, "lease_until": {"N": "5"}})
                .as_object()
                .unwrap()
                .clone();
        let names = json!({"#s": "status", "#a": "attempts", "#l": "lease_until"});
        let values = json!({":to": {"S": "running"}, ":one": {"N": "1"}});
        apply_update(
            &mut item,
            "SET #s = :to, #a = #a + :one REMOVE #l",
            names.as_object(),
            values.as_object(),
        )
        .unwrap();
        assert_eq!(item["status"], json!({"S": "running"}));
        assert_eq!(item["attempts"], json!({"N": "2"}));
        assert!(!item.contains_key("lease_until"));
    }

    #[test]
    fn if_not_exists_keeps_a_value_already_there() {
        let mut item = json!({"pk": {"S": "job#1"}, "b": {"N": "1"}})
            .as_object()
            .unwrap()
            .clone();
        let names = json!({"#a": "a", "#b": "b"});
        let values = json!({":now": {"N": "7"}});
        apply_update(
            &mut item,
            "SET #a = if_not_exists(#a, :now), #b = if_not_exists(#b, :now)",
            names.as_object(),
            values.as_object(),
        )
        .unwrap();
        assert_eq!(item["a"], json!({"N": "7"}));
        assert_eq!(item["b"], json!({"N": "1"}));
    }

    #[test]
    fn a_read_finds_the_item_as_last_written() {
        let fake = FakeAws::default();
        let key = json!({"Key": {"pk": {"S": "job#1"}}}).to_string();
        let read = |fake: &FakeAws| {
            let answer = fake.answer("DynamoDB_20120810.GetItem", key.as_bytes());
            serde_json::from_slice::<Value>(&answer.body).unwrap()
        };
        assert_eq!(read(&fake), json!({}));
        let item = json!({"pk": {"S": "job#1"}, "status": {"S": "pending"}});
        fake.answer(
            "DynamoDB_20120810.PutItem",
            json!({ "Item": item }).to_string().as_bytes(),
        );
        assert_eq!(read(&fake), json!({ "Item": item }));
        let update = json!({
            "Key": {"pk": {"S": "job#1"}},
            "UpdateExpression": "SET #s = :to",
            "ExpressionAttributeNames": {"#s": "status"},
            "ExpressionAttributeValues": {":to": {"S": "running"}},
        });
        fake.answer(
            "DynamoDB_20120810.UpdateItem",
            update.to_string().as_bytes(),
        );
        assert_eq!(read(&fake)["Item"]["status"], json!({"S": "running"}));
    }

    #[test]
    fn an_update_of_a_missing_item_fails_its_condition() {
        let fake = FakeAws::default();
        let answer = fake.answer(
            "DynamoDB_20120810.UpdateItem",
            json!({"Key": {"pk": {"S": "job#none"}}})
                .to_string()
                .as_bytes(),
        );
        assert_eq!(answer.status, 400);
        assert!(String::from_utf8_lossy(&answer.body).contains("ConditionalCheckFailed"));
    }
}
