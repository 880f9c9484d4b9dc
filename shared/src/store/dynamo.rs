mod direct;

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValue, ReturnValuesOnConditionCheckFailure, Select,
    TransactWriteItem,
};
use tracing::instrument;

use super::{ACTIVE_BY_OWNER_INDEX, ACTIVE_OWNER, ApplyError, JobStore, Slot, StoreError};
use crate::domain::{
    Change, CorrelationId, Fanout, IdempotencyKey, IdempotencyRecord, Job, JobId, Kind, Owner,
    PayloadDigest, Progress, Requirement, Timestamp, Transition,
};

pub use direct::DirectStore;

type Item = HashMap<String, AttributeValue>;

/// A `JobStore` on a DynamoDB table whose partition key is `pk` (S). A job is the item
/// `pk = job#{id}`; times are epoch milliseconds, except `expires_at`, which is epoch seconds for
/// DynamoDB's TTL. An active job's item also carries `active_owner`, its owner, which keys the
/// sparse index [`ACTIVE_BY_OWNER_INDEX`]: written with the item, removed by the update that ends
/// the job and set again by a redrive, in the conditional writes that exist anyway. A table
/// without the index keeps the attribute as any other, at no cost.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    /// A store on `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// The item `pk`, with a strongly consistent read.
    async fn read(&self, pk: AttributeValue) -> Result<Option<Item>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", pk)
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(output.item)
    }

    async fn put_job(&self, job: &Job) -> Result<(), StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(job)))
            .condition_expression(NEW_ITEM)
            .send()
            .await;
        match condition_held(result)? {
            true => Ok(()),
            false => Err(StoreError::AlreadyExists),
        }
    }

    /// Writes the job and its idempotency item in one transaction. When another transaction on
    /// the same key is in flight, DynamoDB cancels this one with `TransactionConflict`: try again
    /// briefly, after which the key's first use is settled and can be read.
    async fn put_job_with_key(
        &self,
        job: &Job,
        record: &IdempotencyRecord,
    ) -> Result<(), StoreError> {
        let put = |item| {
            Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression(NEW_ITEM)
                .build()
                .map(|put| TransactWriteItem::builder().put(put).build())
                .map_err(unavailable)
        };
        let mut last_error = None;
        for attempt in 0..6 {
            let result = self
                .client
                .transact_write_items()
                .transact_items(put(to_item(job))?)
                .transact_items(put(key_item(record))?)
                .send()
                .await;
            let error = match result {
                Ok(_) => return Ok(()),
                Err(error) => error,
            };
            let reasons: Vec<String> = match error.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => cancelled
                    .cancellation_reasons()
                    .iter()
                    .map(|reason| reason.code().unwrap_or("None").to_owned())
                    .collect(),
                _ => return Err(unavailable(error)),
            };
            let failed = |index: usize| {
                reasons
                    .get(index)
                    .is_some_and(|c| c == "ConditionalCheckFailed")
            };
            if failed(1) {
                if let Some(first) = self.key(&record.owner, &record.key).await? {
                    return Err(StoreError::KeyTaken(Box::new(first)));
                }
            } else if failed(0) {
                return Err(StoreError::AlreadyExists);
            } else if !reasons.iter().any(|c| c == "TransactionConflict") {
                return Err(unavailable(error));
            }
            last_error = Some(error);
            let pause = 10 + fastrand::u64(0..=20 << attempt);
            tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
        }
        Err(last_error.map_or_else(
            || StoreError::Unavailable("transaction conflict".into()),
            unavailable,
        ))
    }
}

/// Jobs per `TransactWriteItems` of a batch create. DynamoDB takes 100; one job already there (or
/// in conflict) cancels its whole transaction, and the rest is sent again, so smaller chunks
/// bound what one such job costs the others. 25 is `BatchWriteItem`'s own limit: four calls for
/// the largest batch the API takes.
pub const CREATE_CHUNK: usize = 25;

/// Attempts of one chunk whose transaction DynamoDB cancels for a reason worth retrying
/// (`TransactionConflict`, throttling), as for a job with its key.
const CREATE_ATTEMPTS: u32 = 6;

