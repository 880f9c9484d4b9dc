//! The HTTP client webhooks are delivered with: hyper over rustls (ring), the system's root
//! certificates, no proxy, no redirects followed, and a connector that checks every address it
//! is about to connect to against the SSRF guard after DNS resolution.

use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioExecutor;

use super::guard::Allowlist;
use crate::error::Chain;
use crate::processor::Rejection;

/// Resolves a host name to its addresses. The default asks the system's resolver; tests swap in
/// their own answers.
pub trait Resolve: Send + Sync + std::fmt::Debug {
    /// The addresses of `host`.
    fn resolve(&self, host: &str) -> Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send>>;
}

/// The system's resolver (`getaddrinfo`, on a blocking thread).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, host: &str) -> Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send>> {
        let host = host.to_owned();
        Box::pin(async move {
            let addresses = tokio::net::lookup_host((host.as_str(), 0)).await?;
            Ok(addresses.map(|a| a.ip()).collect())
        })
    }
}

/// Why a connection was not made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectRefused {
    /// Every address the name resolved to is refused by the guard.
    #[error("{host} resolves only to refused addresses: {refusal}")]
    Guard {
        /// The name.
        host: String,
        /// Why its (first) address was refused.
        refusal: Rejection,
    },
    /// The name did not resolve.
    #[error("{host} did not resolve: {source}")]
    Resolve {
        /// The name.
        host: String,
        /// The resolver's error.
        source: io::Error,
    },
}

/// The resolver hyper's connector calls: resolves, then keeps only the addresses the guard
/// allows, so the connector can only ever connect to an allowed address.
#[derive(Debug, Clone)]
struct GuardedResolver {
    resolver: Arc<dyn Resolve>,
    allow: Arc<Allowlist>,
}

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = ConnectRefused;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let host = name.as_str().to_ascii_lowercase();
            let addresses =
                this.resolver
                    .resolve(&host)
                    .await
                    .map_err(|source| ConnectRefused::Resolve {
                        host: host.clone(),
                        source,
                    })?;
            let mut allowed = Vec::with_capacity(addresses.len());
            let mut first_refusal = None;
            for address in addresses {
                match this.allow.check_address(&host, address) {
                    // The port is the URL's: the connector sets it on each address.
                    Ok(()) => allowed.push(SocketAddr::new(address, 0)),
                    Err(refusal) => {
                        first_refusal.get_or_insert(refusal);
                    }
                }
            }
            match (allowed.is_empty(), first_refusal) {
                (true, Some(refusal)) => Err(ConnectRefused::Guard { host, refusal }),
                (true, None) => Err(ConnectRefused::Resolve {
                    host,
                    source: io::Error::new(io::ErrorKind::NotFound, "no addresses"),
                }),
                (false, _) => Ok(allowed.into_iter()),
            }
        })
    }
}

type Connector = hyper_rustls::HttpsConnector<HttpConnector<GuardedResolver>>;

/// A pooled HTTP/1.1 client for webhook deliveries.
#[derive(Debug, Clone)]
pub struct Client {
    inner: HyperClient<Connector, Full<Bytes>>,
}

impl Client {
    /// A client whose connections go only where `allow` permits, connecting within
    /// `connect_timeout`.
    pub fn new(
        allow: Arc<Allowlist>,
        resolver: Arc<dyn Resolve>,
        connect_timeout: Duration,
    ) -> Result<Self, rustls::Error> {
        let mut http = HttpConnector::new_with_resolver(GuardedResolver { resolver, allow });
        http.enforce_http(false);
        http.set_connect_timeout(Some(connect_timeout));
        http.set_nodelay(true);
        let tls = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config()?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let inner = HyperClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(4)
            .build(tls);
        Ok(Self { inner })
    }

    /// Sends `request` and reads at most `body_limit` bytes of the answer's body.
    pub async fn send(
        &self,
        request: http::Request<Full<Bytes>>,
        body_limit: usize,
    ) -> Result<Answer, SendError> {
        let response = self.inner.request(request).await.map_err(|error| {
            let refused = find::<ConnectRefused>(&error).and_then(|refused| match refused {
                ConnectRefused::Guard { refusal, .. } => Some(refusal.clone()),
                ConnectRefused::Resolve { .. } => None,
            });
            match refused {
                Some(refusal) => SendError::Refused(refusal),
                None => SendError::Transport(Chain(&error).to_string()),
            }
        })?;
        let (parts, mut body) = response.into_parts();
        let mut kept = Vec::new();
        let mut truncated = false;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| SendError::Transport(Chain(&e).to_string()))?;
            if let Ok(data) = frame.into_data() {
                let room = body_limit.saturating_sub(kept.len());
                kept.extend_from_slice(&data[..data.len().min(room)]);
                if data.len() > room {
                    // Enough kept; the rest is not read, and the connection is not reused.
                    truncated = true;
                    break;
                }
            }
        }
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body: kept,
            truncated,
        })
    }
}

/// What the receiver answered.
#[derive(Debug)]
pub struct Answer {
    /// Its status.
    pub status: http::StatusCode,
    /// Its headers.
    pub headers: http::HeaderMap,
    /// The start of its body.
    pub body: Vec<u8>,
    /// Whether the body went on beyond what was kept.
    pub truncated: bool,
}

/// A delivery that got no answer.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The guard refused every address the host resolved to; no connection was made.
    #[error("{0}")]
    Refused(Rejection),
    /// Resolution, connection, TLS or the exchange failed.
    #[error("{0}")]
    Transport(String),
}

/// rustls on ring, trusting the system's root certificates (loaded once, at the first delivery,
/// so they cost the cold start nothing).
fn tls_config() -> Result<rustls::ClientConfig, rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::warn!(error = %error, "a system root certificate could not be loaded");
    }
    roots.add_parsable_certificates(native.certs);
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

/// The first error of type `T` in `error`'s source chain.
fn find<'a, T: StdError + 'static>(error: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(found) = error.downcast_ref::<T>() {
            return Some(found);
        }
        current = error.source();
    }
    None
}
