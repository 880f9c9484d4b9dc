//! Fault injection: wrappers around the ports that fail by seed, and a simulation that drives
//! thousands of jobs through the pipeline under those faults and checks that none is lost, none
//! runs twice per claim and none runs more attempts than configured.
//!
//! Besides failing calls, the simulation has clients that never retry, clients that replay a
//! request long after it was accepted, a table outage longer than the queue's receive budget,
//! DynamoDB's TTL deleting records (while a message that names them is still queued), and a
//! redrive of the DLQ after the table's retention has passed.
//!
//! On the in-memory adapters the simulation runs on a single thread with Tokio's clock paused
//! and every random draw taken from the seed, so the same seed gives the same run.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use http::{HeaderMap, HeaderValue, header};
use serde_json::{Value, json};

use crate::app::App;
use crate::clock::Clock;
use crate::domain::{
    Change, IdempotencyKey, IdempotencyRecord, Job, JobId, JobMessage, Lanes, Owner, Priority,
    Timestamp,
};
use crate::esm::EventSourceMapping;
use crate::processor::{ProcessError, Processor, Processors, Work};
use crate::queue::{JobQueue, NoQueue, QueueDepth, QueueError, ReceivedMessage, SendOptions};
use crate::store::{ApplyError, JobStore, StoreError};

/// The seeded source of every fault and every processor outcome.
#[derive(Debug)]
pub struct Chaos {
    rng: Mutex<fastrand::Rng>,
    /// Probability that a port call fails.
    pub fault_rate: f64,
    /// How long an injected timeout stalls before failing.
    pub timeout: Duration,
    counts: Mutex<BTreeMap<&'static str, u64>>,
}

/// What an injected fault does to a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Fails without making the call.
    Before,
    /// Makes the call, then reports failure: the response was lost.
    After,
    /// Stalls, then fails; the call may or may not have happened.
    Timeout,
}

impl Chaos {
    /// Faults at `fault_rate`, drawn from `seed`.
    pub fn new(seed: u64, fault_rate: f64, timeout: Duration) -> Self {
        Self {
            rng: Mutex::new(fastrand::Rng::with_seed(seed)),
            fault_rate,
            timeout,
            counts: Mutex::default(),
        }
    }

    /// A number in `0.0..1.0`.
    fn roll(&self) -> f64 {
        self.rng
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .f64()
    }

    /// A number in `range`.
    fn pick(&self, range: std::ops::Range<u64>) -> u64 {
        self.rng
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .u64(range)
    }

    fn count(&self, what: &'static str) {
        *self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(what)
            .or_default() += 1;
    }

    /// How many of each fault were injected.
    pub fn counts(&self) -> BTreeMap<&'static str, u64> {
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn draw(&self, operation: &'static str) -> Option<Fault> {
        if self.roll() >= self.fault_rate {
            return None;
        }
        self.count(operation);
        Some(match self.pick(0..3) {
            0 => Fault::Before,
            1 => Fault::After,
            _ => Fault::Timeout,
        })
    }

    /// Runs `call` under a possible fault; `failure` makes the error a failed call returns.
    async fn inject<T, E>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T, E>>,
        failure: impl FnOnce() -> E,
    ) -> Result<T, E> {
        match self.draw(operation) {
            None => call.await,
            Some(Fault::Before) => Err(failure()),
            Some(Fault::After) => {
                let _ = call.await;
                Err(failure())
            }
            Some(Fault::Timeout) => {
                tokio::time::sleep(self.timeout).await;
                if self.roll() < 0.5 {
                    let _ = call.await;
                }
                Err(failure())
            }
        }
    }
}

fn injected() -> crate::error::BoxError {
    "injected fault".into()
}

/// A span of a simulation in which every store call fails, as in a regional outage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outage {
    /// When it starts, from the start of the simulation.
    pub after: Duration,
    /// How long it lasts.
    pub lasting: Duration,
}

/// Deletes a job's record, as DynamoDB's TTL does once the record's `expires_at` has passed.
#[async_trait]
pub trait Forget: Send + Sync + fmt::Debug {
    /// Deletes the record of job `id`.
    async fn forget(&self, id: JobId);
}

#[async_trait]
impl Forget for crate::store::MemoryStore {
    async fn forget(&self, id: JobId) {
        self.remove(id);
    }
}

/// A `JobStore` whose calls fail as its `Chaos` decides, and all of them during its outage.
#[derive(Debug)]
pub struct FaultyStore {
    /// The real store.
    pub inner: Arc<dyn JobStore>,
    chaos: Arc<Chaos>,
    down: Option<std::ops::Range<tokio::time::Instant>>,
}

