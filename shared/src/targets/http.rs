//! The `http` target: each run of a job posted to one internal endpoint as a webhook is, by the
//! `webhook` processor itself: the same allowlist and SSRF guard, the same Standard Webhooks
//! signature (with the job owner's key), the same circuit breaker, and the same mapping of the
//! answer (2xx succeeds; 408, 429, 5xx, a timeout or no connection are retried; any other status
//! fails). The body is the job's event, as a `lambda` target receives it.

use async_trait::async_trait;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::processor::{ProcessError, Processor, Work};
use crate::webhook::Webhook;

/// Posts each run of a job of its kind to `url`.
#[derive(Debug, Clone)]
pub struct HttpTarget {
    webhook: Webhook,
    url: String,
}

impl HttpTarget {
    /// Delivers to `url` through `webhook`.
    pub fn new(webhook: Webhook, url: &str) -> Self {
        Self {
            webhook,
            url: url.to_owned(),
        }
    }
}

#[async_trait]
impl Processor for HttpTarget {
    async fn process(&self, work: &Work) -> Result<Value, ProcessError> {
        let event = RawValue::from_string(super::event(work))
            .map_err(|e| ProcessError::permanent(format!("the job's event: {e}")))?;
        let delivery = serde_json::json!({"url": self.url, "method": "POST", "body": event});
        let payload = RawValue::from_string(delivery.to_string())
            .map_err(|e| ProcessError::permanent(format!("the job's delivery: {e}")))?;
        let delivery = Work {
            payload,
            ..work.clone()
        };
        self.webhook.process(&delivery).await
    }
}
