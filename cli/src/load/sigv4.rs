//! SigV4 signing of `spillway load`'s requests, for a stage whose API uses IAM authorization
//! (`ApiAuth=AWS_IAM`, the template's default): API Gateway then refuses any request that is not
//! signed for the `execute-api` service.
//!
//! Credentials come from the AWS SDK's usual chain, and are cached here: the chain's providers
//! are not meant to be asked for each request (the SDK clients put an identity cache in front of
//! them, and this is no SDK client), and a load run signs thousands of requests a second.

use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use aws_config::Region;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;

/// The service name API Gateway's stages are signed for.
const SERVICE: &str = "execute-api";
/// Credentials are asked for again this long before they expire, so that no request is signed
/// with credentials that expire before API Gateway checks them.
const REFRESH_AHEAD: Duration = Duration::from_secs(5 * 60);
/// After a failed refresh, or when the provider hands out credentials that are already inside
/// [`REFRESH_AHEAD`], the provider is asked again after this long rather than on every request.
const RETRY_AFTER: Duration = Duration::from_secs(10);
/// How long one call to the credentials chain may take (instance metadata on a machine without
/// any answers slowly).
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(30);
/// What the chain tries, for the error that says none of it worked.
const CHAIN: &str = "the AWS SDK's default chain (environment variables AWS_ACCESS_KEY_ID, \
                     AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN; the shared config and \
                     credentials files, AWS_PROFILE; a web identity token; container credentials; \
                     EC2 instance metadata. SSO and credential_process are not built in)";

/// Whether `spillway load` signs its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    /// Sign when the URL's host is an API Gateway host (`*.execute-api.REGION.amazonaws.com`).
    Auto,
    /// Always sign (a custom domain name in front of an IAM-authorized API, say).
    Iam,
    /// Never sign (`spillway dev`, or a stage deployed with `ApiAuth=NONE`).
    None,
}

/// The region in an API Gateway host name: `ID.execute-api.REGION.amazonaws.com` (or
/// `.amazonaws.com.cn`, or a private API's `ID-VPCE.execute-api.REGION.vpce.amazonaws.com`);
/// `None` for any other host.
pub fn execute_api_region(host: &str) -> Option<&str> {
    let host = host.strip_suffix('.').unwrap_or(host);
    let rest = host
        .strip_suffix(".amazonaws.com")
        .or_else(|| host.strip_suffix(".amazonaws.com.cn"))?;
    let rest = rest.strip_suffix(".vpce").unwrap_or(rest);
    let (rest, region) = rest.rsplit_once('.')?;
    let (id, service) = rest.rsplit_once('.').unwrap_or(("", rest));
    let region_ok = !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    (service == SERVICE && !id.is_empty() && region_ok).then_some(region)
}

/// The signer `mode` calls for with `url`: `None` when requests go unsigned. When signing, the
/// region is `region` if given, else the host's (an API Gateway host), else the AWS
/// configuration's; the credentials are loaded once here, so that a run that cannot sign fails
/// before it starts.
pub async fn signer_for(
    mode: AuthMode,
    url: &reqwest::Url,
    region: Option<&str>,
) -> Result<Option<Signer>, String> {
    let host_region = url.host_str().and_then(execute_api_region);
    let sign = match mode {
        AuthMode::None => false,
        AuthMode::Iam => true,
        AuthMode::Auto => host_region.is_some(),
    };
    if !sign {
        return Ok(None);
    }
    let mut loader = spillway_core::sdk::loader(spillway_core::sdk::Roots::System);
    if let Some(region) = region.or(host_region) {
        // Also spares the region chain (which may ask instance metadata) when it is not needed.
        loader = loader.region(Region::new(region.to_owned()));
    }
    let sdk = loader.load().await;
    let region = sdk.region().map(|r| r.as_ref().to_owned()).ok_or(
        "--auth iam needs a region to sign for: pass --region (none is configured in \
         AWS_REGION or the AWS profile)",
    )?;
    let provider = sdk
        .credentials_provider()
        .ok_or_else(|| format!("no AWS credentials provider is configured, not even {CHAIN}"))?;
    Signer::new(provider, region).await.map(Some)
}

/// Signs requests for `execute-api` in one region.
#[derive(Debug)]
pub struct Signer {
    credentials: CredentialsCache,
    region: String,
}

/// Why a request could not be signed.
#[derive(Debug)]
pub struct SignError(String);

impl fmt::Display for SignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SignError {}

