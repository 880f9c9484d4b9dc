//! The consumer: one SQS batch in, the ids of the records to retry out. See docs/architecture.md,
//! "Consumer", and docs/guarantees.md.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{Instrument, Span, error, info, info_span, warn};

use self::heartbeat::{Heartbeat, LeaseLost};
use crate::app::App;
use crate::config::Settings;
use crate::domain::{Change, Job, JobMessage, JobStatus, Priority, Timestamp, Transition};
use crate::metrics::{Metric, millis};
use crate::processor::{ProcessError, Processor, Reporter, Work};
use crate::queue::{MAX_VISIBILITY, SendOptions};
use crate::store::{ApplyError, Created, Slot, StoreError};

/// The time kept back from a processor at the end of an invocation, to record its outcome and
/// reschedule its message before Lambda stops the invocation.
pub const WRAP_UP: Duration = Duration::from_secs(1);
/// The largest result kept in the table (DynamoDB items hold at most 400 KB).
pub const MAX_RESULT_BYTES: usize = 300_000;

/// What happens to one record's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Handled: the message may be deleted.
    Done,
    /// Report it failed: the message stays and comes back when its visibility timeout ends, or
    /// moves to the DLQ once its receive count passes `maxReceiveCount`.
    Failed,
}

/// Handles one SQS batch: every record concurrently (up to the configured bound), each on its own
/// task, so a panic or a slow record affects no other. `invocation_deadline` is when the Lambda
/// invocation ends; processors are stopped before it.
pub async fn handle_batch(
    app: &App,
    event: SqsEvent,
    invocation_deadline: Timestamp,
) -> SqsBatchResponse {
    let permits = Arc::new(Semaphore::new(app.settings.consumer_concurrency));
    let mut tasks = JoinSet::new();
    let mut message_ids = HashMap::new();
    for record in event.records {
        let message_id = record.message_id.clone().unwrap_or_default();
        let span = info_span!(
            "record",
            message_id = %message_id,
            job_id = tracing::field::Empty,
            correlation_id = tracing::field::Empty,
            attempt = tracing::field::Empty
        );
        let app = app.clone();
        let permits = permits.clone();
        let task = tasks.spawn(
            async move {
                // The semaphore is never closed, so acquiring only waits.
                let _permit = permits.acquire_owned().await;
                handle_record(&app, record, invocation_deadline).await
            }
            .instrument(span),
        );
        message_ids.insert(task.id(), message_id);
    }

    let mut failures = Vec::new();
    while let Some(joined) = tasks.join_next_with_id().await {
        match joined {
            Ok((id, Outcome::Failed)) => failures.extend(message_ids.remove(&id)),
            Ok((_, Outcome::Done)) => {}
            Err(join_error) => {
                // Processors run on tasks of their own with their panics caught, so this is a
                // panic in Spillway itself; it still fails this record only.
                error!(error = %join_error, "a record's task failed");
                failures.extend(message_ids.remove(&join_error.id()));
            }
        }
    }
    let mut response = SqsBatchResponse::default();
    for message_id in failures {
        let mut failure = BatchItemFailure::default();
        failure.item_identifier = message_id;
        response.batch_item_failures.push(failure);
    }
    response
}

async fn handle_record(app: &App, record: SqsMessage, invocation_deadline: Timestamp) -> Outcome {
    if record.message_id.as_deref().unwrap_or_default().is_empty() {
        // Reporting an empty identifier makes Lambda fail the whole batch: nothing is deleted
        // that could not be accounted for.
        error!("a record without a message id; failing the batch");
        return Outcome::Failed;
    }
    let mut record = Record {
        app,
        record: &record,
        invocation_deadline,
        priority: Priority::Normal,
    };
    let Some(message) = record.read_message() else {
        return Outcome::Failed;
    };
    // The lane the job was accepted into is the queue its message is on.
    record.priority = message.priority();
    record.handle(message).await
}

struct Record<'a> {
    app: &'a App,
    record: &'a SqsMessage,
    invocation_deadline: Timestamp,
    /// The lane of the message's queue: where its visibility is changed.
    priority: Priority,
}

