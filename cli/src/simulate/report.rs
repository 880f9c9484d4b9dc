//! What a simulation found: the summary and the time series, and their renderings as a table,
//! CSV and JSON. Every number is formatted the same way on every run, so the same scenario and
//! seed give byte-identical output.

use std::fmt::{self, Write as _};

use serde::Serialize;

use super::cost::Cost;

/// Percentiles of a set of durations, in seconds, by nearest rank over an exact sort of every
/// recorded value (microsecond resolution): no histogram, no approximation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    /// How many values.
    pub count: u64,
    pub p50_s: f64,
    pub p95_s: f64,
    pub p99_s: f64,
    pub max_s: f64,
}

impl Percentiles {
    /// The percentiles of `micros` (sorted here), or `None` when it is empty.
    pub fn of(micros: &mut [u64]) -> Option<Self> {
        if micros.is_empty() {
            return None;
        }
        micros.sort_unstable();
        let last = micros.len() - 1;
        let rank = |q: f64| {
            // Nearest rank: the smallest value with at least q of the values at or below it.
            #[allow(
                clippy::cast_precision_loss,
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss
            )]
            let index = ((q * micros.len() as f64).ceil() as usize).saturating_sub(1);
            seconds(micros[index.min(last)])
        };
        Some(Self {
            count: micros.len() as u64,
            p50_s: rank(0.50),
            p95_s: rank(0.95),
            p99_s: rank(0.99),
            max_s: seconds(micros[last]),
        })
    }
}

/// Microseconds as seconds.
#[allow(clippy::cast_precision_loss)]
fn seconds(micros: u64) -> f64 {
    micros as f64 / 1e6
}

/// The totals of one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// The seed the run drew from.
    pub seed: u64,
    /// How long the run lasted in simulated time: the arrivals' duration, or longer until the
    /// queue drained or the drain limit passed.
    pub simulated_s: f64,
    /// Submissions, whatever their answer.
    pub arrivals: u64,
    /// `202 Accepted`.
    pub accepted: u64,
    /// `503`: the queue held more visible messages than `BacklogLimit`.
    pub rejected_backlog: u64,
    /// `429`: API Gateway's throttle.
    pub throttled: u64,
    /// Jobs that ended `succeeded`.
    pub succeeded: u64,
    /// Jobs that ended `failed` (a permanent error).
    pub failed: u64,
    /// Jobs received after their deadline, and so `expired` without running.
    pub expired: u64,
    /// Jobs whose last attempt failed retryably: `dead_lettered`, their message in the DLQ.
    pub dead_lettered: u64,
    /// Jobs whose message SQS deleted at the end of its retention before it could run.
    pub lost_to_retention: u64,
    /// Jobs whose message reached the DLQ by `maxReceiveCount` while the job was not finished.
    pub stranded_in_dlq: u64,
    /// Jobs not finished when the run ended (the drain limit came first).
    pub unfinished: u64,
    /// Attempts run (a job's retries each count).
    pub attempts: u64,
    /// Attempts that failed retryably and were scheduled again.
    pub retries: u64,
    /// Attempts cut by the end of their invocation (counted as retryable failures).
    pub timed_out: u64,
    /// The most visible messages at once, and when (seconds from the start).
    pub peak_visible: u64,
    pub peak_visible_at_s: f64,
    /// When the last spike ended, and how long after it the queue first had no visible message.
    pub last_spike_end_s: Option<f64>,
    pub drained_after_spike_s: Option<f64>,
    /// From acceptance to the first receive, over every job received at least once.
    pub queue_wait: Option<Percentiles>,
    /// The share of received jobs whose first receive came more than 1 ms after acceptance.
    pub waited_share: f64,
    /// From acceptance to the job's end, over every job that ended.
    pub end_to_end: Option<Percentiles>,
    /// The most consumer invocations running at once.
    pub peak_concurrency: u32,
    /// Invocations running, averaged over the run.
    pub mean_concurrency: f64,
    /// `MaximumConcurrency`, for reference.
    pub maximum_concurrency: u32,
    /// Busy invocation time / (`MaximumConcurrency` × the run's length).
    pub utilisation: f64,
    /// `GET /jobs/{id}` requests the clients made.
    pub status_requests: u64,
    /// Status requests per second: over the run, and in the busiest row.
    pub status_per_s_mean: f64,
    pub status_per_s_peak: f64,
    pub status_per_s_peak_at_s: f64,
    /// The status route's throttle rate the rows are compared with (0: none), and how many rows
    /// averaged more status requests per second than it. A row over it means clients would get
    /// `429`s then (unless the burst absorbs them); the simulation does not refuse any poll.
    pub status_throttle_per_s: f64,
    pub status_rows_over_throttle: u64,
    /// What the run would cost on AWS, by service (docs/capacity-planning.md, "Cost").
    pub cost: Cost,
}

