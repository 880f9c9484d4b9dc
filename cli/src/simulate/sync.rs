//! The same traffic through a synchronous design, for comparison (`--mode sync`, `--compare`):
//! an endpoint that does each job's work inline, each request holding one of a pool of workers
//! (threads, connections) for its whole processing time.
//!
//! - Submissions arrive exactly as in the asynchronous run of the same scenario and seed (the
//!   arrivals draw from a generator of their own), and pass API Gateway's throttle the same way.
//! - A request takes a free worker, or waits in the accept queue (`sync.queue_size`), or is
//!   refused (`503`) when both are full. Workers serve the accept queue in order.
//! - A worker runs the job's processing (the scenario's time distribution and failure
//!   probabilities). A client waits `sync.client_timeout_s` for its answer, then gives up on the
//!   request; the server does not know, so the worker keeps it to the end (or the request still
//!   takes a worker when its turn comes): wasted work, which is the cascade.
//! - A client whose request timed out or got a `5xx` (a retryable failure) sends it again after
//!   `sync.retry_delay_s`, doubled before each next retry, up to `sync.client_retries` times;
//!   a `503` or a `429` ends the submission, as it does in the asynchronous run (whose clients
//!   do not retry them either), and so does a permanent failure.
//!
//! Not modelled: the connection's own limits and TCP back-pressure, keep-alive, a server-side
//! timeout (the processing runs to its end), and cancellation on disconnect.

use std::collections::VecDeque;

use fastrand::Rng;

use super::arrivals::{ArrivalClock, TokenBucket, generators};
use super::dist::{seconds_to_micros, to_seconds};
use super::engine::Agenda;
use super::report::{Mode, Percentiles, Results, Row, SyncSummary};
use super::scenario::Scenario;
use super::series::Sampler;

/// Runs `scenario`'s traffic through the synchronous design with `seed`.
pub fn run(scenario: &Scenario, seed: u64) -> Results<SyncSummary> {
    Gateway::new(scenario, seed).run()
}

/// Where a submission's client stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    /// Waiting for the answer to its current request.
    Waiting,
    /// Waiting to send its request again.
    Retrying,
    Succeeded,
    /// A permanent failure, or a `5xx` after its last retry.
    Failed,
    /// Its last request timed out.
    TimedOut,
    /// `503`: every worker busy and the accept queue full.
    Rejected,
    /// `429`.
    Throttled,
}

/// One submission.
#[derive(Debug, Clone, Copy)]
struct Submission {
    arrived: u64,
    /// Requests sent so far; the current one's number.
    requests: u16,
    client: Client,
    answered: u64,
}

/// The answer a worker produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Ok,
    /// A permanent failure (`4xx`).
    Permanent,
    /// A retryable failure (`5xx`).
    Retryable,
}

/// A request: which submission, and which of its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Request {
    submission: u32,
    number: u16,
}

#[derive(Debug, Clone, Copy)]
enum Action {
    Arrival,
    /// A client sends its request again.
    Retry {
        submission: u32,
    },
    /// A worker finishes a request that it worked on for `busy` µs.
    Done {
        request: Request,
        answer: Answer,
        busy: u64,
    },
    /// A client stops waiting for a request.
    Timeout {
        request: Request,
    },
}

#[derive(Debug, Default)]
struct Totals {
    requests: u64,
    retries: u64,
    request_timeouts: u64,
    wasted_requests: u64,
    /// Worker-µs spent on requests whose client had gone.
    wasted_busy: u64,
    peak_busy: u32,
    peak_waiting: u64,
    peak_waiting_at: u64,
}

struct Gateway<'a> {
    scenario: &'a Scenario,
    seed: u64,
    rng: Rng,
    arrival_rng: Rng,
    agenda: Agenda<Action>,
    now: u64,
    submissions: Vec<Submission>,
    /// Requests waiting for a worker, with when each joined.
    waiting: VecDeque<(Request, u64)>,
    busy: u32,
    /// Clients waiting to retry.
    retrying: u64,
    arrivals: ArrivalClock,
    arrivals_done: bool,
    throttle: TokenBucket,
    totals: Totals,
    rows: Vec<Row>,
    row: Row,
    sampler: Sampler,
    /// From first request to answer (µs) of each submission answered in the row being filled.
    row_end_to_end: Vec<u64>,
}