impl Signer {
    /// A signer for `region` with credentials from `provider`, which must provide them now.
    pub async fn new(provider: SharedCredentialsProvider, region: String) -> Result<Self, String> {
        let credentials = CredentialsCache::load(provider, SystemTime::now)
            .await
            .map_err(|error| format!("cannot sign requests for {SERVICE}: {error}"))?;
        Ok(Self {
            credentials,
            region,
        })
    }

    /// The region requests are signed for.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The headers that sign a request: `x-amz-date`, `authorization`, and
    /// `x-amz-security-token` when the credentials have a session token. `url` is the URL the
    /// request goes to, as sent (it is already percent-encoded); `headers` are the request's
    /// other headers to cover, besides `host`, which comes from `url`; `payload_sha256` is the
    /// body's SHA-256 in lower-case hex (the body is covered by the signature through it).
    pub async fn headers(
        &self,
        method: &str,
        url: &reqwest::Url,
        headers: &[(&str, &str)],
        payload_sha256: &str,
    ) -> Result<Vec<(&'static str, String)>, SignError> {
        let identity = self.credentials.identity(SystemTime::now).await?;
        sign_at(
            &identity,
            &self.region,
            SystemTime::now(),
            method,
            url,
            headers,
            payload_sha256,
        )
    }
}

/// [`Signer::headers`] with a given identity and time.
fn sign_at(
    identity: &Identity,
    region: &str,
    time: SystemTime,
    method: &str,
    url: &reqwest::Url,
    headers: &[(&str, &str)],
    payload_sha256: &str,
) -> Result<Vec<(&'static str, String)>, SignError> {
    let failed =
        |error: &dyn std::error::Error| SignError(format!("signing {method} {url}: {error}"));
    // The defaults are SigV4 as every service but S3 takes it: the path encoded twice and
    // normalized, the session token signed, the signature in the Authorization header, and no
    // x-amz-content-sha256 header (the payload hash is in the canonical request all the same).
    let params = v4::SigningParams::builder()
        .identity(identity)
        .region(region)
        .name(SERVICE)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| failed(&e))?
        .into();
    let request = SignableRequest::new(
        method,
        url.as_str(),
        headers.iter().copied(),
        SignableBody::Precomputed(payload_sha256.to_owned()),
    )
    .map_err(|e| failed(&e))?;
    let (instructions, _signature) = sign(request, &params).map_err(|e| failed(&e))?.into_parts();
    let (headers, _query) = instructions.into_parts();
    Ok(headers
        .into_iter()
        .map(|header| (header.name(), header.value().to_owned()))
        .collect())
}

/// The credentials a signer uses, asked of the provider again when they near their expiry.
#[derive(Debug)]
struct CredentialsCache {
    provider: SharedCredentialsProvider,
    state: Mutex<Cached>,
    /// Held by the one request that asks the provider, so that the others do not each ask too:
    /// they sign with the cached credentials meanwhile, or wait for its answer once those have
    /// expired.
    refreshing: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
struct Cached {
    identity: Identity,
    /// When to ask the provider again; `None` for credentials that do not expire.
    refresh_at: Option<SystemTime>,
    /// Why the last refresh failed, while the next one is not due.
    failure: Option<String>,
}

impl CredentialsCache {
    /// Asks `provider` for credentials, failing with what the chain tried when it has none.
    async fn load(
        provider: SharedCredentialsProvider,
        now: impl Fn() -> SystemTime,
    ) -> Result<Self, String> {
        let identity = provide(&provider)
            .await
            .map_err(|error| format!("no AWS credentials from {CHAIN}: {error}"))?;
        let state = Mutex::new(Cached {
            refresh_at: refresh_at(&identity, now()),
            identity,
            failure: None,
        });
        Ok(Self {
            provider,
            state,
            refreshing: tokio::sync::Mutex::new(()),
        })
    }

    /// Credentials to sign with now: the cached ones, or new ones once a refresh is due. While
    /// one request refreshes them, the others sign with the cached ones if they have not
    /// expired, so that a slow provider does not hold up the schedule; while the provider fails,
    /// the cached ones serve until they expire.
    async fn identity(&self, now: impl Fn() -> SystemTime) -> Result<Identity, SignError> {
        if let Some(identity) = self.current(now())? {
            return Ok(identity);
        }
        let _refreshing = match self.refreshing.try_lock() {
            Ok(refreshing) => refreshing,
            Err(_) => {
                if let Some(identity) = self.unexpired(now()) {
                    return Ok(identity);
                }
                self.refreshing.lock().await
            }
        };
        // Another request may have refreshed them while this one waited.
        if let Some(identity) = self.current(now())? {
            return Ok(identity);
        }
        let provided = provide(&self.provider).await;
        let now = now();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match provided {
            Ok(identity) => {
                state.refresh_at = refresh_at(&identity, now);
                state.identity = identity;
                state.failure = None;
            }
            Err(error) => {
                state.refresh_at = Some(now + RETRY_AFTER);
                state.failure = Some(error);
            }
        }
        usable(&state, now)
    }

