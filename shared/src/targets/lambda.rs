//! The `lambda` target: a function invoked synchronously (`RequestResponse`) with the job's event.
//!
//! | the function | the job |
//! | --- | --- |
//! | returns a value | succeeds, with that value as its result |
//! | raises an error whose `errorType` is `PermanentError` (or ends in `.PermanentError`, `$PermanentError`, `::PermanentError`) | fails, with the error's message |
//! | raises any other error, or runs past its own timeout | is retried |
//! | is throttled (429), or Lambda fails (5xx), or no answer comes | is retried |
//! | cannot be invoked for another reason (404, 403, 413, ...) | fails |

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_lambda::error::SdkError;
use aws_sdk_lambda::operation::invoke::InvokeError;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use serde::Deserialize;
use serde_json::Value;

use crate::processor::{ProcessError, Processor, Work};

/// The `errorType` (or its last segment) that fails a job for good.
pub const PERMANENT_ERROR: &str = "PermanentError";

/// Invokes one function, by ARN, for each run of a job of its kind.
#[derive(Debug, Clone)]
pub struct LambdaTarget {
    client: aws_sdk_lambda::Client,
    function: String,
}

impl LambdaTarget {
    /// Invokes `function` through `client`. Give it a client without retries of its own
    /// ([`client`]): the consumer retries with its backoff, and counts the attempts.
    pub fn new(client: aws_sdk_lambda::Client, function: &str) -> Self {
        Self {
            client,
            function: function.to_owned(),
        }
    }
}