impl<'a> Gateway<'a> {
    fn new(scenario: &'a Scenario, seed: u64) -> Self {
        let (arrival_rng, rng) = generators(seed);
        Self {
            scenario,
            seed,
            rng,
            arrival_rng,
            agenda: Agenda::new(),
            now: 0,
            submissions: Vec::new(),
            waiting: VecDeque::new(),
            busy: 0,
            retrying: 0,
            arrivals: ArrivalClock::new(scenario),
            arrivals_done: false,
            throttle: TokenBucket::new(scenario.intake.throttle),
            totals: Totals::default(),
            rows: Vec::new(),
            row: Row::default(),
            sampler: Sampler::new(scenario.sample),
            row_end_to_end: Vec::new(),
        }
    }

    fn run(mut self) -> Results<SyncSummary> {
        self.schedule_next_arrival();
        let horizon = self.scenario.duration + self.scenario.drain_limit;
        let at_least = self.scenario.duration;
        let end = loop {
            let Some((at, action)) = self.agenda.next() else {
                break self.now.max(at_least);
            };
            if at > horizon {
                break horizon;
            }
            self.advance(at);
            match action {
                Action::Arrival => {
                    self.arrive();
                    self.schedule_next_arrival();
                }
                Action::Retry { submission } => {
                    self.retrying -= 1;
                    self.totals.retries += 1;
                    self.row.retries += 1;
                    self.send(submission);
                }
                Action::Done {
                    request,
                    answer,
                    busy,
                } => self.done(request, answer, busy),
                Action::Timeout { request } => self.timeout(request),
            }
        };
        self.finish(end)
    }

    fn schedule_next_arrival(&mut self) {
        match self.arrivals.next(&mut self.arrival_rng) {
            Some(at) => self.agenda.schedule(seconds_to_micros(at), Action::Arrival),
            None => self.arrivals_done = true,
        }
    }

    fn advance(&mut self, at: u64) {
        for busy in self.sampler.advance(at, self.busy) {
            self.close_row(self.scenario.sample, busy);
        }
        self.now = at;
    }

    /// Ends the current row, `length` µs long, with the gateway as it stands.
    fn close_row(&mut self, length: u64, busy: f64) {
        let start = self.rows.len() as u64 * self.scenario.sample;
        let oldest = self
            .waiting
            .front()
            .map_or(0, |&(_, since)| (start + length).saturating_sub(since));
        let row = Row {
            t_s: to_seconds(start),
            visible: self.waiting.len() as u64,
            in_flight: u64::from(self.busy),
            delayed: self.retrying,
            oldest_age_s: to_seconds(oldest),
            concurrency: busy,
            ..std::mem::take(&mut self.row)
        }
        .with_end_to_end(&mut self.row_end_to_end);
        self.rows.push(row);
    }

    /// A new submission: its client sends its first request.
    fn arrive(&mut self) {
        self.row.arrivals += 1;
        let Ok(id) = u32::try_from(self.submissions.len()) else {
            return;
        };
        self.submissions.push(Submission {
            arrived: self.now,
            requests: 0,
            client: Client::Waiting,
            answered: 0,
        });
        self.send(id);
    }

    /// A client sends a request: throttled, refused, queued or taken by a worker.
    fn send(&mut self, id: u32) {
        self.totals.requests += 1;
        let submission = &mut self.submissions[id as usize];
        submission.requests += 1;
        let request = Request {
            submission: id,
            number: submission.requests,
        };
        if !self.throttle.admit(self.now) {
            self.row.throttled += 1;
            self.end(id, Client::Throttled);
            return;
        }
        let gateway = self.scenario.sync;
        if self.busy < gateway.pool_size {
            self.start(request);
        } else if self.waiting.len() < gateway.queue_size as usize {
            self.waiting.push_back((request, self.now));
            if self.waiting.len() as u64 > self.totals.peak_waiting {
                self.totals.peak_waiting = self.waiting.len() as u64;
                self.totals.peak_waiting_at = self.now;
            }
        } else {
            self.row.rejected += 1;
            self.end(id, Client::Rejected);
            return;
        }
        self.row.accepted += 1;
        self.submissions[id as usize].client = Client::Waiting;
        self.agenda.schedule(
            self.now + gateway.client_timeout,
            Action::Timeout { request },
        );
    }

    /// A worker takes `request` and works on it to the end.
    fn start(&mut self, request: Request) {
        self.busy += 1;
        self.totals.peak_busy = self.totals.peak_busy.max(self.busy);
        let processing = &self.scenario.processing;
        let busy = processing.time.sample(&mut self.rng);
        let draw = self.rng.f64();
        let answer = if draw < processing.permanent {
            Answer::Permanent
        } else if draw < processing.permanent + processing.retryable {
            Answer::Retryable
        } else {
            Answer::Ok
        };
        self.agenda.schedule(
            self.now + busy,
            Action::Done {
                request,
                answer,
                busy,
            },
        );
    }

