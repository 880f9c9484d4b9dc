//! Creates Spillway's table and queues where they are missing, the way `infra/template.yaml`
//! defines them: for `spillway dev --create-resources` against an emulator, and for tests.

use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, CreateGlobalSecondaryIndexAction, GlobalSecondaryIndex,
    GlobalSecondaryIndexUpdate, IndexStatus, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, TableStatus, TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;

use crate::error::BoxError;
use crate::store::{ACTIVE_BY_OWNER_INDEX, ACTIVE_OWNER};

/// The queues of one deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queues {
    /// The work queue's URL.
    pub queue_url: String,
    /// The work queue's ARN.
    pub queue_arn: String,
    /// The dead-letter queue's URL.
    pub dlq_url: String,
}

fn boxed<E: std::error::Error + Send + Sync + 'static>(error: E) -> BoxError {
    Box::new(error)
}

/// Creates the table `name` (partition key `pk`, on-demand, TTL on `expires_at`, and the sparse
/// index of active jobs by owner that the template declares when `MaxActiveJobsPerOwner` is on)
/// unless it exists, adds the index to a table made without it, and waits until both are active.
pub async fn ensure_table(client: &aws_sdk_dynamodb::Client, name: &str) -> Result<(), BoxError> {
    let existing = match client.describe_table().table_name(name).send().await {
        Ok(output) => Some(output.table),
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            None
        }
        Err(error) => return Err(boxed(error)),
    };
    let exists = existing.is_some();
    let attribute = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(boxed)
    };
    let hash = |name: &str| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(KeyType::Hash)
            .build()
            .map_err(boxed)
    };
    let keys_only = Projection::builder()
        .projection_type(ProjectionType::KeysOnly)
        .build();
    match existing {
        None => {
            let index = GlobalSecondaryIndex::builder()
                .index_name(ACTIVE_BY_OWNER_INDEX)
                .key_schema(hash(ACTIVE_OWNER)?)
                .projection(keys_only)
                .build()
                .map_err(boxed)?;
            client
                .create_table()
                .table_name(name)
                .key_schema(hash("pk")?)
                .attribute_definitions(attribute("pk")?)
                .attribute_definitions(attribute(ACTIVE_OWNER)?)
                .global_secondary_indexes(index)
                .billing_mode(BillingMode::PayPerRequest)
                .send()
                .await
                .map_err(boxed)?;
        }
        Some(table) => {
            let has_index = table.as_ref().is_some_and(|table| {
                table
                    .global_secondary_indexes()
                    .iter()
                    .any(|index| index.index_name() == Some(ACTIVE_BY_OWNER_INDEX))
            });
            if !has_index {
                let create = CreateGlobalSecondaryIndexAction::builder()
                    .index_name(ACTIVE_BY_OWNER_INDEX)
                    .key_schema(hash(ACTIVE_OWNER)?)
                    .projection(keys_only)
                    .build()
                    .map_err(boxed)?;
                client
                    .update_table()
                    .table_name(name)
                    .attribute_definitions(attribute(ACTIVE_OWNER)?)
                    .global_secondary_index_updates(
                        GlobalSecondaryIndexUpdate::builder().create(create).build(),
                    )
                    .send()
                    .await
                    .map_err(boxed)?;
            }
        }
    }
    for _ in 0..120 {
        let table = client
            .describe_table()
            .table_name(name)
            .send()
            .await
            .map_err(boxed)?
            .table;
        let active = table.as_ref().is_some_and(|table| {
            table.table_status == Some(TableStatus::Active)
                && table.global_secondary_indexes().iter().all(|index| {
                    index
                        .index_status
                        .as_ref()
                        .is_none_or(|s| *s == IndexStatus::Active)
                })
        });
        if active {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if !exists {
        let ttl = TimeToLiveSpecification::builder()
            .enabled(true)
            .attribute_name("expires_at")
            .build()
            .map_err(boxed)?;
        client
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(ttl)
            .send()
            .await
            .map_err(boxed)?;
    }
    Ok(())
}

/// Creates the work queue `name` and its DLQ `name-dlq` unless they exist, and (re)applies the
/// redrive policy and visibility timeout to the work queue.
pub async fn ensure_queues(
    client: &aws_sdk_sqs::Client,
    name: &str,
    max_receive_count: u32,
    visibility_timeout: Duration,
) -> Result<Queues, BoxError> {
    let dlq_url = create_queue(client, &format!("{name}-dlq")).await?;
    let dlq_arn = queue_arn(client, &dlq_url).await?;
    let queue_url = create_queue(client, name).await?;
    let redrive = serde_json::json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": max_receive_count.to_string(),
    });
    client
        .set_queue_attributes()
        .queue_url(&queue_url)
        .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            visibility_timeout.as_secs().to_string(),
        )
        .send()
        .await
        .map_err(boxed)?;
    let queue_arn = queue_arn(client, &queue_url).await?;
    Ok(Queues {
        queue_url,
        queue_arn,
        dlq_url,
    })
}