impl FaultyStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn JobStore>, chaos: Arc<Chaos>) -> Self {
        Self {
            inner,
            chaos,
            down: None,
        }
    }

    /// Fails every call during `outage`, counted from now.
    pub fn with_outage(mut self, outage: Outage) -> Self {
        let start = tokio::time::Instant::now() + outage.after;
        self.down = Some(start..start + outage.lasting);
        self
    }

    /// Whether the outage refuses this call.
    fn refused(&self) -> bool {
        let down = self
            .down
            .as_ref()
            .is_some_and(|down| down.contains(&tokio::time::Instant::now()));
        if down {
            self.chaos.count("store call during the outage");
        }
        down
    }
}

#[async_trait]
impl JobStore for FaultyStore {
    async fn create(
        &self,
        job: &Job,
        idempotency: Option<&IdempotencyRecord>,
    ) -> Result<(), StoreError> {
        if self.refused() {
            return Err(StoreError::Unavailable(injected()));
        }
        let call = self.inner.create(job, idempotency);
        self.chaos
            .inject("store.create", call, || StoreError::Unavailable(injected()))
            .await
    }

    /// The whole call fails as its `Chaos` decides (a `TransactWriteItems` that does not go
    /// through fails every job in it), or during the outage.
    async fn create_batch(&self, jobs: &[Job]) -> Vec<Result<(), StoreError>> {
        if self.refused() {
            return jobs
                .iter()
                .map(|_| Err(StoreError::Unavailable(injected())))
                .collect();
        }
        let call = async { Ok::<_, StoreError>(self.inner.create_batch(jobs).await) };
        match self
            .chaos
            .inject("store.create_batch", call, || {
                StoreError::Unavailable(injected())
            })
            .await
        {
            Ok(created) => created,
            Err(_) => jobs
                .iter()
                .map(|_| Err(StoreError::Unavailable(injected())))
                .collect(),
        }
    }

    async fn get(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        if self.refused() {
            return Err(StoreError::Unavailable(injected()));
        }
        let call = self.inner.get(id);
        self.chaos
            .inject("store.get", call, || StoreError::Unavailable(injected()))
            .await
    }

    async fn key(
        &self,
        owner: &Owner,
        key: &IdempotencyKey,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        if self.refused() {
            return Err(StoreError::Unavailable(injected()));
        }
        let call = self.inner.key(owner, key);
        self.chaos
            .inject("store.key", call, || StoreError::Unavailable(injected()))
            .await
    }

    async fn apply(&self, id: JobId, change: &Change) -> Result<Job, ApplyError> {
        if self.refused() {
            return Err(StoreError::Unavailable(injected()).into());
        }
        let call = self.inner.apply(id, change);
        self.chaos
            .inject("store.apply", call, || {
                StoreError::Unavailable(injected()).into()
            })
            .await
    }

    async fn active_jobs(&self, owner: &Owner, at_most: u32) -> Result<u32, StoreError> {
        if self.refused() {
            return Err(StoreError::Unavailable(injected()));
        }
        let call = self.inner.active_jobs(owner, at_most);
        self.chaos
            .inject("store.active_jobs", call, || {
                StoreError::Unavailable(injected())
            })
            .await
    }

    async fn hold_slot(
        &self,
        slot: &crate::store::Slot,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        if self.refused() {
            return Err(StoreError::Unavailable(injected()));
        }
        let call = self.inner.hold_slot(slot, until, now);
        self.chaos
            .inject("store.hold_slot", call, || {
                StoreError::Unavailable(injected())
            })
            .await
    }

    async fn release_slot(&self, slot: &crate::store::Slot) -> Result<(), StoreError> {
        if self.refused() {
            return Err(StoreError::Unavailable(injected()));
        }
        let call = self.inner.release_slot(slot);
        self.chaos
            .inject("store.release_slot", call, || {
                StoreError::Unavailable(injected())
            })
            .await
    }
}

/// A `JobQueue` whose calls fail as its `Chaos` decides, and which also delivers duplicates
/// and out of order, as SQS standard queues may. It keeps every body the real queue took, even
/// when its caller was told the send failed.
#[derive(Debug)]
pub struct FaultyQueue {
    /// The real queue.
    pub inner: Arc<dyn JobQueue>,
    chaos: Arc<Chaos>,
    sent: Mutex<Vec<String>>,
}

