//! The intake function: `POST /jobs` behind API Gateway. Validates a job, writes it `pending`,
//! enqueues it and answers `202` — the handler itself lives in `spillway-core`.

use lambda_http::{Error, service_fn};
use spillway_core::config::Function;
use spillway_core::{App, lambda};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    spillway_core::logging::init();
    let app = App::for_function(Function::Intake).await?;
    let app = &app;
    lambda_http::run(service_fn(move |request| lambda::intake(app, request))).await
}
