//! The `JobQueue` port: the work queue (and, for tools, its dead-letter queue).

mod backlog;
#[cfg(any(test, feature = "testing"))]
pub mod contract;
mod memory;
mod sqs;

use std::time::Duration;

use async_trait::async_trait;

pub use backlog::{Backlog, Full, MAX_RETRY_AFTER};
pub use memory::MemoryQueue;
pub use sqs::{SqsQueue, move_messages};

use crate::domain::{Priority, Timestamp};
use crate::error::BoxError;

/// The longest visibility timeout SQS accepts (12 hours): the cap of every backoff.
pub const MAX_VISIBILITY: Duration = Duration::from_secs(43_200);

/// The largest message SQS accepts (1 MiB), its body and message attributes counted together:
/// what bounds a job's message, and so the request body it carries
/// (`config::MAX_PAYLOAD_LIMIT`).
pub const MAX_MESSAGE_BYTES: usize = 1_048_576;

/// One queue of job messages, with SQS's at-least-once semantics.
#[async_trait]
pub trait JobQueue: Send + Sync + std::fmt::Debug {
    /// Enqueues a message body (an encoded `JobMessage`) in the fairness group `group` (an
    /// owner's [`crate::domain::Owner::fairness_key`]; SQS fair queues' `MessageGroupId`), and
    /// returns its message id. A group whose messages crowd the queue gets no more than its share
    /// of the consumers: the others' messages are delivered first.
    async fn send_in_group(&self, body: &str, group: Option<&str>) -> Result<String, QueueError>;

    /// Enqueues a message body in no group (tools and tests).
    async fn send(&self, body: &str) -> Result<String, QueueError> {
        self.send_in_group(body, None).await
    }

    /// Hides a received message for `timeout` from now, as `ChangeMessageVisibility` does.
    async fn change_visibility(
        &self,
        receipt_handle: &str,
        timeout: Duration,
    ) -> Result<(), QueueError>;

    /// Receives up to `max` messages, waiting up to `wait` for the first.
    async fn receive(&self, max: u32, wait: Duration) -> Result<Vec<ReceivedMessage>, QueueError>;

    /// Deletes a received message.
    async fn delete(&self, receipt_handle: &str) -> Result<(), QueueError>;

    /// How many messages the queue holds, by state.
    async fn depth(&self) -> Result<QueueDepth, QueueError>;
}

/// A lane's queue in a function deployed without it (the status function, which never sends or
/// changes a message; a consumer, for the other lane's queue): every call fails, naming the lane,
/// so a code path that starts to need the queue shows at once instead of reaching for a queue by
/// other means.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoQueue(pub Priority);

impl NoQueue {
    fn refuse(self) -> QueueError {
        QueueError::Unavailable(
            format!(
                "this function is not given the {} lane's queue (see Function::variables)",
                self.0
            )
            .into(),
        )
    }
}

#[async_trait]
impl JobQueue for NoQueue {
    async fn send_in_group(&self, _: &str, _: Option<&str>) -> Result<String, QueueError> {
        Err(self.refuse())
    }

    async fn change_visibility(&self, _: &str, _: Duration) -> Result<(), QueueError> {
        Err(self.refuse())
    }

    async fn receive(&self, _: u32, _: Duration) -> Result<Vec<ReceivedMessage>, QueueError> {
        Err(self.refuse())
    }

    async fn delete(&self, _: &str) -> Result<(), QueueError> {
        Err(self.refuse())
    }

    async fn depth(&self) -> Result<QueueDepth, QueueError> {
        Err(self.refuse())
    }
}

/// The first character of `text` SQS refuses in a message body, if any. SQS carries `#x9`,
/// `#xA`, `#xD`, `#x20` to `#xD7FF`, `#xE000` to `#xFFFD` and `#x10000` to `#x10FFFF`.
pub fn unsendable(text: &str) -> Option<char> {
    text.chars().find(|&c| {
        !matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
    })
}

/// A message as a receive returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The queue's id for the message; stable across receives.
    pub message_id: String,
    /// The handle of this receive, for `delete` and `change_visibility`.
    pub receipt_handle: String,
    /// The body as sent.
    pub body: String,
    /// How many times the message has been received, this time included.
    pub receive_count: u32,
    /// When it was first sent.
    pub sent_at: Timestamp,
}

/// How many messages a queue holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueDepth {
    /// Ready to be received.
    pub visible: u64,
    /// Received and not yet deleted or visible again.
    pub in_flight: u64,
    /// Sent with a delay that has not passed.
    pub delayed: u64,
}

impl QueueDepth {
    /// Every message the queue holds.
    pub fn total(&self) -> u64 {
        self.visible + self.in_flight + self.delayed
    }
}

/// A queue failure.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The receipt handle belongs to no message currently received (deleted, or received again
    /// since).
    #[error("receipt handle is not valid for any message in flight")]
    InvalidReceipt,
    /// The backing service failed or could not be reached.
    #[error("queue unavailable")]
    Unavailable(#[source] BoxError),
}
