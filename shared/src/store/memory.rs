use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::Slot;
use super::{ApplyError, JobStore, StoreError};
use crate::domain::{
    Change, IdempotencyKey, IdempotencyRecord, Job, JobId, Kind, Owner, Timestamp,
};

/// A `JobStore` in process memory, with the same conditional semantics as DynamoDB.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    jobs: HashMap<JobId, Job>,
    keys: HashMap<(Owner, IdempotencyKey), IdempotencyRecord>,
    /// Each limited kind's slots: holder to the end of its hold.
    slots: HashMap<Kind, HashMap<String, Timestamp>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many items the store holds, jobs and idempotency records, as a table scan counts them.
    pub fn len(&self) -> usize {
        let state = self.state();
        state.jobs.len() + state.keys.len()
    }

    /// Deletes a job's record, as DynamoDB's TTL does once its `expires_at` has passed (its
    /// idempotency record stays, as it may outlive the job by a little in DynamoDB too).
    pub fn remove(&self, id: JobId) -> Option<Job> {
        self.state().jobs.remove(&id)
    }

    /// Whether the store holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a job half-written: every write below
        // replaces or inserts whole values, after all its checks.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl JobStore for MemoryStore {
    async fn create(
        &self,
        job: &Job,
        idempotency: Option<&IdempotencyRecord>,
    ) -> Result<(), StoreError> {
        let mut state = self.state();
        if state.jobs.contains_key(&job.id) {
            return Err(StoreError::AlreadyExists);
        }
        if let Some(record) = idempotency {
            let scoped = (record.owner.clone(), record.key.clone());
            if let Some(first) = state.keys.get(&scoped) {
                return Err(StoreError::KeyTaken(Box::new(first.clone())));
            }
            state.keys.insert(scoped, record.clone());
        }
        state.jobs.insert(job.id, job.clone());
        Ok(())
    }

    async fn create_batch(&self, jobs: &[Job]) -> Vec<Result<(), StoreError>> {
        let mut created = Vec::with_capacity(jobs.len());
        for job in jobs {
            created.push(self.create(job, None).await);
        }
        created
    }

    async fn get(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        Ok(self.state().jobs.get(&id).cloned())
    }

    async fn key(
        &self,
        owner: &Owner,
        key: &IdempotencyKey,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        Ok(self
            .state()
            .keys
            .get(&(owner.clone(), key.clone()))
            .cloned())
    }

    async fn apply(&self, id: JobId, change: &Change) -> Result<Job, ApplyError> {
        let mut state = self.state();
        let job = state.jobs.get_mut(&id).ok_or(ApplyError::NotFound)?;
        if !change.permits(job) {
            return Err(ApplyError::Rejected(Box::new(job.clone())));
        }
        change.apply(job);
        Ok(job.clone())
    }

    async fn active_jobs(&self, owner: &Owner, at_most: u32) -> Result<u32, StoreError> {
        let active = self
            .state()
            .jobs
            .values()
            .filter(|job| &job.owner == owner && !job.status.is_terminal())
            .take(usize::try_from(at_most).unwrap_or(usize::MAX))
            .count();
        Ok(u32::try_from(active).unwrap_or(at_most))
    }

    async fn hold_slot(
        &self,
        slot: &Slot,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let (kind, limit, holder) = (&slot.kind, slot.limit, slot.holder.as_str());
        let mut state = self.state();
        let slots = state.slots.entry(kind.clone()).or_default();
        slots.retain(|other, held_until| other == holder || *held_until > now);
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        if !slots.contains_key(holder) && slots.len() >= limit {
            return Ok(false);
        }
        slots.insert(holder.to_owned(), until);
        Ok(true)
    }

    async fn release_slot(&self, slot: &Slot) -> Result<(), StoreError> {
        let (kind, holder) = (&slot.kind, slot.holder.as_str());
        if let Some(slots) = self.state().slots.get_mut(kind) {
            slots.remove(holder);
        }
        Ok(())
    }
}

/// The store contract on the in-memory store.
#[cfg(test)]
mod contract {
    crate::store_contract_tests!(Box::new(super::MemoryStore::new()));
}
