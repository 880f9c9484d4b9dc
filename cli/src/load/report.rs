//! What a load run measured, as a table for people and as JSON for scripts.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::time::Duration;

use serde::Serialize;

/// Latency percentiles, in milliseconds (nearest rank).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    /// The percentiles of `samples`, or `None` when there are none.
    pub fn of(mut samples: Vec<Duration>) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let rank = |q: f64| {
            // Nearest rank: the smallest sample with at least q of the samples at or below it.
            #[allow(
                clippy::cast_precision_loss,
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss
            )]
            let index = ((q * samples.len() as f64).ceil() as usize).saturating_sub(1);
            millis(samples[index.min(samples.len() - 1)])
        };
        Some(Self {
            count: samples.len(),
            p50_ms: rank(0.50),
            p95_ms: rank(0.95),
            p99_ms: rank(0.99),
            max_ms: millis(samples[samples.len() - 1]),
        })
    }
}

impl fmt::Display for Percentiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.p50_ms, self.p95_ms, self.p99_ms, self.max_ms
        )
    }
}

/// A duration in milliseconds, rounded to the microsecond.
pub fn millis(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1_000_000.0).round() / 1_000.0
}

/// The whole report of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub url: String,
    pub kind: String,
    /// Where each `sleep` job's duration was drawn from (`--sleep-dist`), if it was.
    pub sleep_dist: Option<SleepDistReport>,
    /// Jobs per second outside the spike.
    pub rate: u32,
    pub duration_s: f64,
    pub spike: Option<SpikeReport>,
    /// Requests the schedule called for.
    pub scheduled: u64,
    /// Requests sent.
    pub sent: u64,
    /// Requests not sent because `--max-in-flight` requests were outstanding.
    pub dropped: u64,
    /// `202 Accepted` answers.
    pub accepted: u64,
    /// Accepted jobs per second over the run: accepted / the longer of the schedule and the time
    /// the last answer arrived.
    pub accepted_per_s: f64,
    /// The most jobs accepted in any one second of the run (by when the answer arrived).
    pub peak_accepted_per_s: u64,
    /// Answers other than 202, by status code.
    pub rejected: BTreeMap<u16, u64>,
    /// Requests that got no answer, by reason.
    pub errors: BTreeMap<String, u64>,
    /// Intake latency of accepted jobs, from the moment the schedule said to send (so a slow
    /// server cannot hide its queueing by slowing the generator down).
    pub intake_latency: Option<Percentiles>,
    /// Intake latency of accepted jobs from the moment each request actually left: the server's
    /// share of `intake_latency`.
    pub service_time: Option<Percentiles>,
    /// How far behind its schedule the generator sent requests (at least the timer's 1 ms
    /// resolution, at most how starved its CPU was).
    pub lag: Option<Percentiles>,
    /// The share of jobs submitted as `high` (`--high-share`).
    pub high_share: f64,
    /// Each lane's figures, by priority, when the run submitted to more than one.
    pub lanes: BTreeMap<String, GroupReport>,
    /// Each owner's figures, with `--owners`.
    pub owners: BTreeMap<String, GroupReport>,
    /// Every owner's but the noisy `owner-0`'s, together, with `--noisy-owner-factor`.
    pub quiet_owners: Option<GroupReport>,
    /// What `--follow` found.
    pub follow: Option<FollowReport>,
}

/// One lane's or owner's figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GroupReport {
    /// Requests sent with this priority, or by this owner.
    pub sent: u64,
    /// `202 Accepted` answers.
    pub accepted: u64,
    /// Answers other than 202, by status code.
    pub rejected: BTreeMap<u16, u64>,
    /// From acceptance to a consumer's first claim (`created_at` to `started_at`), of the jobs
    /// that ran; filled by `--follow`.
    pub queue_wait: Option<Percentiles>,
    /// Accepted to terminal; filled by `--follow`.
    pub end_to_end_latency: Option<Percentiles>,
}

/// The distribution `--sleep-dist` drew each job's sleep from.
#[derive(Debug, Clone, Serialize)]
pub struct SleepDistReport {
    /// As given, e.g. `lognormal:p50=200ms,p99=1s`.
    pub dist: String,
    pub seed: u64,
}

/// The spike window's own figures.
#[derive(Debug, Clone, Serialize)]
pub struct SpikeReport {
    pub rate: u32,
    pub start_s: f64,
    pub length_s: f64,
    /// Jobs accepted per second inside the window (by when the answer arrived).
    pub accepted_per_s: f64,
    /// Intake latency of the accepted jobs due inside the window.
    pub intake_latency: Option<Percentiles>,
}

/// The jobs' fate, polled after the run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FollowReport {
    /// The last status seen of every accepted job that was found.
    pub final_states: BTreeMap<String, u64>,
    /// Accepted to terminal, from each job's own `created_at` and `updated_at`.
    pub end_to_end_latency: Option<Percentiles>,
    /// Accepted to a consumer's first claim, from each job's `created_at` and `started_at`, of
    /// the jobs that ran.
    pub queue_wait: Option<Percentiles>,
    /// Accepted jobs that `GET /jobs/{id}` does not know.
    pub not_found: u64,
    /// Accepted jobs still not terminal when `--follow-timeout` ran out.
    pub not_terminal: u64,
    /// `not_found + not_terminal`.
    pub lost: u64,
    /// Up to ten of the lost jobs' ids.
    pub lost_ids: Vec<String>,
    /// Polls that got no usable answer and were retried.
    pub poll_errors: u64,
    pub elapsed_s: f64,
}

