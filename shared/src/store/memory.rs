use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{ApplyError, JobStore, StoreError};
use crate::domain::{Change, Job, JobId};

/// A `JobStore` in process memory, with the same conditional semantics as DynamoDB.
#[derive(Debug, Default)]
pub struct MemoryStore {
    jobs: Mutex<HashMap<JobId, Job>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn jobs(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, Job>> {
        // A panic while holding the lock cannot leave a job half-written: every write below
        // replaces or inserts a whole value.
        self.jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl JobStore for MemoryStore {
    async fn create(&self, job: &Job) -> Result<(), StoreError> {
        let mut jobs = self.jobs();
        if jobs.contains_key(&job.id) {
            return Err(StoreError::AlreadyExists);
        }
        jobs.insert(job.id, job.clone());
        Ok(())
    }

    async fn get(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        Ok(self.jobs().get(&id).cloned())
    }

    async fn apply(&self, id: JobId, change: &Change) -> Result<Job, ApplyError> {
        let mut jobs = self.jobs();
        let job = jobs.get_mut(&id).ok_or(ApplyError::NotFound)?;
        if !change.permits(job) {
            return Err(ApplyError::Rejected(Box::new(job.clone())));
        }
        change.apply(job);
        Ok(job.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::contract;

    #[tokio::test]
    async fn the_memory_store_keeps_the_store_contract() {
        contract::run_all(&MemoryStore::new()).await;
    }
}
