//! The SQS queue's `SendMessage` (intake's, on every request) through the direct client
//! ([`crate::direct`]): the request the SDK would send, and its result mapped the same way; every
//! other operation is the SDK queue's.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tracing::instrument;

use super::{SqsQueue, delay_seconds};
use crate::direct::Client;
use crate::queue::{JobQueue, Outgoing, QueueDepth, QueueError, ReceivedMessage, SendOptions};

/// An [`SqsQueue`] whose `SendMessage` goes through a direct client.
#[derive(Debug, Clone)]
pub struct DirectQueue {
    sdk: SqsQueue,
    client: Client,
}

impl SqsQueue {
    /// This queue with its `SendMessage` sent by `client` (a [`crate::direct::Service::Sqs`]
    /// client for the queue's account and region).
    pub fn direct(self, client: Client) -> DirectQueue {
        DirectQueue { sdk: self, client }
    }
}

#[async_trait]
impl JobQueue for DirectQueue {
    #[instrument(skip_all)]
    async fn send_with(&self, body: &str, options: SendOptions<'_>) -> Result<String, QueueError> {
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct SendMessage<'a> {
            queue_url: &'a str,
            message_body: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            message_group_id: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            delay_seconds: Option<i32>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Output {
            message_id: Option<String>,
        }
        let request = SendMessage {
            queue_url: self.sdk.url(),
            message_body: body,
            message_group_id: options.group,
            delay_seconds: delay_seconds(options.delay),
        };
        let request =
            serde_json::to_vec(&request).map_err(|e| QueueError::Unavailable(e.into()))?;
        let answer = self
            .client
            .call("SendMessage", request)
            .await
            .map_err(|e| QueueError::Unavailable(e.into()))?;
        let output: Output =
            serde_json::from_slice(&answer).map_err(|e| QueueError::Unavailable(e.into()))?;
        Ok(output.message_id.unwrap_or_default())
    }

    async fn send_batch(&self, messages: &[Outgoing<'_>]) -> Vec<Result<String, QueueError>> {
        self.sdk.send_batch(messages).await
    }

    async fn change_visibility(
        &self,
        receipt_handle: &str,
        timeout: Duration,
    ) -> Result<(), QueueError> {
        self.sdk.change_visibility(receipt_handle, timeout).await
    }

    async fn receive(&self, max: u32, wait: Duration) -> Result<Vec<ReceivedMessage>, QueueError> {
        self.sdk.receive(max, wait).await
    }

    async fn delete(&self, receipt_handle: &str) -> Result<(), QueueError> {
        self.sdk.delete(receipt_handle).await
    }

    async fn depth(&self) -> Result<QueueDepth, QueueError> {
        self.sdk.depth().await
    }
}
