//! Spillway's HTTP contract, independent of how requests arrive: API Gateway events in the
//! Lambdas, a local server in `spillway dev`. One implementation, many hosts.

mod backlog;
mod problem;
#[cfg(test)]
mod properties;
mod secret;
mod status;
mod submit;

use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

pub use backlog::Backlog;
pub use problem::ApiError;
pub use problem::Chain;
pub use secret::webhook_secret;
pub use status::{cancel_job, get_job};
pub use submit::submit_job;

use crate::domain::{Job, JobStatus};

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

/// The job as `GET /jobs/{id}` shows it.
#[derive(Debug, Serialize)]
struct JobDocument<'a> {
    id: String,
    kind: &'a str,
    status: JobStatus,
    attempts: u32,
    created_at: crate::domain::Timestamp,
    updated_at: crate::domain::Timestamp,
    deadline: crate::domain::Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

impl<'a> JobDocument<'a> {
    fn of(job: &'a Job) -> Self {
        Self {
            id: job.id.to_string(),
            kind: job.kind.as_str(),
            status: job.status,
            attempts: job.attempts,
            created_at: job.created_at,
            updated_at: job.updated_at,
            deadline: job.deadline,
            result: job
                .result
                .as_ref()
                .filter(|_| job.status == JobStatus::Succeeded),
            error: job.error.as_deref(),
        }
    }
}

/// The job's document as `GET /jobs/{id}` serves it, which is also what a completion callback
/// delivers.
pub fn job_document(job: &Job) -> serde_json::Value {
    serde_json::to_value(JobDocument::of(job)).unwrap_or_default()
}

/// A JSON response; `body` serialises infallibly (plain structs of strings and numbers).
fn json_response(status: StatusCode, body: &impl Serialize) -> ApiResponse {
    let mut response = http::Response::new(serde_json::to_string(body).unwrap_or_default());
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, JSON);
    response
}

/// `200` with the job's document, uncacheable, with a polling hint while it is not finished, and
/// the correlation id of the request that submitted it.
fn job_response(job: &Job) -> ApiResponse {
    let mut response = json_response(StatusCode::OK, &JobDocument::of(job));
    let headers = response.headers_mut();
    if let Some(id) = &job.correlation_id {
        set_correlation_id(headers, id);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if !job.status.is_terminal() {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(POLL_AFTER_SECONDS));
    }
    response
}

/// Where a job's status is served.
fn status_path(job: &Job) -> String {
    format!("/jobs/{}", job.id)
}
