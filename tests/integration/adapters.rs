//! The port contracts, run against the real adapters: one test per clause.

use std::time::Duration;

use spillway_core::queue::contract::Setup;
use spillway_tests::{Guarded, LocalTable, Stack};

/// The store contract on moto's DynamoDB.
mod dynamodb_on_moto {
    use super::*;

    async fn store() -> Guarded<spillway_core::store::DynamoStore> {
        Stack::create(3, Duration::from_secs(30)).await.store()
    }

    // moto applies a conditional update without holding a lock, so two concurrent claims of one
    // job can both succeed there (docs/guarantees.md); DynamoDB does not allow that, and neither
    // does DynamoDB Local, which runs these clauses below.
    spillway_core::store_contract_tests!(
        store().await,
        concurrency: ignore = "moto's conditional writes are not atomic; run on DynamoDB Local"
    );
}

/// The store contract on DynamoDB Local, AWS's own implementation: conditional writes and
/// transactions are where correctness lives, and the concurrency clauses hold only there.
mod dynamodb_local {
    use super::*;

    spillway_core::store_contract_tests!(LocalTable::create().await.store());
}

/// The queue contract on moto's SQS, the same one the in-memory queue is held to.
mod sqs_on_moto {
    use super::*;

    async fn setup() -> Guarded<Setup> {
        // Long enough that a slow emulator call cannot outlast it between two checks.
        let visibility = Duration::from_secs(2);
        let stack = Stack::create(2, visibility).await;
        stack.guard(Setup {
            queue: stack.queue(),
            dlq: stack.dlq(),
            visibility,
            max_receive_count: 2,
        })
    }

    spillway_core::queue_contract_tests!(setup().await);
}
