//! A circuit breaker per destination, in each consumer instance: after `threshold` consecutive
//! failures a destination's deliveries fail fast (as retryable, so nothing is lost) for a
//! cool-down; then one delivery is let through as a probe, and its outcome closes the circuit or
//! opens it for another cool-down.
//!
//! The webhook processor keys a circuit by the job's owner and the destination's scheme, host
//! and port (see `Webhook::deliver`): one tenant's failing deliveries, or failures on another
//! port of the same host, never open a circuit for anyone else. At most [`MAX_CIRCUITS`] are
//! kept; the least recently used goes first.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};

/// The most circuits one consumer instance keeps.
pub const MAX_CIRCUITS: usize = 4096;

/// The breakers of every destination one consumer instance delivers to.
#[derive(Debug)]
pub struct Breakers {
    threshold: u32,
    cooldown: Duration,
    capacity: usize,
    hosts: Mutex<HashMap<String, Circuit>>,
    counters: Counters,
}

/// How often the breakers changed state, and how many deliveries they stopped.
#[derive(Debug, Default)]
pub struct Counters {
    /// Circuits opened (closed → open, and a failed probe's half-open → open).
    pub opened: AtomicU64,
    /// Probes let through (open → half-open).
    pub half_opened: AtomicU64,
    /// Circuits closed by a successful probe.
    pub closed: AtomicU64,
    /// Deliveries failed fast without a request.
    pub rejected: AtomicU64,
}

#[derive(Debug)]
struct Circuit {
    failures: u32,
    open_until: Option<Instant>,
    probing: bool,
    last_used: Instant,
}

/// Permission to send one delivery. Report its outcome with [`Admission::succeeded`] or
/// [`Admission::failed`]; dropped unreported (the delivery was cancelled), it counts as neither,
/// except that a probe counts as failed, so the circuit cannot stay half-open for ever.
#[derive(Debug)]
pub struct Admission {
    breakers: Arc<Breakers>,
    host: String,
    probe: bool,
    reported: bool,
}

/// The circuit is open: retry after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Open {
    /// Until the next probe may go.
    pub retry_after: Duration,
}

impl Breakers {
    /// Breakers that open after `threshold` consecutive failures (0: never) for `cooldown`.
    pub fn new(threshold: u32, cooldown: Duration) -> Arc<Self> {
        Self::with_capacity(threshold, cooldown, MAX_CIRCUITS)
    }

    /// [`Breakers::new`], keeping at most `capacity` circuits.
    pub fn with_capacity(threshold: u32, cooldown: Duration, capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            threshold,
            cooldown,
            capacity: capacity.max(1),
            hosts: Mutex::default(),
            counters: Counters::default(),
        })
    }

    /// How many circuits are kept now.
    pub fn len(&self) -> usize {
        self.hosts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no circuit is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The state-change counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Asks to send one delivery to `host`.
    pub fn admit(self: &Arc<Self>, host: &str) -> Result<Admission, Open> {
        let admission = |probe| Admission {
            breakers: self.clone(),
            host: host.to_owned(),
            probe,
            reported: false,
        };
        if self.threshold == 0 {
            return Ok(admission(false));
        }
        let mut hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(circuit) = hosts.get_mut(host) else {
            return Ok(admission(false));
        };
        circuit.last_used = Instant::now();
        let Some(open_until) = circuit.open_until else {
            return Ok(admission(false));
        };
        let now = Instant::now();
        if now < open_until || circuit.probing {
            self.counters.rejected.fetch_add(1, Ordering::Relaxed);
            // While a probe is out, the others wait at least one more cool-down step.
            let retry_after = open_until
                .checked_duration_since(now)
                .unwrap_or(self.cooldown)
                .max(Duration::from_secs(1));
            return Err(Open { retry_after });
        }
        circuit.probing = true;
        let half_opened_total = self.counters.half_opened.fetch_add(1, Ordering::Relaxed) + 1;
        info!(
            host,
            half_opened_total, "circuit half-open: one probe delivery goes through"
        );
        Ok(admission(true))
    }

    fn report(&self, host: &str, probe: bool, success: bool) {
        if self.threshold == 0 {
            return;
        }
        let mut hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
        if !hosts.contains_key(host) && hosts.len() >= self.capacity {
            let oldest = hosts
                .iter()
                .min_by_key(|(_, circuit)| circuit.last_used)
                .map(|(key, _)| key.clone());
            if let Some(oldest) = oldest {
                hosts.remove(&oldest);
            }
        }
        if success {
            if let Some(circuit) = hosts.remove(host)
                && circuit.open_until.is_some()
                && probe
            {
                let closed_total = self.counters.closed.fetch_add(1, Ordering::Relaxed) + 1;
                info!(
                    host,
                    closed_total, "circuit closed: the probe delivery succeeded"
                );
            }
            return;
        }
        let circuit = hosts.entry(host.to_owned()).or_insert_with(|| Circuit {
            failures: 0,
            open_until: None,
            probing: false,
            last_used: Instant::now(),
        });
        circuit.last_used = Instant::now();
        circuit.failures = circuit.failures.saturating_add(1);
        let reopen = probe && circuit.probing;
        let open = circuit.open_until.is_none() && circuit.failures >= self.threshold;
        if reopen || open {
            circuit.open_until = Some(Instant::now() + self.cooldown);
            circuit.probing = false;
            let opened_total = self.counters.opened.fetch_add(1, Ordering::Relaxed) + 1;
            warn!(
                host,
                consecutive_failures = circuit.failures,
                opened_total,
                cooldown_seconds = self.cooldown.as_secs(),
                "circuit opened: deliveries to this host fail fast until the cool-down ends"
            );
        }
    }
}

