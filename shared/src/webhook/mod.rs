//! The built-in `webhook` job kind: an outbound HTTP call taken off the request path, signed per
//! the Standard Webhooks specification, guarded against SSRF, retried by the consumer like any
//! job, and failed fast per host by a circuit breaker. Completion callbacks are webhook jobs too.
//!
//! Payload: `{"url", "method": "POST" | "PUT", "headers": {...}, "body": <JSON or string>}`.
//!
//! | the receiver | the job |
//! | --- | --- |
//! | answers 2xx | succeeds; its result records the status, latency and the start of the body |
//! | answers 408, 429 or 5xx, times out, or cannot be reached | is retried, after its `Retry-After` when longer than the backoff |
//! | answers another 4xx, or any 3xx (redirects are not followed) | fails |
//! | is refused by the SSRF guard | fails, without a connection |

mod breaker;
mod client;
mod guard;
mod settings;
mod signature;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http_body_util::Full;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tracing::{info, warn};

pub use breaker::{Admission, Breakers, Counters, Open};
pub use client::{Answer, Client, ConnectRefused, Resolve, SendError, SystemResolver};
pub use guard::{Allowlist, Target};
pub use settings::WebhookSettings;
pub use signature::{SecretError, SigningKeys};

use crate::processor::{ProcessError, Processor, Rejection, Work};

/// The kind name webhooks and callbacks run under.
pub const KIND: &str = "webhook";
/// How much of a receiver's answer the job's result (or error) keeps.
pub const BODY_SLICE_BYTES: usize = 1024;
/// Most headers a webhook may set.
const MAX_HEADERS: usize = 32;
/// Longest header name a webhook may set.
const MAX_HEADER_NAME_BYTES: usize = 128;
/// Longest header value a webhook may set.
const MAX_HEADER_VALUE_BYTES: usize = 4096;
/// Most bytes of names and values a webhook's headers may hold in all.
const MAX_HEADER_BYTES: usize = 16_384;
/// Headers Spillway sets itself, or that would let a payload change the framing of the request.
const RESERVED_HEADERS: [&str; 11] = [
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
];

/// The `webhook` processor. Cheap to clone; clones share the connection pool and the breakers.
#[derive(Clone)]
pub struct Webhook {
    settings: Arc<WebhookSettings>,
    allow: Arc<Allowlist>,
    keys: Option<SigningKeys>,
    resolver: Arc<dyn Resolve>,
    breakers: Arc<Breakers>,
    client: Arc<OnceLock<Result<Client, String>>>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
enum Method {
    #[default]
    #[serde(rename = "POST")]
    Post,
    #[serde(rename = "PUT")]
    Put,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload<'a> {
    url: String,
    #[serde(default)]
    method: Method,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default, borrow)]
    body: Option<&'a RawValue>,
}

/// A payload checked and turned into the parts of a request.
#[derive(Debug)]
struct Prepared {
    target: Target,
    method: http::Method,
    headers: HeaderMap,
    body: Bytes,
}

impl Webhook {
    /// A processor delivering with `settings`, signing with `keys`. Without keys it still
    /// validates payloads (intake needs no secret), and fails deliveries as retryable until a
    /// consumer with a secret picks them up.
    pub fn new(settings: WebhookSettings, keys: Option<SigningKeys>) -> Self {
        let breakers = Breakers::new(settings.breaker_failures, settings.breaker_cooldown);
        Self {
            allow: Arc::new(settings.allow.clone()),
            settings: Arc::new(settings),
            keys,
            resolver: Arc::new(SystemResolver),
            breakers,
            client: Arc::default(),
        }
    }

    /// The same processor resolving names with `resolver` (tests use it to answer DNS).
    pub fn with_resolver(mut self, resolver: Arc<dyn Resolve>) -> Self {
        self.resolver = resolver;
        self.client = Arc::default();
        self
    }

    /// The per-host circuit breakers.
    pub fn breakers(&self) -> &Breakers {
        &self.breakers
    }

    /// Checks a URL a webhook or callback would be sent to.
    pub fn check_url(&self, url: &str) -> Result<Target, Rejection> {
        self.allow.check_url(url)
    }

