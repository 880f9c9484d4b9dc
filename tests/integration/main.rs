//! Integration tests: the real DynamoDB and SQS adapters against an AWS emulator (moto server,
//! started by `scripts/test`) and DynamoDB Local, and the HTTP contract against
//! `docs/openapi.yaml`. The Lambda binaries themselves run in `tests/deployment`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod adapters;
mod batch;
mod concurrency;
mod idempotency;
mod metrics;
mod openapi;
mod owner_limits;
mod pipeline;
mod readme;
mod receiver;
mod webhooks;