/// One row of the time series: what happened during `[t_s, t_s + sample)`, and the queue as it
/// stood at the end of it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Row {
    /// Start of the row, seconds from the start of the run.
    pub t_s: f64,
    /// Submissions.
    pub arrivals: u64,
    /// `202`s.
    pub accepted: u64,
    /// `503`s (backlog).
    pub rejected: u64,
    /// `429`s.
    pub throttled: u64,
    /// Messages waiting to be received, at the end of the row.
    pub visible: u64,
    /// Messages held by running invocations, at the end of the row.
    pub in_flight: u64,
    /// Messages hidden until a retry's backoff or a visibility timeout ends, at the end of the
    /// row (SQS counts them as not visible, with `in_flight`).
    pub delayed: u64,
    /// Age (since acceptance) of the message at the head of the visible queue, at the end of the
    /// row; 0 when none is visible.
    pub oldest_age_s: f64,
    /// Invocations running, averaged over the row.
    pub concurrency: f64,
    /// Jobs that ended `succeeded` or `failed`.
    pub completed: u64,
    /// Jobs that ended `expired`.
    pub expired: u64,
    /// Jobs that ended `dead_lettered`.
    pub dead_lettered: u64,
    /// Retries: attempts the consumer scheduled again (asynchronous), or requests clients sent
    /// again (synchronous).
    pub retries: u64,
    /// Status requests (each client's polls spread evenly over its waits, so a row may hold a
    /// fraction).
    pub status_requests: f64,
    /// End to end (acceptance to end) of the jobs that ended in the row, as the summary's
    /// `end_to_end` counts them: percentiles by nearest rank, 0 when none ended. For the
    /// synchronous design, from a submission's first request to its client's answer.
    pub e2e_p50_s: f64,
    pub e2e_p99_s: f64,
}

impl Row {
    /// The row with the percentiles of `end_to_end` (µs, the jobs that ended in it), which is
    /// emptied for the next row.
    pub fn with_end_to_end(self, end_to_end: &mut Vec<u64>) -> Self {
        let percentiles = Percentiles::of(end_to_end);
        end_to_end.clear();
        Self {
            e2e_p50_s: percentiles.map_or(0.0, |p| p.p50_s),
            e2e_p99_s: percentiles.map_or(0.0, |p| p.p99_s),
            ..self
        }
    }
}

/// Which design a run simulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Spillway: intake, the queue, the consumer.
    Async,
    /// The job's work done inline, within the request.
    Sync,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Async => "async",
            Self::Sync => "sync",
        }
    }
}

/// A run's results: its summary (a [`Summary`] for the asynchronous design, a [`SyncSummary`]
/// for the synchronous one) and its time series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Results<S = Summary> {
    pub mode: Mode,
    pub summary: S,
    /// The width of each row, in seconds.
    pub sample_s: f64,
    pub series: Vec<Row>,
}

/// The CSV's header line: `mode` first, so that the rows of several runs share one file.
pub const CSV_HEADER: &str = "mode,t_s,arrivals,accepted,rejected,throttled,visible,in_flight,delayed,oldest_age_s,concurrency,completed,expired,dead_lettered,retries,status_requests,e2e_p50_s,e2e_p99_s\n";

