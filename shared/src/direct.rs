//! A lean client for AWS's JSON protocol, for the few DynamoDB and SQS operations the functions
//! make on every invocation (docs/performance.md, "10. The hot calls through a lean client").
//!
//! The AWS SDK's orchestration — interceptors, a config bag built for each call, runtime plugins,
//! identity and endpoint resolution — is about 400 k instructions a call, several times the
//! request's own work. This client does what those calls need and no more, keeping each guarantee
//! the SDK gave them:
//!
//! - **SigV4** on every request, with the signing key (four HMACs) derived once per day and
//!   credential, as it only changes then.
//! - **The SDK's standard retries**: throttling codes, transient codes, HTTP 500/502/503/504 and
//!   transport errors, at most 3 attempts, full-jitter exponential backoff from 1 s capped at
//!   20 s, and a token bucket of 500 that a run of failures drains (see [`retry`]).
//! - **Timeouts**: the SDK's 3.1 s to connect, and an attempt timeout in place of its
//!   stalled-stream protection (which guards only a response body that stops arriving; the SDK
//!   waits for the headers without limit).
//! - **Clock skew**: each answer's `Date` sets the offset later requests are signed with.
//!
//! It is used only where it can be exactly right: credentials from the environment (as Lambda
//! gives them), and an endpoint that is either `AWS_ENDPOINT_URL` or the standard one of a
//! region in the `aws` partition ([`Direct::from_sdk`]). Anything else keeps the SDK.

mod retry;
mod signing;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST, HeaderValue};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::{HttpConnector, capture_connection};
use hyper_util::rt::TokioExecutor;

use crate::sdk::Roots;
pub use retry::RetryPolicy;
use retry::{Classification, TokenBucket};
use signing::{Credentials, Signer};

/// The SDK's default connect timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(3_100);

/// How long one attempt may take, connection, request and whole answer together. DynamoDB and
/// SQS answer these operations in milliseconds; an attempt this slow is a connection that stopped
/// answering, and is retried like any transport error.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// A service this client speaks the JSON protocol to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// DynamoDB (`DynamoDB_20120810`).
    DynamoDb,
    /// SQS (`AmazonSQS`).
    Sqs,
}

impl Service {
    fn signing_name(self) -> &'static str {
        match self {
            Self::DynamoDb => "dynamodb",
            Self::Sqs => "sqs",
        }
    }

    fn target_prefix(self) -> &'static str {
        match self {
            Self::DynamoDb => "DynamoDB_20120810",
            Self::Sqs => "AmazonSQS",
        }
    }

    /// The variable that gives this service an endpoint of its own, which the SDK honours.
    fn endpoint_variable(self) -> &'static str {
        match self {
            Self::DynamoDb => "AWS_ENDPOINT_URL_DYNAMODB",
            Self::Sqs => "AWS_ENDPOINT_URL_SQS",
        }
    }
}

/// The JSON protocol's content type for both services.
const CONTENT_TYPE_JSON: &str = "application/x-amz-json-1.0";

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
type Http = HyperClient<Connector, Full<Bytes>>;

/// The HTTPS client, built at its first request (so that a function that never makes a direct
/// call pays nothing for its TLS configuration).
#[derive(Debug)]
struct Transport {
    roots: Roots,
    client: OnceLock<Result<Http, Arc<rustls::Error>>>,
}

impl Transport {
    fn client(&self) -> Result<&Http, CallError> {
        self.client
            .get_or_init(|| build_http(self.roots).map_err(Arc::new))
            .as_ref()
            .map_err(|error| CallError::Tls(error.clone()))
    }
}