impl Record<'_> {
    async fn handle(&self, message: JobMessage) -> Outcome {
        let receive_count = self.receive_count();
        let now = self.app.clock.now();
        if let Some(due) = message.run_at
            && due > now
        {
            return self.send_on(&message, due, now).await;
        }
        if now > message.deadline
            && let Some(outcome) = self.expire(&message).await
        {
            return outcome;
        }
        let budget = self
            .invocation_deadline
            .saturating_since(now)
            .saturating_sub(WRAP_UP);
        if budget.is_zero() {
            warn!("no time left in this invocation; leaving the message for the next");
            return Outcome::Failed;
        }
        let lease_until = heartbeat::lease_until(
            now,
            self.app.settings.visibility_timeout,
            self.invocation_deadline,
        );
        let slot = match self.take_slot(&message, lease_until).await {
            Ok(slot) => slot,
            Err(outcome) => return outcome,
        };
        let job = match self.claim(&message).await {
            Ok(job) => job,
            Err(outcome) => {
                self.give_back(slot).await;
                return outcome;
            }
        };
        let span = Span::current();
        span.record("attempt", job.attempts);
        if message.correlation_id.is_none()
            && let Some(correlation_id) = &job.correlation_id
        {
            span.record("correlation_id", correlation_id.as_str());
        }
        info!(kind = %message.kind, receive_count, "claimed");
        let outcome = self
            .process(message, &job, budget, receive_count, slot.as_ref())
            .await;
        self.give_back(slot).await;
        outcome
    }

    /// The record's job message, its ids on the span and its wait in the queue measured; `None`
    /// (the record fails, and its message goes on to the DLQ) when the body is not one.
    fn read_message(&self) -> Option<JobMessage> {
        let body = self.record.body.as_deref().unwrap_or_default();
        let message = JobMessage::decode(body)
            .inspect_err(|error| {
                warn!(error = %error, body_bytes = body.len(), "undecodable message; it will reach the DLQ");
            })
            .ok()?;
        let span = Span::current();
        span.record("job_id", tracing::field::display(message.job_id));
        if let Some(correlation_id) = &message.correlation_id {
            span.record("correlation_id", correlation_id.as_str());
        }
        // A scheduled job waits from when it is due; before then its message is only passing
        // through.
        if self.app.metrics.is_on()
            && let Some(sent_at) = self.sent_at()
        {
            let now = self.app.clock.now();
            let waiting_since = message.run_at.map_or(sent_at, |due| due.max(sent_at));
            if now >= waiting_since {
                self.app.metrics.for_job(
                    now,
                    &message.kind,
                    message.priority(),
                    &[(
                        Metric::QueueWaitTime,
                        millis(now.saturating_since(waiting_since)),
                    )],
                );
            }
        }
        Some(message)
    }

    /// The message of a job not yet due, received after as long as SQS could delay it: sent on
    /// again, delayed until the job is due or as near as SQS allows, then acknowledged. Nothing
    /// is read or written: a cancelled job's message hops on until it is due and then finds the
    /// job cancelled. Should the send fail, the message stays and comes back after the same
    /// delay; should the acknowledgement be lost, two copies arrive when the job is due and only
    /// one claim succeeds.
    async fn send_on(&self, message: &JobMessage, due: Timestamp, now: Timestamp) -> Outcome {
        let delay = crate::queue::delay_until(due, now);
        match self.send_again(message, delay).await {
            Ok(message_id) => {
                info!(%due, delay_s = delay.as_secs(), message_id = %message_id, "not due yet; sent on");
                Outcome::Done
            }
            Err(error) => {
                warn!(error = %crate::error::Chain(&error), "could not send the message on; it stays");
                self.reschedule(delay).await;
                Outcome::Failed
            }
        }
    }

    /// Sends this record's message again, as it is, on its lane and in its owner's fairness
    /// group, delayed by `delay`.
    async fn send_again(
        &self,
        message: &JobMessage,
        delay: Duration,
    ) -> Result<String, crate::queue::QueueError> {
        let group = message.origin.as_ref().map(|o| o.owner.fairness_key());
        let options = SendOptions {
            group: group.as_deref(),
            delay,
        };
        let body = self.record.body.as_deref().unwrap_or_default();
        self.app
            .queues
            .get(self.priority)
            .send_with(body, options)
            .await
    }

    /// Runs the claimed `job`'s processor within `budget` and records what came of it; its
    /// heartbeats renew `slot` too.
    async fn process(
        &self,
        message: JobMessage,
        job: &Job,
        budget: Duration,
        receive_count: u32,
        slot: Option<&Slot>,
    ) -> Outcome {
        let Some(processor) = self.app.processors.get(&message.kind).cloned() else {
            let error = ProcessError::retryable(format!(
                "no processor for kind `{}` in this consumer",
                message.kind
            ));
            return self
                .record_outcome(job, receive_count, Err(error), None)
                .await;
        };
        let reporter = Reporter::new(self.app.clock.clone());
        let work = Work {
            job_id: message.job_id,
            kind: message.kind,
            payload: message.payload,
            attempt: job.attempts,
            // The table's: a redrive may have extended the one the message carries.
            deadline: job.deadline,
            owner: job.owner.clone(),
            correlation_id: message
                .correlation_id
                .clone()
                .or_else(|| job.correlation_id.clone()),
            reporter: reporter.clone(),
        };
        let heartbeat = Heartbeat {
            record: self,
            job_id: job.id,
            attempt: job.attempts,
            lease_until: job.lease_until.unwrap_or(self.invocation_deadline),
            reporter,
            slot,
        };
        let limits = self.app.processors.limits(&work.kind);
        let started = std::time::Instant::now();
        let result = run(processor, work, budget, limits.timeout, heartbeat.keep()).await;
        info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            ok = result.is_ok(),
            "processed"
        );
        self.record_outcome(job, receive_count, result, Some(started.elapsed()))
            .await
    }

    /// When the message was first sent (`SentTimestamp`, epoch milliseconds).
    fn sent_at(&self) -> Option<Timestamp> {
        self.record
            .attributes
            .get("SentTimestamp")
            .and_then(|millis| millis.parse().ok())
            .map(Timestamp::from_millis)
    }

    /// How many times SQS has delivered this message, this time included.
    fn receive_count(&self) -> u32 {
        self.record
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|count| count.parse().ok())
            .unwrap_or(1)
    }

    /// Claims the job, writing it first from its message when the table does not hold it: intake
    /// sends a job's message before it writes the job, so the write may not have landed yet, or
    /// ever. `Err` holds what to do with a message that runs nothing now.
    async fn claim(&self, message: &JobMessage) -> Result<Job, Outcome> {
        let claim = self.app.change(Transition::Claim {
            lease_until: heartbeat::lease_until(
                self.app.clock.now(),
                self.app.settings.visibility_timeout,
                self.invocation_deadline,
            ),
            max_attempts: self.app.max_attempts(&message.kind),
        });
        match self.apply_to_message_job(message, &claim).await? {
            Ok(job) => Ok(job),
            Err(error) => Err(self.not_claimed(error).await),
        }
    }

    /// Applies `change` to the job of `message`, writing the job from its message first when
    /// the table does not hold it. `Err` holds what to do with a message whose job could not be
    /// written (forgotten, its key taken, or the store failing).
    async fn apply_to_message_job(
        &self,
        message: &JobMessage,
        change: &Change,
    ) -> Result<Result<Job, ApplyError>, Outcome> {
        let applied = self.app.store.apply(message.job_id, change).await;
        if !matches!(applied, Err(ApplyError::NotFound)) {
            return Ok(applied);
        }
        self.write_accepted(message).await?;
        Ok(self.app.store.apply(message.job_id, change).await)
    }

    /// Writes the job (and its idempotency key) that `message` describes, as intake would have.
    /// A message older than the table's retention names a job the table may have forgotten: it
    /// is acknowledged and counted, and nothing runs. So is a message whose key another request
    /// took first: that request's job is the one that runs.
    async fn write_accepted(&self, message: &JobMessage) -> Result<(), Outcome> {
        let now = self.app.clock.now();
        // A job's record outlives its creation by at least `SPILLWAY_RETENTION_SECONDS`, however
        // it ends: until then, a job missing from the table was never written, and is written
        // now (to run, or to expire with its callback). After that it may have finished and been
        // forgotten, and writing it again would run it twice.
        let accepted = message
            .accepted_job()
            .filter(|(job, _)| now < job.created_at.saturating_add(self.app.settings.retention));
        let Some((job, record)) = accepted else {
            warn!("message for a job the table no longer holds; acknowledged, nothing run");
            self.app.metrics.for_job(
                now,
                &message.kind,
                message.priority(),
                &[(Metric::JobsForgotten, 1.0)],
            );
            return Err(Outcome::Done);
        };
        // A fan-out child's parent first, with the request's key: the parent must exist for
        // the last child to settle, and a child whose parent lost the key runs nothing.
        if let Some((parent, record)) = message.accepted_parent() {
            let created = self.app.store.create(&parent, record.as_ref()).await;
            match Created::of(created, parent.id) {
                Ok(Created::Written) => {
                    info!(parent_id = %parent.id, "fan-out parent written from a child's message: intake's write had not landed");
                }
                Ok(Created::AlreadyThere) => {}
                Ok(Created::KeyTaken(first)) => {
                    info!(first_job_id = %first.job_id, "another request took this fan-out's Idempotency-Key first; nothing to run");
                    return Err(Outcome::Done);
                }
                Err(error) => return Err(self.store_failed(&error).await),
            }
        }
        match Created::of(self.app.store.create(&job, record.as_ref()).await, job.id) {
            Ok(Created::Written) => {
                info!("job written from its message: intake's write had not landed");
                Ok(())
            }
            Ok(Created::AlreadyThere) => Ok(()),
            Ok(Created::KeyTaken(first)) => {
                info!(first_job_id = %first.job_id, "another request took this job's Idempotency-Key first; nothing to run");
                Err(Outcome::Done)
            }
            Err(error) => Err(self.store_failed(&error).await),
        }
    }

    /// Expires a job whose message's deadline passed; `None` when the table's deadline has been
    /// extended since (a redrive with `--extend`), and the job is to run after all.
    async fn expire(&self, message: &JobMessage) -> Option<Outcome> {
        let expired = match self
            .apply_to_message_job(message, &self.app.change(Transition::Expire))
            .await
        {
            Ok(expired) => expired,
            Err(outcome) => return Some(outcome),
        };
        match expired {
            Ok(job) => {
                info!(deadline = %job.deadline, "expired before it could run");
                self.app.metrics.reached(job.updated_at, &job, &[]);
                Some(self.with_callback(&job, Outcome::Done).await)
            }
            Err(ApplyError::Rejected(job))
                if !job.status.is_terminal() && job.deadline >= self.app.clock.now() =>
            {
                info!(deadline = %job.deadline, "deadline extended since the message was sent");
                None
            }
            Err(error) => Some(self.not_claimed(error).await),
        }
    }

    /// The store failed before anything ran: the message comes back after a backoff that grows
    /// with its receives, so a long outage burns few of them (the queue's `maxReceiveCount` leaves
    /// room for that above `SPILLWAY_MAX_ATTEMPTS`, which counts only the job's own attempts).
    async fn store_failed(&self, error: &StoreError) -> Outcome {
        error!(error = %crate::error::Chain(error), "job store failed");
        let receive_count = self.receive_count();
        if receive_count >= self.app.settings.max_receive_count {
            error!(
                receive_count,
                "the last receive SQS allows: the message moves to the DLQ with its job unfinished; \
                 redrive it once the table is back"
            );
        }
        let delay = outage_backoff(&self.app.settings, receive_count);
        self.reschedule(delay).await;
        Outcome::Failed
    }

    /// Makes the message visible again after `delay`; when that fails it comes back after the
    /// queue's own visibility timeout instead.
    async fn reschedule(&self, delay: Duration) {
        if let Some(receipt_handle) = self.record.receipt_handle.as_deref()
            && let Err(error) = self
                .app
                .queues
                .get(self.priority)
                .change_visibility(receipt_handle, delay)
                .await
        {
            warn!(error = %crate::error::Chain(&error), "could not reschedule the message");
        }
    }

    /// Hides the message for another visibility timeout, while its job runs on; when that fails
    /// it may come back early, and its delivery then finds the job leased and backs off.
    async fn extend_visibility(&self) {
        if let Some(receipt_handle) = self.record.receipt_handle.as_deref()
            && let Err(error) = self
                .app
                .queues
                .get(self.priority)
                .change_visibility(receipt_handle, self.app.settings.visibility_timeout)
                .await
        {
            warn!(error = %crate::error::Chain(&error), "could not extend the message's visibility");
        }
    }

    /// `outcome`, once the callback of a terminal `job` is made sure of, and for a fan-out
    /// child its end counted on its parent; when that fails the message stays, and its next
    /// delivery finds the job terminal and tries again.
    async fn with_callback(&self, job: &Job, outcome: Outcome) -> Outcome {
        let ensured = match callback::ensure(self.app, job).await {
            Ok(()) => fanin::ensure(self.app, job).await,
            failed => failed,
        };
        match ensured {
            Ok(()) => outcome,
            Err(error) => {
                error!(error = %crate::error::Chain(&error), "callback not enqueued; the message stays");
                Outcome::Failed
            }
        }
    }

    /// A claim or expiry was refused: decide from the job's actual state.
    async fn not_claimed(&self, error: ApplyError) -> Outcome {
        match error {
            ApplyError::Rejected(job) => match job.status {
                // Leave a dead-lettered job's message for SQS to move to the DLQ, where a redrive
                // can find it; deleting it would strand the job. Visible at once, so the receives
                // left before the move go by quickly.
                JobStatus::DeadLettered => self.leave_for_dlq(&job).await,
                status if status.is_terminal() => {
                    info!(status = %status, "already finished; duplicate delivery acknowledged");
                    self.with_callback(&job, Outcome::Done).await
                }
                _ if self.abandoned_on_its_last_attempt(&job) => {
                    self.dead_letter_abandoned(&job).await
                }
                _ => {
                    info!(lease_until = ?job.lease_until, "leased by another consumer; backing off");
                    Outcome::Failed
                }
            },
            ApplyError::NotFound => {
                error!("the job vanished between its write and its claim; the message stays");
                Outcome::Failed
            }
            ApplyError::Store(error) => self.store_failed(&error).await,
        }
    }

    /// Leaves a dead-lettered job's message for SQS to move to the DLQ, visible at once so that
    /// its remaining receives go by quickly, after finishing its callback.
    async fn leave_for_dlq(&self, job: &Job) -> Outcome {
        let outcome = self.with_callback(job, Outcome::Failed).await;
        self.reschedule(Duration::ZERO).await;
        outcome
    }

    /// Whether `job` was left `running` by its last attempt, whose invocation died before it
    /// recorded an outcome: claiming it again would run more attempts than configured.
    fn abandoned_on_its_last_attempt(&self, job: &Job) -> bool {
        let now = self.app.clock.now();
        job.status == JobStatus::Running
            && job.lease_until.is_none_or(|until| until < now)
            && job.attempts >= self.app.max_attempts(&job.kind)
    }

    /// Dead-letters a job abandoned on its last attempt, on that attempt's behalf, and leaves its
    /// message for SQS to move to the DLQ.
    async fn dead_letter_abandoned(&self, job: &Job) -> Outcome {
        let transition = Transition::DeadLetter {
            attempt: job.attempts,
            error: "the last attempt ended without recording an outcome".to_owned(),
        };
        match self
            .app
            .store
            .apply(job.id, &self.app.change(transition))
            .await
        {
            Ok(dead) => {
                warn!(
                    attempt = dead.attempts,
                    "last attempt abandoned; dead-lettered"
                );
                self.app.metrics.reached(dead.updated_at, &dead, &[]);
                self.leave_for_dlq(&dead).await
            }
            // Someone else changed it first, or the store failed: the message comes back.
            Err(ApplyError::Store(error)) => self.store_failed(&error).await,
            Err(_) => Outcome::Failed,
        }
    }

    async fn record_outcome(
        &self,
        job: &Job,
        receive_count: u32,
        result: Result<Value, ProcessError>,
        processing: Option<Duration>,
    ) -> Outcome {
        let max_attempts = self.app.max_attempts(&job.kind);
        let (transition, delay) = decide(&self.app.settings, max_attempts, job.attempts, result);
        let to = transition.target();
        let recorded = match self
            .app
            .store
            .apply(job.id, &self.app.change(transition))
            .await
        {
            Ok(recorded) => recorded,
            Err(error) => {
                // Another consumer claimed the job after our lease lapsed, or the store failed:
                // the message stays, and whoever holds the job now decides.
                warn!(error = %crate::error::Chain(&error), to = %to, "outcome not recorded");
                return Outcome::Failed;
            }
        };
        info!(status = %to, "recorded");
        self.publish(&recorded, processing);
        match to {
            JobStatus::Pending => {
                let delay = delay.unwrap_or_default();
                info!(
                    delay_seconds = delay.as_secs(),
                    receive_count, "retry scheduled"
                );
                self.reschedule(delay).await;
                Outcome::Failed
            }
            // Best effort: the message moves to the DLQ next, so no later delivery of it would
            // try the callback again; a failure is logged.
            JobStatus::DeadLettered => {
                self.leave_for_dlq(&recorded).await;
                Outcome::Failed
            }
            _ => self.with_callback(&recorded, Outcome::Done).await,
        }
    }

    /// The metrics of a job that reached `recorded`'s state: its processing time, and a retry
    /// when it went back to `pending`.
    fn publish(&self, recorded: &Job, processing: Option<Duration>) {
        if !self.app.metrics.is_on() {
            return;
        }
        let mut extra = Vec::with_capacity(2);
        if let Some(processing) = processing {
            extra.push((Metric::ProcessingTime, millis(processing)));
        }
        if recorded.status == JobStatus::Pending {
            extra.push((Metric::Retries, 1.0));
        }
        self.app
            .metrics
            .reached(recorded.updated_at, recorded, &extra);
    }
}

