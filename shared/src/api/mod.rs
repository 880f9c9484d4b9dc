//! Spillway's HTTP contract, independent of how requests arrive: API Gateway events in the
//! Lambdas, a local server in `spillway dev`. One implementation, many hosts.

mod batch;
mod fanout;
mod problem;
#[cfg(test)]
mod properties;
mod secret;
mod status;
mod submit;

use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

pub use batch::{MAX_BATCH_BYTES, MAX_BATCH_JOBS, submit_batch};
pub use fanout::UNSENT_ERROR;
pub use problem::ApiError;
pub use secret::webhook_secret;
pub use status::{MAX_WAIT_SECONDS, cancel_job, get_job};
pub use submit::submit_job;

use crate::domain::{Job, JobDocument};

/// A response: status, headers and a JSON (or problem+json) body.
pub type ApiResponse = http::Response<String>;

/// The header that carries a request's correlation id in and out.
pub const CORRELATION_HEADER: &str = "x-correlation-id";

/// Sets the `X-Correlation-Id` header (an id is visible ASCII, so always a valid value).
fn set_correlation_id(headers: &mut http::HeaderMap, id: &crate::domain::CorrelationId) {
    if let Ok(value) = HeaderValue::from_str(id.as_str()) {
        headers.insert(CORRELATION_HEADER, value);
    }
}

/// Seconds a client should wait before polling a job that is not finished.
const POLL_AFTER_SECONDS: u64 = 1;

/// The media type of job documents and acceptances.
const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// A JSON response; `body` serialises infallibly (plain structs of strings and numbers).
fn json_response(status: StatusCode, body: &impl Serialize) -> ApiResponse {
    let mut response = http::Response::new(serde_json::to_string(body).unwrap_or_default());
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, JSON);
    response
}

/// `200` with the job's document, uncacheable, with a polling hint while it is not finished, and
/// the correlation id of the request that submitted it.
fn job_response(job: &Job, now: crate::domain::Timestamp) -> ApiResponse {
    let mut response = json_response(StatusCode::OK, &JobDocument::of(job, now));
    let headers = response.headers_mut();
    if let Some(id) = &job.correlation_id {
        set_correlation_id(headers, id);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if !job.status.is_terminal() {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(poll_after(job, now)));
    }
    response
}

/// Seconds until a job that is not finished is worth polling again: a scheduled one has nothing
/// to show before it is due.
fn poll_after(job: &Job, now: crate::domain::Timestamp) -> u64 {
    match job.run_at {
        Some(due) if job.is_scheduled_at(now) => {
            due.saturating_since(now).as_secs().max(POLL_AFTER_SECONDS)
        }
        _ => POLL_AFTER_SECONDS,
    }
}

/// Where a job's status is served.
fn status_path(job: &Job) -> String {
    format!("/jobs/{}", job.id)
}
