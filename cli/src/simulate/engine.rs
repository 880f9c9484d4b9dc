//! The discrete-event simulation of a Spillway deployment: API Gateway's throttle and intake's
//! backlog check, the SQS queue, Lambda's event source mapping, the consumer with Spillway's
//! retry rules, and clients polling for their jobs.
//!
//! Time is whole microseconds from the start of the run. Events wait in one binary heap ordered
//! by (time, sequence number), so events at the same instant run in the order they were
//! scheduled, and every draw comes from one seeded generator: a run is a function of its
//! scenario and seed. Jobs live in a `Vec` indexed by `u32`; the visible queue is a `VecDeque` of
//! those indices, and a message hidden by a backoff or a visibility timeout is one pending event.
//!
//! What is modelled as Spillway does it:
//! - intake answers `429` when API Gateway's token bucket is empty, then `503` when the queue
//!   holds more visible messages than `BacklogLimit` (SQS's `ApproximateNumberOfMessages` plus
//!   its delayed count, which is 0 for Spillway, whose retries hide messages with
//!   `ChangeMessageVisibility`, not with a delay);
//! - a receive counts toward `maxReceiveCount`; a message already received that many times is
//!   moved to the DLQ instead of delivered; a message older than the retention is deleted;
//! - the mapping starts `initial_concurrency` concurrent invocations and adds one every
//!   `60 / scale_up_per_minute` seconds while messages wait and every invocation is busy, up to
//!   `MaximumConcurrency`; each invocation takes up to `batch_size` visible messages (waiting up to
//!   the batching window for a full batch), runs `record_concurrency` records at once, and lasts
//!   until its slowest record ends;
//! - each record, when it starts: a job already `dead_lettered` (its message visible again at
//!   once, as the consumer leaves it) is passed over; a job past its deadline is `expired`; a
//!   record with less than the consumer's 1 s wrap-up left in the invocation is reported failed
//!   and comes back after the visibility timeout; otherwise an attempt is claimed and runs. An
//!   attempt still running 1 s before the invocation's timeout is stopped and counts as a
//!   retryable failure, as the consumer stops it. A retryable failure below `max_attempts` hides
//!   the message for [`backoff_drawn`] (the consumer's own function); at `max_attempts` the job is
//!   `dead_lettered` and its message visible at once until SQS moves it to the DLQ.
//!
//! Simplifications, each a bound on what the figures mean:
//! - intake sees the exact queue depth; Spillway's intake reads it at most every 5 s per instance
//!   and SQS's counts lag, so real rejections start a little later and overshoot the limit;
//! - the mapping never scales down within a run (AWS does not document how fast it does), so a
//!   second spike finds the concurrency the first one left;
//! - messages are received in the order they became visible (SQS standard queues only roughly
//!   do), and at most one batch is gathered at a time;
//! - a job expires only when the consumer receives it past its deadline; the status function
//!   also expires it when a client reads it then, which changes when its client learns of it,
//!   not the queue;
//! - no invocation overhead, cold start or store latency: fold them into the processing time.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};

use fastrand::Rng;
use spillway_core::consumer::{WRAP_UP, backoff_drawn};

use super::arrivals::{ArrivalClock, TokenBucket, generators};
use super::cost::{Usage, cost};
use super::dist::to_seconds;
use super::report::{Mode, Percentiles, Results, Row, Summary};
use super::scenario::{Polling, Scenario};
use super::series::Sampler;

/// A first receive later than this after acceptance counts as having waited.
const WAITED_MICROS: u64 = 1_000;
/// Microseconds per second.
const SECOND: u64 = 1_000_000;
/// Never happened.
const NEVER: u64 = u64::MAX;

/// Runs `scenario` with `seed` and returns what it found.
pub fn run(scenario: &Scenario, seed: u64) -> Results {
    Simulation::new(scenario, seed).run()
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Accepted and not finished: visible, in flight or waiting out a backoff.
    Pending,
    Succeeded,
    Failed,
    Expired,
    DeadLettered,
    /// Its message was deleted at the end of the queue's retention.
    Lost,
    /// Its message reached the DLQ by `maxReceiveCount` while it was not finished.
    Stranded,
}

