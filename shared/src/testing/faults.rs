//! Fault injection: wrappers around the ports that fail by seed, and a simulation that drives
//! thousands of jobs through the pipeline under those faults and checks that none is lost and
//! none runs twice per claim.
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
use crate::domain::{Change, IdempotencyRecord, Job, JobId, JobMessage, Owner, Timestamp};
use crate::esm::EventSourceMapping;
use crate::processor::{ProcessError, Processor, Processors, Work};
use crate::queue::{JobQueue, QueueDepth, QueueError, ReceivedMessage};
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

fn injected() -> crate::store::BoxError {
    "injected fault".into()
}

/// A `JobStore` whose calls fail as its `Chaos` decides.
#[derive(Debug)]
pub struct FaultyStore {
    /// The real store.
    pub inner: Arc<dyn JobStore>,
    chaos: Arc<Chaos>,
}

impl FaultyStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn JobStore>, chaos: Arc<Chaos>) -> Self {
        Self { inner, chaos }
    }
}

#[async_trait]
impl JobStore for FaultyStore {
    async fn create(
        &self,
        job: &Job,
        idempotency: Option<&IdempotencyRecord>,
    ) -> Result<(), StoreError> {
        let call = self.inner.create(job, idempotency);
        self.chaos
            .inject("store.create", call, || StoreError::Unavailable(injected()))
            .await
    }

    async fn get(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        let call = self.inner.get(id);
        self.chaos
            .inject("store.get", call, || StoreError::Unavailable(injected()))
            .await
    }

    async fn apply(&self, id: JobId, change: &Change) -> Result<Job, ApplyError> {
        let call = self.inner.apply(id, change);
        self.chaos
            .inject("store.apply", call, || {
                StoreError::Unavailable(injected()).into()
            })
            .await
    }
}

/// A `JobQueue` whose calls fail as its `Chaos` decides, and which also delivers duplicates
/// and out of order, as SQS standard queues may.
#[derive(Debug)]
pub struct FaultyQueue {
    /// The real queue.
    pub inner: Arc<dyn JobQueue>,
    chaos: Arc<Chaos>,
}

impl FaultyQueue {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn JobQueue>, chaos: Arc<Chaos>) -> Self {
        Self { inner, chaos }
    }
}

#[async_trait]
impl JobQueue for FaultyQueue {
    async fn send(&self, body: &str) -> Result<String, QueueError> {
        let sent = self
            .chaos
            .inject("queue.send", self.inner.send(body), || {
                QueueError::Unavailable(injected())
            })
            .await?;
        if self.chaos.roll() < self.chaos.fault_rate {
            self.chaos.count("duplicate delivery");
            let _ = self.inner.send(body).await;
        }
        Ok(sent)
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
}

/// What a simulation observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Jobs submitted.
    pub submitted: usize,
    /// Jobs that got a `202` (after the client's retries).
    pub accepted: usize,
    /// Requests clients repeated after a failure.
    pub client_retries: u64,
    /// Accepted jobs by final state.
    pub by_status: BTreeMap<String, usize>,
    /// Accepted jobs whose message is in the DLQ.
    pub in_dlq: usize,
    /// Accepted jobs neither terminal nor in the DLQ.
    pub lost: usize,
    /// `202`s whose job the table does not hold.
    pub accepted_without_job: usize,
    /// Jobs whose processor ran more often than they were claimed.
    pub runs_over_claims: usize,
    /// Processor runs of a job that was already terminal.
    pub runs_after_terminal: u64,
    /// Processor runs in all.
    pub runs: u64,
    /// Invocations that died mid-batch.
    pub dead_invocations: u64,
    /// Injected faults by kind.
    pub faults: BTreeMap<&'static str, u64>,
}

