//! How the `webhook` processor delivers: timeouts, the circuit breaker, and where the SSRF guard
//! makes exceptions. `crate::config` reads them from the environment.

use std::time::Duration;

use super::guard::Allowlist;

/// How the `webhook` processor delivers. The signing secret is not here: it is read apart, and
/// never printed (see [`SigningKeys`](super::SigningKeys)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    /// Networks and hosts webhooks may reach despite the SSRF guard (`SPILLWAY_WEBHOOK_ALLOW`).
    pub allow: Allowlist,
    /// Longest wait for a connection (`SPILLWAY_WEBHOOK_CONNECT_TIMEOUT_MS`).
    pub connect_timeout: Duration,
    /// Longest wait for a whole delivery, connection included (`SPILLWAY_WEBHOOK_TIMEOUT_MS`).
    pub timeout: Duration,
    /// Consecutive failures that open a host's circuit; 0 turns the breaker off
    /// (`SPILLWAY_WEBHOOK_BREAKER_FAILURES`).
    pub breaker_failures: u32,
    /// How long an open circuit fails deliveries fast
    /// (`SPILLWAY_WEBHOOK_BREAKER_COOLDOWN_SECONDS`).
    pub breaker_cooldown: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            allow: Allowlist::default(),
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(15),
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(30),
        }
    }
}
