//! What the simulator's tests share: scenarios from TOML text, tolerances, and the queueing
//! formulas the runs are checked against.

use super::scenario::{Scenario, parse};

/// A bit of everything: Poisson arrivals with a spike, the throttle and the backlog limit,
/// log-normal times, retries and permanent failures, deadlines and polling clients.
pub const BUSY: &str = r#"
[run]
duration_s = 120
[arrivals]
rate = 40
[[arrivals.spikes]]
start_s = 30
length_s = 20
rate = 150
[intake]
throttle_rate = 120
throttle_burst = 200
backlog_limit = 800
ttl_s = 40
[consumer]
batch_size = 5
maximum_concurrency = 20
timeout_s = 10
backoff_base_s = 1
backoff_max_s = 8
[processing]
time = { kind = "lognormal", p50_s = 0.3, p99_s = 3.0 }
retryable = 0.1
permanent = 0.01
[clients]
poll = { kind = "backoff", initial_s = 0.5, factor = 2, max_s = 5 }
"#;

/// The scenario `toml` describes; a test's scenario reads no CSV file.
pub fn scenario(toml: &str) -> Scenario {
    parse(toml, |name| Err(format!("no file {name} in this test")))
        .unwrap_or_else(|error| panic!("{error}"))
}

/// Asserts that `actual` is `expected` ± `tolerance`, naming `what` when it is not.
pub fn within(actual: f64, expected: f64, tolerance: f64, what: &str) {
    assert!(
        (actual - expected).abs() <= tolerance,
        "{what}: {actual}, expected {expected} ± {tolerance}"
    );
}

/// `Σ_{k<c} a^k / k!` and `a^c / c!`, the two sums the Erlang formulas are made of.
fn erlang_terms(a: f64, c: u32) -> (f64, f64) {
    let mut term = 1.0; // a^k / k!
    let mut below = 0.0; // Σ_{k<c} a^k / k!
    for k in 0..c {
        below += term;
        term *= a / f64::from(k + 1);
    }
    (below, term)
}

/// Erlang B: the probability that a request offered `a` erlangs finds all `c` servers busy in a
/// system with no waiting room (M/G/c/c), and is refused.
pub fn erlang_b(a: f64, c: u32) -> f64 {
    let (below, term) = erlang_terms(a, c);
    term / (below + term)
}

/// Erlang C: the probability that a job offered `a` erlangs waits for one of `c` servers
/// (M/M/c).
pub fn erlang_c(a: f64, c: u32) -> f64 {
    let (below, term) = erlang_terms(a, c);
    let waiting = term * f64::from(c) / (f64::from(c) - a);
    waiting / (below + waiting)
}
