//! The intake function: `POST /jobs` behind API Gateway. Validates a job, writes it `pending`,
//! enqueues it and answers `202` — the handler itself lives in `spillway-core`.

use spillway_core::config::Function;
use spillway_core::processor::Processors;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), spillway_core::lambda::Error> {
    spillway_core::lambda::run(Function::Intake, Processors::new()).await
}