/// One accepted job and its message.
#[derive(Debug, Clone, Copy)]
struct Job {
    accepted: u64,
    first_receive: u64,
    ended: u64,
    attempts: u16,
    receives: u16,
    state: State,
}

/// What came of one record of a batch, decided when it starts and applied when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Record {
    Succeeded,
    Failed,
    Expired,
    /// A retryable failure below `max_attempts`: the message is hidden for `delay` µs.
    Retry {
        delay: u64,
        timed_out: bool,
    },
    /// A retryable failure on the last attempt: the message is visible again at once.
    DeadLettered {
        timed_out: bool,
    },
    /// Nothing ran: the message is hidden for `delay` µs (0 for a job already dead-lettered,
    /// the rest of the visibility timeout for a record the invocation had no time for).
    Returned {
        delay: u64,
    },
}

impl Record {
    /// Whether the message is deleted when the invocation ends.
    fn deletes(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Expired)
    }
}

#[derive(Debug, Clone, Copy)]
enum Action {
    /// The next submission.
    Arrival,
    /// A record ends.
    RecordDone { job: u32, record: Record },
    /// An invocation returns; `deletes` of its messages are deleted.
    InvocationEnd { deletes: u32 },
    /// A hidden message becomes visible.
    Reappear { job: u32 },
    /// The mapping may add a concurrent invocation.
    ScaleTick,
    /// The batching window of the batch being gathered ends.
    GatherEnd,
}

/// The actions due, earliest first; among actions due at the same instant, the one scheduled
/// first runs first.
#[derive(Debug)]
pub struct Agenda<A> {
    events: BinaryHeap<Event<A>>,
    seq: u64,
}

impl<A> Agenda<A> {
    pub fn new() -> Self {
        Self {
            events: BinaryHeap::new(),
            seq: 0,
        }
    }

    /// Schedules `action` at `at` (µs).
    pub fn schedule(&mut self, at: u64, action: A) {
        self.seq += 1;
        self.events.push(Event {
            at,
            seq: self.seq,
            action,
        });
    }

    /// The next action and when it is due.
    pub fn next(&mut self) -> Option<(u64, A)> {
        self.events.pop().map(|event| (event.at, event.action))
    }
}

/// An action due at an instant, with its place in the order of scheduling.
#[derive(Debug, Clone, Copy)]
struct Event<A> {
    at: u64,
    seq: u64,
    action: A,
}

impl<A> PartialEq for Event<A> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl<A> Eq for Event<A> {}

impl<A> PartialOrd for Event<A> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<A> Ord for Event<A> {
    /// Reversed, so that `BinaryHeap` (a max-heap) pops the earliest event first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// The counters of the summary that the engine keeps as it goes.
#[derive(Debug, Default)]
struct Totals {
    arrivals: u64,
    rejected_backlog: u64,
    throttled: u64,
    attempts: u64,
    retries: u64,
    timed_out: u64,
    peak_visible: u64,
    peak_visible_at: u64,
    peak_concurrency: u32,
    invocations: u64,
    status_requests: u64,
    /// Time status invocations were held by long polls (µs).
    status_held_micros: u64,
}

/// Status requests per row, as each client's polls are known (when its job ends): counts added
/// to rows, and a difference array for runs of whole rows.
#[derive(Debug, Default)]
struct Polls {
    per_row: Vec<f64>,
    difference: Vec<f64>,
}

impl Polls {
    fn grow(&mut self, row: usize) {
        if self.per_row.len() <= row {
            self.per_row.resize(row + 1, 0.0);
            self.difference.resize(row + 2, 0.0);
        }
    }

    /// Adds `mass` requests spread evenly over `[from, to)` µs.
    fn spread(&mut self, from: u64, to: u64, mass: f64, sample: u64) {
        let first = usize::try_from(from / sample).unwrap_or(usize::MAX);
        if to <= from {
            self.grow(first);
            self.per_row[first] += mass;
            return;
        }
        let last = usize::try_from((to - 1) / sample).unwrap_or(usize::MAX);
        self.grow(last);
        if first == last {
            self.per_row[first] += mass;
            return;
        }
        #[allow(clippy::cast_precision_loss)]
        let per_micro = mass / (to - from) as f64;
        let row_start = |row: usize| row as u64 * sample;
        #[allow(clippy::cast_precision_loss)]
        {
            self.per_row[first] += per_micro * (row_start(first + 1) - from) as f64;
            self.per_row[last] += per_micro * (to - row_start(last)) as f64;
            if last > first + 1 {
                let whole = per_micro * sample as f64;
                self.difference[first + 1] += whole;
                self.difference[last] -= whole;
            }
        }
    }