impl DynamoStore {
    /// Writes `jobs` (at most [`CREATE_CHUNK`]) in one `TransactWriteItems` of conditional puts.
    /// A cancelled transaction names each item's reason: a job already there is
    /// `AlreadyExists` and left out, a job with a reason that will not change (a validation
    /// error) fails alone, and the rest (cancelled only for the others, or in conflict, or
    /// throttled) is sent again: at once when a job was left out, after a pause otherwise.
    async fn put_chunk(&self, jobs: &[Job]) -> Vec<Result<(), StoreError>> {
        let mut outcome: Vec<Option<Result<(), StoreError>>> =
            std::iter::repeat_with(|| None).take(jobs.len()).collect();
        let mut pending: Vec<usize> = (0..jobs.len()).collect();
        let mut last_error = String::from("transaction conflict");
        for attempt in 0..CREATE_ATTEMPTS {
            if pending.is_empty() {
                break;
            }
            let items = pending
                .iter()
                .map(|&index| {
                    Put::builder()
                        .table_name(&self.table)
                        .set_item(Some(to_item(&jobs[index])))
                        .condition_expression(NEW_ITEM)
                        .build()
                        .map(|put| TransactWriteItem::builder().put(put).build())
                })
                .collect::<Result<Vec<_>, _>>();
            let result = match items {
                Ok(items) => {
                    self.client
                        .transact_write_items()
                        .set_transact_items(Some(items))
                        .send()
                        .await
                }
                Err(error) => {
                    last_error = error.to_string();
                    break;
                }
            };
            let error = match result {
                Ok(_) => {
                    for index in pending.drain(..) {
                        outcome[index] = Some(Ok(()));
                    }
                    break;
                }
                Err(error) => error,
            };
            last_error = crate::error::Chain(&error).to_string();
            let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
                error.as_service_error()
            else {
                break;
            };
            let reasons: Vec<&str> = cancelled
                .cancellation_reasons()
                .iter()
                .map(|reason| reason.code().unwrap_or("None"))
                .collect();
            let mut left_out = false;
            let mut retry = Vec::with_capacity(pending.len());
            for (position, &index) in pending.iter().enumerate() {
                match reasons.get(position).copied().unwrap_or("None") {
                    "ConditionalCheckFailed" => {
                        outcome[index] = Some(Err(StoreError::AlreadyExists));
                        left_out = true;
                    }
                    "None"
                    | "TransactionConflict"
                    | "ThrottlingError"
                    | "ProvisionedThroughputExceeded"
                    | "RequestLimitExceeded" => retry.push(index),
                    other => {
                        outcome[index] = Some(Err(StoreError::Unavailable(
                            format!("the job's write was cancelled: {other}").into(),
                        )));
                        left_out = true;
                    }
                }
            }
            pending = retry;
            if !left_out {
                let pause = 10 + fastrand::u64(0..=20 << attempt);
                tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
            }
        }
        outcome
            .into_iter()
            .map(|outcome| {
                outcome.unwrap_or_else(|| Err(StoreError::Unavailable(last_error.clone().into())))
            })
            .collect()
    }
}

/// The condition of every first write: the item must not exist yet.
const NEW_ITEM: &str = "attribute_not_exists(pk)";

/// `idem#{owner}#{key}`, with `%` and `#` escaped in the owner so that the first `#` after the
/// prefix always ends it: two (owner, key) pairs never share an item, whatever either holds.
/// Owners without those characters (every IAM and anonymous owner) keep the form they always had.
fn key_pk(owner: &Owner, key: &IdempotencyKey) -> String {
    let owner = owner.as_str().replace('%', "%25").replace('#', "%23");
    format!("idem#{owner}#{key}")
}

fn key_item(record: &IdempotencyRecord) -> Item {
    HashMap::from([
        ("pk".to_owned(), s(key_pk(&record.owner, &record.key))),
        ("owner".to_owned(), s(record.owner.as_str())),
        ("idempotency_key".to_owned(), s(record.key.as_str())),
        ("fingerprint".to_owned(), s(&record.fingerprint)),
        ("job_id".to_owned(), s(record.job_id.to_string())),
        (
            "expires_at".to_owned(),
            n(record.expires_at.as_epoch_seconds_ceil()),
        ),
    ])
}

fn key_from_item(item: &Item) -> Result<IdempotencyRecord, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        id: "idempotency key".to_owned(),
        reason,
    };
    let string = |name: &str| match item.get(name) {
        Some(AttributeValue::S(value)) => Ok(value.as_str()),
        _ => Err(corrupt(format!("`{name}` is missing or not a string"))),
    };
    let expires_at = match item.get("expires_at") {
        Some(AttributeValue::N(value)) => value
            .parse::<u64>()
            .map_err(|_| corrupt("`expires_at` is not a number".into()))?,
        _ => return Err(corrupt("`expires_at` is missing".into())),
    };
    Ok(IdempotencyRecord {
        owner: Owner::from_stored(string("owner")?.to_owned()),
        key: IdempotencyKey::parse(string("idempotency_key")?.as_bytes())
            .map_err(|e| corrupt(e.to_string()))?,
        fingerprint: string("fingerprint")?.to_owned(),
        job_id: JobId::parse(string("job_id")?).map_err(|e| corrupt(e.to_string()))?,
        expires_at: Timestamp::from_millis(expires_at.saturating_mul(1000)),
    })
}

fn job_key(id: JobId) -> AttributeValue {
    AttributeValue::S(format!("job#{id}"))
}

fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn unavailable<E: std::error::Error + Send + Sync + 'static>(err: E) -> StoreError {
    StoreError::Unavailable(Box::new(err))
}

/// Whether a conditional write was made: `false` when DynamoDB refused it because its condition
/// failed (`ConditionalCheckFailedException`), an error for any other failure.
fn condition_held<O, E>(result: Result<O, SdkError<E, HttpResponse>>) -> Result<bool, StoreError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match result {
        Ok(_) => Ok(true),
        Err(error)
            if error
                .as_service_error()
                .and_then(ProvideErrorMetadata::code)
                == Some("ConditionalCheckFailedException") =>
        {
            Ok(false)
        }
        Err(error) => Err(unavailable(error)),
    }
}

