//! The SQS behaviour Spillway relies on, run against each `JobQueue`: the in-memory queue in unit
//! tests and SQS (moto, or LocalStack) in the integration tests, so the two are shown to match.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use super::JobQueue;

/// A work queue and its dead-letter queue, built by the caller with the given settings.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The work queue: visibility timeout `visibility`, redrive to `dlq` after
    /// `max_receive_count` receives.
    pub queue: Arc<dyn JobQueue>,
    /// Its dead-letter queue.
    pub dlq: Arc<dyn JobQueue>,
    /// The work queue's visibility timeout; whole seconds, as SQS counts them.
    pub visibility: Duration,
    /// The redrive policy's `maxReceiveCount`.
    pub max_receive_count: u32,
}

/// Defines one `#[tokio::test]` per clause of the queue contract, each on queues of its own from
/// `$setup` (an expression that dereferences to a [`Setup`], evaluated once per test; each clause
/// starts and ends with empty queues).
#[macro_export]
macro_rules! queue_contract_tests {
    ($setup:expr) => {
        $crate::queue_contract_tests!(@test $setup, a_received_message_stays_hidden_for_the_visibility_timeout);
        $crate::queue_contract_tests!(@test $setup, changing_the_visibility_reschedules_a_message);
        $crate::queue_contract_tests!(@test $setup, a_deleted_message_is_gone);
        $crate::queue_contract_tests!(@test $setup, a_batch_send_enqueues_each_message_once_in_order_of_its_ids);
        $crate::queue_contract_tests!(@test $setup, a_message_moves_to_the_dlq_after_max_receive_count_receives);
        $crate::queue_contract_tests!(@test $setup, a_delayed_message_is_received_only_after_its_delay);
    };
    (@test $setup:expr, $clause:ident) => {
        #[tokio::test]
        async fn $clause() {
            let setup = $setup;
            $crate::queue::contract::$clause(&*setup).await;
        }
    };
}

/// Waits past a visibility timeout.
async fn outlast(timeout: Duration) {
    tokio::time::sleep(timeout + Duration::from_millis(300)).await;
}

/// Whether a receive waiting at most `wait` gets nothing.
async fn nothing_received(queue: &dyn JobQueue, wait: Duration) -> bool {
    queue.receive(10, wait).await.unwrap().is_empty()
}

async fn receive_one(queue: &dyn JobQueue) -> super::ReceivedMessage {
    let mut received = queue.receive(1, Duration::from_secs(5)).await.unwrap();
    assert_eq!(received.len(), 1, "expected a message");
    received.remove(0)
}

/// A clause of the queue contract.
pub async fn a_received_message_stays_hidden_for_the_visibility_timeout(setup: &Setup) {
    let id = setup.queue.send("hidden").await.unwrap();
    let first = receive_one(setup.queue.as_ref()).await;
    assert_eq!(
        (first.message_id.as_str(), first.receive_count),
        (id.as_str(), 1)
    );
    assert!(
        nothing_received(setup.queue.as_ref(), Duration::ZERO).await,
        "visible while in flight"
    );
    let depth = setup.queue.depth().await.unwrap();
    assert_eq!((depth.visible, depth.in_flight), (0, 1));

    outlast(setup.visibility).await;
    let second = receive_one(setup.queue.as_ref()).await;
    assert_eq!(second.message_id, id);
    assert_eq!(second.receive_count, 2, "every receive counts");
    assert_ne!(
        second.receipt_handle, first.receipt_handle,
        "every receive has its own handle"
    );
    assert_eq!(second.body, "hidden");
    setup.queue.delete(&second.receipt_handle).await.unwrap();
}

/// A clause of the queue contract.
pub async fn changing_the_visibility_reschedules_a_message(setup: &Setup) {
    setup.queue.send("rescheduled").await.unwrap();
    let message = receive_one(setup.queue.as_ref()).await;
    setup
        .queue
        .change_visibility(&message.receipt_handle, Duration::ZERO)
        .await
        .unwrap();
    let again = receive_one(setup.queue.as_ref()).await;
    assert_eq!(
        again.message_id, message.message_id,
        "visibility 0 returns it at once"
    );

    let longer = setup.visibility + Duration::from_secs(2);
    setup
        .queue
        .change_visibility(&again.receipt_handle, longer)
        .await
        .unwrap();
    outlast(setup.visibility).await;
    assert!(
        nothing_received(setup.queue.as_ref(), Duration::ZERO).await,
        "the longer timeout holds"
    );
    assert_eq!(setup.queue.depth().await.unwrap().in_flight, 1);
    setup.queue.delete(&again.receipt_handle).await.unwrap();
}