    /// The requests in each of `rows` rows; those made after the last row (a client's last
    /// poll, after the run ended) are counted in the last row.
    fn rows(mut self, rows: usize) -> Vec<f64> {
        self.grow(rows);
        let mut running = 0.0;
        for (row, count) in self.per_row.iter_mut().enumerate() {
            running += self.difference[row];
            *count += running;
        }
        let after: f64 = self.per_row.iter().skip(rows).sum();
        self.per_row.truncate(rows);
        if let Some(last) = self.per_row.last_mut() {
            *last += after;
        }
        self.per_row
    }
}

struct Simulation<'a> {
    scenario: &'a Scenario,
    seed: u64,
    /// Draws everything but the arrivals, which draw from `arrival_rng`.
    rng: Rng,
    arrival_rng: Rng,
    agenda: Agenda<Action>,
    now: u64,
    jobs: Vec<Job>,
    visible: VecDeque<u32>,
    in_flight: u64,
    delayed: u64,
    /// Invocations running, and how many the mapping may run now.
    busy: u32,
    level: u32,
    /// When the batch being gathered must be invoked, full or not.
    gather_until: Option<u64>,
    arrivals: ArrivalClock,
    arrivals_done: bool,
    throttle: TokenBucket,
    /// When each record slot of the invocation being started is free (reused).
    slots: Vec<u64>,
    totals: Totals,
    polls: Polls,
    /// The rows closed, the row being filled, and the invocations' busy time.
    rows: Vec<Row>,
    row: Row,
    sampler: Sampler,
    /// End to end (µs) of each job that ended in the row being filled.
    row_end_to_end: Vec<u64>,
    last_spike_end: Option<u64>,
    drained_at: Option<u64>,
}

impl<'a> Simulation<'a> {
    fn new(scenario: &'a Scenario, seed: u64) -> Self {
        let (arrival_rng, rng) = generators(seed);
        Self {
            scenario,
            seed,
            rng,
            arrival_rng,
            agenda: Agenda::new(),
            now: 0,
            jobs: Vec::new(),
            visible: VecDeque::new(),
            in_flight: 0,
            delayed: 0,
            busy: 0,
            level: scenario.consumer.initial_concurrency,
            gather_until: None,
            arrivals: ArrivalClock::new(scenario),
            arrivals_done: false,
            throttle: TokenBucket::new(scenario.intake.throttle),
            slots: Vec::new(),
            totals: Totals::default(),
            polls: Polls::default(),
            rows: Vec::new(),
            row: Row::default(),
            sampler: Sampler::new(scenario.sample),
            row_end_to_end: Vec::new(),
            last_spike_end: scenario
                .arrivals
                .spikes
                .last()
                .filter(|_| !scenario.arrivals.curve)
                .map(|s| s.end()),
            drained_at: None,
        }
    }

    fn run(mut self) -> Results {
        self.schedule_next_arrival();
        self.schedule_scale_tick();
        let horizon = self.scenario.duration + self.scenario.drain_limit;
        // The run lasts at least as long as the arrivals, even when the last one comes early.
        let at_least = self.scenario.duration;
        let end = loop {
            let Some((at, action)) = self.agenda.next() else {
                break self.now.max(at_least);
            };
            if at > horizon {
                break horizon;
            }
            if let Some(spike_end) = self.last_spike_end
                && self.drained_at.is_none()
                && at >= spike_end
                && self.visible.is_empty()
            {
                // Nothing was visible since the last event, which came before the spike ended.
                self.drained_at = Some(spike_end.max(self.now));
            }
            self.advance(at);
            self.handle(action);
            if self.visible.len() as u64 > self.totals.peak_visible {
                self.totals.peak_visible = self.visible.len() as u64;
                self.totals.peak_visible_at = self.now;
            }
            if let Some(spike_end) = self.last_spike_end
                && self.drained_at.is_none()
                && self.now >= spike_end
                && self.visible.is_empty()
            {
                self.drained_at = Some(self.now);
            }
            if self.arrivals_done
                && self.visible.is_empty()
                && self.in_flight == 0
                && self.delayed == 0
            {
                break self.now.max(at_least);
            }
        };
        self.finish(end)
    }

