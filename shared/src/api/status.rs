use std::time::Duration;

use tracing::{info, instrument};

use super::{ApiError, ApiResponse, job_response};
use crate::app::App;
use crate::domain::{Child, Fanout, Job, JobId, JobStatus, Owner, Transition};
use crate::store::ApplyError;

/// The longest long poll, in seconds (API Gateway gives an integration 30 s).
pub const MAX_WAIT_SECONDS: u64 = 20;

/// `GET /jobs/{id}[?wait=N]`: the job's document. With `wait`, holds the request until the job is
/// terminal or `N` seconds pass.
#[instrument(skip_all, fields(job_id = raw_id, correlation_id))]
pub async fn get_job(app: &App, owner: &Owner, raw_id: &str, wait: Option<&str>) -> ApiResponse {
    let result = async {
        let id = JobId::parse(raw_id)?;
        let wait = parse_wait(wait)?;
        let job = wait_for_end(app, owner, id, wait).await?;
        info!(status = %job.status, attempts = job.attempts, "read");
        Ok(job_response(&job, app.clock.now()))
    }
    .await;
    result.unwrap_or_else(ApiError::into_response)
}

/// The job, read until it is terminal or `wait` has passed: again after 100 ms, then after twice
/// as long each time up to a second, so a long poll costs a few reads, not one per millisecond.
pub(super) async fn wait_for_end(
    app: &App,
    owner: &Owner,
    id: JobId,
    wait: Duration,
) -> Result<Job, ApiError> {
    let until = tokio::time::Instant::now() + wait;
    let mut pause = Duration::from_millis(100);
    loop {
        let job = read(app, owner, id).await?;
        let now = tokio::time::Instant::now();
        if job.status.is_terminal() || now >= until {
            return Ok(job);
        }
        tokio::time::sleep(pause.min(until - now)).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

/// `DELETE /jobs/{id}`: cancels a pending job. Cancelling a cancelled job answers as the first
/// cancel did. A running fan-out parent is cancelled through its children ([`cancel_fanout`]).
#[instrument(skip_all, fields(job_id = raw_id, correlation_id))]
pub async fn cancel_job(app: &App, owner: &Owner, raw_id: &str) -> ApiResponse {
    let result = async {
        let id = JobId::parse(raw_id)?;
        let job = read(app, owner, id).await?;
        if job.status == JobStatus::Running
            && let Some(Fanout::Parent { children, .. }) = &job.fanout
        {
            return cancel_fanout(app, &job, children).await;
        }
        match app.store.apply(id, &app.change(Transition::Cancel)).await {
            Ok(job) => {
                info!("cancelled");
                app.metrics.reached(job.updated_at, &job, &[]);
                Ok(job_response(&job, app.clock.now()))
            }
            Err(ApplyError::Rejected(job)) if job.status == JobStatus::Cancelled => {
                Ok(job_response(&job, app.clock.now()))
            }
            Err(ApplyError::Rejected(job)) => Err(ApiError::Conflict {
                id,
                status: job.status,
            }),
            Err(ApplyError::NotFound) => Err(ApiError::NotFound(id)),
            Err(ApplyError::Store(e)) => Err(e.into()),
        }
    }
    .await;
    result.unwrap_or_else(ApiError::into_response)
}

/// Cancels the running fan-out `parent` by cancelling each of its `children` still pending:
/// `202` with the parent, which the consumers settle once every child has ended (each cancelled
/// child's message is received, finds it cancelled and counts it on the parent, as any child's
/// end is). The parent ends `cancelled` when every child that did not succeed was cancelled, and
/// `failed` when one failed. A child running now runs on. `409` when no child is pending or
/// cancelled: nothing is left to cancel, and the parent ends as its children do. Repeating the
/// request answers the same.
async fn cancel_fanout(
    app: &App,
    parent: &Job,
    children: &[Child],
) -> Result<ApiResponse, ApiError> {
    let mut cancelled = 0;
    for child in children {
        match app
            .store
            .apply(child.id, &app.change(Transition::Cancel))
            .await
        {
            Ok(job) => {
                info!(child_id = %job.id, target = %child.target, "fan-out child cancelled");
                app.metrics.reached(job.updated_at, &job, &[]);
                cancelled += 1;
            }
            Err(ApplyError::Rejected(job)) if job.status == JobStatus::Cancelled => cancelled += 1,
            // Running or ended: it ends as it will. Not written yet (intake stopped mid-way): its
            // message writes it and runs it.
            Err(ApplyError::Rejected(_) | ApplyError::NotFound) => {}
            Err(ApplyError::Store(e)) => return Err(e.into()),
        }
    }
    if cancelled == 0 {
        return Err(ApiError::Conflict {
            id: parent.id,
            status: parent.status,
        });
    }
    info!(cancelled, children = children.len(), "fan-out cancelled");
    let mut response = job_response(parent, app.clock.now());
    *response.status_mut() = http::StatusCode::ACCEPTED;
    Ok(response)
}

fn parse_wait(raw: Option<&str>) -> Result<Duration, ApiError> {
    let Some(raw) = raw else {
        return Ok(Duration::ZERO);
    };
    match raw.parse::<u64>() {
        Ok(seconds) if seconds <= MAX_WAIT_SECONDS => Ok(Duration::from_secs(seconds)),
        _ => Err(ApiError::Invalid(format!(
            "wait must be a whole number of seconds from 0 to {MAX_WAIT_SECONDS}, got `{}`",
            raw.chars().take(32).collect::<String>()
        ))),
    }
}

/// Reads a job the caller owns. A job whose deadline passed while nobody held it is marked
/// `expired` on the way, so a reader never sees a pending job that can no longer run.
async fn read(app: &App, owner: &Owner, id: JobId) -> Result<Job, ApiError> {
    let job = app.store.get(id).await?.filter(|job| &job.owner == owner);
    let job = job.ok_or(ApiError::NotFound(id))?;
    if let Some(correlation_id) = &job.correlation_id {
        tracing::Span::current().record("correlation_id", correlation_id.as_str());
    }
    let now = app.clock.now();
    if job.status.is_terminal() || now <= job.deadline || job.is_leased_at(now) {
        return Ok(job);
    }
    match app.store.apply(id, &app.change(Transition::Expire)).await {
        Ok(job) => {
            info!("expired on read");
            app.metrics.reached(job.updated_at, &job, &[]);
            Ok(job)
        }
        Err(ApplyError::Rejected(job)) => Ok(*job),
        Err(ApplyError::NotFound) => Err(ApiError::NotFound(id)),
        Err(ApplyError::Store(e)) => Err(e.into()),
    }
}
