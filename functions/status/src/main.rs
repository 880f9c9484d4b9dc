//! The status function: `GET /jobs/{id}` (with `?wait=N` long polling) and `DELETE /jobs/{id}`
//! behind API Gateway — the handlers themselves live in `spillway-core`.

use spillway_core::config::Function;
use spillway_core::processor::Processors;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), spillway_core::lambda::Error> {
    spillway_core::lambda::run(Function::Status, Processors::new()).await
}
