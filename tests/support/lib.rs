//! Support for the integration tests: a connection to the AWS emulator the test command started
//! (or any endpoint in `AWS_ENDPOINT_URL`), and a fresh table and queues for each test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use aws_config::{Region, SdkConfig};
use spillway_core::App;
use spillway_core::config::{Config, Resources, Settings};
use spillway_core::esm::EventSourceMapping;
use spillway_core::processor::Processors;
use spillway_core::provision::{self, Queues};
use spillway_core::queue::{JobQueue, SqsQueue};

pub mod emulator;
pub mod openapi;
pub mod receiver;

/// The emulator's endpoint. The test command starts moto and sets it; point it at LocalStack to
/// run the same tests there.
pub fn endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| {
        panic!(
            "the integration tests need an AWS emulator: run `scripts/test`, which starts one, \
             or set AWS_ENDPOINT_URL to a running moto server or LocalStack"
        )
    })
}

/// DynamoDB Local's endpoint (AWS's own implementation), started by the test command.
pub fn dynamodb_local_endpoint() -> String {
    std::env::var("SPILLWAY_DYNAMODB_LOCAL_URL").unwrap_or_else(|_| {
        panic!(
            "these tests need DynamoDB Local: run `scripts/test`, which starts it, or set \
             SPILLWAY_DYNAMODB_LOCAL_URL to a running one"
        )
    })
}

/// A DynamoDB client for DynamoDB Local, and a fresh table on it.
pub async fn dynamodb_local_table() -> (aws_sdk_dynamodb::Client, String) {
    let sdk = sdk_config().await;
    let config = aws_sdk_dynamodb::config::Builder::from(&sdk)
        .endpoint_url(dynamodb_local_endpoint())
        .build();
    let client = aws_sdk_dynamodb::Client::from_conf(config);
    let table = unique_name("spillway-ddblocal");
    provision::ensure_table(&client, &table)
        .await
        .expect("create the table on DynamoDB Local");
    (client, table)
}

/// `prefix` with a random suffix, for resources of one test.
pub fn unique_name(prefix: &str) -> String {
    let suffix = uuid::Uuid::now_v7().simple().to_string();
    format!("{prefix}-{}", &suffix[suffix.len() - 12..])
}

/// SDK configuration for the emulator: explicit region, throwaway credentials.
pub async fn sdk_config() -> SdkConfig {
    let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".to_owned());
    spillway_core::sdk::loader(spillway_core::sdk::Roots::System)
        .region(Region::new(region))
        .endpoint_url(endpoint())
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "spillway-tests",
        ))
        .load()
        .await
}

/// A table, a work queue and its DLQ made for one test, named with a random suffix so tests run in
/// parallel without meeting.
#[derive(Debug, Clone)]
pub struct Stack {
    pub sdk: SdkConfig,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub table: String,
    pub queue_url: String,
    pub queue_arn: String,
    pub dlq_url: String,
    pub max_receive_count: u32,
}

impl Stack {
    /// Creates the resources; the work queue redrives to the DLQ after `max_receive_count`
    /// receives and hides received messages for `visibility_timeout`.
    pub async fn create(max_receive_count: u32, visibility_timeout: Duration) -> Self {
        let sdk = sdk_config().await;
        let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let name = unique_name("spillway-test");

        provision::ensure_table(&dynamodb, &name)
            .await
            .expect("create the table");
        let Queues {
            queue_url,
            queue_arn,
            dlq_url,
        } = provision::ensure_queues(&sqs, &name, max_receive_count, visibility_timeout)
            .await
            .expect("create the queues");
        Self {
            sdk,
            dynamodb,
            sqs,
            table: name,
            queue_url,
            queue_arn,
            dlq_url,
            max_receive_count,
        }
    }

    /// Settings whose attempts match the queue's redrive policy, with no backoff.
    pub fn settings(&self) -> Settings {
        Settings {
            max_attempts: self.max_receive_count,
            backoff_base: Duration::ZERO,
            backoff_max: Duration::ZERO,
            ..Settings::default()
        }
    }

    /// The configuration a function deployed on these resources would read.
    pub fn config(&self, settings: Settings) -> Config {
        Config {
            resources: Resources {
                table: self.table.clone(),
                queue_url: self.queue_url.clone(),
                dlq_url: Some(self.dlq_url.clone()),
            },
            settings,
        }
    }

    /// An app on the real DynamoDB and SQS adapters.
    pub fn app(&self, settings: Settings, processors: Processors) -> App {
        App::on_aws(&self.sdk, &self.config(settings)).with_processors(processors)
    }

    /// The work queue through the real SQS adapter.
    pub fn queue(&self) -> Arc<dyn JobQueue> {
        Arc::new(SqsQueue::new(self.sqs.clone(), &self.queue_url))
    }

    /// The DLQ through the real SQS adapter.
    pub fn dlq(&self) -> Arc<dyn JobQueue> {
        Arc::new(SqsQueue::new(self.sqs.clone(), &self.dlq_url))
    }

    /// An event source mapping on the work queue, as the template configures it.
    pub fn esm(&self) -> EventSourceMapping {
        EventSourceMapping {
            queue: self.queue(),
            queue_arn: self.queue_arn.clone(),
            region: "us-east-1".to_owned(),
            batch_size: 10,
            batching_window: Duration::ZERO,
            function_timeout: Duration::from_secs(30),
        }
    }

    /// Every item in the table.
    pub async fn item_count(&self) -> usize {
        let output = self
            .dynamodb
            .scan()
            .table_name(&self.table)
            .send()
            .await
            .unwrap();
        output.items.unwrap_or_default().len()
    }

    /// Every message in the work queue, visible or not.
    pub async fn queued_messages(&self) -> u64 {
        self.queue().depth().await.unwrap().total()
    }

    /// Deletes the table and queues.
    pub async fn delete(self) {
        self.dynamodb
            .delete_table()
            .table_name(&self.table)
            .send()
            .await
            .unwrap();
        self.sqs
            .delete_queue()
            .queue_url(&self.queue_url)
            .send()
            .await
            .unwrap();
        self.sqs
            .delete_queue()
            .queue_url(&self.dlq_url)
            .send()
            .await
            .unwrap();
    }
}