#[async_trait]
impl JobStore for DynamoStore {
    #[instrument(skip_all, fields(job_id = %job.id))]
    async fn create(
        &self,
        job: &Job,
        idempotency: Option<&IdempotencyRecord>,
    ) -> Result<(), StoreError> {
        match idempotency {
            None => self.put_job(job).await,
            Some(record) => self.put_job_with_key(job, record).await,
        }
    }

    /// Conditional puts in `TransactWriteItems` of [`CREATE_CHUNK`] jobs, one chunk after the
    /// other: at most four calls for the largest batch, and a batch never has two transactions
    /// in flight to conflict with each other (moto, besides, undoes a cancelled transaction by
    /// restoring the table as it was, losing a concurrent one's items). Not `BatchWriteItem`: it takes no condition, and would overwrite a job a consumer
    /// has written from its message, and perhaps claimed, with a `pending` one. A transactional
    /// write costs two write units where a `PutItem` costs one (docs/architecture.md, "Batch
    /// submit").
    #[instrument(skip_all, fields(jobs = jobs.len()))]
    async fn create_batch(&self, jobs: &[Job]) -> Vec<Result<(), StoreError>> {
        let mut created = Vec::with_capacity(jobs.len());
        for chunk in jobs.chunks(CREATE_CHUNK) {
            created.extend(self.put_chunk(chunk).await);
        }
        created
    }

    #[instrument(skip_all, fields(job_id = %id))]
    async fn get(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        let item = self.read(job_key(id)).await?;
        item.as_ref().map(from_item).transpose()
    }

    #[instrument(skip_all)]
    async fn key(
        &self,
        owner: &Owner,
        key: &IdempotencyKey,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let item = self.read(s(key_pk(owner, key))).await?;
        item.as_ref().map(key_from_item).transpose()
    }

    #[instrument(skip_all, fields(job_id = %id, to = %change.transition.target()))]
    async fn apply(&self, id: JobId, change: &Change) -> Result<Job, ApplyError> {
        let update = UpdateExpression::for_change(change);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", job_key(id))
            .update_expression(update.expression)
            .condition_expression(update.condition)
            .set_expression_attribute_names(Some(update.names))
            .set_expression_attribute_values(Some(update.values))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(output) => {
                let item = output.attributes.ok_or_else(|| StoreError::Corrupt {
                    id: id.to_string(),
                    reason: "the update returned no attributes".to_owned(),
                })?;
                Ok(from_item(&item)?)
            }
            Err(SdkError::ServiceError(e)) => match e.into_err() {
                UpdateItemError::ConditionalCheckFailedException(failed) => match failed.item() {
                    Some(item) => Err(ApplyError::Rejected(Box::new(from_item(item)?))),
                    None => Err(ApplyError::NotFound),
                },
                other => Err(unavailable(other).into()),
            },
            Err(e) => Err(unavailable(e).into()),
        }
    }

    /// `Query` on [`ACTIVE_BY_OWNER_INDEX`] with `Select: COUNT` and `Limit` the count still
    /// wanted, following `LastEvaluatedKey` until `at_most` are counted or none is left: the
    /// read units are bounded by `at_most` index entries (of a few dozen bytes each, the index
    /// projecting the keys only), whatever the owner or the table holds.
    #[instrument(skip_all, fields(at_most))]
    async fn active_jobs(&self, owner: &Owner, at_most: u32) -> Result<u32, StoreError> {
        let mut counted: u32 = 0;
        let mut start = None;
        while counted < at_most {
            let wanted = i32::try_from(at_most - counted).unwrap_or(i32::MAX);
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(ACTIVE_BY_OWNER_INDEX)
                .key_condition_expression("#active_owner = :owner")
                .expression_attribute_names("#active_owner", ACTIVE_OWNER)
                .expression_attribute_values(":owner", s(owner.as_str()))
                .select(Select::Count)
                .limit(wanted)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(unavailable)?;
            counted = counted.saturating_add(u32::try_from(output.count).unwrap_or(0));
            start = output.last_evaluated_key;
            if start.as_ref().is_none_or(HashMap::is_empty) {
                break;
            }
        }
        Ok(counted.min(at_most))
    }

    /// The item `slots#{kind}` holds a map of holds, holder to `until`. First one conditional
    /// `UpdateItem` that renews the holder's hold or adds it while fewer than `limit` are held,
    /// lapsed or not: the whole cost while the kind has room and no consumer stopped holding a
    /// slot. Otherwise a strongly consistent read, and, when lapsed holds leave room, one write
    /// that clears them and adds the holder's, on condition that the item is still as read.
    #[instrument(skip_all, fields(kind = %slot.kind, limit = slot.limit))]
    async fn hold_slot(
        &self,
        slot: &Slot,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let (kind, limit, holder) = (&slot.kind, slot.limit, slot.holder.as_str());
        if self
            .write_hold(kind, holder, until, Seen::Nothing { limit })
            .await?
        {
            return Ok(true);
        }
        for _ in 0..HOLD_ROUNDS {
            let Some(holds) = self.holds(kind).await? else {
                if self.first_hold(kind, holder, until).await? {
                    return Ok(true);
                }
                continue;
            };
            let lapsed: Vec<_> = holds
                .iter()
                .filter(|(other, held_until)| {
                    *other != holder
                        && match held_until {
                            AttributeValue::N(millis) => {
                                millis.parse::<u64>().is_ok_and(|m| m <= now.as_millis())
                            }
                            // Unreadable: cleared as a lapsed hold would be.
                            _ => true,
                        }
                })
                .take(CLEARED_AT_ONCE)
                .collect();
            let has_holder = holds.contains_key(holder);
            let others = holds.len() - lapsed.len() - usize::from(has_holder);
            if others >= usize::try_from(limit).unwrap_or(usize::MAX) {
                return Ok(false);
            }
            let seen = Seen::Holds {
                size: holds.len(),
                has_holder,
                lapsed,
            };
            if self.write_hold(kind, holder, until, seen).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    #[instrument(skip_all, fields(kind = %slot.kind))]
    async fn release_slot(&self, slot: &Slot) -> Result<(), StoreError> {
        let (kind, holder) = (&slot.kind, slot.holder.as_str());
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", slots_key(kind))
            .update_expression("REMOVE #holders.#holder")
            .condition_expression("attribute_exists(#holders.#holder)")
            .expression_attribute_names("#holders", HOLDERS)
            .expression_attribute_names("#holder", holder)
            .send()
            .await;
        // Not held (any more): nothing to give back.
        condition_held(result).map(drop)
    }
}

/// The attribute of a kind's slots item (`pk = slots#{kind}`) that holds its holds: a map from
/// holder to the end of its hold, in epoch milliseconds.
const HOLDERS: &str = "holders";
/// The most lapsed holds one write clears, keeping its expression far within DynamoDB's limits.
const CLEARED_AT_ONCE: usize = 25;
/// Reads and writes a hold tries, when other writers change the slots between them, before it
/// reports them all taken.
const HOLD_ROUNDS: usize = 3;

fn slots_key(kind: &Kind) -> AttributeValue {
    s(format!("slots#{kind}"))
}

/// What a write of a hold requires of the slots item.
enum Seen<'a> {
    /// Nothing read: the holder has a hold already, or fewer than `limit` are held, lapsed or
    /// not.
    Nothing { limit: u32 },
    /// The holds as read: as many (`size`), the holder's own there or not, and the `lapsed`
    /// ones (holder and `until`, as read) to clear, all still as read.
    Holds {
        size: usize,
        has_holder: bool,
        lapsed: Vec<(&'a String, &'a AttributeValue)>,
    },
}

