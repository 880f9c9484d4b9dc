//! Integration tests: the real DynamoDB and SQS adapters against an AWS emulator (moto server,
//! started by `scripts/test`), the HTTP contract against `docs/openapi.yaml`, and the Lambda
//! binaries under cargo-lambda's runtime emulator.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod adapters;
mod idempotency;
mod lambda_binaries;
mod metrics;
mod openapi;
mod pipeline;
mod receiver;
mod webhooks;
