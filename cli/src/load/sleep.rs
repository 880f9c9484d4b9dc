//! `--sleep-dist`: how long each `sleep` job sleeps, drawn for each submission from the same
//! distributions `spillway simulate` draws processing times from, with a seeded generator, so
//! that a run against `spillway dev` and a simulation of it share the processing-time model.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use fastrand::Rng;

use crate::simulate::dist::{ProcessingTime, lognormal_from_percentiles};

/// The longest sleep the `sleep` processor accepts (a Lambda invocation lasts at most 15
/// minutes); a longer draw sleeps this long.
const MAX_MS: u64 = 900_000;

/// A processing-time distribution as `--sleep-dist` spells it, and what it parsed to.
#[derive(Debug, Clone, PartialEq)]
pub struct SleepDist {
    spec: String,
    time: ProcessingTime,
}

impl SleepDist {
    /// The draws of a run with `seed`, one for each submission in schedule order.
    pub fn draws(&self, seed: u64) -> SleepDraws {
        SleepDraws {
            time: self.time.clone(),
            rng: Rng::with_seed(seed),
        }
    }
}

impl fmt::Display for SleepDist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.spec)
    }
}

/// What `--sleep-dist` accepts, for its error messages.
const FORMS: &str = "fixed:250ms, uniform:100ms..300ms, exponential:mean=250ms or \
                     lognormal:p50=200ms,p99=1s";

impl FromStr for SleepDist {
    type Err = String;

    fn from_str(spec: &str) -> Result<Self, String> {
        let (kind, rest) = spec
            .split_once(':')
            .ok_or_else(|| format!("expected one of {FORMS}"))?;
        let time = match kind {
            "fixed" => ProcessingTime::Fixed {
                micros: micros(duration(rest)?),
            },
            "uniform" => {
                let (min, max) = rest
                    .split_once("..")
                    .ok_or_else(|| format!("uniform: expected MIN..MAX, got {rest:?}"))?;
                let (min, max) = (duration(min)?, duration(max)?);
                if max < min {
                    return Err(format!("uniform: {max:?} is less than {min:?}"));
                }
                ProcessingTime::Uniform {
                    min: micros(min),
                    max: micros(max),
                }
            }
            "exponential" => {
                let mean = named(rest, "mean")?;
                if mean.is_zero() {
                    return Err("exponential: the mean must be more than 0".to_owned());
                }
                ProcessingTime::Exponential {
                    mean_s: mean.as_secs_f64(),
                }
            }
            "lognormal" => {
                let (p50, p99) = rest.split_once(',').ok_or_else(|| {
                    format!("lognormal: expected p50=DURATION,p99=DURATION, got {rest:?}")
                })?;
                let (p50, p99) = (named(p50, "p50")?, named(p99, "p99")?);
                if p50.is_zero() || p99 < p50 {
                    return Err("lognormal: expected 0 < p50 <= p99".to_owned());
                }
                let (mu, sigma) = lognormal_from_percentiles(p50.as_secs_f64(), p99.as_secs_f64());
                ProcessingTime::LogNormal { mu, sigma }
            }
            _ => {
                return Err(format!(
                    "unknown distribution {kind:?}: expected one of {FORMS}"
                ));
            }
        };
        Ok(Self {
            spec: spec.to_owned(),
            time,
        })
    }
}

/// `name=DURATION`'s duration.
fn named(text: &str, name: &str) -> Result<Duration, String> {
    let value = text
        .trim()
        .strip_prefix(name)
        .and_then(|rest| rest.strip_prefix('='))
        .ok_or_else(|| format!("expected {name}=DURATION, got {text:?}"))?;
    duration(value)
}

fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| format!("{text:?}: {e}"))
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// The sleeps of one run, drawn in turn.
#[derive(Debug)]
pub struct SleepDraws {
    time: ProcessingTime,
    rng: Rng,
}

impl SleepDraws {
    /// The next job's sleep in whole milliseconds (the `sleep` processor's unit), rounded to the
    /// nearest, at most 900,000.
    pub fn next_ms(&mut self) -> u64 {
        (self.time.sample(&mut self.rng).saturating_add(500) / 1000).min(MAX_MS)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn draws(spec: &str, count: usize) -> Vec<u64> {
        let dist: SleepDist = spec.parse().unwrap();
        let mut draws = dist.draws(1);
        (0..count).map(|_| draws.next_ms()).collect()
    }

    #[test]
    fn each_form_parses_to_the_simulators_distribution() {
        assert_eq!(draws("fixed:250ms", 3), [250, 250, 250]);
        let uniform = draws("uniform:100ms..300ms", 1000);
        assert!(uniform.iter().all(|ms| (100..=300).contains(ms)));
        let (mu, sigma) = lognormal_from_percentiles(0.2, 1.0);
        let parsed: SleepDist = "lognormal:p50=200ms,p99=1s".parse().unwrap();
        assert_eq!(parsed.time, ProcessingTime::LogNormal { mu, sigma });
        let parsed: SleepDist = "exponential:mean=1s 500ms".parse().unwrap();
        assert_eq!(parsed.time, ProcessingTime::Exponential { mean_s: 1.5 });
    }

    #[test]
    fn a_lognormal_draws_its_percentiles() {
        // 20,000 draws: the sample quantiles' standard errors are well under 2 %.
        let mut sorted = draws("lognormal:p50=200ms,p99=1s", 20_000);
        sorted.sort_unstable();
        let (p50, p99) = (sorted[9_999], sorted[19_799]);
        assert!((196..=204).contains(&p50), "p50 {p50}");
        assert!((940..=1060).contains(&p99), "p99 {p99}");
    }

    #[test]
    fn the_same_seed_draws_the_same_sleeps() {
        let dist: SleepDist = "exponential:mean=100ms".parse().unwrap();
        let sleeps = |seed| {
            let mut draws = dist.draws(seed);
            (0..50).map(|_| draws.next_ms()).collect::<Vec<_>>()
        };
        assert_eq!(sleeps(7), sleeps(7));
        assert_ne!(sleeps(7), sleeps(8));
    }

    #[test]
    fn a_bad_spec_says_what_is_expected() {
        for (spec, expected) in [
            ("gamma:1s", "unknown distribution"),
            ("250ms", "expected one of"),
            ("uniform:300ms..100ms", "less than"),
            ("uniform:100ms", "MIN..MAX"),
            ("lognormal:p50=1s,p99=200ms", "0 < p50 <= p99"),
            ("lognormal:p50=1s", "p50=DURATION,p99=DURATION"),
            ("exponential:250ms", "mean=DURATION"),
            ("fixed:soon", "\"soon\""),
        ] {
            let error = spec.parse::<SleepDist>().unwrap_err();
            assert!(error.contains(expected), "{spec}: {error}");
        }
    }

    #[test]
    fn a_draw_past_the_processors_limit_sleeps_the_limit() {
        assert_eq!(draws("fixed:20m", 1), [MAX_MS]);
        assert_eq!(draws("fixed:1499us", 1), [1]);
        assert_eq!(draws("fixed:1500us", 1), [2]);
    }
}
