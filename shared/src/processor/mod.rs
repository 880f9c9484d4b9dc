//! The processor contract: the work behind each job kind ([`Processor`], [`Work`],
//! [`ProcessError`], [`Rejection`]), and the registry that maps kinds to processors. The kinds
//! Spillway ships are in [`crate::kinds`].

mod progress;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::domain::{CorrelationId, JobId, Kind, Owner, Timestamp};

pub use progress::Reporter;

/// One run of one job, as its processor sees it. [`Work::new`] makes one for a processor's own
/// tests.
#[derive(Debug, Clone)]
pub struct Work {
    /// The job's id: a processor that calls out should pass it on as an idempotency key, so a
    /// retried attempt is recognised downstream.
    pub job_id: JobId,
    /// The job's kind.
    pub kind: Kind,
    /// The payload exactly as submitted.
    pub payload: Box<RawValue>,
    /// This attempt's number, from 1.
    pub attempt: u32,
    /// The job's deadline.
    pub deadline: Timestamp,
    /// Who submitted the job: whatever a processor signs or sends on its behalf is scoped to it.
    pub owner: Owner,
    /// The submitting request's correlation id, for a processor that passes it on.
    pub correlation_id: Option<CorrelationId>,
    /// Where [`Work::progress`] reports go: the consumer's heartbeat, which writes them to the
    /// job. [`Reporter::discard`] where nothing reads them.
    pub reporter: Reporter,
}

impl Work {
    /// The first run of a new job of `kind` with `payload`, as a processor's own tests need one:
    /// a new id, attempt 1, a deadline an hour from now, the anonymous owner, no correlation id,
    /// and progress reports discarded. Any field can be changed with struct update syntax:
    /// `Work { attempt: 3, ..Work::new(kind, payload) }`.
    pub fn new(kind: Kind, payload: Box<RawValue>) -> Self {
        let now = Timestamp::from_system_time(std::time::SystemTime::now());
        Self {
            job_id: JobId::generate(),
            kind,
            payload,
            attempt: 1,
            deadline: now.saturating_add(Duration::from_secs(3600)),
            owner: Owner::anonymous(),
            correlation_id: None,
            reporter: Reporter::discard(),
        }
    }

    /// Reports how far the run has come: `fraction` of the work done (clamped to 0..=1) and a
    /// short `note` (cut to [`MAX_NOTE_CHARS`](crate::domain::MAX_NOTE_CHARS)). The job's
    /// document shows the latest report as `progress`; the consumer writes it within about a
    /// second, and a processor may report as often as it likes, as only the latest is written.
    /// Reporting is optional and never fails.
    pub fn progress(&self, fraction: f64, note: impl Into<String>) {
        self.reporter.report(fraction, note.into());
    }
}

/// Why a run did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcessError {
    /// Worth trying again later (a timeout, a 503, a throttle).
    #[error("{message}")]
    Retryable {
        /// What happened.
        message: String,
        /// How long the downstream asked us to wait, if it said; wins over the backoff when
        /// longer.
        retry_after: Option<Duration>,
    },
    /// Will fail the same way every time (a bad payload, a 400).
    #[error("{message}")]
    Permanent {
        /// What happened.
        message: String,
    },
}

impl ProcessError {
    /// A retryable error with no delay of its own.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self::Retryable {
            message: message.into(),
            retry_after: None,
        }
    }

    /// A permanent error.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::Permanent {
            message: message.into(),
        }
    }
}

/// Why intake refuses a payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The payload is malformed (`400`).
    #[error("{0}")]
    Invalid(String),
    /// The payload is well-formed but asks for something this deployment forbids, such as a
    /// webhook to a private address (`422`).
    #[error("{0}")]
    Forbidden(String),
}

/// The work behind one job kind.
#[async_trait]
pub trait Processor: Send + Sync + std::fmt::Debug {
    /// Checks a payload at intake, so a job that can never run is refused with `400` instead of
    /// being accepted. The default accepts any payload.
    fn validate(&self, payload: &RawValue) -> Result<(), String> {
        let _ = payload;
        Ok(())
    }

    /// What intake calls: [`validate`](Self::validate), its error a `400`. A processor that can
    /// also refuse a well-formed payload as forbidden (`422`) overrides this.
    fn admit(&self, payload: &RawValue) -> Result<(), Rejection> {
        self.validate(payload).map_err(Rejection::Invalid)
    }

    /// Runs the job and returns its result. It may run more than once for one job (at-least-once
    /// delivery), so its effect should be idempotent on `work.job_id`. It may run longer than the
    /// queue's visibility timeout (the consumer's heartbeats keep the job), may report how far it
    /// has come with [`Work::progress`], and is stopped if the job is taken from it.
    async fn process(&self, work: &Work) -> Result<Value, ProcessError>;
}