    fn handle(&mut self, action: Action) {
        match action {
            Action::Arrival => {
                self.arrive();
                self.schedule_next_arrival();
            }
            Action::RecordDone { job, record } => self.record_done(job, record),
            Action::InvocationEnd { deletes } => {
                self.in_flight -= u64::from(deletes);
                self.busy -= 1;
                self.dispatch();
            }
            Action::Reappear { job } => {
                self.delayed -= 1;
                self.visible.push_back(job);
                self.dispatch();
            }
            Action::ScaleTick => {
                if !self.visible.is_empty() && self.busy >= self.level {
                    self.level += 1;
                    self.dispatch();
                }
                self.schedule_scale_tick();
            }
            Action::GatherEnd => {
                if self.gather_until == Some(self.now) {
                    self.dispatch();
                }
            }
        }
    }

    fn schedule_next_arrival(&mut self) {
        match self.arrivals.next(&mut self.arrival_rng) {
            Some(at) => self
                .agenda
                .schedule(super::dist::seconds_to_micros(at), Action::Arrival),
            None => self.arrivals_done = true,
        }
    }

    fn schedule_scale_tick(&mut self) {
        let scenario = self.scenario;
        let consumer = &scenario.consumer;
        if self.level < consumer.maximum_concurrency {
            let every = 60 * SECOND / u64::from(consumer.scale_up_per_minute);
            self.agenda.schedule(self.now + every, Action::ScaleTick);
        }
    }

    /// Brings the row and the busy-time integrals up to `at`, closing every row that ends by then.
    fn advance(&mut self, at: u64) {
        for concurrency in self.sampler.advance(at, self.busy) {
            self.close_row(self.scenario.sample, concurrency);
        }
        self.now = at;
    }

    /// Ends the current row, `length` µs long and `concurrency` invocations busy on average,
    /// with the queue as it stands.
    fn close_row(&mut self, length: u64, concurrency: f64) {
        let start = self.rows.len() as u64 * self.scenario.sample;
        let end = start + length;
        let oldest = self.visible.front().map_or(0, |&job| {
            end.saturating_sub(self.jobs[job as usize].accepted)
        });
        let row = Row {
            t_s: to_seconds(start),
            visible: self.visible.len() as u64,
            in_flight: self.in_flight,
            delayed: self.delayed,
            oldest_age_s: to_seconds(oldest),
            concurrency,
            ..std::mem::take(&mut self.row)
        }
        .with_end_to_end(&mut self.row_end_to_end);
        self.rows.push(row);
    }

    /// A submission: API Gateway's throttle, intake's backlog check, then the job is accepted
    /// and its message sent.
    fn arrive(&mut self) {
        self.totals.arrivals += 1;
        self.row.arrivals += 1;
        if !self.throttle.admit(self.now) {
            self.totals.throttled += 1;
            self.row.throttled += 1;
            return;
        }
        let limit = self.scenario.intake.backlog_limit;
        if limit > 0 && self.visible.len() as u64 > limit {
            self.totals.rejected_backlog += 1;
            self.row.rejected += 1;
            return;
        }
        let Ok(id) = u32::try_from(self.jobs.len()) else {
            // The scenario's validation keeps runs far below this.
            self.totals.rejected_backlog += 1;
            self.row.rejected += 1;
            return;
        };
        self.jobs.push(Job {
            accepted: self.now,
            first_receive: NEVER,
            ended: NEVER,
            attempts: 0,
            receives: 0,
            state: State::Pending,
        });
        self.row.accepted += 1;
        self.visible.push_back(id);
        self.dispatch();
    }

    /// Starts invocations while the mapping has concurrency to spare and messages are visible.
    fn dispatch(&mut self) {
        let scenario = self.scenario;
        let consumer = &scenario.consumer;
        while self.busy < self.level && !self.visible.is_empty() {
            if self.visible.len() < consumer.batch_size as usize && consumer.batching_window > 0 {
                match self.gather_until {
                    None => {
                        let until = self.now + consumer.batching_window;
                        self.gather_until = Some(until);
                        self.agenda.schedule(until, Action::GatherEnd);
                        return;
                    }
                    Some(until) if until > self.now => return,
                    Some(_) => {}
                }
            }
            self.gather_until = None;
            self.invoke();
        }
    }

