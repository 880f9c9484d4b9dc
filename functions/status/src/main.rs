//! The status function: `GET /jobs/{id}` (with `?wait=N` long polling) and `DELETE /jobs/{id}`
//! behind API Gateway — the handlers themselves live in `spillway-core`.

use lambda_http::{Error, service_fn};
use spillway_core::config::Function;
use spillway_core::{App, lambda};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    spillway_core::logging::init();
    let app = App::for_function(Function::Status).await?;
    let app = &app;
    lambda_http::run(service_fn(move |request| lambda::status(app, request))).await
}