/// What one kind asks of the pipeline in place of the stack's settings; `None` keeps the
/// stack's. Kinds declared in configuration set them ([`crate::targets`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Attempts before a job of the kind is `dead_lettered` (in place of `SPILLWAY_MAX_ATTEMPTS`).
    pub max_attempts: Option<u32>,
    /// The deadline of a job of the kind that asks for none (in place of its lane's default).
    pub default_ttl: Option<Duration>,
    /// How long one attempt may run; the invocation's own time left bounds it too.
    pub timeout: Option<Duration>,
    /// How many of the kind's jobs may run at once, across every consumer; `None` is no limit
    /// beyond the consumers' own (docs/architecture.md, "Concurrency per kind").
    pub max_concurrency: Option<u32>,
}

/// The processors a deployment knows, by kind, and the limits of the kinds that have their own.
#[derive(Debug, Clone, Default)]
pub struct Processors {
    by_kind: HashMap<Kind, Arc<dyn Processor>>,
    limits: HashMap<Kind, Limits>,
    /// The fan-out kinds, each with its targets' names and its children's kinds.
    fanouts: HashMap<Kind, Vec<(String, Kind)>>,
}

/// What stands for a fan-out kind among the processors: intake admits a payload only when every
/// target's processor does. It runs nothing, as a parent job has no message of its own.
#[derive(Debug)]
struct FanoutParent(Vec<Arc<dyn Processor>>);

#[async_trait]
impl Processor for FanoutParent {
    fn admit(&self, payload: &RawValue) -> Result<(), Rejection> {
        self.0.iter().try_for_each(|child| child.admit(payload))
    }

    async fn process(&self, _work: &Work) -> Result<Value, ProcessError> {
        Err(ProcessError::permanent(
            "a fan-out job runs as its children, one per target: submit it with POST /jobs",
        ))
    }
}

impl Processors {
    /// No processors.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the processor for `kind`.
    ///
    /// # Panics
    /// When `kind` is not a valid kind name: registrations are literals in code, so this fails on
    /// the first run of any test.
    #[allow(clippy::expect_used)]
    pub fn with(mut self, kind: &str, processor: impl Processor + 'static) -> Self {
        let kind = Kind::parse(kind).expect("registered kind names are valid");
        self.limits.remove(&kind);
        self.fanouts.remove(&kind);
        self.by_kind.insert(kind, Arc::new(processor));
        self
    }

    /// Adds (or replaces) the processor for `kind`, with its own `limits`.
    pub fn insert(&mut self, kind: Kind, processor: Arc<dyn Processor>, limits: Limits) {
        self.by_kind.insert(kind.clone(), processor);
        self.limits.insert(kind, limits);
    }

    /// Adds the fan-out `kind`, whose jobs run as one child per target of `targets` (each a
    /// target's name and the kind of its children, whose processors must be added already).
    pub fn insert_fanout(&mut self, kind: Kind, targets: Vec<(String, Kind)>, limits: Limits) {
        let children = targets
            .iter()
            .filter_map(|(_, child)| self.by_kind.get(child).cloned())
            .collect();
        self.insert(kind.clone(), Arc::new(FanoutParent(children)), limits);
        self.fanouts.insert(kind, targets);
    }

    /// The targets of a fan-out `kind` (each a name and its children's kind); `None` for a kind
    /// that is not one.
    pub fn fanout(&self, kind: &Kind) -> Option<&[(String, Kind)]> {
        self.fanouts.get(kind).map(Vec::as_slice)
    }

    /// Whether `kind` is the kind of a fan-out's children, which no client submits itself.
    pub fn is_child(&self, kind: &Kind) -> bool {
        self.fanouts
            .values()
            .any(|targets| targets.iter().any(|(_, child)| child == kind))
    }

    /// These processors and `more`'s together; where both have a kind, `more`'s processor
    /// (and limits) replaces this one's.
    pub fn and(mut self, more: Processors) -> Self {
        for kind in more.by_kind.keys() {
            self.limits.remove(kind);
            self.fanouts.remove(kind);
        }
        self.fanouts.extend(more.fanouts);
        self.by_kind.extend(more.by_kind);
        self.limits.extend(more.limits);
        self
    }

    /// The limits of `kind`: its own, or none (the stack's settings apply).
    pub fn limits(&self, kind: &Kind) -> Limits {
        self.limits.get(kind).copied().unwrap_or_default()
    }

    /// The processor for `kind`.
    pub fn get(&self, kind: &Kind) -> Option<&Arc<dyn Processor>> {
        self.by_kind.get(kind)
    }

    /// Whether a processor is registered under the kind named `kind`.
    pub fn knows(&self, kind: &str) -> bool {
        self.by_kind.keys().any(|known| known.as_str() == kind)
    }

    /// The registered kinds a client may submit, sorted: a fan-out's children's are not.
    pub fn kinds(&self) -> Vec<&Kind> {
        let mut kinds: Vec<_> = self
            .by_kind
            .keys()
            .filter(|kind| !self.is_child(kind))
            .collect();
        kinds.sort();
        kinds
    }
}
