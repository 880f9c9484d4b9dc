//! When each request is due: the rate profile and the intended send times it gives.

use std::time::Duration;

/// Nanoseconds in a second: one request is due each time the integral of the rate grows by this
/// much (in request-nanoseconds per second).
const NANOS_PER_SECOND: u128 = 1_000_000_000;

/// The rate profile of a run: a baseline rate for the whole duration, replaced by a spike rate
/// inside the spike window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile {
    /// Requests per second outside the spike.
    pub rate: u32,
    /// How long requests are scheduled for.
    pub duration: Duration,
    /// A window with another rate, if any.
    pub spike: Option<Spike>,
}

/// A window of the run with its own rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spike {
    /// Requests per second inside the window.
    pub rate: u32,
    /// Offset of the window from the start of the run.
    pub start: Duration,
    /// Length of the window; the part past the end of the run is ignored.
    pub length: Duration,
}

impl Profile {
    /// The profile as consecutive `(start, end, rate)` segments covering `[0, duration)`.
    fn segments(&self) -> Vec<(Duration, Duration, u32)> {
        let end = self.duration;
        let Some(spike) = self.spike else {
            return vec![(Duration::ZERO, end, self.rate)];
        };
        let spike_start = spike.start.min(end);
        let spike_end = spike.start.saturating_add(spike.length).min(end);
        [
            (Duration::ZERO, spike_start, self.rate),
            (spike_start, spike_end, spike.rate),
            (spike_end, end, self.rate),
        ]
        .into_iter()
        .filter(|(start, end, _)| start < end)
        .collect()
    }

    /// The intended send times, as offsets from the start of the run.
    pub fn schedule(&self) -> Schedule {
        Schedule {
            segments: self.segments(),
            segment: 0,
            integral_at_start: 0,
            next: 0,
        }
    }
}

/// The intended send times of a profile, in order: request `k` (from 0) is due at the first
/// nanosecond `t` where the integral of the rate from 0 to `t` reaches `k`. So a constant rate `r`
/// sends at `0, 1/r, 2/r, …`, and a run sends `∫ rate` requests, rounded up. The arithmetic is
/// integer nanoseconds, so counts are exact.
#[derive(Debug, Clone)]
pub struct Schedule {
    segments: Vec<(Duration, Duration, u32)>,
    /// Index of the segment the next request falls in (or after).
    segment: usize,
    /// The integral of the rate up to the start of the current segment, in request-nanoseconds
    /// per second.
    integral_at_start: u128,
    /// The number of the next request.
    next: u128,
}

impl Iterator for Schedule {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        loop {
            let &(start, end, rate) = self.segments.get(self.segment)?;
            let (start, end, rate) = (start.as_nanos(), end.as_nanos(), u128::from(rate));
            if rate > 0 {
                let owed = (self.next * NANOS_PER_SECOND).saturating_sub(self.integral_at_start);
                let due = start + owed.div_ceil(rate);
                if due < end {
                    self.next += 1;
                    return Some(Duration::from_nanos(u64::try_from(due).unwrap_or(u64::MAX)));
                }
            }
            self.integral_at_start += rate * (end - start);
            self.segment += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn a_constant_rate_sends_rate_times_duration_requests_evenly_spaced() {
        let profile = Profile {
            rate: 200,
            duration: secs(2),
            spike: None,
        };
        let times: Vec<_> = profile.schedule().collect();
        assert_eq!(times.len(), 400);
        assert_eq!(times[0], Duration::ZERO);
        assert_eq!(times[1], Duration::from_millis(5));
        assert_eq!(times[399], Duration::from_millis(1995));
    }

    #[test]
    fn a_spike_replaces_the_baseline_inside_its_window() {
        let (baseline, spike_rate, duration, spike_length) = (100_u32, 1000_u32, 10_u64, 3_u64);
        let profile = Profile {
            rate: baseline,
            duration: secs(duration),
            spike: Some(Spike {
                rate: spike_rate,
                start: secs(2),
                length: secs(spike_length),
            }),
        };
        let times: Vec<_> = profile.schedule().collect();
        let expected =
            u64::from(baseline) * (duration - spike_length) + u64::from(spike_rate) * spike_length;
        assert_eq!(times.len(), usize::try_from(expected).unwrap());

        let in_window = |from: u64, to: u64| {
            times
                .iter()
                .filter(|t| **t >= secs(from) && **t < secs(to))
                .count()
        };
        assert_eq!(in_window(0, 2), 200);
        assert_eq!(in_window(2, 5), 3000);
        assert_eq!(in_window(5, 10), 500);
        assert!(times.windows(2).all(|w| w[0] < w[1]), "strictly increasing");
        assert_eq!(times[200], secs(2), "the spike starts on time");
        assert_eq!(times[201] - times[200], Duration::from_millis(1));
    }

    #[test]
    fn a_spike_past_the_end_of_the_run_is_cut_off() {
        let profile = Profile {
            rate: 10,
            duration: secs(4),
            spike: Some(Spike {
                rate: 100,
                start: secs(3),
                length: secs(60),
            }),
        };
        assert_eq!(profile.schedule().count(), 30 + 100);
    }

    #[test]
    fn a_spike_of_zero_is_a_pause() {
        let profile = Profile {
            rate: 10,
            duration: secs(3),
            spike: Some(Spike {
                rate: 0,
                start: secs(1),
                length: secs(1),
            }),
        };
        let times: Vec<_> = profile.schedule().collect();
        assert_eq!(times.len(), 20);
        assert!(times.iter().all(|t| *t < secs(1) || *t >= secs(2)));
    }

    #[test]
    fn rates_that_do_not_divide_a_second_round_the_count_up() {
        let profile = Profile {
            rate: 3,
            duration: Duration::from_millis(500),
            spike: None,
        };
        // 1.5 requests are owed: at 0 and at 1/3 s.
        let times: Vec<_> = profile.schedule().collect();
        assert_eq!(times, [Duration::ZERO, Duration::from_nanos(333_333_334)]);
    }
}
