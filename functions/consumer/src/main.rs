//! The consumer function: SQS batches from the event source mapping, each record claimed, run and
//! recorded, failures reported per record — the handler itself lives in `spillway-core`.

use lambda_runtime::{Error, service_fn};
use spillway_core::config::Function;
use spillway_core::{App, lambda};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    spillway_core::logging::init();
    let app = App::for_function(Function::Consumer).await?;
    let app = &app;
    lambda_runtime::run(service_fn(move |event| lambda::consumer(app, event))).await
}