fn build_http(roots: Roots) -> Result<Http, rustls::Error> {
    let mut store = rustls::RootCertStore::empty();
    let embedded = rustls::pki_types::pem::PemObject::pem_slice_iter(
        crate::sdk::AMAZON_TRUST_SERVICES.as_bytes(),
    )
    .filter_map(Result::ok);
    store.add_parsable_certificates(embedded);
    if roots == Roots::System {
        store.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(store)
    .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    http.set_nodelay(true);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(HyperClient::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(connector))
}

/// What the direct clients of one process share: credentials, region, endpoint override, the
/// HTTPS client with its connection pool, and the retry token bucket.
#[derive(Debug, Clone)]
pub struct Direct {
    credentials: Arc<Credentials>,
    region: String,
    endpoint: Option<Endpoint>,
    transport: Arc<Transport>,
    bucket: Arc<TokenBucket>,
    policy: RetryPolicy,
}

impl Direct {
    /// Direct clients for what `sdk` was loaded from, if this client can serve it exactly as the
    /// SDK would: `None` unless `lookup` (the environment) holds `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY` (the source [`crate::sdk::loader`] then gives the SDK), `sdk` has
    /// a region, FIPS and dual-stack endpoints are off, no service has an endpoint of its own,
    /// and the endpoint is `sdk`'s override or the region's standard one in the `aws` partition.
    pub fn from_sdk(
        sdk: &aws_config::SdkConfig,
        roots: Roots,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Option<Self> {
        let set = |name: &str| lookup(name).filter(|value| !value.is_empty());
        let access_key_id = set("AWS_ACCESS_KEY_ID")?;
        let secret = set("AWS_SECRET_ACCESS_KEY")?;
        let session_token = set("AWS_SESSION_TOKEN");
        let region = sdk.region()?.as_ref().to_owned();
        if sdk.use_fips() == Some(true) || sdk.use_dual_stack() == Some(true) {
            return None;
        }
        if [Service::DynamoDb, Service::Sqs]
            .iter()
            .any(|service| set(service.endpoint_variable()).is_some())
        {
            return None;
        }
        let endpoint = match sdk.endpoint_url() {
            Some(url) => Some(Endpoint::parse(url)?),
            None if standard_partition(&region) => None,
            None => return None,
        };
        Some(Self::new(
            endpoint,
            &region,
            (access_key_id, secret, session_token),
            roots,
        ))
    }

    /// Direct clients for `region`, signing with `(access key id, secret, session token)`, at
    /// `endpoint` (or each service's standard endpoint in the region).
    pub fn new(
        endpoint: Option<Endpoint>,
        region: &str,
        (access_key_id, secret, session_token): (String, String, Option<String>),
        roots: Roots,
    ) -> Self {
        Self {
            credentials: Arc::new(Credentials {
                access_key_id,
                secret,
                session_token,
            }),
            region: region.to_owned(),
            endpoint,
            transport: Arc::new(Transport {
                roots,
                client: OnceLock::new(),
            }),
            bucket: Arc::new(TokenBucket::default()),
            policy: RetryPolicy::standard(),
        }
    }

    /// The same, retrying as `policy` says (tests shorten the backoff and the attempt timeout).
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// A client for `service`.
    pub fn client(&self, service: Service) -> Client {
        let endpoint = self.endpoint.clone().unwrap_or_else(|| Endpoint {
            uri: format!(
                "https://{}.{}.amazonaws.com/",
                service.signing_name(),
                self.region
            )
            .parse()
            .unwrap_or_default(),
            host: HeaderValue::from_str(&format!(
                "{}.{}.amazonaws.com",
                service.signing_name(),
                self.region
            ))
            .unwrap_or(HeaderValue::from_static("invalid")),
        });
        Client(Arc::new(Inner {
            service,
            endpoint,
            signer: Signer::new(
                self.credentials.clone(),
                &self.region,
                service.signing_name(),
            ),
            transport: self.transport.clone(),
            bucket: self.bucket.clone(),
            policy: self.policy,
            skew_ms: AtomicI64::new(0),
        }))
    }
}

/// Regions whose endpoints are `SERVICE.REGION.amazonaws.com`: the commercial `aws` partition
/// (and not GovCloud, China, the ISO partitions or the EU sovereign cloud).
fn standard_partition(region: &str) -> bool {
    let mut parts = region.split('-');
    let (Some(area), Some(place), Some(number), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    ["us", "eu", "ap", "sa", "ca", "me", "af", "il", "mx"].contains(&area)
        && !place.is_empty()
        && place.bytes().all(|b| b.is_ascii_lowercase())
        && place != "gov"
        && place != "iso"
        && place != "isob"
        && !number.is_empty()
        && number.bytes().all(|b| b.is_ascii_digit())
}

/// Where requests go: a URL with no path (or `/`), and the `Host` header it is signed with.
#[derive(Debug, Clone)]
pub struct Endpoint {
    uri: Uri,
    host: HeaderValue,
}

impl Endpoint {
    /// `url`, if it is `http` or `https` with a host and no path, query or user information.
    pub fn parse(url: &str) -> Option<Self> {
        let uri: Uri = url.parse().ok()?;
        let scheme = uri.scheme_str()?;
        let authority = uri.authority()?;
        if !matches!(scheme, "http" | "https")
            || authority.as_str().contains('@')
            || !matches!(uri.path(), "" | "/")
            || uri.query().is_some()
        {
            return None;
        }
        let default_port = if scheme == "https" { 443 } else { 80 };
        let host = match authority.port_u16() {
            Some(port) if port != default_port => format!("{}:{port}", authority.host()),
            _ => authority.host().to_owned(),
        };
        Some(Self {
            uri: format!("{scheme}://{authority}/").parse().ok()?,
            host: HeaderValue::from_str(&host).ok()?,
        })
    }
}

/// A client for one service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Client(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    service: Service,
    endpoint: Endpoint,
    signer: Signer,
    transport: Arc<Transport>,
    bucket: Arc<TokenBucket>,
    policy: RetryPolicy,
    /// The service's clock minus ours, in milliseconds, from the last answer's `Date`.
    skew_ms: AtomicI64,
}

impl Client {
    /// Calls `operation` with the JSON `body`, retrying as the SDK's standard mode does, and
    /// returns the body of the successful answer.
    pub async fn call(&self, operation: &str, body: Vec<u8>) -> Result<Bytes, CallError> {
        let inner = &*self.0;
        let target =
            HeaderValue::from_str(&format!("{}.{operation}", inner.service.target_prefix()))
                .map_err(|_| CallError::Operation(operation.to_owned()))?;
        let body = Bytes::from(body);
        let mut attempt = 1;
        let mut held = 0;
        loop {
            let outcome = self.attempt(&target, &body).await;
            let classification = match &outcome {
                Ok(_) => {
                    inner.bucket.release(held);
                    break outcome;
                }
                Err(error) => retry::classify(error),
            };
            if classification == Classification::Final || attempt >= inner.policy.max_attempts {
                break outcome;
            }
            match inner.bucket.acquire(classification) {
                Some(cost) => held = cost,
                None => break outcome,
            }
            tokio::time::sleep(inner.policy.backoff(attempt, fastrand::f64())).await;
            attempt += 1;
        }
    }

    async fn attempt(&self, target: &HeaderValue, body: &Bytes) -> Result<Bytes, CallError> {
        let inner = &*self.0;
        let client = inner.transport.client()?;
        let skew = inner.skew_ms.load(Ordering::Relaxed);
        let now = shift(SystemTime::now(), skew);
        let signed = inner.signer.sign(now, &inner.endpoint.host, target, body);
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(inner.endpoint.uri.clone())
            .header(HOST, inner.endpoint.host.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_JSON))
            .header(
                http::header::USER_AGENT,
                HeaderValue::from_static(USER_AGENT),
            )
            .header("x-amz-target", target.clone())
            .header("x-amz-date", signed.date)
            .header(http::header::AUTHORIZATION, signed.authorization);
        if let Some(token) = signed.security_token {
            request = request.header("x-amz-security-token", token);
        }
        if let Some(trace) = trace_header() {
            request = request.header("x-amzn-trace-id", trace);
        }
        let mut request = request
            .body(Full::new(body.clone()))
            .map_err(|error| CallError::Request(Arc::new(error)))?;
        let connection = capture_connection(&mut request);
        let outcome = self.exchange(client, request).await;
        if let Err(error) = &outcome
            && retry::classify(error) == Classification::Transient
            && let Some(connected) = connection.connection_metadata().as_ref()
        {
            // As the SDK does after a transient failure: the retry takes a new connection.
            connected.poison();
        }
        outcome
    }

    async fn exchange(
        &self,
        client: &Http,
        request: Request<Full<Bytes>>,
    ) -> Result<Bytes, CallError> {
        let inner = &*self.0;
        let exchange = async {
            let response = client
                .request(request)
                .await
                .map_err(|error| CallError::Transport(Arc::new(error)))?;
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|error| CallError::Body(Arc::new(error)))?
                .to_bytes();
            Ok::<_, CallError>((parts, body))
        };
        let (parts, body) = tokio::time::timeout(inner.policy.attempt_timeout, exchange)
            .await
            .map_err(|_| CallError::Timeout(inner.policy.attempt_timeout))??;
        if let Some(date) = parts
            .headers
            .get(http::header::DATE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| httpdate::parse_http_date(value).ok())
        {
            inner
                .skew_ms
                .store(skew_between(SystemTime::now(), date), Ordering::Relaxed);
        }
        if parts.status.is_success() {
            Ok(body)
        } else {
            Err(CallError::Service(ServiceError::read(
                parts.status.as_u16(),
                &parts.headers,
                body,
            )))
        }
    }
}

