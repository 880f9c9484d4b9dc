mod direct;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::SdkError;
use aws_sdk_sqs::operation::change_message_visibility::ChangeMessageVisibilityError;
use aws_sdk_sqs::operation::delete_message::DeleteMessageError;
use aws_sdk_sqs::types::{
    MessageSystemAttributeName, QueueAttributeName, SendMessageBatchRequestEntry,
};
use tracing::instrument;

use super::{
    JobQueue, Outgoing, QueueDepth, QueueError, ReceivedMessage, SendOptions, batch_ranges,
};
use crate::domain::Timestamp;

pub use direct::DirectQueue;

/// A `JobQueue` on one SQS standard queue.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Source,
    url: String,
}

/// Where the client comes from: given, or built from the SDK's configuration at first use, so a
/// function whose first event makes no SQS call (status; the consumer, for a record that
/// succeeds) does not build it during its cold start.
#[derive(Debug, Clone)]
enum Source {
    Ready(Client),
    Later(Arc<(SdkConfig, OnceLock<Client>)>),
}

impl SqsQueue {
    /// The queue at `url`.
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        Self {
            client: Source::Ready(client),
            url: url.into(),
        }
    }

    /// The queue at `url`, its client made from `sdk` when it is first needed.
    pub fn from_sdk(sdk: &SdkConfig, url: impl Into<String>) -> Self {
        Self {
            client: Source::Later(Arc::new((sdk.clone(), OnceLock::new()))),
            url: url.into(),
        }
    }

    fn client(&self) -> &Client {
        match &self.client {
            Source::Ready(client) => client,
            Source::Later(later) => later.1.get_or_init(|| Client::new(&later.0)),
        }
    }

    /// The queue's URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

fn unavailable<E: std::error::Error + Send + Sync + 'static>(err: E) -> QueueError {
    QueueError::Unavailable(Box::new(err))
}

/// A message's `DelaySeconds`: none for no delay, at most [`super::MAX_DELAY`].
fn delay_seconds(delay: Duration) -> Option<i32> {
    let delay = delay.min(super::MAX_DELAY);
    (!delay.is_zero()).then(|| seconds(delay))
}

/// Seconds for SQS's integer duration fields, saturating.
fn seconds(duration: Duration) -> i32 {
    i32::try_from(duration.as_secs()).unwrap_or(i32::MAX)
}

#[async_trait]
impl JobQueue for SqsQueue {
    #[instrument(skip_all)]
    async fn send_with(&self, body: &str, options: SendOptions<'_>) -> Result<String, QueueError> {
        let delay = options.delay.min(super::MAX_DELAY);
        let output = self
            .client()
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .set_message_group_id(options.group.map(str::to_owned))
            .set_delay_seconds(delay_seconds(delay))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(output.message_id.unwrap_or_default())
    }

