//! The port contracts, run against the real adapters.

use std::time::Duration;

use spillway_core::store::{DynamoStore, contract};
use spillway_tests::Stack;

#[tokio::test]
async fn the_dynamodb_store_keeps_the_store_contract() {
    let stack = Stack::create(3, Duration::from_secs(30)).await;
    let store = DynamoStore::new(stack.dynamodb.clone(), &stack.table);
    contract::run_all(&store).await;
    stack.delete().await;
}
