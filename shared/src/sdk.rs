//! The AWS SDK configuration every Spillway process loads: the SDK's own chain (environment,
//! profile, container and instance credentials; `AWS_ENDPOINT_URL`), with an HTTPS client chosen
//! for Lambda's cold start and package size.
//!
//! - **rustls on ring** rather than the SDK's default aws-lc: the same TLS 1.2/1.3 suites, and
//!   about 1.4 MB less code in every function (docs/performance.md).
//! - **Amazon Trust Services roots** rather than the system's whole store: every AWS service
//!   endpoint chains to one of these six, and parsing the system's ~140 roots cost each cold
//!   start about 2.5 ms. A process that must also trust another CA (an emulator or proxy with its
//!   own certificate) names it the standard way, with `SSL_CERT_FILE` or `SSL_CERT_DIR`, and then
//!   trusts the system's roots and that file as well.
//! - **One TLS configuration per process** rather than one per SDK client plus one more at the
//!   first request (see [`OneConnector`]).

use aws_config::environment::EnvironmentVariableCredentialsProvider;
use aws_config::{BehaviorVersion, ConfigLoader, Region};
use aws_sdk_dynamodb::config::{
    ConfigBag, HttpClient, IntoShared, RuntimeComponents, RuntimeComponentsBuilder,
    SharedHttpClient,
};
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
use aws_smithy_http_client::{Builder, tls::rustls_provider::CryptoMode};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{HttpConnectorSettings, SharedHttpConnector};

/// The PEM roots of Amazon Trust Services.
pub(crate) const AMAZON_TRUST_SERVICES: &str = include_str!("sdk/amazon-trust-services.pem");

/// Which certificate authorities the HTTPS client trusts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Roots {
    /// Amazon Trust Services only, unless `SSL_CERT_FILE` or `SSL_CERT_DIR` names more: for the
    /// Lambda functions.
    Aws,
    /// The system's store as well (and `SSL_CERT_FILE`/`SSL_CERT_DIR`): for the command-line
    /// tool, which may talk to anything a developer points it at.
    System,
}

impl Roots {
    /// `Aws`, widened to `System` when the environment names its own certificates.
    pub fn for_lambda() -> Self {
        let named = |var| std::env::var_os(var).is_some_and(|v| !v.is_empty());
        if named("SSL_CERT_FILE") || named("SSL_CERT_DIR") {
            Self::System
        } else {
            Self::Aws
        }
    }
}

/// The HTTPS client for the AWS SDK clients, trusting `roots`.
pub fn http_client(roots: Roots) -> SharedHttpClient {
    let trust = TrustStore::empty()
        .with_native_roots(roots == Roots::System)
        .with_pem_certificate(AMAZON_TRUST_SERVICES.as_bytes());
    let builder = Builder::new().tls_provider(tls::Provider::Rustls(CryptoMode::Ring));
    let client = match TlsContext::builder().with_trust_store(trust).build() {
        Ok(context) => builder.tls_context(context).build_https(),
        // The builder does not fail today (certificates are parsed at the first connection, and
        // the embedded ones are tested); should it ever, the SDK's default trust store serves.
        Err(_) => builder.build_https(),
    };
    OneConnector(client).into_shared()
}

/// An SDK HTTP client that builds its connector once, at the first request.
///
/// The SDK's hyper client builds a whole connector in `validate_base_client_config` — the rustls
/// configuration, with every root certificate decoded from PEM and parsed — only to drop it, so
/// that a bad TLS setup shows when an SDK client is made. It does so for every SDK client, and
/// the first request then builds the connector it keeps: three TLS configurations where one
/// serves, for a function with two clients, and about a fifth of its instructions from exec to
/// its first answer (docs/performance.md). This client hands out the inner client's cached
/// connectors and leaves the check out; a bad setup still fails, at the first request.
#[derive(Debug)]
struct OneConnector(SharedHttpClient);

impl HttpClient for OneConnector {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        self.0.http_connector(settings, components)
    }

    fn validate_base_client_config(
        &self,
        _: &RuntimeComponentsBuilder,
        _: &ConfigBag,
    ) -> Result<(), BoxError> {
        Ok(())
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        self.0.connector_metadata()
    }
}

