use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{JobQueue, Outgoing, QueueDepth, QueueError, ReceivedMessage, SendOptions};
use crate::domain::Timestamp;

/// An in-process queue with the SQS behaviour Spillway relies on: a visibility timeout per
/// receive, a receive count, receipt handles that change on every receive, long polling, redrive
/// to a dead-letter queue once a message has been received `max_receive_count` times, and the
/// fairness of SQS fair queues: a receive takes first the messages of the groups with the fewest
/// messages in flight, so one group's flood does not hold back the others' messages.
#[derive(Debug)]
pub struct MemoryQueue {
    visibility_timeout: Duration,
    redrive: Option<Redrive>,
    state: Mutex<State>,
    arrived: Notify,
}

#[derive(Debug)]
struct Redrive {
    dead_letter_queue: Arc<MemoryQueue>,
    max_receive_count: u32,
}

#[derive(Debug, Default)]
struct State {
    messages: VecDeque<Message>,
    next_id: u64,
}

#[derive(Debug, Clone)]
struct Message {
    id: String,
    body: String,
    sent_at: Timestamp,
    visible_at: Instant,
    receive_count: u32,
    receipt_handle: Option<String>,
    /// The fairness group (`MessageGroupId`); messages without one share a group.
    group: Option<String>,
}

impl MemoryQueue {
    /// A queue whose received messages stay hidden for `visibility_timeout`.
    pub fn new(visibility_timeout: Duration) -> Self {
        Self {
            visibility_timeout,
            redrive: None,
            state: Mutex::default(),
            arrived: Notify::new(),
        }
    }

    /// Moves a message to `dead_letter_queue` when it would be received for the
    /// `max_receive_count + 1`-th time, as an SQS redrive policy does.
    pub fn with_dead_letter_queue(
        mut self,
        dead_letter_queue: Arc<MemoryQueue>,
        max_receive_count: u32,
    ) -> Self {
        self.redrive = Some(Redrive {
            dead_letter_queue,
            max_receive_count,
        });
        self
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds `message`, visible after `delay`.
    fn push(&self, mut message: Message, delay: Duration) -> String {
        let id = message.id.clone();
        message.visible_at = Instant::now() + delay;
        message.receipt_handle = None;
        self.state().messages.push_back(message);
        self.arrived.notify_waiters();
        id
    }

    /// Takes up to `max` of the messages visible now, moving those past their receive limit to
    /// the DLQ. Each pick is the oldest message of a group with the fewest messages in flight
    /// (counting the picks before it), as SQS fair queues favour the quieter groups.
    fn take_visible(&self, max: usize) -> Vec<ReceivedMessage> {
        let now = Instant::now();
        let mut state = self.state();
        if let Some(redrive) = &self.redrive {
            let mut index = 0;
            while index < state.messages.len() {
                let message = &state.messages[index];
                if message.visible_at <= now && message.receive_count >= redrive.max_receive_count {
                    if let Some(message) = state.messages.remove(index) {
                        tracing::info!(
                            message_id = %message.id,
                            receive_count = message.receive_count,
                            "moved to the dead-letter queue"
                        );
                        redrive.dead_letter_queue.push(message, Duration::ZERO);
                    }
                } else {
                    index += 1;
                }
            }
        }
        let group = |message: &Message| message.group.clone().unwrap_or_default();
        let mut in_flight: HashMap<String, usize> = HashMap::new();
        let mut visible = Vec::new();
        for (index, message) in state.messages.iter().enumerate() {
            if message.visible_at <= now {
                visible.push((index, group(message)));
            } else if message.receipt_handle.is_some() {
                *in_flight.entry(group(message)).or_default() += 1;
            }
        }
        let mut picked = Vec::new();
        while picked.len() < max {
            let Some(at) = (0..visible.len()).min_by_key(|at| {
                let (index, group) = &visible[*at];
                (in_flight.get(group).copied().unwrap_or(0), *index)
            }) else {
                break;
            };
            let (index, group) = visible.remove(at);
            *in_flight.entry(group).or_default() += 1;
            picked.push(index);
        }
        let mut received = Vec::with_capacity(picked.len());
        for index in picked {
            let handle = format!("{}-{}", state.messages[index].id, state.next_id);
            state.next_id += 1;
            let message = &mut state.messages[index];
            message.receive_count += 1;
            message.visible_at = now + self.visibility_timeout;
            message.receipt_handle = Some(handle.clone());
            received.push(ReceivedMessage {
                message_id: message.id.clone(),
                receipt_handle: handle,
                body: message.body.clone(),
                receive_count: message.receive_count,
                sent_at: message.sent_at,
            });
        }
        received
    }

    /// When the next hidden message becomes visible, if any is hidden.
    fn next_visible_at(&self) -> Option<Instant> {
        self.state().messages.iter().map(|m| m.visible_at).min()
    }

    fn position(state: &State, receipt_handle: &str) -> Result<usize, QueueError> {
        state
            .messages
            .iter()
            .position(|m| m.receipt_handle.as_deref() == Some(receipt_handle))
            .ok_or(QueueError::InvalidReceipt)
    }
}

#[async_trait]
impl JobQueue for MemoryQueue {
    async fn send_with(&self, body: &str, options: SendOptions<'_>) -> Result<String, QueueError> {
        let delay = options.delay.min(super::MAX_DELAY);
        let message = Message {
            id: uuid::Uuid::now_v7().to_string(),
            body: body.to_owned(),
            sent_at: Timestamp::from_system_time(SystemTime::now()),
            visible_at: Instant::now(),
            receive_count: 0,
            receipt_handle: None,
            group: options.group.map(str::to_owned),
        };
        Ok(self.push(message, delay))
    }

