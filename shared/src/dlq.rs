//! Operating on the dead-letter queue: listing what is there, and redriving it to the work queue
//! with the jobs set back to `pending`, in an order that loses nothing when interrupted.

use std::time::Duration;

use tracing::{info, warn};

use crate::clock::Clock;
use crate::domain::{Change, JobId, JobMessage, Timestamp, Transition};
use crate::queue::{JobQueue, QueueError, ReceivedMessage};
use crate::store::{ApplyError, JobStore, StoreError};

/// A message in the DLQ, as `spillway dlq list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The message's id.
    pub message_id: String,
    /// The job it carries; `None` for a body that is not a job message.
    pub job_id: Option<JobId>,
    /// Receives so far, in the work queue and the DLQ.
    pub receive_count: u32,
    /// When it was first sent.
    pub sent_at: Timestamp,
}

/// What a redrive did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedriveReport {
    /// Messages sent back to the work queue and deleted from the DLQ.
    pub moved: usize,
    /// Jobs set back to `pending`.
    pub jobs_reset: usize,
    /// Messages left in the DLQ because they did not match the filter.
    pub left: usize,
}

/// A redrive failure; what was moved before it stays moved, and running it again finishes the
/// rest.
#[derive(Debug, thiserror::Error)]
pub enum RedriveError {
    /// A queue failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The job store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How a redrive sets the jobs it sends back to `pending`.
#[derive(Debug, Clone, Copy)]
pub struct Reset<'a> {
    /// The time of the change.
    pub clock: &'a dyn Clock,
    /// The table's retention (`SPILLWAY_RETENTION_SECONDS`), for each record's new expiry.
    pub retention: Duration,
    /// A new deadline, this long from now, for every job sent back; `None` keeps each job's own.
    /// The deadline a message carries cannot change: the consumer, finding the message's
    /// deadline passed, reads the job's and runs it when that one has been extended.
    pub extend: Option<Duration>,
}

impl Reset<'_> {
    fn change(&self) -> Change {
        let at = self.clock.now();
        let deadline = self.extend.map(|extend| at.saturating_add(extend));
        Change::new(Transition::Redrive { deadline }, at, self.retention)
    }
}

/// How long listed or skipped messages are hidden while a command works through the DLQ; they
/// are made visible again at the end.
const HOLD: Duration = Duration::from_secs(60);

/// Receives every message in `dlq` (up to `limit`), then makes them all visible again.
pub async fn list(dlq: &dyn JobQueue, limit: usize) -> Result<Vec<DeadLetter>, QueueError> {
    let held = receive_all(dlq, limit).await?;
    let listed = held.iter().map(describe).collect();
    release(dlq, &held).await;
    Ok(listed)
}

/// Moves the DLQ's messages (all, or those of job `only`) back to `queue`. For each message, in
/// this order: its job is set back to `pending`, the body is sent to the work queue, the message
/// is deleted from the DLQ. Interrupted between steps, the message is still in the DLQ (and a
/// second run finishes it) or in both queues (a duplicate delivery, which the consumer absorbs).
pub async fn redrive(
    store: &dyn JobStore,
    queue: &dyn JobQueue,
    dlq: &dyn JobQueue,
    reset: Reset<'_>,
    only: Option<JobId>,
) -> Result<RedriveReport, RedriveError> {
    let mut report = RedriveReport::default();
    let mut skipped = Vec::new();
    let result = async {
        loop {
            let batch = dlq.receive(10, Duration::from_secs(1)).await?;
            if batch.is_empty() {
                return Ok::<_, RedriveError>(());
            }
            for message in batch {
                let job_id = JobMessage::decode(&message.body).ok().map(|m| m.job_id);
                if only.is_some() && job_id != only {
                    // Keep it hidden until the end, so the loop does not receive it again.
                    let _ = dlq.change_visibility(&message.receipt_handle, HOLD).await;
                    skipped.push(message);
                    continue;
                }
                if let Some(id) = job_id {
                    match store.apply(id, &reset.change()).await {
                        Ok(_) => report.jobs_reset += 1,
                        // Not dead-lettered (already redriven, or finished some other way) or
                        // gone: the message still goes back; the consumer sorts it out.
                        Err(ApplyError::Rejected(_) | ApplyError::NotFound) => {}
                        Err(ApplyError::Store(error)) => return Err(error.into()),
                    }
                }
                queue.send(&message.body).await?;
                dlq.delete(&message.receipt_handle).await?;
                report.moved += 1;
                info!(message_id = %message.message_id, job_id = ?job_id, "redriven");
            }
        }
    }
    .await;
    report.left = skipped.len();
    release(dlq, &skipped).await;
    result.map(|()| report)
}

