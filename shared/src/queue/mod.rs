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
pub use sqs::{DirectQueue, SqsQueue, move_messages};

use crate::domain::{Priority, Timestamp};
use crate::error::BoxError;

/// The longest visibility timeout SQS accepts (12 hours): the cap of every backoff.
pub const MAX_VISIBILITY: Duration = Duration::from_secs(43_200);

/// The largest message SQS accepts (1 MiB), its body and message attributes counted together:
/// what bounds a job's message, and so the request body it carries
/// (`config::MAX_PAYLOAD_LIMIT`).
pub const MAX_MESSAGE_BYTES: usize = 1_048_576;

/// The most entries one `SendMessageBatch` takes.
pub const MAX_BATCH_ENTRIES: usize = 10;

/// The most one `SendMessageBatch` carries, its messages' sizes summed: the same 1 MiB as one
/// message, so ten messages near the limit go in ten calls.
pub const MAX_BATCH_BYTES: usize = MAX_MESSAGE_BYTES;

/// One message of a [`JobQueue::send_batch`]: its body and how it is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outgoing<'a> {
    /// The message body (an encoded `JobMessage`).
    pub body: &'a str,
    /// Its fairness group and delay, as for [`JobQueue::send_with`].
    pub options: SendOptions<'a>,
}

impl Outgoing<'_> {
    /// What the message counts towards a `SendMessageBatch`'s total: its body, and its group id
    /// (SQS does not say whether it counts the group, so it is counted).
    pub fn size(&self) -> usize {
        self.body.len() + self.options.group.map_or(0, str::len)
    }
}

/// Splits `messages` into runs SQS takes in one `SendMessageBatch`: at most
/// [`MAX_BATCH_ENTRIES`] entries and [`MAX_BATCH_BYTES`] together, in order. Returns the ranges
/// of `messages` each call sends. A message alone over the total still gets a call of its own (SQS
/// refuses it, as it would one `SendMessage`).
pub fn batch_ranges(messages: &[Outgoing<'_>]) -> Vec<std::ops::Range<usize>> {
    let mut ranges = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (index, message) in messages.iter().enumerate() {
        let size = message.size();
        if index > start && (index - start == MAX_BATCH_ENTRIES || bytes + size > MAX_BATCH_BYTES) {
            ranges.push(start..index);
            (start, bytes) = (index, 0);
        }
        bytes += size;
    }
    if start < messages.len() {
        ranges.push(start..messages.len());
    }
    ranges
}

/// One queue of job messages, with SQS's at-least-once semantics.
#[async_trait]
pub trait JobQueue: Send + Sync + std::fmt::Debug {
    /// Enqueues a message body (an encoded `JobMessage`) as `options` say, and returns its
    /// message id.
    async fn send_with(&self, body: &str, options: SendOptions<'_>) -> Result<String, QueueError>;

    /// Enqueues a message body in the fairness group `group`, at once.
    async fn send_in_group(&self, body: &str, group: Option<&str>) -> Result<String, QueueError> {
        self.send_with(
            body,
            SendOptions {
                group,
                ..SendOptions::default()
            },
        )
        .await
    }

    /// Enqueues several messages, each as [`JobQueue::send_with`] would, in as few calls as the
    /// queue allows; returns each message's id or failure, in order, one per message. Some may be
    /// sent while others fail: a failure means that message was not sent.
    async fn send_batch(&self, messages: &[Outgoing<'_>]) -> Vec<Result<String, QueueError>>;

    /// Enqueues a message body in no group, at once (tools and tests).
    async fn send(&self, body: &str) -> Result<String, QueueError> {
        self.send_with(body, SendOptions::default()).await
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
    async fn send_with(&self, _: &str, _: SendOptions<'_>) -> Result<String, QueueError> {
        Err(self.refuse())
    }

    async fn send_batch(&self, messages: &[Outgoing<'_>]) -> Vec<Result<String, QueueError>> {
        messages.iter().map(|_| Err(self.refuse())).collect()
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

/// How a message is sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendOptions<'a> {
    /// Its fairness group (an owner's [`crate::domain::Owner::fairness_key`]; SQS fair queues'
    /// `MessageGroupId`): a group whose messages crowd the queue gets no more than its share of
    /// the consumers, the others' messages being delivered first.
    pub group: Option<&'a str>,
    /// How long it stays invisible after it is sent (SQS's `DelaySeconds`, whole seconds, at
    /// most [`MAX_DELAY`]).
    pub delay: Duration,
}

/// The longest delay SQS gives a message when it is sent (`DelaySeconds`, 15 minutes).
pub const MAX_DELAY: Duration = Duration::from_secs(900);

/// The delay to send a message with at `now` so that it is received when `due` comes, or as
/// near to it as SQS allows: whole seconds rounded up (never early), at most [`MAX_DELAY`].
pub fn delay_until(due: Timestamp, now: Timestamp) -> Duration {
    let left = due.saturating_since(now);
    let whole = Duration::from_secs(left.as_secs() + u64::from(left.subsec_nanos() > 0));
    whole.min(MAX_DELAY)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_cut_at_ten_entries_and_at_sqs_total_size() {
        let grouped = |body| Outgoing {
            body,
            options: SendOptions {
                group: Some("g"),
                ..SendOptions::default()
            },
        };
        let small = grouped("x");
        assert_eq!(batch_ranges(&[small; 25]), vec![0..10, 10..20, 20..25]);
        assert_eq!(batch_ranges(&[]), Vec::<std::ops::Range<usize>>::new());
        // Four messages of 300 KB: three fit in 1 MiB, the fourth starts the next call.
        let body = "x".repeat(300_000);
        let large = Outgoing {
            body: &body,
            options: SendOptions::default(),
        };
        assert_eq!(batch_ranges(&[large; 4]), vec![0..3, 3..4]);
        // Exactly 1 MiB together is one call; a byte more is two.
        let half = "x".repeat(MAX_BATCH_BYTES / 2);
        let halves = [Outgoing {
            body: &half,
            options: SendOptions::default(),
        }; 2];
        assert_eq!(batch_ranges(&halves), vec![0..2]);
        assert_eq!(batch_ranges(&[grouped(&half); 2]), vec![0..1, 1..2]);
    }
}
