//! An emulation of Lambda's SQS event source mapping, for running the consumer without Lambda
//! (`spillway dev`, tests): receive a batch, hand it to the consumer as the event Lambda would
//! build, then delete exactly the messages the consumer did not report as failed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use tokio::time::Instant;
use tracing::warn;

use crate::app::App;
use crate::domain::Timestamp;
use crate::queue::{JobQueue, QueueError, ReceivedMessage};

/// How an event source mapping polls and invokes.
#[derive(Debug, Clone)]
pub struct EventSourceMapping {
    /// The queue polled.
    pub queue: Arc<dyn JobQueue>,
    /// The queue's ARN, as records carry it in `eventSourceARN`.
    pub queue_arn: String,
    /// The region records carry in `awsRegion`.
    pub region: String,
    /// Most records in one invocation.
    pub batch_size: u32,
    /// How long to gather records before invoking with fewer than `batch_size`.
    pub batching_window: Duration,
    /// How long one invocation may run: the consumer's deadline.
    pub function_timeout: Duration,
}

/// What one poll did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Messages received and handed to the consumer.
    pub received: usize,
    /// Message ids the consumer reported as failed; they stay in the queue.
    pub failed: Vec<String>,
    /// Messages deleted.
    pub deleted: usize,
}

impl EventSourceMapping {
    /// Receives one batch (waiting up to `wait` for the first message), invokes the consumer with
    /// it and deletes what succeeded. Returns `None` when nothing arrived.
    pub async fn poll_once(
        &self,
        app: &App,
        wait: Duration,
    ) -> Result<Option<BatchReport>, QueueError> {
        let messages = self.receive_batch(wait).await?;
        if messages.is_empty() {
            return Ok(None);
        }
        Ok(Some(self.invoke(app, &messages).await))
    }

    /// Hands `messages` to the consumer in this process as one event, then [settles](Self::settle)
    /// its answer.
    pub async fn invoke(&self, app: &App, messages: &[ReceivedMessage]) -> BatchReport {
        let event = sqs_event(messages, &self.queue_arn, &self.region);
        let deadline = app.clock.now().saturating_add(self.function_timeout);
        let response = crate::consumer::handle_batch(app, event, deadline).await;
        self.settle(messages, response).await
    }

    /// What the mapping does with a function's answer to the event of `messages`: deletes the
    /// messages it did not report as failed, or none when it reported an identifier that is not in
    /// the batch (or an empty one), as Lambda then counts the whole batch as failed.
    pub async fn settle(
        &self,
        messages: &[ReceivedMessage],
        response: SqsBatchResponse,
    ) -> BatchReport {
        let failed: Vec<String> = response
            .batch_item_failures
            .into_iter()
            .map(|f| f.item_identifier)
            .collect();

        let ids: HashSet<&str> = messages.iter().map(|m| m.message_id.as_str()).collect();
        let whole_batch_failed = failed.iter().any(|id| !ids.contains(id.as_str()));
        let failed_ids: HashSet<&str> = failed.iter().map(String::as_str).collect();
        let mut deleted = 0;
        if !whole_batch_failed {
            for message in messages
                .iter()
                .filter(|m| !failed_ids.contains(m.message_id.as_str()))
            {
                match self.queue.delete(&message.receipt_handle).await {
                    Ok(()) => deleted += 1,
                    Err(error) => warn!(
                        message_id = %message.message_id,
                        error = %error,
                        "delete failed; the message will be delivered again"
                    ),
                }
            }
        }
        BatchReport {
            received: messages.len(),
            failed,
            deleted,
        }
    }

    /// Receives up to `batch_size` messages: the first receive long-polls for `wait`, later ones
    /// gather more until the batching window closes.
    pub async fn receive_batch(&self, wait: Duration) -> Result<Vec<ReceivedMessage>, QueueError> {
        let batch_size = self.batch_size.max(1) as usize;
        let mut messages = self.queue.receive(self.batch_size.min(10), wait).await?;
        if messages.is_empty() {
            return Ok(messages);
        }
        let window_ends = Instant::now() + self.batching_window;
        while messages.len() < batch_size {
            let left = window_ends.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let want = (batch_size - messages.len()).min(10) as u32;
            let more = self
                .queue
                .receive(want, left.min(Duration::from_secs(20)))
                .await?;
            messages.extend(more);
        }
        Ok(messages)
    }
}

/// The event Lambda's SQS event source mapping builds for `messages`.
pub fn sqs_event(messages: &[ReceivedMessage], queue_arn: &str, region: &str) -> SqsEvent {
    let now = Timestamp::from_system_time(std::time::SystemTime::now())
        .as_millis()
        .to_string();
    let mut event = SqsEvent::default();
    event.records = messages
        .iter()
        .map(|message| {
            let mut record = SqsMessage::default();
            record.message_id = Some(message.message_id.clone());
            record.receipt_handle = Some(message.receipt_handle.clone());
            record.body = Some(message.body.clone());
            record.attributes = HashMap::from([
                (
                    "ApproximateReceiveCount".to_owned(),
                    message.receive_count.to_string(),
                ),
                (
                    "SentTimestamp".to_owned(),
                    message.sent_at.as_millis().to_string(),
                ),
                ("SenderId".to_owned(), "AIDAIENQZJOLO23YVJ4VO".to_owned()),
                ("ApproximateFirstReceiveTimestamp".to_owned(), now.clone()),
            ]);
            record.event_source = Some("aws:sqs".to_owned());
            record.event_source_arn = Some(queue_arn.to_owned());
            record.aws_region = Some(region.to_owned());
            record
        })
        .collect();
    event
}
