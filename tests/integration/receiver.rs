//! The webhook receiver the webhook tests deliver to (`tests/webhooks/receiver.py`): it answers
//! with the scripted responses in order, verifies Standard Webhooks signatures with the reference
//! library, records every delivery, and counts the connections made to it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use spillway_tests::receiver::Receiver;
use tokio::process::Command;

/// The example secret of the Standard Webhooks specification.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// A second secret the receiver accepts, as during a rotation.
const OLD_SECRET: &str = "whsec_YW5vdGhlciBzZWNyZXQsIDMyIGJ5dGVzIGxvbmchISE=";
/// A secret the receiver does not have.
const WRONG_SECRET: &str = "whsec_YSBzZWNyZXQgdGhlIHJlY2VpdmVyIGxhY2tzLiAzMmI=";

/// Signs with the reference library (`Webhook.sign` takes the timestamp as a datetime).
const SIGN: &str = "import sys
from datetime import datetime, timezone
from standardwebhooks import Webhook
secret, msg_id, timestamp, body = sys.argv[1:]
print(Webhook(secret).sign(msg_id, datetime.fromtimestamp(int(timestamp), tz=timezone.utc), body))";

/// The `webhook-signature` header for a message, as the reference library computes it.
async fn sign(secret: &str, msg_id: &str, timestamp: u64, body: &str) -> String {
    let output = Command::new("python")
        .args(["-c", SIGN, secret, msg_id, &timestamp.to_string(), body])
        .output()
        .await
        .expect("run python: run the tests through `scripts/test`");
    assert!(
        output.status.success(),
        "signing failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[tokio::test]
async fn receiver_answers_as_scripted_verifies_records_and_counts_connections() {
    let receiver = Receiver::start(&[OLD_SECRET, SECRET]).await;
    assert_eq!(
        receiver.connections().await,
        0,
        "control calls do not count"
    );
    receiver
        .script("/hook", json!([{"status": 500}, {"status": 200}]))
        .await;

    // No keep-alive: each delivery on a connection of its own.
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let deliver = async |path: &str, msg_id: &str, secret: &str, body: String| {
        let signature = sign(secret, msg_id, timestamp, &body).await;
        client
            .post(receiver.url(path))
            .header("content-type", "application/json")
            .header("webhook-id", msg_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await
            .unwrap()
    };

    let bodies: Vec<String> = (1..=3)
        .map(|attempt| json!({"type": "job.completed", "attempt": attempt}).to_string())
        .collect();
    let first = deliver("/hook", "msg_1", SECRET, bodies[0].clone()).await;
    assert_eq!(first.status().as_u16(), 500);
    let second = deliver("/hook", "msg_1", SECRET, bodies[1].clone()).await;
    assert_eq!(second.status().as_u16(), 200);
    // The script is used up: the default answer.
    let forged = deliver("/hook?attempt=3", "msg_2", WRONG_SECRET, bodies[2].clone()).await;
    assert_eq!(forged.status().as_u16(), 200);
    assert_eq!(forged.text().await.unwrap(), r#"{"ok": true}"#);

    let deliveries = receiver
        .wait_for_deliveries("/hook", 3, Duration::from_secs(10))
        .await;
    assert_eq!(deliveries.len(), 3, "{deliveries:#?}");
    for (delivery, body) in deliveries.iter().zip(&bodies) {
        assert_eq!(delivery.path, "/hook");
        assert_eq!(delivery.method, "POST");
        assert_eq!(&delivery.body, body);
        assert_eq!(delivery.headers["webhook-timestamp"], timestamp.to_string());
        assert_eq!(delivery.headers["content-type"], "application/json");
    }
    for delivery in &deliveries[..2] {
        assert!(delivery.verified, "{delivery:#?}");
        assert_eq!(delivery.verify_error, None);
        assert_eq!(delivery.query, "");
        assert_eq!(delivery.headers["webhook-id"], "msg_1");
    }
    let forged = &deliveries[2];
    assert!(!forged.verified, "{forged:#?}");
    assert!(
        forged
            .verify_error
            .as_deref()
            .is_some_and(|error| error.contains("No matching signature found")),
        "{forged:#?}"
    );
    assert_eq!(forged.query, "attempt=3");
    assert!(deliveries[0].received_at <= deliveries[1].received_at);
    assert!(deliveries[1].received_at <= deliveries[2].received_at);

    assert!(receiver.deliveries("/elsewhere").await.is_empty());
    assert_eq!(receiver.connections().await, 3);
}