/// A Lambda client on `sdk` that does not retry: a throttled or failed invoke is the job's
/// retryable error, retried after the consumer's backoff, and never invoked twice in one attempt.
pub fn client(sdk: &aws_config::SdkConfig) -> aws_sdk_lambda::Client {
    let config = aws_sdk_lambda::config::Builder::from(sdk)
        .retry_config(aws_sdk_lambda::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_lambda::Client::from_conf(config)
}

#[async_trait]
impl Processor for LambdaTarget {
    async fn process(&self, work: &Work) -> Result<Value, ProcessError> {
        let invoked = self
            .client
            .invoke()
            .function_name(&self.function)
            .invocation_type(InvocationType::RequestResponse)
            .payload(Blob::new(super::event(work)))
            .send()
            .await;
        match invoked {
            Ok(output) => answered(
                output.function_error(),
                output.payload().map_or(&[][..], Blob::as_ref),
            ),
            Err(error) => Err(not_invoked(&error)),
        }
    }
}

/// What the function reported when it raised an error (Lambda's shape, in every runtime).
#[derive(Debug, Default, Deserialize)]
struct Reported {
    #[serde(rename = "errorType")]
    error_type: Option<String>,
    #[serde(rename = "errorMessage")]
    error_message: Option<String>,
}

/// What an invocation Lambda ran makes of the job: `function_error` (Lambda's
/// `X-Amz-Function-Error`) says the function raised an error, which `payload` describes;
/// without one, `payload` is the function's return value.
pub fn answered(function_error: Option<&str>, payload: &[u8]) -> Result<Value, ProcessError> {
    let Some(function_error) = function_error else {
        if payload.is_empty() {
            return Ok(Value::Null);
        }
        return serde_json::from_slice(payload).map_err(|e| {
            ProcessError::permanent(format!("the function returned something not JSON: {e}"))
        });
    };
    let reported: Reported = serde_json::from_slice(payload).unwrap_or_default();
    let message = match (&reported.error_type, &reported.error_message) {
        (Some(kind), Some(message)) => format!("{kind}: {message}"),
        (Some(kind), None) => kind.clone(),
        (None, Some(message)) => message.clone(),
        (None, None) => format!(
            "the function failed ({function_error}): {}",
            String::from_utf8_lossy(payload)
        ),
    };
    let permanent = reported
        .error_type
        .as_deref()
        .is_some_and(|kind| kind.rsplit(['.', '$', ':']).next() == Some(PERMANENT_ERROR));
    if permanent {
        Err(ProcessError::permanent(message))
    } else {
        Err(ProcessError::retryable(message))
    }
}

/// What an invoke that Lambda did not run makes of the job.
pub fn not_invoked(
    error: &SdkError<InvokeError, aws_sdk_lambda::config::http::HttpResponse>,
) -> ProcessError {
    let status = error
        .raw_response()
        .map(|response| response.status().as_u16());
    let retry_after = match error.as_service_error() {
        Some(InvokeError::TooManyRequestsException(throttled)) => throttled
            .retry_after_seconds()
            .and_then(|seconds| seconds.trim().parse().ok())
            .map(Duration::from_secs),
        _ => None,
    };
    refused(
        status,
        retry_after,
        format!(
            "Lambda did not run the function: {}",
            crate::error::Chain(error)
        ),
    )
}

/// An invoke answered `status` (`None`: no answer at all): a throttle, a failure of Lambda's or
/// no answer is retryable; any other refusal will come again, and fails the job.
fn refused(status: Option<u16>, retry_after: Option<Duration>, message: String) -> ProcessError {
    match status {
        None => ProcessError::retryable(message),
        Some(status) if status == 429 || status >= 500 => ProcessError::Retryable {
            message,
            retry_after,
        },
        Some(_) => ProcessError::permanent(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_returned_value_is_the_result() {
        assert_eq!(
            answered(None, br#"{"width": 640}"#),
            Ok(serde_json::json!({"width": 640}))
        );
        assert_eq!(answered(None, b"null"), Ok(Value::Null));
        assert_eq!(answered(None, b""), Ok(Value::Null));
    }

    #[test]
    fn a_permanent_error_fails_the_job_with_its_message() {
        for kind in [
            "PermanentError",
            "handler.PermanentError",
            "com.example.Jobs$PermanentError",
            "resize::PermanentError",
        ] {
            let payload = serde_json::json!({
                "errorType": kind,
                "errorMessage": "the image is not a PNG",
                "stackTrace": ["..."]
            });
            let outcome = answered(Some("Unhandled"), payload.to_string().as_bytes());
            assert_eq!(
                outcome,
                Err(ProcessError::permanent(format!(
                    "{kind}: the image is not a PNG"
                ))),
                "{kind}"
            );
        }
    }

    #[test]
    fn any_other_error_and_the_functions_own_timeout_are_retryable() {
        for (kind, message) in [
            ("RuntimeError", "the bucket answered 503"),
            ("NotAPermanentError", "a name that only ends alike"),
            ("PermanentErrorNot", "a name that only starts alike"),
            (
                "Sandbox.Timedout",
                "RequestId: 1 Error: Task timed out after 3.00 seconds",
            ),
        ] {
            let payload = serde_json::json!({"errorType": kind, "errorMessage": message});
            let outcome = answered(Some("Unhandled"), payload.to_string().as_bytes());
            assert_eq!(
                outcome,
                Err(ProcessError::retryable(format!("{kind}: {message}"))),
                "{kind}"
            );
        }
        let unreadable = answered(Some("Unhandled"), b"out of memory");
        assert!(
            matches!(&unreadable, Err(ProcessError::Retryable { message, .. }) if message.contains("out of memory")),
            "{unreadable:?}"
        );
    }

    #[test]
    fn a_return_value_that_is_not_json_fails_the_job() {
        assert!(matches!(
            answered(None, b"{not json"),
            Err(ProcessError::Permanent { .. })
        ));
    }

    #[test]
    fn throttles_service_errors_and_no_answer_are_retryable_other_refusals_are_not() {
        let wait = Some(Duration::from_secs(7));
        for status in [None, Some(429), Some(500), Some(502), Some(503)] {
            let error = refused(status, wait, "x".into());
            assert!(
                matches!(error, ProcessError::Retryable { retry_after, .. } if retry_after == wait || status.is_none()),
                "{status:?}: {error:?}"
            );
        }
        for status in [400, 403, 404, 413] {
            assert_eq!(
                refused(Some(status), None, "x".into()),
                ProcessError::permanent("x"),
                "{status}"
            );
        }
    }
}