/// What attempt `attempt`'s result makes of its job, and for a retry how long its message waits.
/// The job's own attempts decide which is the last, not the message's receives: a replayed or
/// duplicated message, or a delivery whose claim failed, grants no attempt.
fn decide(
    settings: &Settings,
    max_attempts: u32,
    attempt: u32,
    result: Result<Value, ProcessError>,
) -> (Transition, Option<Duration>) {
    let last_attempt = attempt >= max_attempts;
    let result = result.map_err(|error| match error {
        ProcessError::Permanent { message } => ProcessError::Permanent {
            message: bounded(message),
        },
        ProcessError::Retryable {
            message,
            retry_after,
        } => ProcessError::Retryable {
            message: bounded(message),
            retry_after,
        },
    });
    match result {
        Ok(result) if json_len(&result) > MAX_RESULT_BYTES => {
            let error = format!("the result is larger than {MAX_RESULT_BYTES} bytes");
            (Transition::Fail { attempt, error }, None)
        }
        Ok(result) => (Transition::Succeed { attempt, result }, None),
        Err(ProcessError::Permanent { message }) => (
            Transition::Fail {
                attempt,
                error: message,
            },
            None,
        ),
        Err(ProcessError::Retryable { message, .. }) if last_attempt => (
            Transition::DeadLetter {
                attempt,
                error: message,
            },
            None,
        ),
        Err(ProcessError::Retryable {
            message,
            retry_after,
        }) => (
            Transition::Retry {
                attempt,
                error: message,
            },
            Some(backoff(settings, attempt, retry_after)),
        ),
    }
}