impl DynamoStore {
    /// One conditional write of `holder`'s hold until `until`, clearing lapsed holds when
    /// `seen` lists them: whether it was written.
    async fn write_hold(
        &self,
        kind: &Kind,
        holder: &str,
        until: Timestamp,
        seen: Seen<'_>,
    ) -> Result<bool, StoreError> {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", slots_key(kind))
            .expression_attribute_names("#holders", HOLDERS)
            .expression_attribute_names("#holder", holder)
            .expression_attribute_values(":until", n(until.as_millis()));
        let (expression, condition) = match seen {
            Seen::Nothing { limit } => {
                update = update.expression_attribute_values(":limit", n(u64::from(limit)));
                (
                    "SET #holders.#holder = :until".to_owned(),
                    "attribute_exists(#holders) AND \
                     (attribute_exists(#holders.#holder) OR size(#holders) < :limit)"
                        .to_owned(),
                )
            }
            Seen::Holds {
                size,
                has_holder,
                lapsed,
            } => {
                update = update.expression_attribute_values(":size", n(size as u64));
                let mut condition = format!(
                    "size(#holders) = :size AND {}(#holders.#holder)",
                    if has_holder {
                        "attribute_exists"
                    } else {
                        "attribute_not_exists"
                    }
                );
                let mut removed = Vec::with_capacity(lapsed.len());
                for (i, (other, until)) in lapsed.into_iter().enumerate() {
                    update = update
                        .expression_attribute_names(format!("#lapsed{i}"), other.as_str())
                        .expression_attribute_values(format!(":lapsed{i}"), until.clone());
                    condition.push_str(&format!(" AND #holders.#lapsed{i} = :lapsed{i}"));
                    removed.push(format!("#holders.#lapsed{i}"));
                }
                let mut expression = "SET #holders.#holder = :until".to_owned();
                if !removed.is_empty() {
                    expression.push_str(" REMOVE ");
                    expression.push_str(&removed.join(", "));
                }
                (expression, condition)
            }
        };
        let result = update
            .update_expression(expression)
            .condition_expression(condition)
            .send()
            .await;
        condition_held(result)
    }

    /// The holds of `kind`'s slots, with a strongly consistent read; `None` when no job of the
    /// kind has held one yet.
    async fn holds(
        &self,
        kind: &Kind,
    ) -> Result<Option<HashMap<String, AttributeValue>>, StoreError> {
        let Some(mut item) = self.read(slots_key(kind)).await? else {
            return Ok(None);
        };
        match item.remove(HOLDERS) {
            Some(AttributeValue::M(holds)) => Ok(Some(holds)),
            _ => Err(StoreError::Corrupt {
                id: format!("slots#{kind}"),
                reason: format!("`{HOLDERS}` is missing or not a map"),
            }),
        }
    }

