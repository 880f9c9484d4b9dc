//! What a run would cost on AWS: the requests and compute the simulation counted, priced from a
//! table of list prices (the scenario's `[cost]`, us-east-1's by default).
//!
//! Counted, per accepted job and per event of the run:
//! - API Gateway (HTTP API): every submission (`POST /jobs`) and every status request;
//! - Lambda: an intake invocation per submission past the throttle, a status invocation per
//!   status request (each billed `intake_ms` / `status_ms`, and a long poll for as long as it
//!   is held), and the consumer's invocations,
//!   billed for exactly the time the simulation kept them busy; all at `memory_mb`;
//! - SQS: a `SendMessage` per accepted job, a `ReceiveMessage` and a `DeleteMessageBatch` per
//!   consumer invocation, a `ChangeMessageVisibility` per retry and per dead-lettered job;
//! - DynamoDB (on demand, items under 1 KB): a write for intake's `PutItem`, two per attempt
//!   (the claim and the outcome), one per expiry; a strongly consistent read per status request.
//!
//! Not counted: the free tiers, the event source mapping's empty long polls (a few requests a
//! minute per poller), an `Idempotency-Key`'s transaction (four write units instead of one),
//! CloudWatch logs and metrics, and data transfer.

use serde::Serialize;

/// The prices a run is costed at, in US dollars, and the functions' settings they apply to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prices {
    /// Each function's memory (`FunctionMemorySize`).
    pub memory_mb: f64,
    /// Billed duration of one intake and one status invocation, in milliseconds.
    pub intake_ms: f64,
    pub status_ms: f64,
    /// Lambda: per GB-second of duration, and per million requests.
    pub lambda_gb_s: f64,
    pub lambda_requests_per_million: f64,
    /// SQS standard queue: per million requests.
    pub sqs_requests_per_million: f64,
    /// DynamoDB on demand: per million write and read request units.
    pub dynamodb_writes_per_million: f64,
    pub dynamodb_reads_per_million: f64,
    /// API Gateway HTTP API: per million requests.
    pub api_requests_per_million: f64,
}

/// Lambda's price per GB-second on arm64 (the template's default `Architecture`) and x86_64.
pub const ARM64_GB_S: f64 = 0.000_013_333_4;
pub const X86_64_GB_S: f64 = 0.000_016_666_7;

impl Default for Prices {
    /// us-east-1's list prices (first tier), on arm64 at the template's 128 MB; intake and
    /// status billed 4 and 3 ms, about what docs/performance.md measures with the SDK's calls.
    fn default() -> Self {
        Self {
            memory_mb: 128.0,
            intake_ms: 4.0,
            status_ms: 3.0,
            lambda_gb_s: ARM64_GB_S,
            lambda_requests_per_million: 0.20,
            sqs_requests_per_million: 0.40,
            dynamodb_writes_per_million: 0.625,
            dynamodb_reads_per_million: 0.125,
            api_requests_per_million: 1.00,
        }
    }
}

/// What a run used, as the services bill it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// Submissions, whatever their answer, and the ones API Gateway's throttle refused.
    pub submissions: u64,
    pub throttled: u64,
    /// Accepted jobs, attempts, retries, expiries and dead-lettered jobs.
    pub accepted: u64,
    pub attempts: u64,
    pub retries: u64,
    pub expired: u64,
    pub dead_lettered: u64,
    /// Consumer invocations, and the time they were busy in all (µs).
    pub invocations: u64,
    pub consumer_busy_micros: u64,
    /// Status requests, and the time long polls held status invocations (µs).
    pub status_requests: u64,
    pub status_held_micros: u64,
}

/// The run's cost by service, in US dollars, and per million accepted jobs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Cost {
    pub api_gateway_usd: f64,
    pub lambda_usd: f64,
    pub sqs_usd: f64,
    pub dynamodb_usd: f64,
    pub total_usd: f64,
    /// `total_usd` per million accepted jobs; 0 when none was accepted.
    pub per_million_jobs_usd: f64,
}

/// Prices `usage` at `prices`.
#[allow(clippy::cast_precision_loss)]
pub fn cost(usage: &Usage, prices: &Prices) -> Cost {
    let million = |count: u64, price: f64| count as f64 / 1e6 * price;
    let gb = prices.memory_mb / 1024.0;
    let handled = usage.submissions - usage.throttled;
    let seconds = handled as f64 * prices.intake_ms / 1e3
        + usage.status_requests as f64 * prices.status_ms / 1e3
        + usage.status_held_micros as f64 / 1e6
        + usage.consumer_busy_micros as f64 / 1e6;
    let lambda_requests = handled + usage.status_requests + usage.invocations;
    let api_gateway_usd = million(
        usage.submissions + usage.status_requests,
        prices.api_requests_per_million,
    );
    let lambda_usd = gb * seconds * prices.lambda_gb_s
        + million(lambda_requests, prices.lambda_requests_per_million);
    let sqs_requests = usage.accepted + 2 * usage.invocations + usage.retries + usage.dead_lettered;
    let sqs_usd = million(sqs_requests, prices.sqs_requests_per_million);
    let writes = usage.accepted + 2 * usage.attempts + usage.expired;
    let dynamodb_usd = million(writes, prices.dynamodb_writes_per_million)
        + million(usage.status_requests, prices.dynamodb_reads_per_million);
    let total_usd = api_gateway_usd + lambda_usd + sqs_usd + dynamodb_usd;
    Cost {
        api_gateway_usd,
        lambda_usd,
        sqs_usd,
        dynamodb_usd,
        total_usd,
        per_million_jobs_usd: if usage.accepted == 0 {
            0.0
        } else {
            total_usd / usage.accepted as f64 * 1e6
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thousand_one_second_jobs_cost_what_the_price_table_says() {
        // 1,000 jobs, each one attempt of 1 s in an invocation of its own, no polling:
        // - API Gateway: 1,000 requests × $1/M = $0.001;
        // - Lambda: 1,000 intake × 4 ms + 1,000 s of consumer = 1,004 s × 0.125 GB = 125.5 GB-s
        //   × $0.0000133334 = $0.0016733417, and 2,000 requests × $0.20/M = $0.0004;
        // - SQS: 1,000 sends + 1,000 receives + 1,000 deletes = 3,000 × $0.40/M = $0.0012;
        // - DynamoDB: 1,000 puts + 2,000 updates = 3,000 WRU × $0.625/M = $0.001875.
        // Total $0.0061483417: $6.148 per million jobs.
        let usage = Usage {
            submissions: 1000,
            accepted: 1000,
            attempts: 1000,
            invocations: 1000,
            consumer_busy_micros: 1_000_000_000,
            ..Usage::default()
        };
        let cost = cost(&usage, &Prices::default());
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(close(cost.api_gateway_usd, 0.001), "{cost:?}");
        assert!(close(cost.lambda_usd, 0.001_673_341_7 + 0.0004), "{cost:?}");
        assert!(close(cost.sqs_usd, 0.0012), "{cost:?}");
        assert!(close(cost.dynamodb_usd, 0.001_875), "{cost:?}");
        assert!(close(cost.total_usd, 0.006_148_341_7), "{cost:?}");
        assert!(close(cost.per_million_jobs_usd, 6.148_341_7), "{cost:?}");
    }
}