    fn prepare(&self, payload: &RawValue) -> Result<Prepared, Rejection> {
        let payload: Payload<'_> = serde_json::from_str(payload.get()).map_err(|e| {
            Rejection::Invalid(format!(
                r#"webhook expects {{"url", "method": "POST" | "PUT", "headers": {{...}}, "body": ...}}: {e}"#
            ))
        })?;
        let target = self.check_url(&payload.url)?;
        if payload.headers.len() > MAX_HEADERS {
            return Err(Rejection::Invalid(format!(
                "a webhook may set at most {MAX_HEADERS} headers"
            )));
        }
        let total: usize = payload.headers.iter().map(|(n, v)| n.len() + v.len()).sum();
        if total > MAX_HEADER_BYTES {
            return Err(Rejection::Invalid(format!(
                "a webhook's headers may hold at most {MAX_HEADER_BYTES} bytes in all"
            )));
        }
        let mut headers = HeaderMap::with_capacity(payload.headers.len() + 5);
        for (name, value) in &payload.headers {
            if name.len() > MAX_HEADER_NAME_BYTES || value.len() > MAX_HEADER_VALUE_BYTES {
                return Err(Rejection::Invalid(format!(
                    "a webhook header's name may be at most {MAX_HEADER_NAME_BYTES} bytes and its \
                     value {MAX_HEADER_VALUE_BYTES}"
                )));
            }
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| Rejection::Invalid("a header name is not a valid token".to_owned()))?;
            if RESERVED_HEADERS.contains(&name.as_str()) || name.as_str().starts_with("proxy-") {
                return Err(Rejection::Invalid(format!(
                    "the `{name}` header is set by Spillway and may not be given"
                )));
            }
            let value = HeaderValue::from_str(value).map_err(|_| {
                Rejection::Invalid(format!("the value of `{name}` is not a valid header value"))
            })?;
            headers.append(name, value);
        }
        let (body, content_type) = match payload.body {
            None => (Bytes::new(), None),
            Some(raw) if raw.get().starts_with('"') => {
                let text: String = serde_json::from_str(raw.get())
                    .map_err(|e| Rejection::Invalid(format!("body: {e}")))?;
                (Bytes::from(text), Some("text/plain; charset=utf-8"))
            }
            Some(raw) => (
                Bytes::copy_from_slice(raw.get().as_bytes()),
                Some("application/json"),
            ),
        };
        if let Some(content_type) = content_type {
            headers
                .entry(header::CONTENT_TYPE)
                .or_insert(HeaderValue::from_static(content_type));
        }
        headers
            .entry(header::USER_AGENT)
            .or_insert(HeaderValue::from_static(concat!(
                "Spillway-Webhooks/",
                env!("CARGO_PKG_VERSION")
            )));
        let method = match payload.method {
            Method::Post => http::Method::POST,
            Method::Put => http::Method::PUT,
        };
        Ok(Prepared {
            target,
            method,
            headers,
            body,
        })
    }

    fn client(&self) -> Result<&Client, ProcessError> {
        self.client
            .get_or_init(|| {
                Client::new(
                    self.allow.clone(),
                    self.resolver.clone(),
                    self.settings.connect_timeout,
                )
                .map_err(|e| format!("the webhook HTTP client could not be built: {e}"))
            })
            .as_ref()
            .map_err(|e| ProcessError::retryable(e.clone()))
    }

    async fn deliver(&self, work: &Work, keys: &SigningKeys) -> Result<Value, ProcessError> {
        let prepared = self
            .prepare(&work.payload)
            .map_err(|rejection| ProcessError::permanent(rejection.to_string()))?;
        let client = self.client()?;
        // A job's error names the destination by its origin only: the path and query of a
        // webhook URL often carry a token, and the error is readable through GET /jobs/{id}.
        let origin = origin(&prepared.target);
        let delivery = Delivery {
            what: format!("{} {origin}", prepared.method),
            host: prepared.target.host.clone(),
        };
        // One tenant's failures, or failures on another port of the host, open no circuit for
        // anyone else.
        let circuit = format!("{}:{}{origin}", work.owner.as_str().len(), work.owner);
        let admission = self
            .breakers
            .admit(&circuit)
            .map_err(|open| ProcessError::Retryable {
                message: format!(
                    "{}: not sent, the circuit for {origin} is open after repeated failures",
                    delivery.what
                ),
                retry_after: Some(open.retry_after),
            })?;
        let request = signed(prepared, work, keys);
        let started = tokio::time::Instant::now();
        let timeout = self.settings.timeout;
        let sent = tokio::time::timeout(timeout, client.send(request, BODY_SLICE_BYTES)).await;
        let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let answer = match sent {
            Ok(Ok(answer)) => answer,
            Ok(Err(error)) => return Err(delivery.not_sent(error, admission)),
            Err(_) => {
                admission.failed();
                warn!(host = %delivery.host, latency_ms, "webhook timed out");
                return Err(ProcessError::retryable(format!(
                    "{}: no answer within {} ms",
                    delivery.what,
                    timeout.as_millis()
                )));
            }
        };
        delivery.outcome(&answer, latency_ms, admission)
    }
}