impl<S> Results<S> {
    /// The time series as CSV rows, one per sample, without the header ([`CSV_HEADER`]).
    pub fn csv_rows(&self) -> String {
        let mut csv = String::with_capacity(64 * self.series.len());
        let mode = self.mode.as_str();
        for row in &self.series {
            // Writing to a String cannot fail.
            let _ = writeln!(
                csv,
                "{mode},{:.3},{},{},{},{},{},{},{},{:.3},{:.3},{},{},{},{},{:.3},{:.3},{:.3}",
                row.t_s,
                row.arrivals,
                row.accepted,
                row.rejected,
                row.throttled,
                row.visible,
                row.in_flight,
                row.delayed,
                row.oldest_age_s,
                row.concurrency,
                row.completed,
                row.expired,
                row.dead_lettered,
                row.retries,
                row.status_requests,
                row.e2e_p50_s,
                row.e2e_p99_s
            );
        }
        csv
    }
}

/// The runs of one command: the asynchronous design's, the synchronous one's, or both
/// (`--compare`). What `--csv` and `--json` write.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Runs {
    #[serde(rename = "async", skip_serializing_if = "Option::is_none")]
    pub asynchronous: Option<Results>,
    #[serde(rename = "sync", skip_serializing_if = "Option::is_none")]
    pub synchronous: Option<Results<SyncSummary>>,
}

impl Runs {
    /// Every run's time series as one CSV, with a header; the `mode` column tells them apart.
    pub fn to_csv(&self) -> String {
        let mut csv = CSV_HEADER.to_owned();
        if let Some(run) = &self.asynchronous {
            csv.push_str(&run.csv_rows());
        }
        if let Some(run) = &self.synchronous {
            csv.push_str(&run.csv_rows());
        }
        csv
    }

    /// Every run's summary and time series as JSON, keyed by mode (`async`, `sync`).
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(self).map(|json| json + "\n")
    }
}

/// The totals of a run through the synchronous design.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SyncSummary {
    pub seed: u64,
    pub simulated_s: f64,
    /// Workers, accept-queue places and the client's timeout the run had.
    pub pool_size: u32,
    pub queue_size: u32,
    pub client_timeout_s: f64,
    /// Submissions (each a client with one job to do).
    pub arrivals: u64,
    /// Requests sent, retries included, and the retries alone.
    pub requests: u64,
    pub client_retries: u64,
    /// Submissions whose client got a success.
    pub succeeded: u64,
    /// Submissions whose client got a permanent failure, or a `5xx` to its last retry.
    pub failed: u64,
    /// Submissions whose last request timed out: the client never learnt the outcome.
    pub timed_out: u64,
    /// `503`: every worker busy and the accept queue full.
    pub rejected: u64,
    /// `429`: API Gateway's throttle.
    pub throttled: u64,
    /// Submissions whose client was still waiting when the run ended.
    pub unfinished: u64,
    /// Requests a client stopped waiting for (each retry's timeout counts).
    pub request_timeouts: u64,
    /// Requests a worker finished after their client had gone, and their share of the workers'
    /// busy time: work done for nobody.
    pub wasted_requests: u64,
    pub wasted_share: f64,
    /// From a submission's first request to its client's answer, over every answered one.
    pub end_to_end: Option<Percentiles>,
    /// The most workers busy at once, the mean, and the mean over the pool.
    pub peak_busy: u32,
    pub mean_busy: f64,
    pub utilisation: f64,
    /// The most requests waiting for a worker at once, and when.
    pub peak_waiting: u64,
    pub peak_waiting_at_s: f64,
}

/// `n` as a share of `of`, as "  (x.xx % of what)", or nothing when `of` is 0.
fn share_of(n: u64, of: u64, what: &str) -> String {
    if of == 0 {
        return String::new();
    }
    #[allow(clippy::cast_precision_loss)]
    let percent = 100.0 * n as f64 / of as f64;
    format!("  ({percent:.2} % of {what})")
}

/// Percentiles as "p50 … s  p95 … s  p99 … s  max … s", or "none".
fn percentiles(p: Option<&Percentiles>) -> String {
    match p {
        Some(p) => format!(
            "p50 {:.3} s  p95 {:.3} s  p99 {:.3} s  max {:.3} s",
            p.p50_s, p.p95_s, p.p99_s, p.max_s
        ),
        None => "none".to_owned(),
    }
}