    /// One invocation: receives up to a batch of visible messages and decides each record.
    fn invoke(&mut self) {
        let scenario = self.scenario;
        let consumer = &scenario.consumer;
        let now = self.now;
        let wrap_up = u64::try_from(WRAP_UP.as_micros()).unwrap_or(u64::MAX);
        let stop_at = (now + consumer.timeout).saturating_sub(wrap_up);
        let batch = consumer.batch_size as usize;
        // Records beyond the consumer's concurrency wait for a free slot.
        let queued_records = (consumer.record_concurrency as usize) < batch;
        if queued_records {
            self.slots.clear();
            self.slots.resize(consumer.record_concurrency as usize, now);
        }
        let mut records = 0;
        let mut deletes = 0;
        let mut end = now;
        while records < batch {
            let Some(id) = self.visible.pop_front() else {
                break;
            };
            if !self.receive(id) {
                continue;
            }
            records += 1;
            self.in_flight += 1;
            let slot = if queued_records {
                self.slots
                    .iter()
                    .enumerate()
                    .min_by_key(|&(i, &free)| (free, i))
                    .map(|(i, _)| i)
            } else {
                None
            };
            let start = slot.map_or(now, |i| self.slots[i]);
            let (done, record) = self.start_record(id, start, stop_at);
            if let Some(i) = slot {
                self.slots[i] = done;
            }
            if record.deletes() {
                deletes += 1;
            }
            end = end.max(done);
            self.agenda
                .schedule(done, Action::RecordDone { job: id, record });
        }
        if records == 0 {
            return;
        }
        self.busy += 1;
        self.totals.invocations += 1;
        self.totals.peak_concurrency = self.totals.peak_concurrency.max(self.busy);
        self.agenda.schedule(end, Action::InvocationEnd { deletes });
    }

    /// SQS's side of a receive: `false` when the message is deleted (past its retention) or
    /// moved to the DLQ (received `maxReceiveCount` times already) instead of delivered.
    fn receive(&mut self, id: u32) -> bool {
        let now = self.now;
        let queue = self.scenario.queue;
        let job = &mut self.jobs[id as usize];
        if now - job.accepted >= queue.retention {
            if job.state == State::Pending {
                job.state = State::Lost;
                job.ended = now;
            }
            return false;
        }
        if u32::from(job.receives) >= queue.max_receive_count {
            if job.state == State::Pending {
                job.state = State::Stranded;
                job.ended = now;
            }
            return false;
        }
        job.receives += 1;
        if job.first_receive == NEVER {
            job.first_receive = now;
        }
        true
    }

    /// The consumer's side of one record starting at `start`: when it ends and what came of it.
    fn start_record(&mut self, id: u32, start: u64, stop_at: u64) -> (u64, Record) {
        let scenario = self.scenario;
        let job = self.jobs[id as usize];
        match job.state {
            State::Pending => {}
            // Left visible by the consumer until SQS moves it to the DLQ.
            State::DeadLettered => return (start, Record::Returned { delay: 0 }),
            // Messages of other finished jobs are deleted when they finish.
            _ => return (start, Record::Expired),
        }
        if start > job.accepted + scenario.intake.ttl {
            return (start, Record::Expired);
        }
        if start >= stop_at {
            // No time left: reported failed without running; back after the visibility timeout,
            // counted from this invocation's receive.
            let back = self.now + scenario.queue.visibility_timeout;
            return (
                start,
                Record::Returned {
                    delay: back.saturating_sub(start),
                },
            );
        }
        let attempt = job.attempts + 1;
        self.jobs[id as usize].attempts = attempt;
        self.totals.attempts += 1;
        let processing = &scenario.processing;
        let duration = processing.time.sample(&mut self.rng);
        let draw = self.rng.f64();
        let timed_out = start + duration > stop_at;
        let done = if timed_out { stop_at } else { start + duration };
        if !timed_out {
            if draw < processing.permanent {
                return (done, Record::Failed);
            }
            if draw >= processing.permanent + processing.retryable {
                return (done, Record::Succeeded);
            }
        }
        let settings = &scenario.consumer.settings;
        if u32::from(attempt) >= settings.max_attempts {
            return (done, Record::DeadLettered { timed_out });
        }
        let rng = &mut self.rng;
        let delay = backoff_drawn(settings, u32::from(attempt), None, |ceiling| {
            rng.u64(0..=ceiling)
        });
        (
            done,
            Record::Retry {
                delay: u64::try_from(delay.as_micros()).unwrap_or(u64::MAX),
                timed_out,
            },
        )
    }