impl Report {
    /// The report as a table for a terminal.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = self.write_text(&mut out);
        out
    }

    fn write_text(&self, out: &mut String) -> fmt::Result {
        writeln!(
            out,
            "load: {} jobs of kind {:?} to {}, {}/s for {} s",
            self.scheduled, self.kind, self.url, self.rate, self.duration_s
        )?;
        if let Some(sleep) = &self.sleep_dist {
            writeln!(
                out,
                "  sleeps drawn from {} (seed {})",
                sleep.dist, sleep.seed
            )?;
        }
        if let Some(spike) = &self.spike {
            writeln!(
                out,
                "  spike: {}/s from {} s for {} s",
                spike.rate, spike.start_s, spike.length_s
            )?;
        }
        writeln!(
            out,
            "  sent {}, dropped {} (max in flight)",
            self.sent, self.dropped
        )?;
        writeln!(
            out,
            "  accepted {} ({:.0}/s, peak {}/s)",
            self.accepted, self.accepted_per_s, self.peak_accepted_per_s
        )?;
        writeln!(out, "  rejected {}", counts(&self.rejected))?;
        writeln!(out, "  errors {}", counts(&self.errors))?;
        if let Some(latency) = &self.intake_latency {
            writeln!(out, "  intake latency: {latency}")?;
        }
        if let Some(service) = &self.service_time {
            writeln!(out, "  of which the server: {service}")?;
        }
        if let Some(lag) = &self.lag {
            writeln!(
                out,
                "  behind schedule: p99 {:.2} ms, max {:.2} ms",
                lag.p99_ms, lag.max_ms
            )?;
        }
        if let Some(spike) = &self.spike {
            write!(
                out,
                "  spike window: {:.0} accepted/s",
                spike.accepted_per_s
            )?;
            match &spike.intake_latency {
                Some(latency) => writeln!(out, ", intake latency {latency}")?,
                None => writeln!(out)?,
            }
        }
        let groups = self
            .lanes
            .iter()
            .map(|(lane, figures)| (format!("lane {lane}"), figures))
            .chain(
                self.owners
                    .iter()
                    .map(|(owner, figures)| (owner.clone(), figures)),
            )
            .chain(
                self.quiet_owners
                    .iter()
                    .map(|figures| ("owners but owner-0".to_owned(), figures)),
            );
        for (name, figures) in groups {
            writeln!(
                out,
                "  {name}: sent {}, accepted {}, rejected {}",
                figures.sent,
                figures.accepted,
                counts(&figures.rejected)
            )?;
            if let Some(wait) = &figures.queue_wait {
                writeln!(out, "    queue wait: {wait}")?;
            }
            if let Some(latency) = &figures.end_to_end_latency {
                writeln!(out, "    end-to-end latency: {latency}")?;
            }
        }
        if let Some(follow) = &self.follow {
            writeln!(
                out,
                "  followed for {:.1} s: {}",
                follow.elapsed_s,
                counts(&follow.final_states)
            )?;
            if let Some(wait) = &follow.queue_wait {
                writeln!(out, "  queue wait: {wait}")?;
            }
            if let Some(latency) = &follow.end_to_end_latency {
                writeln!(out, "  end-to-end latency: {latency}")?;
            }
            writeln!(
                out,
                "  lost {} (not found {}, not terminal {}){}",
                follow.lost,
                follow.not_found,
                follow.not_terminal,
                if follow.lost_ids.is_empty() {
                    String::new()
                } else {
                    format!(": {}", follow.lost_ids.join(", "))
                }
            )?;
            if follow.poll_errors > 0 {
                writeln!(
                    out,
                    "  polls retried after an error: {}",
                    follow.poll_errors
                )?;
            }
        }
        Ok(())
    }
}

/// `{a: 1, b: 2}` as `a 1, b 2`, or `none`.
fn counts<K: fmt::Display>(map: &BTreeMap<K, u64>) -> String {
    if map.is_empty() {
        return "none".to_owned();
    }
    map.iter()
        .map(|(key, count)| format!("{key} {count}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn ms(values: impl IntoIterator<Item = u64>) -> Vec<Duration> {
        values.into_iter().map(Duration::from_millis).collect()
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let p = Percentiles::of(ms((1..=100).rev())).unwrap();
        assert_eq!(p.count, 100);
        assert_eq!(
            (p.p50_ms, p.p95_ms, p.p99_ms, p.max_ms),
            (50.0, 95.0, 99.0, 100.0)
        );

        let p = Percentiles::of(ms([7])).unwrap();
        assert_eq!((p.p50_ms, p.p99_ms, p.max_ms), (7.0, 7.0, 7.0));

        let p = Percentiles::of(ms([1, 2, 3])).unwrap();
        assert_eq!((p.p50_ms, p.p95_ms), (2.0, 3.0));
    }

    #[test]
    fn no_samples_no_percentiles() {
        assert_eq!(Percentiles::of(Vec::new()), None);
    }

    #[test]
    fn milliseconds_keep_microseconds() {
        assert_eq!(millis(Duration::from_nanos(1_234_567)), 1.235);
    }

    #[test]
    fn counts_read_as_a_list() {
        let map = BTreeMap::from([(422_u16, 3), (503, 1)]);
        assert_eq!(counts(&map), "422 3, 503 1");
        assert_eq!(counts(&BTreeMap::<u16, u64>::new()), "none");
    }
}
