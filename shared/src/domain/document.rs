//! The job's public document: what `GET /jobs/{id}` serves and what a completion callback
//! delivers, so a client reads the same shape either way.

use serde::Serialize;

use super::{Child, Failure, Job, JobId, JobStatus, Priority, Progress, Timestamp};

/// The job as `GET /jobs/{id}` shows it, and as a completion callback delivers it.
#[derive(Debug, Serialize)]
pub struct JobDocument<'a> {
    id: String,
    kind: &'a str,
    priority: Priority,
    /// The job's status, or `scheduled` for a pending job that is not yet due.
    status: &'static str,
    attempts: u32,
    created_at: Timestamp,
    updated_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    started_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    run_at: Option<Timestamp>,
    deadline: Timestamp,
    /// What the processor last reported, while it runs, or of the last attempt once it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    progress: Option<&'a Progress>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    /// A fan-out child's parent.
    #[serde(skip_serializing_if = "Option::is_none")]
    parent: Option<JobId>,
    /// A fan-out child's target.
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<&'a str>,
    /// A fan-out parent's children, each with its own document.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    children: &'a [Child],
    /// A fan-out parent's children that did not succeed, once it ended.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    failures: &'a [Failure],
}

impl<'a> JobDocument<'a> {
    /// The document of `job` at `now`: its result only once it has succeeded.
    pub fn of(job: &'a Job, now: Timestamp) -> Self {
        let link = job.fanout.as_ref().and_then(|f| f.parent());
        Self {
            id: job.id.to_string(),
            kind: job.kind.as_str(),
            priority: job.priority,
            status: if job.is_scheduled_at(now) {
                "scheduled"
            } else {
                job.status.as_str()
            },
            attempts: job.attempts,
            created_at: job.created_at,
            updated_at: job.updated_at,
            started_at: job.started_at,
            run_at: job.run_at,
            deadline: job.deadline,
            progress: job.progress.as_ref(),
            result: job
                .result
                .as_ref()
                .filter(|_| job.status == JobStatus::Succeeded),
            error: job.error.as_deref(),
            parent: link.map(|link| link.parent),
            target: link.map(|link| link.target.as_str()),
            children: job.fanout.as_ref().map_or(&[], |f| f.children()),
            failures: job.fanout.as_ref().map_or(&[], |f| f.failures()),
        }
    }
}

/// The job's document as `GET /jobs/{id}` serves it, which is also what a completion callback
/// delivers.
pub fn job_document(job: &Job) -> serde_json::Value {
    // Delivered once the job is terminal, when it can no longer be `scheduled`.
    serde_json::to_value(JobDocument::of(job, job.updated_at)).unwrap_or_default()
}