impl FaultyQueue {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn JobQueue>, chaos: Arc<Chaos>) -> Self {
        Self {
            inner,
            chaos,
            sent: Mutex::default(),
        }
    }

    /// Every body the real queue took.
    pub fn sent(&self) -> Vec<String> {
        self.sent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl JobQueue for FaultyQueue {
    async fn send_with(&self, body: &str, options: SendOptions<'_>) -> Result<String, QueueError> {
        let call = async {
            let sent = self.inner.send_with(body, options).await;
            if sent.is_ok() {
                self.sent
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(body.to_owned());
            }
            sent
        };
        let sent = self
            .chaos
            .inject("queue.send", call, || QueueError::Unavailable(injected()))
            .await?;
        if self.chaos.roll() < self.chaos.fault_rate {
            self.chaos.count("duplicate delivery");
            let _ = self.inner.send(body).await;
        }
        Ok(sent)
    }

    /// Each entry fails as its `Chaos` decides, alone, as SQS reports a batch's failed entries
    /// one by one; a failed entry is not sent.
    async fn send_batch(
        &self,
        messages: &[crate::queue::Outgoing<'_>],
    ) -> Vec<Result<String, QueueError>> {
        let mut results = Vec::with_capacity(messages.len());
        for message in messages {
            results.push(self.send_with(message.body, message.options).await);
        }
        results
    }

    async fn change_visibility(
        &self,
        receipt_handle: &str,
        timeout: Duration,
    ) -> Result<(), QueueError> {
        let call = self.inner.change_visibility(receipt_handle, timeout);
        self.chaos
            .inject("queue.change_visibility", call, || {
                QueueError::Unavailable(injected())
            })
            .await
    }

    async fn receive(&self, max: u32, wait: Duration) -> Result<Vec<ReceivedMessage>, QueueError> {
        let call = self.inner.receive(max, wait);
        let mut messages = self
            .chaos
            .inject(
                "queue.receive",
                call,
                || QueueError::Unavailable(injected()),
            )
            .await?;
        if messages.len() > 1 && self.chaos.roll() < 0.5 {
            self.chaos.count("reordered batch");
            for i in (1..messages.len()).rev() {
                let j = self.chaos.pick(0..(i as u64 + 1)) as usize;
                messages.swap(i, j);
            }
        }
        Ok(messages)
    }

    async fn delete(&self, receipt_handle: &str) -> Result<(), QueueError> {
        let call = self.inner.delete(receipt_handle);
        self.chaos
            .inject("queue.delete", call, || QueueError::Unavailable(injected()))
            .await
    }

    async fn depth(&self) -> Result<QueueDepth, QueueError> {
        self.inner.depth().await
    }
}

/// A clock that follows Tokio's, so a paused runtime moves the whole simulation's time.
#[derive(Debug)]
pub struct TokioClock {
    start: Timestamp,
    origin: tokio::time::Instant,
}

impl TokioClock {
    /// A clock reading `start` now.
    pub fn starting_at(start: Timestamp) -> Self {
        Self {
            start,
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        self.start.saturating_add(self.origin.elapsed())
    }
}

/// A processor that counts runs per job, notices a run of a job that is already terminal, and
/// otherwise succeeds, fails or panics as the seed says.
#[derive(Debug)]
pub struct Audited {
    chaos: Arc<Chaos>,
    store: Arc<dyn JobStore>,
    runs: Mutex<HashMap<JobId, u32>>,
    runs_after_terminal: AtomicU64,
}

#[async_trait]
impl Processor for Audited {
    async fn process(&self, work: &Work) -> Result<Value, ProcessError> {
        *self
            .runs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(work.job_id)
            .or_default() += 1;
        if let Ok(Some(job)) = self.store.get(work.job_id).await
            && job.status.is_terminal()
        {
            self.runs_after_terminal.fetch_add(1, Ordering::SeqCst);
        }
        tokio::time::sleep(Duration::from_millis(self.chaos.pick(0..200))).await;
        let roll = self.chaos.roll();
        if roll < 0.02 {
            panic!("audited: asked to panic");
        } else if roll < 0.12 {
            Err(ProcessError::retryable("audited: transient failure"))
        } else if roll < 0.14 {
            Err(ProcessError::permanent("audited: permanent failure"))
        } else {
            Ok(json!({"attempt": work.attempt}))
        }
    }
}

/// One simulation's shape.
#[derive(Debug, Clone)]
pub struct Simulation {
    /// Seeds every draw.
    pub seed: u64,
    /// Jobs to submit.
    pub jobs: usize,
    /// Clients submitting at once.
    pub clients: usize,
    /// Consumer invocations running at once.
    pub pollers: usize,
    /// Probability that any port call fails, that a send is duplicated, and that an invocation
    /// dies mid-batch.
    pub fault_rate: f64,
    /// How long the pipeline may take, once every job is submitted, before the unfinished count
    /// as lost.
    pub settle_within: Duration,
    /// Stall of an injected timeout.
    pub timeout: Duration,
    /// Each job's deadline (its `ttl_seconds`).
    pub ttl: Duration,
    /// When the table is down for everyone.
    pub outage: Option<Outage>,
    /// How often DynamoDB's TTL is played: records past their `expires_at` are deleted, and a
    /// copy of each one's message is queued again, as a late duplicate would be.
    pub sweep_every: Duration,
    /// Whether, once the run settles, the DLQ's messages are held until the table's retention
    /// has passed and then redriven to the work queue.
    pub redrive_after_retention: bool,
}

/// What a simulation observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Jobs submitted.
    pub submitted: usize,
    /// Jobs that got a `202` (after the client's retries, if it made any).
    pub accepted: usize,
    /// Requests clients repeated after a failure.
    pub client_retries: u64,
    /// Submissions whose client made one request, with no `Idempotency-Key`, and gave up on a
    /// failure.
    pub one_shot: usize,
    /// Requests repeated long after their `202`, while the job waited out a backoff or ran.
    pub replays: u64,
    /// Submissions whose job's message reached the queue, whether or not the client heard so.
    pub sent: usize,
    /// Sent submissions whose client never got a `202` for them.
    pub sent_not_accepted: usize,
    /// Sent submissions by the final state of their job.
    pub by_status: BTreeMap<String, usize>,
    /// Sent submissions whose job's message was in the DLQ when the run settled.
    pub in_dlq: usize,
    /// Of those, jobs that never ran (or were never even written): infrastructure failures moved
    /// them there.
    pub dead_lettered_unrun: usize,
    /// Sent submissions whose job neither ended nor reached the DLQ.
    pub lost: usize,
    /// `202`s whose job the table does not hold.
    pub accepted_without_job: usize,
    /// Jobs whose processor ran more often than they were claimed.
    pub runs_over_claims: usize,
    /// Jobs claimed more often than `max_attempts`.
    pub over_attempted: usize,
    /// Submissions whose work ran under two job ids.
    pub ran_under_two_ids: usize,
    /// Processor runs of a job that was already terminal.
    pub runs_after_terminal: u64,
    /// Processor runs in all.
    pub runs: u64,
    /// Invocations that died mid-batch.
    pub dead_invocations: u64,
    /// Records the TTL deleted, each followed by a copy of its message.
    pub forgotten: usize,
    /// Messages redriven from the DLQ after the retention passed.
    pub redriven: usize,
    /// Messages of forgotten jobs that went back to the DLQ instead of being acknowledged.
    pub forgotten_in_dlq: usize,
    /// Injected faults by kind.
    pub faults: BTreeMap<&'static str, u64>,
}

impl Report {
    /// Counts submission `number`, sent as `ids`: what became of its job, and every way it could
    /// have gone wrong.
    fn tally(
        &mut self,
        number: usize,
        ids: &HashSet<JobId>,
        accepted: &Accepted,
        seen: &HashMap<JobId, Seen>,
        runs: &HashMap<JobId, u32>,
        max_attempts: u32,
    ) {
        self.sent += 1;
        self.sent_not_accepted += usize::from(!accepted.contains_key(&number));
        if let Some(id) = accepted.get(&number)
            && seen.get(id).is_none_or(|s| s.job.is_none())
        {
            self.accepted_without_job += 1;
        }
        let jobs: Vec<(&Job, &Seen)> = ids
            .iter()
            .filter_map(|id| seen.get(id))
            .filter_map(|seen| seen.job.as_ref().map(|job| (job, seen)))
            .collect();
        // Exactly one job per submission: its key kept any other from being written.
        let Some(&(job, seen)) = jobs.first() else {
            let dead_lettered = ids.iter().any(|id| {
                seen.get(id)
                    .is_some_and(|seen| matches!(seen.in_dlq, Some(None)))
            });
            if dead_lettered {
                // Its message used up its receives while no write of its job succeeded.
                self.in_dlq += 1;
                self.dead_lettered_unrun += 1;
                eprintln!(
                    "dead-lettered unrun: submission {number} was sent as {ids:?}, never \
                     written, and its message reached the DLQ"
                );
            } else {
                self.lost += 1;
                eprintln!("lost: submission {number} was sent as {ids:?} and never written");
            }
            return;
        };
        *self.by_status.entry(job.status.to_string()).or_default() += 1;
        let in_dlq = seen.in_dlq.is_some();
        self.in_dlq += usize::from(in_dlq);
        if let Some(Some(then)) = &seen.in_dlq
            && !then.status.is_terminal()
            && then.attempts == 0
        {
            self.dead_lettered_unrun += 1;
        }
        if !job.status.is_terminal() && !in_dlq {
            self.lost += 1;
            eprintln!("lost: {job:?}");
        }
        if job.attempts > max_attempts {
            self.over_attempted += 1;
        }
        if runs.get(&job.id).copied().unwrap_or(0) > job.attempts {
            self.runs_over_claims += 1;
        }
        if ids.iter().filter(|id| runs.contains_key(id)).count() > 1 {
            self.ran_under_two_ids += 1;
        }
    }

    /// Whether every guarantee held.
    pub fn holds(&self) -> bool {
        self.nothing_lost()
            && self.runs_over_claims == 0
            && self.runs_after_terminal == 0
            && self.over_attempted == 0
            && self.ran_under_two_ids == 0
            && self.dead_lettered_unrun == 0
            && self.forgotten_in_dlq == 0
    }

    /// Whether every accepted job was kept: it has its item, and it ended terminal or in the DLQ.
    /// Unlike [`Report::holds`], this does not depend on the store's conditional writes being
    /// atomic.
    pub fn nothing_lost(&self) -> bool {
        self.lost == 0 && self.accepted_without_job == 0
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seed {}: {} submitted ({} by clients that never retry), {} accepted after {} client \
             retries; {} replays during backoff",
            self.seed,
            self.submitted,
            self.one_shot,
            self.accepted,
            self.client_retries,
            self.replays
        )?;
        writeln!(
            f,
            "  sent: {} ({} never answered 202); final states: {:?}; {} in the DLQ, {} of them \
             never run",
            self.sent,
            self.sent_not_accepted,
            self.by_status,
            self.in_dlq,
            self.dead_lettered_unrun
        )?;
        writeln!(
            f,
            "  processor runs: {}; runs over claims: {}; runs after terminal: {}; over-attempted: \
             {}; work run under two ids: {}",
            self.runs,
            self.runs_over_claims,
            self.runs_after_terminal,
            self.over_attempted,
            self.ran_under_two_ids
        )?;
        writeln!(
            f,
            "  forgotten by TTL with a message queued: {}; redriven after retention: {}; forgotten \
             back in the DLQ: {}",
            self.forgotten, self.redriven, self.forgotten_in_dlq
        )?;
        writeln!(
            f,
            "  injected: {:?}; invocations died mid-batch: {}",
            self.faults, self.dead_invocations
        )?;
        write!(
            f,
            "  lost: {}; 202 without a job: {}",
            self.lost, self.accepted_without_job
        )
    }
}

/// The ports a simulation runs on.
#[derive(Debug)]
pub struct Ports {
    /// The real store.
    pub store: Arc<dyn JobStore>,
    /// Deletes records from `store` as its TTL would.
    pub forget: Arc<dyn Forget>,
    /// The real work queue, redriving to `dlq` after `settings.max_receive_count` receives.
    pub queue: Arc<dyn JobQueue>,
    /// The real DLQ.
    pub dlq: Arc<dyn JobQueue>,
    /// The work queue's ARN.
    pub queue_arn: String,
    /// Settings matching the queue.
    pub settings: crate::config::Settings,
    /// Consumer invocation timeout.
    pub function_timeout: Duration,
    /// The clock; a [`TokioClock`] for paused runs.
    pub clock: Arc<dyn Clock>,
}

/// How one submission's client behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    /// Retries with its `Idempotency-Key` until accepted.
    Retrying,
    /// One request, no key; a failure is the end of it.
    OneShot,
    /// Retries like `Retrying`, then repeats the accepted request later.
    Replaying,
}

