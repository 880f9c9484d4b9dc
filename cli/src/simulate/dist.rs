//! The random draws of a simulation, all from one seeded generator so that a run is a function
//! of its scenario and seed.

use fastrand::Rng;

/// The 99th percentile of the standard normal distribution: a log-normal time's p99 is
/// `exp(mu + Z99 · sigma)`.
pub const Z99: f64 = 2.326_347_874_040_841;

/// The longest processing time a draw may return (one day, in microseconds): far beyond any
/// Lambda timeout, so a heavy tail is still cut by the timeout, never by this cap.
const LONGEST_MICROS: u64 = 86_400 * 1_000_000;
/// The largest number of microseconds a conversion returns (about 285 years).
const MAX_MICROS: f64 = 9.0e15;

/// How long one attempt of a job's processor runs.
#[derive(Debug, Clone, PartialEq)]
pub enum ProcessingTime {
    /// Always the same, in microseconds.
    Fixed { micros: u64 },
    /// Uniform from `min` to `max` microseconds.
    Uniform { min: u64, max: u64 },
    /// Exponential with this mean, in seconds.
    Exponential { mean_s: f64 },
    /// Log-normal: the logarithm of the time in seconds is normal with mean `mu` and standard
    /// deviation `sigma` (from a p50 and a p99: [`lognormal_from_percentiles`]).
    LogNormal { mu: f64, sigma: f64 },
    /// One of these measured times (microseconds), each equally likely.
    Empirical { micros: Vec<u64> },
}

impl ProcessingTime {
    /// One draw, in microseconds.
    pub fn sample(&self, rng: &mut Rng) -> u64 {
        let micros = match self {
            Self::Fixed { micros } => *micros,
            Self::Uniform { min, max } => rng.u64(*min..=*max),
            Self::Exponential { mean_s } => seconds_to_micros(exponential(rng, *mean_s)),
            Self::LogNormal { mu, sigma } => {
                seconds_to_micros((mu + sigma * standard_normal(rng)).exp())
            }
            Self::Empirical { micros } => match micros.len() {
                0 => 0,
                len => micros[rng.usize(0..len)],
            },
        };
        micros.min(LONGEST_MICROS)
    }

    /// The distribution's mean, in seconds.
    #[cfg(test)]
    pub fn mean_s(&self) -> f64 {
        match self {
            Self::Fixed { micros } => to_seconds(*micros),
            Self::Uniform { min, max } => (to_seconds(*min) + to_seconds(*max)) / 2.0,
            Self::Exponential { mean_s } => *mean_s,
            Self::LogNormal { mu, sigma } => (mu + sigma * sigma / 2.0).exp(),
            Self::Empirical { micros } if micros.is_empty() => 0.0,
            #[allow(clippy::cast_precision_loss)]
            Self::Empirical { micros } => {
                micros.iter().map(|&m| to_seconds(m)).sum::<f64>() / micros.len() as f64
            }
        }
    }
}

/// `mu` and `sigma` of the log-normal distribution whose median is `p50_s` and 99th percentile
/// `p99_s` (seconds): `mu = ln p50`, `sigma = (ln p99 − ln p50) / 2.3263`.
pub fn lognormal_from_percentiles(p50_s: f64, p99_s: f64) -> (f64, f64) {
    let mu = p50_s.ln();
    (mu, (p99_s.ln() - mu) / Z99)
}

/// An exponential draw with mean `mean` (inversion of the distribution function).
pub fn exponential(rng: &mut Rng, mean: f64) -> f64 {
    // 1 − U is in (0, 1], so the logarithm is finite.
    -mean * (1.0 - rng.f64()).ln()
}

/// A standard normal draw (Box–Muller; one of the pair is used, so each draw takes two uniforms).
pub fn standard_normal(rng: &mut Rng) -> f64 {
    let u1 = 1.0 - rng.f64();
    let u2 = rng.f64();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Seconds as whole microseconds, rounded, at least 0 (and NaN as 0).
pub fn seconds_to_micros(seconds: f64) -> u64 {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let micros = (seconds * 1e6).round().clamp(0.0, MAX_MICROS) as u64;
    micros
}

/// Microseconds as seconds.
#[allow(clippy::cast_precision_loss)]
pub fn to_seconds(micros: u64) -> f64 {
    micros as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mean_of(time: &ProcessingTime, draws: u32) -> f64 {
        let mut rng = Rng::with_seed(7);
        let total: f64 = (0..draws).map(|_| to_seconds(time.sample(&mut rng))).sum();
        total / f64::from(draws)
    }

    #[test]
    fn each_distribution_draws_around_its_mean() {
        // 200,000 draws: the standard error of the mean is sd/√200000 ≈ sd · 0.0022, so a 2 %
        // tolerance is several standard errors for each of these (sd ≤ mean · 1.3).
        let times = [
            ProcessingTime::Fixed { micros: 250_000 },
            ProcessingTime::Uniform {
                min: 100_000,
                max: 300_000,
            },
            ProcessingTime::Exponential { mean_s: 0.5 },
            {
                let (mu, sigma) = lognormal_from_percentiles(0.2, 1.0);
                ProcessingTime::LogNormal { mu, sigma }
            },
            ProcessingTime::Empirical {
                micros: vec![100_000, 200_000, 600_000],
            },
        ];
        for time in &times {
            let mean = mean_of(time, 200_000);
            let expected = time.mean_s();
            assert!(
                (mean - expected).abs() <= 0.02 * expected,
                "{time:?}: drawn mean {mean}, expected {expected}"
            );
        }
    }

    #[test]
    fn a_lognormal_from_percentiles_has_those_percentiles() {
        // p50 = 0.2 s, p99 = 2 s: of 100,000 draws, the 50,000th and 99,000th in order are
        // within 3 % of them (the sample quantiles' standard errors are well under 1 %).
        let (mu, sigma) = lognormal_from_percentiles(0.2, 2.0);
        let time = ProcessingTime::LogNormal { mu, sigma };
        let mut rng = Rng::with_seed(11);
        let mut draws: Vec<u64> = (0..100_000).map(|_| time.sample(&mut rng)).collect();
        draws.sort_unstable();
        let p50 = to_seconds(draws[49_999]);
        let p99 = to_seconds(draws[98_999]);
        assert!((p50 - 0.2).abs() <= 0.03 * 0.2, "p50 {p50}");
        assert!((p99 - 2.0).abs() <= 0.03 * 2.0, "p99 {p99}");
    }
}
