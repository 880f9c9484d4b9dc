//! Processors: the work behind each job kind, and the registry that maps kinds to them.
//!
//! Adding a kind is one `Processor` impl and one `.with(...)` line in [`Processors::builtin`].

mod echo;
mod sleep;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use serde_json::value::RawValue;

pub use echo::Echo;
pub use sleep::Sleep;

use crate::domain::{JobId, Kind, Timestamp};

/// One run of one job, as its processor sees it.
#[derive(Debug)]
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

/// The work behind one job kind.
#[async_trait]
pub trait Processor: Send + Sync + std::fmt::Debug {
    /// Checks a payload at intake, so a job that can never run is refused with `400` instead of
    /// being accepted. The default accepts any payload.
    fn validate(&self, payload: &RawValue) -> Result<(), String> {
        let _ = payload;
        Ok(())
    }

    /// Runs the job and returns its result. It may run more than once for one job (at-least-once
    /// delivery), so its effect should be idempotent on `work.job_id`.
    async fn process(&self, work: &Work) -> Result<Value, ProcessError>;
}

/// The processors a deployment knows, by kind.
#[derive(Debug, Clone, Default)]
pub struct Processors {
    by_kind: HashMap<Kind, Arc<dyn Processor>>,
}

impl Processors {
    /// No processors.
    pub fn new() -> Self {
        Self::default()
    }

    /// The processors that ship with Spillway. Register your own kinds here.
    pub fn builtin() -> Self {
        Self::new().with("echo", Echo).with("sleep", Sleep)
    }

    /// Adds (or replaces) the processor for `kind`.
    ///
    /// # Panics
    /// When `kind` is not a valid kind name: registrations are literals in code, so this fails on
    /// the first run of any test.
    #[allow(clippy::expect_used)]
    pub fn with(mut self, kind: &str, processor: impl Processor + 'static) -> Self {
        let kind = Kind::parse(kind).expect("registered kind names are valid");
        self.by_kind.insert(kind, Arc::new(processor));
        self
    }

    /// The processor for `kind`.
    pub fn get(&self, kind: &Kind) -> Option<&Arc<dyn Processor>> {
        self.by_kind.get(kind)
    }

    /// The registered kinds, sorted.
    pub fn kinds(&self) -> Vec<&Kind> {
        let mut kinds: Vec<_> = self.by_kind.keys().collect();
        kinds.sort();
        kinds
    }
}