    /// Whether `request` is the one its client is still waiting for.
    fn awaited(&self, request: Request) -> bool {
        let submission = &self.submissions[request.submission as usize];
        submission.client == Client::Waiting && submission.requests == request.number
    }

    fn done(&mut self, request: Request, answer: Answer, busy: u64) {
        self.busy -= 1;
        if self.awaited(request) {
            match answer {
                Answer::Ok => self.end(request.submission, Client::Succeeded),
                Answer::Permanent => self.end(request.submission, Client::Failed),
                Answer::Retryable => self.retry_or(request.submission, Client::Failed),
            }
        } else {
            self.totals.wasted_requests += 1;
            self.totals.wasted_busy += busy;
        }
        if let Some((next, _)) = self.waiting.pop_front() {
            self.start(next);
        }
    }

    fn timeout(&mut self, request: Request) {
        if !self.awaited(request) {
            return;
        }
        self.totals.request_timeouts += 1;
        self.row.expired += 1;
        self.retry_or(request.submission, Client::TimedOut);
    }

    /// The client retries after its delay, or, out of retries, ends as `otherwise`.
    fn retry_or(&mut self, id: u32, otherwise: Client) {
        let gateway = self.scenario.sync;
        let sent = u32::from(self.submissions[id as usize].requests);
        if sent > gateway.client_retries {
            self.end(id, otherwise);
            return;
        }
        self.submissions[id as usize].client = Client::Retrying;
        self.retrying += 1;
        let delay = gateway.retry_delay.saturating_mul(1 << (sent - 1).min(30));
        self.agenda
            .schedule(self.now + delay, Action::Retry { submission: id });
    }

    fn end(&mut self, id: u32, client: Client) {
        let submission = &mut self.submissions[id as usize];
        submission.client = client;
        submission.answered = self.now;
        if matches!(client, Client::Succeeded | Client::Failed) {
            self.row.completed += 1;
            self.row_end_to_end.push(self.now - submission.arrived);
        }
    }

    fn finish(mut self, end: u64) -> Results<SyncSummary> {
        self.advance(end);
        let sample = self.scenario.sample;
        if let Some((length, mean)) = self.sampler.last_row(end, self.rows.len()) {
            self.close_row(length, mean);
        }
        let mut counts = [0_u64; 7];
        let mut latencies = Vec::with_capacity(self.submissions.len());
        for submission in &self.submissions {
            counts[submission.client as usize] += 1;
            if matches!(submission.client, Client::Succeeded | Client::Failed) {
                latencies.push(submission.answered - submission.arrived);
            }
        }
        let gateway = self.scenario.sync;
        let totals = &self.totals;
        let busy_area = self.sampler.total_area();
        #[allow(clippy::cast_precision_loss)]
        let per_run = |value: u64| {
            if end == 0 {
                0.0
            } else {
                value as f64 / end as f64
            }
        };
        #[allow(clippy::cast_precision_loss)]
        let summary = SyncSummary {
            seed: self.seed,
            simulated_s: to_seconds(end),
            pool_size: gateway.pool_size,
            queue_size: gateway.queue_size,
            client_timeout_s: to_seconds(gateway.client_timeout),
            arrivals: self.submissions.len() as u64,
            requests: totals.requests,
            client_retries: totals.retries,
            succeeded: counts[Client::Succeeded as usize],
            failed: counts[Client::Failed as usize],
            timed_out: counts[Client::TimedOut as usize],
            rejected: counts[Client::Rejected as usize],
            throttled: counts[Client::Throttled as usize],
            unfinished: counts[Client::Waiting as usize] + counts[Client::Retrying as usize],
            request_timeouts: totals.request_timeouts,
            wasted_requests: totals.wasted_requests,
            wasted_share: if busy_area == 0 {
                0.0
            } else {
                totals.wasted_busy as f64 / busy_area as f64
            },
            end_to_end: Percentiles::of(&mut latencies),
            peak_busy: totals.peak_busy,
            mean_busy: per_run(busy_area),
            utilisation: per_run(busy_area) / f64::from(gateway.pool_size),
            peak_waiting: totals.peak_waiting,
            peak_waiting_at_s: to_seconds(totals.peak_waiting_at),
        };
        Results {
            mode: Mode::Sync,
            summary,
            sample_s: to_seconds(sample),
            series: self.rows,
        }
    }
}

#[cfg(test)]
mod tests;
