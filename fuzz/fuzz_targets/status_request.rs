//! `GET` and `DELETE /jobs/{id}` with any id and `wait`: a 400 or a 404 from an empty store, never
//! a panic or a server error.
#![no_main]

use std::sync::Arc;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use spillway_core::App;
use spillway_core::api::{cancel_job, get_job};
use spillway_core::domain::{Lanes, Owner};
use spillway_core::queue::{JobQueue, MemoryQueue};
use spillway_core::store::MemoryStore;
use spillway_core::testing::fast_settings;

fuzz_target!(|input: (bool, &str, Option<&str>)| {
    let (cancel, id, wait) = input;
    // A wait the parser accepts would only hold the run: parsing is the point.
    let wait = wait.filter(|w| w.parse::<u64>().map_or(true, |n| n == 0 || n > 20));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let app = App::new(
            Arc::new(MemoryStore::new()),
            Lanes::from_fn(|_| -> Arc<dyn JobQueue> {
                Arc::new(MemoryQueue::new(Duration::from_secs(30)))
            }),
            fast_settings(),
        );
        let response = if cancel {
            cancel_job(&app, &Owner::anonymous(), id).await
        } else {
            get_job(&app, &Owner::anonymous(), id, wait).await
        };
        let status = response.status().as_u16();
        assert!(status == 400 || status == 404, "{status}");
    });
});