    /// The cached credentials if they have not expired.
    fn unexpired(&self, now: SystemTime) -> Option<Identity> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        usable(&state, now).ok()
    }

    /// The cached credentials if no refresh is due; an error if they expired and the last
    /// refresh failed less than [`RETRY_AFTER`] ago.
    fn current(&self, now: SystemTime) -> Result<Option<Identity>, SignError> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.refresh_at.is_some_and(|at| at <= now) {
            return Ok(None);
        }
        usable(&state, now).map(Some)
    }
}

/// The cached credentials unless they have expired.
fn usable(state: &Cached, now: SystemTime) -> Result<Identity, SignError> {
    match state.identity.expiration() {
        Some(expiry) if expiry <= now => Err(SignError(format!(
            "the AWS credentials expired and new ones could not be loaded: {}",
            state
                .failure
                .as_deref()
                .unwrap_or("the provider gave expired ones")
        ))),
        _ => Ok(state.identity.clone()),
    }
}

/// When to ask for credentials again: [`REFRESH_AHEAD`] before they expire, but not sooner than
/// [`RETRY_AFTER`] from now unless they expire first.
fn refresh_at(identity: &Identity, now: SystemTime) -> Option<SystemTime> {
    let expiry = identity.expiration()?;
    let ahead = expiry
        .checked_sub(REFRESH_AHEAD)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    Some(ahead.max(now + RETRY_AFTER).min(expiry))
}