impl Client {
    fn of(number: usize) -> Self {
        match number % 10 {
            0 | 1 => Self::OneShot,
            2 => Self::Replaying,
            _ => Self::Retrying,
        }
    }
}

/// What the run knows about one job id at the end.
#[derive(Debug, Default)]
struct Seen {
    /// Its record now, or when the TTL deleted it.
    job: Option<Job>,
    /// Whether its message was in the DLQ when the run settled, and the job then.
    in_dlq: Option<Option<Job>>,
}

/// The tasks that run beside the clients.
struct Background {
    done: Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Background {
    async fn stop(self) {
        self.done.store(true, Ordering::SeqCst);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// A pipeline under chaos, and the tasks that drive it: pollers running the consumer, and the
/// TTL sweeper.
struct Running {
    app: App,
    /// The work queue as the pipeline sees it, which remembers every message sent.
    queue: Arc<FaultyQueue>,
    chaos: Arc<Chaos>,
    audited: Arc<Audited>,
    background: Background,
    dead_invocations: Arc<AtomicU64>,
    /// The records the TTL deleted, as they were.
    forgotten: Arc<Mutex<HashMap<JobId, Job>>>,
}

/// What the run's clients got: the job id of each accepted submission, by number.
type Accepted = HashMap<usize, JobId>;

impl Simulation {
    /// Runs the simulation on `ports` and reports what happened.
    pub async fn run(&self, ports: Ports) -> Report {
        // The consumer's backoff jitter draws from this thread's generator.
        fastrand::seed(self.seed);
        let running = self.start(&ports);
        let counts = Arc::new(ClientCounts::default());
        let clients: Vec<_> = (0..self.clients)
            .map(|client| {
                let numbers: Vec<usize> = (client..self.jobs).step_by(self.clients).collect();
                tokio::spawn(submit_all(
                    running.app.clone(),
                    numbers,
                    counts.clone(),
                    self.seed,
                    self.ttl,
                ))
            })
            .collect();
        let mut accepted = Accepted::new();
        for client in clients {
            accepted.extend(client.await.unwrap_or_default());
        }
        self.settle(&ports).await;
        let (mut seen, redriven) = self.hold_dlq(&ports).await;
        let Running {
            queue,
            chaos,
            audited,
            background,
            dead_invocations,
            forgotten,
            ..
        } = running;
        background.stop().await;

        let forgotten = forgotten
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let back_in_dlq: HashSet<JobId> = take_all(ports.dlq.as_ref())
            .await
            .iter()
            .filter_map(|body| JobMessage::decode(body).ok().map(|m| m.job_id))
            .collect();
        let runs = audited
            .runs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let mut report = Report {
            seed: self.seed,
            submitted: self.jobs,
            accepted: accepted.len(),
            client_retries: counts.retries.load(Ordering::SeqCst),
            one_shot: (0..self.jobs)
                .filter(|&n| Client::of(n) == Client::OneShot)
                .count(),
            replays: counts.replays.load(Ordering::SeqCst),
            sent: 0,
            sent_not_accepted: 0,
            by_status: BTreeMap::new(),
            in_dlq: 0,
            dead_lettered_unrun: 0,
            lost: 0,
            accepted_without_job: 0,
            runs_over_claims: 0,
            over_attempted: 0,
            ran_under_two_ids: 0,
            runs_after_terminal: audited.runs_after_terminal.load(Ordering::SeqCst),
            runs: runs.values().map(|&r| u64::from(r)).sum(),
            dead_invocations: dead_invocations.load(Ordering::SeqCst),
            forgotten: forgotten.len(),
            redriven,
            forgotten_in_dlq: forgotten
                .keys()
                .filter(|id| back_in_dlq.contains(id))
                .count(),
            faults: chaos.counts(),
        };
        // Every submission whose message reached the queue, with the ids it was sent under.
        let mut submissions: BTreeMap<usize, HashSet<JobId>> = BTreeMap::new();
        for body in queue.sent() {
            if let Ok(message) = JobMessage::decode(&body)
                && let Some(number) = submission_number(&message)
            {
                submissions
                    .entry(number)
                    .or_default()
                    .insert(message.job_id);
            }
        }
        for (&number, &id) in &accepted {
            submissions.entry(number).or_default().insert(id);
        }
        for id in submissions.values().flatten() {
            let entry = seen.entry(*id).or_default();
            entry.job = match forgotten.get(id) {
                Some(job) => Some(job.clone()),
                None => read(ports.store.as_ref(), *id).await,
            };
        }
        for (number, ids) in &submissions {
            report.tally(
                *number,
                ids,
                &accepted,
                &seen,
                &runs,
                ports.settings.max_attempts,
            );
        }
        report
    }

    /// The pipeline on `ports` behind the chaos, with its pollers and TTL sweeper running.
    fn start(&self, ports: &Ports) -> Running {
        let chaos = Arc::new(Chaos::new(self.seed, self.fault_rate, self.timeout));
        let audited = Arc::new(Audited {
            chaos: chaos.clone(),
            store: ports.store.clone(),
            runs: Mutex::default(),
            runs_after_terminal: AtomicU64::new(0),
        });
        let mut store = FaultyStore::new(ports.store.clone(), chaos.clone());
        if let Some(outage) = self.outage {
            store = store.with_outage(outage);
        }
        let queue = Arc::new(FaultyQueue::new(ports.queue.clone(), chaos.clone()));
        let processors = Processors::new().with("audited", SharedProcessor(audited.clone()));
        // The suite's jobs are all in the normal lane: the high lane's queue refuses every call.
        let queues = Lanes {
            high: Arc::new(NoQueue(Priority::High)) as Arc<dyn JobQueue>,
            normal: queue.clone(),
        };
        let app = App::new(Arc::new(store), queues, ports.settings.clone())
            .with_processors(processors)
            .with_clock(ports.clock.clone());
        let esm = EventSourceMapping {
            queue: queue.clone(),
            queue_arn: ports.queue_arn.clone(),
            region: "us-east-1".to_owned(),
            batch_size: 10,
            batching_window: Duration::ZERO,
            function_timeout: ports.function_timeout,
        };
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let dead_invocations = Arc::new(AtomicU64::new(0));
        let forgotten = Arc::new(Mutex::new(HashMap::new()));
        let mut tasks: Vec<_> = (0..self.pollers)
            .map(|_| {
                tokio::spawn(poller(
                    esm.clone(),
                    app.clone(),
                    chaos.clone(),
                    done.clone(),
                    dead_invocations.clone(),
                ))
            })
            .collect();
        tasks.push(tokio::spawn(ttl(
            Ttl {
                store: ports.store.clone(),
                forget: ports.forget.clone(),
                queue: ports.queue.clone(),
                clock: ports.clock.clone(),
                retention: ports.settings.retention,
                every: self.sweep_every,
            },
            queue.clone(),
            forgotten.clone(),
            done.clone(),
        )));
        Running {
            app,
            queue,
            chaos,
            audited,
            background: Background { done, tasks },
            dead_invocations,
            forgotten,
        }
    }

    /// Takes the DLQ as the run left it and notes each message's job then. With
    /// `redrive_after_retention`, its messages are held until the table's retention has passed,
    /// then redriven (how many, the second value); otherwise they go back to the DLQ.
    async fn hold_dlq(&self, ports: &Ports) -> (HashMap<JobId, Seen>, usize) {
        let held = take_all(ports.dlq.as_ref()).await;
        let mut seen: HashMap<JobId, Seen> = HashMap::new();
        for body in &held {
            if let Ok(message) = JobMessage::decode(body) {
                let job = read(ports.store.as_ref(), message.job_id).await;
                seen.entry(message.job_id).or_default().in_dlq = Some(job);
            }
        }
        let mut redriven = 0;
        if self.redrive_after_retention {
            tokio::time::sleep(ports.settings.retention + self.sweep_every * 2).await;
            for body in &held {
                if ports.queue.send(body).await.is_ok() {
                    redriven += 1;
                }
            }
            self.settle(ports).await;
        } else {
            for body in &held {
                let _ = ports.dlq.send(body).await;
            }
        }
        (seen, redriven)
    }

    /// Waits until the work queue is empty (nothing visible, in flight or delayed: nothing more
    /// will happen), or `settle_within` has passed.
    async fn settle(&self, ports: &Ports) {
        let settle_until = tokio::time::Instant::now() + self.settle_within;
        while tokio::time::Instant::now() < settle_until {
            let drained = ports
                .queue
                .depth()
                .await
                .is_ok_and(|depth| depth.total() == 0);
            if drained {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// The submission a simulated job's message belongs to, from its payload.
fn submission_number(message: &JobMessage) -> Option<usize> {
    let payload: Value = serde_json::from_str(message.payload.get()).ok()?;
    usize::try_from(payload["n"].as_u64()?).ok()
}

/// Lets one `Audited` be registered while the simulation keeps reading its counts.
#[derive(Debug)]
struct SharedProcessor(Arc<Audited>);

#[async_trait]
impl Processor for SharedProcessor {
    async fn process(&self, work: &Work) -> Result<Value, ProcessError> {
        self.0.process(work).await
    }
}

/// What the clients counted.
#[derive(Debug, Default)]
struct ClientCounts {
    retries: AtomicU64,
    replays: AtomicU64,
}

/// A client submitting its jobs one after another, each as [`Client::of`] its number says.
async fn submit_all(
    app: App,
    numbers: Vec<usize>,
    counts: Arc<ClientCounts>,
    seed: u64,
    ttl: Duration,
) -> Vec<(usize, JobId)> {
    let mut accepted = Vec::new();
    let mut replays = Vec::new();
    for number in numbers {
        let client = Client::of(number);
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if client != Client::OneShot
            && let Ok(key) = HeaderValue::from_str(&format!("sim-{seed}-{number}"))
        {
            headers.insert("idempotency-key", key);
        }
        let body =
            json!({"kind": "audited", "payload": {"n": number}, "ttl_seconds": ttl.as_secs()})
                .to_string();
        let tries = if client == Client::OneShot { 1 } else { 1_000 };
        for attempt in 0..tries {
            let response =
                crate::api::submit_job(&app, Owner::anonymous(), &headers, body.as_bytes()).await;
            if response.status() == http::StatusCode::ACCEPTED {
                let id = serde_json::from_str::<Value>(response.body())
                    .ok()
                    .and_then(|v| v["id"].as_str().and_then(|id| JobId::parse(id).ok()));
                accepted.extend(id.map(|id| (number, id)));
                break;
            }
            // A key whose job the table has already forgotten (a client still retrying past
            // the retention, which the runs in real time keep short): the job existed, and the
            // verdict finds what became of it.
            if response.body().contains("job is no longer kept") {
                break;
            }
            assert!(
                response.status().is_server_error(),
                "a valid request was refused: {}",
                response.body()
            );
            if client == Client::OneShot {
                break;
            }
            counts.retries.fetch_add(1, Ordering::SeqCst);
            // 100 ms doubling to a minute: a table outage of an hour costs a client 60 requests,
            // each of which leaves a message behind (that runs nothing: the key has one job).
            tokio::time::sleep(
                Duration::from_millis(100 << attempt.min(9)).min(Duration::from_secs(60)),
            )
            .await;
        }
        if client == Client::Replaying {
            // Later, while the job waits out a backoff or runs: the replay must neither send it
            // again nor give it attempts.
            let (app, headers, body, counts) =
                (app.clone(), headers.clone(), body.clone(), counts.clone());
            let later = Duration::from_millis(500 + (number as u64 * 7919) % 5000);
            replays.push(tokio::spawn(async move {
                tokio::time::sleep(later).await;
                counts.replays.fetch_add(1, Ordering::SeqCst);
                crate::api::submit_job(&app, Owner::anonymous(), &headers, body.as_bytes()).await;
            }));
        }
    }
    for replay in replays {
        let _ = replay.await;
    }
    accepted
}

/// An event source mapping poller whose invocations sometimes die mid-batch, deleting nothing.
async fn poller(
    esm: EventSourceMapping,
    app: App,
    chaos: Arc<Chaos>,
    done: Arc<std::sync::atomic::AtomicBool>,
    dead_invocations: Arc<AtomicU64>,
) {
    while !done.load(Ordering::SeqCst) {
        let messages = match esm.receive_batch(Duration::from_secs(1)).await {
            Ok(messages) if !messages.is_empty() => messages,
            Ok(_) => continue,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        if chaos.roll() < chaos.fault_rate {
            dead_invocations.fetch_add(1, Ordering::SeqCst);
            let lifetime = Duration::from_millis(chaos.pick(0..300));
            let _ = tokio::time::timeout(lifetime, esm.invoke(&app, &messages)).await;
        } else {
            esm.invoke(&app, &messages).await;
        }
    }
}

/// DynamoDB's TTL, played on the real store.
#[derive(Debug)]
struct Ttl {
    store: Arc<dyn JobStore>,
    forget: Arc<dyn Forget>,
    queue: Arc<dyn JobQueue>,
    clock: Arc<dyn Clock>,
    retention: Duration,
    every: Duration,
}

/// Every `every`, deletes the records of sent jobs whose `expires_at` has passed, and queues a
/// copy of each one's message: a late duplicate that names a job the table no longer holds.
async fn ttl(
    ttl: Ttl,
    sent: Arc<FaultyQueue>,
    forgotten: Arc<Mutex<HashMap<JobId, Job>>>,
    done: Arc<std::sync::atomic::AtomicBool>,
) {
    // In the order they were sent, so that a seed replays the same run; with the earliest moment
    // the record can expire (its creation plus the retention, however it ends), before which it
    // is not even read.
    let mut bodies: Vec<(JobId, String, Timestamp)> = Vec::new();
    let mut known = HashSet::new();
    let mut read = 0;
    while !done.load(Ordering::SeqCst) {
        tokio::time::sleep(ttl.every).await;
        let all = sent.sent();
        for body in &all[read..] {
            if let Ok(message) = JobMessage::decode(body)
                && let Some(origin) = &message.origin
                && known.insert(message.job_id)
            {
                let earliest = origin.created_at.saturating_add(ttl.retention);
                bodies.push((message.job_id, body.clone(), earliest));
            }
        }
        read = all.len();
        let now = ttl.clock.now();
        for (id, body, earliest) in &bodies {
            if now < *earliest {
                continue;
            }
            let known = forgotten
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .contains_key(id);
            if known {
                continue;
            }
            if let Ok(Some(job)) = ttl.store.get(*id).await
                && job.expires_at < now
            {
                ttl.forget.forget(*id).await;
                forgotten
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(*id, job);
                let _ = ttl.queue.send(body).await;
            }
        }
    }
}

/// Reads a job for the verdict, retrying the emulator's own transient failures (the suite's
/// clients run without the SDK's retries).
async fn read(store: &dyn JobStore, id: JobId) -> Option<Job> {
    for _ in 0..10 {
        match store.get(id).await {
            Ok(job) => return job,
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    panic!("job {id} could not be read after ten tries")
}

/// Receives and deletes everything in `queue`, returning the bodies.
async fn take_all(queue: &dyn JobQueue) -> Vec<String> {
    let mut bodies = Vec::new();
    loop {
        let Ok(messages) = queue.receive(10, Duration::from_secs(1)).await else {
            continue;
        };
        if messages.is_empty() {
            return bodies;
        }
        for message in messages {
            let _ = queue.delete(&message.receipt_handle).await;
            bodies.push(message.body);
        }
    }
}
