//! Support for the integration tests: a connection to the AWS emulator the test command started
//! (or any endpoint in `AWS_ENDPOINT_URL`), and a fresh table and queues for each test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use aws_config::{Region, SdkConfig};
use aws_lambda_events::sqs::SqsEvent;
use spillway_core::App;
use spillway_core::config::{Config, Resources, Settings};
use spillway_core::direct::{Direct, Endpoint, Service};
use spillway_core::domain::{Lanes, Priority};
use spillway_core::esm::{self, BatchReport, EventSourceMapping};
use spillway_core::processor::Processors;
use spillway_core::provision::{self, Queues};
use spillway_core::queue::{JobQueue, ReceivedMessage, SqsQueue};
use spillway_core::store::{DirectStore, DynamoStore};

pub mod aws_proxy;
pub mod chromium;
pub mod deployed;
pub mod deployment;
pub mod gateway;
pub mod iam;
pub mod lambda;
pub mod openapi;
pub mod python;
pub mod receiver;
pub mod target_function;
pub mod upstream;

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

/// A fresh table on DynamoDB Local, deleted when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct LocalTable {
    /// A client for DynamoDB Local.
    pub client: aws_sdk_dynamodb::Client,
    /// The table's name.
    pub name: String,
    _cleanup: Arc<Cleanup>,
}

impl LocalTable {
    /// Creates the table.
    pub async fn create() -> Self {
        let endpoint = dynamodb_local_endpoint();
        let client = dynamodb_client(&sdk_config().await, &endpoint);
        let name = unique_name("spillway-ddblocal");
        provision::ensure_table(&client, &name)
            .await
            .expect("create the table on DynamoDB Local");
        let cleanup = Cleanup {
            endpoint,
            tables: vec![name.clone()],
            queue_urls: Vec::new(),
        };
        Self {
            client,
            name,
            _cleanup: Arc::new(cleanup),
        }
    }

    /// The table through the real DynamoDB adapter, for the store contract.
    pub fn store(&self) -> Guarded<DynamoStore> {
        Guarded {
            value: DynamoStore::new(self.client.clone(), &self.name),
            _cleanup: self._cleanup.clone(),
        }
    }

    /// The table through the DynamoDB adapter with its hot operations on the direct client.
    pub fn direct_store(&self) -> Guarded<DirectStore> {
        let direct = direct(&dynamodb_local_endpoint());
        Guarded {
            value: DynamoStore::new(self.client.clone(), &self.name)
                .direct(direct.client(Service::DynamoDb)),
            _cleanup: self._cleanup.clone(),
        }
    }
}

/// Direct clients for `endpoint`, signing with the tests' throwaway credentials.
pub fn direct(endpoint: &str) -> Direct {
    let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".to_owned());
    Direct::new(
        Endpoint::parse(endpoint),
        &region,
        ("testing".to_owned(), "testing".to_owned(), None),
        spillway_core::sdk::Roots::System,
    )
}

fn dynamodb_client(sdk: &SdkConfig, endpoint: &str) -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::config::Builder::from(sdk)
        .endpoint_url(endpoint)
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

/// Resources of one test, deleted when dropped, so a test that fails or panics leaves nothing
/// behind either.
#[derive(Debug)]
struct Cleanup {
    endpoint: String,
    tables: Vec<String>,
    queue_urls: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, which is busy running this drop: delete from a
        // thread with a runtime and clients of its own, and wait for it.
        let endpoint = std::mem::take(&mut self.endpoint);
        let tables = std::mem::take(&mut self.tables);
        let queue_urls = std::mem::take(&mut self.queue_urls);
        let deleting = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the cleanup");
            runtime.block_on(async move {
                let sdk = sdk_config().await;
                let dynamodb = dynamodb_client(&sdk, &endpoint);
                let sqs = aws_sdk_sqs::Client::new(&sdk);
                for table in tables {
                    if let Err(error) = dynamodb.delete_table().table_name(&table).send().await {
                        eprintln!("could not delete table {table}: {error:?}");
                    }
                }
                for url in queue_urls {
                    if let Err(error) = sqs.delete_queue().queue_url(&url).send().await {
                        eprintln!("could not delete queue {url}: {error:?}");
                    }
                }
            });
        });
        let _ = deleting.join();
    }
}

