//! The `JobStore` port: where job state lives, changed only by conditional writes.

mod dynamo;
mod memory;

use async_trait::async_trait;

pub use dynamo::{DirectStore, DynamoStore};
pub use memory::MemoryStore;

use crate::domain::{
    Change, IdempotencyKey, IdempotencyRecord, Job, JobId, Kind, Owner, Timestamp,
};
use crate::error::BoxError;

/// Keeps job state. Implementations evaluate [`Change::permits`] atomically with the write, so two
/// callers racing on one job never both succeed.
#[async_trait]
pub trait JobStore: Send + Sync + std::fmt::Debug {
    /// Writes a new job and, with `idempotency`, the key that created it: both or neither. Fails
    /// with [`StoreError::AlreadyExists`] when the job's id is taken, and with
    /// [`StoreError::KeyTaken`] (carrying the key's first use) when the key is.
    async fn create(
        &self,
        job: &Job,
        idempotency: Option<&IdempotencyRecord>,
    ) -> Result<(), StoreError>;

    /// Writes new jobs without idempotency keys, each only if its id is free, as
    /// [`JobStore::create`] does one; returns each job's outcome in order, one per job. The jobs
    /// are independent: one already there ([`StoreError::AlreadyExists`], as when a consumer
    /// wrote it from its message first) or failing leaves the others written. A job is never
    /// overwritten, as a consumer may have claimed it already.
    async fn create_batch(&self, jobs: &[Job]) -> Vec<Result<(), StoreError>>;

    /// Reads a job with a strongly consistent read.
    async fn get(&self, id: JobId) -> Result<Option<Job>, StoreError>;

    /// Reads the first use of `owner`'s idempotency `key`, with a strongly consistent read.
    async fn key(
        &self,
        owner: &Owner,
        key: &IdempotencyKey,
    ) -> Result<Option<IdempotencyRecord>, StoreError>;

    /// Applies `change` if the job's current state permits it, and returns the job afterwards.
    async fn apply(&self, id: JobId, change: &Change) -> Result<Job, ApplyError>;

    /// How many of `owner`'s jobs are active (`pending`, scheduled ones included, or `running`),
    /// counting no further than `at_most`: the answer is at most `at_most`. On DynamoDB it reads
    /// the sparse index [`ACTIVE_BY_OWNER_INDEX`], at a cost bounded by `at_most` entries, never
    /// by all the owner's jobs or the table's; the index is eventually consistent, so a job
    /// created or ended a moment ago may not be counted yet, or still be counted
    /// (docs/architecture.md, "Per-owner limits"). The in-memory store counts its jobs.
    async fn active_jobs(&self, owner: &Owner, at_most: u32) -> Result<u32, StoreError>;

    /// Takes one of the `slot.limit` slots that `slot.kind`'s running jobs share, for
    /// `slot.holder` until `until`, or renews the one it has: `true` when it holds a slot now,
    /// `false` when `limit` other holders hold slots that have not lapsed at `now`. A slot whose holder
    /// stopped without giving it back lapses at its `until` and is cleared when found. Decided
    /// atomically: two callers racing for the last slot never both get it. See
    /// docs/architecture.md, "Concurrency per kind".
    async fn hold_slot(
        &self,
        slot: &Slot,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError>;

    /// Gives `slot.holder`'s slot of `slot.kind` back; nothing happens when it holds none.
    async fn release_slot(&self, slot: &Slot) -> Result<(), StoreError>;
}

/// One holder's slot among those a kind's running jobs share ([`JobStore::hold_slot`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// The kind whose slots these are.
    pub kind: Kind,
    /// How many slots the kind has: its `max_concurrency`.
    pub limit: u32,
    /// Who holds this one: in the consumer one record's attempt, never shared with another
    /// delivery of the same message.
    pub holder: String,
}

/// The table's sparse global secondary index of active jobs by owner: every job item that is
/// `pending` or `running` carries [`ACTIVE_OWNER`], its owner's name, and no terminal one does.
pub const ACTIVE_BY_OWNER_INDEX: &str = "active-by-owner";

/// The attribute the [`ACTIVE_BY_OWNER_INDEX`] is keyed on.
pub const ACTIVE_OWNER: &str = "active_owner";

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A job with that id exists already.
    #[error("job already exists")]
    AlreadyExists,
    /// The idempotency key was used before; here is its first use.
    #[error("idempotency key already used for job {}", .0.job_id)]
    KeyTaken(Box<IdempotencyRecord>),
    /// The backing service failed or could not be reached.
    #[error("job store unavailable")]
    Unavailable(#[source] BoxError),
    /// A stored item could not be read as a job.
    #[error("stored job {id} is unreadable: {reason}")]
    Corrupt {
        /// The item's key.
        id: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// How a [`JobStore::create`] ended for a writer that may race another writer of the same job:
/// intake and a consumer writing it from its message, or a retry of either.
#[derive(Debug)]
pub enum Created {
    /// This call wrote the job.
    Written,
    /// Another writer of the same job wrote it first, with its key if it has one.
    AlreadyThere,
    /// Another request's job took the idempotency key first: here is its first use.
    KeyTaken(Box<IdempotencyRecord>),
}

impl Created {
    /// Reads the result of creating job `id`; a failure of the store stays an error.
    pub fn of(result: Result<(), StoreError>, id: JobId) -> Result<Self, StoreError> {
        match result {
            Ok(()) => Ok(Self::Written),
            Err(StoreError::AlreadyExists) => Ok(Self::AlreadyThere),
            Err(StoreError::KeyTaken(first)) if first.job_id == id => Ok(Self::AlreadyThere),
            Err(StoreError::KeyTaken(first)) => Ok(Self::KeyTaken(first)),
            Err(error) => Err(error),
        }
    }
}

/// Why a change was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The job's current state does not permit the change; here is that state.
    #[error("job {} is {}, which does not permit this change", .0.id, .0.status)]
    Rejected(Box<Job>),
    /// No such job.
    #[error("no such job")]
    NotFound,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[cfg(any(test, feature = "testing"))]
pub mod contract;
