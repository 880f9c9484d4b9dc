//! The AWS SDK's standard retry mode, as the direct client applies it: what is retried, how long
//! to wait, and the token bucket that stops retrying when most calls fail.

use std::sync::Mutex;
use std::time::Duration;

use super::CallError;

/// Error codes the SDK retries as throttling (`aws-runtime`'s `THROTTLING_ERRORS`).
const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];

/// Error codes the SDK retries as transient (`TRANSIENT_ERRORS`).
const TRANSIENT_CODES: &[&str] = &["RequestTimeout", "RequestTimeoutException"];

/// HTTP statuses the SDK retries as transient, whatever the code.
const TRANSIENT_STATUSES: &[u16] = &[500, 502, 503, 504];

/// How many attempts, how long to wait between them, and how long one may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// The ceiling of the first wait; it doubles for each later one.
    pub initial_backoff: Duration,
    /// The ceiling of any wait.
    pub max_backoff: Duration,
    /// How long one attempt may take, the whole answer read.
    pub attempt_timeout: Duration,
}

impl RetryPolicy {
    /// The SDK's standard mode: 3 attempts, waits of up to 1 s, 2 s, … capped at 20 s; and
    /// [`super::ATTEMPT_TIMEOUT`].
    pub fn standard() -> Self {
        Self {
            max_attempts: 3,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(20),
            attempt_timeout: super::ATTEMPT_TIMEOUT,
        }
    }

    /// The wait after failed attempt number `attempt` (from 1), for `jitter` in `[0, 1)`: full
    /// jitter, `jitter × min(initial × 2^(attempt - 1), max)`.
    pub fn backoff(&self, attempt: u32, jitter: f64) -> Duration {
        let doubled = 2_u32.saturating_pow(attempt.saturating_sub(1));
        self.initial_backoff
            .saturating_mul(doubled)
            .min(self.max_backoff)
            .mul_f64(jitter.clamp(0.0, 1.0))
    }
}

/// What a failed attempt calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Classification {
    /// Not retried: the answer will not change.
    Final,
    /// Retried: the service asked to slow down.
    Throttling,
    /// Retried: a transient failure (5xx, a broken connection, a timeout).
    Transient,
}

pub(super) fn classify(error: &CallError) -> Classification {
    match error {
        CallError::Service(error) if THROTTLING_CODES.contains(&error.code.as_str()) => {
            Classification::Throttling
        }
        CallError::Service(error)
            if TRANSIENT_CODES.contains(&error.code.as_str())
                || TRANSIENT_STATUSES.contains(&error.status) =>
        {
            Classification::Transient
        }
        CallError::Service(_) => Classification::Final,
        CallError::Transport(_) | CallError::Body(_) | CallError::Timeout(_) => {
            Classification::Transient
        }
        CallError::Tls(_) | CallError::Request(_) | CallError::Operation(_) => {
            Classification::Final
        }
    }
}

/// The SDK's retry token bucket: 500 tokens; a retry after throttling takes 5, after any other
/// failure 14; a call that succeeds gives back what its last retry took. When the bucket cannot
/// pay for a retry, the failure is returned at once, so a service that fails most calls is not
/// sent three times as many.
#[derive(Debug)]
pub(super) struct TokenBucket(Mutex<u32>);

const CAPACITY: u32 = 500;
const THROTTLING_COST: u32 = 5;
const TRANSIENT_COST: u32 = 14;

impl Default for TokenBucket {
    fn default() -> Self {
        Self(Mutex::new(CAPACITY))
    }
}

impl TokenBucket {
    /// Takes the cost of a retry after `classification`, or `None` when too few tokens are left.
    pub(super) fn acquire(&self, classification: Classification) -> Option<u32> {
        let cost = match classification {
            Classification::Throttling => THROTTLING_COST,
            Classification::Transient | Classification::Final => TRANSIENT_COST,
        };
        let mut tokens = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        (*tokens >= cost).then(|| {
            *tokens -= cost;
            cost
        })
    }

    /// Gives back `tokens` a successful call's retry took.
    pub(super) fn release(&self, tokens: u32) {
        if tokens > 0 {
            let mut held = self
                .0
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            *held = (*held + tokens).min(CAPACITY);
        }
    }

    #[cfg(test)]
    pub(super) fn tokens(&self) -> u32 {
        *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