/// A clause of the queue contract.
pub async fn a_deleted_message_is_gone(setup: &Setup) {
    setup.queue.send("deleted").await.unwrap();
    let message = receive_one(setup.queue.as_ref()).await;
    setup.queue.delete(&message.receipt_handle).await.unwrap();
    outlast(setup.visibility).await;
    assert!(nothing_received(setup.queue.as_ref(), Duration::ZERO).await);
    assert_eq!(setup.queue.depth().await.unwrap().total(), 0);
}

/// A clause of the queue contract.
pub async fn a_message_moves_to_the_dlq_after_max_receive_count_receives(setup: &Setup) {
    let id = setup.queue.send("poison").await.unwrap();
    for count in 1..=setup.max_receive_count {
        let message = receive_one(setup.queue.as_ref()).await;
        assert_eq!(message.receive_count, count);
        setup
            .queue
            .change_visibility(&message.receipt_handle, Duration::ZERO)
            .await
            .unwrap();
    }
    // The receive after the last allowed one moves the message instead of returning it.
    assert!(nothing_received(setup.queue.as_ref(), Duration::from_secs(1)).await);
    let dead = receive_one(setup.dlq.as_ref()).await;
    assert_eq!(
        (dead.message_id.as_str(), dead.body.as_str()),
        (id.as_str(), "poison")
    );
    setup.dlq.delete(&dead.receipt_handle).await.unwrap();
    assert_eq!(setup.queue.depth().await.unwrap().total(), 0);
}

/// A clause of the queue contract: a batch of more messages than one `SendMessageBatch` takes
/// enqueues each once, and answers each message's id in the order they were given.
pub async fn a_batch_send_enqueues_each_message_once_in_order_of_its_ids(setup: &Setup) {
    let bodies: Vec<String> = (0..23).map(|n| format!("batch-{n}")).collect();
    let messages: Vec<super::Outgoing<'_>> = bodies
        .iter()
        .enumerate()
        .map(|(n, body)| super::Outgoing {
            body,
            options: super::SendOptions {
                group: Some(if n % 2 == 0 { "even" } else { "odd" }),
                ..super::SendOptions::default()
            },
        })
        .collect();
    let sent = setup.queue.send_batch(&messages).await;
    let ids: Vec<String> = sent.into_iter().map(Result::unwrap).collect();
    assert_eq!(ids.len(), bodies.len());
    let mut received = std::collections::HashMap::new();
    while received.len() < bodies.len() {
        let batch = setup
            .queue
            .receive(10, Duration::from_secs(2))
            .await
            .unwrap();
        assert!(
            !batch.is_empty(),
            "only {} of {} arrived",
            received.len(),
            bodies.len()
        );
        for message in batch {
            setup.queue.delete(&message.receipt_handle).await.unwrap();
            assert!(
                received.insert(message.message_id, message.body).is_none(),
                "received twice"
            );
        }
    }
    for (id, body) in ids.iter().zip(&bodies) {
        assert_eq!(received.get(id), Some(body), "message {id}");
    }
    assert!(setup.queue.send_batch(&[]).await.is_empty());
    assert_eq!(setup.queue.depth().await.unwrap().total(), 0);

    // Each entry keeps its own delay.
    let later = super::Outgoing {
        body: "batch-later",
        options: super::SendOptions {
            group: Some("owner"),
            delay: Duration::from_secs(2),
        },
    };
    let now = super::Outgoing {
        body: "batch-now",
        options: super::SendOptions::default(),
    };
    for sent in setup.queue.send_batch(&[later, now]).await {
        sent.unwrap();
    }
    let first = receive_one(&*setup.queue).await;
    assert_eq!(first.body, "batch-now");
    setup.queue.delete(&first.receipt_handle).await.unwrap();
    assert!(nothing_received(&*setup.queue, Duration::from_millis(500)).await);
    outlast(Duration::from_secs(2)).await;
    let second = receive_one(&*setup.queue).await;
    assert_eq!(second.body, "batch-later");
    setup.queue.delete(&second.receipt_handle).await.unwrap();
}

/// A clause of the queue contract.
pub async fn a_delayed_message_is_received_only_after_its_delay(setup: &Setup) {
    let options = super::SendOptions {
        group: Some("owner"),
        delay: Duration::from_secs(2),
    };
    setup.queue.send_with("later", options).await.unwrap();
    setup.queue.send("now").await.unwrap();
    let first = receive_one(&*setup.queue).await;
    assert_eq!(first.body, "now");
    setup.queue.delete(&first.receipt_handle).await.unwrap();
    assert_eq!(setup.queue.depth().await.unwrap().visible, 0);
    assert!(nothing_received(&*setup.queue, Duration::from_millis(500)).await);
    outlast(Duration::from_secs(2)).await;
    let later = receive_one(&*setup.queue).await;
    assert_eq!(later.body, "later");
    setup.queue.delete(&later.receipt_handle).await.unwrap();
}