impl Report {
    /// Whether every guarantee held.
    pub fn holds(&self) -> bool {
        self.nothing_lost() && self.runs_over_claims == 0 && self.runs_after_terminal == 0
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
            "seed {}: {} submitted, {} accepted after {} client retries",
            self.seed, self.submitted, self.accepted, self.client_retries
        )?;
        writeln!(
            f,
            "  final states: {:?}; {} in the DLQ",
            self.by_status, self.in_dlq
        )?;
        writeln!(
            f,
            "  processor runs: {}; runs over claims: {}; runs after terminal: {}",
            self.runs, self.runs_over_claims, self.runs_after_terminal
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
    /// The real work queue, redriving to `dlq` after `settings.max_attempts` receives.
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

impl Simulation {
    /// Runs the simulation on `ports` and reports what happened.
    pub async fn run(&self, ports: Ports) -> Report {
        // The consumer's backoff jitter draws from this thread's generator.
        fastrand::seed(self.seed);
        let chaos = Arc::new(Chaos::new(self.seed, self.fault_rate, self.timeout));
        let audited = Arc::new(Audited {
            chaos: chaos.clone(),
            store: ports.store.clone(),
            runs: Mutex::default(),
            runs_after_terminal: AtomicU64::new(0),
        });
        let store: Arc<dyn JobStore> =
            Arc::new(FaultyStore::new(ports.store.clone(), chaos.clone()));
        let queue: Arc<dyn JobQueue> =
            Arc::new(FaultyQueue::new(ports.queue.clone(), chaos.clone()));
        let processors = Processors::new().with("audited", SharedProcessor(audited.clone()));
        let app = App::new(store, queue.clone(), ports.settings.clone())
            .with_processors(processors)
            .with_clock(ports.clock.clone());
        let esm = EventSourceMapping {
            queue,
            queue_arn: ports.queue_arn.clone(),
            region: "us-east-1".to_owned(),
            batch_size: 10,
            batching_window: Duration::ZERO,
            function_timeout: ports.function_timeout,
        };

        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let dead_invocations = Arc::new(AtomicU64::new(0));
        let pollers: Vec<_> = (0..self.pollers)
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

        let retries = Arc::new(AtomicU64::new(0));
        let clients: Vec<_> = (0..self.clients)
            .map(|client| {
                let numbers: Vec<usize> = (client..self.jobs).step_by(self.clients).collect();
                tokio::spawn(submit_all(app.clone(), numbers, retries.clone(), self.seed))
            })
            .collect();
        let mut accepted = Vec::new();
        for client in clients {
            accepted.extend(client.await.unwrap_or_default());
        }

        let settle_until = tokio::time::Instant::now() + self.settle_within;
        loop {
            let mut unfinished = 0;
            for id in &accepted {
                if !matches!(ports.store.get(*id).await, Ok(Some(job)) if job.status.is_terminal())
                {
                    unfinished += 1;
                }
            }
            // An empty work queue (nothing visible, in flight or delayed) means nothing more
            // will happen: what is unfinished now has its message in the DLQ, or is lost.
            let drained = ports
                .queue
                .depth()
                .await
                .is_ok_and(|depth| depth.total() == 0);
            if unfinished == 0 || drained || tokio::time::Instant::now() >= settle_until {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        done.store(true, Ordering::SeqCst);
        for poller in pollers {
            let _ = poller.await;
        }

        let dead_lettered = drain(ports.dlq.as_ref()).await;
        let runs = audited
            .runs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let mut report = Report {
            seed: self.seed,
            submitted: self.jobs,
            accepted: accepted.len(),
            client_retries: retries.load(Ordering::SeqCst),
            by_status: BTreeMap::new(),
            in_dlq: 0,
            lost: 0,
            accepted_without_job: 0,
            runs_over_claims: 0,
            runs_after_terminal: audited.runs_after_terminal.load(Ordering::SeqCst),
            runs: runs.values().map(|&r| u64::from(r)).sum(),
            dead_invocations: dead_invocations.load(Ordering::SeqCst),
            faults: chaos.counts(),
        };
        for id in &accepted {
            let Some(job) = read(ports.store.as_ref(), *id).await else {
                report.accepted_without_job += 1;
                continue;
            };
            *report.by_status.entry(job.status.to_string()).or_default() += 1;
            let in_dlq = dead_lettered.contains(id);
            report.in_dlq += usize::from(in_dlq);
            if !job.status.is_terminal() && !in_dlq {
                report.lost += 1;
                let depth = ports.queue.depth().await.ok();
                eprintln!("lost: {job:?}; the work queue holds {depth:?}");
            }
            if runs.get(id).copied().unwrap_or(0) > job.attempts {
                report.runs_over_claims += 1;
            }
        }
        report
    }
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

/// A client submitting its jobs one after another, each with its own Idempotency-Key, retrying a
/// failed request with the same key until it is accepted.
async fn submit_all(
    app: App,
    numbers: Vec<usize>,
    retries: Arc<AtomicU64>,
    seed: u64,
) -> Vec<JobId> {
    let mut accepted = Vec::new();
    for number in numbers {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Ok(key) = HeaderValue::from_str(&format!("sim-{seed}-{number}")) {
            headers.insert("idempotency-key", key);
        }
        let body = json!({"kind": "audited", "payload": {"n": number}}).to_string();
        for attempt in 0..200 {
            let response =
                crate::api::submit_job(&app, Owner::anonymous(), &headers, body.as_bytes()).await;
            if response.status() == http::StatusCode::ACCEPTED {
                let id = serde_json::from_str::<Value>(response.body())
                    .ok()
                    .and_then(|v| v["id"].as_str().and_then(|id| JobId::parse(id).ok()));
                accepted.extend(id);
                break;
            }
            assert!(
                response.status().is_server_error(),
                "a valid request was refused: {}",
                response.body()
            );
            retries.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100 << attempt.min(5))).await;
        }
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

/// Receives everything in the DLQ and returns the job ids it holds.
async fn drain(dlq: &dyn JobQueue) -> HashSet<JobId> {
    let mut ids = HashSet::new();
    loop {
        let Ok(messages) = dlq.receive(10, Duration::from_secs(1)).await else {
            continue;
        };
        if messages.is_empty() {
            return ids;
        }
        for message in messages {
            if let Ok(decoded) = JobMessage::decode(&message.body) {
                ids.insert(decoded.job_id);
            }
        }
    }
}
