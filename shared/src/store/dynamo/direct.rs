//! The DynamoDB store's hot operations through the direct client ([`crate::direct`]): the
//! strongly consistent `GetItem` of a job or a key (status, intake), the conditional `PutItem` of
//! a new job (intake) and the conditional `UpdateItem` of a change (the consumer). Each sends the
//! same request the SDK would, built from the same items and expressions, and maps each answer to
//! the same result; every other operation is the SDK store's.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::ser::{Error as _, SerializeMap};
use serde::{Deserialize, Serialize, Serializer};
use tracing::instrument;

use super::{
    DynamoStore, Item, NEW_ITEM, UpdateExpression, from_item, job_key, key_from_item, key_pk, s,
    to_item,
};
use crate::direct::{CallError, Client};
use crate::domain::{Change, IdempotencyKey, IdempotencyRecord, Job, JobId, Owner, Timestamp};
use crate::store::{ApplyError, JobStore, Slot, StoreError};

/// A [`DynamoStore`] whose hot operations go through a direct client.
#[derive(Debug, Clone)]
pub struct DirectStore {
    sdk: DynamoStore,
    client: Client,
}

impl DynamoStore {
    /// This store with its `GetItem`, conditional `PutItem` and `UpdateItem` sent by `client`
    /// (a [`crate::direct::Service::DynamoDb`] client for the same table's account and region).
    pub fn direct(self, client: Client) -> DirectStore {
        DirectStore { sdk: self, client }
    }
}

impl DirectStore {
    async fn get_item(&self, key: AttributeValue) -> Result<Option<Item>, StoreError> {
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct GetItem<'a> {
            table_name: &'a str,
            key: Attributes<'a>,
            consistent_read: bool,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Output {
            item: Option<HashMap<String, Wire>>,
        }
        let key = HashMap::from([("pk".to_owned(), key)]);
        let request = GetItem {
            table_name: &self.sdk.table,
            key: Attributes(&key),
            consistent_read: true,
        };
        let answer = self.client.call("GetItem", encode(&request)?).await;
        let output: Output = decode(&answer.map_err(unavailable)?)?;
        output.item.map(into_item).transpose()
    }
}

