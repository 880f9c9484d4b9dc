use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

use super::ApiResponse;
use crate::domain::{InvalidJobId, JobId, JobStatus, Kind, Priority};
use crate::error::Chain;
use crate::queue::QueueError;
use crate::store::StoreError;

/// Everything a request can fail with. [`ApiError::into_response`] is the one place that maps it
/// to a status and an RFC 9457 problem document, and the one place internal failures are logged.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON at all.
    #[error("the body is not valid JSON: {0}")]
    MalformedJson(#[source] serde_json::Error),
    /// The body is JSON but not a valid request.
    #[error("{0}")]
    Invalid(String),
    /// The request does not say it carries JSON.
    #[error("send the body as application/json (Content-Type was {0})")]
    UnsupportedMediaType(String),
    /// The body is over the configured limit.
    #[error("the body is over the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The limit.
        limit: usize,
    },
    /// The body is within the limit, but its job's message would be larger than SQS carries: only
    /// when the caller's identity is longer than `JobMessage::OWNER_BUDGET` and the body near the
    /// limit.
    #[error(
        "this job's message would be {size} bytes with the caller's identity, over the {} an SQS \
         message holds; send a smaller body",
        crate::queue::MAX_MESSAGE_BYTES
    )]
    MessageTooLarge {
        /// The message's size.
        size: usize,
    },
    /// A well-formed request the deployment refuses to carry out (a webhook to a private address).
    #[error("{0}")]
    Forbidden(String),
    /// No processor is registered for the kind.
    #[error("no processor is registered for kind `{kind}`; known kinds: {known}")]
    UnknownKind {
        /// The kind asked for.
        kind: Kind,
        /// The kinds there are.
        known: String,
    },
    /// The Idempotency-Key was first used for a different request (or its job is gone).
    #[error("{}", if *.job_gone {
        "this Idempotency-Key's job is no longer kept; use a new key"
    } else {
        "this Idempotency-Key was used for a different request; use a new key"
    })]
    KeyReused {
        /// Whether the key's job has expired from the table.
        job_gone: bool,
    },
    /// The path does not hold a job id.
    #[error(transparent)]
    InvalidJobId(#[from] InvalidJobId),
    /// No route serves this method and path.
    #[error(
        "no route for {method} {path}; the API serves POST /jobs, POST /jobs/batch, GET /jobs/{{id}}, DELETE /jobs/{{id}} and GET /webhook-secret"
    )]
    NoRoute {
        /// The request's method.
        method: String,
        /// The request's path.
        path: String,
    },
    /// No such job for this caller.
    #[error("no job {0}")]
    NotFound(JobId),
    /// The job's state does not allow the request.
    #[error("job {id} is {status}; only pending jobs can be cancelled")]
    Conflict {
        /// The job.
        id: JobId,
        /// Its state.
        status: JobStatus,
    },
    /// The job's lane holds more messages than its limit.
    #[error(
        "the {priority} lane's queue holds {depth} messages, over its limit of {limit}; \
         try again in {} s", retry_after.as_secs()
    )]
    BacklogFull {
        /// The lane.
        priority: Priority,
        /// Messages waiting.
        depth: u64,
        /// The limit.
        limit: u64,
        /// When the lane should be under its limit again, from its measured drain rate.
        retry_after: std::time::Duration,
    },
    /// The caller has as many active jobs as `SPILLWAY_MAX_ACTIVE_JOBS_PER_OWNER` allows.
    #[error(
        "you have {limit} or more jobs pending or running, the most this deployment allows one \
         caller; submit again once some have finished, in {} s or later", retry_after.as_secs()
    )]
    TooManyActiveJobs {
        /// The limit.
        limit: u32,
        /// What `Retry-After` says.
        retry_after: std::time::Duration,
    },
    /// The request reached Spillway with no caller identity although the API authorizes every
    /// route (a route added without authorization, or a direct invocation).
    #[error("this API needs an authenticated caller ({0}); the request carried no identity")]
    Unauthenticated(&'static str),
    /// The stack has no webhook signing secret to derive the caller's from, or it cannot be read.
    #[error("the stack's webhook signing secret is not available; try again later")]
    NoSigningSecret,
    /// The job store failed.
    #[error("the job store failed")]
    Store(#[from] StoreError),
    /// The queue failed.
    #[error("the queue failed")]
    Queue(#[from] QueueError),
}

/// An RFC 9457 problem document.
#[derive(Debug, Serialize)]
pub(super) struct Problem {
    #[serde(rename = "type")]
    kind: String,
    title: &'static str,
    status: u16,
    detail: String,
}

/// The longest detail a problem document (or a rejection's log line) carries.
pub const MAX_DETAIL_CHARS: usize = 200;

/// Seconds a client should wait after a `503`.
const RETRY_UNAVAILABLE_SECONDS: u64 = 5;

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MalformedJson(_) | Self::Invalid(_) | Self::InvalidJobId(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge { .. } | Self::MessageTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            Self::Forbidden(_) | Self::UnknownKind { .. } | Self::KeyReused { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Self::NotFound(_) | Self::NoRoute { .. } => StatusCode::NOT_FOUND,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::TooManyActiveJobs { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::BacklogFull { .. }
            | Self::NoSigningSecret
            | Self::Store(StoreError::Unavailable(_))
            | Self::Queue(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The last part of the problem's type URI.
    pub(crate) fn slug(&self) -> &'static str {
        match self {
            Self::MalformedJson(_) => "malformed-json",
            Self::Invalid(_) => "invalid-request",
            Self::Unauthenticated(_) => "unauthenticated",
            Self::UnsupportedMediaType(_) => "unsupported-media-type",
            Self::PayloadTooLarge { .. } | Self::MessageTooLarge { .. } => "payload-too-large",
            Self::Forbidden(_) => "forbidden-destination",
            Self::UnknownKind { .. } => "unknown-kind",
            Self::KeyReused { .. } => "idempotency-key-reused",
            Self::InvalidJobId(_) => "invalid-job-id",
            Self::NotFound(_) | Self::NoRoute { .. } => "not-found",
            Self::Conflict { .. } => "conflict",
            Self::TooManyActiveJobs { .. } => "too-many-active-jobs",
            Self::BacklogFull { .. } => "backlog-full",
            Self::NoSigningSecret => "no-signing-secret",
            Self::Store(StoreError::Unavailable(_)) | Self::Queue(_) => "unavailable",
            Self::Store(_) => "internal",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            Self::MalformedJson(_) => "Malformed JSON",
            Self::Invalid(_) => "Invalid request",
            Self::Unauthenticated(_) => "Unauthenticated",
            Self::UnsupportedMediaType(_) => "Unsupported media type",
            Self::PayloadTooLarge { .. } | Self::MessageTooLarge { .. } => "Payload too large",
            Self::Forbidden(_) => "Destination not allowed",
            Self::UnknownKind { .. } => "Unknown job kind",
            Self::KeyReused { .. } => "Idempotency key reused",
            Self::InvalidJobId(_) => "Invalid job id",
            Self::NotFound(_) => "Job not found",
            Self::NoRoute { .. } => "Not found",
            Self::Conflict { .. } => "Job cannot be changed",
            Self::TooManyActiveJobs { .. } => "Too many active jobs",
            Self::BacklogFull { .. } => "Backlog full",
            Self::NoSigningSecret => "Signing secret unavailable",
            Self::Store(StoreError::Unavailable(_)) | Self::Queue(_) => "Service unavailable",
            Self::Store(_) => "Internal error",
        }
    }

    /// What the client is told, and what a rejection's log line says: the message, cut to
    /// [`MAX_DETAIL_CHARS`], as it may quote what the client sent (a field name, a `Content-Type`)
    /// and nothing a client sends is echoed or logged whole.
    pub fn detail(&self) -> String {
        let detail = self.to_string();
        if detail.chars().count() <= MAX_DETAIL_CHARS {
            return detail;
        }
        detail.chars().take(MAX_DETAIL_CHARS).chain(['…']).collect()
    }

    /// Whether the cause is ours, not the client's: logged here, never shown.
    fn is_internal(&self) -> bool {
        matches!(self, Self::Store(_) | Self::Queue(_))
    }

    /// The problem document. Internal failures are logged here with their whole source chain
    /// and given a generic detail.
    pub(super) fn problem(&self) -> Problem {
        let status = self.status();
        let detail = if self.is_internal() {
            tracing::error!(error = %Chain(self), status = status.as_u16(), "request failed");
            match status {
                StatusCode::SERVICE_UNAVAILABLE => {
                    "a dependency is unavailable; nothing was lost, retry the request".to_owned()
                }
                _ => "an internal error occurred".to_owned(),
            }
        } else {
            self.detail()
        };
        Problem {
            kind: format!("urn:spillway:problem:{}", self.slug()),
            title: self.title(),
            status: status.as_u16(),
            detail,
        }
    }

    /// The seconds a `503`'s or a `429`'s `Retry-After` says; `None` for any other status.
    pub(super) fn retry_after(&self) -> Option<u64> {
        match self {
            Self::BacklogFull { retry_after, .. } | Self::TooManyActiveJobs { retry_after, .. } => {
                Some(retry_after.as_secs().max(1))
            }
            _ => (self.status() == StatusCode::SERVICE_UNAVAILABLE)
                .then_some(RETRY_UNAVAILABLE_SECONDS),
        }
    }

    /// The problem+json response. Internal failures are logged with their whole source chain
    /// and answered with a generic detail.
    pub fn into_response(self) -> ApiResponse {
        let status = self.status();
        let problem = self.problem();
        let mut response = super::json_response(status, &problem);
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(seconds) = self.retry_after() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_failures_are_hidden_from_the_client() {
        let cause = std::io::Error::other("connection reset by 10.0.0.7");
        let response = ApiError::Store(StoreError::Unavailable(Box::new(cause))).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(!response.body().contains("10.0.0.7"));
        assert_eq!(response.headers()[header::RETRY_AFTER], "5");
        let problem: serde_json::Value = serde_json::from_str(response.body()).unwrap();
        assert_eq!(problem["type"], "urn:spillway:problem:unavailable");
        assert_eq!(problem["status"], 503);
    }
}
