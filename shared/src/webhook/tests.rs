use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::*;
use crate::domain::{Kind, Owner};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn keys() -> SigningKeys {
    SigningKeys::parse(SECRET).unwrap()
}

/// HMAC-SHA256 (RFC 2104) written out on the `sha2` crate, so that signatures are checked against
/// an implementation that shares nothing with the signer's (`ring`).
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut block = [0u8; 64];
    if key.len() > block.len() {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let padded = |pad: u8| block.map(|byte| byte ^ pad);
    let inner = Sha256::new()
        .chain_update(padded(0x36))
        .chain_update(message)
        .finalize();
    let outer = Sha256::new()
        .chain_update(padded(0x5c))
        .chain_update(inner)
        .finalize();
    let mut mac = [0u8; 32];
    mac.copy_from_slice(&outer);
    mac
}

#[test]
fn the_tests_own_hmac_gives_the_published_values() {
    // RFC 4231, test cases 2 and 6 (a key longer than the block).
    assert_eq!(
        hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    assert_eq!(
        hex::encode(hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First"
        )),
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
    );
    // The Standard Webhooks reference libraries' signing test: `whsec_` secret, message id,
    // timestamp and payload, signed over `{id}.{timestamp}.{payload}`.
    let key = BASE64.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    let signed = br#"msg_p5jXN8AQM9LWM0D4loKWxJek.1614265330.{"test": 2432232314}"#;
    assert_eq!(
        BASE64.encode(hmac_sha256(&key, signed)),
        "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    );
}

fn settings(allow: &str) -> WebhookSettings {
    WebhookSettings {
        allow: Allowlist::parse(allow).unwrap(),
        timeout: Duration::from_millis(500),
        breaker_failures: 2,
        ..WebhookSettings::default()
    }
}

fn work(payload: Value) -> Work {
    Work {
        owner: Owner::authenticated("arn:aws:iam::123456789012:user/tests"),
        ..Work::new(Kind::parse(KIND).unwrap(), raw(payload))
    }
}

fn raw(payload: Value) -> Box<RawValue> {
    RawValue::from_string(payload.to_string()).unwrap()
}

/// A TCP server on 127.0.0.1 that counts connections and answers each with `response` (raw HTTP),
/// or never answers when `response` is `None`. Returns its port and the connection count.
async fn server(
    response: Option<&'static str>,
) -> (u16, Arc<AtomicUsize>, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let (count, seen) = (connections.clone(), requests.clone());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buffer = vec![0; 65_536];
                let read = socket.read(&mut buffer).await.unwrap_or(0);
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buffer[..read]).into_owned());
                match response {
                    Some(response) => {
                        let _ = socket.write_all(response.as_bytes()).await;
                    }
                    None => tokio::time::sleep(Duration::from_secs(3600)).await,
                }
            });
        }
    });
    (port, connections, requests)
}

#[derive(Debug)]
struct FixedResolver(Vec<IpAddr>);