    fn record_done(&mut self, id: u32, record: Record) {
        match record {
            Record::Succeeded => self.end_job(id, State::Succeeded),
            Record::Failed => self.end_job(id, State::Failed),
            Record::Expired => {
                if self.jobs[id as usize].state == State::Pending {
                    self.end_job(id, State::Expired);
                }
            }
            Record::Retry { delay, timed_out } => {
                self.totals.retries += 1;
                self.row.retries += 1;
                self.totals.timed_out += u64::from(timed_out);
                self.hide(id, delay);
            }
            Record::DeadLettered { timed_out } => {
                self.totals.timed_out += u64::from(timed_out);
                self.end_job(id, State::DeadLettered);
                self.hide(id, 0);
            }
            Record::Returned { delay } => self.hide(id, delay),
        }
    }

    /// The consumer changed the message's visibility: hidden for `delay` µs, then visible.
    fn hide(&mut self, id: u32, delay: u64) {
        self.in_flight -= 1;
        self.delayed += 1;
        self.agenda
            .schedule(self.now + delay, Action::Reappear { job: id });
    }

    fn end_job(&mut self, id: u32, state: State) {
        let job = &mut self.jobs[id as usize];
        job.state = state;
        job.ended = self.now;
        let accepted = job.accepted;
        self.row_end_to_end.push(self.now - accepted);
        match state {
            State::Succeeded | State::Failed => self.row.completed += 1,
            State::Expired => self.row.expired += 1,
            State::DeadLettered => self.row.dead_lettered += 1,
            _ => {}
        }
        self.count_polls(accepted, self.now);
    }

    /// A client's polls from its job's acceptance until its first poll at or after `ended`.
    fn count_polls(&mut self, accepted: u64, ended: u64) {
        match self.scenario.polling {
            Polling::None => {}
            Polling::Fixed { interval } => self.poll_every(accepted, interval, ended),
            // A long poll ends when the job does, so the client's requests are those of a
            // fixed poll every `wait`, and the status function is held the whole time.
            Polling::Long { wait } => {
                self.poll_every(accepted, wait, ended);
                self.totals.status_held_micros += ended.saturating_sub(accepted);
            }
            Polling::Backoff {
                initial,
                factor,
                max,
            } => {
                let sample = self.scenario.sample;
                let mut at = accepted;
                #[allow(clippy::cast_precision_loss)]
                let mut wait = initial as f64;
                #[allow(clippy::cast_precision_loss)]
                let max_f = max as f64;
                loop {
                    if wait >= max_f {
                        self.poll_every(at, max, ended);
                        return;
                    }
                    let from = at;
                    at += super::dist::seconds_to_micros(wait / 1e6);
                    self.totals.status_requests += 1;
                    self.polls.spread(from, at, 1.0, sample);
                    if at >= ended {
                        return;
                    }
                    wait *= factor;
                }
            }
        }
    }

    /// Polls every `interval` µs after `from`, up to the first at or after `ended`.
    fn poll_every(&mut self, from: u64, interval: u64, ended: u64) {
        let count = ended.saturating_sub(from).div_ceil(interval).max(1);
        self.totals.status_requests += count;
        #[allow(clippy::cast_precision_loss)]
        self.polls.spread(
            from,
            from + count * interval,
            count as f64,
            self.scenario.sample,
        );
    }