    async fn send_batch(&self, messages: &[Outgoing<'_>]) -> Vec<Result<String, QueueError>> {
        let mut sent = Vec::with_capacity(messages.len());
        for message in messages {
            sent.push(self.send_with(message.body, message.options).await);
        }
        sent
    }

    async fn change_visibility(
        &self,
        receipt_handle: &str,
        timeout: Duration,
    ) -> Result<(), QueueError> {
        let mut state = self.state();
        let index = Self::position(&state, receipt_handle)?;
        let message = &mut state.messages[index];
        let now = Instant::now();
        if message.visible_at <= now {
            // SQS answers MessageNotInflight: the message is visible again, the handle stale.
            return Err(QueueError::InvalidReceipt);
        }
        message.visible_at = now + timeout;
        drop(state);
        self.arrived.notify_waiters();
        Ok(())
    }

    async fn receive(&self, max: u32, wait: Duration) -> Result<Vec<ReceivedMessage>, QueueError> {
        let until = Instant::now() + wait;
        loop {
            // Register interest before looking, so a send between the look and the wait is seen.
            let arrived = self.arrived.notified();
            let received = self.take_visible(max.clamp(1, 10) as usize);
            if !received.is_empty() || Instant::now() >= until {
                return Ok(received);
            }
            let wake = self.next_visible_at().map_or(until, |at| at.min(until));
            tokio::select! {
                () = arrived => {}
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    async fn delete(&self, receipt_handle: &str) -> Result<(), QueueError> {
        let mut state = self.state();
        let index = Self::position(&state, receipt_handle)?;
        state.messages.remove(index);
        Ok(())
    }

    async fn depth(&self) -> Result<QueueDepth, QueueError> {
        let now = Instant::now();
        let state = self.state();
        let visible = state
            .messages
            .iter()
            .filter(|m| m.visible_at <= now)
            .count() as u64;
        // Sent with a delay and never received yet.
        let delayed = state
            .messages
            .iter()
            .filter(|m| m.visible_at > now && m.receipt_handle.is_none())
            .count() as u64;
        Ok(QueueDepth {
            visible,
            in_flight: state.messages.len() as u64 - visible - delayed,
            delayed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::contract::Setup;

    /// The SQS contract on the in-memory queue.
    fn contract_setup() -> Box<Setup> {
        let visibility = Duration::from_secs(1);
        let dlq = Arc::new(MemoryQueue::new(visibility));
        let queue = MemoryQueue::new(visibility).with_dead_letter_queue(dlq.clone(), 2);
        Box::new(Setup {
            queue: Arc::new(queue),
            dlq,
            visibility,
            max_receive_count: 2,
        })
    }
    crate::queue_contract_tests!(contract_setup());

    const VISIBILITY: Duration = Duration::from_secs(30);

    #[tokio::test(start_paused = true)]
    async fn a_flooding_group_does_not_hold_back_the_others() {
        let queue = MemoryQueue::new(VISIBILITY);
        for n in 0..100 {
            queue
                .send_in_group(&format!("noisy-{n}"), Some("noisy"))
                .await
                .unwrap();
        }
        queue.send_in_group("quiet-a", Some("a")).await.unwrap();
        queue.send_in_group("quiet-b", Some("b")).await.unwrap();
        let bodies = |batch: Vec<ReceivedMessage>| -> Vec<String> {
            batch.into_iter().map(|m| m.body).collect()
        };
        // The first receive spreads over the groups: each quiet one before a second noisy one.
        let first = bodies(queue.receive(3, Duration::ZERO).await.unwrap());
        assert_eq!(first, ["noisy-0", "quiet-a", "quiet-b"]);
        // Behind 100 noisy messages, a quiet group's new message is the next one received, as
        // the noisy group has messages in flight and the quiet group none.
        queue.send_in_group("quiet-a-2", Some("a")).await.unwrap();
        queue.send_in_group("quiet-c", Some("c")).await.unwrap();
        // a has one in flight, c none; noisy one: c first, then the oldest of a and noisy.
        let next = bodies(queue.receive(3, Duration::ZERO).await.unwrap());
        assert_eq!(next, ["quiet-c", "noisy-1", "quiet-a-2"]);
        // Alone, a group is received in order, ten at a time.
        let rest = bodies(queue.receive(10, Duration::ZERO).await.unwrap());
        assert_eq!(
            rest,
            (2..12).map(|n| format!("noisy-{n}")).collect::<Vec<_>>()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_received_message_is_hidden_until_its_visibility_timeout_passes() {
        let queue = MemoryQueue::new(VISIBILITY);
        queue.send("a").await.unwrap();
        let first = queue.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(first.len(), 1);
        assert!(queue.receive(10, Duration::ZERO).await.unwrap().is_empty());

        tokio::time::advance(VISIBILITY + Duration::from_millis(1)).await;
        let again = queue.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(again[0].message_id, first[0].message_id);
        assert_eq!(again[0].receive_count, 2);
        assert_ne!(again[0].receipt_handle, first[0].receipt_handle);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stale_receipt_handle_cannot_delete_the_message() {
        let queue = MemoryQueue::new(VISIBILITY);
        queue.send("a").await.unwrap();
        let first = queue.receive(1, Duration::ZERO).await.unwrap().remove(0);
        tokio::time::advance(VISIBILITY * 2).await;
        let second = queue.receive(1, Duration::ZERO).await.unwrap().remove(0);
        assert!(matches!(
            queue.delete(&first.receipt_handle).await,
            Err(QueueError::InvalidReceipt)
        ));
        queue.delete(&second.receipt_handle).await.unwrap();
        assert_eq!(queue.depth().await.unwrap().total(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn changing_visibility_reschedules_the_message() {
        let queue = MemoryQueue::new(VISIBILITY);
        queue.send("a").await.unwrap();
        let message = queue.receive(1, Duration::ZERO).await.unwrap().remove(0);
        queue
            .change_visibility(&message.receipt_handle, Duration::from_secs(2))
            .await
            .unwrap();
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(queue.receive(1, Duration::ZERO).await.unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn messages_move_to_the_dead_letter_queue_after_max_receive_count() {
        let dlq = Arc::new(MemoryQueue::new(VISIBILITY));
        let queue = MemoryQueue::new(VISIBILITY).with_dead_letter_queue(dlq.clone(), 2);
        queue.send("poison").await.unwrap();
        for _ in 0..2 {
            assert_eq!(queue.receive(1, Duration::ZERO).await.unwrap().len(), 1);
            tokio::time::advance(VISIBILITY * 2).await;
        }
        assert!(queue.receive(1, Duration::ZERO).await.unwrap().is_empty());
        let dead = dlq.receive(1, Duration::ZERO).await.unwrap();
        assert_eq!(dead[0].body, "poison");
        assert_eq!(
            dead[0].receive_count, 3,
            "SQS keeps counting receives in the DLQ"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_poll_returns_as_soon_as_a_message_arrives() {
        let queue = Arc::new(MemoryQueue::new(VISIBILITY));
        let receiver = tokio::spawn({
            let queue = queue.clone();
            async move { queue.receive(10, Duration::from_secs(20)).await }
        });
        tokio::time::advance(Duration::from_secs(1)).await;
        queue.send("late").await.unwrap();
        let received = receiver.await.unwrap().unwrap();
        assert_eq!(received[0].body, "late");
    }

    #[tokio::test(start_paused = true)]
    async fn depth_counts_visible_and_in_flight_messages() {
        let queue = MemoryQueue::new(VISIBILITY);
        for body in ["a", "b", "c"] {
            queue.send(body).await.unwrap();
        }
        queue.receive(1, Duration::ZERO).await.unwrap();
        let depth = queue.depth().await.unwrap();
        assert_eq!((depth.visible, depth.in_flight), (2, 1));
    }
}
