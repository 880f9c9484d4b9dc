//! The baseline: the smallest `lambda_runtime` function — it answers each event with the event
//! itself — built with the same profile as Spillway's functions and started the same way
//! (current-thread runtime, the runtime crate's default tracing subscriber).

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move {
        Ok::<Value, Error>(event.payload)
    }))
    .await
}