impl fmt::Display for SyncSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let share = |n: u64| share_of(n, self.arrivals, "submissions");
        writeln!(
            f,
            "simulated {:.1} s (seed {}), synchronous: {} workers, {} waiting places, clients \
             time out after {:.1} s",
            self.simulated_s, self.seed, self.pool_size, self.queue_size, self.client_timeout_s
        )?;
        writeln!(f)?;
        writeln!(f, "submissions                {:>12}", self.arrivals)?;
        writeln!(
            f,
            "  requests sent            {:>12}  (client retries {})",
            self.requests, self.client_retries
        )?;
        for (label, count) in [
            ("succeeded                ", self.succeeded),
            ("failed                   ", self.failed),
            ("timed out (no answer)    ", self.timed_out),
            ("rejected, pool full (503)", self.rejected),
            ("throttled (429)          ", self.throttled),
        ] {
            writeln!(f, "{label}  {count:>12}{}", share(count))?;
        }
        if self.unfinished > 0 {
            writeln!(
                f,
                "unfinished at the end      {:>12}{}",
                self.unfinished,
                share(self.unfinished)
            )?;
        }
        writeln!(
            f,
            "requests timed out         {:>12}",
            self.request_timeouts
        )?;
        writeln!(
            f,
            "work done for nobody       {:>12}  requests ({:.1} % of the workers' busy time)",
            self.wasted_requests,
            100.0 * self.wasted_share
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "peak waiting for a worker  {:>12}  at {:.1} s",
            self.peak_waiting, self.peak_waiting_at_s
        )?;
        writeln!(
            f,
            "time to an answer          {}",
            percentiles(self.end_to_end.as_ref())
        )?;
        writeln!(
            f,
            "workers busy               peak {} of {}, mean {:.2}, utilisation {:.1} %",
            self.peak_busy,
            self.pool_size,
            self.mean_busy,
            100.0 * self.utilisation
        )
    }
}