/// Sets the job of every message in `dlq` back to `pending` and leaves the messages where they
/// are, visible, for a bulk move (an SQS message move task) to carry back to the work queue.
/// Returns how many jobs it reset.
pub async fn reset_jobs(
    store: &dyn JobStore,
    dlq: &dyn JobQueue,
    reset: Reset<'_>,
) -> Result<usize, RedriveError> {
    let held = receive_all(dlq, usize::MAX).await?;
    let mut count = 0;
    let mut result = Ok(());
    for id in held
        .iter()
        .filter_map(|m| JobMessage::decode(&m.body).ok().map(|m| m.job_id))
    {
        match store.apply(id, &reset.change()).await {
            Ok(_) => count += 1,
            Err(ApplyError::Rejected(_) | ApplyError::NotFound) => {}
            Err(ApplyError::Store(error)) => {
                result = Err(error.into());
                break;
            }
        }
    }
    release(dlq, &held).await;
    result.map(|()| count)
}

async fn receive_all(dlq: &dyn JobQueue, limit: usize) -> Result<Vec<ReceivedMessage>, QueueError> {
    let mut held: Vec<ReceivedMessage> = Vec::new();
    while held.len() < limit {
        let batch = dlq.receive(10, Duration::from_secs(1)).await?;
        if batch.is_empty() {
            break;
        }
        for message in batch {
            let _ = dlq.change_visibility(&message.receipt_handle, HOLD).await;
            held.push(message);
        }
    }
    Ok(held)
}

async fn release(dlq: &dyn JobQueue, held: &[ReceivedMessage]) {
    for message in held {
        if let Err(error) = dlq
            .change_visibility(&message.receipt_handle, Duration::ZERO)
            .await
        {
            warn!(message_id = %message.message_id, error = %error, "could not make a message visible again; it will be after its visibility timeout");
        }
    }
}

