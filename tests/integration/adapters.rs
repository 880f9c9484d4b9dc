//! The port contracts, run against the real adapters.

use std::time::Duration;

use spillway_core::queue::contract as queue_contract;
use spillway_core::store::{DynamoStore, contract};
use spillway_tests::Stack;

#[tokio::test]
async fn the_dynamodb_store_keeps_the_store_contract() {
    let stack = Stack::create(3, Duration::from_secs(30)).await;
    let store = DynamoStore::new(stack.dynamodb.clone(), &stack.table);
    contract::run_all(&store).await;
    stack.delete().await;
}

#[tokio::test]
async fn the_sqs_queue_keeps_the_queue_contract_the_memory_queue_is_held_to() {
    // Long enough that a slow emulator call cannot outlast it between two checks.
    let visibility = Duration::from_secs(2);
    let stack = Stack::create(2, visibility).await;
    let (queue, dlq) = (stack.queue(), stack.dlq());
    let setup = queue_contract::Setup {
        queue: queue.as_ref(),
        dlq: dlq.as_ref(),
        visibility,
        max_receive_count: 2,
    };
    queue_contract::run_all(&setup).await;
    stack.delete().await;
}

#[tokio::test]
async fn dynamodb_local_keeps_the_store_contract_too() {
    // moto re-implements DynamoDB; DynamoDB Local is AWS's own implementation, and conditional
    // writes and transactions are where correctness lives.
    let (client, table) = spillway_tests::dynamodb_local_table().await;
    contract::run_all(&DynamoStore::new(client.clone(), &table)).await;
    client
        .delete_table()
        .table_name(&table)
        .send()
        .await
        .unwrap();
}
