use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{CorrelationId, Fanout, JobId, JobStatus, Kind, Owner, Priority, Progress, Timestamp};

/// A job's state as the table keeps it. The payload itself travels in the queue message; the
/// table keeps only its size and hash.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// The job's id.
    pub id: JobId,
    /// Which processor runs it.
    pub kind: Kind,
    /// Who submitted it.
    pub owner: Owner,
    /// The lane it runs in.
    pub priority: Priority,
    /// Where it is in its life.
    pub status: JobStatus,
    /// How many times a consumer has claimed it.
    pub attempts: u32,
    /// When intake accepted it.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// When a consumer first claimed it: its wait in the queue ends here.
    pub started_at: Option<Timestamp>,
    /// After this it is `expired` instead of run.
    pub deadline: Timestamp,
    /// When it is due, if it was scheduled: no consumer claims it before.
    pub run_at: Option<Timestamp>,
    /// While `running`: until when the claiming consumer holds it.
    pub lease_until: Option<Timestamp>,
    /// What its processor last reported of its progress: by the attempt running now, or by the
    /// last one once it ended. A new attempt starts without.
    pub progress: Option<Progress>,
    /// The processor's output, once `succeeded`.
    pub result: Option<Value>,
    /// Why it failed, or why its last attempt failed while it waits for a retry.
    pub error: Option<String>,
    /// What the payload was, without keeping it.
    pub payload: PayloadDigest,
    /// When the table may forget the job (DynamoDB TTL), in whole seconds.
    pub expires_at: Timestamp,
    /// Where its final status document is delivered once it is terminal.
    pub callback_url: Option<String>,
    /// The id that ties its log lines to the request that submitted it.
    pub correlation_id: Option<CorrelationId>,
    /// Its place in a fan-out: a parent's children, or a child's parent.
    pub fanout: Option<Fanout>,
}

/// The fields a new job starts from.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// The new job's id.
    pub id: JobId,
    /// Its kind.
    pub kind: Kind,
    /// Its owner.
    pub owner: Owner,
    /// Its lane.
    pub priority: Priority,
    /// When it was accepted.
    pub created_at: Timestamp,
    /// When it expires unless it ran.
    pub deadline: Timestamp,
    /// When it is due, if scheduled.
    pub run_at: Option<Timestamp>,
    /// What its payload was.
    pub payload: PayloadDigest,
    /// When the table may forget it if it never finishes (an orphan whose message was lost).
    pub expires_at: Timestamp,
    /// Where to deliver its final status document.
    pub callback_url: Option<String>,
    /// The submitting request's correlation id.
    pub correlation_id: Option<CorrelationId>,
}

impl Job {
    /// A job in its first state, `pending`.
    pub fn pending(new: NewJob) -> Self {
        Self {
            id: new.id,
            kind: new.kind,
            owner: new.owner,
            priority: new.priority,
            status: JobStatus::Pending,
            attempts: 0,
            created_at: new.created_at,
            updated_at: new.created_at,
            started_at: None,
            deadline: new.deadline,
            run_at: new.run_at,
            lease_until: None,
            progress: None,
            result: None,
            error: None,
            payload: new.payload,
            expires_at: new.expires_at.ceil_to_second(),
            callback_url: new.callback_url,
            correlation_id: new.correlation_id,
            fanout: None,
        }
    }

    /// Whether the job is pending and not yet due at `now`: what its document calls
    /// `scheduled`.
    pub fn is_scheduled_at(&self, now: Timestamp) -> bool {
        self.status == JobStatus::Pending && self.run_at.is_some_and(|due| due > now)
    }

    /// Whether a consumer's lease on this job is still live at `now`.
    pub fn is_leased_at(&self, now: Timestamp) -> bool {
        self.status == JobStatus::Running && self.lease_until.is_some_and(|until| until >= now)
    }
}

/// The size and SHA-256 of a job's payload, as submitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadDigest {
    /// Length of the payload's JSON text in bytes.
    pub size: u64,
    /// Lowercase hex SHA-256 of the payload's JSON text.
    pub sha256: String,
}

impl PayloadDigest {
    /// Digests a payload's JSON text.
    pub fn of(json: &str) -> Self {
        Self {
            size: json.len() as u64,
            sha256: hex::encode(Sha256::digest(json.as_bytes())),
        }
    }
}