fn describe(message: &ReceivedMessage) -> DeadLetter {
    DeadLetter {
        message_id: message.message_id.clone(),
        job_id: JobMessage::decode(&message.body).ok().map(|m| m.job_id),
        receive_count: message.receive_count,
        sent_at: message.sent_at,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::domain::JobStatus;
    use crate::queue::MemoryQueue;
    use crate::testing::{Behaviour, Counting, MemoryPipeline, processors_with};

    async fn dead_lettered_jobs(pipeline: &MemoryPipeline, count: usize) -> Vec<JobId> {
        let mut ids = Vec::new();
        for n in 0..count {
            let body = serde_json::json!({"kind": "counting", "payload": n});
            ids.push(crate::testing::submit(&pipeline.app, body).await);
        }
        while pipeline
            .esm
            .poll_once(&pipeline.app, Duration::from_millis(10))
            .await
            .unwrap()
            .is_some()
        {}
        for id in &ids {
            assert_eq!(
                pipeline.app.store.get(*id).await.unwrap().unwrap().status,
                JobStatus::DeadLettered
            );
        }
        ids
    }

    fn reset(app: &crate::App, extend: Option<Duration>) -> Reset<'_> {
        Reset {
            clock: app.clock.as_ref(),
            retention: Duration::from_secs(60),
            extend,
        }
    }

    fn failing_pipeline() -> MemoryPipeline {
        let counting = Counting::new(Behaviour::FailRetryable);
        MemoryPipeline::new(crate::testing::fast_settings(), processors_with(&counting))
    }

    #[tokio::test]
    async fn listing_shows_every_dead_letter_and_leaves_them_in_place() {
        let pipeline = failing_pipeline();
        let ids = dead_lettered_jobs(&pipeline, 3).await;
        let listed = list(pipeline.dlq.as_ref(), 100).await.unwrap();
        let mut listed_ids: Vec<_> = listed.iter().filter_map(|d| d.job_id).collect();
        listed_ids.sort();
        assert_eq!(listed_ids, ids);
        assert_eq!(
            pipeline.dlq.depth().await.unwrap().visible,
            3,
            "listing hides nothing"
        );
    }

    #[tokio::test]
    async fn a_redrive_of_one_job_moves_only_its_message_and_it_runs_again() {
        let pipeline = failing_pipeline();
        let ids = dead_lettered_jobs(&pipeline, 3).await;
        let app = &pipeline.app;
        let report = redrive(
            app.store.as_ref(),
            app.queues.normal.as_ref(),
            pipeline.dlq.as_ref(),
            reset(app, None),
            Some(ids[1]),
        )
        .await
        .unwrap();
        assert_eq!(
            report,
            RedriveReport {
                moved: 1,
                jobs_reset: 1,
                left: 2
            }
        );
        assert_eq!(
            app.store.get(ids[1]).await.unwrap().unwrap().status,
            JobStatus::Pending
        );
        assert_eq!(pipeline.dlq.depth().await.unwrap().visible, 2);
        let delivered = pipeline
            .esm
            .poll_once(app, Duration::ZERO)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            delivered.received, 1,
            "the redriven message is back in the work queue"
        );
    }

    #[tokio::test]
    async fn resetting_the_jobs_leaves_every_message_in_place_for_a_bulk_move() {
        let pipeline = failing_pipeline();
        let ids = dead_lettered_jobs(&pipeline, 2).await;
        let app = &pipeline.app;
        let reset = reset_jobs(app.store.as_ref(), pipeline.dlq.as_ref(), reset(app, None))
            .await
            .unwrap();
        assert_eq!(reset, 2);
        for id in ids {
            assert_eq!(
                app.store.get(id).await.unwrap().unwrap().status,
                JobStatus::Pending
            );
        }
        assert_eq!(pipeline.dlq.depth().await.unwrap().visible, 2);
    }

    #[tokio::test]
    async fn an_interrupted_redrive_finishes_when_run_again() {
        let pipeline = failing_pipeline();
        let ids = dead_lettered_jobs(&pipeline, 2).await;
        let app = &pipeline.app;
        // As if a first run stopped after resetting the job and before moving its message.
        let change = Change::new(
            Transition::Redrive { deadline: None },
            app.clock.now(),
            Duration::from_secs(60),
        );
        app.store.apply(ids[0], &change).await.unwrap();

        let dlq: Arc<dyn JobQueue> = pipeline.dlq.clone();
        let report = redrive(
            app.store.as_ref(),
            app.queues.normal.as_ref(),
            dlq.as_ref(),
            reset(app, None),
            None,
        )
        .await
        .unwrap();
        assert_eq!(
            report,
            RedriveReport {
                moved: 2,
                jobs_reset: 1,
                left: 0
            }
        );
        assert_eq!(app.queues.normal.depth().await.unwrap().visible, 2);
        assert_eq!(dlq.depth().await.unwrap().total(), 0);
    }

    #[tokio::test]
    async fn a_redrive_with_extend_runs_a_job_whose_deadline_had_passed() {
        let pipeline = failing_pipeline();
        let ids = dead_lettered_jobs(&pipeline, 1).await;
        let app = &pipeline.app;
        // Its deadline passes while it waits in the DLQ: without --extend, the redrive expires it.
        let past = Timestamp::from_millis(app.clock.now().as_millis() - 1_000);
        let job = app.store.get(ids[0]).await.unwrap().unwrap();
        let mut message =
            JobMessage::decode(&pipeline.dlq.receive(1, Duration::ZERO).await.unwrap()[0].body)
                .unwrap();
        assert_eq!(message.deadline, job.deadline);
        message.deadline = past;
        let dlq = MemoryQueue::new(Duration::from_secs(30));
        dlq.send(&message.encode()).await.unwrap();

        let report = redrive(
            app.store.as_ref(),
            app.queues.normal.as_ref(),
            &dlq,
            reset(app, Some(Duration::from_secs(3600))),
            None,
        )
        .await
        .unwrap();
        assert_eq!((report.moved, report.jobs_reset), (1, 1));
        let extended = app.store.get(ids[0]).await.unwrap().unwrap();
        assert!(extended.deadline > app.clock.now().saturating_add(Duration::from_secs(3500)));
        assert!(extended.expires_at >= extended.deadline.saturating_add(Duration::from_secs(60)));

        pipeline.esm.poll_once(app, Duration::ZERO).await.unwrap();
        let ran = app.store.get(ids[0]).await.unwrap().unwrap();
        assert_eq!(
            (ran.status, ran.attempts),
            (JobStatus::DeadLettered, 4),
            "it ran (and, failing again on a redriven attempt, went back) instead of expiring"
        );
    }
}
