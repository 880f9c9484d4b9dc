//! Spillway's benchmarks. The micro-benchmarks (`cargo bench -p spillway-bench`) run the handlers
//! in process against [`FakeAws`]; the `spillway-bench` binary runs the release Lambda binaries
//! under [`RuntimeApi`], a Lambda Runtime API emulator on loopback, to measure init time and peak
//! memory. `scripts/bench` runs both and prints the table docs/performance.md explains.

pub mod events;
pub mod fake_aws;
pub mod runtime_api;

pub use fake_aws::FakeAws;
pub use runtime_api::RuntimeApi;

/// The table name the benchmarks use.
pub const TABLE: &str = "spillway-bench";
/// The work queue URL the benchmarks use.
pub const QUEUE_URL: &str = "http://127.0.0.1/000000000000/spillway-bench";
/// The high lane's queue, which intake is given too (the benchmark's jobs are all normal).
pub const HIGH_QUEUE_URL: &str = "http://127.0.0.1/000000000000/spillway-bench-high";
/// The work queue's ARN, as SQS events carry it.
pub const QUEUE_ARN: &str = "arn:aws:sqs:us-east-1:000000000000:spillway-bench";