#[async_trait]
impl JobStore for DirectStore {
    #[instrument(skip_all, fields(job_id = %job.id))]
    async fn create(
        &self,
        job: &Job,
        idempotency: Option<&IdempotencyRecord>,
    ) -> Result<(), StoreError> {
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct PutItem<'a> {
            table_name: &'a str,
            item: Attributes<'a>,
            condition_expression: &'a str,
        }
        if idempotency.is_some() {
            return self.sdk.create(job, idempotency).await;
        }
        let item = to_item(job);
        let request = PutItem {
            table_name: &self.sdk.table,
            item: Attributes(&item),
            condition_expression: NEW_ITEM,
        };
        match self.client.call("PutItem", encode(&request)?).await {
            Ok(_) => Ok(()),
            Err(error) if error.code() == Some(CONDITIONAL_CHECK_FAILED) => {
                Err(StoreError::AlreadyExists)
            }
            Err(error) => Err(unavailable(error)),
        }
    }

    async fn create_batch(&self, jobs: &[Job]) -> Vec<Result<(), StoreError>> {
        self.sdk.create_batch(jobs).await
    }

    #[instrument(skip_all, fields(job_id = %id))]
    async fn get(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        self.get_item(job_key(id))
            .await?
            .as_ref()
            .map(from_item)
            .transpose()
    }

    #[instrument(skip_all)]
    async fn key(
        &self,
        owner: &Owner,
        key: &IdempotencyKey,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        self.get_item(s(key_pk(owner, key)))
            .await?
            .as_ref()
            .map(key_from_item)
            .transpose()
    }

    #[instrument(skip_all, fields(job_id = %id, to = %change.transition.target()))]
    async fn apply(&self, id: JobId, change: &Change) -> Result<Job, ApplyError> {
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct UpdateItem<'a> {
            table_name: &'a str,
            key: Attributes<'a>,
            update_expression: &'a str,
            condition_expression: &'a str,
            expression_attribute_names: &'a HashMap<String, String>,
            expression_attribute_values: Attributes<'a>,
            return_values: &'a str,
            return_values_on_condition_check_failure: &'a str,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Output {
            attributes: Option<HashMap<String, Wire>>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Failed {
            item: Option<HashMap<String, Wire>>,
        }
        let update = UpdateExpression::for_change(change);
        let key = HashMap::from([("pk".to_owned(), job_key(id))]);
        let request = UpdateItem {
            table_name: &self.sdk.table,
            key: Attributes(&key),
            update_expression: &update.expression,
            condition_expression: &update.condition,
            expression_attribute_names: &update.names,
            expression_attribute_values: Attributes(&update.values),
            return_values: "ALL_NEW",
            return_values_on_condition_check_failure: "ALL_OLD",
        };
        match self.client.call("UpdateItem", encode(&request)?).await {
            Ok(answer) => {
                let output: Output = decode(&answer)?;
                let item = output.attributes.ok_or_else(|| StoreError::Corrupt {
                    id: id.to_string(),
                    reason: "the update returned no attributes".to_owned(),
                })?;
                Ok(from_item(&into_item(item)?)?)
            }
            Err(CallError::Service(error)) if error.code == CONDITIONAL_CHECK_FAILED => {
                let failed: Failed = decode(&error.body)?;
                match failed.item {
                    Some(item) => Err(ApplyError::Rejected(Box::new(from_item(&into_item(
                        item,
                    )?)?))),
                    None => Err(ApplyError::NotFound),
                }
            }
            Err(error) => Err(unavailable(error).into()),
        }
    }

    async fn active_jobs(&self, owner: &Owner, at_most: u32) -> Result<u32, StoreError> {
        self.sdk.active_jobs(owner, at_most).await
    }

    async fn hold_slot(
        &self,
        slot: &Slot,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.sdk.hold_slot(slot, until, now).await
    }

    async fn release_slot(&self, slot: &Slot) -> Result<(), StoreError> {
        self.sdk.release_slot(slot).await
    }
}

/// The code DynamoDB answers a write whose condition is false with.
const CONDITIONAL_CHECK_FAILED: &str = "ConditionalCheckFailedException";

fn unavailable(error: CallError) -> StoreError {
    StoreError::Unavailable(Box::new(error))
}

/// A request's JSON. Its items hold only attribute values the SDK's types can name, so this
/// fails only on a value of a newer SDK's (`AttributeValue::Unknown`).
fn encode(request: &impl Serialize) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(request).map_err(|error| StoreError::Unavailable(Box::new(error)))
}

/// An answer's JSON.
fn decode<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, StoreError> {
    serde_json::from_slice(body).map_err(|error| StoreError::Unavailable(Box::new(error)))
}

/// Attribute values in DynamoDB's JSON form (`{"S": "…"}`, `{"N": "…"}`, …).
struct Attributes<'a>(&'a Item);

impl Serialize for Attributes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(name, value)| (name, Value(value))))
    }
}

struct Value<'a>(&'a AttributeValue);

impl Serialize for Value<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        match self.0 {
            AttributeValue::S(value) => map.serialize_entry("S", value)?,
            AttributeValue::N(value) => map.serialize_entry("N", value)?,
            AttributeValue::Bool(value) => map.serialize_entry("BOOL", value)?,
            AttributeValue::Null(value) => map.serialize_entry("NULL", value)?,
            AttributeValue::Ss(values) => map.serialize_entry("SS", values)?,
            AttributeValue::Ns(values) => map.serialize_entry("NS", values)?,
            AttributeValue::B(blob) => map.serialize_entry("B", &BASE64.encode(blob.as_ref()))?,
            AttributeValue::Bs(blobs) => {
                let encoded: Vec<String> = blobs
                    .iter()
                    .map(|blob| BASE64.encode(blob.as_ref()))
                    .collect();
                map.serialize_entry("BS", &encoded)?;
            }
            AttributeValue::L(values) => {
                let values: Vec<Value<'_>> = values.iter().map(Value).collect();
                map.serialize_entry("L", &values)?;
            }
            AttributeValue::M(values) => map.serialize_entry("M", &Attributes(values))?,
            _ => return Err(S::Error::custom("an attribute value of an unknown type")),
        }
        map.end()
    }
}