/// The ARN of the queue at `url`.
pub async fn queue_arn(client: &aws_sdk_sqs::Client, url: &str) -> Result<String, BoxError> {
    let attributes = client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(boxed)?
        .attributes
        .unwrap_or_default();
    attributes
        .get(&QueueAttributeName::QueueArn)
        .cloned()
        .ok_or_else(|| format!("the queue at {url} reported no ARN").into())
}

/// The `maxReceiveCount` of the queue's redrive policy, if it has one.
pub async fn max_receive_count(
    client: &aws_sdk_sqs::Client,
    url: &str,
) -> Result<Option<u32>, BoxError> {
    let attributes = client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::RedrivePolicy)
        .send()
        .await
        .map_err(boxed)?
        .attributes
        .unwrap_or_default();
    let Some(policy) = attributes.get(&QueueAttributeName::RedrivePolicy) else {
        return Ok(None);
    };
    let policy: serde_json::Value = serde_json::from_str(policy).map_err(boxed)?;
    // SQS writes the count as a number; CloudFormation and older clients as a string.
    let count = match &policy["maxReceiveCount"] {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    };
    Ok(count.and_then(|c| u32::try_from(c).ok()))
}

/// The queue's visibility timeout, as `GetQueueAttributes` reports it; `None` when the endpoint
/// reports none.
pub async fn visibility_timeout(
    client: &aws_sdk_sqs::Client,
    url: &str,
) -> Result<Option<std::time::Duration>, BoxError> {
    let attributes = client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::VisibilityTimeout)
        .send()
        .await
        .map_err(boxed)?
        .attributes
        .unwrap_or_default();
    Ok(attributes
        .get(&QueueAttributeName::VisibilityTimeout)
        .and_then(|seconds| seconds.parse().ok())
        .map(std::time::Duration::from_secs))
}

/// Creates the queue `name` unless it exists, and lets it take SQS's largest message, as the
/// template's queues do. Set after the create, not in it: `CreateQueue` refuses a queue that
/// exists with other attributes (one an older build made), and the endpoint's default is not
/// everywhere 1 MiB (SQS's was 256 KiB before its limit was raised, and emulators follow at
/// their own pace).
async fn create_queue(client: &aws_sdk_sqs::Client, name: &str) -> Result<String, BoxError> {
    let output = client
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .map_err(boxed)?;
    let url = output
        .queue_url
        .ok_or_else(|| format!("creating queue {name} returned no URL"))?;
    client
        .set_queue_attributes()
        .queue_url(&url)
        .attributes(
            QueueAttributeName::MaximumMessageSize,
            crate::queue::MAX_MESSAGE_BYTES.to_string(),
        )
        .send()
        .await
        .map_err(boxed)?;
    Ok(url)
}