/// The SDK's configuration loader with Spillway's HTTPS client.
///
/// Where the environment holds credentials and a region, as Lambda's always does, they are
/// taken from it directly: the default chains would find them there first anyway, and building
/// those chains (profile, web identity, container and instance-metadata providers) is a third of
/// the configuration's cost at cold start (docs/performance.md).
pub fn loader(roots: Roots) -> ConfigLoader {
    loader_with(roots, |name| std::env::var(name).ok())
}

fn loader_with(roots: Roots, lookup: impl Fn(&str) -> Option<String>) -> ConfigLoader {
    let set = |name| lookup(name).filter(|value| !value.is_empty());
    let mut loader =
        aws_config::defaults(BehaviorVersion::latest()).http_client(http_client(roots));
    if set("AWS_ACCESS_KEY_ID").is_some() && set("AWS_SECRET_ACCESS_KEY").is_some() {
        loader = loader.credentials_provider(EnvironmentVariableCredentialsProvider::new());
    }
    if let Some(region) = set("AWS_REGION") {
        loader = loader.region(Region::new(region));
    }
    loader
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use aws_sdk_dynamodb::config::http::{HttpRequest, HttpResponse};
    use aws_sdk_dynamodb::config::{Credentials, SharedCredentialsProvider};
    use aws_smithy_runtime_api::client::http::{HttpConnector, HttpConnectorFuture};
    use aws_smithy_types::body::SdkBody;

    use super::*;

    #[tokio::test]
    async fn the_region_in_the_environment_is_taken_as_is() {
        let env = |name: &str| match name {
            "AWS_REGION" => Some("eu-west-3".to_owned()),
            "AWS_ACCESS_KEY_ID" | "AWS_SECRET_ACCESS_KEY" => Some("testing".to_owned()),
            _ => None,
        };
        let sdk = loader_with(Roots::Aws, env).load().await;
        assert_eq!(sdk.region().map(|r| r.as_ref()), Some("eu-west-3"));
        assert!(sdk.credentials_provider().is_some());
    }

    /// An HTTP client that counts how it is used, and answers `{}` to every request.
    #[derive(Debug, Default)]
    struct Counting {
        validations: AtomicUsize,
        connectors: AtomicUsize,
    }

    #[derive(Debug)]
    struct CountingClient(Arc<Counting>);

    impl HttpClient for CountingClient {
        fn http_connector(
            &self,
            _: &HttpConnectorSettings,
            _: &RuntimeComponents,
        ) -> SharedHttpConnector {
            self.0.connectors.fetch_add(1, Ordering::SeqCst);
            SharedHttpConnector::new(EmptyObject)
        }

        fn validate_base_client_config(
            &self,
            _: &RuntimeComponentsBuilder,
            _: &ConfigBag,
        ) -> Result<(), BoxError> {
            self.0.validations.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    #[derive(Debug)]
    struct EmptyObject;

    impl HttpConnector for EmptyObject {
        fn call(&self, _: HttpRequest) -> HttpConnectorFuture {
            let status = 200.try_into().unwrap();
            HttpConnectorFuture::ready(Ok(HttpResponse::new(status, SdkBody::from("{}"))))
        }
    }

    #[tokio::test]
    async fn sdk_clients_take_connectors_from_the_inner_client_and_build_none_to_check_it() {
        let counts = Arc::new(Counting::default());
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("eu-west-3"))
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "AKIDTEST", "secret", None, None, "test",
            )))
            .http_client(OneConnector(CountingClient(counts.clone()).into_shared()))
            .build();
        let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        assert_eq!(counts.validations.load(Ordering::SeqCst), 0);

        dynamo.list_tables().send().await.unwrap();
        sqs.list_queues().send().await.unwrap();
        // The inner client is asked once per request (the SDK's own caches the connector).
        assert_eq!(counts.connectors.load(Ordering::SeqCst), 2);
        assert_eq!(counts.validations.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn the_embedded_roots_are_six_certificates() {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;

        let certificates: Vec<_> = CertificateDer::pem_slice_iter(AMAZON_TRUST_SERVICES.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(certificates.len(), 6);
    }
}
