//! Test support shared by the unit tests and the integration tests: a processor that counts its
//! runs, and the pieces of a pipeline on the in-memory adapters.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod faults;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::app::App;
use crate::config::Settings;
use crate::domain::{JobId, Lanes, Priority};
use crate::esm::EventSourceMapping;
use crate::kinds;
use crate::processor::{ProcessError, Processor, Processors, Work};
use crate::queue::{JobQueue, MemoryQueue, QueueDepth, QueueError, ReceivedMessage, SendOptions};
use crate::store::MemoryStore;

/// What a [`Counting`] processor does when it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Returns `{"ran": n}`.
    Succeed,
    /// Fails with a retryable error.
    FailRetryable,
    /// Fails with a retryable error that asks for this delay, as a `Retry-After` would.
    FailRetryableAfter(Duration),
    /// Fails permanently.
    FailPermanent,
    /// Panics.
    Panic,
    /// Sleeps this long, then succeeds.
    Sleep(Duration),
}

/// A processor that behaves as told and counts how often it ran for each job.
#[derive(Debug, Clone)]
pub struct Counting {
    behaviour: Behaviour,
    runs: Arc<Mutex<HashMap<JobId, u32>>>,
}

impl Counting {
    /// A processor that behaves as told.
    pub fn new(behaviour: Behaviour) -> Self {
        Self {
            behaviour,
            runs: Arc::default(),
        }
    }

    /// How many times it ran for `id`.
    pub fn runs(&self, id: JobId) -> u32 {
        self.runs.lock().unwrap().get(&id).copied().unwrap_or(0)
    }

    /// How many runs in all.
    pub fn total_runs(&self) -> u32 {
        self.runs.lock().unwrap().values().sum()
    }
}

#[async_trait]
impl Processor for Counting {
    async fn process(&self, work: &Work) -> Result<Value, ProcessError> {
        let ran = {
            let mut runs = self.runs.lock().unwrap();
            let count = runs.entry(work.job_id).or_default();
            *count += 1;
            *count
        };
        match self.behaviour {
            Behaviour::Succeed => Ok(serde_json::json!({"ran": ran})),
            Behaviour::FailRetryable => Err(ProcessError::retryable("counting: asked to fail")),
            Behaviour::FailRetryableAfter(delay) => Err(ProcessError::Retryable {
                message: "counting: asked to fail and wait".to_owned(),
                retry_after: Some(delay),
            }),
            Behaviour::FailPermanent => {
                Err(ProcessError::permanent("counting: asked to fail for good"))
            }
            Behaviour::Panic => panic!("counting: asked to panic"),
            Behaviour::Sleep(duration) => {
                tokio::time::sleep(duration).await;
                Ok(serde_json::json!({"ran": ran}))
            }
        }
    }
}

/// A queue that passes every call to another and remembers each visibility change it was asked
/// for: the delays the consumer gave its retries, seen where they take effect.
#[derive(Debug)]
pub struct RecordingQueue {
    inner: Arc<dyn JobQueue>,
    visibility_changes: Mutex<Vec<Duration>>,
}

impl RecordingQueue {
    /// Records the calls made to `inner`.
    pub fn new(inner: Arc<dyn JobQueue>) -> Self {
        Self {
            inner,
            visibility_changes: Mutex::default(),
        }
    }

    /// The timeouts of every `change_visibility` so far, in order.
    pub fn visibility_changes(&self) -> Vec<Duration> {
        self.visibility_changes.lock().unwrap().clone()
    }
}

#[async_trait]
impl JobQueue for RecordingQueue {
    async fn send_with(&self, body: &str, options: SendOptions<'_>) -> Result<String, QueueError> {
        self.inner.send_with(body, options).await
    }

    async fn send_batch(
        &self,
        messages: &[crate::queue::Outgoing<'_>],
    ) -> Vec<Result<String, QueueError>> {
        self.inner.send_batch(messages).await
    }

    async fn change_visibility(
        &self,
        receipt_handle: &str,
        timeout: Duration,
    ) -> Result<(), QueueError> {
        self.visibility_changes.lock().unwrap().push(timeout);
        self.inner.change_visibility(receipt_handle, timeout).await
    }

    async fn receive(&self, max: u32, wait: Duration) -> Result<Vec<ReceivedMessage>, QueueError> {
        self.inner.receive(max, wait).await
    }

    async fn delete(&self, receipt_handle: &str) -> Result<(), QueueError> {
        self.inner.delete(receipt_handle).await
    }

    async fn depth(&self) -> Result<QueueDepth, QueueError> {
        self.inner.depth().await
    }
}

/// A log writer that keeps what it is given, for tests that read log lines.
#[derive(Debug, Clone, Default)]
pub struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    /// The JSON lines written so far, parsed.
    pub fn lines(&self) -> Vec<Value> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }
}

