//! `POST /jobs` with any body and content type: a client error or an acceptance, never a panic or
//! a server error, and a refusal writes nothing.
#![no_main]

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use spillway_core::App;
use spillway_core::api::submit_job;
use spillway_core::domain::{Lanes, Owner};
use spillway_core::queue::{JobQueue, MemoryQueue};
use spillway_core::store::MemoryStore;
use spillway_core::testing::fast_settings;

fuzz_target!(|input: (&[u8], &[u8])| {
    let (content_type, body) = input;
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_bytes(content_type) {
        headers.insert(http::header::CONTENT_TYPE, value);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let store = Arc::new(MemoryStore::new());
        let app = App::new(
            store.clone(),
            Lanes::from_fn(|_| -> Arc<dyn JobQueue> {
                Arc::new(MemoryQueue::new(Duration::from_secs(30)))
            }),
            fast_settings(),
        );
        let response = submit_job(&app, Owner::anonymous(), &headers, body).await;
        let status = response.status();
        assert!(status.as_u16() == 202 || status.is_client_error(), "{status}");
        if status.as_u16() != 202 {
            assert!(store.is_empty(), "a refused request wrote");
        }
    });
});
