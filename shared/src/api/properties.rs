//! Property tests over what a client controls: any body and headers `POST /jobs` can get, and any
//! id and `wait` the status routes can get. Whatever arrives, the answer is a client error or an
//! acceptance, never a server error or a panic; a refusal writes and enqueues nothing; and a
//! problem never quotes more than [`MAX_DETAIL_CHARS`] of what was sent. Cases per property:
//! [`CASES`] (`PROPTEST_CASES` does not raise it: the test command's time is bounded).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use http::{HeaderMap, HeaderValue, StatusCode};
use proptest::prelude::*;
use serde_json::{Value, json};

use std::sync::Arc;
use std::time::Duration;

use super::problem::MAX_DETAIL_CHARS;
use crate::App;
use crate::domain::{Lanes, Owner};
use crate::kinds;
use crate::queue::{JobQueue, MemoryQueue};
use crate::store::MemoryStore;
use crate::testing::{MemoryPipeline, fast_settings};

/// Cases per property in the test command.
const CASES: u32 = 256;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Any JSON value, a few levels deep, with the strings a hostile client likes.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::from),
        Just(json!("https://hooks.example.com/in")),
        Just(json!("http://127.0.0.1/")),
        Just(json!("webhook")),
        Just(json!("echo")),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("kind".to_owned()),
                    Just("payload".to_owned()),
                    Just("url".to_owned()),
                    Just("ttl_seconds".to_owned()),
                    Just("callback_url".to_owned()),
                    Just("headers".to_owned()),
                    Just("body".to_owned()),
                    ".{0,12}",
                ],
                inner,
                0..6
            )
            .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// A submission body: arbitrary bytes, or JSON shaped more or less like a job.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        json_value().prop_map(|v| v.to_string().into_bytes()),
        (json_value(), json_value(), prop::option::of(any::<i64>())).prop_map(
            |(kind, payload, ttl)| {
                let mut body = json!({"kind": kind, "payload": payload});
                if let Some(ttl) = ttl {
                    body["ttl_seconds"] = json!(ttl);
                }
                body.to_string().into_bytes()
            }
        ),
    ]
}

/// Headers: a content type (or none), an idempotency key, a correlation id, each arbitrary.
fn headers() -> impl Strategy<Value = HeaderMap> {
    let value = prop::collection::vec(any::<u8>(), 0..80);
    (
        prop_oneof![
            Just(Some(b"application/json".to_vec())),
            Just(None),
            value.clone().prop_map(Some)
        ],
        prop::option::of(value.clone()),
        prop::option::of(value),
    )
        .prop_map(|(content_type, key, correlation)| {
            let mut headers = HeaderMap::new();
            for (name, raw) in [
                ("content-type", content_type),
                ("idempotency-key", key),
                ("x-correlation-id", correlation),
            ] {
                if let Some(value) = raw.and_then(|raw| HeaderValue::from_bytes(&raw).ok()) {
                    headers.insert(name, value);
                }
            }
            headers
        })
}

fn assert_client_answer(status: StatusCode, body: &str) {
    assert!(
        status == StatusCode::ACCEPTED || status.is_client_error(),
        "{status}: {body}"
    );
    if status.is_client_error() {
        let problem: Value = serde_json::from_str(body).unwrap();
        assert_eq!(problem["status"], status.as_u16());
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.chars().count() <= MAX_DETAIL_CHARS + 1, "{detail}");
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_submission_is_accepted_or_refused_and_a_refusal_changes_nothing(
        body in body(),
        headers in headers(),
    ) {
        let runtime = runtime();
        runtime.block_on(async {
            let store = Arc::new(MemoryStore::new());
            let queues = Lanes::from_fn(|_| -> Arc<dyn JobQueue> {
                Arc::new(MemoryQueue::new(Duration::from_secs(30)))
            });
            let app = App::new(store.clone(), queues, fast_settings());
            let response = super::submit_job(&app, Owner::anonymous(), &headers, &body).await;
            assert_client_answer(response.status(), response.body());
            let mut queued = 0;
            for (_, queue) in app.queues.iter() {
                queued += queue.depth().await.unwrap().total();
            }
            if response.status() == StatusCode::ACCEPTED {
                assert_eq!(queued, 1);
                assert!(!store.is_empty());
            } else {
                assert_eq!(queued, 0, "a refused request enqueued a message");
                assert_eq!(store.len(), 0, "a refused request wrote to the store");
            }
        });
    }

    #[test]
    fn any_id_and_wait_are_answered_without_a_server_error(
        id in prop_oneof![".{0,80}", "[0-9a-f-]{36}"],
        wait in prop::option::of(prop_oneof![".{0,12}", "[0-9]{1,3}"]),
        cancel in any::<bool>(),
    ) {
        let runtime = runtime();
        runtime.block_on(async {
            let pipeline = MemoryPipeline::new(fast_settings(), kinds::builtin());
            let app = &pipeline.app;
            // A wait that would hold the test is cut to nothing: only its parsing is the point.
            let wait = wait.map(|w| if w.parse::<u64>().is_ok_and(|n| n > 0 && n <= 20) { "0".to_owned() } else { w });
            let response = if cancel {
                super::cancel_job(app, &Owner::anonymous(), &id).await
            } else {
                super::get_job(app, &Owner::anonymous(), &id, wait.as_deref()).await
            };
            let status = response.status();
            assert!(
                status == StatusCode::BAD_REQUEST || status == StatusCode::NOT_FOUND,
                "{status}: {}", response.body()
            );
            assert_client_answer(status, response.body());
        });
    }
}