/// The most characters of a processor's error the job keeps: enough for any diagnosis, and a
/// bound that keeps the item far within DynamoDB's 400 KB whatever a processor returns.
pub const MAX_ERROR_CHARS: usize = 4_096;

/// `message`, cut to [`MAX_ERROR_CHARS`] with an ellipsis when longer.
fn bounded(message: String) -> String {
    match message.char_indices().nth(MAX_ERROR_CHARS) {
        Some((at, _)) => {
            let mut cut = message;
            cut.truncate(at);
            cut.push('…');
            cut
        }
        None => message,
    }
}

/// Runs a processor on its own task, so a panic fails this record only, beside its `heartbeat`,
/// and stops it when the budget runs out or the heartbeat says the attempt lost its job.
async fn run(
    processor: Arc<dyn Processor>,
    work: Work,
    budget: Duration,
    timeout: Option<Duration>,
    heartbeat: impl Future<Output = LeaseLost>,
) -> Result<Value, ProcessError> {
    let task = tokio::spawn(async move { processor.process(&work).await }.in_current_span());
    let abort = task.abort_handle();
    let own = timeout.filter(|timeout| *timeout < budget);
    let finished = tokio::select! {
        finished = tokio::time::timeout(own.unwrap_or(budget), task) => finished,
        lost = heartbeat => {
            abort.abort();
            return Err(ProcessError::retryable(lost.reason()));
        }
    };
    match finished {
        Ok(Ok(result)) => result,
        Ok(Err(join_error)) => {
            let reason = match join_error.try_into_panic() {
                Ok(panic) => panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a non-string panic".to_owned()),
                Err(_) => "cancelled".to_owned(),
            };
            error!(reason = %reason, "processor panicked");
            Err(ProcessError::retryable(format!(
                "the processor panicked: {reason}"
            )))
        }
        Err(_) => {
            abort.abort();
            Err(ProcessError::retryable(match own {
                Some(timeout) => format!(
                    "the processor did not finish within its kind's timeout ({} ms)",
                    timeout.as_millis()
                ),
                None => format!(
                    "the processor did not finish within the {} ms this invocation had left",
                    budget.as_millis()
                ),
            }))
        }
    }
}

