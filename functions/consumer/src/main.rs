//! The consumer function: SQS batches from the event source mapping, each record claimed, run and
//! recorded, failures reported per record — the handler itself lives in `spillway-core`.

use spillway_core::config::Function;
use spillway_core::processor::Processors;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), spillway_core::lambda::Error> {
    spillway_core::lambda::run(Function::Consumer, Processors::new()).await
}