/// One call to the provider, with a time limit.
async fn provide(provider: &SharedCredentialsProvider) -> Result<Identity, String> {
    match tokio::time::timeout(PROVIDER_TIMEOUT, provider.provide_credentials()).await {
        Ok(Ok(credentials)) => Ok(credentials.into()),
        Ok(Err(error)) => {
            // The error and its causes (the default chain's lists what each provider said).
            let mut text = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                text = format!("{text}: {cause}");
                source = cause.source();
            }
            Err(text)
        }
        Err(_) => Err(format!(
            "the credentials chain did not answer within {PROVIDER_TIMEOUT:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use aws_credential_types::Credentials;
    use aws_credential_types::provider::error::CredentialsError;
    use aws_credential_types::provider::future;

    use super::*;

    #[test]
    fn api_gateway_hosts_are_recognized_with_their_region() {
        let region = execute_api_region;
        assert_eq!(
            region("abc123.execute-api.us-east-1.amazonaws.com"),
            Some("us-east-1")
        );
        assert_eq!(
            region("abc123.execute-api.cn-north-1.amazonaws.com.cn"),
            Some("cn-north-1")
        );
        assert_eq!(
            region("abc123.execute-api.eu-west-3.amazonaws.com."),
            Some("eu-west-3")
        );
        assert_eq!(
            region("abc123-vpce-0a1b2c.execute-api.ap-south-1.vpce.amazonaws.com"),
            Some("ap-south-1")
        );
        for other in [
            "127.0.0.1",
            "localhost",
            "api.example.com",
            "execute-api.us-east-1.amazonaws.com",
            "abc.lambda-url.us-east-1.on.aws",
            "abc.execute-api.us-east-1.amazonaws.com.evil.example",
            "abc.execute-api.amazonaws.com",
            "abc.execute-api..amazonaws.com",
            "abc.s3.us-east-1.amazonaws.com",
            "abc.execute-api.us east-1.amazonaws.com",
        ] {
            assert_eq!(region(other), None, "{other}");
        }
    }

    #[tokio::test]
    async fn auto_signs_only_for_api_gateway_hosts_and_none_never_signs() {
        let local = reqwest::Url::parse("http://127.0.0.1:3000").unwrap();
        assert!(
            signer_for(AuthMode::Auto, &local, None)
                .await
                .unwrap()
                .is_none()
        );
        let stage =
            reqwest::Url::parse("https://abc.execute-api.us-east-1.amazonaws.com/prod").unwrap();
        assert!(
            signer_for(AuthMode::None, &stage, None)
                .await
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn signing_covers_the_query_and_the_session_token() {
        let credentials =
            Credentials::new("AKIDEXAMPLE", "secret", Some("token".into()), None, "t");
        let url = reqwest::Url::parse("https://h.example/prod/jobs/1?wait=20").unwrap();
        let headers = sign_at(
            &credentials.into(),
            "eu-west-1",
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600), // 2026-01-01
            "GET",
            &url,
            &[],
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        )
        .unwrap();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(header("x-amz-date"), Some("20260101T000000Z"));
        assert_eq!(header("x-amz-security-token"), Some("token"));
        let authorization = header("authorization").unwrap();
        assert!(
            authorization.starts_with(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/eu-west-1/execute-api/aws4_request, \
                 SignedHeaders=host;x-amz-date;x-amz-security-token, Signature="
            ),
            "{authorization}"
        );
    }

    /// A provider that counts its calls and answers with what `answer` makes of the count.
    #[derive(Debug)]
    struct Counting {
        calls: Arc<AtomicUsize>,
        answer: fn(usize) -> Result<Credentials, CredentialsError>,
    }

    impl ProvideCredentials for Counting {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            future::ProvideCredentials::ready((self.answer)(n))
        }
    }

    const T0: Duration = Duration::from_secs(1_767_225_600);

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + T0 + Duration::from_secs(seconds)
    }

    /// Credentials numbered `n` that expire an hour after `at(n * 3600)`.
    fn hourly(n: usize) -> Result<Credentials, CredentialsError> {
        let n = n as u64;
        Ok(Credentials::new(
            format!("AKID{n}"),
            "secret",
            None,
            Some(at(n * 3600 + 3600)),
            "test",
        ))
    }

    fn key(identity: &Identity) -> String {
        identity
            .data::<Credentials>()
            .unwrap()
            .access_key_id()
            .to_owned()
    }

    async fn cache(
        answer: fn(usize) -> Result<Credentials, CredentialsError>,
    ) -> (Result<CredentialsCache, String>, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let provider = SharedCredentialsProvider::new(Counting {
            calls: calls.clone(),
            answer,
        });
        (CredentialsCache::load(provider, || at(0)).await, calls)
    }

    #[tokio::test]
    async fn credentials_are_cached_and_refreshed_before_they_expire() {
        let (cache, calls) = cache(hourly).await;
        let cache = cache.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // Cached until five minutes before their expiry…
        for seconds in [0, 60, 3299] {
            assert_eq!(key(&cache.identity(|| at(seconds)).await.unwrap()), "AKID0");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // …then the provider is asked again, once.
        assert_eq!(key(&cache.identity(|| at(3300)).await.unwrap()), "AKID1");
        assert_eq!(key(&cache.identity(|| at(3400)).await.unwrap()), "AKID1");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn while_one_request_refreshes_the_others_sign_with_the_cached_credentials() {
        let (cache, calls) = cache(hourly).await;
        let cache = cache.unwrap();
        let refreshing = cache.refreshing.lock().await;
        assert_eq!(key(&cache.identity(|| at(3300)).await.unwrap()), "AKID0");
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "not asked: a refresh is under way"
        );
        drop(refreshing);
        assert_eq!(key(&cache.identity(|| at(3300)).await.unwrap()), "AKID1");
    }

    #[tokio::test]
    async fn a_failed_refresh_keeps_the_credentials_until_they_expire() {
        let (cache, calls) = cache(|n| match n {
            0 => hourly(0),
            _ => Err(CredentialsError::provider_error("the chain is down")),
        })
        .await;
        let cache = cache.unwrap();
        assert_eq!(key(&cache.identity(|| at(3300)).await.unwrap()), "AKID0");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // Not asked again for RETRY_AFTER…
        assert_eq!(key(&cache.identity(|| at(3305)).await.unwrap()), "AKID0");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // …and once they have expired, signing fails and says why.
        let error = cache.identity(|| at(3600)).await.unwrap_err();
        assert!(error.to_string().contains("the chain is down"), "{error}");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn no_credentials_is_an_error_that_names_the_chain() {
        let (cache, _) = cache(|_| Err(CredentialsError::not_loaded("nothing in the chain"))).await;
        let error = cache.unwrap_err();
        assert!(error.contains("no AWS credentials"), "{error}");
        assert!(error.contains("nothing in the chain"), "{error}");
        assert!(error.contains("AWS_ACCESS_KEY_ID"), "{error}");
        assert!(error.contains("instance metadata"), "{error}");
    }
}
