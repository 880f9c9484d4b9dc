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

    /// A table an older build made has no index of active jobs: provisioning it again adds the
    /// index, which holds the jobs already there, as their items carry the attribute.
    #[tokio::test]
    async fn provisioning_adds_the_index_to_a_table_made_without_it() {
        use aws_sdk_dynamodb::types::{
            DeleteGlobalSecondaryIndexAction, GlobalSecondaryIndexUpdate,
        };
        use spillway_core::domain::{Job, JobId, Kind, NewJob, Owner, PayloadDigest, Timestamp};
        use spillway_core::store::{ACTIVE_BY_OWNER_INDEX, JobStore};

        let table = LocalTable::create().await;
        let indexes = || async {
            let described = table
                .client
                .describe_table()
                .table_name(&table.name)
                .send()
                .await
                .unwrap();
            described
                .table
                .map(|t| t.global_secondary_indexes.unwrap_or_default().len())
                .unwrap_or(0)
        };
        let drop = DeleteGlobalSecondaryIndexAction::builder()
            .index_name(ACTIVE_BY_OWNER_INDEX)
            .build()
            .unwrap();
        table
            .client
            .update_table()
            .table_name(&table.name)
            .global_secondary_index_updates(
                GlobalSecondaryIndexUpdate::builder().delete(drop).build(),
            )
            .send()
            .await
            .unwrap();
        for _ in 0..50 {
            if indexes().await == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(indexes().await, 0);

        let store = table.store();
        let owner = Owner::authenticated("arn:aws:iam::123456789012:user/older");
        let now = Timestamp::from_system_time(std::time::SystemTime::now());
        let job = Job::pending(NewJob {
            id: JobId::generate(),
            kind: Kind::parse("echo").unwrap(),
            owner: owner.clone(),
            priority: Default::default(),
            created_at: now,
            deadline: now.saturating_add(Duration::from_secs(300)),
            run_at: None,
            payload: PayloadDigest::of("1"),
            expires_at: now.saturating_add(Duration::from_secs(900)),
            callback_url: None,
            correlation_id: None,
        });
        store.create(&job, None).await.unwrap();
        assert!(
            store.active_jobs(&owner, 10).await.is_err(),
            "counted without an index"
        );

        spillway_core::provision::ensure_table(&table.client, &table.name)
            .await
            .unwrap();
        assert_eq!(indexes().await, 1);
        let mut counted = 0;
        for _ in 0..50 {
            counted = store.active_jobs(&owner, 10).await.unwrap();
            if counted == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(counted, 1, "the job already there was not backfilled");
    }
}

/// The store contract on moto's DynamoDB, the hot operations through the direct client.
mod direct_dynamodb_on_moto {
    use super::*;

    async fn store() -> Guarded<spillway_core::store::DirectStore> {
        Stack::create(3, Duration::from_secs(30))
            .await
            .direct_store()
    }

    spillway_core::store_contract_tests!(
        store().await,
        concurrency: ignore = "moto's conditional writes are not atomic; run on DynamoDB Local"
    );
}

/// The store contract on DynamoDB Local, the hot operations through the direct client.
mod direct_dynamodb_local {
    use super::*;

    spillway_core::store_contract_tests!(LocalTable::create().await.direct_store());
}

/// The queue contract on moto's SQS, `SendMessage` through the direct client.
mod direct_sqs_on_moto {
    use super::*;

    async fn setup() -> Guarded<Setup> {
        let visibility = Duration::from_secs(2);
        let stack = Stack::create(2, visibility).await;
        stack.guard(Setup {
            queue: stack.direct_queue(),
            dlq: stack.dlq(),
            visibility,
            max_receive_count: 2,
        })
    }

    spillway_core::queue_contract_tests!(setup().await);
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