impl Resolve for FixedResolver {
    fn resolve(
        &self,
        _: &str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<Vec<IpAddr>>> + Send>>
    {
        let addresses = self.0.clone();
        Box::pin(async move { Ok(addresses) })
    }
}

#[test]
fn payloads_are_checked_at_intake() {
    let webhook = Webhook::new(WebhookSettings::default(), None);
    assert_eq!(
        webhook.admit(&raw(
            json!({"url": "https://hooks.example.com/x", "body": {"a": 1}})
        )),
        Ok(())
    );
    assert_eq!(
        webhook.admit(&raw(json!({"url": "https://hooks.example.com/x", "method": "PUT", "headers": {"X-Tenant": "7"}, "body": "plain"}))),
        Ok(())
    );
    for invalid in [
        json!({}),
        json!({"url": "https://hooks.example.com/", "method": "GET"}),
        json!({"url": "https://hooks.example.com/", "extra": 1}),
        json!({"url": "https://hooks.example.com/", "headers": {"webhook-signature": "v1,x"}}),
        json!({"url": "https://hooks.example.com/", "headers": {"Host": "other"}}),
        json!({"url": "https://hooks.example.com/", "headers": {"bad name": "x"}}),
        json!({"url": "https://hooks.example.com/", "headers": {"x-a": "line\nbreak"}}),
        json!({"url": "not a url"}),
    ] {
        assert!(
            matches!(
                webhook.admit(&raw(invalid.clone())),
                Err(Rejection::Invalid(_))
            ),
            "{invalid}"
        );
    }
    for forbidden in ["http://127.0.0.1/", "file:///etc/passwd", "http://[::1]/"] {
        assert!(
            matches!(
                webhook.admit(&raw(json!({"url": forbidden}))),
                Err(Rejection::Forbidden(_))
            ),
            "{forbidden}"
        );
    }
}

#[tokio::test]
async fn a_2xx_succeeds_with_a_signed_request_and_the_start_of_the_answer() {
    let (port, _, requests) = server(Some(
        "HTTP/1.1 201 Created\r\ncontent-length: 11\r\n\r\n{\"ok\":true}",
    ))
    .await;
    let webhook = Webhook::new(settings("127.0.0.1"), Some(keys()));
    let job = work(
        json!({"url": format!("http://127.0.0.1:{port}/in"), "headers": {"X-Tenant": "7"}, "body": {"n": 1}}),
    );
    let seconds = || {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let before = seconds();
    let result = webhook.process(&job).await.unwrap();
    let after = seconds();
    assert_eq!(result["status_code"], 201);
    assert_eq!(result["body"], "{\"ok\":true}");
    assert_eq!(result["body_truncated"], false);
    let request = requests.lock().unwrap()[0].clone();
    let lower = request.to_ascii_lowercase();
    assert!(request.starts_with("POST /in HTTP/1.1\r\n"), "{request}");
    assert!(
        lower.contains(&format!("webhook-id: {}\r\n", job.job_id)),
        "{request}"
    );
    assert!(lower.contains("x-tenant: 7\r\n"));
    assert!(lower.contains("content-type: application/json\r\n"));
    assert!(request.ends_with("\r\n\r\n{\"n\":1}"), "{request}");
    let timestamp: u64 = lower
        .split("webhook-timestamp: ")
        .nth(1)
        .and_then(|rest| rest.split("\r\n").next())
        .unwrap()
        .parse()
        .unwrap();
    // Unix seconds, as Standard Webhooks receivers compare it with their clock.
    assert!((before..=after).contains(&timestamp), "{timestamp}");
    // The signature, computed here from the documented derivation with the test's own HMAC
    // rather than by the signer: the owner's key is HMAC-SHA256(stack secret, label + owner), and
    // the signature HMAC-SHA256(owner key, "{id}.{timestamp}.{body}"), base64.
    let stack_key = BASE64.decode(SECRET.trim_start_matches("whsec_")).unwrap();
    let label = format!("spillway/webhook-signing/v1\n{}", job.owner.as_str());
    let owner_key = hmac_sha256(&stack_key, label.as_bytes());
    let signed = format!("{}.{timestamp}.{{\"n\":1}}", job.job_id);
    let expected = hmac_sha256(&owner_key, signed.as_bytes());
    let header = request
        .split("\r\n")
        .find_map(|line| line.strip_prefix("webhook-signature: "))
        .unwrap_or_else(|| panic!("no webhook-signature header: {request}"));
    assert_eq!(header, format!("v1,{}", BASE64.encode(expected)));
}

#[tokio::test]
async fn statuses_map_to_outcomes() {
    type Expected = fn(&Result<Value, ProcessError>) -> bool;
    let cases: [(&str, Expected); 5] = [
        (
            "HTTP/1.1 503 Unavailable\r\nretry-after: 7\r\ncontent-length: 4\r\n\r\nbusy",
            |r| matches!(r, Err(ProcessError::Retryable { retry_after: Some(d), message }) if *d == Duration::from_secs(7) && message.contains("503") && message.contains("busy")),
        ),
        ("HTTP/1.1 429 Too Many\r\ncontent-length: 0\r\n\r\n", |r| {
            matches!(
                r,
                Err(ProcessError::Retryable {
                    retry_after: None,
                    ..
                })
            )
        }),
        ("HTTP/1.1 408 Timeout\r\ncontent-length: 0\r\n\r\n", |r| {
            matches!(r, Err(ProcessError::Retryable { .. }))
        }),
        (
            "HTTP/1.1 400 Bad\r\ncontent-length: 3\r\n\r\nbad",
            |r| matches!(r, Err(ProcessError::Permanent { message }) if message.contains("400")),
        ),
        (
            "HTTP/1.1 302 Found\r\nlocation: http://169.254.169.254/\r\ncontent-length: 0\r\n\r\n",
            |r| matches!(r, Err(ProcessError::Permanent { message }) if message.contains("redirects are not followed")),
        ),
    ];
    for (response, expected) in cases {
        let (port, _, _) = server(Some(response)).await;
        let webhook = Webhook::new(settings("127.0.0.1"), Some(keys()));
        let result = webhook
            .process(&work(json!({"url": format!("http://127.0.0.1:{port}/")})))
            .await;
        assert!(expected(&result), "{response}: {result:?}");
    }
}

#[tokio::test]
async fn a_receiver_that_never_answers_times_out_as_retryable() {
    let (port, connections, _) = server(None).await;
    let webhook = Webhook::new(settings("127.0.0.1"), Some(keys()));
    let result = webhook
        .process(&work(
            json!({"url": format!("http://127.0.0.1:{port}/slow")}),
        ))
        .await;
    assert!(
        matches!(&result, Err(ProcessError::Retryable { message, .. }) if message.contains("no answer within 500 ms")),
        "{result:?}"
    );
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_name_resolving_to_a_refused_address_gets_no_connection() {
    let (port, connections, _) = server(Some("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")).await;
    // DNS answers loopback, where the server listens; the allowlist is empty.
    let webhook = Webhook::new(settings(""), Some(keys()))
        .with_resolver(Arc::new(FixedResolver(vec!["127.0.0.1".parse().unwrap()])));
    let result = webhook
        .process(&work(
            json!({"url": format!("http://rebound.example.com:{port}/")}),
        ))
        .await;
    let Err(ProcessError::Permanent { message }) = &result else {
        panic!("{result:?}");
    };
    assert!(message.contains("refused before connecting"), "{message}");
    // The job's error, which its owner reads, is no oracle for what a name resolves to inside.
    assert!(
        !message.contains("127.0.0.1") && !message.contains("loopback"),
        "{message}"
    );
    assert_eq!(connections.load(Ordering::SeqCst), 0);
    // Nor does a refusal count against the destination's circuit.
    assert!(webhook.breakers().is_empty());
}

#[tokio::test]
async fn only_the_allowed_addresses_of_a_name_are_connected_to() {
    let (port, connections, _) = server(Some("HTTP/1.1 204 No Content\r\n\r\n")).await;
    let webhook = Webhook::new(settings("127.0.0.1/32"), Some(keys())).with_resolver(Arc::new(
        FixedResolver(vec![
            "10.0.0.1".parse().unwrap(),
            "127.0.0.1".parse().unwrap(),
        ]),
    ));
    let result = webhook
        .process(&work(
            json!({"url": format!("http://mixed.example.com:{port}/")}),
        ))
        .await;
    assert_eq!(result.unwrap()["status_code"], 204);
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_breaker_fails_a_failing_host_fast_without_a_request() {
    let (port, connections, _) =
        server(Some("HTTP/1.1 500 Oops\r\ncontent-length: 0\r\n\r\n")).await;
    let webhook = Webhook::new(settings("127.0.0.1"), Some(keys()));
    let job = work(json!({"url": format!("http://127.0.0.1:{port}/")}));
    for _ in 0..2 {
        assert!(webhook.process(&job).await.is_err());
    }
    let fast = webhook.process(&job).await;
    assert!(
        matches!(&fast, Err(ProcessError::Retryable { retry_after: Some(_), message }) if message.contains("circuit")),
        "{fast:?}"
    );
    assert_eq!(connections.load(Ordering::SeqCst), 2);
    assert_eq!(
        webhook.breakers().counters().opened.load(Ordering::Relaxed),
        1
    );
}

#[tokio::test]
async fn a_circuit_is_one_owners_for_one_scheme_host_and_port() {
    let (failing, _, _) = server(Some("HTTP/1.1 500 Oops\r\ncontent-length: 0\r\n\r\n")).await;
    let (healthy, connections, _) = server(Some("HTTP/1.1 204 No Content\r\n\r\n")).await;
    let webhook = Webhook::new(settings("127.0.0.1"), Some(keys()));
    let hostile = work(json!({"url": format!("http://127.0.0.1:{failing}/")}));
    for _ in 0..3 {
        assert!(webhook.process(&hostile).await.is_err());
    }
    let fast = webhook.process(&hostile).await;
    assert!(
        matches!(&fast, Err(ProcessError::Retryable { message, .. }) if message.contains("circuit")),
        "{fast:?}"
    );
    // Another port of the same host is untouched, and so is another owner on the failing port.
    let other_port = work(json!({"url": format!("http://127.0.0.1:{healthy}/")}));
    assert_eq!(
        webhook.process(&other_port).await.unwrap()["status_code"],
        204
    );
    assert_eq!(connections.load(Ordering::SeqCst), 1);
    let mut other_owner = work(json!({"url": format!("http://127.0.0.1:{failing}/")}));
    other_owner.owner = Owner::iam("arn:aws:iam::123456789012:user/someone-else");
    let tried = webhook.process(&other_owner).await;
    assert!(
        matches!(&tried, Err(ProcessError::Retryable { message, .. }) if message.contains("500")),
        "another owner's delivery went out: {tried:?}"
    );
}

#[tokio::test]
async fn a_jobs_error_names_the_destination_without_its_path_or_query() {
    let (port, _, _) = server(Some("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")).await;
    let webhook = Webhook::new(settings("127.0.0.1"), Some(keys()));
    let job = work(json!({"url": format!("http://127.0.0.1:{port}/hooks/T0KEN?sig=s3cret")}));
    let Err(ProcessError::Permanent { message }) = webhook.process(&job).await else {
        panic!("a 404 fails the job");
    };
    assert!(
        message.starts_with(&format!("POST http://127.0.0.1:{port}: answered 404")),
        "{message}"
    );
    assert!(
        !message.contains("T0KEN") && !message.contains("s3cret"),
        "{message}"
    );
}

#[tokio::test]
async fn without_a_secret_deliveries_wait_as_retryable() {
    let webhook = Webhook::new(settings("127.0.0.1"), None);
    let result = webhook
        .process(&work(json!({"url": "http://127.0.0.1:9/"})))
        .await;
    assert!(
        matches!(result, Err(ProcessError::Retryable { .. })),
        "{result:?}"
    );
}

#[test]
fn retry_after_takes_seconds_or_a_date() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
    let headers = |value: &'static str| {
        HeaderMap::from_iter([(header::RETRY_AFTER, HeaderValue::from_static(value))])
    };
    assert_eq!(
        retry_after(&headers("3"), now),
        Some(Duration::from_secs(3))
    );
    assert_eq!(
        retry_after(&headers("Wed, 21 Oct 2015 07:28:30 GMT"), now),
        Some(Duration::from_secs(30))
    );
    assert_eq!(
        retry_after(&headers("Wed, 21 Oct 2015 07:00:00 GMT"), now),
        Some(Duration::ZERO)
    );
    assert_eq!(retry_after(&headers("soon"), now), None);
    assert_eq!(retry_after(&HeaderMap::new(), now), None);
}

#[tokio::test]
async fn https_urls_are_sent_over_tls() {
    // A plain-HTTP server behind an https URL: the TLS handshake fails, which shows the request
    // went through the TLS connector (with the system's roots loaded) and never in clear text.
    let (port, connections, requests) =
        server(Some("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")).await;
    let webhook = Webhook::new(settings("127.0.0.1"), Some(keys()));
    let result = webhook
        .process(&work(
            json!({"url": format!("https://127.0.0.1:{port}/"), "body": {"secret": 1}}),
        ))
        .await;
    assert!(
        matches!(&result, Err(ProcessError::Retryable { message, .. }) if message.contains("https://127.0.0.1")),
        "{result:?}"
    );
    assert_eq!(connections.load(Ordering::SeqCst), 1);
    let seen = requests.lock().unwrap().concat();
    assert!(
        !seen.contains("secret"),
        "the body went out in clear text: {seen}"
    );
    assert!(
        seen.as_bytes().first() == Some(&0x16),
        "not a TLS handshake: {seen:?}"
    );
}