/// The request for `prepared`, with the Standard Webhooks headers: the job id, the time in Unix
/// seconds, and the signature with the owner's key.
fn signed(prepared: Prepared, work: &Work, keys: &SigningKeys) -> http::Request<Full<Bytes>> {
    let id = work.job_id.to_string();
    let timestamp = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let signature = keys
        .for_owner(&work.owner)
        .sign(&id, timestamp, &prepared.body);
    let mut request = http::Request::new(Full::new(prepared.body));
    *request.method_mut() = prepared.method;
    *request.uri_mut() = prepared.target.uri;
    let headers = request.headers_mut();
    *headers = prepared.headers;
    for (name, value) in [
        ("webhook-id", id),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", signature),
    ] {
        // Ids, digits and base64 are always valid header values.
        if let Ok(value) = HeaderValue::try_from(value) {
            headers.insert(name, value);
        }
    }
    request
}

/// One delivery as its outcome names it: `what` (method and origin) for the job's error, `host`
/// for the log.
struct Delivery {
    what: String,
    host: String,
}

impl Delivery {
    /// A send that got no answer: refused by the SSRF guard (permanent, and no failure of the
    /// host's), or a transport error (retryable).
    fn not_sent(&self, error: SendError, admission: Admission) -> ProcessError {
        let Self { what, host } = self;
        match error {
            SendError::Refused(refusal) => {
                admission.withdrawn();
                // The address stays in the log, for operators; the job's error, which its owner
                // reads, does not say what a name resolves to inside the network.
                warn!(host = %host, refusal = %refusal, "webhook refused by the SSRF guard");
                ProcessError::permanent(format!(
                    "{what}: refused before connecting: {host} resolves only to addresses \
                     webhooks may not reach"
                ))
            }
            SendError::Transport(error) => {
                admission.failed();
                warn!(host = %host, error = %error, "webhook not delivered");
                ProcessError::retryable(format!("{what}: {error}"))
            }
        }
    }

    /// What the receiver's answer makes of the job: a 2xx succeeds; 408, 429 and 5xx are
    /// retryable (after `Retry-After` when it says); any other status fails for good.
    fn outcome(
        &self,
        answer: &Answer,
        latency_ms: u64,
        admission: Admission,
    ) -> Result<Value, ProcessError> {
        let status = answer.status;
        let body = String::from_utf8_lossy(&answer.body);
        info!(host = %self.host, status = status.as_u16(), latency_ms, "webhook answered");
        if status.is_success() {
            admission.succeeded();
            return Ok(json!({
                "status_code": status.as_u16(),
                "latency_ms": latency_ms,
                "body": body,
                "body_truncated": answer.truncated,
            }));
        }
        let what = &self.what;
        let said = if body.is_empty() {
            format!("{what}: answered {status}")
        } else {
            let ellipsis = if answer.truncated { "…" } else { "" };
            format!("{what}: answered {status}: {body}{ellipsis}")
        };
        if status.is_server_error()
            || status == http::StatusCode::REQUEST_TIMEOUT
            || status == http::StatusCode::TOO_MANY_REQUESTS
        {
            admission.failed();
            return Err(ProcessError::Retryable {
                message: said,
                retry_after: retry_after(&answer.headers, SystemTime::now()),
            });
        }
        admission.succeeded();
        if status.is_redirection() {
            let location = answer
                .headers
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("none");
            return Err(ProcessError::permanent(format!(
                "{said} (redirects are not followed; Location: {location})"
            )));
        }
        Err(ProcessError::permanent(said))
    }
}

#[async_trait]
impl Processor for Webhook {
    fn validate(&self, payload: &RawValue) -> Result<(), String> {
        self.prepare(payload).map(drop).map_err(|r| r.to_string())
    }

    fn admit(&self, payload: &RawValue) -> Result<(), Rejection> {
        self.prepare(payload).map(drop)
    }

    async fn process(&self, work: &Work) -> Result<Value, ProcessError> {
        let Some(keys) = &self.keys else {
            return Err(ProcessError::retryable(
                "no webhook signing secret is configured in this consumer \
                 (SPILLWAY_WEBHOOK_SECRET or SPILLWAY_WEBHOOK_SECRET_ARN)",
            ));
        };
        self.deliver(work, keys).await
    }
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("settings", &self.settings)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

/// `scheme://host:port`, the port spelled out even when it is the scheme's default.
fn origin(target: &Target) -> String {
    let scheme = target.uri.scheme_str().unwrap_or("https");
    let port = target
        .uri
        .port_u16()
        .unwrap_or(if scheme == "http" { 80 } else { 443 });
    if target.host.contains(':') {
        format!("{scheme}://[{}]:{port}", target.host)
    } else {
        format!("{scheme}://{}:{port}", target.host)
    }
}

/// The wait a `Retry-After` header asks for: delta-seconds or an HTTP date.
fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or_default())
}

#[cfg(test)]
mod tests;