    /// Writes `kind`'s slots item with `holder`'s hold alone, if no one has written it first:
    /// whether it was written.
    async fn first_hold(
        &self,
        kind: &Kind,
        holder: &str,
        until: Timestamp,
    ) -> Result<bool, StoreError> {
        let item = HashMap::from([
            ("pk".to_owned(), slots_key(kind)),
            (
                HOLDERS.to_owned(),
                AttributeValue::M(HashMap::from([(holder.to_owned(), n(until.as_millis()))])),
            ),
        ]);
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(NEW_ITEM)
            .send()
            .await;
        condition_held(result)
    }
}

/// The DynamoDB form of one [`Change`]: the write and the condition that guards it, which
/// together do exactly what [`Change::permits`] and [`Change::apply`] do in memory. The condition
/// is read from the transition's [precondition](Transition::precondition), the one description
/// both stores use.
struct UpdateExpression {
    expression: String,
    condition: String,
    names: HashMap<String, String>,
    values: Item,
}

impl UpdateExpression {
    fn for_change(change: &Change) -> Self {
        let mut parts = Parts::default();
        let condition = parts.condition(change);
        let expression = parts.write(change);
        Self {
            expression,
            condition,
            names: parts.names,
            values: parts.values,
        }
    }
}

/// The attribute names and values an expression uses, each registered where it is written, so
/// the request carries exactly those.
#[derive(Default)]
struct Parts {
    names: HashMap<String, String>,
    values: Item,
}

impl Parts {
    /// `#attribute`, standing for `attribute` (some, like `status`, are reserved words).
    fn name(&mut self, attribute: &str) -> String {
        let alias = format!("#{attribute}");
        self.names.insert(alias.clone(), attribute.to_owned());
        alias
    }

    /// `:placeholder`, standing for `value`.
    fn value(&mut self, placeholder: &str, value: AttributeValue) -> String {
        let placeholder = format!(":{placeholder}");
        self.values.insert(placeholder.clone(), value);
        placeholder
    }

    /// Any of the precondition's alternatives, each all of its requirements.
    fn condition(&mut self, change: &Change) -> String {
        change
            .transition
            .precondition()
            .iter()
            .map(|all| {
                let parts: Vec<String> = all
                    .iter()
                    .map(|requirement| self.requirement(requirement, change.at))
                    .collect();
                format!("({})", parts.join(" AND "))
            })
            .collect::<Vec<_>>()
            .join(" OR ")
    }

    fn requirement(&mut self, requirement: &Requirement, at: Timestamp) -> String {
        match requirement {
            Requirement::Status(status) => {
                let name = self.name("status");
                let value = self.value(&format!("status_{}", status.as_str()), s(status.as_str()));
                format!("{name} = {value}")
            }
            Requirement::LeaseLapsed => {
                let lease = self.name("lease_until");
                let now = self.value("now", n(at.as_millis()));
                format!("({lease} < {now} OR attribute_not_exists({lease}))")
            }
            Requirement::Attempt(attempt) => {
                let name = self.name("attempts");
                let value = self.value("attempt", n(u64::from(*attempt)));
                format!("{name} = {value}")
            }
            Requirement::DeadlinePassed => {
                let name = self.name("deadline");
                let now = self.value("now", n(at.as_millis()));
                format!("{name} < {now}")
            }
            Requirement::Due => {
                let name = self.name("run_at");
                let now = self.value("now", n(at.as_millis()));
                format!("(attribute_not_exists({name}) OR {name} <= {now})")
            }
            Requirement::AttemptsBelow(limit) => {
                let name = self.name("attempts");
                let value = self.value("attempts_below", n(u64::from(*limit)));
                format!("{name} < {value}")
            }
        }
    }

