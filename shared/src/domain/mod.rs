//! Spillway's domain: values that are valid by construction, the job and its state machine, and the
//! message that carries a job through the queue.

mod correlation;
mod document;
mod fanout;
mod idempotency;
mod job;
mod job_id;
mod kind;
mod message;
mod number;
mod owner;
mod priority;
mod progress;
mod status;
mod time;
mod transition;
mod ttl;

pub use correlation::{CorrelationId, InvalidCorrelationId};
pub use document::{JobDocument, job_document};
pub use fanout::{
    CHILD_KIND_SEPARATOR, Child, Failure, Fanout, ParentLink, child_kind, failure_summary,
};
pub use idempotency::{IdempotencyKey, IdempotencyRecord, InvalidIdempotencyKey};
pub use job::{Job, NewJob, PayloadDigest};
pub use job_id::{InvalidJobId, JobId};
pub use kind::{InvalidKind, Kind};
pub use message::{JobMessage, KeyUse, MessageError, Origin, ParentJob};
pub use number::WholeNumber;
pub use owner::Owner;
pub use priority::{Lanes, Priority, UnknownPriority};
pub use progress::{MAX_NOTE_CHARS, Progress};
pub use status::{JobStatus, UnknownStatus};
pub use time::Timestamp;
pub use transition::{Change, Requirement, Transition};
pub use ttl::{InvalidTtl, Ttl};

/// Reads a value written as text through `parse`, so that text serde accepts but the type does
/// not is refused with the type's own error.
fn from_text<'de, D, T, E>(
    deserializer: D,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    E: std::fmt::Display,
{
    let raw = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(deserializer)?;
    parse(&raw).map_err(serde::de::Error::custom)
}