    /// One `SendMessageBatch` per run [`batch_ranges`] cuts (10 entries, 1 MiB), the runs sent
    /// together. Entry ids are the message's index in its run; an entry SQS reports failed, or
    /// one it does not mention, is a failure, and a call that fails whole fails each of its
    /// entries.
    #[instrument(skip_all, fields(messages = messages.len()))]
    async fn send_batch(&self, messages: &[Outgoing<'_>]) -> Vec<Result<String, QueueError>> {
        let calls = batch_ranges(messages).into_iter().map(|range| async move {
            let run = &messages[range];
            let entries = run
                .iter()
                .enumerate()
                .map(|(index, message)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(index.to_string())
                        .message_body(message.body)
                        .set_message_group_id(message.options.group.map(str::to_owned))
                        .set_delay_seconds(delay_seconds(message.options.delay))
                        .build()
                        .map_err(unavailable)
                })
                .collect::<Result<Vec<_>, _>>();
            let output = match entries {
                Ok(entries) => {
                    self.client()
                        .send_message_batch()
                        .queue_url(&self.url)
                        .set_entries(Some(entries))
                        .send()
                        .await
                }
                Err(error) => {
                    return run
                        .iter()
                        .map(|_| Err(QueueError::Unavailable(error.to_string().into())))
                        .collect::<Vec<_>>();
                }
            };
            let output = match output {
                Ok(output) => output,
                Err(error) => {
                    let error = crate::error::Chain(&error).to_string();
                    return run
                        .iter()
                        .map(|_| Err(QueueError::Unavailable(error.clone().into())))
                        .collect();
                }
            };
            let mut results: Vec<Result<String, QueueError>> = run
                .iter()
                .map(|_| {
                    Err(QueueError::Unavailable(
                        "SendMessageBatch did not report this entry".into(),
                    ))
                })
                .collect();
            for sent in output.successful {
                if let Some(slot) = sent
                    .id
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| results.get_mut(i))
                {
                    *slot = Ok(sent.message_id);
                }
            }
            for failed in output.failed {
                if let Some(slot) = failed
                    .id
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| results.get_mut(i))
                {
                    let reason = format!(
                        "SendMessageBatch refused the entry: {} ({}{})",
                        failed.code,
                        if failed.sender_fault {
                            "sender's fault"
                        } else {
                            "SQS's fault"
                        },
                        failed.message.map(|m| format!(": {m}")).unwrap_or_default()
                    );
                    *slot = Err(QueueError::Unavailable(reason.into()));
                }
            }
            results
        });
        futures::future::join_all(calls)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    #[instrument(skip_all, fields(timeout_seconds = timeout.as_secs()))]
    async fn change_visibility(
        &self,
        receipt_handle: &str,
        timeout: Duration,
    ) -> Result<(), QueueError> {
        let result = self
            .client()
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(seconds(timeout))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e))
                if matches!(
                    e.err(),
                    ChangeMessageVisibilityError::ReceiptHandleIsInvalid(_)
                        | ChangeMessageVisibilityError::MessageNotInflight(_)
                ) =>
            {
                Err(QueueError::InvalidReceipt)
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    #[instrument(skip_all)]
    async fn receive(&self, max: u32, wait: Duration) -> Result<Vec<ReceivedMessage>, QueueError> {
        let output = self
            .client()
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(i32::try_from(max.clamp(1, 10)).unwrap_or(10))
            .wait_time_seconds(seconds(wait).min(20))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(output
            .messages
            .unwrap_or_default()
            .into_iter()
            .map(|message| {
                let attribute = |name| {
                    message
                        .attributes
                        .as_ref()
                        .and_then(|attributes| attributes.get(&name))
                        .and_then(|value| value.parse::<u64>().ok())
                };
                ReceivedMessage {
                    receive_count: attribute(MessageSystemAttributeName::ApproximateReceiveCount)
                        .and_then(|count| u32::try_from(count).ok())
                        .unwrap_or(1),
                    sent_at: Timestamp::from_millis(
                        attribute(MessageSystemAttributeName::SentTimestamp).unwrap_or_default(),
                    ),
                    message_id: message.message_id.unwrap_or_default(),
                    receipt_handle: message.receipt_handle.unwrap_or_default(),
                    body: message.body.unwrap_or_default(),
                }
            })
            .collect())
    }

    #[instrument(skip_all)]
    async fn delete(&self, receipt_handle: &str) -> Result<(), QueueError> {
        let result = self
            .client()
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt_handle)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), DeleteMessageError::ReceiptHandleIsInvalid(_)) =>
            {
                Err(QueueError::InvalidReceipt)
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    #[instrument(skip_all)]
    async fn depth(&self) -> Result<QueueDepth, QueueError> {
        let output = self
            .client()
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .map_err(unavailable)?;
        let attributes = output.attributes.unwrap_or_default();
        let count = |name| {
            attributes
                .get(&name)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Ok(QueueDepth {
            visible: count(QueueAttributeName::ApproximateNumberOfMessages),
            in_flight: count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
            delayed: count(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
        })
    }
}

/// Moves every message of the queue `source_arn` (a dead-letter queue) to `destination_arn` with an
/// SQS message move task, and waits until the task ends; returns how many messages it moved.
/// Endpoints without message move tasks (moto, for one) answer with an error.
pub async fn move_messages(
    client: &Client,
    source_arn: &str,
    destination_arn: &str,
    poll_every: Duration,
) -> Result<u64, QueueError> {
    client
        .start_message_move_task()
        .source_arn(source_arn)
        .destination_arn(destination_arn)
        .send()
        .await
        .map_err(unavailable)?;
    loop {
        let tasks = client
            .list_message_move_tasks()
            .source_arn(source_arn)
            .max_results(1)
            .send()
            .await
            .map_err(unavailable)?;
        let Some(task) = tasks.results.unwrap_or_default().into_iter().next() else {
            return Err(QueueError::Unavailable(
                "the message move task disappeared".into(),
            ));
        };
        let moved = u64::try_from(task.approximate_number_of_messages_moved).unwrap_or(0);
        match task.status.as_deref() {
            Some("COMPLETED") => return Ok(moved),
            Some("RUNNING") | Some("CANCELLING") | None => tokio::time::sleep(poll_every).await,
            Some(other) => {
                let reason = task.failure_reason.unwrap_or_default();
                return Err(QueueError::Unavailable(
                    format!(
                        "the message move task ended {other} after {moved} message(s): {reason}"
                    )
                    .into(),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_sqs::operation::list_message_move_tasks::ListMessageMoveTasksOutput;
    use aws_sdk_sqs::operation::start_message_move_task::StartMessageMoveTaskOutput;
    use aws_sdk_sqs::types::ListMessageMoveTasksResultEntry;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    use super::*;

    fn entry(status: &str, moved: i64) -> ListMessageMoveTasksResultEntry {
        ListMessageMoveTasksResultEntry::builder()
            .status(status)
            .approximate_number_of_messages_moved(moved)
            .failure_reason("the destination is gone")
            .build()
    }

    fn listing(status: &'static str, moved: i64) -> aws_smithy_mocks::Rule {
        mock!(Client::list_message_move_tasks).then_output(move || {
            ListMessageMoveTasksOutput::builder()
                .results(entry(status, moved))
                .build()
        })
    }

    #[tokio::test]
    async fn a_move_task_is_followed_until_it_completes() {
        let start = mock!(Client::start_message_move_task)
            .match_requests(|r| {
                r.source_arn() == Some("arn:dlq") && r.destination_arn() == Some("arn:queue")
            })
            .then_output(|| {
                StartMessageMoveTaskOutput::builder()
                    .task_handle("task-1")
                    .build()
            });
        let (running, completed) = (listing("RUNNING", 3), listing("COMPLETED", 7));
        let client = mock_client!(
            aws_sdk_sqs,
            RuleMode::Sequential,
            [&start, &running, &completed]
        );
        let moved = move_messages(&client, "arn:dlq", "arn:queue", Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(moved, 7);
        assert_eq!(running.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_failed_move_task_is_an_error() {
        let start = mock!(Client::start_message_move_task).then_output(|| {
            StartMessageMoveTaskOutput::builder()
                .task_handle("task-1")
                .build()
        });
        let failed = listing("FAILED", 2);
        let client = mock_client!(aws_sdk_sqs, RuleMode::Sequential, [&start, &failed]);
        let error = move_messages(&client, "arn:dlq", "arn:queue", Duration::ZERO)
            .await
            .unwrap_err();
        assert!(
            crate::error::Chain(&error)
                .to_string()
                .contains("FAILED after 2"),
            "{error}"
        );
    }
}