    fn finish(mut self, end: u64) -> Results {
        self.advance(end);
        let sample = self.scenario.sample;
        if let Some((length, mean)) = self.sampler.last_row(end, self.rows.len()) {
            self.close_row(length, mean);
        }
        // Clients of unfinished jobs poll until the run ends.
        let mut waits = Vec::with_capacity(self.jobs.len());
        let mut end_to_end = Vec::with_capacity(self.jobs.len());
        let mut counts = [0_u64; 7];
        let mut waited = 0_u64;
        for i in 0..self.jobs.len() {
            let job = self.jobs[i];
            counts[job.state as usize] += 1;
            if job.first_receive != NEVER {
                let wait = job.first_receive - job.accepted;
                waited += u64::from(wait > WAITED_MICROS);
                waits.push(wait);
            }
            match job.state {
                State::Pending => self.count_polls(job.accepted, end),
                State::Succeeded | State::Failed | State::Expired | State::DeadLettered => {
                    end_to_end.push(job.ended - job.accepted);
                }
                State::Lost | State::Stranded => {}
            }
        }
        let rows = self.rows.len();
        let status = std::mem::take(&mut self.polls).rows(rows);
        let mut peak = (0.0_f64, 0_usize);
        for (row, requests) in self.rows.iter_mut().zip(&status) {
            row.status_requests = *requests;
        }
        let throttle = self.scenario.status_throttle_rate;
        let mut rows_over_throttle = 0;
        for (i, requests) in status.iter().enumerate() {
            if *requests > peak.0 {
                peak = (*requests, i);
            }
            if throttle > 0.0 && *requests / to_seconds(sample) > throttle {
                rows_over_throttle += 1;
            }
        }
        let simulated_s = to_seconds(end);
        let totals = &self.totals;
        let maximum_concurrency = self.scenario.consumer.maximum_concurrency;
        #[allow(clippy::cast_precision_loss)]
        let per_run = |value: f64| if end == 0 { 0.0 } else { value / end as f64 };
        let usage = Usage {
            submissions: totals.arrivals,
            throttled: totals.throttled,
            accepted: self.jobs.len() as u64,
            attempts: totals.attempts,
            retries: totals.retries,
            expired: counts[State::Expired as usize],
            dead_lettered: counts[State::DeadLettered as usize],
            invocations: totals.invocations,
            consumer_busy_micros: self.sampler.total_area(),
            status_requests: totals.status_requests,
            status_held_micros: totals.status_held_micros,
        };
        #[allow(clippy::cast_precision_loss)]
        let summary = Summary {
            seed: self.seed,
            simulated_s,
            arrivals: totals.arrivals,
            accepted: self.jobs.len() as u64,
            rejected_backlog: totals.rejected_backlog,
            throttled: totals.throttled,
            succeeded: counts[State::Succeeded as usize],
            failed: counts[State::Failed as usize],
            expired: counts[State::Expired as usize],
            dead_lettered: counts[State::DeadLettered as usize],
            lost_to_retention: counts[State::Lost as usize],
            stranded_in_dlq: counts[State::Stranded as usize],
            unfinished: counts[State::Pending as usize],
            attempts: totals.attempts,
            retries: totals.retries,
            timed_out: totals.timed_out,
            peak_visible: totals.peak_visible,
            peak_visible_at_s: to_seconds(totals.peak_visible_at),
            last_spike_end_s: self.last_spike_end.map(to_seconds),
            drained_after_spike_s: self
                .last_spike_end
                .zip(self.drained_at)
                .map(|(spike, drained)| to_seconds(drained - spike)),
            waited_share: if waits.is_empty() {
                0.0
            } else {
                waited as f64 / waits.len() as f64
            },
            queue_wait: Percentiles::of(&mut waits),
            end_to_end: Percentiles::of(&mut end_to_end),
            peak_concurrency: totals.peak_concurrency,
            mean_concurrency: per_run(self.sampler.total_area() as f64),
            maximum_concurrency,
            utilisation: per_run(self.sampler.total_area() as f64) / f64::from(maximum_concurrency),
            status_requests: totals.status_requests,
            status_per_s_mean: per_run(totals.status_requests as f64) * 1e6,
            status_per_s_peak: peak.0 / to_seconds(sample),
            status_per_s_peak_at_s: to_seconds(peak.1 as u64 * sample),
            status_throttle_per_s: throttle,
            status_rows_over_throttle: rows_over_throttle,
            cost: cost(&usage, &self.scenario.prices),
        };
        Results {
            mode: Mode::Async,
            summary,
            sample_s: to_seconds(sample),
            series: self.rows,
        }
    }
}

#[cfg(test)]
mod tests;