/// How long a message waits after the store failed on its receive number `receive_count`:
/// `outage_backoff`, doubling, at most `backoff_max`. With the defaults (30 s, 15 minutes, 15
/// receives between `max_attempts` and `max_receive_count`), a table outage of about three hours
/// moves no job with attempts left to the DLQ.
pub fn outage_backoff(settings: &Settings, receive_count: u32) -> Duration {
    let exponent = receive_count.saturating_sub(1).min(20);
    settings
        .outage_backoff
        .saturating_mul(1 << exponent)
        .min(settings.backoff_max)
        .min(MAX_VISIBILITY)
}

/// The delay before retry number `attempt`: full jitter over `base · 2^(attempt−1)`, capped at the
/// configured maximum; a processor's own `Retry-After` wins when longer.
pub fn backoff(settings: &Settings, attempt: u32, retry_after: Option<Duration>) -> Duration {
    backoff_drawn(settings, attempt, retry_after, |ceiling_ms| {
        fastrand::u64(0..=ceiling_ms)
    })
}

/// [`backoff`] with the jitter drawn by `draw`, which is given the ceiling in milliseconds and
/// returns a number of milliseconds from 0 to it: `spillway simulate` draws from its own seeded
/// generator, so a simulated retry waits exactly as long as the consumer's would.
pub fn backoff_drawn(
    settings: &Settings,
    attempt: u32,
    retry_after: Option<Duration>,
    draw: impl FnOnce(u64) -> u64,
) -> Duration {
    let exponent = attempt.saturating_sub(1).min(31);
    let ceiling = settings
        .backoff_base
        .saturating_mul(1 << exponent)
        .min(settings.backoff_max);
    let ceiling_ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    let drawn = Duration::from_millis(draw(ceiling_ms).min(ceiling_ms));
    // SQS counts visibility in whole seconds; round up so a retry never comes early.
    let drawn = Duration::from_secs(drawn.as_secs() + u64::from(drawn.subsec_nanos() > 0));
    drawn
        .max(retry_after.unwrap_or_default())
        .min(MAX_VISIBILITY)
}

/// The length of `value` as compact JSON, counted without building the string: the store
/// serializes the result once more when it writes it.
fn json_len(value: &Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Writing a `Value` to a writer that never fails cannot fail.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

pub(crate) mod callback;
pub(crate) mod fanin;
mod heartbeat;
pub mod slot;
#[cfg(test)]
mod tests;