    /// The `SET` and `REMOVE` clauses that do what [`Change::apply`] does.
    fn write(&mut self, change: &Change) -> String {
        let mut set = vec![format!(
            "{} = {}",
            self.name("updated_at"),
            self.value("now", n(change.at.as_millis()))
        )];
        // A heartbeat leaves the job `running`: not writing the status at all means that even a
        // store whose condition and write are not atomic (moto) cannot move a job that ended
        // back to `running` when a heartbeat races its outcome.
        if !matches!(change.transition, Transition::Heartbeat { .. }) {
            set.insert(
                0,
                format!(
                    "{} = {}",
                    self.name("status"),
                    self.value("to", s(change.transition.target().as_str()))
                ),
            );
        }
        let mut remove = vec![];
        match &change.transition {
            Transition::Claim { lease_until, .. } => {
                let attempts = self.name("attempts");
                set.push(format!(
                    "{attempts} = {attempts} + {}",
                    self.value("one", n(1))
                ));
                set.push(format!(
                    "{} = {}",
                    self.name("lease_until"),
                    self.value("lease", n(lease_until.as_millis()))
                ));
                // The first claim's moment, kept by every later one.
                let started_at = self.name("started_at");
                let now = self.value("now", n(change.at.as_millis()));
                set.push(format!("{started_at} = if_not_exists({started_at}, {now})"));
                remove.push(self.name("progress"));
            }
            Transition::Heartbeat {
                lease_until,
                progress,
                ..
            } => {
                set.push(format!(
                    "{} = {}",
                    self.name("lease_until"),
                    self.value("lease", n(lease_until.as_millis()))
                ));
                if let Some(progress) = progress {
                    set.push(format!(
                        "{} = {}",
                        self.name("progress"),
                        self.value("progress", s(progress_json(progress)))
                    ));
                }
            }
            Transition::Succeed { result, .. } => {
                set.push(format!(
                    "{} = {}",
                    self.name("result"),
                    self.value("result", s(result.to_string()))
                ));
                remove.extend([self.name("lease_until"), self.name("error")]);
            }
            Transition::Redrive {
                deadline: Some(deadline),
            } => {
                set.push(format!(
                    "{} = {}",
                    self.name("deadline"),
                    self.value("deadline", n(deadline.as_millis()))
                ));
                let expires_at = change.pending_expiry(*deadline);
                set.push(self.expires(expires_at));
                remove.push(self.name("lease_until"));
            }
            Transition::Settle { failures, error } => {
                if !failures.is_empty() {
                    set.push(format!(
                        "{} = {}",
                        self.name("fanout_failures"),
                        self.value("failures", s(json_text(failures)))
                    ));
                }
                if let Some(error) = error {
                    set.push(format!(
                        "{} = {}",
                        self.name("error"),
                        self.value("error", s(error))
                    ));
                }
            }
            other => {
                if let Some(error) = other.error() {
                    set.push(format!(
                        "{} = {}",
                        self.name("error"),
                        self.value("error", s(error))
                    ));
                }
                remove.push(self.name("lease_until"));
            }
        }
        if let Some(expires_at) = change.expires_at() {
            set.push(self.expires(expires_at));
        }
        // The sparse index of active jobs by owner: a job that ends leaves it, and a redriven one
        // (the one way out of a terminal state) joins it again.
        if change.transition.target().is_terminal() {
            remove.push(self.name(ACTIVE_OWNER));
        } else if matches!(change.transition, Transition::Redrive { .. }) {
            set.push(format!(
                "{} = {}",
                self.name(ACTIVE_OWNER),
                self.name("owner")
            ));
        }
        let mut expression = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            expression.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        expression
    }

    /// `expires_at`, in epoch seconds as DynamoDB's TTL reads it.
    fn expires(&mut self, at: Timestamp) -> String {
        let name = self.name("expires_at");
        let value = self.value("expires", n(at.as_epoch_seconds_ceil()));
        format!("{name} = {value}")
    }
}

fn to_item(job: &Job) -> Item {
    let mut item = HashMap::from([
        ("pk".to_owned(), job_key(job.id)),
        ("id".to_owned(), s(job.id.to_string())),
        ("kind".to_owned(), s(job.kind.as_str())),
        ("owner".to_owned(), s(job.owner.as_str())),
        ("priority".to_owned(), s(job.priority.as_str())),
        ("status".to_owned(), s(job.status.as_str())),
        ("attempts".to_owned(), n(u64::from(job.attempts))),
        ("created_at".to_owned(), n(job.created_at.as_millis())),
        ("updated_at".to_owned(), n(job.updated_at.as_millis())),
        ("deadline".to_owned(), n(job.deadline.as_millis())),
        ("payload_size".to_owned(), n(job.payload.size)),
        ("payload_sha256".to_owned(), s(&job.payload.sha256)),
        (
            "expires_at".to_owned(),
            n(job.expires_at.as_epoch_seconds_ceil()),
        ),
    ]);
    if !job.status.is_terminal() {
        item.insert(ACTIVE_OWNER.to_owned(), s(job.owner.as_str()));
    }
    if let Some(run_at) = job.run_at {
        item.insert("run_at".to_owned(), n(run_at.as_millis()));
    }
    if let Some(started_at) = job.started_at {
        item.insert("started_at".to_owned(), n(started_at.as_millis()));
    }
    if let Some(lease_until) = job.lease_until {
        item.insert("lease_until".to_owned(), n(lease_until.as_millis()));
    }
    if let Some(progress) = &job.progress {
        item.insert("progress".to_owned(), s(progress_json(progress)));
    }
    if let Some(result) = &job.result {
        item.insert("result".to_owned(), s(result.to_string()));
    }
    if let Some(error) = &job.error {
        item.insert("error".to_owned(), s(error));
    }
    if let Some(callback_url) = &job.callback_url {
        item.insert("callback_url".to_owned(), s(callback_url));
    }
    if let Some(correlation_id) = &job.correlation_id {
        item.insert("correlation_id".to_owned(), s(correlation_id.as_str()));
    }
    // A parent's failures are written when it ends, by the change that ends it, as
    // `fanout_failures`; the rest of its place in the fan-out never changes.
    match &job.fanout {
        Some(Fanout::Parent { children, failures }) => {
            let place = Fanout::Parent {
                children: children.clone(),
                failures: vec![],
            };
            item.insert("fanout".to_owned(), s(json_text(&place)));
            if !failures.is_empty() {
                item.insert("fanout_failures".to_owned(), s(json_text(failures)));
            }
        }
        Some(child) => {
            item.insert("fanout".to_owned(), s(json_text(child)));
        }
        None => {}
    }
    item
}

/// A value the item keeps as one JSON string.
fn json_text(value: &impl serde::Serialize) -> String {
    // Ids, names, statuses and text: always serializable.
    serde_json::to_string(value).unwrap_or_default()
}

/// A progress report as the item keeps it: one JSON string, as the status document shows it.
fn progress_json(progress: &Progress) -> String {
    // A `Progress` holds a finite number, a string and a time: it always serializes.
    serde_json::to_string(progress).unwrap_or_default()
}