/// What the client calls itself in `User-Agent`, as every AWS SDK names itself, so that the
/// calls are attributed to Spillway (in CloudTrail's `userAgent`, for one). Not signed.
pub const USER_AGENT: &str = concat!("spillway/", env!("CARGO_PKG_VERSION"), " direct");

/// The `X-Amzn-Trace-Id` the SDK's recursion detection sends from a Lambda function: the
/// invocation's trace id (which `lambda_runtime` sets in `_X_AMZN_TRACE_ID`), so that X-Ray
/// follows the call and Lambda's recursive loop detection sees it, with control characters
/// percent-encoded.
fn trace_header() -> Option<HeaderValue> {
    std::env::var_os("AWS_LAMBDA_FUNCTION_NAME")?;
    let trace = std::env::var("_X_AMZN_TRACE_ID").ok()?;
    HeaderValue::from_str(&encode_controls(&trace)).ok()
}

fn encode_controls(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_control() || !byte.is_ascii() {
            encoded.push_str(&format!("%{byte:02X}"));
        } else {
            encoded.push(char::from(byte));
        }
    }
    encoded
}

/// `time` moved by `skew_ms`.
fn shift(time: SystemTime, skew_ms: i64) -> SystemTime {
    let by = Duration::from_millis(skew_ms.unsigned_abs());
    if skew_ms >= 0 {
        time.checked_add(by).unwrap_or(time)
    } else {
        time.checked_sub(by).unwrap_or(time)
    }
}

