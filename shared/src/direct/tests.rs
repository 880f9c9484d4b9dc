use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::UNIX_EPOCH;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::retry::{Classification, TokenBucket};
use super::signing::amz_date;
use super::*;

/// One scripted answer of [`Stub`].
#[derive(Clone)]
enum Answer {
    /// This status, extra headers and body.
    Reply(u16, Vec<(&'static str, String)>, &'static str),
    /// Nothing, ever: the connection stays open and silent.
    Silent,
}

fn ok(body: &'static str) -> Answer {
    Answer::Reply(200, vec![], body)
}

fn error(status: u16, code: &'static str) -> Answer {
    let body: &'static str = Box::leak(
        format!(r#"{{"__type":"com.amazonaws.dynamodb.v20120810#{code}","message":"no"}}"#)
            .into_boxed_str(),
    );
    Answer::Reply(status, vec![], body)
}

/// An HTTP/1.1 server on loopback that gives its answers in order (500 once they run out) and
/// keeps each request's head.
struct Stub {
    url: String,
    heads: Arc<Mutex<Vec<String>>>,
    connections: Arc<std::sync::atomic::AtomicUsize>,
}

impl Stub {
    async fn start(answers: Vec<Answer>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let heads = Arc::new(Mutex::new(Vec::new()));
        let answers = Arc::new(Mutex::new(std::collections::VecDeque::from(answers)));
        let kept = heads.clone();
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let accepted = connections.clone();
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                accepted.fetch_add(1, Ordering::SeqCst);
                let (heads, answers) = (kept.clone(), answers.clone());
                tokio::spawn(async move {
                    let mut buffer = Vec::new();
                    loop {
                        let Some(head) = read_request(&mut socket, &mut buffer).await else {
                            return;
                        };
                        heads.lock().unwrap().push(head);
                        let answer = answers.lock().unwrap().pop_front();
                        let (status, headers, body) = match answer {
                            Some(Answer::Reply(status, headers, body)) => (status, headers, body),
                            Some(Answer::Silent) => {
                                std::future::pending::<()>().await;
                                return;
                            }
                            None => (500, vec![], "{}"),
                        };
                        let mut response =
                            format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\n", body.len());
                        for (name, value) in headers {
                            response.push_str(&format!("{name}: {value}\r\n"));
                        }
                        response.push_str("\r\n");
                        response.push_str(body);
                        if socket.write_all(response.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self {
            url,
            heads,
            connections,
        }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

/// Reads one request (head and `content-length` body) and returns its head, lower-cased.
async fn read_request(socket: &mut tokio::net::TcpStream, buffer: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).to_lowercase();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .map_or(0, |value| value.trim().parse().unwrap());
            while buffer.len() < end + 4 + length {
                let mut chunk = [0; 4096];
                let read = socket.read(&mut chunk).await.ok()?;
                if read == 0 {
                    return None;
                }
                buffer.extend_from_slice(&chunk[..read]);
            }
            buffer.drain(..end + 4 + length);
            return Some(head);
        }
        let mut chunk = [0; 4096];
        let read = socket.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
}

fn quick() -> RetryPolicy {
    RetryPolicy {
        initial_backoff: Duration::from_millis(5),
        attempt_timeout: Duration::from_millis(300),
        ..RetryPolicy::standard()
    }
}

fn client_for(stub: &Stub) -> Client {
    Direct::new(
        Endpoint::parse(&stub.url),
        "eu-west-3",
        ("AKIDTEST".to_owned(), "secret".to_owned(), None),
        Roots::Aws,
    )
    .with_retry_policy(quick())
    .client(Service::DynamoDb)
}

#[tokio::test]
async fn throttling_and_server_errors_are_retried_until_an_answer() {
    let stub = Stub::start(vec![
        error(400, "ProvisionedThroughputExceededException"),
        error(500, "InternalServerError"),
        ok(r#"{"Item":{}}"#),
    ])
    .await;
    let answer = client_for(&stub).call("GetItem", b"{}".to_vec()).await;
    assert_eq!(answer.unwrap().as_ref(), br#"{"Item":{}}"#);
    assert_eq!(stub.heads().len(), 3);
}

#[tokio::test]
async fn a_retry_after_a_server_error_takes_a_new_connection_and_a_success_keeps_it() {
    let stub = Stub::start(vec![error(500, "InternalServerError"), ok("{}"), ok("{}")]).await;
    let client = client_for(&stub);
    client.call("GetItem", b"{}".to_vec()).await.unwrap();
    assert_eq!(stub.connections.load(Ordering::SeqCst), 2);
    client.call("GetItem", b"{}".to_vec()).await.unwrap();
    assert_eq!(stub.connections.load(Ordering::SeqCst), 2);
}

#[test]
fn trace_ids_are_sent_with_control_characters_encoded() {
    assert_eq!(
        encode_controls(
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
        ),
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    );
    assert_eq!(encode_controls("a\nb\u{7f}é"), "a%0Ab%7F%C3%A9");
}

#[tokio::test]
async fn a_failed_condition_is_returned_at_once_with_its_code_and_body() {
    let stub = Stub::start(vec![error(400, "ConditionalCheckFailedException")]).await;
    let error = client_for(&stub)
        .call("PutItem", b"{}".to_vec())
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some("ConditionalCheckFailedException"));
    let CallError::Service(service) = error else {
        panic!("not a service error");
    };
    assert_eq!(service.status, 400);
    assert!(service.body.starts_with(b"{\"__type\""));
    assert_eq!(stub.heads().len(), 1);
}

#[tokio::test]
async fn a_call_is_attempted_three_times_at_most() {
    let stub = Stub::start(vec![error(503, "ServiceUnavailable"); 5]).await;
    let error = client_for(&stub)
        .call("GetItem", b"{}".to_vec())
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some("ServiceUnavailable"));
    assert_eq!(stub.heads().len(), 3);
}

#[tokio::test]
async fn an_attempt_without_an_answer_times_out_and_is_retried() {
    let stub = Stub::start(vec![Answer::Silent, ok("{}")]).await;
    let started = std::time::Instant::now();
    let answer = client_for(&stub).call("GetItem", b"{}".to_vec()).await;
    assert_eq!(answer.unwrap().as_ref(), b"{}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(stub.heads().len(), 2);
}

#[tokio::test]
async fn a_connection_refused_is_retried_and_reported() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let client = Direct::new(
        Endpoint::parse(&url),
        "eu-west-3",
        ("AKIDTEST".to_owned(), "secret".to_owned(), None),
        Roots::Aws,
    )
    .with_retry_policy(quick())
    .client(Service::Sqs);
    let error = client
        .call("SendMessage", b"{}".to_vec())
        .await
        .unwrap_err();
    assert!(matches!(error, CallError::Transport(_)), "{error:?}");
    assert_eq!(client.0.bucket.tokens(), 500 - 2 * 14);
}

#[tokio::test]
async fn requests_name_their_operation_and_are_signed() {
    let stub = Stub::start(vec![ok("{}")]).await;
    client_for(&stub)
        .call("GetItem", b"{}".to_vec())
        .await
        .unwrap();
    let head = &stub.heads()[0];
    assert!(head.starts_with("post / http/1.1"), "{head}");
    assert!(
        head.contains("x-amz-target: dynamodb_20120810.getitem"),
        "{head}"
    );
    assert!(
        head.contains("content-type: application/x-amz-json-1.0"),
        "{head}"
    );
    assert!(
        head.contains("authorization: aws4-hmac-sha256 credential=akidtest/"),
        "{head}"
    );
    assert!(head.contains("/eu-west-3/dynamodb/aws4_request"), "{head}");
    assert!(head.contains("user-agent: spillway/"), "{head}");
}

#[tokio::test]
async fn the_services_clock_sets_the_time_later_requests_are_signed_at() {
    let ahead = SystemTime::now() + Duration::from_secs(3 * 3600);
    let date = httpdate::fmt_http_date(ahead);
    let stub = Stub::start(vec![
        Answer::Reply(200, vec![("date", date)], "{}"),
        ok("{}"),
    ])
    .await;
    let client = client_for(&stub);
    client.call("GetItem", b"{}".to_vec()).await.unwrap();
    client.call("GetItem", b"{}".to_vec()).await.unwrap();
    let stamp = |head: &str| {
        head.lines()
            .find_map(|line| line.strip_prefix("x-amz-date: "))
            .unwrap()
            .to_uppercase()
    };
    let heads = stub.heads();
    let seconds = |time: SystemTime| time.duration_since(UNIX_EPOCH).unwrap().as_secs();
    // The `Date` header counts whole seconds.
    let expected = [-2, -1, 0, 1].map(|by: i64| amz_date(seconds(ahead).saturating_add_signed(by)));
    assert!(expected.contains(&stamp(&heads[1])), "{heads:?}");
    assert_ne!(stamp(&heads[0]), stamp(&heads[1]));
}

#[test]
fn a_request_is_signed_as_aws_sigv4_signs_it() {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    use aws_smithy_runtime_api::client::identity::Identity;

    for token in [None, Some("session-token")] {
        let credentials = Arc::new(Credentials {
            access_key_id: "AKIDEXAMPLE".to_owned(),
            secret: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_owned(),
            session_token: token.map(str::to_owned),
        });
        let signer = Signer::new(credentials, "eu-west-3", "dynamodb");
        let time = UNIX_EPOCH + Duration::from_secs(1_795_000_123);
        let host = HeaderValue::from_static("dynamodb.eu-west-3.amazonaws.com");
        let target = HeaderValue::from_static("DynamoDB_20120810.GetItem");
        let body = br#"{"TableName":"t","Key":{"pk":{"S":"job#1"}},"ConsistentRead":true}"#;
        let ours = signer.sign(time, &host, &target, body);

        let identity: Identity = aws_credential_types::Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            token.map(str::to_owned),
            None,
            "test",
        )
        .into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region("eu-west-3")
            .name("dynamodb")
            .time(time)
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let headers = [
            ("content-type", CONTENT_TYPE_JSON),
            ("host", "dynamodb.eu-west-3.amazonaws.com"),
            ("x-amz-target", "DynamoDB_20120810.GetItem"),
        ];
        let request = SignableRequest::new(
            "POST",
            "https://dynamodb.eu-west-3.amazonaws.com/",
            headers.into_iter(),
            SignableBody::Bytes(body),
        )
        .unwrap();
        let (instructions, _) = sign(request, &params).unwrap().into_parts();
        let (theirs, _) = instructions.into_parts();
        let theirs = |name: &str| {
            theirs
                .iter()
                .find(|header| header.name() == name)
                .map(|header| header.value().to_owned())
        };
        assert_eq!(
            ours.authorization.to_str().ok().map(str::to_owned),
            theirs("authorization")
        );
        assert_eq!(
            ours.date.to_str().ok().map(str::to_owned),
            theirs("x-amz-date")
        );
        assert_eq!(
            ours.security_token
                .as_ref()
                .and_then(|token| token.to_str().ok())
                .map(str::to_owned),
            theirs("x-amz-security-token")
        );
    }
}

#[test]
fn the_signing_key_is_derived_once_a_day() {
    let credentials = Arc::new(Credentials {
        access_key_id: "AKID".to_owned(),
        secret: "secret".to_owned(),
        session_token: None,
    });
    let signer = Signer::new(credentials, "us-east-1", "sqs");
    let host = HeaderValue::from_static("sqs.us-east-1.amazonaws.com");
    let target = HeaderValue::from_static("AmazonSQS.SendMessage");
    let day = 20_000 * 86_400;
    let at = |seconds| UNIX_EPOCH + Duration::from_secs(seconds);
    let first = signer.sign(at(day + 10), &host, &target, b"{}");
    signer.sign(at(day + 86_399), &host, &target, b"{}");
    assert_eq!(signer.derived.load(Ordering::Relaxed), 1);
    let next_day = signer.sign(at(day + 86_400), &host, &target, b"{}");
    assert_eq!(signer.derived.load(Ordering::Relaxed), 2);
    assert_ne!(first.authorization, next_day.authorization);
}

#[test]
fn dates_are_written_as_sigv4_wants_them() {
    assert_eq!(amz_date(0), "19700101T000000Z");
    assert_eq!(amz_date(951_782_400), "20000229T000000Z");
    assert_eq!(amz_date(1_700_000_000), "20231114T221320Z");
    assert_eq!(amz_date(4_102_444_799), "20991231T235959Z");
}

#[test]
fn backoff_is_full_jitter_doubling_from_one_second_up_to_twenty() {
    let policy = RetryPolicy::standard();
    assert_eq!(policy.backoff(1, 1.0), Duration::from_secs(1));
    assert_eq!(policy.backoff(2, 1.0), Duration::from_secs(2));
    assert_eq!(policy.backoff(3, 0.5), Duration::from_secs(2));
    assert_eq!(policy.backoff(9, 1.0), Duration::from_secs(20));
    assert_eq!(policy.backoff(2, 0.0), Duration::ZERO);
}

#[test]
fn the_token_bucket_stops_retries_once_drained_and_refills_on_success() {
    let bucket = TokenBucket::default();
    let mut retries = 0;
    while bucket.acquire(Classification::Transient).is_some() {
        retries += 1;
    }
    assert_eq!(retries, 500 / 14);
    assert_eq!(bucket.acquire(Classification::Throttling), Some(5));
    bucket.release(14);
    assert_eq!(bucket.acquire(Classification::Transient), Some(14));
}

#[test]
fn error_codes_are_read_without_their_namespace() {
    let body = Bytes::from_static(br#"{"__type":"com.amazonaws.dynamodb.v20120810#ResourceNotFoundException","message":"gone"}"#);
    let read = ServiceError::read(400, &http::HeaderMap::new(), body);
    assert_eq!(
        (read.code.as_str(), read.message.as_str()),
        ("ResourceNotFoundException", "gone")
    );

    let mut headers = http::HeaderMap::new();
    headers.insert(
        "x-amzn-errortype",
        HeaderValue::from_static("ThrottlingException:http://internal.amazon.com/"),
    );
    let read = ServiceError::read(400, &headers, Bytes::from_static(b"{\"Message\":\"slow\"}"));
    assert_eq!(
        (read.code.as_str(), read.message.as_str()),
        ("ThrottlingException", "slow")
    );
}

#[test]
fn only_standard_commercial_regions_get_a_default_endpoint() {
    for region in [
        "us-east-1",
        "eu-west-3",
        "ap-southeast-5",
        "il-central-1",
        "mx-central-1",
    ] {
        assert!(standard_partition(region), "{region}");
    }
    for region in [
        "us-gov-west-1",
        "cn-north-1",
        "us-iso-east-1",
        "us-isob-east-1",
        "eusc-de-east-1",
        "local",
        "us-east-1a",
    ] {
        assert!(!standard_partition(region), "{region}");
    }
}

#[test]
fn endpoints_with_a_path_or_user_are_refused_and_default_ports_left_out_of_host() {
    assert!(Endpoint::parse("http://127.0.0.1:8000/prefix").is_none());
    assert!(Endpoint::parse("http://user@127.0.0.1:8000").is_none());
    assert!(Endpoint::parse("ftp://127.0.0.1").is_none());
    let host = |url| Endpoint::parse(url).unwrap().host;
    assert_eq!(host("http://127.0.0.1:8000"), "127.0.0.1:8000");
    assert_eq!(host("https://example.com:443/"), "example.com");
    assert_eq!(host("http://localhost:80"), "localhost");
}

#[tokio::test]
async fn the_sdk_serves_whatever_this_client_cannot_serve_exactly() {
    let sdk = |region: &str, endpoint: Option<&str>| {
        let mut builder =
            aws_config::SdkConfig::builder().region(aws_config::Region::new(region.to_owned()));
        if let Some(endpoint) = endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        builder.build()
    };
    let env = |extra: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            [
                ("AWS_ACCESS_KEY_ID", "AKID"),
                ("AWS_SECRET_ACCESS_KEY", "secret"),
            ]
            .iter()
            .chain(extra)
            .find(|(key, _)| *key == name)
            .map(|(_, value)| (*value).to_owned())
        }
    };
    fn direct(
        sdk: &aws_config::SdkConfig,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Option<Direct> {
        Direct::from_sdk(sdk, Roots::Aws, lookup)
    }
    assert!(direct(&sdk("eu-west-3", None), env(&[])).is_some());
    assert!(direct(&sdk("eu-west-3", Some("http://127.0.0.1:4566")), env(&[])).is_some());
    assert!(direct(&sdk("cn-north-1", None), env(&[])).is_none());
    assert!(direct(&sdk("cn-north-1", Some("http://127.0.0.1:4566")), env(&[])).is_some());
    assert!(
        direct(
            &sdk("eu-west-3", None),
            env(&[("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:8000")])
        )
        .is_none()
    );
    assert!(direct(&sdk("eu-west-3", None), |_: &str| None).is_none());
    let fips = aws_config::SdkConfig::builder()
        .region(aws_config::Region::new("us-east-1"))
        .use_fips(true)
        .build();
    assert!(direct(&fips, env(&[])).is_none());
}