/// A value that keeps a test's resources alive while it is used; they are deleted when the last
/// holder is dropped.
#[derive(Debug)]
pub struct Guarded<T> {
    value: T,
    _cleanup: Arc<Cleanup>,
}

impl<T> std::ops::Deref for Guarded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

/// The workspace's root folder.
pub fn workspace_root() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace")
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
/// parallel without meeting, and deleted when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct Stack {
    pub sdk: SdkConfig,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub table: String,
    pub queue_url: String,
    pub queue_arn: String,
    pub dlq_url: String,
    /// The high lane's queue and its DLQ.
    pub high_queue_url: String,
    pub high_queue_arn: String,
    pub high_dlq_url: String,
    pub max_receive_count: u32,
    /// Both work queues' visibility timeout.
    pub visibility_timeout: Duration,
    cleanup: Arc<Cleanup>,
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
        let high = provision::ensure_queues(
            &sqs,
            &format!("{name}-high"),
            max_receive_count,
            visibility_timeout,
        )
        .await
        .expect("create the high lane's queues");
        let cleanup = Cleanup {
            endpoint: endpoint(),
            tables: vec![name.clone()],
            queue_urls: vec![
                queue_url.clone(),
                dlq_url.clone(),
                high.queue_url.clone(),
                high.dlq_url.clone(),
            ],
        };
        Self {
            sdk,
            dynamodb,
            sqs,
            table: name,
            queue_url,
            queue_arn,
            dlq_url,
            high_queue_url: high.queue_url,
            high_queue_arn: high.queue_arn,
            high_dlq_url: high.dlq_url,
            max_receive_count,
            visibility_timeout,
            cleanup: Arc::new(cleanup),
        }
    }

    /// The table through the real DynamoDB adapter, for the store contract.
    pub fn store(&self) -> Guarded<DynamoStore> {
        self.guard(DynamoStore::new(self.dynamodb.clone(), &self.table))
    }

    /// The table through the DynamoDB adapter with its hot operations on the direct client.
    pub fn direct_store(&self) -> Guarded<DirectStore> {
        let client = direct(&endpoint()).client(Service::DynamoDb);
        self.guard(DynamoStore::new(self.dynamodb.clone(), &self.table).direct(client))
    }

    /// The work queue through the SQS adapter with its `SendMessage` on the direct client.
    pub fn direct_queue(&self) -> Arc<dyn JobQueue> {
        let client = direct(&endpoint()).client(Service::Sqs);
        Arc::new(SqsQueue::new(self.sqs.clone(), &self.queue_url).direct(client))
    }

    /// `value`, keeping these resources alive while it is held.
    pub fn guard<T>(&self, value: T) -> Guarded<T> {
        Guarded {
            value,
            _cleanup: self.cleanup.clone(),
        }
    }

    /// Settings whose attempts match the queue's redrive policy and whose visibility timeout is
    /// the queues', with no backoff.
    pub fn settings(&self) -> Settings {
        Settings {
            max_attempts: self.max_receive_count,
            visibility_timeout: self.visibility_timeout,
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
                queue_urls: Lanes {
                    high: Some(self.high_queue_url.clone()),
                    normal: Some(self.queue_url.clone()),
                },
            },
            settings,
        }
    }

    /// An app on the real DynamoDB and SQS adapters.
    pub fn app(&self, settings: Settings, processors: Processors) -> App {
        App::on_aws(&self.sdk, &self.config(settings)).with_processors(processors)
    }

    /// The work queue (the normal lane's) through the real SQS adapter.
    pub fn queue(&self) -> Arc<dyn JobQueue> {
        Arc::new(SqsQueue::new(self.sqs.clone(), &self.queue_url))
    }

    /// Both lanes' queues through the real SQS adapter.
    pub fn queues(&self) -> Lanes<Arc<dyn JobQueue>> {
        Lanes {
            high: Arc::new(SqsQueue::new(self.sqs.clone(), &self.high_queue_url)),
            normal: self.queue(),
        }
    }

    /// The DLQ through the real SQS adapter.
    pub fn dlq(&self) -> Arc<dyn JobQueue> {
        Arc::new(SqsQueue::new(self.sqs.clone(), &self.dlq_url))
    }

    /// An event source mapping on the work queue, as the template configures it.
    pub fn esm(&self) -> EventSourceMapping {
        self.lane_esm(Priority::Normal)
    }

    /// An event source mapping on `lane`'s queue, as the template configures it.
    pub fn lane_esm(&self, lane: Priority) -> EventSourceMapping {
        let (queue, queue_arn) = match lane {
            Priority::Normal => (self.queue(), &self.queue_arn),
            Priority::High => (self.queues().high, &self.high_queue_arn),
        };
        EventSourceMapping {
            queue,
            queue_arn: queue_arn.clone(),
            region: "us-east-1".to_owned(),
            batch_size: 10,
            batching_window: Duration::ZERO,
            function_timeout: Duration::from_secs(30),
        }
    }

    /// An app on the table whose queue cannot be reached, as when SQS is down.
    pub fn app_with_an_unreachable_queue(&self) -> App {
        let mut config = self.config(self.settings());
        config.resources.queue_urls =
            Lanes::both(Some(format!("{}/123456789012/unreachable", endpoint())));
        App::on_aws(&self.sdk, &config)
    }

    /// Receives one batch from the work queue (waiting up to 5 s for its first message), hands it
    /// to `app`'s consumer as the event source mapping does, and returns what the mapping did;
    /// panics when no message came.
    pub async fn deliver(&self, app: &App) -> BatchReport {
        self.esm()
            .poll_once(app, Duration::from_secs(5))
            .await
            .unwrap()
            .expect("a message in the work queue within 5 s")
    }

    /// Up to ten messages of the work queue, received (waiting up to 5 s for the first) and not
    /// handled yet.
    pub async fn receive(&self) -> Vec<ReceivedMessage> {
        self.queue()
            .receive(10, Duration::from_secs(5))
            .await
            .unwrap()
    }

    /// The event Lambda builds for `messages` of the work queue.
    pub fn sqs_event(&self, messages: &[ReceivedMessage]) -> SqsEvent {
        esm::sqs_event(messages, &self.queue_arn, "us-east-1")
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

    /// Every job in the table: its id and status.
    pub async fn job_statuses(&self) -> Vec<(String, String)> {
        job_statuses(&self.dynamodb, &self.table).await
    }

    /// Every message in the work queue, visible or not.
    pub async fn queued_messages(&self) -> u64 {
        self.queue().depth().await.unwrap().total()
    }
}

/// Every job item in `table` (paginated scan): its id and status.
pub async fn job_statuses(
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Vec<(String, String)> {
    let mut jobs = Vec::new();
    let mut start = None;
    loop {
        let page = dynamodb
            .scan()
            .table_name(table)
            .set_exclusive_start_key(start)
            .send()
            .await
            .expect("scan the table");
        for item in page.items() {
            let pk = item.get("pk").and_then(|v| v.as_s().ok());
            let status = item.get("status").and_then(|v| v.as_s().ok());
            if let (Some(pk), Some(status)) = (pk, status)
                && let Some(id) = pk.strip_prefix("job#")
            {
                jobs.push((id.to_owned(), status.clone()));
            }
        }
        start = page.last_evaluated_key;
        if start.is_none() {
            return jobs;
        }
    }
}