/// `server - local`, in milliseconds.
fn skew_between(local: SystemTime, server: SystemTime) -> i64 {
    match server.duration_since(local) {
        Ok(ahead) => i64::try_from(ahead.as_millis()).unwrap_or(i64::MAX),
        Err(behind) => -i64::try_from(behind.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// An error answer from the service.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message} (HTTP {status})")]
pub struct ServiceError {
    /// The HTTP status.
    pub status: u16,
    /// The error code, without its namespace (`ConditionalCheckFailedException`).
    pub code: String,
    /// The service's message.
    pub message: String,
    /// The whole answer (DynamoDB puts the item a condition failed on in it).
    pub body: Bytes,
}

impl ServiceError {
    /// As the SDK reads the JSON protocol's errors: the code from `x-amzn-errortype`, else the
    /// body's `code` or `__type`, without anything after `:` or before `#`.
    fn read(status: u16, headers: &http::HeaderMap, body: Bytes) -> Self {
        #[derive(serde::Deserialize, Default)]
        struct Fields {
            #[serde(rename = "__type")]
            kind: Option<String>,
            code: Option<String>,
            #[serde(alias = "Message")]
            message: Option<String>,
        }
        let fields: Fields = serde_json::from_slice(&body).unwrap_or_default();
        let raw = headers
            .get("x-amzn-errortype")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
            .or(fields.code)
            .or(fields.kind)
            .unwrap_or_default();
        let code = raw.split(':').next().unwrap_or_default();
        let code = code.rsplit('#').next().unwrap_or_default();
        Self {
            status,
            code: code.to_owned(),
            message: fields.message.unwrap_or_default(),
            body,
        }
    }
}

/// Why a call failed (after its retries).
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The service answered with an error.
    #[error(transparent)]
    Service(ServiceError),
    /// The connection could not be made, or broke.
    #[error("the request could not be sent")]
    Transport(#[source] Arc<hyper_util::client::legacy::Error>),
    /// The answer's body could not be read.
    #[error("the answer could not be read")]
    Body(#[source] Arc<hyper::Error>),
    /// An attempt took longer than its timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The TLS configuration could not be built.
    #[error("the TLS configuration could not be built")]
    Tls(#[source] Arc<rustls::Error>),
    /// The request could not be made.
    #[error("the request could not be built")]
    Request(#[source] Arc<http::Error>),
    /// The operation's name cannot be a header.
    #[error("`{0}` is not an operation name")]
    Operation(String),
}

impl CallError {
    /// The service's error code, if the service answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Service(error) => Some(&error.code),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