/// An attribute value as DynamoDB's JSON gives it.
#[derive(Deserialize)]
enum Wire {
    S(String),
    N(String),
    #[serde(rename = "BOOL")]
    Bool(bool),
    #[serde(rename = "NULL")]
    Null(bool),
    #[serde(rename = "SS")]
    Ss(Vec<String>),
    #[serde(rename = "NS")]
    Ns(Vec<String>),
    B(String),
    #[serde(rename = "BS")]
    Bs(Vec<String>),
    L(Vec<Wire>),
    M(HashMap<String, Wire>),
}

fn into_item(wire: HashMap<String, Wire>) -> Result<Item, StoreError> {
    wire.into_iter()
        .map(|(name, value)| Ok((name, into_value(value)?)))
        .collect()
}

fn into_value(wire: Wire) -> Result<AttributeValue, StoreError> {
    let blob = |text: String| {
        BASE64
            .decode(text)
            .map(Blob::new)
            .map_err(|error| StoreError::Unavailable(Box::new(error)))
    };
    Ok(match wire {
        Wire::S(value) => AttributeValue::S(value),
        Wire::N(value) => AttributeValue::N(value),
        Wire::Bool(value) => AttributeValue::Bool(value),
        Wire::Null(value) => AttributeValue::Null(value),
        Wire::Ss(values) => AttributeValue::Ss(values),
        Wire::Ns(values) => AttributeValue::Ns(values),
        Wire::B(text) => AttributeValue::B(blob(text)?),
        Wire::Bs(texts) => {
            AttributeValue::Bs(texts.into_iter().map(blob).collect::<Result<_, _>>()?)
        }
        Wire::L(values) => AttributeValue::L(
            values
                .into_iter()
                .map(into_value)
                .collect::<Result<_, _>>()?,
        ),
        Wire::M(values) => AttributeValue::M(into_item(values)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_attribute_type_survives_the_json_round_trip() {
        let item: Item = HashMap::from([
            ("s".to_owned(), s("text \"quoted\"")),
            ("n".to_owned(), AttributeValue::N("12.5".to_owned())),
            ("bool".to_owned(), AttributeValue::Bool(true)),
            ("null".to_owned(), AttributeValue::Null(true)),
            (
                "ss".to_owned(),
                AttributeValue::Ss(vec!["a".into(), "b".into()]),
            ),
            (
                "ns".to_owned(),
                AttributeValue::Ns(vec!["1".into(), "2".into()]),
            ),
            (
                "b".to_owned(),
                AttributeValue::B(Blob::new(vec![0, 1, 255])),
            ),
            (
                "bs".to_owned(),
                AttributeValue::Bs(vec![Blob::new(vec![7])]),
            ),
            (
                "l".to_owned(),
                AttributeValue::L(vec![s("x"), AttributeValue::N("3".into())]),
            ),
            (
                "m".to_owned(),
                AttributeValue::M(HashMap::from([("inner".to_owned(), s("y"))])),
            ),
        ]);
        let json = serde_json::to_vec(&Attributes(&item)).unwrap();
        let wire: HashMap<String, Wire> = serde_json::from_slice(&json).unwrap();
        assert_eq!(into_item(wire).unwrap(), item);
    }

    #[test]
    fn a_string_attribute_is_written_as_dynamodb_json() {
        let item: Item = HashMap::from([("pk".to_owned(), s("job#1"))]);
        assert_eq!(
            serde_json::to_string(&Attributes(&item)).unwrap(),
            r#"{"pk":{"S":"job#1"}}"#
        );
    }
}