impl std::io::Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = Self;
    fn make_writer(&'a self) -> Self {
        self.clone()
    }
}

/// Headers of a JSON request.
pub fn json_headers() -> http::HeaderMap {
    http::HeaderMap::from_iter([(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    )])
}

/// Submits `body` as an anonymous caller and returns the accepted job's id; panics on anything
/// but `202`.
pub async fn submit(app: &App, body: Value) -> JobId {
    submit_as(app, crate::domain::Owner::anonymous(), body).await
}

/// Submits `body` as `owner` and returns the accepted job's id; panics on anything but `202`.
pub async fn submit_as(app: &App, owner: crate::domain::Owner, body: Value) -> JobId {
    let body = body.to_string();
    let response = crate::api::submit_job(app, owner, &json_headers(), body.as_bytes()).await;
    assert_eq!(
        response.status(),
        http::StatusCode::ACCEPTED,
        "{}",
        response.body()
    );
    let accepted: Value = serde_json::from_str(response.body()).unwrap();
    JobId::parse(accepted["id"].as_str().unwrap()).unwrap()
}

/// The built-in processors plus a `Counting` one registered as kind `counting`.
pub fn processors_with(counting: &Counting) -> Processors {
    kinds::builtin().with("counting", counting.clone())
}

/// Settings for fast tests: no backoff, three attempts, the visibility timeout of the queues of a
/// [`MemoryPipeline`].
pub fn fast_settings() -> Settings {
    Settings {
        max_attempts: 3,
        visibility_timeout: Duration::from_secs(30),
        max_receive_count: 4,
        backoff_base: Duration::ZERO,
        backoff_max: Duration::ZERO,
        ..Settings::default()
    }
}

/// A whole pipeline in memory: the app, its normal lane's DLQ, and an event source mapping for
/// each lane.
#[derive(Debug, Clone)]
pub struct MemoryPipeline {
    /// The app, on a memory store and a memory queue per lane.
    pub app: App,
    /// The normal lane's dead-letter queue.
    pub dlq: Arc<MemoryQueue>,
    /// Polls the normal lane's queue into the consumer.
    pub esm: EventSourceMapping,
    /// Polls the high lane's queue into the consumer.
    pub high_esm: EventSourceMapping,
}

impl MemoryPipeline {
    /// Polls the normal lane's queue into the consumer until the task is aborted, each receive
    /// waiting up to `wait` for a message: the consumer running beside a test.
    pub fn run_consumer(&self, wait: Duration) -> tokio::task::JoinHandle<()> {
        let pipeline = self.clone();
        tokio::spawn(async move {
            loop {
                let _ = pipeline.esm.poll_once(&pipeline.app, wait).await;
            }
        })
    }

    /// A pipeline with `settings`, whose queue redrives after `settings.max_receive_count`
    /// receives and hides a received message for `settings.visibility_timeout`.
    pub fn new(settings: Settings, processors: Processors) -> Self {
        let dlq = Arc::new(MemoryQueue::new(Duration::from_secs(30)));
        let queues = Lanes::from_fn(|priority| -> Arc<dyn JobQueue> {
            let queue = MemoryQueue::new(settings.visibility_timeout);
            Arc::new(match priority {
                Priority::Normal => {
                    queue.with_dead_letter_queue(dlq.clone(), settings.max_receive_count)
                }
                Priority::High => queue.with_dead_letter_queue(
                    Arc::new(MemoryQueue::new(Duration::from_secs(30))),
                    settings.max_receive_count,
                ),
            })
        });
        let app = App::new(Arc::new(MemoryStore::new()), queues.clone(), settings)
            .with_processors(processors);
        let esm = |priority: Priority, name: &str| EventSourceMapping {
            queue: queues.get(priority).clone(),
            queue_arn: format!("arn:aws:sqs:us-east-1:123456789012:{name}"),
            region: "us-east-1".to_owned(),
            batch_size: 10,
            batching_window: Duration::ZERO,
            function_timeout: Duration::from_secs(30),
        };
        Self {
            esm: esm(Priority::Normal, "spillway-jobs"),
            high_esm: esm(Priority::High, "spillway-jobs-high"),
            app,
            dlq,
        }
    }
}