fn from_item(item: &Item) -> Result<Job, StoreError> {
    let key = match item.get("pk") {
        Some(AttributeValue::S(pk)) => pk.clone(),
        _ => "<no pk>".to_owned(),
    };
    let corrupt = |reason: String| StoreError::Corrupt {
        id: key.clone(),
        reason,
    };
    let string = |name: &str| match item.get(name) {
        Some(AttributeValue::S(value)) => Ok(value.as_str()),
        Some(_) => Err(corrupt(format!("`{name}` is not a string"))),
        None => Err(corrupt(format!("`{name}` is missing"))),
    };
    let number = |name: &str| -> Result<Option<u64>, StoreError> {
        match item.get(name) {
            Some(AttributeValue::N(value)) => value
                .parse()
                .map(Some)
                .map_err(|_| corrupt(format!("`{name}` is not a whole number: {value}"))),
            Some(_) => Err(corrupt(format!("`{name}` is not a number"))),
            None => Ok(None),
        }
    };
    let required =
        |name: &str| number(name)?.ok_or_else(|| corrupt(format!("`{name}` is missing")));
    let optional_string = |name: &str| match item.get(name) {
        None => Ok(None),
        Some(_) => string(name).map(|v| Some(v.to_owned())),
    };

    let result = optional_string("result")?
        .map(|raw| serde_json::from_str(&raw))
        .transpose()
        .map_err(|e| corrupt(format!("`result` is not JSON: {e}")))?;
    let progress = optional_string("progress")?
        .map(|raw| serde_json::from_str(&raw))
        .transpose()
        .map_err(|e| corrupt(format!("`progress` is not a progress report: {e}")))?;
    let mut fanout: Option<Fanout> = optional_string("fanout")?
        .map(|raw| serde_json::from_str(&raw))
        .transpose()
        .map_err(|e| corrupt(format!("`fanout` is not a fan-out: {e}")))?;
    if let Some(Fanout::Parent { failures, .. }) = &mut fanout
        && let Some(raw) = optional_string("fanout_failures")?
    {
        *failures = serde_json::from_str(&raw)
            .map_err(|e| corrupt(format!("`fanout_failures` is not a list of failures: {e}")))?;
    }
    let expires_at_seconds = required("expires_at")?;
    Ok(Job {
        id: JobId::parse(string("id")?).map_err(|e| corrupt(e.to_string()))?,
        kind: Kind::parse(string("kind")?).map_err(|e| corrupt(e.to_string()))?,
        owner: Owner::from_stored(string("owner")?.to_owned()),
        // Jobs written before lanes ran in the one queue there was: the normal lane's.
        priority: optional_string("priority")?
            .map(|raw| raw.parse())
            .transpose()
            .map_err(|e: crate::domain::UnknownPriority| corrupt(e.to_string()))?
            .unwrap_or_default(),
        status: string("status")?
            .parse()
            .map_err(|e: crate::domain::UnknownStatus| corrupt(e.to_string()))?,
        attempts: u32::try_from(required("attempts")?)
            .map_err(|_| corrupt("`attempts` is out of range".to_owned()))?,
        created_at: Timestamp::from_millis(required("created_at")?),
        updated_at: Timestamp::from_millis(required("updated_at")?),
        started_at: number("started_at")?.map(Timestamp::from_millis),
        deadline: Timestamp::from_millis(required("deadline")?),
        run_at: number("run_at")?.map(Timestamp::from_millis),
        lease_until: number("lease_until")?.map(Timestamp::from_millis),
        progress,
        result,
        error: optional_string("error")?,
        payload: PayloadDigest {
            size: required("payload_size")?,
            sha256: string("payload_sha256")?.to_owned(),
        },
        expires_at: Timestamp::from_millis(expires_at_seconds.saturating_mul(1000)),
        callback_url: optional_string("callback_url")?,
        correlation_id: optional_string("correlation_id")?
            .map(|raw| CorrelationId::parse(raw.as_bytes()))
            .transpose()
            .map_err(|e| corrupt(e.to_string()))?,
        fanout,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_idempotency_item_names_its_owner_and_key_unambiguously() {
        use super::{IdempotencyKey, Owner, key_pk};
        let key = |k: &str| IdempotencyKey::parse(k.as_bytes()).unwrap();
        let a = key_pk(&Owner::jwt("https://idp", "a#b"), &key("c"));
        let b = key_pk(&Owner::jwt("https://idp", "a"), &key("b#c"));
        assert_ne!(a, b);
        assert_eq!(
            key_pk(&Owner::authenticated("arn:aws:iam::1:user/x"), &key("k#1")),
            "idem#auth:arn:aws:iam::1:user/x#k#1",
            "owners without # or % keep their old form"
        );
        assert_ne!(
            key_pk(&Owner::jwt("i", "%23"), &key("k")),
            key_pk(&Owner::jwt("i", "#"), &key("k"))
        );
    }

    use std::collections::BTreeSet;
    use std::time::Duration;

    use super::*;
    use crate::domain::JobStatus;
    use crate::domain::NewJob;

    #[test]
    fn a_job_survives_the_item_round_trip() {
        let created_at = Timestamp::from_millis(1_795_000_000_000);
        let mut job = Job::pending(NewJob {
            id: JobId::generate(),
            kind: Kind::parse("echo").unwrap(),
            owner: Owner::anonymous(),
            priority: crate::domain::Priority::High,
            created_at,
            deadline: created_at.saturating_add(Duration::from_secs(60)),
            run_at: None,
            payload: PayloadDigest::of("[1,2,3]"),
            expires_at: created_at.saturating_add(Duration::from_secs(120)),
            callback_url: Some("https://hooks.example.com/done".to_owned()),
            correlation_id: Some(CorrelationId::generate()),
        });
        job.status = JobStatus::Succeeded;
        job.result = Some(serde_json::json!({"ok": [1, "two"]}));
        job.progress = Some(Progress::new(0.75, "almost", created_at));
        assert_eq!(from_item(&to_item(&job)).unwrap(), job);
    }

    #[test]
    fn only_an_active_jobs_item_carries_its_owner_for_the_index() {
        let created_at = Timestamp::from_millis(1_795_000_000_000);
        let mut job = Job::pending(NewJob {
            id: JobId::generate(),
            kind: Kind::parse("echo").unwrap(),
            owner: Owner::jwt("https://idp", "a#b"),
            priority: crate::domain::Priority::Normal,
            created_at,
            deadline: created_at.saturating_add(Duration::from_secs(60)),
            run_at: None,
            payload: PayloadDigest::of("1"),
            expires_at: created_at.saturating_add(Duration::from_secs(120)),
            callback_url: None,
            correlation_id: None,
        });
        for status in JobStatus::ALL {
            job.status = status;
            let item = to_item(&job);
            let expected = (!status.is_terminal()).then(|| s(job.owner.as_str()));
            assert_eq!(item.get(ACTIVE_OWNER).cloned(), expected, "{status}");
        }
        let at = Timestamp::from_millis(5);
        let update = |transition| {
            UpdateExpression::for_change(&Change::new(transition, at, Duration::from_secs(1)))
                .expression
        };
        let redrive = update(Transition::Redrive { deadline: None });
        assert!(
            redrive.contains("#active_owner = #owner") && !redrive.contains("REMOVE #active"),
            "{redrive}"
        );
        for transition in [
            Transition::Claim {
                lease_until: at,
                max_attempts: 1,
            },
            Transition::Retry {
                attempt: 1,
                error: "again".into(),
            },
        ] {
            let expression = update(transition);
            assert!(!expression.contains("active_owner"), "{expression}");
        }
        for transition in [
            Transition::Succeed {
                attempt: 1,
                result: serde_json::Value::Null,
            },
            Transition::Fail {
                attempt: 1,
                error: "no".into(),
            },
            Transition::DeadLetter {
                attempt: 1,
                error: "no".into(),
            },
            Transition::Expire,
            Transition::Cancel,
        ] {
            let expression = update(transition);
            assert!(
                expression.contains("REMOVE") && expression.ends_with("#active_owner"),
                "{expression}"
            );
        }
    }

    #[test]
    fn a_heartbeat_writes_the_lease_and_progress_and_leaves_the_status_alone() {
        let at = Timestamp::from_millis(5_000);
        let heartbeat = |progress| {
            UpdateExpression::for_change(&Change::new(
                Transition::Heartbeat {
                    attempt: 2,
                    lease_until: Timestamp::from_millis(9_000),
                    progress,
                },
                at,
                Duration::from_secs(1),
            ))
        };
        let quiet = heartbeat(None);
        assert_eq!(
            quiet.condition,
            "(#status = :status_running AND #attempts = :attempt)"
        );
        assert_eq!(
            quiet.expression,
            "SET #updated_at = :now, #lease_until = :lease"
        );
        let reporting = heartbeat(Some(Progress::new(0.5, "half", at)));
        assert_eq!(
            reporting.expression,
            "SET #updated_at = :now, #lease_until = :lease, #progress = :progress"
        );
    }

    #[test]
    fn an_item_with_a_bad_field_is_reported_as_corrupt() {
        let mut item = HashMap::from([("pk".to_owned(), s("job#x"))]);
        item.insert("id".to_owned(), n(1));
        let err = from_item(&item).unwrap_err();
        assert!(
            matches!(err, StoreError::Corrupt { ref id, .. } if id == "job#x"),
            "{err}"
        );
    }

    #[test]
    fn expressions_alias_only_the_names_they_use() {
        let cancel = Change::new(
            Transition::Cancel,
            Timestamp::from_millis(5),
            Duration::from_secs(1),
        );
        let update = UpdateExpression::for_change(&cancel);
        assert_eq!(update.condition, "(#status = :status_pending)");
        assert_eq!(
            update.expression,
            "SET #status = :to, #updated_at = :now, #expires_at = :expires \
             REMOVE #lease_until, #active_owner"
        );
        let names: BTreeSet<&str> = update.names.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            BTreeSet::from([
                "#status",
                "#updated_at",
                "#expires_at",
                "#lease_until",
                "#active_owner"
            ])
        );
        let values: BTreeSet<&str> = update.values.keys().map(String::as_str).collect();
        assert_eq!(
            values,
            BTreeSet::from([":status_pending", ":to", ":now", ":expires"])
        );
    }
}