/// The two designs side by side on the same arrivals, row by row.
pub fn comparison(asynchronous: &Summary, synchronous: &SyncSummary) -> String {
    let p99 =
        |p: Option<&Percentiles>| p.map_or("none".to_owned(), |p| format!("{:.3} s", p.p99_s));
    let rows = [
        (
            "submissions",
            asynchronous.arrivals.to_string(),
            synchronous.arrivals.to_string(),
        ),
        (
            "got a result (ended, answered)",
            (asynchronous.succeeded + asynchronous.failed).to_string(),
            (synchronous.succeeded + synchronous.failed).to_string(),
        ),
        (
            "succeeded",
            asynchronous.succeeded.to_string(),
            synchronous.succeeded.to_string(),
        ),
        (
            "refused (429, 503)",
            (asynchronous.throttled + asynchronous.rejected_backlog).to_string(),
            (synchronous.throttled + synchronous.rejected).to_string(),
        ),
        (
            "accepted, then no result",
            (asynchronous.expired
                + asynchronous.dead_lettered
                + asynchronous.lost_to_retention
                + asynchronous.stranded_in_dlq)
                .to_string(),
            synchronous.timed_out.to_string(),
        ),
        (
            "p50 time to a result",
            asynchronous
                .end_to_end
                .map_or("none".to_owned(), |p| format!("{:.3} s", p.p50_s)),
            synchronous
                .end_to_end
                .map_or("none".to_owned(), |p| format!("{:.3} s", p.p50_s)),
        ),
        (
            "p99 time to a result",
            p99(asynchronous.end_to_end.as_ref()),
            p99(synchronous.end_to_end.as_ref()),
        ),
        (
            "peak workers busy",
            format!(
                "{} of {}",
                asynchronous.peak_concurrency, asynchronous.maximum_concurrency
            ),
            format!("{} of {}", synchronous.peak_busy, synchronous.pool_size),
        ),
        (
            "work done for nobody",
            "0".to_owned(),
            synchronous.wasted_requests.to_string(),
        ),
    ];
    let mut table = format!("{:<32}{:>16}{:>16}\n", "", "asynchronous", "synchronous");
    for (label, a, s) in rows {
        // Writing to a String cannot fail.
        let _ = writeln!(table, "{label:<32}{a:>16}{s:>16}");
    }
    table
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let share = |n: u64| share_of(n, self.accepted, "accepted");
        writeln!(
            f,
            "simulated {:.1} s (seed {})",
            self.simulated_s, self.seed
        )?;
        writeln!(f)?;
        writeln!(f, "submissions                {:>12}", self.arrivals)?;
        writeln!(f, "  accepted (202)           {:>12}", self.accepted)?;
        writeln!(
            f,
            "  rejected, backlog (503)  {:>12}",
            self.rejected_backlog
        )?;
        writeln!(f, "  throttled (429)          {:>12}", self.throttled)?;
        writeln!(
            f,
            "succeeded                  {:>12}{}",
            self.succeeded,
            share(self.succeeded)
        )?;
        writeln!(
            f,
            "failed                     {:>12}{}",
            self.failed,
            share(self.failed)
        )?;
        writeln!(
            f,
            "expired                    {:>12}{}",
            self.expired,
            share(self.expired)
        )?;
        writeln!(
            f,
            "dead-lettered              {:>12}{}",
            self.dead_lettered,
            share(self.dead_lettered)
        )?;
        for (label, count) in [
            ("lost to retention        ", self.lost_to_retention),
            ("stranded in the DLQ      ", self.stranded_in_dlq),
            ("unfinished at the end    ", self.unfinished),
        ] {
            if count > 0 {
                writeln!(f, "{label}  {count:>12}{}", share(count))?;
            }
        }
        writeln!(
            f,
            "attempts                   {:>12}  (retries {}, cut by the timeout {})",
            self.attempts, self.retries, self.timed_out
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "peak visible messages      {:>12}  at {:.1} s",
            self.peak_visible, self.peak_visible_at_s
        )?;
        match (self.last_spike_end_s, self.drained_after_spike_s) {
            (Some(end), Some(drain)) => writeln!(
                f,
                "drained after the spike    {drain:>12.1} s  (the last spike ended at {end:.1} s)"
            )?,
            (Some(end), None) => writeln!(
                f,
                "drained after the spike    {:>12}  (the last spike ended at {end:.1} s)",
                "never"
            )?,
            (None, _) => {}
        }
        writeln!(
            f,
            "queue wait                 {}  ({:.1} % waited over 1 ms)",
            percentiles(self.queue_wait.as_ref()),
            100.0 * self.waited_share
        )?;
        writeln!(
            f,
            "end to end                 {}",
            percentiles(self.end_to_end.as_ref())
        )?;
        writeln!(
            f,
            "consumer concurrency       peak {} of {}, mean {:.2}, utilisation {:.1} %",
            self.peak_concurrency,
            self.maximum_concurrency,
            self.mean_concurrency,
            100.0 * self.utilisation
        )?;
        writeln!(
            f,
            "status requests            {} ({:.1}/s mean, {:.1}/s peak at {:.1} s)",
            self.status_requests,
            self.status_per_s_mean,
            self.status_per_s_peak,
            self.status_per_s_peak_at_s
        )?;
        if self.status_rows_over_throttle > 0 {
            writeln!(
                f,
                "  over the status route's throttle ({}/s) in {} rows of the time series",
                self.status_throttle_per_s, self.status_rows_over_throttle
            )?;
        }
        let cost = &self.cost;
        writeln!(
            f,
            "cost on AWS                ${:.2} per million jobs (Lambda {:.2}, SQS {:.2}, DynamoDB {:.2}, API Gateway {:.2}); ${:.2} for this run",
            cost.per_million_jobs_usd,
            1e6 * cost.lambda_usd / self.accepted.max(1) as f64,
            1e6 * cost.sqs_usd / self.accepted.max(1) as f64,
            1e6 * cost.dynamodb_usd / self.accepted.max(1) as f64,
            1e6 * cost.api_gateway_usd / self.accepted.max(1) as f64,
            cost.total_usd
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        // 1..=100 ms: the p50 is the 50th value, the p95 the 95th, the p99 the 99th.
        let mut micros: Vec<u64> = (1..=100).rev().map(|ms| ms * 1000).collect();
        let p = Percentiles::of(&mut micros).unwrap();
        assert_eq!(
            (p.count, p.p50_s, p.p95_s, p.p99_s, p.max_s),
            (100, 0.050, 0.095, 0.099, 0.100)
        );
        assert_eq!(Percentiles::of(&mut []), None);
    }
}
