//! What both simulated designs share: the submissions' arrival times, API Gateway's token
//! bucket, and the seeded generators. Arrivals draw from a generator of their own, so the
//! asynchronous and the synchronous runs of one scenario and seed see the same submissions at
//! the same instants (`--compare`).

use fastrand::Rng;

use super::dist::{exponential, to_seconds};
use super::scenario::{ArrivalProcess, Scenario, Throttle};

/// The two generators of a run with `seed`: the arrivals', and the one every other draw comes
/// from.
pub fn generators(seed: u64) -> (Rng, Rng) {
    let mut arrivals = Rng::with_seed(seed);
    let others = arrivals.fork();
    (arrivals, others)
}

/// The submissions' clock: a piecewise-constant rate (the baseline, and each spike's), and gaps
/// drawn so that each costs one unit of "rate × time": exponential units give a Poisson process,
/// units of exactly 1 evenly spaced arrivals, across rate changes too.
pub struct ArrivalClock {
    /// Seconds since the start, as a float so that even spacing does not drift by rounding.
    t: f64,
    end: f64,
    base: f64,
    /// (start, end, rate) of each spike, in seconds, sorted.
    spikes: Vec<(f64, f64, f64)>,
    next_spike: usize,
    process: ArrivalProcess,
}

impl ArrivalClock {
    pub fn new(scenario: &Scenario) -> Self {
        let arrivals = &scenario.arrivals;
        Self {
            t: 0.0,
            end: to_seconds(scenario.duration),
            base: arrivals.rate,
            spikes: arrivals
                .spikes
                .iter()
                .map(|s| (to_seconds(s.start), to_seconds(s.end()), s.rate))
                .collect(),
            next_spike: 0,
            process: arrivals.process,
        }
    }

    /// The rate at `self.t` and when it next changes.
    fn segment(&mut self) -> (f64, f64) {
        while let Some(&(_, end, _)) = self.spikes.get(self.next_spike) {
            if self.t < end {
                break;
            }
            self.next_spike += 1;
        }
        let (rate, until) = match self.spikes.get(self.next_spike) {
            Some(&(start, _, _)) if self.t < start => (self.base, start),
            Some(&(_, end, rate)) => (rate, end),
            None => (self.base, self.end),
        };
        (rate, until.min(self.end))
    }

    /// The next arrival, in seconds, or `None` once the arrivals have ended.
    pub fn next(&mut self, rng: &mut Rng) -> Option<f64> {
        let mut units = match self.process {
            ArrivalProcess::Poisson => exponential(rng, 1.0),
            ArrivalProcess::Even => 1.0,
        };
        loop {
            if self.t >= self.end {
                return None;
            }
            let (rate, until) = self.segment();
            if rate > 0.0 && units <= rate * (until - self.t) {
                self.t += units / rate;
                return Some(self.t);
            }
            units -= rate * (until - self.t);
            self.t = until;
        }
    }
}

/// API Gateway's throttle: a bucket of `burst` tokens refilled at `rate` per second, one taken
/// by each request it admits.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    throttle: Option<Throttle>,
    tokens: f64,
    /// When `tokens` was last brought up to date (µs).
    at: u64,
}

impl TokenBucket {
    /// A full bucket, or one that admits everything when there is no throttle.
    pub fn new(throttle: Option<Throttle>) -> Self {
        Self {
            throttle,
            tokens: throttle.map_or(0.0, |t| t.burst),
            at: 0,
        }
    }

    /// Whether a request at `now` (µs) is admitted; `false` is a `429`.
    pub fn admit(&mut self, now: u64) -> bool {
        let Some(throttle) = self.throttle else {
            return true;
        };
        let elapsed = to_seconds(now - self.at);
        self.tokens = (self.tokens + throttle.rate * elapsed).min(throttle.burst);
        self.at = now;
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}