impl Admission {
    /// The host answered (any status but a 5xx, 408 or 429): the circuit closes.
    pub fn succeeded(mut self) {
        self.reported = true;
        self.breakers.report(&self.host, self.probe, true);
    }

    /// The host failed (timeout, connection error, 5xx, 408, 429).
    pub fn failed(mut self) {
        self.reported = true;
        self.breakers.report(&self.host, self.probe, false);
    }

    /// Nothing was sent, for a reason of the delivery's own (the SSRF guard refused the address
    /// its name resolved to): it says nothing about the destination, and counts as neither. A
    /// probe withdrawn leaves the circuit open for the next delivery to probe.
    pub fn withdrawn(mut self) {
        self.reported = true;
        if self.probe {
            let mut hosts = self
                .breakers
                .hosts
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(circuit) = hosts.get_mut(&self.host) {
                circuit.probing = false;
            }
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if !self.reported && self.probe {
            self.breakers.report(&self.host, true, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOLDOWN: Duration = Duration::from_secs(30);

    fn fail(breakers: &Arc<Breakers>, host: &str) {
        breakers.admit(host).unwrap().failed();
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_the_threshold_and_fails_fast_for_the_cooldown() {
        let breakers = Breakers::new(3, COOLDOWN);
        fail(&breakers, "a.example");
        fail(&breakers, "a.example");
        breakers.admit("a.example").unwrap().succeeded();
        fail(&breakers, "a.example");
        fail(&breakers, "a.example");
        assert!(
            breakers.admit("a.example").is_ok(),
            "a success reset the count"
        );
        fail(&breakers, "a.example");
        let open = breakers.admit("a.example").unwrap_err();
        assert_eq!(open.retry_after, COOLDOWN);
        assert!(
            breakers.admit("b.example").is_ok(),
            "other hosts are unaffected"
        );
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(
            breakers.admit("a.example").unwrap_err().retry_after,
            Duration::from_secs(20)
        );
        assert_eq!(breakers.counters().opened.load(Ordering::Relaxed), 1);
        assert_eq!(breakers.counters().rejected.load(Ordering::Relaxed), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn one_probe_after_the_cooldown_decides() {
        let breakers = Breakers::new(1, COOLDOWN);
        fail(&breakers, "h");
        tokio::time::advance(COOLDOWN).await;
        let probe = breakers.admit("h").unwrap();
        assert!(breakers.admit("h").is_err(), "only one probe at a time");
        probe.failed();
        assert_eq!(breakers.admit("h").unwrap_err().retry_after, COOLDOWN);
        tokio::time::advance(COOLDOWN).await;
        breakers.admit("h").unwrap().succeeded();
        assert!(breakers.admit("h").is_ok());
        assert!(breakers.admit("h").is_ok(), "closed again");
        let counters = breakers.counters();
        assert_eq!(counters.opened.load(Ordering::Relaxed), 2);
        assert_eq!(counters.half_opened.load(Ordering::Relaxed), 2);
        assert_eq!(counters.closed.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_dropped_unreported_counts_as_failed() {
        let breakers = Breakers::new(1, COOLDOWN);
        fail(&breakers, "h");
        tokio::time::advance(COOLDOWN).await;
        drop(breakers.admit("h").unwrap());
        assert!(
            breakers.admit("h").is_err(),
            "open again, not stuck half-open"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_withdrawn_delivery_counts_as_neither() {
        let breakers = Breakers::new(2, COOLDOWN);
        fail(&breakers, "h");
        breakers.admit("h").unwrap().withdrawn();
        assert!(breakers.admit("h").is_ok(), "one failure, not two");
        fail(&breakers, "h");
        assert!(breakers.admit("h").is_err());
        tokio::time::advance(COOLDOWN).await;
        breakers.admit("h").unwrap().withdrawn();
        let probe = breakers.admit("h").expect("the next delivery probes");
        probe.succeeded();
        assert!(breakers.admit("h").is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn the_least_recently_used_circuit_goes_when_they_are_too_many() {
        let breakers = Breakers::with_capacity(1, COOLDOWN, 2);
        fail(&breakers, "a");
        tokio::time::advance(Duration::from_millis(1)).await;
        fail(&breakers, "b");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(breakers.admit("a").is_err(), "a is open, and now used last");
        tokio::time::advance(Duration::from_millis(1)).await;
        fail(&breakers, "c");
        assert_eq!(breakers.len(), 2);
        assert!(breakers.admit("b").is_ok(), "b was the least recently used");
        assert!(breakers.admit("a").is_err());
        assert!(breakers.admit("c").is_err());
    }

    #[tokio::test]
    async fn a_threshold_of_zero_never_opens() {
        let breakers = Breakers::new(0, COOLDOWN);
        for _ in 0..10 {
            fail(&breakers, "h");
        }
        assert!(breakers.admit("h").is_ok());
    }
}
