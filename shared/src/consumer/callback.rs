//! Completion callbacks. When a job that asked for one is terminal, a `webhook` job carrying its
//! final status document is created and enqueued, so a callback is signed, retried and
//! dead-lettered like any webhook.
//!
//! The callback job's id is derived from the job's id, final status and attempt count, so however
//! often this runs for one outcome (a duplicate delivery, a retry after a crash between recording
//! the outcome and enqueuing the callback) the callback is created once, and delivered once: its
//! claim is a conditional write like every job's. A job redriven from the DLQ that finishes again
//! gets a callback for its new outcome.

use serde_json::json;
use serde_json::value::to_raw_value;
use tracing::info;

use crate::app::App;
use crate::domain::{Job, JobMessage, JobStatus, Kind, NewJob, PayloadDigest};
use crate::queue::QueueError;
use crate::store::StoreError;

/// Why a callback could not be made sure of; the caller keeps the job's message so the next
/// delivery tries again.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallbackError {
    /// The job store failed.
    #[error("could not create the callback job")]
    Store(#[from] StoreError),
    /// The queue failed.
    #[error("could not enqueue the callback job")]
    Queue(#[from] QueueError),
    /// The callback's payload could not be written as JSON.
    #[error("could not encode the callback's payload")]
    Encode(#[from] serde_json::Error),
}

/// Makes sure the callback of a terminal `job` exists and has been enqueued; does nothing for a
/// job without a `callback_url` or not yet terminal.
pub(crate) async fn ensure(app: &App, job: &Job) -> Result<(), CallbackError> {
    let Some(url) = &job.callback_url else {
        return Ok(());
    };
    if !job.status.is_terminal() {
        return Ok(());
    }
    let id = job
        .id
        .derived(&format!("callback:{}:{}", job.status, job.attempts));
    let payload = to_raw_value(&json!({
        "url": url,
        "method": "POST",
        "body": crate::domain::job_document(job),
    }))?;
    let now = app.clock.now();
    let deadline = now.saturating_add(*app.settings.default_ttl.get(job.priority));
    let callback = Job::pending(NewJob {
        id,
        kind: webhook_kind(),
        owner: job.owner.clone(),
        // A callback runs in its job's lane: the one whose queue the consumer is given.
        priority: job.priority,
        created_at: now,
        deadline,
        run_at: None,
        payload: PayloadDigest::of(payload.get()),
        expires_at: deadline.saturating_add(app.settings.retention),
        callback_url: None,
        correlation_id: job.correlation_id.clone(),
    });
    let callback = match app.store.create(&callback, None).await {
        Ok(()) => callback,
        Err(StoreError::AlreadyExists) => match app.store.get(id).await? {
            // Created before but perhaps never enqueued (the run that created it stopped
            // there): enqueue it again. Should the first message exist after all, the callback
            // still runs once, as only one claim of a job succeeds at a time.
            Some(existing) if existing.status == JobStatus::Pending && existing.attempts == 0 => {
                existing
            }
            _ => return Ok(()),
        },
        Err(error) => return Err(error.into()),
    };
    let message = JobMessage::of(&callback, payload, None);
    let message_id = app
        .queues
        .get(job.priority)
        .send_in_group(&message.encode(), Some(&job.owner.fairness_key()))
        .await?;
    info!(callback_job_id = %id, message_id = %message_id, status = %job.status, "callback enqueued");
    Ok(())
}

#[allow(clippy::expect_used)]
fn webhook_kind() -> Kind {
    Kind::parse(crate::webhook::KIND).expect("the webhook kind name is valid")
}
